//! A socket wrapper that reads in large batches while data flows and holds no buffer
//! while the connection is idle.
//!
//! The WebSocket layer reads at most its read-buffer size per `read` call and keeps that
//! buffer for the life of the connection. A large buffer makes every idle connection cost
//! that much resident memory; a small one turns each 64 KiB frame into many system calls.
//! [`ReadBatch`] separates the two: the WebSocket layer gets a small buffer, and the
//! socket is read `batch` bytes at a time into a buffer that exists only while it holds
//! unread bytes or the peer keeps sending. When a read finds the socket empty and every
//! byte has been handed out, the buffer is freed. Its next size follows the last read
//! (twice as much, between [`MIN_READ`] and `batch`), so a connection that sends small
//! messages never allocates and clears a whole batch.
//!
//! (`futures_util::io::BufReader` would keep its buffer forever.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::io::{AsyncRead, AsyncWrite};

/// The smallest buffer allocated for a socket read.
pub(crate) const MIN_READ: usize = 4 * 1024;

/// Reads the inner stream in batches of up to `batch` bytes; writes pass through.
#[derive(Debug)]
pub(crate) struct ReadBatch<S> {
    inner: S,
    batch: usize,
    /// Size of the next buffer to allocate.
    next_size: usize,
    /// Allocated on demand; empty (no allocation) while idle.
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    /// Keep the buffer while idle (for a connection polled often, such as a worker's
    /// control connection, where freeing it would mean allocating it at every poll).
    hold_while_idle: bool,
}

impl<S> ReadBatch<S> {
    /// Wraps `inner`, reading up to `batch` bytes per system call (at least 1).
    pub(crate) fn new(inner: S, batch: usize) -> Self {
        Self {
            inner,
            batch: batch.max(1),
            next_size: MIN_READ.min(batch.max(1)),
            buf: Vec::new(),
            start: 0,
            end: 0,
            hold_while_idle: false,
        }
    }

    /// Keeps the buffer while the socket is idle (see the type docs for the default).
    pub(crate) fn hold_while_idle(mut self) -> Self {
        self.hold_while_idle = true;
        self
    }

    /// Bytes read from the socket and not yet handed out.
    #[cfg(test)]
    pub(crate) fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The buffer's capacity (0 while idle).
    #[cfg(test)]
    pub(crate) fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn hand_out(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.end - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        n
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadBatch<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if out.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.start < this.end {
            return Poll::Ready(Ok(this.hand_out(out)));
        }
        if out.len() >= this.batch {
            // The caller's buffer is at least a batch: no point in copying twice.
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        if this.buf.len() < this.next_size {
            // First read after idling, or the last read filled the buffer: (re)allocate.
            this.buf = vec![0; this.next_size];
        }
        match Pin::new(&mut this.inner).poll_read(cx, &mut this.buf) {
            Poll::Ready(Ok(n)) => {
                this.next_size = n.saturating_mul(2).max(MIN_READ).min(this.batch);
                this.start = 0;
                this.end = n;
                Poll::Ready(Ok(this.hand_out(out)))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Idle: nothing buffered and nothing to read. Give the memory back.
                if !this.hold_while_idle {
                    this.buf = Vec::new();
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadBatch<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::io::{AsyncReadExt, Cursor};

    /// Yields `Pending` once between chunks, like a socket whose data arrives in bursts.
    struct Bursts {
        chunks: Vec<Vec<u8>>,
        pending_next: bool,
    }

    impl AsyncRead for Bursts {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            out: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.pending_next {
                self.pending_next = false;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.chunks.is_empty() {
                return Poll::Ready(Ok(0));
            }
            let chunk = &mut self.chunks[0];
            let n = out.len().min(chunk.len());
            out[..n].copy_from_slice(&chunk[..n]);
            chunk.drain(..n);
            if chunk.is_empty() {
                self.chunks.remove(0);
                self.pending_next = true;
            }
            Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn small_reads_see_every_byte_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut reader = ReadBatch::new(Cursor::new(data.clone()), 4096);
        let mut got = Vec::new();
        let mut piece = [0u8; 100];
        smol::block_on(async {
            loop {
                let n = reader.read(&mut piece).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&piece[..n]);
            }
        });
        assert_eq!(got, data);
    }

    #[test]
    fn the_buffer_grows_while_reads_fill_it() {
        let data = vec![9u8; 1 << 20];
        let mut reader = ReadBatch::new(Cursor::new(data), 64 * 1024);
        let mut piece = [0u8; 2048];
        let mut sizes = Vec::new();
        smol::block_on(async {
            while reader.read(&mut piece).await.unwrap() > 0 {
                sizes.push(reader.buffer_capacity());
            }
        });
        assert_eq!(sizes[0], MIN_READ);
        assert!(sizes.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(*sizes.last().unwrap(), 64 * 1024);
    }

    #[test]
    fn buffer_is_freed_when_idle_and_large_reads_bypass_it() {
        let bursts = Bursts {
            chunks: vec![vec![1; 3000], vec![2; 10]],
            pending_next: false,
        };
        let mut reader = ReadBatch::new(bursts, 1024);
        smol::block_on(async {
            let mut small = [0u8; 10];
            assert_eq!(reader.read(&mut small).await.unwrap(), 10);
            assert_eq!(reader.buffered(), 1014);
            assert_eq!(reader.buffer_capacity(), 1024);
            // Drain the batch and the rest of the burst.
            let mut rest = vec![0u8; 2990];
            reader.read_exact(&mut rest).await.unwrap();
            assert!(rest.iter().all(|&b| b == 1));
            // The next read waits (Pending once): the buffer is gone meanwhile.
            let read = reader.read(&mut small).await.unwrap();
            assert_eq!(&small[..read], &[2; 10][..read]);
        });
        let mut reader = ReadBatch::new(
            Bursts {
                chunks: vec![vec![7; 8]],
                pending_next: true,
            },
            1024,
        );
        let mut cx = Context::from_waker(futures_util::task::noop_waker_ref());
        let mut small = [0u8; 4];
        assert!(Pin::new(&mut reader)
            .poll_read(&mut cx, &mut small)
            .is_pending());
        assert_eq!(reader.buffer_capacity(), 0);
        let mut large = [0u8; 2048];
        match Pin::new(&mut reader).poll_read(&mut cx, &mut large) {
            Poll::Ready(Ok(8)) => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(reader.buffer_capacity(), 0);
    }
}
