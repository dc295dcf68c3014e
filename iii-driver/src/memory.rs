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
//! A connection whose growth the budget cannot grant is cut (1008) and everything it held
//! is given back when it is dropped. The last [`RESERVE_FRACTION`] of the budget is kept
//! for connections holding at most [`SMALL_HOLDING`] bytes, so connections assembling huge
//! messages cannot starve ordinary small messages of other peers. A peer whose unsent
//! output exceeds its cap, or that keeps sending pings while it reads nothing (each ping
//! queues a pong), is cut as a slow consumer.
//!
//! Per read and per write this costs one frame-header walk and at most one atomic add on
//! the shared counter, only when what the connection holds changed.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};

/// A connection holding at most this many bytes may use the whole budget; beyond it, the
/// last [`RESERVE_FRACTION`] of the budget is out of its reach.
pub const SMALL_HOLDING: usize = 256 * 1024;

/// The part of the budget (1 / this) kept for connections holding at most
/// [`SMALL_HOLDING`] bytes.
pub const RESERVE_FRACTION: usize = 8;

/// Bytes of pings a peer may send while the engine cannot write to it (each queues a
/// pong it does not read) before it is cut as a slow consumer.
pub const PONG_ROOM: usize = 16 * 1024;

/// The engine-wide byte budget shared by every connection's `Metered` stream.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
    peak: AtomicUsize,
    /// Connections cut because the budget could not grant their growth.
    refused: AtomicU64,
    /// Connections cut as slow consumers (unsent output over their cap, or pings they
    /// could not be answered).
    slow: AtomicU64,
}

/// A copy of a [`MemoryBudget`]'s counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// The budget, in bytes.
    pub limit: usize,
    /// Bytes held now: messages in progress and unsent output of every connection.
    pub used: usize,
    /// The most ever held at once.
    pub peak: usize,
    /// Connections cut because the budget could not grant their growth.
    pub refused: u64,
    /// Connections cut as slow consumers.
    pub slow_consumers: u64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
            slow: AtomicU64::new(0),
        }
    }

    /// The counters, now.
    pub fn snapshot(&self) -> MemoryUse {
        MemoryUse {
            limit: self.limit,
            used: self.used.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            slow_consumers: self.slow.load(Ordering::Relaxed),
        }
    }

    /// Charges `n` more bytes to a connection that holds `held` bytes before them.
    fn try_charge(&self, held: usize, n: usize) -> bool {
        let ceiling = if held.saturating_add(n) <= SMALL_HOLDING {
            self.limit
        } else {
            self.limit - self.limit / RESERVE_FRACTION
        };
        let after = self.used.fetch_add(n, Ordering::AcqRel).saturating_add(n);
        if after > ceiling {
            self.used.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        if after > self.peak.load(Ordering::Relaxed) {
            self.peak.fetch_max(after, Ordering::Relaxed);
        }
        true
    }

    fn release(&self, n: usize) {
        if n > 0 {
            self.used.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// Why a [`Metered`] stream cut its connection: the error inside the `io::Error` its
/// reads or writes fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum MemoryCut {
    /// The engine-wide budget could not grant the connection's growth.
    #[error("the engine's memory budget is exhausted")]
    Budget,
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

/// Where the frame parser is in the byte stream the WebSocket layer reads.
#[derive(Debug, Default)]
struct Frames {
    /// Header bytes of the frame being parsed (at most 14).
    header: [u8; 14],
    have: usize,
    /// Payload bytes left in the current frame; `None` while reading a header.
    remaining: Option<u64>,
    /// The current frame is a control frame.
    control: bool,
    /// The current frame ends its message.
    fin: bool,
    /// Bytes of the data message in progress: its payload so far and the header being
    /// read.
    message: usize,
    /// Bytes of the control frame in progress.
    control_bytes: usize,
    /// Bytes of the ping frames seen since the socket last took a byte.
    pings: usize,
    /// Payload bytes of the data frame in progress (and its header while it is read).
    frame: usize,
    /// The largest data frame payload completed so far: the WebSocket layer reserves a
    /// whole frame in its read buffer and keeps that allocation for the connection's life, so
    /// it stays held (and charged) after the message is delivered.
    retained: usize,
}

impl Frames {
    /// What the connection holds: the message and control frame in progress, and the
    /// read buffer its largest frame left behind.
    fn held(&self) -> usize {
        self.message
            .saturating_add(self.control_bytes)
            .saturating_add(self.retained)
    }

    /// Header length once its first two bytes are known.
    fn header_len(&self) -> usize {
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn payload_len(&self) -> u64 {
        match self.header[1] & 0x7f {
            126 => u64::from(u16::from_be_bytes([self.header[2], self.header[3]])),
            127 => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&self.header[2..10]);
                u64::from_be_bytes(bytes)
            }
            n => u64::from(n),
        }
    }

    fn count(&mut self, n: usize) {
        if self.control {
            self.control_bytes = self.control_bytes.saturating_add(n);
        } else {
            self.message = self.message.saturating_add(n);
            self.frame = self.frame.saturating_add(n);
        }
    }

    /// Follows `data`, the next bytes handed to the WebSocket layer.
    fn observe(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.remaining {
                None => {
                    let need = if self.have < 2 { 2 } else { self.header_len() };
                    let take = (need - self.have).min(data.len());
                    self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
                    self.have += take;
                    data = &data[take..];
                    // The first byte says what the frame is.
                    self.control = self.header[0] & 0x08 != 0;
                    self.fin = self.header[0] & 0x80 != 0;
                    self.count(take);
                    if self.have >= 2 && self.have == self.header_len() {
                        // The WebSocket layer parses the header and keeps only the
                        // payload: a message of many fragments holds no header bytes.
                        if !self.control {
                            self.message = self.message.saturating_sub(self.have);
                            self.frame = self.frame.saturating_sub(self.have);
                        }
                        self.remaining = Some(self.payload_len());
                        self.have = 0;
                    }
                }
                Some(left) => {
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    self.count(take);
                    data = &data[take..];
                    self.remaining = Some(left - take as u64);
                }
            }
            if self.remaining == Some(0) {
                self.remaining = None;
                self.frame_done();
            }
        }
    }

    /// The current frame is complete: what it finished is the WebSocket layer's to
    /// deliver now, no longer in progress.
    fn frame_done(&mut self) {
        if self.control {
            if self.header[0] & 0x0f == 0x9 {
                self.pings = self.pings.saturating_add(self.control_bytes);
            }
            self.control_bytes = 0;
            self.control = false;
        } else {
            self.retained = self.retained.max(self.frame);
            self.frame = 0;
            if self.fin {
                self.message = 0;
            }
        }
    }
}

/// The budget's view of one connection's socket (see the module docs).
#[derive(Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    budget: Arc<MemoryBudget>,
    /// Most unsent output the connection may hold.
    unsent_cap: usize,
    frames: Frames,
    /// Unsent output the WebSocket layer holds, as the last write saw it.
    unsent: usize,
    /// Bytes charged for this connection now.
    charged: usize,
    /// The write side stalled (the socket took nothing at the last write).
    stalled: bool,
    /// Set once the connection was cut as a slow consumer: later writes fail at once.
    slow: bool,
}

impl<S> Metered<S> {
    /// Meters `inner` against `budget`; `leftover` are bytes already read past the HTTP
    /// request that the WebSocket layer will parse first.
    pub(crate) fn new(
        inner: S,
        budget: Arc<MemoryBudget>,
        unsent_cap: usize,
        leftover: &[u8],
    ) -> io::Result<Self> {
        let mut metered = Self {
            inner,
            budget,
            unsent_cap,
            frames: Frames::default(),
            unsent: 0,
            charged: 0,
            stalled: false,
            slow: false,
        };
        metered.frames.observe(leftover);
        metered.settle()?;
        Ok(metered)
    }

    /// Brings the charge to what the connection holds now. Growth the budget cannot
    /// grant fails with [`MemoryCut::Budget`].
    fn settle(&mut self) -> io::Result<()> {
        let held = self.frames.held().saturating_add(self.unsent);
        if held > self.charged {
            let more = held - self.charged;
            if !self.budget.try_charge(self.charged, more) {
                self.budget.refused.fetch_add(1, Ordering::Relaxed);
                return Err(MemoryCut::Budget.error());
            }
        } else {
            self.budget.release(self.charged - held);
        }
        self.charged = held;
        Ok(())
    }

    fn slow_consumer(&mut self) -> io::Error {
        if !self.slow {
            self.slow = true;
            self.budget.slow.fetch_add(1, Ordering::Relaxed);
        }
        MemoryCut::SlowConsumer.error()
    }
}

impl<S> Drop for Metered<S> {
    fn drop(&mut self) {
        self.budget.release(self.charged);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(n)) => n,
            other => return other,
        };
        this.frames.observe(&buf[..n]);
        if this.stalled && this.frames.pings > PONG_ROOM {
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
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Err(cut) = this.wrote(buf.len(), &result) {
            return Poll::Ready(Err(cut));
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
