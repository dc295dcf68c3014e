//! A socket wrapper that fails writes to a peer that accepts no bytes for too long.
//!
//! A peer that keeps a zero TCP window (it stopped reading, on purpose or not) makes
//! every write wait forever, and with it the connection's slot and whatever is queued
//! for it. [`WriteDeadline`] starts a timer when a write, flush or close cannot make
//! progress and fails that operation with [`io::ErrorKind::TimedOut`] if the peer has
//! still accepted nothing when it expires. Any progress disarms the timer, so a slow
//! but live peer is never cut off. Reads pass through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::io::{AsyncRead, AsyncWrite};

use crate::runtime::{now, BoxFuture, Runtime};

/// Makes the timer of a [`WriteDeadline`]: the runtime's `sleep_until`.
type Sleeper = Box<dyn Fn(std::time::Instant) -> BoxFuture<'static, ()> + Send + Sync>;

/// Fails writes that make no progress for `timeout`.
pub(crate) struct WriteDeadline<S> {
    inner: S,
    timeout: Option<Duration>,
    sleep: Sleeper,
    /// Running while the current operation is stalled.
    timer: Option<BoxFuture<'static, ()>>,
}

impl<S> std::fmt::Debug for WriteDeadline<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteDeadline")
            .field("timeout", &self.timeout)
            .field("stalled", &self.timer.is_some())
            .finish_non_exhaustive()
    }
}

impl<S> WriteDeadline<S> {
    /// Wraps `inner` with `rt`'s timers; `None` never times out.
    pub(crate) fn new<R: Runtime>(rt: &R, inner: S, timeout: Option<Duration>) -> Self {
        let rt = rt.clone();
        Self::with_sleeper(inner, timeout, move |at| rt.sleep_until(at))
    }

    /// Wraps `inner`, arming `sleep(deadline)` when a write stalls.
    fn with_sleeper(
        inner: S,
        timeout: Option<Duration>,
        sleep: impl Fn(std::time::Instant) -> BoxFuture<'static, ()> + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            timeout,
            sleep: Box::new(sleep),
            timer: None,
        }
    }

    /// Turns a stalled operation into a timeout once the timer has run out.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(timeout) = self.timeout else {
            return Poll::Pending;
        };
        let sleep = &self.sleep;
        let timer = self
            .timer
            .get_or_insert_with(|| match now().checked_add(timeout) {
                Some(at) => sleep(at),
                None => Box::pin(std::future::pending()),
            });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.timer = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the peer accepted no bytes within the write timeout",
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn progressed<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Ready(result) => {
                self.timer = None;
                Poll::Ready(result)
            }
            Poll::Pending => self.stalled(cx),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteDeadline<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.progressed(result, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.progressed(result, cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_close(cx);
        this.progressed(result, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::AsyncWriteExt;

    /// A sink that accepts `budget` bytes and then never again.
    struct Stuck {
        budget: usize,
    }

    impl AsyncRead for Stuck {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    impl AsyncWrite for Stuck {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            if this.budget == 0 {
                return Poll::Pending;
            }
            let n = buf.len().min(this.budget);
            this.budget -= n;
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn a_stalled_write_times_out_and_progress_is_never_cut() {
        let sleeper = |at| -> BoxFuture<'static, ()> {
            Box::pin(async move {
                smol::Timer::at(at).await;
            })
        };
        smol::block_on(async {
            let mut stream = WriteDeadline::with_sleeper(
                Stuck { budget: 10 },
                Some(Duration::from_millis(50)),
                sleeper,
            );
            stream.write_all(&[1; 10]).await.expect("accepted");
            let started = std::time::Instant::now();
            let error = stream.write_all(&[2; 1]).await.expect_err("stalled");
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            assert!(started.elapsed() >= Duration::from_millis(50));
            let mut patient = WriteDeadline::with_sleeper(Stuck { budget: 0 }, None, sleeper);
            let waited = futures_util::future::select(
                Box::pin(patient.write_all(&[3])),
                Box::pin(smol::Timer::after(Duration::from_millis(100))),
            )
            .await;
            assert!(matches!(waited, futures_util::future::Either::Right(_)));
        });
    }
}
