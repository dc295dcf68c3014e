//! The engine role machine: the broker that workers and channel ends connect to.
//!
//! One [`Engine`] owns every connection. The adapter asks it to [`Engine::accept`] each
//! upgrade request (the answer decides the HTTP status before the upgrade), then feeds
//! it messages, send completions, closes and timeouts, and executes the
//! [`EngineOutput`]s it drains from [`Engine::poll_output`].

mod budget;
mod builtins;
mod config;
mod control;
mod invoke;
mod listing;
mod metrics;
mod output;
mod quota;
mod rbac;
mod relay;
mod session;
mod triggers;

use crate::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use uuid::Uuid;

pub use config::{ConfigError, EngineConfig, WorkerQuotas, MAX_TIMEOUT};
pub use metrics::{
    EngineMetrics, InvocationOutcome, LatencyHistogram, RefusedUpgrades, CHANNEL_OUTCOMES,
    LATENCY_BUCKETS, OTHER_REFUSALS, QUOTAS,
};
pub use output::{
    ChannelOutcome, ChannelStats, EngineEvent, EngineOutput, Quota, RefusalReason, Violation,
};
pub use rbac::{
    FunctionFilter, ListenerPolicy, MetadataMatch, Pattern, Rbac, Ticket, INFRASTRUCTURE_FUNCTIONS,
};
pub use relay::ChannelInfo;

use crate::channel::{ChannelRefs, Direction};
use crate::ids::{ConnId, IdGen, Secret};
use crate::outbox::Outbox;
use crate::timers::TimerTable;
use crate::upgrade::{bearer_token, parse_target, Rejection, Route, UpgradeRequest};
use crate::wire::{CloseCode, ControlMessage, Message, PeerClose};
use invoke::Pending;
use relay::Channel;
use session::Session;
use triggers::Triggers;

/// What an accepted upgrade became.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnKindTag {
    /// A worker's control connection.
    Control,
    /// A telemetry connection: everything it sends is discarded.
    Telemetry,
    /// The reading end of a channel.
    ChannelReader,
    /// The writing end of a channel.
    ChannelWriter,
}

/// An accepted upgrade: complete the WebSocket handshake, then drive `conn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The new connection's handle.
    pub conn: ConnId,
    /// What it is.
    pub kind: ConnKindTag,
    /// The largest message the adapter should let the WebSocket layer accept on it.
    pub max_message_bytes: usize,
    /// How far the adapter may read ahead of the core on it, in bytes: start reading a
    /// new message only while less than this has been read and not yet consumed
    /// (`EngineConfig::read_ahead_bytes`; the core's byte budgets reserve room for it).
    pub read_ahead_bytes: usize,
}

/// The engine's answer to an upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The connection exists: complete the handshake and drive it.
    Accepted(Accepted),
    /// Refused: answer with the rejection's status and do not upgrade.
    Refused(Rejection),
    /// An authentication function decides (RBAC listeners): keep the request waiting
    /// until [`EngineOutput::Admitted`] with this ticket arrives.
    Deferred(Ticket),
}

impl Admission {
    /// The decision, when there is one already.
    pub fn decided(self) -> Option<Result<Accepted, Rejection>> {
        match self {
            Admission::Accepted(accepted) => Some(Ok(accepted)),
            Admission::Refused(rejection) => Some(Err(rejection)),
            Admission::Deferred(_) => None,
        }
    }
}

/// Counts for observability and for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Open connections of every kind.
    pub connections: usize,
    /// Open connections by kind: control, telemetry, channel reader, channel writer.
    pub connections_by_kind: [usize; 4],
    /// Live channels.
    pub channels: usize,
    /// Bytes held in all channel buffers (queued plus in flight to readers).
    pub channel_buffered_bytes: usize,
    /// Messages held in all channel buffers.
    pub channel_buffered_frames: usize,
    /// Bytes of control messages waiting for send credit, over all connections.
    pub control_queued_bytes: usize,
    /// Invocations routed to a worker and not yet answered.
    pub pending_invocations: usize,
    /// Registered functions (built-ins excluded).
    pub functions: usize,
    /// Worker control connections.
    pub workers: usize,
    /// Trigger bindings.
    pub bindings: usize,
    /// Channel writers paused because the engine-wide channel budget is spent.
    pub writers_waiting_for_budget: usize,
    /// Channel writers paused (for their channel or for the budget).
    pub paused_writers: usize,
    /// What counts against the engine-wide budget: channel buffers plus the read-ahead
    /// a paused writer's connection may hold.
    pub committed_channel_bytes: usize,
}

/// Why `create_channel` failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateChannelError {
    /// `max_channels` channels already exist.
    #[error("channel limit of {0} reached")]
    TooManyChannels(usize),
    /// The creating worker holds as many as its quota allows.
    #[error("this worker already holds {limit} channels (quota {})", .0.name(), limit = .1)]
    Quota(Quota, usize),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    ChannelExpiry(Uuid),
    FunctionsAvailable,
    /// `invocation_timeout` of the invocation pending at this worker under this id.
    Invocation(ConnId, Uuid),
    /// The authentication function of a deferred upgrade is late.
    Admission(Ticket),
    /// A registration hook is late.
    Hook(u64),
}

#[derive(Debug)]
enum ConnKind {
    Control(Box<Session>),
    Channel { channel: Uuid, direction: Direction },
    Telemetry,
}

#[derive(Debug)]
struct Conn {
    outbox: Outbox,
    kind: ConnKind,
    /// The engine has closed it (or the peer has): nothing more is sent to it.
    closing: bool,
}

/// A function key: `(namespace, function id)`.
type FnKey = (String, String);

/// The engine: pairs channels, routes invocations, serves built-in functions.
#[derive(Debug)]
pub struct Engine {
    config: EngineConfig,
    ids: IdGen,
    next_conn: u64,
    conns: BTreeMap<ConnId, Conn>,
    workers: BTreeMap<String, ConnId>,
    functions: BTreeMap<FnKey, ConnId>,
    function_specs: BTreeMap<FnKey, session::FunctionSpec>,
    /// Invocations forwarded to a worker, keyed by (serving worker, id toward it).
    pending: BTreeMap<(ConnId, Uuid), Pending>,
    /// The keys of `pending`, by the worker whose quota they count against.
    pending_by_origin: BTreeMap<ConnId, BTreeSet<(ConnId, Uuid)>>,
    triggers: Triggers,
    channels: BTreeMap<Uuid, Channel>,
    /// Live channels by the control connection that created them.
    channels_by_owner: BTreeMap<ConnId, BTreeSet<Uuid>>,
    channel_bytes: usize,
    channel_frames: usize,
    /// Writers paused for the engine-wide budget, oldest first.
    budget_waiters: VecDeque<Uuid>,
    /// Channel writers currently paused (their read-ahead counts against the budget).
    paused_writers: usize,
    /// What happened since the start.
    metrics: EngineMetrics,
    /// New workers are refused while in-flight work finishes (see [`Engine::drain`]).
    draining: bool,
    /// Upgrades waiting for an authentication function.
    admissions: BTreeMap<Ticket, rbac::PendingAdmission>,
    /// Registrations waiting for an approval hook.
    hooks: BTreeMap<u64, rbac::PendingHook>,
    /// The last ticket handed out (admissions and hooks).
    next_ticket: u64,
    /// Control connections by (listener, client address), for per-address limits.
    sessions_per_peer: BTreeMap<(usize, std::net::IpAddr), usize>,
    timers: TimerTable<Timer>,
    out: VecDeque<EngineOutput>,
}

impl Engine {
    /// A new engine. `seed` feeds the CSPRNG behind every id and key.
    pub fn new(config: EngineConfig, seed: [u8; 32], now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let _ = now;
        Ok(Self {
            config,
            ids: IdGen::new(seed),
            next_conn: 1,
            conns: BTreeMap::new(),
            workers: BTreeMap::new(),
            functions: BTreeMap::new(),
            function_specs: BTreeMap::new(),
            pending: BTreeMap::new(),
            pending_by_origin: BTreeMap::new(),
            triggers: Triggers::with_builtin_types(),
            channels: BTreeMap::new(),
            channels_by_owner: BTreeMap::new(),
            channel_bytes: 0,
            channel_frames: 0,
            budget_waiters: VecDeque::new(),
            paused_writers: 0,
            metrics: EngineMetrics::default(),
            draining: false,
            admissions: BTreeMap::new(),
            hooks: BTreeMap::new(),
            next_ticket: 0,
            sessions_per_peer: BTreeMap::new(),
            timers: TimerTable::default(),
            out: VecDeque::new(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Decides an upgrade request from its target (`/path?query`), its `Authorization`
    /// and `Origin` headers and the listener it arrived on. On `Accepted` the connection
    /// exists: complete the handshake and drive it (messages already queued for it are
    /// part of its outputs); if the handshake fails, report
    /// `handle_closed(.., PeerClose::Lost)`. On `Refused` answer with the rejection's
    /// status and do not upgrade. On `Deferred` (an RBAC listener's authentication
    /// function decides) wait for [`EngineOutput::Admitted`] with that ticket.
    ///
    /// May queue outputs (`workerregistered` for a control connection, buffered data for a
    /// late reader, the authentication function's invocation).
    pub fn accept(&mut self, now: Instant, request: &UpgradeRequest<'_>) -> Admission {
        let admission = self.decide(now, request);
        match admission {
            Admission::Accepted(accepted) => self.metrics.accepted(accepted.kind),
            Admission::Refused(rejection) => self.metrics.refused_upgrade(rejection),
            Admission::Deferred(_) => {}
        }
        admission
    }

    fn decide(&mut self, now: Instant, request: &UpgradeRequest<'_>) -> Admission {
        let refused = Admission::Refused;
        let route = match parse_target(request.target) {
            Ok(route) => route,
            Err(rejection) => return refused(rejection),
        };
        let policy = match request.listener {
            0 => None,
            n => match self.listener_policy(n) {
                Some(policy) => Some(policy),
                None => return refused(Rejection::NotFound),
            },
        };
        if let Some(origin) = request.origin {
            let allowed = match policy.and_then(|p| p.allowed_origins.as_ref()) {
                Some(origins) => EngineConfig {
                    allowed_origins: origins.clone(),
                    ..EngineConfig::default()
                }
                .origin_allowed(origin),
                None => self.config.origin_allowed(origin),
            };
            if !allowed {
                return refused(Rejection::Forbidden);
            }
        }
        if self.conns.len() >= self.config.max_connections {
            return refused(Rejection::Overloaded);
        }
        let untrusted = policy.is_some_and(|p| p.rbac.is_some());
        let per_peer = policy.and_then(|p| p.max_connections_per_ip);
        match route {
            Route::Control | Route::Telemetry => {
                if self.draining {
                    return refused(Rejection::Unavailable);
                }
                if let (Some(limit), Some(peer)) = (per_peer, request.peer) {
                    let held = self
                        .sessions_per_peer
                        .get(&(request.listener, peer))
                        .copied()
                        .unwrap_or(0);
                    if held >= limit {
                        return refused(Rejection::Overloaded);
                    }
                }
                let telemetry = route == Route::Telemetry;
                if untrusted {
                    return self.admit_untrusted(now, request, telemetry);
                }
                if let Err(rejection) = self.check_token(request.authorization) {
                    return refused(rejection);
                }
                let conn = self.alloc_conn();
                if telemetry {
                    self.insert_conn(conn, ConnKind::Telemetry);
                    return Admission::Accepted(self.accepted(conn, ConnKindTag::Telemetry));
                }
                self.open_control(now, conn, request.listener, request.peer, None);
                Admission::Accepted(self.accepted(conn, ConnKindTag::Control))
            }
            Route::Channel {
                channel_id,
                key,
                direction,
            } => {
                let channel = match self.authorize_end(&channel_id, &key, direction) {
                    Ok(channel) => channel,
                    Err(rejection) => return refused(rejection),
                };
                let conn = self.alloc_conn();
                self.insert_conn(conn, ConnKind::Channel { channel, direction });
                self.attach_end(now, channel, direction, conn);
                let kind = match direction {
                    Direction::Read => ConnKindTag::ChannelReader,
                    Direction::Write => ConnKindTag::ChannelWriter,
                };
                Admission::Accepted(self.accepted(conn, kind))
            }
        }
    }

    /// The policy of listener `index` (1 and up; 0 is the main listener, which has
    /// none).
    fn listener_policy(&self, index: usize) -> Option<&ListenerPolicy> {
        index
            .checked_sub(1)
            .and_then(|i| self.config.listeners.get(i))
    }

    /// A whole message arrived on `conn`. May queue any output.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(state) = self.conns.get(&conn) else {
            return;
        };
        if state.closing {
            return;
        }
        match &state.kind {
            ConnKind::Telemetry => {}
            ConnKind::Control(_) => self.control_message(now, conn, message),
            ConnKind::Channel { channel, direction } => {
                let (channel, direction) = (*channel, *direction);
                // The engine never reads from a reader; anything it sends is ignored.
                if direction == Direction::Write {
                    self.writer_message(now, channel, conn, message);
                }
            }
        }
    }

    /// The adapter flushed `count` messages that were transmitted on `conn`.
    /// May queue more `Transmit`s, a `ResumeRead` of a channel writer, or a `Close`.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId, count: usize) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        let returned = state.outbox.sent(count);
        if state.closing || returned == 0 {
            return;
        }
        if let ConnKind::Channel {
            channel,
            direction: Direction::Read,
        } = state.kind
        {
            self.reader_flushed(now, channel, conn, returned);
        }
        self.flush(conn);
    }

    /// `conn` ended (the peer closed it, it was lost, or the adapter finished a close the
    /// engine asked for). The connection handle is dead afterwards.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId, close: PeerClose) {
        let Some(state) = self.conns.get(&conn) else {
            return;
        };
        if !state.closing {
            self.teardown(now, conn, Some(&close));
        }
        self.conns.remove(&conn);
    }

    /// Time passed. Expires channels and invocations and sends due notifications.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(timer) = self.timers.pop_due(now) {
            match timer {
                Timer::ChannelExpiry(channel) => self.expire_channel(now, channel),
                Timer::FunctionsAvailable => self.notify_functions_available(now),
                Timer::Invocation(owner, id) => self.invocation_timed_out(now, owner, id),
                Timer::Admission(ticket) => self.admission_timed_out(ticket),
                Timer::Hook(ticket) => self.hook_timed_out(now, ticket),
            }
        }
    }

    /// The next output to execute, in order.
    pub fn poll_output(&mut self) -> Option<EngineOutput> {
        self.out.pop_front()
    }

    /// When `handle_timeout` should be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Creates a channel from inside the process (the `engine::channels::create` function
    /// does the same for workers).
    pub fn create_channel(
        &mut self,
        now: Instant,
        buffer_size: Option<u64>,
    ) -> Result<ChannelRefs, CreateChannelError> {
        self.new_channel(now, buffer_size, None)
    }

    /// Closes every connection (1001, going away) and removes every channel.
    pub fn shutdown(&mut self, now: Instant) {
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.close(
                now,
                conn,
                Some(CloseCode::GOING_AWAY),
                "engine shutting down",
            );
        }
        let channels: Vec<Uuid> = self.channels.keys().copied().collect();
        for channel in channels {
            self.remove_channel(now, channel, ChannelOutcome::Shutdown);
        }
    }

    /// Stops taking new workers: control and telemetry upgrades are refused (503) from
    /// now on, while connected workers go on and channel ends may still attach, so that
    /// in-flight invocations finish and open channels drain. Poll [`Engine::is_idle`]
    /// and call [`Engine::shutdown`] once it holds (or a drain timeout passes).
    pub fn drain(&mut self, now: Instant) {
        let _ = now;
        self.draining = true;
    }

    /// True while draining (see [`Engine::drain`]).
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// True when nothing is in flight: no invocation waits for an answer and no channel
    /// has an attached end or buffered data.
    pub fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.channels.values().all(Channel::is_idle)
    }

    /// What the engine counted since it started.
    pub fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    /// Current counts.
    pub fn stats(&self) -> EngineStats {
        let mut connections_by_kind = [0; 4];
        for conn in self.conns.values() {
            let index = match &conn.kind {
                ConnKind::Control(_) => 0,
                ConnKind::Telemetry => 1,
                ConnKind::Channel {
                    direction: Direction::Read,
                    ..
                } => 2,
                ConnKind::Channel { .. } => 3,
            };
            connections_by_kind[index] += 1;
        }
        EngineStats {
            connections: self.conns.len(),
            connections_by_kind,
            channels: self.channels.len(),
            channel_buffered_bytes: self.channel_bytes,
            channel_buffered_frames: self.channel_frames,
            control_queued_bytes: self.conns.values().map(|c| c.outbox.pending_bytes()).sum(),
            pending_invocations: self.pending.len(),
            functions: self.functions.len(),
            workers: self.workers.len(),
            bindings: self.triggers.bindings.len(),
            writers_waiting_for_budget: self.budget_waiters_len(),
            paused_writers: self.paused_writers,
            committed_channel_bytes: self.committed_channel_bytes(),
        }
    }

    /// The live channels, ordered by id.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.channels.values().map(Channel::info).collect()
    }

    /// True when `conn` is open and the engine has not closed it.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.closing)
    }

    fn check_token(&self, authorization: Option<&str>) -> Result<(), Rejection> {
        let Some(expected) = &self.config.auth_token else {
            return Ok(());
        };
        let presented = authorization.and_then(bearer_token).unwrap_or("");
        use subtle::ConstantTimeEq;
        if bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized)
        }
    }

    fn accepted(&self, conn: ConnId, kind: ConnKindTag) -> Accepted {
        let max_message_bytes = match kind {
            ConnKindTag::Control | ConnKindTag::Telemetry => self.config.max_control_message_bytes,
            ConnKindTag::ChannelReader | ConnKindTag::ChannelWriter => {
                self.config.max_channel_message_bytes
            }
        };
        Accepted {
            conn,
            kind,
            max_message_bytes,
            read_ahead_bytes: self.config.read_ahead_bytes,
        }
    }

    fn alloc_conn(&mut self) -> ConnId {
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        conn
    }

    fn insert_conn(&mut self, conn: ConnId, kind: ConnKind) {
        self.conns.insert(
            conn,
            Conn {
                outbox: Outbox::new(self.config.send_credit),
                kind,
                closing: false,
            },
        );
    }

    fn new_secret(&mut self) -> Secret {
        self.ids.secret()
    }

    /// Queues a control message for `conn` and releases what credit allows. A worker
    /// whose queue overflows is dropped as a slow consumer.
    fn send_control(&mut self, now: Instant, conn: ConnId, message: &ControlMessage) {
        let limit = self.config.max_control_queue_bytes;
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if state.closing {
            return;
        }
        let text = message.encode();
        if state.outbox.push(Message::Text(text), limit).is_err() {
            self.metrics.slow_consumers += 1;
            self.out
                .push_back(EngineOutput::Event(EngineEvent::SlowConsumer { conn }));
            self.abort(now, conn, CloseCode::POLICY, "outbound queue full");
            return;
        }
        self.flush(conn);
    }

    fn flush(&mut self, conn: ConnId) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if state.closing {
            return;
        }
        while let Some(message) = state.outbox.release() {
            self.out.push_back(EngineOutput::Transmit { conn, message });
        }
    }

    /// Closes `conn` from the engine's side and tears down what it held.
    fn close(&mut self, now: Instant, conn: ConnId, code: Option<CloseCode>, reason: &'static str) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if state.closing {
            return;
        }
        state.closing = true;
        self.out
            .push_back(EngineOutput::Close { conn, code, reason });
        self.teardown(now, conn, None);
    }

    /// Drops `conn` from the engine's side without sending what is queued (see
    /// [`EngineOutput::Abort`]) and tears down what it held.
    fn abort(&mut self, now: Instant, conn: ConnId, code: CloseCode, reason: &'static str) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        if state.closing {
            return;
        }
        state.closing = true;
        self.out
            .push_back(EngineOutput::Abort { conn, code, reason });
        self.teardown(now, conn, None);
    }

    /// Releases what `conn` held. `close` is the peer's close, or `None` when the engine
    /// closed it.
    fn teardown(&mut self, now: Instant, conn: ConnId, close: Option<&PeerClose>) {
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
        state.closing = true;
        match &mut state.kind {
            ConnKind::Telemetry => {}
            ConnKind::Control(session) => {
                let session = std::mem::take(session);
                self.end_session(now, conn, *session);
            }
            ConnKind::Channel { channel, direction } => {
                let (channel, direction) = (*channel, *direction);
                self.end_detached(now, channel, direction, conn, close);
            }
        }
    }

    fn emit(&mut self, event: EngineEvent) {
        self.out.push_back(EngineOutput::Event(event));
    }
}
