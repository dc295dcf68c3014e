//! What the driver needs from an async runtime: spawning, a timer and TCP.
//!
//! `iii-tokio` and `iii-smol` each implement [`Runtime`] in a few lines; everything
//! else (the engine server, the worker SDK, the connection pump) is written once here.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_io::{AsyncRead, AsyncWrite};

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The runtime services the driver uses.
pub trait Runtime: Clone + Send + Sync + 'static {
    /// A connected TCP stream, speaking the `futures-io` traits.
    type Tcp: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// Whether this runtime can run tasks from the calling thread; `Err` says why not
    /// (for example tokio outside a tokio runtime). Checked before anything is spawned.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Runs `future` to completion in the background.
    fn spawn(&self, future: BoxFuture<'static, ()>);

    /// Completes at `deadline`.
    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()>;

    /// A bound TCP listener.
    type Listener: Send + Sync + 'static;

    /// Opens a TCP connection to `host:port` with `TCP_NODELAY` set.
    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Self::Tcp>>;

    /// Binds a listener on `addr` (`host:port`; port 0 picks a free port).
    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<Self::Listener>>;

    /// The address `listener` is bound to.
    fn local_addr(&self, listener: &Self::Listener) -> io::Result<SocketAddr>;

    /// Accepts the next connection on `listener`, with `TCP_NODELAY` set (a socket
    /// option that cannot be set does not fail the accept: the connection still works).
    fn accept<'a>(
        &self,
        listener: &'a Self::Listener,
    ) -> BoxFuture<'a, io::Result<(Self::Tcp, SocketAddr)>>;

    /// Turns on TCP keepalive on `tcp`: probes start after `idle` of silence. The default
    /// does nothing, for runtimes whose sockets cannot do it.
    fn set_keepalive(&self, tcp: &Self::Tcp, idle: Duration) -> io::Result<()> {
        let _ = (tcp, idle);
        Ok(())
    }
}

/// Reads the clock. The one place the driver takes the time: the core never does.
pub fn now() -> Instant {
    Instant::now()
}

/// A 32-byte seed from the operating system for a core machine's CSPRNG, or the
/// operating system's error.
pub fn try_os_seed() -> Result<[u8; 32], getrandom::Error> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    Ok(seed)
}

/// A 32-byte seed from the operating system for a worker's CSPRNG (invocation ids).
/// Without OS randomness it falls back to time-derived bits and logs the failure; the
/// engine, whose keys must be secret, uses [`try_os_seed`] and refuses to start instead.
pub fn os_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    if getrandom::fill(&mut seed).is_err() {
        // No OS randomness at all: fall back to time-derived bits rather than fail.
        // Keys minted from this are weaker; the failure is logged.
        tracing::error!("OS randomness unavailable; seeding from the clock");
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        for (i, byte) in seed.iter_mut().enumerate() {
            *byte = (nanos >> ((i % 16) * 8)) as u8 ^ (i as u8).wrapping_mul(151);
        }
    }
    seed
}
