//! Per-connection outbound queues released under send credit.
//!
//! The core hands a message to the adapter (a `Transmit` output) only while the
//! connection has fewer than `credit` messages in flight; the adapter returns credit
//! with `handle_sent` once messages are flushed to the socket. Messages waiting for
//! credit stay here, bounded in bytes.

use std::collections::VecDeque;

use crate::wire::Message;

/// One connection's outbound queue and in-flight count.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Message>,
    queued_bytes: usize,
    in_flight: usize,
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
            in_flight: 0,
            credit: credit.max(1),
        }
    }

    /// Queues `message`, unless the queued bytes would exceed `limit`.
    pub fn push(&mut self, message: Message, limit: usize) -> Result<(), Overflow> {
        let len = message.len();
        if self.queued_bytes.saturating_add(len) > limit && !self.queue.is_empty() {
            return Err(Overflow);
        }
        self.queued_bytes += len;
        self.queue.push_back(message);
        Ok(())
    }

    /// The next message that may be transmitted now, if credit allows.
    pub fn release(&mut self) -> Option<Message> {
        if self.in_flight >= self.credit {
            return None;
        }
        let message = self.queue.pop_front()?;
        self.queued_bytes -= message.len();
        self.in_flight += 1;
        Some(message)
    }

    /// True when another message may go out now without queueing.
    pub fn has_credit(&self) -> bool {
        self.in_flight < self.credit
    }

    /// Takes one unit of credit for a message sent around the queue (for example a
    /// channel frame that lives in the channel's own buffer).
    pub fn take_credit(&mut self) -> bool {
        if self.has_credit() {
            self.in_flight += 1;
            true
        } else {
            false
        }
    }

    /// Returns credit for `count` flushed messages; returns how many were in flight
    /// (a count larger than that is clamped: the adapter cannot return more).
    pub fn sent(&mut self, count: usize) -> usize {
        let returned = count.min(self.in_flight);
        self.in_flight -= returned;
        returned
    }

    /// Messages handed to the adapter and not yet reported sent.
    pub fn in_flight(&self) -> usize {
        self.in_flight
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
        // A single oversized message is still accepted into an empty queue.
        let mut out = Outbox::new(1);
        out.push(bin(500), 100).expect("first message always fits");
    }
}
