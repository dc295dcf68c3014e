//! The documentation's channel ends: `&self` methods, `Vec<u8>` chunks, an awaitable
//! `on_message`, built from an engine address and a ref.

use futures_util::lock::Mutex;

use super::{Address, IIIError, StreamChannelRef};
use crate::runtime::Runtime;
use crate::worker;

/// Both ends of a new channel and their refs.
#[derive(Debug)]
pub struct Channel<R: Runtime> {
    /// The local writing end.
    pub writer: ChannelWriter<R>,
    /// The local reading end.
    pub reader: ChannelReader<R>,
    /// The ref that opens the writing end elsewhere.
    pub writer_ref: StreamChannelRef,
    /// The ref that opens the reading end elsewhere.
    pub reader_ref: StreamChannelRef,
}

impl<R: Runtime> Channel<R> {
    pub(crate) fn from_native(channel: worker::Channel<R>) -> Self {
        Self {
            writer: ChannelWriter {
                inner: Ok(channel.writer),
            },
            reader: ChannelReader {
                inner: Ok(Mutex::new(channel.reader)),
            },
            writer_ref: channel.writer_ref,
            reader_ref: channel.reader_ref,
        }
    }
}

/// The writing end of a channel (see [`worker::ChannelWriter`], which does the work:
/// flow control, cancel safety, unused ends dropped without effect).
#[derive(Debug)]
pub struct ChannelWriter<R: Runtime> {
    pub(super) inner: Result<worker::ChannelWriter<R>, IIIError>,
}

impl<R: Runtime> ChannelWriter<R> {
    /// Opens the writing end named by `channel_ref` on the worker behind `address`.
    pub fn new(address: &Address<R>, channel_ref: &StreamChannelRef) -> Self {
        let inner = match &address.worker {
            Ok(iii) => Ok(worker::ChannelWriter::new(iii, channel_ref)),
            Err(error) => Err(error.clone().into()),
        };
        Self { inner }
    }

    fn end(&self) -> Result<&worker::ChannelWriter<R>, IIIError> {
        self.inner.as_ref().map_err(Clone::clone)
    }

    /// Writes all of `data`.
    pub async fn write(&self, data: &[u8]) -> Result<(), IIIError> {
        Ok(self.end()?.write(data).await?)
    }

    /// Sends a text message, in order with the data.
    pub async fn send_message(&self, message: &str) -> Result<(), IIIError> {
        Ok(self.end()?.send_message(message).await?)
    }

    /// Ends the stream cleanly.
    pub async fn close(&self) -> Result<(), IIIError> {
        Ok(self.end()?.close().await?)
    }

    /// The native writer (`AsyncWrite`, `Sink<Bytes>`, zero-copy `write_bytes`).
    pub fn into_native(self) -> Result<worker::ChannelWriter<R>, IIIError> {
        self.inner
    }
}

/// The reading end of a channel (see [`worker::ChannelReader`]). Its methods take
/// `&self`; concurrent reads are served one at a time.
#[derive(Debug)]
pub struct ChannelReader<R: Runtime> {
    pub(super) inner: Result<Mutex<worker::ChannelReader<R>>, IIIError>,
}

impl<R: Runtime> ChannelReader<R> {
    /// Opens the reading end named by `channel_ref` on the worker behind `address`.
    pub fn new(address: &Address<R>, channel_ref: &StreamChannelRef) -> Self {
        let inner = match &address.worker {
            Ok(iii) => Ok(Mutex::new(worker::ChannelReader::new(iii, channel_ref))),
            Err(error) => Err(error.clone().into()),
        };
        Self { inner }
    }

    fn end(&self) -> Result<&Mutex<worker::ChannelReader<R>>, IIIError> {
        self.inner.as_ref().map_err(Clone::clone)
    }

    /// Calls `callback` with every text message met while reading, in order.
    pub async fn on_message<F>(&self, callback: F)
    where
        F: Fn(String) + Send + Sync + 'static,
    {
        if let Ok(end) = self.end() {
            end.lock().await.on_message(callback);
        }
    }

    /// The next binary chunk; `None` at a clean end (an abnormal end is an error).
    pub async fn next_binary(&self) -> Result<Option<Vec<u8>>, IIIError> {
        let mut end = self.end()?.lock().await;
        Ok(end.next_binary().await?.map(Vec::from))
    }

    /// Every remaining binary byte until a clean end. Before it returns, the tasks that
    /// the [`on_message`](Self::on_message) callbacks spawned get a turn, so a message
    /// handed to a spawned task (the documentation's pattern) is seen by the code after
    /// `read_all`.
    pub async fn read_all(&self) -> Result<Vec<u8>, IIIError> {
        let all = self.end()?.lock().await.read_all().await?;
        yield_once().await;
        Ok(all)
    }

    /// Stops reading: the writer's next write fails.
    pub async fn close(&self) -> Result<(), IIIError> {
        Ok(self.end()?.lock().await.close().await?)
    }

    /// The native reader (`AsyncRead`, `Stream`, zero-copy chunks).
    pub fn into_native(self) -> Result<worker::ChannelReader<R>, IIIError> {
        self.inner.map(Mutex::into_inner)
    }
}

/// Returns after one trip through the runtime's scheduler: the task wakes itself and is
/// queued behind the tasks that are ready (those just spawned included).
async fn yield_once() {
    let mut yielded = false;
    futures_util::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}
