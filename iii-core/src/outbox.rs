//! Per-connection outbound queues released under send credit.
//!
//! The core hands a message to the adapter (a `Transmit` output) only while the
//! connection has fewer than `credit` messages in flight; the adapter returns credit
//! with `handle_sent` once messages are flushed to the socket. Messages waiting for
//! credit stay here; the byte bound counts them together with the messages in flight,
//! because those are held by the adapter until the peer reads them.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::wire::Message;

/// `bytes` copied into a buffer with room for `capacity` bytes.
fn grown(bytes: &[u8], capacity: usize) -> BytesMut {
    let mut buffer = BytesMut::with_capacity(capacity.max(bytes.len()));
    buffer.extend_from_slice(bytes);
    buffer
}

/// One connection's outbound queue and in-flight count.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Message>,
    queued_bytes: usize,
    /// Sizes of the messages in flight, oldest first (0 for credit taken around the
    /// queue, whose bytes are accounted by their owner).
    in_flight: VecDeque<usize>,
    in_flight_bytes: usize,
    credit: usize,
}

/// The queue would exceed its byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

impl Outbox {
    /// An empty outbox that allows `credit` messages in flight (at least 1).
    pub fn new(credit: usize) -> Self {
        Self {
            queue: VecDeque::new(),
            queued_bytes: 0,
            in_flight: VecDeque::new(),
            in_flight_bytes: 0,
            credit: credit.max(1),
        }
    }

    /// Queues `message`, unless the bytes pending on this connection (queued and in
    /// flight) would exceed `limit`. A message is always accepted when nothing is
    /// pending, so one message larger than `limit` can still be sent alone.
    pub fn push(&mut self, message: Message, limit: usize) -> Result<(), Overflow> {
        let len = message.len();
        let pending = self.pending_bytes();
        if pending.saturating_add(len) > limit && pending > 0 {
            return Err(Overflow);
        }
        self.queued_bytes += len;
        self.queue.push_back(message);
        Ok(())
    }

    /// Queues a binary chunk of a byte stream, appended to the queued tail when that is
    /// a binary message still waiting for credit and both fit in `max_frame` bytes:
    /// small writes made while earlier ones wait become one frame, and a write that
    /// finds credit free is queued alone (released at once, no added latency). The
    /// merged tail is built in a buffer of `max_frame` bytes, so each byte is copied
    /// once. No byte limit here (the caller's window bounds the queue).
    pub fn push_stream_chunk(&mut self, chunk: Bytes, max_frame: usize) {
        let len = chunk.len();
        // Everything in `queue` waits for credit (released messages leave it).
        if let Some(Message::Binary(tail)) = self.queue.back_mut() {
            if tail.len().saturating_add(len) <= max_frame {
                let mut merged = match std::mem::take(tail).try_into_mut() {
                    Ok(buffer) if buffer.capacity() >= max_frame => buffer,
                    Ok(buffer) => grown(&buffer, max_frame),
                    Err(shared) => grown(&shared, max_frame),
                };
                merged.extend_from_slice(&chunk);
                *tail = merged.freeze();
                self.queued_bytes += len;
                return;
            }
        }
        self.queued_bytes += len;
        self.queue.push_back(Message::Binary(chunk));
    }

    /// The next message that may be transmitted now, if credit allows.
    pub fn release(&mut self) -> Option<Message> {
        if !self.has_credit() {
            return None;
        }
        let message = self.queue.pop_front()?;
        let len = message.len();
        self.queued_bytes -= len;
        self.in_flight.push_back(len);
        self.in_flight_bytes += len;
        Some(message)
    }

    /// True when another message may go out now without queueing.
    pub fn has_credit(&self) -> bool {
        self.in_flight.len() < self.credit
    }

    /// Takes one unit of credit for a message sent around the queue (for example a
    /// channel frame that lives in the channel's own buffer).
    pub fn take_credit(&mut self) -> bool {
        if self.has_credit() {
            self.in_flight.push_back(0);
            true
        } else {
            false
        }
    }

    /// Returns credit for `count` flushed messages; returns how many were in flight
    /// (a count larger than that is clamped: the adapter cannot return more).
    pub fn sent(&mut self, count: usize) -> usize {
        let returned = count.min(self.in_flight.len());
        for len in self.in_flight.drain(..returned) {
            self.in_flight_bytes -= len;
        }
        returned
    }

    /// Messages handed to the adapter and not yet reported sent.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Bytes of the messages handed to the adapter and not yet reported sent (messages
    /// sent around the queue with [`Outbox::take_credit`] excluded).
    pub fn in_flight_bytes(&self) -> usize {
        self.in_flight_bytes
    }

    /// Bytes waiting for credit plus bytes in flight: what this connection holds.
    pub fn pending_bytes(&self) -> usize {
        self.queued_bytes + self.in_flight_bytes
    }

    /// Bytes waiting for credit.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// Messages waiting for credit.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn bin(n: usize) -> Message {
        Message::Binary(Bytes::from(vec![0; n]))
    }

    #[test]
    fn small_chunks_merge_only_while_they_wait() {
        let mut out = Outbox::new(1);
        // A lone write goes out alone, at once.
        out.push_stream_chunk(Bytes::from_static(b"ab"), 8);
        assert_eq!(
            out.release(),
            Some(Message::Binary(Bytes::from_static(b"ab")))
        );
        // No credit now: the next writes wait, and merge up to the frame size.
        for piece in [&b"cd"[..], b"ef", b"gh", b"ij", b"kl"] {
            out.push_stream_chunk(Bytes::copy_from_slice(piece), 8);
        }
        assert_eq!(out.queued_bytes(), 10);
        assert_eq!(out.release(), None);
        out.sent(1);
        assert_eq!(
            out.release(),
            Some(Message::Binary(Bytes::from_static(b"cdefghij")))
        );
        out.sent(1);
        assert_eq!(
            out.release(),
            Some(Message::Binary(Bytes::from_static(b"kl")))
        );
        assert_eq!(out.queued_bytes(), 0);
    }

    #[test]
    fn credit_limits_release_and_returns() {
        let mut out = Outbox::new(2);
        for _ in 0..3 {
            out.push(bin(10), 100).expect("fits");
        }
        assert!(out.push(bin(80), 100).is_err());
        assert!(out.release().is_some());
        assert!(out.release().is_some());
        assert!(out.release().is_none());
        assert_eq!(out.sent(5), 2);
        assert!(out.release().is_some());
        assert_eq!(out.queued_bytes(), 0);
        // A single oversized message is still accepted when nothing is pending.
        let mut out = Outbox::new(1);
        out.push(bin(500), 100).expect("first message always fits");
    }

    #[test]
    fn bytes_in_flight_count_toward_the_limit() {
        let mut out = Outbox::new(32);
        out.push(bin(60), 100).expect("fits");
        assert!(out.release().is_some());
        assert_eq!(out.queued_bytes(), 0);
        assert_eq!(out.pending_bytes(), 60);
        // 60 in flight + 50 would exceed 100 although nothing is queued.
        assert!(out.push(bin(50), 100).is_err());
        assert_eq!(out.sent(1), 1);
        assert_eq!(out.pending_bytes(), 0);
        out.push(bin(50), 100).expect("fits once flushed");
        // Credit taken around the queue carries no bytes here.
        assert!(out.take_credit());
        assert!(out.release().is_some());
        assert_eq!(out.in_flight_bytes(), 50);
        assert_eq!(out.sent(2), 2);
        assert_eq!(out.in_flight_bytes(), 0);
    }
}
