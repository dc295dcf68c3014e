//! Channel end handles: [`ChannelWriter`] and [`ChannelReader`], driven by the worker
//! task under the core's flow control.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_core::Stream;
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::{FutureExt, StreamExt};
use iii_core::channel::ChannelRef;
use iii_core::Text;

use super::task::{Command, ReaderItem, WriterOp};
use super::{Error, Iii};
use crate::runtime::Runtime;

/// Both ends of a new channel and the refs that open them elsewhere.
#[derive(Debug)]
pub struct Channel<R: Runtime> {
    /// The local writing end.
    pub writer: ChannelWriter<R>,
    /// The local reading end.
    pub reader: ChannelReader<R>,
    /// The ref that opens the writing end (pass it to another worker instead of using
    /// `writer`).
    pub writer_ref: ChannelRef,
    /// The ref that opens the reading end (pass it to another worker instead of using
    /// `reader`).
    pub reader_ref: ChannelRef,
}

/// One message read from a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelItem {
    /// A binary chunk.
    Binary(Bytes),
    /// A text message.
    Text(String),
}

const OPEN: u8 = 0;
const CLOSED: u8 = 1;
const ABORTED: u8 = 2;

/// The writing end of a channel. It connects on its first write or close.
///
/// Writes complete when the worker has taken every byte under its write window, so a
/// slow reader slows the writer instead of growing memory. Operations run in the order
/// they are made. Dropping a writer that was not closed aborts it: the reader sees an
/// error, never a clean end.
pub struct ChannelWriter<R: Runtime> {
    key: u64,
    commands: UnboundedSender<Command>,
    state: AtomicU8,
    pending_write: Option<oneshot::Receiver<Result<usize, Error>>>,
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
    /// used ref makes those fail.
    pub fn new(iii: &Iii<R>, channel_ref: &ChannelRef) -> Self {
        let key = iii.new_key();
        let _ = iii.send(Command::OpenEnd {
            key,
            channel_ref: channel_ref.clone(),
            items: None,
        });
        Self::attach(iii, key)
    }

    pub(crate) fn attach(iii: &Iii<R>, key: u64) -> Self {
        Self {
            key,
            commands: iii.commands.clone(),
            state: AtomicU8::new(OPEN),
            pending_write: None,
            pending_close: None,
            _runtime: PhantomData,
        }
    }

    fn submit<T>(&self, op: WriterOp, answer: oneshot::Receiver<Result<T, Error>>) -> Op<T> {
        let command = Command::Writer { key: self.key, op };
        match self.commands.unbounded_send(command) {
            Ok(()) => Op::Waiting(answer),
            Err(_) => Op::Failed(Error::Closed),
        }
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.state.load(Ordering::Acquire) == OPEN {
            Ok(())
        } else {
            Err(Error::Closed)
        }
    }

    /// Writes all of `data` (copied once), completing when the worker has accepted
    /// every byte.
    pub async fn write(&self, data: &[u8]) -> Result<(), Error> {
        self.write_bytes(Bytes::copy_from_slice(data)).await
    }

    /// Writes all of `data` without copying it.
    pub async fn write_bytes(&self, data: Bytes) -> Result<(), Error> {
        self.check_open()?;
        let (reply, answer) = oneshot::channel();
        let op = WriterOp::Write {
            data,
            all: true,
            reply,
        };
        self.submit(op, answer).wait().await.map(|_| ())
    }

    /// Sends one text message, in order with the binary data.
    pub async fn send_message(&self, text: &str) -> Result<(), Error> {
        self.check_open()?;
        let (reply, answer) = oneshot::channel();
        let op = WriterOp::Text {
            text: Text::from(text.to_owned()),
            reply,
        };
        self.submit(op, answer).wait().await
    }

    /// Ends the stream cleanly once everything written before is sent; resolves when
    /// the Close has been handed to the connection. A writer that never connected
    /// connects first, so its reader ends at once. Closing twice is harmless.
    pub async fn close(&self) -> Result<(), Error> {
        match self
            .state
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {}
            Err(CLOSED) => return Ok(()),
            Err(_) => return Err(Error::Closed),
        }
        let (reply, answer) = oneshot::channel();
        let op = WriterOp::Close { reply };
        self.submit(op, answer).wait().await
    }

    /// Aborts the stream at once: queued data is dropped and the reader sees an error.
    pub fn abort(&self) {
        if self.state.swap(ABORTED, Ordering::AcqRel) != ABORTED {
            let _ = self.commands.unbounded_send(Command::Abort(self.key));
        }
    }
}

enum Op<T> {
    Waiting(oneshot::Receiver<Result<T, Error>>),
    Failed(Error),
}

impl<T> Op<T> {
    async fn wait(self) -> Result<T, Error> {
        match self {
            Op::Waiting(answer) => answer.await.unwrap_or(Err(Error::Closed)),
            Op::Failed(error) => Err(error),
        }
    }
}

fn poll_answer<T>(
    slot: &mut Option<oneshot::Receiver<Result<T, Error>>>,
    cx: &mut Context<'_>,
) -> Poll<io::Result<T>> {
    let Some(answer) = slot.as_mut() else {
        return Poll::Ready(Err(Error::Closed.into()));
    };
    let result = ready!(answer.poll_unpin(cx));
    *slot = None;
    Poll::Ready(match result {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(Error::Closed.into()),
    })
}

/// `poll_write` accepts as much as the write window takes (waiting, without busy
/// polling, while it is full). As usual for `AsyncWrite`, after `Pending` call again with
/// the same buffer: the bytes were already handed over. `poll_flush` returns at once
/// (accepted bytes are the worker's to send); `poll_close` is a clean [`close`](Self::close).
impl<R: Runtime> AsyncWrite for ChannelWriter<R> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending_write.is_none() {
            this.check_open()?;
            if buf.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let (reply, answer) = oneshot::channel();
            let op = WriterOp::Write {
                data: Bytes::copy_from_slice(buf),
                all: false,
                reply,
            };
            match this.submit(op, answer) {
                Op::Waiting(answer) => this.pending_write = Some(answer),
                Op::Failed(error) => return Poll::Ready(Err(error.into())),
            }
        }
        poll_answer(&mut this.pending_write, cx)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.pending_close.is_none() {
            match this
                .state
                .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {}
                Err(CLOSED) => return Poll::Ready(Ok(())),
                Err(_) => return Poll::Ready(Err(Error::Closed.into())),
            }
            let (reply, answer) = oneshot::channel();
            let op = WriterOp::Close { reply };
            match this.submit(op, answer) {
                Op::Waiting(answer) => this.pending_close = Some(answer),
                Op::Failed(error) => return Poll::Ready(Err(error.into())),
            }
        }
        poll_answer(&mut this.pending_close, cx)
    }
}

impl<R: Runtime> Drop for ChannelWriter<R> {
    fn drop(&mut self) {
        let _ = self.commands.unbounded_send(Command::DropEnd(self.key));
    }
}

type Callback = Box<dyn FnMut(String) + Send>;

/// The reading end of a channel. It connects on its first read.
///
/// Chunks are delivered as they arrive; the worker stops reading the socket while the
/// application holds a full window of unconsumed data. A clean end of stream reads as
/// `None` / EOF; an aborted, lost or refused stream is an error (sticky), never a short
/// success. Dropping the reader releases its end.
pub struct ChannelReader<R: Runtime> {
    key: u64,
    commands: UnboundedSender<Command>,
    items: UnboundedReceiver<ReaderItem>,
    started: bool,
    finished: Option<Result<(), Error>>,
    stream_done: bool,
    callbacks: Vec<Callback>,
    leftover: Bytes,
    _runtime: PhantomData<fn() -> R>,
}

impl<R: Runtime> fmt::Debug for ChannelReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelReader")
            .field("key", &self.key)
            .field("started", &self.started)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> ChannelReader<R> {
    /// Opens the reading end named by `channel_ref` (a ref received from another worker)
    /// on `iii`'s worker. It dials on the first read; a wrong or used ref makes that
    /// read fail.
    pub fn new(iii: &Iii<R>, channel_ref: &ChannelRef) -> Self {
        let key = iii.new_key();
        let (items, item_rx) = futures_channel::mpsc::unbounded();
        let _ = iii.send(Command::OpenEnd {
            key,
            channel_ref: channel_ref.clone(),
            items: Some(items),
        });
        Self::attach(iii, key, item_rx)
    }

    pub(crate) fn attach(iii: &Iii<R>, key: u64, items: UnboundedReceiver<ReaderItem>) -> Self {
        Self {
            key,
            commands: iii.commands.clone(),
            items,
            started: false,
            finished: None,
            stream_done: false,
            callbacks: Vec::new(),
            leftover: Bytes::new(),
            _runtime: PhantomData,
        }
    }

    /// Calls `callback` with every text message that [`next_binary`](Self::next_binary),
    /// [`read_all`](Self::read_all), the `Stream` or the `AsyncRead` reach, in order with
    /// the binary data. ([`next_item`](Self::next_item) returns texts instead.)
    pub fn on_message(&mut self, callback: impl FnMut(String) + Send + 'static) {
        self.callbacks.push(Box::new(callback));
    }

    /// The next message, binary or text, in arrival order; `None` at a clean end.
    pub async fn next_item(&mut self) -> Result<Option<ChannelItem>, Error> {
        futures_util::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The next binary chunk (text messages go to the `on_message` callbacks); `None` at
    /// a clean end.
    pub async fn next_binary(&mut self) -> Result<Option<Bytes>, Error> {
        futures_util::future::poll_fn(|cx| self.poll_binary(cx)).await
    }

    /// Every remaining binary byte until a clean end.
    pub async fn read_all(&mut self) -> Result<Vec<u8>, Error> {
        let mut all = Vec::new();
        while let Some(chunk) = self.next_binary().await? {
            all.extend_from_slice(&chunk);
        }
        Ok(all)
    }

    fn consumed(&self, bytes: usize) {
        let command = Command::Consumed {
            key: self.key,
            bytes,
        };
        let _ = self.commands.unbounded_send(command);
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<ChannelItem>, Error>> {
        if !self.leftover.is_empty() {
            let chunk = std::mem::take(&mut self.leftover);
            return Poll::Ready(Ok(Some(ChannelItem::Binary(chunk))));
        }
        if let Some(finished) = &self.finished {
            return Poll::Ready(finished.clone().map(|()| None));
        }
        if !self.started {
            self.started = true;
            let _ = self
                .commands
                .unbounded_send(Command::StartReading(self.key));
        }
        let item = match ready!(self.items.poll_next_unpin(cx)) {
            Some(ReaderItem::Binary(data)) => {
                self.consumed(data.len());
                ChannelItem::Binary(data)
            }
            Some(ReaderItem::Text(text)) => {
                self.consumed(text.len());
                ChannelItem::Text(text)
            }
            Some(ReaderItem::End(result)) => {
                self.finished = Some(result.clone());
                return Poll::Ready(result.map(|()| None));
            }
            None => {
                self.finished = Some(Err(Error::Closed));
                return Poll::Ready(Err(Error::Closed));
            }
        };
        Poll::Ready(Ok(Some(item)))
    }

    fn poll_binary(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Error>> {
        loop {
            match ready!(self.poll_item(cx))? {
                Some(ChannelItem::Binary(data)) => return Poll::Ready(Ok(Some(data))),
                Some(ChannelItem::Text(text)) => {
                    if let Some((last, others)) = self.callbacks.split_last_mut() {
                        for callback in others {
                            callback(text.clone());
                        }
                        last(text);
                    }
                }
                None => return Poll::Ready(Ok(None)),
            }
        }
    }
}

/// Binary chunks; text messages go to the `on_message` callbacks. An abnormal end is
/// yielded once as `Err`, then the stream ends.
impl<R: Runtime> Stream for ChannelReader<R> {
    type Item = Result<Bytes, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stream_done {
            return Poll::Ready(None);
        }
        match ready!(self.poll_binary(cx)) {
            Ok(Some(data)) => Poll::Ready(Some(Ok(data))),
            Ok(None) => {
                self.stream_done = true;
                Poll::Ready(None)
            }
            Err(error) => {
                self.stream_done = true;
                Poll::Ready(Some(Err(error)))
            }
        }
    }
}

/// The binary bytes as a byte stream; EOF only at a clean end, an error otherwise.
impl<R: Runtime> AsyncRead for ChannelReader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let this = &mut *self;
        let mut chunk = match ready!(this.poll_binary(cx)) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Poll::Ready(Ok(0)),
            Err(error) => return Poll::Ready(Err(error.into())),
        };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        chunk.advance(n);
        this.leftover = chunk;
        Poll::Ready(Ok(n))
    }
}

impl<R: Runtime> Drop for ChannelReader<R> {
    fn drop(&mut self) {
        let _ = self.commands.unbounded_send(Command::DropEnd(self.key));
    }
}
