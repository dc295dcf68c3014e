//! The ordered operations an application makes on one writer end (write bytes, send a
//! text message, close), run against the [`Worker`]'s write window.
//!
//! The worker's writer commands ([`Worker::channel_write`], [`Worker::channel_send_text`],
//! [`Worker::channel_close`]) accept only what fits the window and report
//! [`WriteError::Blocked`] otherwise; an SDK wants "write all of this, tell me when it
//! was taken" and "close after everything before it". A [`WriteQueue`] holds those
//! requests in order, each with the adapter's token (a reply channel, a JavaScript
//! promise), and [`WriteQueue::pump`] runs them as far as the window allows. Every
//! adapter calls `pump` after a request and after [`WorkerEvent::ChannelWritable`]
//! (window space) for that end, and [`WriteQueue::end`] at
//! [`WorkerEvent::ChannelEnded`]; each finished request comes back exactly once with its
//! result.
//!
//! [`WorkerEvent::ChannelWritable`]: super::WorkerEvent::ChannelWritable
//! [`WorkerEvent::ChannelEnded`]: super::WorkerEvent::ChannelEnded

use std::collections::VecDeque;

use bytes::Bytes;

use super::{EndId, EndOutcome, Worker, WriteError};
use crate::wire::Text;
use crate::Instant;

/// One request on a writer end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Write `data`, split into frames by the worker.
    Bytes {
        /// The bytes.
        data: Bytes,
        /// `true`: finished once every byte was accepted. `false`: finished as soon as
        /// some bytes were accepted (the `AsyncWrite` contract: the result says how
        /// many).
        all: bool,
    },
    /// Send one text message, in order with the bytes.
    Text(Text),
    /// End the stream cleanly after everything queued before; finished when the end is
    /// over.
    Close,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// The end is over with this outcome (the reader left, the connection was refused
    /// or lost, or the end was closed or aborted locally).
    Ended(EndOutcome),
    /// The worker refused the command (an unknown end, a reader, a worker that stopped).
    Refused(WriteError),
}

/// What a finished request returns: bytes accepted (0 for text and close).
pub type WriteResult = Result<usize, WriteFailure>;

#[derive(Debug)]
struct Pending<T> {
    op: WriteOp,
    /// Bytes of a `Bytes` op already accepted.
    accepted: usize,
    /// A `Close` op was handed to the worker; it finishes when the end is over.
    close_requested: bool,
    token: T,
}

/// Requests on one writer end, in order, each with the adapter's token `T` (a reply
/// channel, a JavaScript promise). The adapter calls [`pump`](Self::pump) after a request
/// and after [`WorkerEvent::ChannelWritable`](super::WorkerEvent::ChannelWritable) for
/// the end, and [`end`](Self::end) at
/// [`WorkerEvent::ChannelEnded`](super::WorkerEvent::ChannelEnded); each request comes
/// back from `pump` exactly once with its result.
#[derive(Debug)]
pub struct WriteQueue<T> {
    ops: VecDeque<Pending<T>>,
    ended: Option<EndOutcome>,
}

impl<T> Default for WriteQueue<T> {
    fn default() -> Self {
        Self {
            ops: VecDeque::new(),
            ended: None,
        }
    }
}

impl<T> WriteQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a request after the others; run it with [`pump`](Self::pump).
    pub fn push(&mut self, op: WriteOp, token: T) {
        self.ops.push_back(Pending {
            op,
            accepted: 0,
            close_requested: false,
            token,
        });
    }

    /// True when a `Close` is queued (or handed to the worker).
    pub fn has_close(&self) -> bool {
        self.ops.iter().any(|pending| pending.op == WriteOp::Close)
    }

    /// Requests not finished yet.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when no request is waiting.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How the end finished, once [`end`](Self::end) was called.
    pub fn outcome(&self) -> Option<&EndOutcome> {
        self.ended.as_ref()
    }

    /// The end is over: every request still waiting finishes at the next
    /// [`pump`](Self::pump) (a requested `Close` succeeds if the outcome is
    /// [`EndOutcome::Closed`], everything else fails with the outcome).
    pub fn end(&mut self, outcome: EndOutcome) {
        self.ended.get_or_insert(outcome);
    }

    /// Finishes every waiting request with `failure` (the adapter forgets the end).
    pub fn fail_all(&mut self, failure: WriteFailure) -> Vec<(T, WriteResult)> {
        self.ops
            .drain(..)
            .map(|pending| (pending.token, Err(failure.clone())))
            .collect()
    }

    /// Runs the requests in order as far as `end`'s write window allows and returns
    /// the finished ones, oldest first.
    pub fn pump(&mut self, worker: &mut Worker, now: Instant, end: EndId) -> Vec<(T, WriteResult)> {
        let mut finished = Vec::new();
        if let Some(outcome) = self.ended.clone() {
            for pending in self.ops.drain(..) {
                let result = match pending.op {
                    WriteOp::Close if outcome == EndOutcome::Closed => Ok(0),
                    _ => Err(WriteFailure::Ended(outcome.clone())),
                };
                finished.push((pending.token, result));
            }
            return finished;
        }
        while let Some(pending) = self.ops.front_mut() {
            let result = match &pending.op {
                WriteOp::Bytes { data, all } => {
                    if pending.accepted < data.len() {
                        let rest = data.slice(pending.accepted..);
                        match worker.channel_write(now, end, rest) {
                            Ok(n) => {
                                pending.accepted += n;
                                if pending.accepted < data.len() && (*all || n == 0) {
                                    break;
                                }
                                Ok(pending.accepted)
                            }
                            Err(WriteError::Blocked(_)) => break,
                            Err(error) => Err(self.failure(error)),
                        }
                    } else {
                        Ok(pending.accepted)
                    }
                }
                WriteOp::Text(text) => match worker.channel_send_text(now, end, text.clone()) {
                    Ok(()) => Ok(0),
                    Err(WriteError::Blocked(_)) => break,
                    Err(error) => Err(self.failure(error)),
                },
                WriteOp::Close => {
                    if pending.close_requested {
                        break;
                    }
                    match worker.channel_close(now, end) {
                        Ok(()) => {
                            // Finished at `end` (the worker may have queued it already).
                            pending.close_requested = true;
                            break;
                        }
                        Err(error) => Err(self.failure(error)),
                    }
                }
            };
            if let Some(pending) = self.ops.pop_front() {
                finished.push((pending.token, result));
            }
        }
        finished
    }

    fn failure(&self, error: WriteError) -> WriteFailure {
        match (error, &self.ended) {
            (WriteError::Ended(_), Some(outcome)) => WriteFailure::Ended(outcome.clone()),
            (error, _) => WriteFailure::Refused(error),
        }
    }
}

#[cfg(test)]
mod tests;
