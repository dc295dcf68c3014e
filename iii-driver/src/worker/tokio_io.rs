//! tokio's I/O traits for channel ends (feature `tokio`), delegating to the `futures-io`
//! implementations: the same flow control, the same errors.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_io::AsyncRead;

use super::{ChannelReader, ChannelWriter};
use crate::runtime::Runtime;

/// Implements tokio's `AsyncWrite` for a writer type by its `futures-io` `AsyncWrite`
/// (`poll_shutdown` is `poll_close`), for the native end and the facade's.
macro_rules! tokio_write_by_futures_io {
    ($writer:ident) => {
        impl<R: $crate::runtime::Runtime> tokio::io::AsyncWrite for $writer<R> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                futures_io::AsyncWrite::poll_write(self, cx, buf)
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                futures_io::AsyncWrite::poll_flush(self, cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                futures_io::AsyncWrite::poll_close(self, cx)
            }
        }
    };
}
pub(crate) use tokio_write_by_futures_io;

tokio_write_by_futures_io!(ChannelWriter);

impl<R: Runtime> tokio::io::AsyncRead for ChannelReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let unfilled = buf.initialize_unfilled();
        match AsyncRead::poll_read(self, cx, unfilled) {
            Poll::Ready(Ok(n)) => {
                buf.advance(n);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }
}
