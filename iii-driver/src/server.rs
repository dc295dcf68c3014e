//! An engine serving one TCP listener, on any [`Runtime`].

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use futures_channel::oneshot;
use futures_util::future::{self, Either};

use crate::engine::{serve_connection, start, EngineHandle, EngineSettings};
use crate::runtime::{now, Runtime};

/// The address the SDKs connect to by default (`ws://127.0.0.1:49134`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:49134";

/// An engine serving one listener: the worker control WebSocket at `/`, channel ends at
/// `/ws/channels/{id}?key=…&dir=read|write`, and `/otel` (accepted and discarded).
#[derive(Debug)]
pub struct EngineServer {
    local_addr: SocketAddr,
    handle: EngineHandle,
    stop: Option<oneshot::Sender<()>>,
    stopped: Option<oneshot::Receiver<()>>,
}

impl EngineServer {
    /// Binds `addr` (`host:port`, port 0 for any) on `rt` and starts serving.
    pub async fn bind<R: Runtime>(rt: R, addr: &str, settings: EngineSettings) -> io::Result<Self> {
        let listener = rt.bind(addr.to_owned()).await?;
        Self::serve(rt, listener, settings)
    }

    /// Serves an already bound listener.
    pub fn serve<R: Runtime>(
        rt: R,
        listener: R::Listener,
        settings: EngineSettings,
    ) -> io::Result<Self> {
        let local_addr = rt.local_addr(&listener)?;
        let handle = start(rt.clone(), settings)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (stop, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let loop_rt = rt.clone();
        let engine = handle.clone();
        rt.spawn(Box::pin(async move {
            accept_loop(loop_rt, listener, engine, stop_rx).await;
            let _ = stopped_tx.send(());
        }));
        tracing::info!(%local_addr, "engine listening");
        Ok(Self {
            local_addr,
            handle,
            stop: Some(stop),
            stopped: Some(stopped),
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
        self.stop_accepting().await;
        self.handle.shutdown().await;
    }

    async fn stop_accepting(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            let _ = stopped.await;
        }
    }
}

impl Drop for EngineServer {
    fn drop(&mut self) {
        // Stop the accept loop; the engine task ends when its last handle is gone.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn accept_loop<R: Runtime>(
    rt: R,
    listener: R::Listener,
    engine: EngineHandle,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        let accepted = match future::select(rt.accept(&listener), &mut stop).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => return,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                rt.spawn(Box::pin(serve_connection(rt.clone(), engine.clone(), tcp)))
            }
            Err(error) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                rt.sleep_until(now() + Duration::from_millis(50)).await;
            }
        }
    }
}
