//! Running an engine on a tokio TCP listener.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_tungstenite::tokio::TokioAdapter;
pub use iii_core::engine::{EngineConfig, EngineStats};
use iii_driver::engine::{serve_connection, start, EngineHandle};
pub use iii_driver::engine::{EngineSettings, EngineStopped};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::runtime::Tokio;

/// The default address: the SDKs' default engine URL is `ws://127.0.0.1:49134`.
pub const DEFAULT_ADDR: &str = "127.0.0.1:49134";

/// An engine serving one listener: the worker control WebSocket at `/`, channel ends at
/// `/ws/channels/{id}?key=…&dir=read|write`, and `/otel` (accepted and discarded).
#[derive(Debug)]
pub struct EngineServer {
    local_addr: SocketAddr,
    handle: EngineHandle,
    stop: Option<oneshot::Sender<()>>,
    accept_loop: JoinHandle<()>,
}

impl EngineServer {
    /// Binds `addr` and starts serving. Port 0 picks a free port (see [`Self::local_addr`]).
    pub async fn bind(addr: impl ToSocketAddrs, settings: EngineSettings) -> io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, settings)
    }

    /// Serves an already bound listener.
    pub fn serve(listener: TcpListener, settings: EngineSettings) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let handle =
            start(Tokio, settings).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (stop, stopped) = oneshot::channel();
        let accept_loop = tokio::spawn(accept_loop(listener, handle.clone(), stopped));
        tracing::info!(%local_addr, "engine listening");
        Ok(Self {
            local_addr,
            handle,
            stop: Some(stop),
            accept_loop,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL workers connect to (`ws://ip:port`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.local_addr)
    }

    /// The engine task's handle (stats, shutdown).
    pub fn handle(&self) -> &EngineHandle {
        &self.handle
    }

    /// Stops accepting, closes every connection (1001) and stops the engine.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.accept_loop).await;
        self.handle.shutdown().await;
    }
}

impl Drop for EngineServer {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    engine: EngineHandle,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = &mut stopped => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                if let Err(error) = stream.set_nodelay(true) {
                    tracing::debug!(%peer, %error, "could not set TCP_NODELAY");
                }
                tokio::spawn(serve_connection(
                    Tokio,
                    engine.clone(),
                    TokioAdapter::new(stream),
                ));
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
