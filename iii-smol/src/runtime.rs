//! [`Runtime`] for smol.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use iii_driver::{BoxFuture, Runtime};
use smol::net::{TcpListener, TcpStream};

/// The smol runtime, as the driver sees it: tasks go to smol's global executor.
#[derive(Debug, Clone, Copy, Default)]
pub struct Smol;

impl Runtime for Smol {
    type Tcp = TcpStream;
    type Listener = TcpListener;

    fn spawn(&self, future: BoxFuture<'static, ()>) {
        smol::spawn(future).detach();
    }

    fn sleep_until(&self, deadline: Instant) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            smol::Timer::at(deadline).await;
        })
    }

    fn connect(&self, host: String, port: u16) -> BoxFuture<'static, io::Result<TcpStream>> {
        Box::pin(async move {
            let stream = TcpStream::connect((host.as_str(), port)).await?;
            stream.set_nodelay(true)?;
            Ok(stream)
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
    ) -> BoxFuture<'a, io::Result<(TcpStream, SocketAddr)>> {
        Box::pin(async move {
            let (stream, peer) = listener.accept().await?;
            // A peer that already reset the connection can make this fail; the
            // connection then fails on its own, and the accept loop must go on.
            let _ = stream.set_nodelay(true);
            Ok((stream, peer))
        })
    }

    fn set_keepalive(&self, tcp: &Self::Tcp, idle: Duration) -> io::Result<()> {
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(10));
        socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive)
    }
}
