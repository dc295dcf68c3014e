//! [`ChannelReader`]: the reading end of a channel, with backpressure.

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_core::Stream;
use futures_io::AsyncRead;
use futures_util::StreamExt;
use iii_core::channel::ChannelRef;

use super::task::{Command, EndKind, ReaderItem};
use super::{ChannelItem, Error, Iii};
use crate::runtime::Runtime;

type Callback = Box<dyn FnMut(String) + Send>;

/// The reading end of a channel. It connects on its first read; dropped before that,
/// it has no effect at all, so its ref keeps working wherever it was handed.
///
/// Chunks are delivered as they arrive; the worker stops reading the socket while the
/// application holds a full window of unconsumed data. A clean end of stream reads as
/// `None` / EOF; an aborted, lost or refused stream is an error (sticky), never a short
/// success. Dropping a reader that started reading releases its end (the writer's next
/// write fails); [`close`](Self::close) does the same and waits for it.
///
/// # Cancel safety
///
/// [`next_item`](Self::next_item), [`next_binary`](Self::next_binary), the `Stream` and
/// the `AsyncRead` are cancel safe: an item is removed only by the call that returns it.
/// [`read_all`](Self::read_all) is not: dropped part-way, the bytes it gathered are
/// lost (the stream goes on after them). [`close`](Self::close) closes once started;
/// dropping its future only stops the wait.
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
            kind: EndKind::Reader(items),
        });
        Self::attach(iii, key, item_rx)
    }

    pub(crate) fn attach(iii: &Iii<R>, key: u64, items: UnboundedReceiver<ReaderItem>) -> Self {
        Self {
            key,
            commands: iii.commands(),
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

    /// Stops reading before the end of the stream: the engine is told this reader is
    /// gone (1001), so the writer's next write fails with a typed error. A reader that
    /// never attached connects just to say so. Later reads fail with
    /// [`Error::Closed`]. Closing an ended or closed reader does nothing.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.leftover = Bytes::new();
        if self.finished.is_some() {
            return Ok(());
        }
        self.finished = Some(Err(Error::Closed));
        self.commands
            .unbounded_send(Command::CloseReader(self.key))
            .map_err(|_| Error::Closed)?;
        // Everything up to the end notice is moot now.
        while let Some(item) = self.items.next().await {
            if let ReaderItem::End(_) = item {
                break;
            }
        }
        Ok(())
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
