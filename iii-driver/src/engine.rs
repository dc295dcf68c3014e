//! The engine server: one task owns the core [`Engine`]; each accepted TCP connection
//! runs [`serve_connection`] (the HTTP upgrade, then the connection pump).
//!
//! If the engine task ends for any reason (a panic included), every upgrade waiting for
//! its decision and every later one is answered 503, and [`EngineHandle::stopped`]
//! resolves, so the process around it can exit and be restarted.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::future::{self, Either, Shared};
use futures_util::{FutureExt, StreamExt};
use std::collections::BTreeMap;
use std::net::IpAddr;

use iii_core::engine::{
    Accepted, Admission, ConfigError, Engine, EngineConfig, EngineEvent, EngineMetrics,
    EngineOutput, EngineStats, ListenerPolicy, Ticket,
};
use iii_core::upgrade::{parse_target, Rejection, UpgradeRequest};
use iii_core::PeerClose;
use subtle::ConstantTimeEq;

use crate::conn::{pump, ConnEnds, ConnEvent, ConnOptions, Conns, Liveness, Ready};
use crate::handshake::{
    read_request, refusal_for, refuse, respond, switch, Endpoint, HeadError, PlainRequest, Refusal,
    Request,
};
use crate::log_limit::LogLimit;
use crate::metrics::{self, Snapshot, TransportCounters};
use crate::read_batch::ReadBatch;
use crate::runtime::{now, try_os_seed, BoxFuture, Runtime};
use crate::write_deadline::WriteDeadline;

/// Settings of an engine server: the core's limits plus the transport's.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The core's limits and timeouts (see [`EngineConfig`]).
    pub core: EngineConfig,
    /// A new TCP connection must send its whole upgrade request within this time, or it
    /// is dropped. Default 10 s (the reference's `handshake_timeout_ms`).
    pub handshake_timeout: Duration,
    /// TCP connections that may be in their HTTP upgrade at once; more are answered 503
    /// at once, so silent connections cannot exhaust file descriptors. Default 1024.
    pub max_handshakes: usize,
    /// Largest HTTP request head accepted (431 beyond). Default 16 KiB.
    pub max_request_head: usize,
    /// Read buffer of each WebSocket, in bytes: kept for the connection's life, so it is
    /// what an idle connection costs; it grows while a larger message is assembled.
    /// Default 2 KiB.
    pub read_buffer_bytes: usize,
    /// Largest read from a socket, in bytes. The buffer for it exists only while bytes
    /// arrive (it is freed whenever the socket has nothing more to read), so a streaming
    /// connection needs one system call per 64 KiB frame while an idle one holds only
    /// its `read_buffer_bytes`. Default 64 KiB.
    pub socket_read_bytes: usize,
    /// Write buffer of each WebSocket before it writes to the socket (messages are also
    /// flushed explicitly). Default 64 KiB.
    pub write_buffer_bytes: usize,
    /// A peer that accepts no bytes for this long while the engine writes to it is
    /// dropped and its slot freed. Default 30 s.
    pub write_timeout: Duration,
    /// The engine sends a WebSocket Ping to a connection it has heard nothing from for
    /// this long. Default 20 s (the published SDKs ping every 20 s themselves).
    pub ping_interval: Duration,
    /// A connection the engine has heard nothing from (not even a Pong) for this long is
    /// dropped, and a worker's functions are unregistered. Must exceed `ping_interval`.
    /// Connections the engine is not reading (a paused channel writer) are exempt while
    /// paused. Default 60 s.
    pub idle_timeout: Duration,
    /// TCP keepalive on accepted sockets: probes start after this much silence. `None`
    /// turns keepalive off. Default 60 s.
    pub tcp_keepalive: Option<Duration>,
    /// Bearer token of `GET /metrics` and `GET /healthz`. Unset, they take the workers'
    /// token (`core.auth_token`) when there is one, and are open otherwise. Default none.
    pub metrics_token: Option<String>,
    /// Worker listeners beyond the main one, each with its own address and policy (for
    /// example an RBAC listener for untrusted workers): the core's listener `i` is
    /// `listeners[i - 1]`, and `core.listeners` is filled from here (leave it empty).
    /// [`crate::server::EngineServer::bind`] binds them all. Default none.
    pub listeners: Vec<ListenerSettings>,
}

/// A worker listener beyond the main one.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Where it listens (`host:port`; port 0 picks a free port).
    pub addr: String,
    /// How it treats the workers that connect to it.
    pub policy: ListenerPolicy,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            core: EngineConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            max_request_head: 16 * 1024,
            read_buffer_bytes: 2 * 1024,
            socket_read_bytes: 64 * 1024,
            write_buffer_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(30),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            tcp_keepalive: Some(Duration::from_secs(60)),
            metrics_token: None,
            listeners: Vec::new(),
        }
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting cannot work.
    #[error("invalid settings: {0}")]
    Config(#[from] ConfigError),
    /// A transport setting cannot work.
    #[error("invalid settings: {0}")]
    Transport(String),
    /// The operating system's random number generator failed: no key the engine could
    /// mint would be secret, so it does not start.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
}

impl EngineSettings {
    /// Checks that the settings can work together (the core's and the transport's).
    pub fn validate(&self) -> Result<(), StartError> {
        if !self.core.listeners.is_empty() {
            return Err(StartError::Transport(
                "set extra listeners through `listeners` (with their addresses), not `core.listeners`"
                    .to_owned(),
            ));
        }
        self.core_config().validate()?;
        let positive = [
            ("handshake_timeout", self.handshake_timeout),
            ("write_timeout", self.write_timeout),
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
        ];
        for (name, value) in positive {
            if value.is_zero() {
                return Err(StartError::Transport(format!(
                    "`{name}` must be greater than zero"
                )));
            }
            if value > iii_core::engine::MAX_TIMEOUT {
                return Err(StartError::Transport(format!(
                    "`{name}` is longer than one year"
                )));
            }
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(StartError::Transport(
                "`idle_timeout` must exceed `ping_interval`".to_owned(),
            ));
        }
        let sizes = [
            ("max_handshakes", self.max_handshakes),
            ("max_request_head", self.max_request_head),
            ("read_buffer_bytes", self.read_buffer_bytes),
            ("socket_read_bytes", self.socket_read_bytes),
            ("write_buffer_bytes", self.write_buffer_bytes),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, value)| *value == 0) {
            return Err(StartError::Transport(format!(
                "`{name}` must be greater than zero"
            )));
        }
        if let Some(token) = &self.metrics_token {
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(StartError::Transport(
                    "`metrics_token` must be non-empty and contain no whitespace".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// The core's configuration, with the listeners' policies.
    fn core_config(&self) -> EngineConfig {
        let mut core = self.core.clone();
        core.listeners = self.listeners.iter().map(|l| l.policy.clone()).collect();
        core
    }

    /// The policy of listener `listener` (0 is the main one, always trusted).
    pub(crate) fn listener_policy(&self, listener: usize) -> Option<&ListenerPolicy> {
        listener
            .checked_sub(1)
            .and_then(|i| self.listeners.get(i))
            .map(|l| &l.policy)
    }

    /// The token `/metrics` and `/healthz` require, if any.
    fn endpoint_token(&self) -> Option<&str> {
        self.metrics_token
            .as_deref()
            .or(self.core.auth_token.as_deref())
    }

    fn conn_options(&self, accepted: &Accepted) -> ConnOptions {
        ConnOptions {
            read_ahead_bytes: accepted.read_ahead_bytes,
            liveness: Liveness {
                ping_after: Some(self.ping_interval),
                idle_timeout: Some(self.idle_timeout),
            },
        }
    }
}

type AcceptReply = Result<(Accepted, ConnEnds), Rejection>;

enum Input {
    Accept {
        target: String,
        authorization: Option<String>,
        origin: Option<String>,
        listener: usize,
        peer: IpAddr,
        headers: Vec<(String, String)>,
        reply: oneshot::Sender<AcceptReply>,
    },
    Conn(ConnEvent),
    Stats(oneshot::Sender<EngineStats>),
    Metrics(oneshot::Sender<(EngineMetrics, EngineStats)>),
    Drain {
        until: Instant,
        done: oneshot::Sender<DrainOutcome>,
    },
    Shutdown(oneshot::Sender<()>),
    /// Fault injection for tests: make the engine task panic.
    #[cfg(feature = "fault-injection")]
    Panic,
}

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every invocation was answered and every channel finished.
    Idle,
    /// The drain timeout passed; what was left was closed with 1001.
    TimedOut,
}

/// How the engine task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineExit {
    /// It was shut down.
    Shutdown,
    /// It panicked (a bug: the panic message was logged).
    Panicked,
    /// Every handle to it was dropped.
    Abandoned,
}

/// A handle to a running engine task. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: UnboundedSender<Input>,
    settings: Arc<EngineSettings>,
    running: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    exit: Shared<oneshot::Receiver<EngineExit>>,
    pub(crate) transport: Arc<TransportCounters>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

/// The engine task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine has stopped")]
pub struct EngineStopped;

impl EngineHandle {
    /// Current counts (connections, channels, buffered bytes, ...).
    pub async fn stats(&self) -> Result<EngineStats, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .unbounded_send(Input::Stats(reply))
            .map_err(|_| EngineStopped)?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Closes every connection (1001) and stops the engine task.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.unbounded_send(Input::Shutdown(reply)).is_ok() {
            let _ = done.await;
        }
    }

    /// True while the engine task runs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// True once a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// True while the engine takes new workers: running and not draining (what
    /// `GET /healthz` answers 200 for).
    pub fn is_serving(&self) -> bool {
        self.is_running() && !self.is_draining()
    }

    /// Drains, then stops: from now on new workers are refused (503) while connected
    /// workers go on, in-flight invocations finish and open channels drain; once nothing
    /// is in flight, or after `timeout`, every connection is closed with 1001 and the
    /// engine task stops.
    pub async fn drain(&self, timeout: Duration) -> DrainOutcome {
        self.draining.store(true, Ordering::Release);
        let (done, outcome) = oneshot::channel();
        let until = now().checked_add(timeout).unwrap_or_else(now);
        if self
            .tx
            .unbounded_send(Input::Drain { until, done })
            .is_err()
        {
            return DrainOutcome::Idle;
        }
        outcome.await.unwrap_or(DrainOutcome::Idle)
    }

    /// What `GET /metrics` shows, now.
    async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.tx.unbounded_send(Input::Metrics(reply)).ok()?;
        let (metrics, stats) = answer.await.ok()?;
        Some(Snapshot::new(
            metrics,
            stats,
            &self.transport,
            self.is_draining(),
        ))
    }

    /// Resolves when the engine task has ended, with how.
    pub async fn stopped(&self) -> EngineExit {
        self.exit.clone().await.unwrap_or(EngineExit::Abandoned)
    }

    /// The settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Makes the engine task panic, to test what happens around it. Only with the
    /// `fault-injection` feature; never enable it in production.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_panic(&self) {
        let _ = self.tx.unbounded_send(Input::Panic);
    }
}

/// Starts the engine task on `rt`. Feed it connections with [`serve_connection`].
pub fn start<R: Runtime>(rt: R, settings: EngineSettings) -> Result<EngineHandle, StartError> {
    settings.validate()?;
    let seed = try_os_seed().map_err(|e| StartError::Randomness(e.to_string()))?;
    let engine = Engine::new(settings.core_config(), seed, now())?;
    let (tx, rx) = futures_channel::mpsc::unbounded();
    let (exit_tx, exit_rx) = oneshot::channel();
    let running = Arc::new(AtomicBool::new(true));
    let settings = Arc::new(settings);
    let handle = EngineHandle {
        tx,
        settings: settings.clone(),
        running: running.clone(),
        draining: Arc::new(AtomicBool::new(false)),
        exit: exit_rx.shared(),
        transport: Arc::new(TransportCounters::default()),
    };
    let task = AssertUnwindSafe(run(rt.clone(), engine, rx, settings)).catch_unwind();
    rt.spawn(Box::pin(async move {
        let exit = match task.await {
            Ok(()) => EngineExit::Shutdown,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %message, "the engine task panicked; the engine stops");
                EngineExit::Panicked
            }
        };
        running.store(false, Ordering::Release);
        let _ = exit_tx.send(exit);
    }));
    Ok(handle)
}

/// Refused upgrades are logged at info, at most this many per second.
static REFUSAL_LOG: LogLimit = LogLimit::new(10, Duration::from_secs(1));

/// Logs a refused upgrade (rate-limited; never the request target, which can hold a
/// channel key, nor any header).
pub(crate) fn log_refusal(peer: SocketAddr, refusal: &Refusal, reason: &str) {
    if let Some(suppressed) = REFUSAL_LOG.admit(Instant::now()) {
        tracing::info!(
            %peer,
            status = refusal.status,
            reason,
            suppressed_since_last = suppressed,
            "upgrade refused"
        );
    }
}

/// Serves one accepted TCP connection: reads the upgrade request, lets the engine decide
/// (answering 400/401/403/404/426/503 before the upgrade when it refuses), then runs the
/// WebSocket until it ends.
pub async fn serve_connection<R: Runtime>(
    rt: R,
    engine: EngineHandle,
    tcp: R::Tcp,
    peer: SocketAddr,
) {
    serve_counted(rt, engine, tcp, peer, 0, ()).await;
}

/// [`serve_connection`] for a connection that arrived on listener `listener` (an index
/// into [`EngineSettings::listeners`] plus one; 0 is the main listener).
pub async fn serve_connection_on<R: Runtime>(
    rt: R,
    engine: EngineHandle,
    tcp: R::Tcp,
    peer: SocketAddr,
    listener: usize,
) {
    serve_counted(rt, engine, tcp, peer, listener, ()).await;
}

/// [`serve_connection_on`], dropping `handshake` as soon as the upgrade is decided (the
/// accept loop counts connections in their upgrade with it).
pub(crate) async fn serve_counted<R: Runtime, G>(
    rt: R,
    engine: EngineHandle,
    tcp: R::Tcp,
    peer: SocketAddr,
    listener: usize,
    handshake: G,
) {
    let settings = engine.settings.clone();
    let mut tcp = WriteDeadline::new(&rt, tcp, Some(settings.write_timeout));
    let deadline = rt.sleep_until(now() + settings.handshake_timeout);
    let head = {
        let head = std::pin::pin!(read_request(&mut tcp, settings.max_request_head));
        match future::select(head, deadline).await {
            Either::Left((head, _)) => head,
            Either::Right(_) => {
                tracing::debug!(%peer, "no upgrade request within the handshake timeout");
                return;
            }
        }
    };
    let mut request = match head {
        Ok(Request::Upgrade(request)) => request,
        Ok(Request::Plain(request)) => {
            drop(handshake);
            // Operational endpoints are for operators: never on an untrusted listener.
            if settings
                .listener_policy(listener)
                .is_some_and(|policy| policy.rbac.is_some())
            {
                let refusal = refusal_for(Rejection::NotFound);
                engine.transport.refused(refusal.status);
                refuse(&mut tcp, refusal).await;
            } else {
                serve_endpoint(&engine, &mut tcp, request, peer).await;
            }
            return;
        }
        Err(HeadError::Refuse(refusal)) => {
            engine.transport.refused(refusal.status);
            log_refusal(peer, &refusal, refusal.body);
            refuse(&mut tcp, refusal).await;
            return;
        }
        Err(HeadError::Io) => return,
    };
    // Pure routing first: no engine state is touched for a malformed URL.
    if let Err(rejection) = parse_target(&request.target) {
        let refusal = refusal_for(rejection);
        engine.transport.refused(refusal.status);
        log_refusal(peer, &refusal, rejection.reason());
        refuse(&mut tcp, refusal).await;
        return;
    }
    let (reply, decision) = oneshot::channel();
    let asked = engine.tx.unbounded_send(Input::Accept {
        target: request.target.clone(),
        authorization: request.authorization.clone(),
        origin: request.origin.clone(),
        listener,
        peer: peer.ip(),
        headers: std::mem::take(&mut request.headers),
        reply,
    });
    let decision = match (asked, decision.await) {
        (Ok(()), Ok(decision)) => decision,
        // The engine task is gone: a clear answer, so the client retries elsewhere.
        _ => Err(Rejection::Unavailable),
    };
    let (accepted, ends) = match decision {
        Ok(accepted) => accepted,
        Err(rejection) => {
            let refusal = refusal_for(rejection);
            log_refusal(peer, &refusal, rejection.reason());
            refuse(&mut tcp, refusal).await;
            return;
        }
    };
    drop(handshake);
    let conn = accepted.conn;
    if switch(&mut tcp, &request).await.is_err() {
        let _ = engine
            .tx
            .unbounded_send(Input::Conn(ConnEvent::Closed(conn, PeerClose::Lost)));
        return;
    }
    tracing::debug!(%conn, %peer, kind = ?accepted.kind, "connection accepted");
    // One byte over the core's limit reaches the core, which answers with its close code;
    // anything larger is cut off by the WebSocket layer (reported as 1009).
    let config = WebSocketConfig::default()
        .read_buffer_size(settings.read_buffer_bytes)
        .write_buffer_size(settings.write_buffer_bytes)
        .max_message_size(Some(accepted.max_message_bytes.saturating_add(1)))
        .max_frame_size(Some(accepted.max_message_bytes.saturating_add(1)));
    let tcp = ReadBatch::new(tcp, settings.socket_read_bytes);
    let ws =
        WebSocketStream::from_partially_read(tcp, request.leftover, Role::Server, Some(config))
            .await;
    pump(rt, ws, conn, ends, engine.tx.clone(), Input::Conn).await;
}

/// Answers `GET /metrics` or `GET /healthz`: the same token and origin rules as
/// upgrades (see [`EngineSettings::metrics_token`]).
async fn serve_endpoint<S>(
    engine: &EngineHandle,
    tcp: &mut S,
    request: PlainRequest,
    peer: SocketAddr,
) where
    S: futures_io::AsyncWrite + Unpin,
{
    let settings = &engine.settings;
    let foreign = request
        .origin
        .as_deref()
        .is_some_and(|origin| !settings.core.origin_allowed(origin));
    let authorized = settings.endpoint_token().is_none_or(|expected| {
        let presented = request
            .authorization
            .as_deref()
            .and_then(iii_core::upgrade::bearer_token)
            .unwrap_or("");
        bool::from(presented.as_bytes().ct_eq(expected.as_bytes()))
    });
    let refusal = if foreign {
        Some((Rejection::Forbidden, "origin not allowed"))
    } else if !authorized {
        Some((Rejection::Unauthorized, "missing or wrong token"))
    } else {
        None
    };
    if let Some((rejection, reason)) = refusal {
        let refusal = refusal_for(rejection);
        engine.transport.refused(refusal.status);
        log_refusal(peer, &refusal, reason);
        refuse(tcp, refusal).await;
        return;
    }
    match request.endpoint {
        Endpoint::Health if engine.is_serving() => {
            respond(tcp, (200, "OK"), "text/plain", "ok\n").await
        }
        Endpoint::Health => {
            let body = if engine.is_running() {
                "draining\n"
            } else {
                "stopped\n"
            };
            respond(tcp, (503, "Service Unavailable"), "text/plain", body).await
        }
        Endpoint::Metrics => match engine.snapshot().await {
            Some(snapshot) => {
                let text = snapshot.encode();
                respond(tcp, (200, "OK"), metrics::CONTENT_TYPE, &text).await
            }
            None => respond(tcp, (503, "Service Unavailable"), "text/plain", "stopped\n").await,
        },
    }
}

/// The engine task: owns the core and the connection table.
async fn run<R: Runtime>(
    rt: R,
    mut engine: Engine,
    mut inputs: UnboundedReceiver<Input>,
    settings: Arc<EngineSettings>,
) {
    let mut conns = Conns::default();
    // Upgrades an authentication function decides, by ticket.
    let mut deferred: Deferred = BTreeMap::new();
    let mut timer: Option<(Instant, BoxFuture<'static, ()>)> = None;
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    // A drain in progress: its deadline and who waits for its end.
    let mut drain: Option<(Instant, Vec<oneshot::Sender<DrainOutcome>>)> = None;
    loop {
        if let Some((until, _)) = &drain {
            let timed_out = now() >= *until;
            if timed_out || engine.is_idle() {
                let outcome = if timed_out {
                    DrainOutcome::TimedOut
                } else {
                    DrainOutcome::Idle
                };
                tracing::info!(?outcome, "drained; closing what is left");
                engine.shutdown(now());
                execute(&mut engine, &mut conns, &mut deferred, &settings, now());
                for done in drain.take().map(|(_, d)| d).unwrap_or_default() {
                    let _ = done.send(outcome);
                }
                break;
            }
        }
        // Re-arm the timer only when the deadline moved (the core's, or the drain's).
        let wake = match (
            engine.poll_timeout(),
            drain.as_ref().map(|(until, _)| *until),
        ) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (wake, &timer) {
            (Some(at), Some((armed, _))) if *armed == at => {}
            (Some(at), _) => timer = Some((at, rt.sleep_until(at))),
            (None, _) => timer = None,
        }
        let input = match timer.as_mut() {
            Some((_, sleep)) => match future::select(inputs.next(), sleep.as_mut()).await {
                Either::Left((input, _)) => input,
                Either::Right(((), _)) => {
                    timer = None;
                    engine.handle_timeout(now());
                    execute(&mut engine, &mut conns, &mut deferred, &settings, now());
                    continue;
                }
            },
            None => inputs.next().await,
        };
        let Some(input) = input else { break };
        let now = now();
        // Handle this input and whatever else is already queued, then run the outputs.
        let mut next = Some(input);
        let mut budget = 64;
        while let Some(input) = next.take() {
            match input {
                Input::Accept {
                    target,
                    authorization,
                    origin,
                    listener,
                    peer,
                    headers,
                    reply,
                } => {
                    let request = UpgradeRequest::to(&target)
                        .with_authorization(authorization.as_deref())
                        .with_origin(origin.as_deref())
                        .on_listener(listener, Some(peer), &headers);
                    match engine.accept(now, &request) {
                        Admission::Accepted(accepted) => answer_upgrade(
                            &mut engine,
                            &mut conns,
                            &settings,
                            now,
                            reply,
                            Ok(accepted),
                        ),
                        Admission::Refused(rejection) => {
                            let _ = reply.send(Err(rejection));
                        }
                        Admission::Deferred(ticket) => {
                            deferred.insert(ticket, reply);
                        }
                    }
                }
                Input::Conn(ConnEvent::Message(conn, message)) => {
                    if let Some(message) = conns.incoming(conn, message) {
                        engine.handle_message(now, conn, message);
                        conns.consumed(conn);
                    }
                }
                Input::Conn(ConnEvent::Sent(conn, count)) => engine.handle_sent(now, conn, count),
                Input::Conn(ConnEvent::Closed(conn, close)) => {
                    if let Some(close) = conns.peer_closed(conn, close) {
                        engine.handle_closed(now, conn, close);
                    }
                }
                Input::Stats(reply) => {
                    let _ = reply.send(engine.stats());
                }
                Input::Metrics(reply) => {
                    let _ = reply.send((engine.metrics().clone(), engine.stats()));
                }
                Input::Drain { until, done } => {
                    if drain.is_none() {
                        tracing::info!(
                            "draining: new workers are refused until in-flight work ends"
                        );
                        engine.drain(now);
                    }
                    let entry = drain.get_or_insert_with(|| (until, Vec::new()));
                    entry.0 = entry.0.min(until);
                    entry.1.push(done);
                }
                Input::Shutdown(done) => {
                    engine.shutdown(now);
                    shutdown = Some(done);
                }
                #[cfg(feature = "fault-injection")]
                Input::Panic => panic!("fault injected into the engine task"),
            }
            execute(&mut engine, &mut conns, &mut deferred, &settings, now);
            budget -= 1;
            if budget > 0 {
                next = inputs.try_recv().ok();
            }
        }
        if let Some(done) = shutdown.take() {
            let _ = done.send(());
            break;
        }
    }
    tracing::debug!(connections = conns.len(), "engine task stopped");
}

/// Upgrades waiting for an authentication function's decision.
type Deferred = BTreeMap<Ticket, oneshot::Sender<AcceptReply>>;

/// Answers an upgrade the core decided: an accepted one gets its connection (and is
/// closed again if the handshake task is gone).
fn answer_upgrade(
    engine: &mut Engine,
    conns: &mut Conns,
    settings: &EngineSettings,
    now: Instant,
    reply: oneshot::Sender<AcceptReply>,
    decision: Result<Accepted, Rejection>,
) {
    match decision {
        Ok(accepted) => {
            let options = settings.conn_options(&accepted);
            let ends = conns.open_with(accepted.conn, options);
            if reply.send(Ok((accepted, ends))).is_err() {
                engine.handle_closed(now, accepted.conn, PeerClose::Lost);
                conns.remove(accepted.conn);
            }
        }
        Err(rejection) => {
            let _ = reply.send(Err(rejection));
        }
    }
}

/// Drains the core's outputs into the connections, feeding held messages (and then the
/// held end) of resumed connections as they become admissible.
fn execute(
    engine: &mut Engine,
    conns: &mut Conns,
    deferred: &mut Deferred,
    settings: &EngineSettings,
    now: Instant,
) {
    loop {
        while let Some(output) = engine.poll_output() {
            match output {
                EngineOutput::Admitted { ticket, admission } => match deferred.remove(&ticket) {
                    Some(reply) => answer_upgrade(engine, conns, settings, now, reply, admission),
                    None => {
                        if let Ok(accepted) = admission {
                            engine.handle_closed(now, accepted.conn, PeerClose::Lost);
                        }
                    }
                },
                EngineOutput::Transmit { conn, message } => conns.transmit(conn, message),
                EngineOutput::Close { conn, code, reason } => {
                    if let Some(close) = conns.close(conn, code, reason) {
                        engine.handle_closed(now, conn, close);
                    }
                }
                EngineOutput::Abort { conn, code, reason } => {
                    if let Some(close) = conns.abort(conn, code, reason) {
                        engine.handle_closed(now, conn, close);
                    }
                }
                EngineOutput::PauseRead { conn } => conns.pause(conn),
                EngineOutput::ResumeRead { conn } => conns.resume(conn),
                EngineOutput::Event(event) => log_event(&event),
            }
        }
        match conns.next_ready() {
            Some(Ready::Message(conn, message)) => {
                engine.handle_message(now, conn, message);
                conns.consumed(conn);
            }
            Some(Ready::Closed(conn, close)) => engine.handle_closed(now, conn, close),
            None => return,
        }
    }
}

fn log_event(event: &EngineEvent) {
    match event {
        EngineEvent::ProtocolViolation { conn, violation } => {
            tracing::debug!(%conn, ?violation, "protocol violation")
        }
        EngineEvent::SlowConsumer { conn } => {
            tracing::warn!(%conn, "slow consumer dropped")
        }
        EngineEvent::Refused {
            conn,
            what,
            id,
            reason,
        } => {
            tracing::info!(%conn, what, id = id.as_deref().unwrap_or(""), ?reason, "request refused")
        }
        EngineEvent::AuthFailed { listener, reason } => {
            tracing::info!(listener, %reason, "worker not admitted")
        }
        EngineEvent::InvocationTimedOut { conn, function_id } => {
            tracing::info!(%conn, %function_id, "invocation timed out")
        }
        EngineEvent::WorkerConnected { conn, worker_id } => {
            tracing::info!(%conn, %worker_id, "worker connected")
        }
        EngineEvent::WorkerDisconnected { conn, worker_id } => {
            tracing::info!(%conn, %worker_id, "worker disconnected")
        }
        EngineEvent::ChannelRemoved {
            channel_id,
            outcome,
            stats,
        } => tracing::debug!(%channel_id, ?outcome, ?stats, "channel removed"),
        other => tracing::trace!(?other, "engine event"),
    }
}
