//! [`ChannelWriter`]: the writing end of a channel, under the worker's write window.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use futures_io::AsyncWrite;
use futures_util::future::poll_fn;
use futures_util::{FutureExt, Sink};
use iii_core::channel::ChannelRef;
use iii_core::Text;

use super::credit::WriteCredit;
use super::task::{Command, EndKind};
use super::{Error, Iii};
use crate::runtime::Runtime;

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const ABORTED: u8 = 2;

/// The writing end of a channel. It connects on its first write or close; dropped
/// before either, it has no effect at all, so its ref keeps working wherever it was
/// handed.
///
/// Bytes are taken into the worker's write window (`writer_window_bytes`, 1 MiB by
/// default) and sent from there; a write waits only while that window is full, which
/// happens when the channel's buffer at the engine is full: no reader yet, or a reader
/// slower than the writer. Dropping a writer that was used but not closed aborts it: the
/// reader sees an error, never a clean end.
///
/// # Cancel safety
///
/// Every method leaves the stream consistent if its future is dropped before it
/// completes:
///
/// * [`write`](Self::write) / [`write_bytes`](Self::write_bytes): either none of the
///   data is in the stream (dropped while waiting for window space before any byte was
///   taken) or all of it will be, in order, before anything written later. Nothing is
///   ever sent twice.
/// * [`send_message`](Self::send_message): the message is sent entirely or not at all.
/// * [`close`](Self::close): dropped before it took its turn, nothing happened; after,
///   the close proceeds without being waited for.
/// * `AsyncWrite::poll_write` returns `Ready(Ok(n))` when exactly `n` bytes of *that*
///   buffer were taken, and `Pending` only when none were (so a later call with another
///   buffer is never credited with this one's bytes). `poll_flush` returns once every
///   byte handed over is in the window (it does not wait for the network).
/// * `Sink<Bytes>`: `start_send` takes the whole item; `poll_ready` / `poll_flush`
///   move it into the window as space frees.
///
/// Writes from several tasks sharing one writer are taken one write at a time, in the
/// order they get their turn.
pub struct ChannelWriter<R: Runtime> {
    key: u64,
    commands: UnboundedSender<Command>,
    credit: Arc<WriteCredit>,
    state: AtomicU8,
    /// `Sink::start_send`'s item not yet all in the window, and how much of it is.
    sink_item: Option<(Bytes, usize)>,
    pending_close: Option<oneshot::Receiver<Result<(), Error>>>,
    _runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> fmt::Debug for ChannelWriter<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelWriter")
            .field("key", &self.key)
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> ChannelWriter<R> {
    /// Opens the writing end named by `channel_ref` (a ref received from another worker)
    /// on `iii`'s worker. Nothing is dialed until the first write or close; a wrong or
    /// used ref makes a later write or the close fail.
    pub fn new(iii: &Iii<R>, channel_ref: &ChannelRef) -> Self {
        let key = iii.new_key();
        let credit = iii.new_write_credit();
        let _ = iii.send(Command::OpenEnd {
            key,
            channel_ref: channel_ref.clone(),
            kind: EndKind::Writer(credit.clone()),
        });
        Self::attach(iii, key, credit)
    }

    pub(crate) fn attach(iii: &Iii<R>, key: u64, credit: Arc<WriteCredit>) -> Self {
        Self {
            key,
            commands: iii.commands(),
            credit,
            state: AtomicU8::new(OPEN),
            sink_item: None,
            pending_close: None,
            _runtime: PhantomData,
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.state.load(Ordering::Acquire) == OPEN {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    fn submit(&self, data: Bytes, credited: bool) -> Result<(), Error> {
        let command = Command::Write {
            key: self.key,
            data,
            credited,
        };
        self.commands
            .unbounded_send(command)
            .map_err(|_| Error::Closed)
    }

    /// Writes all of `data` (copied once); completes when the worker's window has taken
    /// every byte. Cancel safe: see the [type docs](Self).
    pub async fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.write_bytes(Bytes::copy_from_slice(data)).await
    }

    /// Writes all of `data` without copying it. Cancel safe: see the [type docs](Self).
    pub async fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.check_open()?;
        if data.is_empty() {
            return Ok(());
        }
        let _turn = self.credit.order.lock().await;
        self.check_open()?;
        let mut write = PartialWrite {
            writer: self,
            data,
            taken: 0,
        };
        poll_fn(|cx| write.poll_take(cx)).await
    }

    /// Sends one text message, in order with the binary data; it counts against the
    /// window like bytes (a message larger than the window waits for an empty window).
    /// Cancel safe: sent entirely or not at all.
    pub async fn send_message(&self, text: &str) -> Result<(), Error> {
        self.check_open()?;
        let _turn = self.credit.order.lock().await;
        self.check_open()?;
        let cost = self.credit.text_cost(text.len());
        poll_fn(|cx| self.credit.poll_take_exact(cx, cost)).await?;
        let command = Command::Text {
            key: self.key,
            text: Text::from(text.to_owned()),
            cost,
        };
        self.commands
            .unbounded_send(command)
            .map_err(|_| Error::Closed)
    }

    /// Ends the stream cleanly after everything written before; resolves once the Close
    /// has been handed to the connection (an error if the end failed, e.g. a refused
    /// ref). A writer that never connected connects first, so its reader ends at once.
    /// Closing twice is harmless. Cancel safe: see the [type docs](Self).
    pub async fn close(&self) -> Result<(), Error> {
        let _turn = self.credit.order.lock().await;
        let answer = match self.request_close() {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ok(()),
            Err(error) => return Err(error),
        };
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Marks the writer closed and asks the task to close; `None` if it already was.
    fn request_close(&self) -> Result<Option<oneshot::Receiver<Result<(), Error>>>, Error> {
        match self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {}
            Err(CLOSED) => return Ok(None),
            Err(_) => return Err(Error::Closed),
        }
        let (reply, answer) = oneshot::channel();
        let command = Command::CloseWriter {
            key: self.key,
            reply,
        };
        self.commands
            .unbounded_send(command)
            .map_err(|_| Error::Closed)?;
        Ok(Some(answer))
    }

    /// Aborts the stream at once: data still in the window is dropped and the reader
    /// sees an error.
    pub fn abort(&self) {
        if self.state.swap(ABORTED, Ordering::AcqRel) != ABORTED {
            let _ = self.commands.unbounded_send(Command::Abort(self.key));
        }
    }

    /// Moves the `Sink` item into the window.
    fn poll_sink_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while let Some((item, taken)) = self.sink_item.as_mut() {
            if *taken == item.len() {
                self.sink_item = None;
                break;
            }
            let n = ready!(self.credit.poll_take(cx, item.len() - *taken))?;
            let piece = item.slice(*taken..*taken + n);
            *taken += n;
            self.submit(piece, true)?;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.pending_close.is_none() {
            if self.state.load(Ordering::Acquire) == OPEN {
                ready!(self.poll_sink_item(cx))?;
            }
            match self.request_close()? {
                Some(answer) => self.pending_close = Some(answer),
                None => return Poll::Ready(Ok(())),
            }
        }
        let Some(answer) = self.pending_close.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(answer.poll_unpin(cx));
        self.pending_close = None;
        Poll::Ready(result.unwrap_or(Err(Error::Closed)))
    }
}

/// A write in progress: `taken` bytes of `data` are in the window. Dropped part-way, it
/// hands the rest to the task, so a write is in the stream entirely or not at all.
struct PartialWrite<'a, R: Runtime> {
    writer: &'a ChannelWriter<R>,
    data: Bytes,
    taken: usize,
}

impl<R: Runtime> PartialWrite<'_, R> {
    fn poll_take(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        while self.taken < self.data.len() {
            let result = ready!(self
                .writer
                .credit
                .poll_take(cx, self.data.len() - self.taken));
            let n = match result {
                Ok(n) => n,
                Err(error) => {
                    // The end is over: the rest is moot.
                    self.taken = self.data.len();
                    return Poll::Ready(Err(error));
                }
            };
            let piece = self.data.slice(self.taken..self.taken + n);
            self.taken += n;
            self.writer.submit(piece, true)?;
        }
        Poll::Ready(Ok(()))
    }
}

impl<R: Runtime> Drop for PartialWrite<'_, R> {
    fn drop(&mut self) {
        if self.taken > 0 && self.taken < self.data.len() {
            let _ = self.writer.submit(self.data.slice(self.taken..), false);
        }
    }
}

/// `poll_write` takes as much of `buf` as the window has room for and returns `Pending`
/// only when it took nothing (see the [type docs](ChannelWriter)); `poll_flush` returns
/// once a `Sink` item is in the window; `poll_close` is a clean
/// [`close`](ChannelWriter::close).
impl<R: Runtime> AsyncWrite for ChannelWriter<R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.check_open()?;
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        ready!(this.poll_sink_item(cx))?;
        let n = ready!(this.credit.poll_take(cx, buf.len()))?;
        this.submit(Bytes::copy_from_slice(&buf[..n]), true)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(ready!(self.poll_sink_item(cx))?))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(ready!(self.poll_close_inner(cx))?))
    }
}

/// Each item is written whole, in order; `poll_close` is a clean
/// [`close`](ChannelWriter::close).
impl<R: Runtime> Sink<Bytes> for ChannelWriter<R> {
    type Error = Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.check_open()?;
        self.poll_sink_item(cx)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), Error> {
        self.check_open()?;
        if self.sink_item.is_some() {
            // `poll_ready` was not called (or not awaited to `Ready`).
            return Err(Error::InvalidOption(
                "Sink::start_send called without a ready poll_ready".into(),
            ));
        }
        if !item.is_empty() {
            self.sink_item = Some((item, 0));
        }
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_sink_item(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.poll_close_inner(cx)
    }
}

impl<R: Runtime> Drop for ChannelWriter<R> {
    fn drop(&mut self) {
        let _ = self.commands.unbounded_send(Command::DropEnd(self.key));
    }
}
