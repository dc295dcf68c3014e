//! [`Runtime`] for tokio.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_tungstenite::tokio::TokioAdapter;
use iii_driver::{BoxFuture, Runtime};
use tokio::net::{TcpListener, TcpStream};

/// The tokio runtime, as the driver sees it. Must be used from inside a tokio runtime.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tokio;

impl Runtime for Tokio {
    type Tcp = TokioAdapter<TcpStream>;
    type Listener = TcpListener;

    fn check(&self) -> Result<(), String> {
        tokio::runtime::Handle::try_current()
            .map(|_| ())
            .map_err(|e| format!("call this inside a tokio runtime ({e})"))
    }

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        tokio::spawn(future);
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep_until(deadline.into()))
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<Self::Tcp>> {
        Box::pin(async move {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(TokioAdapter::new(stream))
        })
    }

    fn bind(&self, addr: String) -> BoxFuture<'static, io::Result<TcpListener>> {
        Box::pin(async move { TcpListener::bind(addr).await })
    }

    fn local_addr(&self, listener: &TcpListener) -> io::Result<SocketAddr> {
        listener.local_addr()
    }

    fn accept<'a>(
        &self,
        listener: &'a TcpListener,
    ) -> BoxFuture<'a, io::Result<(Self::Tcp, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = listener.accept().await?;
            // A peer that already reset the connection can make this fail; the
            // connection then fails on its own, and the accept loop must go on.
            let _ = stream.set_nodelay(true);
            Ok((TokioAdapter::new(stream), peer))
        })
    }

    fn set_keepalive(&self, tcp: &Self::Tcp, idle: Duration) -> io::Result<()> {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(10));
        socket2::SockRef::from(tcp.get_ref()).set_tcp_keepalive(&keepalive)
    }
}
