//! The write window a writer handle shares with the worker task.
//!
//! A [`ChannelWriter`](super::ChannelWriter) may hand the task only bytes the task has
//! granted it, and the task grants only space the core's writer window has free (minus
//! what the task still holds for that end). So every byte a handle submits is taken at
//! once: the handle knows synchronously how much of a buffer was taken, which is what
//! makes `poll_write` exact (`Pending` means nothing was taken) and every write future
//! cancel safe. Counters are cumulative, in bytes; a text message costs its length
//! capped at the window (the core accepts a larger one into an empty window).

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use super::Error;

/// Credit shared by one writer handle and the task.
#[derive(Debug)]
pub(crate) struct WriteCredit {
    state: Mutex<CreditState>,
    /// The core's `writer_window_bytes`.
    window: usize,
    /// Serializes the async writes of one writer (they take `&self`), so the bytes of
    /// one write are never interleaved with another's. Dropping a waiting write releases
    /// its place without effect.
    pub(crate) order: futures_util::lock::Mutex<()>,
}

#[derive(Debug)]
struct CreditState {
    /// Bytes granted by the task since the end was opened.
    granted: u64,
    /// Bytes the handle submitted since the end was opened.
    submitted: u64,
    /// The handle waiting for credit.
    waker: Option<Waker>,
    /// Set once the end is over: every later write fails with it.
    failure: Option<Error>,
}

impl WriteCredit {
    /// A writer's credit: the whole window is free at first.
    pub(crate) fn new(window: usize) -> Self {
        Self {
            state: Mutex::new(CreditState {
                granted: window as u64,
                submitted: 0,
                waker: None,
                failure: None,
            }),
            window,
            order: futures_util::lock::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, CreditState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What a text message of `len` bytes costs.
    pub(crate) fn text_cost(&self, len: usize) -> usize {
        len.min(self.window)
    }

    /// Takes between 1 and `want` bytes of credit (`want` > 0), or registers `cx` to be
    /// woken when there is some; `Pending` means nothing was taken.
    pub(crate) fn poll_take(
        &self,
        cx: &mut Context<'_>,
        want: usize,
    ) -> Poll<Result<usize, Error>> {
        let mut state = self.lock();
        if let Some(failure) = &state.failure {
            return Poll::Ready(Err(failure.clone()));
        }
        let available = state.granted.saturating_sub(state.submitted);
        if available == 0 {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let taken = available.min(want as u64);
        state.submitted += taken;
        // `taken` is at most `want`, a usize.
        Poll::Ready(Ok(taken as usize))
    }

    /// Takes exactly `cost` bytes of credit, or registers `cx`; `Pending` means nothing
    /// was taken.
    pub(crate) fn poll_take_exact(
        &self,
        cx: &mut Context<'_>,
        cost: usize,
    ) -> Poll<Result<(), Error>> {
        let mut state = self.lock();
        if let Some(failure) = &state.failure {
            return Poll::Ready(Err(failure.clone()));
        }
        if state.granted.saturating_sub(state.submitted) < cost as u64 {
            state.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        state.submitted += cost as u64;
        Poll::Ready(Ok(()))
    }

    /// The end is over: wakes the handle; every later take fails with `error`.
    pub(crate) fn fail(&self, error: Error) {
        let waker = {
            let mut state = self.lock();
            state.failure.get_or_insert(error);
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// (task) Raises the cumulative grant to `target` and wakes a waiting handle.
    pub(crate) fn grant_up_to(&self, target: u64) {
        let waker = {
            let mut state = self.lock();
            if target <= state.granted {
                return;
            }
            state.granted = target;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::task::noop_waker_ref;

    #[test]
    fn takes_what_is_granted_and_nothing_when_pending() {
        let credit = WriteCredit::new(10);
        let mut cx = Context::from_waker(noop_waker_ref());
        assert!(matches!(credit.poll_take(&mut cx, 4), Poll::Ready(Ok(4))));
        assert!(matches!(credit.poll_take(&mut cx, 100), Poll::Ready(Ok(6))));
        assert!(credit.poll_take(&mut cx, 1).is_pending());
        assert!(credit.poll_take_exact(&mut cx, 1).is_pending());
        credit.grant_up_to(5); // below what was granted: no effect
        assert!(credit.poll_take(&mut cx, 1).is_pending());
        credit.grant_up_to(13);
        assert!(
            credit.poll_take_exact(&mut cx, 4).is_pending(),
            "all or nothing"
        );
        assert!(matches!(
            credit.poll_take_exact(&mut cx, 3),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(credit.text_cost(1 << 20), 10);
        credit.fail(Error::Closed);
        credit.grant_up_to(100);
        assert!(matches!(
            credit.poll_take(&mut cx, 1),
            Poll::Ready(Err(Error::Closed))
        ));
    }
}
