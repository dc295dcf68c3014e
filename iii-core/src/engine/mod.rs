//! The engine role machine: the broker that workers and channel ends connect to.
//!
//! One [`Engine`] owns every connection. The adapter asks it to [`Engine::accept`] each
//! upgrade request (the answer decides the HTTP status before the upgrade), then feeds
//! it messages, send completions, closes and timeouts, and executes the
//! [`EngineOutput`]s it drains from [`Engine::poll_output`].

mod accept;
mod budget;
mod builtins;
mod catalog;
mod config;
mod control;
mod invoke;
mod listing;
mod metrics;
mod output;
mod peers;
mod quota;
mod rate;
mod rbac;
mod relay;
mod session;
mod trigger_types;
mod triggers;
mod worker_log;

use crate::Instant;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use uuid::Uuid;

pub use accept::{Accepted, Admission, ConnKindTag};
pub use config::{ConfigError, EngineConfig, WorkerQuotas, MAX_TIMEOUT};
pub use metrics::{
    EngineMetrics, FunctionCalls, InvocationOutcome, LatencyHistogram, RefusedUpgrades,
    CHANNEL_OUTCOMES, LATENCY_BUCKETS, OTHER_FUNCTIONS, OTHER_REFUSALS, QUOTAS,
};
pub use output::{
    ChannelOutcome, ChannelStats, EngineEvent, EngineOutput, Quota, RefusalReason, Violation,
};
pub use rate::{RateBound, RateLimit};
pub use rbac::{
    FunctionFilter, ListenerPolicy, MetadataMatch, Pattern, Rbac, Ticket,
    DEFAULT_GUEST_BUILTIN_CALLS_PER_IP, INFRASTRUCTURE_FUNCTIONS,
};
pub use relay::ChannelInfo;
pub use worker_log::LogLevel;

use crate::channel::{ChannelRefs, Direction};
use crate::ids::{ConnId, IdGen, Secret};
use crate::outbox::Outbox;
use crate::timers::TimerTable;
use crate::wire::{CloseCode, ControlMessage, Message, PeerClose};
use invoke::Pending;
use relay::Channel;
use session::Session;
use triggers::Triggers;

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
    /// Worker log lines were dropped: their summary is due.
    WorkerLogSummary,
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
    /// What it counts against its address's limit, released at teardown.
    peer: Option<peers::PeerKey>,
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
    /// The ids each RBAC listener exposes (kept with `function_specs`).
    exposure_index: catalog::ExposureIndex,
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
    /// Bytes queued or in flight on every connection's outbox (control messages).
    control_queued: usize,
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
    /// Control and telemetry connections and waiting upgrades by (listener, client
    /// address), for per-address limits (see [`peers`]).
    per_peer: BTreeMap<peers::PeerKey, usize>,
    /// Built-in call buckets per client address and of all guests (see [`rate`]).
    builtin_rates: rate::BuiltinRates,
    /// Worker log budgets per client address and engine-wide (see [`worker_log`]).
    shared_log_budget: worker_log::SharedLogBudget,
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
            exposure_index: catalog::ExposureIndex::default(),
            pending: BTreeMap::new(),
            pending_by_origin: BTreeMap::new(),
            triggers: Triggers::with_builtin_types(),
            channels: BTreeMap::new(),
            channels_by_owner: BTreeMap::new(),
            channel_bytes: 0,
            channel_frames: 0,
            control_queued: 0,
            budget_waiters: VecDeque::new(),
            paused_writers: 0,
            metrics: EngineMetrics::default(),
            draining: false,
            admissions: BTreeMap::new(),
            hooks: BTreeMap::new(),
            next_ticket: 0,
            per_peer: BTreeMap::new(),
            builtin_rates: rate::BuiltinRates::default(),
            shared_log_budget: worker_log::SharedLogBudget::default(),
            timers: TimerTable::default(),
            out: VecDeque::new(),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &EngineConfig {
        &self.config
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
        let before = state.outbox.pending_bytes();
        let returned = state.outbox.sent(count);
        self.control_queued = self
            .control_queued
            .saturating_sub(before - state.outbox.pending_bytes());
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
        if let Some(state) = self.conns.remove(&conn) {
            self.control_queued = self
                .control_queued
                .saturating_sub(state.outbox.pending_bytes());
        }
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
                Timer::WorkerLogSummary => self.summarise_worker_logs(),
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
            control_queued_bytes: self.control_queued,
            pending_invocations: self.pending.len(),
            functions: self.functions.len(),
            workers: self.workers.len(),
            bindings: self.triggers.bindings.len(),
            writers_waiting_for_budget: self.budget_waiters_len(),
            paused_writers: self.paused_writers,
            committed_channel_bytes: self.committed_channel_bytes(),
        }
    }

    /// The live channels, ordered by id (`blocked_ms` counts finished pauses only, and
    /// `owner_name` is left out: `engine::channels::list` gives both).
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.channels.values().map(|c| c.info(None, None)).collect()
    }

    /// True when `conn` is open and the engine has not closed it.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| !c.closing)
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
                peer: None,
            },
        );
    }

    /// Inserts a control or telemetry connection from `peer` on `listener`, counted
    /// against the address's limit until its teardown.
    fn insert_counted(
        &mut self,
        conn: ConnId,
        kind: ConnKind,
        listener: usize,
        peer: Option<std::net::IpAddr>,
    ) {
        self.insert_conn(conn, kind);
        let key = self.hold_peer(listener, peer);
        if let Some(state) = self.conns.get_mut(&conn) {
            state.peer = key;
        }
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
        let len = text.len();
        // The engine-wide sum is bounded too, except for a connection with nothing
        // pending (one message may always go, as for the per-connection limit).
        let over_total = self.control_queued.saturating_add(len)
            > self.config.max_total_control_queue_bytes
            && state.outbox.pending_bytes() > 0;
        if over_total || state.outbox.push(Message::Text(text), limit).is_err() {
            self.metrics.slow_consumers += 1;
            self.out
                .push_back(EngineOutput::Event(EngineEvent::SlowConsumer { conn }));
            self.abort(now, conn, CloseCode::POLICY, "outbound queue full");
            return;
        }
        self.control_queued += len;
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
        let peer = state.peer.take();
        self.release_peer(peer);
        let Some(state) = self.conns.get_mut(&conn) else {
            return;
        };
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
