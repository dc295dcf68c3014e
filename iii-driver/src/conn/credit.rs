//! Read-ahead credit of one connection, in messages and in bytes.
//!
//! A connection's reader may read a message off the socket only while fewer than
//! [`READ_AHEAD`] messages *and* fewer than `byte_limit` bytes are read and not yet
//! consumed by the machine's task. So what a connection can hold beyond what the core
//! accounts is at most `byte_limit` bytes plus the one message being read, which the
//! engine's byte budgets reserve room for.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;

use futures_util::future;
use futures_util::task::AtomicWaker;

/// Messages a connection may read ahead of the core: the most the adapter holds for a
/// paused connection.
pub(crate) const READ_AHEAD: usize = 4;

/// The credit shared by a connection's reader and the machine's task.
#[derive(Debug)]
pub(crate) struct ReadCredit {
    /// Messages that may still be read ahead.
    messages: AtomicUsize,
    /// Bytes read and not yet consumed.
    bytes: AtomicUsize,
    byte_limit: usize,
    waker: AtomicWaker,
}

impl ReadCredit {
    /// Credit of [`READ_AHEAD`] messages and `byte_limit` bytes (at least 1).
    pub(crate) fn new(byte_limit: usize) -> Self {
        Self {
            messages: AtomicUsize::new(READ_AHEAD),
            bytes: AtomicUsize::new(0),
            byte_limit: byte_limit.max(1),
            waker: AtomicWaker::new(),
        }
    }

    /// Waits until another message may be read and takes one message of credit.
    pub(crate) async fn take(&self) {
        future::poll_fn(|cx| loop {
            if self.bytes.load(Ordering::Acquire) >= self.byte_limit {
                self.waker.register(cx.waker());
                if self.bytes.load(Ordering::Acquire) >= self.byte_limit {
                    return Poll::Pending;
                }
                continue;
            }
            let n = self.messages.load(Ordering::Acquire);
            if n == 0 {
                self.waker.register(cx.waker());
                if self.messages.load(Ordering::Acquire) == 0 {
                    return Poll::Pending;
                }
                continue;
            }
            if self
                .messages
                .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Poll::Ready(());
            }
        })
        .await;
    }

    /// The reader read a message of `len` bytes with the credit it took.
    pub(crate) fn read(&self, len: usize) {
        self.bytes.fetch_add(len, Ordering::AcqRel);
    }

    /// The message taken with the last credit carried nothing to consume (a ping or a
    /// pong): give the credit back.
    pub(crate) fn refund(&self) {
        self.messages.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    /// The machine's task consumed a message of `len` bytes.
    pub(crate) fn give(&self, len: usize) {
        // Never below zero, even for a message the reader did not count.
        let _ = self
            .bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| {
                Some(b.saturating_sub(len))
            });
        self.messages.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[test]
    fn reading_stops_at_the_message_or_the_byte_limit() {
        let credit = ReadCredit::new(100);
        for _ in 0..READ_AHEAD {
            assert!(credit.take().now_or_never().is_some());
            credit.read(1);
        }
        assert!(credit.take().now_or_never().is_none(), "message limit");
        credit.give(1);
        assert!(credit.take().now_or_never().is_some());
        credit.read(200);
        credit.give(1);
        assert!(credit.take().now_or_never().is_none(), "byte limit");
        credit.give(200);
        credit.give(1);
        credit.give(1);
        assert!(credit.take().now_or_never().is_some());
        credit.refund();
        assert!(credit.take().now_or_never().is_some());
    }
}
