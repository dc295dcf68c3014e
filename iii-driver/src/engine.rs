//! The engine server: one task owns the core [`Engine`]; each accepted TCP connection
//! runs [`serve_connection`] (the HTTP upgrade, then the connection pump).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use async_tungstenite::WebSocketStream;
use futures_channel::mpsc::{UnboundedReceiver, UnboundedSender};
use futures_channel::oneshot;
use futures_util::future::{self, Either};
use futures_util::StreamExt;
use iii_core::engine::{
    Accepted, ConfigError, Engine, EngineConfig, EngineEvent, EngineOutput, EngineStats,
};
use iii_core::upgrade::{parse_target, Rejection};
use iii_core::PeerClose;

use crate::conn::{pump, ConnEnds, ConnEvent, Conns, Ready};
use crate::handshake::{read_request, refusal_for, refuse, switch, HeadError};
use crate::read_batch::ReadBatch;
use crate::runtime::{now, os_seed, BoxFuture, Runtime};

/// Settings of an engine server: the core's limits plus the transport's.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The core's limits and timeouts (see [`EngineConfig`]).
    pub core: EngineConfig,
    /// A new TCP connection must send its whole upgrade request within this time, or it
    /// is dropped. Default 10 s (the reference's `handshake_timeout_ms`).
    pub handshake_timeout: Duration,
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
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            core: EngineConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            max_request_head: 16 * 1024,
            read_buffer_bytes: 2 * 1024,
            socket_read_bytes: 64 * 1024,
            write_buffer_bytes: 64 * 1024,
        }
    }
}

type AcceptReply = Result<(Accepted, ConnEnds), Rejection>;

enum Input {
    Accept {
        target: String,
        authorization: Option<String>,
        reply: oneshot::Sender<AcceptReply>,
    },
    Conn(ConnEvent),
    Stats(oneshot::Sender<EngineStats>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle to a running engine task. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: UnboundedSender<Input>,
    settings: Arc<EngineSettings>,
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

    /// The settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }
}

/// Starts the engine task on `rt`. Feed it connections with [`serve_connection`].
pub fn start<R: Runtime>(rt: R, settings: EngineSettings) -> Result<EngineHandle, ConfigError> {
    let engine = Engine::new(settings.core.clone(), os_seed(), now())?;
    let (tx, rx) = futures_channel::mpsc::unbounded();
    let handle = EngineHandle {
        tx: tx.clone(),
        settings: Arc::new(settings),
    };
    rt.spawn(Box::pin(run(rt.clone(), engine, rx)));
    Ok(handle)
}

/// Serves one accepted TCP connection: reads the upgrade request, lets the engine decide
/// (answering 400/401/404/426 before the upgrade when it refuses), then runs the
/// WebSocket until it ends.
pub async fn serve_connection<R: Runtime>(rt: R, engine: EngineHandle, mut tcp: R::Tcp) {
    let settings = engine.settings.clone();
    let deadline = rt.sleep_until(now() + settings.handshake_timeout);
    let head = {
        let head = std::pin::pin!(read_request(&mut tcp, settings.max_request_head));
        match future::select(head, deadline).await {
            Either::Left((head, _)) => head,
            Either::Right(_) => return,
        }
    };
    let request = match head {
        Ok(request) => request,
        Err(HeadError::Refuse(refusal)) => {
            refuse(&mut tcp, refusal).await;
            return;
        }
        Err(HeadError::Io) => return,
    };
    // Pure routing first: no engine state is touched for a malformed URL.
    if let Err(rejection) = parse_target(&request.target) {
        refuse(&mut tcp, refusal_for(rejection)).await;
        return;
    }
    let (reply, decision) = oneshot::channel();
    let asked = engine.tx.unbounded_send(Input::Accept {
        target: request.target.clone(),
        authorization: request.authorization.clone(),
        reply,
    });
    let decision = match (asked, decision.await) {
        (Ok(()), Ok(decision)) => decision,
        _ => return, // engine stopped
    };
    let (accepted, ends) = match decision {
        Ok(accepted) => accepted,
        Err(rejection) => {
            refuse(&mut tcp, refusal_for(rejection)).await;
            return;
        }
    };
    let conn = accepted.conn;
    if switch(&mut tcp, &request).await.is_err() {
        let _ = engine
            .tx
            .unbounded_send(Input::Conn(ConnEvent::Closed(conn, PeerClose::Lost)));
        return;
    }
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

/// The engine task: owns the core and the connection table.
async fn run<R: Runtime>(rt: R, mut engine: Engine, mut inputs: UnboundedReceiver<Input>) {
    let mut conns = Conns::default();
    let mut timer: Option<(Instant, BoxFuture<'static, ()>)> = None;
    let mut shutdown: Option<oneshot::Sender<()>> = None;
    loop {
        // Re-arm the timer only when the deadline moved.
        match (engine.poll_timeout(), &timer) {
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
                    execute(&mut engine, &mut conns, now());
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
                    reply,
                } => match engine.accept(now, &target, authorization.as_deref()) {
                    Ok(accepted) => {
                        let ends = conns.open(accepted.conn);
                        if reply.send(Ok((accepted, ends))).is_err() {
                            engine.handle_closed(now, accepted.conn, PeerClose::Lost);
                            conns.remove(accepted.conn);
                        }
                    }
                    Err(rejection) => {
                        let _ = reply.send(Err(rejection));
                    }
                },
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
                Input::Shutdown(done) => {
                    engine.shutdown(now);
                    shutdown = Some(done);
                }
            }
            execute(&mut engine, &mut conns, now);
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

/// Drains the core's outputs into the connections, feeding held messages (and then the
/// held end) of resumed connections as they become admissible.
fn execute(engine: &mut Engine, conns: &mut Conns, now: Instant) {
    loop {
        while let Some(output) = engine.poll_output() {
            match output {
                EngineOutput::Transmit { conn, message } => conns.transmit(conn, message),
                EngineOutput::Close { conn, code, reason } => {
                    if let Some(close) = conns.close(conn, code, reason) {
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
        EngineEvent::SlowConsumer { conn } => tracing::warn!(%conn, "slow consumer closed"),
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
