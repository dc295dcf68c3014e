//! Test support: a smol [`Runtime`] and the real engine server on it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

use iii_core::engine::EngineConfig;
use iii_driver::engine::EngineSettings;
use iii_driver::server::EngineServer;
use iii_driver::{BoxFuture, Runtime};
use smol::net::{TcpListener, TcpStream};

/// The smol runtime (the same few lines as `iii-smol`'s, which depends on this crate).
#[derive(Clone, Copy, Debug)]
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
            stream.set_nodelay(true)?;
            Ok((stream, peer))
        })
    }
}

/// The real engine server on an ephemeral loopback port.
pub struct TestEngine {
    pub url: String,
    server: EngineServer,
}

impl TestEngine {
    /// Starts an engine with `config`.
    pub async fn start(config: EngineConfig) -> TestEngine {
        let settings = EngineSettings {
            core: config,
            ..EngineSettings::default()
        };
        let server = EngineServer::bind(Smol, "127.0.0.1:0", settings)
            .await
            .unwrap();
        TestEngine {
            url: server.url(),
            server,
        }
    }

    /// Live channels at the engine.
    pub async fn channels(&self) -> usize {
        self.server.handle().stats().await.unwrap().channels
    }
}
