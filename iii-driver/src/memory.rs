//! The engine-wide byte budget of what connections hold outside the core's accounting:
//! the WebSocket message each one is still receiving (frames read, message not yet
//! whole) and the output its WebSocket layer could not write yet (pongs included).
//!
//! Every engine connection's socket is wrapped in a `Metered` stream, which sits
//! between the WebSocket layer and the socket and so sees every byte both ways:
//!
//! * **Reads**: it follows the frame headers of what it hands the WebSocket layer (a few
//!   integer operations per read, payloads are skipped arithmetically) and knows how many
//!   bytes belong to the data message in progress and to the control frame in progress.
//!   Those bytes are charged to the [`MemoryBudget`] as they arrive and given back when
//!   the message (or control frame) is complete, at which point it is the core's. The
//!   WebSocket layer reserves each frame whole in its read buffer and keeps that
//!   allocation afterwards, so the largest data frame a connection has completed stays
//!   charged until the connection is dropped.
//! * **Writes**: the WebSocket layer always offers its whole unsent buffer to the socket,
//!   so what the socket did not take is exactly what it still holds; that is charged.
//!
//! **Grants.** A connection is charged in grants: when what it holds passes its charge,
//! it asks the budget for what it holds plus a quarter (at least 16 KiB, at most 1 MiB
//! more); the charge is lowered only when what it holds falls to half of that, or to
//! nothing. The charge is never below what the connection holds, so the budget is never
//! weaker than exact accounting; the common read (payload bytes that do not change the
//! grant) touches no shared state.
//!
//! **Who is cut.** Growth the budget cannot grant cuts the largest holder, by fair
//! shares: the listener holding the most, within it the address holding the most, within
//! it the connection holding the most, the one asking counted with its growth (see
//! [`MemoryBudget`]). If that is the one asking, it is refused and cut; otherwise the
//! largest holder is cut and the growth granted. Either way the cut connection gets a
//! 1008 and everything it held is given back. Connections assembling huge messages
//! cannot take the last part of the budget (the reserve, [`BudgetPolicy`]), kept for
//! connections holding little. A peer whose unsent output exceeds its cap, or that keeps
//! sending pings while it reads nothing (each ping queues a pong), is cut as a slow
//! consumer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};

mod frames;
mod holders;

use frames::Frames;
pub use holders::{BudgetPolicy, MemoryBudget, MemoryUse};
pub(crate) use holders::{CutSignal, Owner};

/// The least a grant adds to what a connection holds.
const MIN_SLACK: usize = 16 * 1024;

/// The most a grant adds to what a connection holds.
const MAX_SLACK: usize = 1 << 20;

/// What a connection holding `held` bytes is charged when it asks for more: a quarter
/// more, within [`MIN_SLACK`] and [`MAX_SLACK`].
#[inline]
fn grant_for(held: usize) -> usize {
    if held == 0 {
        return 0;
    }
    held.saturating_add((held / 4).clamp(MIN_SLACK, MAX_SLACK))
}

/// Why a [`Metered`] stream cut its connection: the error inside the `io::Error` its
/// reads or writes fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MemoryCut {
    /// The engine-wide budget could not grant the connection's growth: it was the
    /// largest holder itself.
    #[error("the engine's memory budget is exhausted")]
    Budget,
    /// The connection was the largest holder when another one's growth did not fit.
    #[error("the largest holder of the engine's exhausted memory budget")]
    Largest,
    /// The peer reads too slowly for what is sent to it (its unsent output passed its
    /// cap, or it kept pinging while reading nothing).
    #[error("slow consumer")]
    SlowConsumer,
}

impl MemoryCut {
    /// The cut carried by `error`, if it is one.
    pub(crate) fn of(error: &io::Error) -> Option<Self> {
        error.get_ref()?.downcast_ref::<Self>().copied()
    }

    fn error(self) -> io::Error {
        io::Error::other(self)
    }
}

/// The budget's view of one connection's socket (see the module docs).
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    budget: Arc<MemoryBudget>,
    /// This connection in the budget's registry, and how the budget cuts it.
    id: u64,
    signal: Arc<CutSignal>,
    /// Most unsent output the connection may hold.
    unsent_cap: usize,
    /// Bytes of pings the peer may send while the socket takes nothing.
    pong_room: usize,
    frames: Frames,
    /// Unsent output the WebSocket layer holds, as the last write saw it.
    unsent: usize,
    /// Bytes charged for this connection now (its grant): never less than it holds.
    charged: usize,
    /// The write side stalled (the socket took nothing at the last write).
    stalled: bool,
    /// Set once the connection was cut as a slow consumer: later writes fail at once.
    slow: bool,
    /// Set once the budget cut the connection: its charge was given back, reads fail,
    /// and writes pass uncharged (the Close frame that tells the peer why).
    cut: Option<MemoryCut>,
}

impl<S> Metered<S> {
    /// Meters `inner`, a connection of `owner`, against `budget`; `leftover` are bytes
    /// already read past the HTTP request that the WebSocket layer will parse first.
    pub(crate) fn new(
        inner: S,
        budget: Arc<MemoryBudget>,
        owner: Owner,
        unsent_cap: usize,
        leftover: &[u8],
    ) -> io::Result<Self> {
        let (id, signal) = budget.register(owner);
        let pong_room = budget.policy().pong_room;
        let mut metered = Self {
            inner,
            budget,
            id,
            signal,
            unsent_cap,
            pong_room,
            frames: Frames::default(),
            unsent: 0,
            charged: 0,
            stalled: false,
            slow: false,
            cut: None,
        };
        metered.frames.observe(leftover);
        metered.settle()?;
        Ok(metered)
    }

    /// What the connection holds now.
    #[inline]
    fn held(&self) -> usize {
        self.frames.held().saturating_add(self.unsent)
    }

    /// Fails if the budget has just cut this connection as the largest holder (once:
    /// later the cut is in `self.cut`).
    #[inline]
    fn check_cut(&mut self) -> io::Result<()> {
        if self.cut.is_none() && self.signal.is_cut() {
            // The budget took its charge back when it cut it.
            self.charged = 0;
            self.cut = Some(MemoryCut::Largest);
            return Err(MemoryCut::Largest.error());
        }
        Ok(())
    }

    /// Brings the charge to what the connection holds now (see the module docs on
    /// grants). Growth the budget cannot grant fails with [`MemoryCut::Budget`].
    #[inline]
    fn settle(&mut self) -> io::Result<()> {
        let held = self.held();
        // The common case, kept short: the grant still covers what is held, and what is
        // held is at least half of it (below half is where a grant may be lowered).
        if held <= self.charged && held.saturating_mul(2) >= self.charged {
            return Ok(());
        }
        self.regrant(held)
    }

    /// [`Self::settle`] when the grant must change.
    fn regrant(&mut self, held: usize) -> io::Result<()> {
        if self.cut.is_some() {
            return Ok(());
        }
        if held > self.charged {
            self.check_cut()?;
            match self.budget.grow(self.id, held, grant_for(held)) {
                Some(grant) => self.charged = grant,
                None => {
                    self.check_cut()?;
                    self.budget.refused.fetch_add(1, Ordering::Relaxed);
                    self.budget.unregister(self.id);
                    self.charged = 0;
                    self.cut = Some(MemoryCut::Budget);
                    return Err(MemoryCut::Budget.error());
                }
            }
        } else if self.charged > 0 && (held == 0 || grant_for(held) <= self.charged / 2) {
            let charge = grant_for(held);
            self.budget.shrink(self.id, charge);
            self.charged = charge;
        }
        Ok(())
    }

    fn slow_consumer(&mut self) -> io::Error {
        if !self.slow {
            self.slow = true;
            self.budget.slow.fetch_add(1, Ordering::Relaxed);
        }
        MemoryCut::SlowConsumer.error()
    }

    /// The task waits on the socket: it is the one to wake if the budget cuts this
    /// connection meanwhile (checked again after registering, so no cut is missed).
    fn waiting(&mut self, cx: &Context<'_>) -> io::Result<()> {
        self.signal.register(cx.waker());
        self.check_cut()
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.budget.unregister(self.id);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(cut) = this.cut {
            return Poll::Ready(Err(cut.error()));
        }
        this.check_cut()?;
        let n = match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            Poll::Pending => {
                this.waiting(cx)?;
                return Poll::Pending;
            }
            other => return other,
        };
        this.frames.observe(&buf[..n]);
        if this.stalled && this.frames.pings > this.pong_room {
            // Each of those pings queued a pong the peer is not reading.
            return Poll::Ready(Err(this.slow_consumer()));
        }
        if !this.stalled {
            this.frames.pings = 0;
        }
        this.settle()?;
        Poll::Ready(Ok(n))
    }
}

impl<S: AsyncWrite + Unpin> Metered<S> {
    /// Records what a write of `offered` bytes left unsent.
    fn wrote(&mut self, offered: usize, result: &Poll<io::Result<usize>>) -> io::Result<()> {
        let unsent = match result {
            Poll::Ready(Ok(n)) => offered.saturating_sub(*n),
            Poll::Pending => offered,
            Poll::Ready(Err(_)) => return Ok(()),
        };
        self.stalled = matches!(result, Poll::Pending);
        if !self.stalled {
            self.frames.pings = 0;
        }
        if unsent == self.unsent {
            return Ok(());
        }
        self.unsent = unsent;
        if unsent > self.unsent_cap {
            return Err(self.slow_consumer());
        }
        self.settle()
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.slow {
            return Poll::Ready(Err(MemoryCut::SlowConsumer.error()));
        }
        this.check_cut()?;
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Err(cut) = this.wrote(buf.len(), &result) {
            return Poll::Ready(Err(cut));
        }
        if result.is_pending() {
            this.waiting(cx)?;
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
#[cfg(test)]
mod tests;
