//! An engine serving one TCP listener, on any [`Runtime`].

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use futures_util::future::{self, Either};

use crate::engine::{
    log_refusal, serve_counted, start, DrainOutcome, EngineHandle, EngineSettings, TlsError,
};
use crate::handshake::{refuse, OVERLOADED};
use crate::log_limit::LogLimit;
use crate::metrics::TransportCounters;
use crate::runtime::{now, Runtime};
use crate::slots::SlotRefusal;
use crate::write_deadline::WriteDeadline;

/// The address the SDKs connect to by default (`ws://127.0.0.1:49134`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:49134";

/// An engine serving its listeners: on each, the worker control WebSocket at `/`,
/// channel ends at `/ws/channels/{id}?key=…&dir=read|write`, and `/otel` (accepted and
/// discarded).
#[derive(Debug)]
pub struct EngineServer {
    /// Bound addresses: the main listener's, then those of
    /// [`EngineSettings::listeners`] in order.
    local_addrs: Vec<SocketAddr>,
    handle: EngineHandle,
    /// One per accept loop.
    stop: Vec<oneshot::Sender<()>>,
    stopped: Vec<oneshot::Receiver<()>>,
}

impl EngineServer {
    /// Binds `addr` (`host:port`, port 0 for any) and the address of every listener in
    /// `settings.listeners` on `rt`, and starts serving them all.
    pub async fn bind<R: Runtime>(rt: R, addr: &str, settings: EngineSettings) -> io::Result<Self> {
        let mut listeners = vec![rt.bind(addr.to_owned()).await?];
        for extra in &settings.listeners {
            let bound = rt.bind(extra.addr.clone()).await.map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("listener `{}` on {}: {e}", extra.policy.name, extra.addr),
                )
            })?;
            listeners.push(bound);
        }
        Self::serve_all(rt, listeners, settings)
    }

    /// Serves an already bound main listener (`settings.listeners` must be empty: bind
    /// those with [`EngineServer::bind`] or [`EngineServer::serve_all`]).
    pub fn serve<R: Runtime>(
        rt: R,
        listener: R::Listener,
        settings: EngineSettings,
    ) -> io::Result<Self> {
        Self::serve_all(rt, vec![listener], settings)
    }

    /// Serves already bound listeners: the main one first, then one per entry of
    /// `settings.listeners`, in order. Settings the engine cannot start with (among them
    /// a TLS certificate or key file that cannot be used) are an error of kind
    /// `InvalidInput` wrapping the [`StartError`](crate::engine::StartError), which
    /// names the file (`error.get_ref()` and `downcast_ref`).
    pub fn serve_all<R: Runtime>(
        rt: R,
        listeners: Vec<R::Listener>,
        settings: EngineSettings,
    ) -> io::Result<Self> {
        if listeners.len() != settings.listeners.len() + 1 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} listeners bound for {} configured (the main one plus `listeners`)",
                    listeners.len(),
                    settings.listeners.len() + 1
                ),
            ));
        }
        let local_addrs = listeners
            .iter()
            .map(|l| rt.local_addr(l))
            .collect::<io::Result<Vec<_>>>()?;
        let names: Vec<String> = std::iter::once("main".to_owned())
            .chain(settings.listeners.iter().map(|l| l.policy.name.clone()))
            .collect();
        let handle = start(rt.clone(), settings)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut server = Self {
            local_addrs: local_addrs.clone(),
            handle: handle.clone(),
            stop: Vec::new(),
            stopped: Vec::new(),
        };
        for (index, listener) in listeners.into_iter().enumerate() {
            let (stop, stop_rx) = oneshot::channel();
            let (stopped_tx, stopped) = oneshot::channel();
            let loop_rt = rt.clone();
            let engine = handle.clone();
            rt.spawn(Box::pin(async move {
                accept_loop(loop_rt, listener, index, engine, stop_rx).await;
                let _ = stopped_tx.send(());
            }));
            let url = server.listener_url(index).unwrap_or_default();
            tracing::info!(%url, listener = %names[index], "engine listening");
            server.stop.push(stop);
            server.stopped.push(stopped);
        }
        Ok(server)
    }

    /// The main listener's bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addrs[0]
    }

    /// Every bound address: the main listener's, then those of
    /// [`EngineSettings::listeners`] in order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The URL workers connect to on the main listener: `ws://ip:port`, or
    /// `wss://ip:port` when it serves TLS (a client checks the certificate against the
    /// host it dials: give it a host name the certificate names where the IP is not).
    pub fn url(&self) -> String {
        self.listener_url(0).unwrap_or_default()
    }

    /// The URL of listener `index` (0 is the main one; `i` is `settings.listeners[i - 1]`),
    /// `wss://` for a TLS listener.
    pub fn listener_url(&self, index: usize) -> Option<String> {
        let scheme = if self.handle.tls.is_tls(index) {
            "wss"
        } else {
            "ws"
        };
        self.local_addrs
            .get(index)
            .map(|addr| format!("{scheme}://{addr}"))
    }

    /// Reloads every TLS listener's certificate and key from their files (see
    /// [`EngineHandle::reload_tls`]): what to call on SIGHUP.
    pub fn reload_tls(&self) -> Result<usize, TlsError> {
        self.handle.reload_tls()
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

    /// Drains, then stops (see [`EngineHandle::drain`]): new workers get 503 while
    /// in-flight invocations finish and open channels drain, at most `timeout`; then
    /// every connection is closed with 1001 and accepting stops.
    pub async fn drain(mut self, timeout: Duration) -> DrainOutcome {
        let outcome = self.handle.drain(timeout).await;
        self.stop_accepting().await;
        outcome
    }

    async fn stop_accepting(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        for stopped in self.stopped.drain(..) {
            let _ = stopped.await;
        }
    }
}

impl Drop for EngineServer {
    fn drop(&mut self) {
        // Stop the accept loops; the engine task ends when its last handle is gone.
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// The log line of a connection refused for want of a pre-upgrade slot.
fn refusal_reason(refusal: SlotRefusal) -> &'static str {
    match refusal {
        SlotRefusal::Engine => "too many connections in their upgrade",
        SlotRefusal::Listener => "too many connections in their upgrade on this listener",
        SlotRefusal::Address => "too many connections in their upgrade from this address",
    }
}

/// Accept errors are logged at warn, at most this many per second.
static ACCEPT_ERROR_LOG: LogLimit = LogLimit::new(5, Duration::from_secs(1));

/// A 503 being written by a connection refused before its upgrade; counted so that a
/// flood of refused connections holds a bounded number of sockets too.
struct Refusing(Arc<TransportCounters>);

impl Refusing {
    /// A place to write a refusal, unless `limit` are being written already.
    fn take(transport: &Arc<TransportCounters>, limit: usize) -> Option<Self> {
        let before = transport.refusing.fetch_add(1, Ordering::AcqRel);
        let guard = Self(transport.clone());
        (before < limit).then_some(guard)
    }
}

impl Drop for Refusing {
    fn drop(&mut self) {
        self.0.refusing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A file descriptor held in reserve: when the process runs out of descriptors, freeing
/// it lets the loop accept (and at once close) the connection at the head of the
/// backlog instead of spinning on the error or leaving clients hanging.
fn reserve_descriptor() -> Option<std::fs::File> {
    std::fs::File::open(if cfg!(windows) { "NUL" } else { "/dev/null" }).ok()
}

fn out_of_descriptors(error: &io::Error) -> bool {
    // EMFILE and ENFILE on Unix.
    matches!(error.raw_os_error(), Some(23 | 24))
}

async fn accept_loop<R: Runtime>(
    rt: R,
    listener: R::Listener,
    index: usize,
    engine: EngineHandle,
    mut stop: oneshot::Receiver<()>,
) {
    let settings = engine.settings().clone();
    let transport = engine.transport.clone();
    let mut reserve = reserve_descriptor();
    loop {
        let accepted = match future::select(rt.accept(&listener), &mut stop).await {
            Either::Left((accepted, _)) => accepted,
            Either::Right(_) => return,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                if ACCEPT_ERROR_LOG.admit(Instant::now()).is_some() {
                    tracing::warn!(%error, "accept failed");
                }
                if out_of_descriptors(&error) {
                    if reserve.take().is_some() {
                        // Shed the connection at the head of the backlog.
                        if let Ok((tcp, peer)) = rt.accept(&listener).await {
                            tracing::warn!(%peer, "out of file descriptors: connection dropped");
                            drop(tcp);
                        }
                        reserve = reserve_descriptor();
                    } else {
                        // Nothing to free: let the other tasks run (and release
                        // descriptors) before trying again.
                        rt.sleep_until(now() + Duration::from_millis(1)).await;
                        reserve = reserve_descriptor();
                    }
                }
                continue;
            }
        };
        if let Some(idle) = settings.tcp_keepalive {
            if let Err(error) = rt.set_keepalive(&tcp, idle) {
                tracing::debug!(%peer, %error, "cannot turn on TCP keepalive");
            }
        }
        let slot = match engine.is_running() {
            true => engine.slots.acquire(index, peer.ip()),
            false => Err(SlotRefusal::Engine),
        };
        let slot = match slot {
            Ok(slot) => slot,
            Err(refusal) => {
                transport.refused(OVERLOADED.status);
                let reason = refusal_reason(refusal);
                let refusing = Refusing::take(&transport, settings.max_handshakes);
                // A TLS client could not read a plain answer, and a handshake is what
                // there is no room for: the connection is closed at once (as it is when
                // too many refusals are being written already).
                let Some(refusing) = refusing.filter(|_| !engine.tls.is_tls(index)) else {
                    log_refusal(&engine, peer, &OVERLOADED, reason);
                    drop(tcp);
                    continue;
                };
                let refused_rt = rt.clone();
                let refused_engine = engine.clone();
                let write_timeout = settings.write_timeout;
                rt.spawn(Box::pin(async move {
                    let _refusing = refusing;
                    log_refusal(&refused_engine, peer, &OVERLOADED, reason);
                    let mut tcp = WriteDeadline::new(&refused_rt, tcp, Some(write_timeout));
                    refuse(&mut tcp, OVERLOADED).await;
                }));
                continue;
            }
        };
        let engine = engine.clone();
        let task_rt = rt.clone();
        rt.spawn(Box::pin(async move {
            serve_counted(task_rt, engine, tcp, peer, index, Some(slot)).await;
        }));
    }
}
