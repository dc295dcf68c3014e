//! The `engine_inputs` target: one engine fed arbitrary inputs.

mod messages;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::values::{
    error_value, finish_object, payload_value, push_capped, str_field, uuid_value, BINDINGS,
};
use crate::{Input, DRAIN_LIMIT, MAX_OPS};
use iii_core::Instant;

use bytes::Bytes;
use serde_json::{json, Value};

use iii_core::channel::{channel_url, extract_channel_refs, ChannelRef, Direction};
use iii_core::engine::{
    Admission, Engine, EngineConfig, EngineOutput, FunctionFilter, ListenerPolicy, Pattern,
    RateLimit, Rbac, Ticket, WorkerQuotas,
};
use iii_core::ids::ConnId;
use iii_core::upgrade::UpgradeRequest;
use iii_core::wire::{CloseCode, Message, PeerClose, Text};

const FUNCTION_IDS: [&str; 6] = ["f0", "f1", "f2", "ns::g", "engine::mine", ""];
const BUILTINS: [&str; 8] = [
    "engine::channels::create",
    "engine::log::info",
    "engine::channels::list",
    "engine::workers::register",
    "engine::workers::list",
    "engine::functions::list",
    "engine::triggers::list",
    "engine::nope",
];
const NAMESPACES: [Option<&str>; 4] = [None, Some("default"), Some("ns1"), Some(" ")];
const TRIGGER_TYPES: [&str; 4] = [
    "tt0",
    "tt1",
    "engine::functions-available",
    "engine::workers-available",
];
const TOKEN: &str = "fuzz-token";
const ORIGIN: &str = "https://app.example";

/// Engine limits small enough for fuzz inputs to reach every one of them.
fn engine_config(flags: u8) -> EngineConfig {
    EngineConfig {
        max_control_message_bytes: 4096,
        max_control_queue_bytes: if flags & 1 == 0 { 1024 } else { 64 << 10 },
        max_total_control_queue_bytes: if flags & 16 == 0 { 3072 } else { 1 << 20 },
        max_telemetry_message_bytes: 1024,
        send_credit: 1 + usize::from((flags >> 1) & 3),
        default_channel_buffer: 4,
        max_channel_buffer: 8,
        channel_buffer_bytes: 2048,
        max_channel_message_bytes: 512,
        read_ahead_bytes: 256,
        max_buffered_channel_bytes: if flags & 16 == 0 { 4096 } else { 1 << 20 },
        channel_attach_timeout: Duration::from_millis(1000),
        orphan_channel_timeout: Duration::from_millis(100),
        max_channels: 6,
        max_connections: 12,
        max_pending_admissions: 3,
        auth_token: (flags & 8 != 0).then(|| TOKEN.to_owned()),
        allowed_origins: vec![ORIGIN.to_owned()],
        functions_available_delay: Duration::from_millis(20),
        invocation_timeout: (flags & 32 != 0).then(|| Duration::from_millis(300)),
        max_payload_depth: 6,
        max_list_bytes: 1024,
        worker_log_lines_per_second: 4,
        max_worker_log_bytes: 64,
        worker_log_lines_per_second_per_ip: 6,
        worker_log_lines_per_second_total: 8,
        guest_builtin_calls: RateLimit::new(3, 5),
        // Small, so inputs reach the `other` label.
        metrics_function_labels: 2,
        quotas: quotas(),
        listeners: vec![ListenerPolicy {
            max_connections_per_ip: Some(3),
            quotas: quotas(),
            middleware_function_id: (flags & 128 != 0).then(|| "f0".to_owned()),
            ..ListenerPolicy::untrusted(
                "rbac",
                Rbac {
                    auth_function_id: (flags & 64 != 0).then(|| "f1".to_owned()),
                    hook_timeout: Duration::from_millis(200),
                    expose_functions: vec![
                        FunctionFilter::Id(Pattern::new("f*")),
                        FunctionFilter::Id(Pattern::new("engine::functions::*")),
                    ],
                    on_function_registration_function_id: Some("f2".to_owned()),
                    on_trigger_registration_function_id: None,
                    on_trigger_type_registration_function_id: Some("f2".to_owned()),
                },
            )
        }],
    }
}

/// Quotas small enough for fuzz inputs to reach.
fn quotas() -> WorkerQuotas {
    WorkerQuotas {
        functions: 3,
        trigger_types: 2,
        bindings: 3,
        engine_bindings: 1,
        pending_invocations: 4,
        channels: 3,
        registration_bytes: 600,
        total_registration_bytes: 1500,
        builtin_calls_per_sec: 2,
        builtin_call_burst: 3,
    }
}

#[derive(Debug, Default)]
struct EngineConn {
    /// The engine emitted `Close` for it.
    closed: bool,
    paused: bool,
    in_flight: usize,
}

struct EngineRig {
    engine: Engine,
    config: EngineConfig,
    now: Instant,
    /// Accepted and not reported closed.
    conns: BTreeMap<ConnId, EngineConn>,
    /// Reported with `handle_closed`.
    gone: BTreeSet<ConnId>,
    refs: Vec<ChannelRef>,
    /// `(worker_id, reattach_token)` from `workerregistered`.
    workers: Vec<(String, String)>,
    /// Invocations the engine forwarded: `(conn, invocation_id, function_id)`.
    calls: Vec<(ConnId, String, String)>,
    /// Trigger requests the engine forwarded: `(binding id, trigger type, function id)`.
    triggers: Vec<(String, String, String)>,
    /// Upgrades waiting for their authentication function.
    deferred: BTreeSet<Ticket>,
}

impl EngineRig {
    fn new(data_flags: u8, now: Instant) -> Self {
        let config = engine_config(data_flags);
        let engine = match Engine::new(config.clone(), [data_flags; 32], now) {
            Ok(engine) => engine,
            Err(error) => panic!("fuzz engine config is invalid: {error}"),
        };
        Self {
            engine,
            config,
            now,
            conns: BTreeMap::new(),
            gone: BTreeSet::new(),
            refs: Vec::new(),
            workers: Vec::new(),
            calls: Vec::new(),
            triggers: Vec::new(),
            deferred: BTreeSet::new(),
        }
    }

    /// A connection the engine admitted.
    fn admitted(&mut self, conn: ConnId) {
        assert!(
            !self.conns.contains_key(&conn) && !self.gone.contains(&conn),
            "{conn} was handed out twice"
        );
        self.conns.insert(conn, EngineConn::default());
    }

    fn live(&mut self, conn: ConnId, what: &str) -> &mut EngineConn {
        assert!(
            !self.gone.contains(&conn),
            "{what} for {conn} after handle_closed"
        );
        let Some(state) = self.conns.get_mut(&conn) else {
            panic!("{what} for {conn}, which was never accepted");
        };
        assert!(!state.closed, "{what} for {conn} after its Close");
        state
    }

    fn drain(&mut self) {
        let credit = self.config.send_credit;
        let mut count = 0;
        while let Some(output) = self.engine.poll_output() {
            count += 1;
            assert!(count <= DRAIN_LIMIT, "draining outputs does not terminate");
            match output {
                EngineOutput::Transmit { conn, message } => {
                    let state = self.live(conn, "Transmit");
                    state.in_flight += 1;
                    assert!(
                        state.in_flight <= credit,
                        "{conn}: {} messages in flight, credit {credit}",
                        state.in_flight
                    );
                    if let Message::Text(text) = &message {
                        self.learn(conn, text.as_str());
                    }
                }
                EngineOutput::Close { conn, .. } | EngineOutput::Abort { conn, .. } => {
                    self.live(conn, "Close").closed = true;
                }
                EngineOutput::Admitted { ticket, admission } => {
                    assert!(
                        self.deferred.remove(&ticket),
                        "{ticket:?} decided twice or never deferred"
                    );
                    if let Ok(accepted) = admission {
                        self.admitted(accepted.conn);
                    }
                }
                EngineOutput::PauseRead { conn } => self.live(conn, "PauseRead").paused = true,
                EngineOutput::ResumeRead { conn } => {
                    self.live(conn, "ResumeRead").paused = false;
                }
                EngineOutput::Event(_) => {}
            }
        }
        self.check();
    }

    /// Remembers ids, tokens and refs the engine sent, so later inputs can use them.
    fn learn(&mut self, conn: ConnId, text: &str) {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return;
        };
        match value.get("type").and_then(Value::as_str) {
            Some("workerregistered") => push_capped(
                &mut self.workers,
                (
                    str_field(&value, "worker_id"),
                    str_field(&value, "reattach_token"),
                ),
            ),
            Some("invokefunction") => push_capped(
                &mut self.calls,
                (
                    conn,
                    str_field(&value, "invocation_id"),
                    str_field(&value, "function_id"),
                ),
            ),
            Some("invocationresult") => {
                if let Some(result) = value.get("result") {
                    for (_, channel_ref) in extract_channel_refs(result) {
                        push_capped(&mut self.refs, channel_ref);
                    }
                }
            }
            Some("registertrigger") => push_capped(
                &mut self.triggers,
                (
                    str_field(&value, "id"),
                    str_field(&value, "trigger_type"),
                    str_field(&value, "function_id"),
                ),
            ),
            _ => {}
        }
    }

    fn check(&self) {
        let stats = self.engine.stats();
        assert!(
            stats.connections <= self.config.max_connections,
            "{stats:?}"
        );
        assert_eq!(stats.connections, self.conns.len(), "connection count");
        let channels = self.engine.channels();
        assert_eq!(stats.channels, channels.len());
        assert!(stats.channels <= self.config.max_channels, "{stats:?}");
        let mut bytes = 0;
        let mut frames = 0;
        // The adapter (this rig) delivers nothing after PauseRead; a real one may still
        // deliver its read-ahead, so the core must leave room for it.
        let room = self.config.read_ahead_bytes + self.config.max_channel_message_bytes;
        for channel in &channels {
            assert!(
                channel.buffered_bytes + room <= self.config.channel_buffer_bytes,
                "channel holds {} bytes, leaving less than the read-ahead {room} under the limit {}",
                channel.buffered_bytes,
                self.config.channel_buffer_bytes
            );
            assert!(
                channel.buffered_frames <= channel.buffer_size,
                "channel holds {} frames, buffer_size {}",
                channel.buffered_frames,
                channel.buffer_size
            );
            bytes += channel.buffered_bytes;
            frames += channel.buffered_frames;
        }
        assert_eq!(stats.channel_buffered_bytes, bytes, "byte totals disagree");
        assert_eq!(
            stats.channel_buffered_frames, frames,
            "frame totals disagree"
        );
    }

    /// A live connection, sometimes one already reported closed or never accepted.
    fn pick_conn(&self, input: &mut Input<'_>) -> ConnId {
        let live: Vec<ConnId> = self.conns.keys().copied().collect();
        match input.below(live.len() + 1) {
            i if i < live.len() => live[i],
            _ => self
                .gone
                .iter()
                .next_back()
                .copied()
                .unwrap_or(ConnId(u64::MAX)),
        }
    }

    fn target(&self, input: &mut Input<'_>) -> String {
        match input.below(7) {
            0 => "/".to_owned(),
            1 => "/otel".to_owned(),
            2..=4 => {
                let Some(own) = input.pick(&self.refs).cloned() else {
                    return "/".to_owned();
                };
                let mut channel_ref = own;
                match input.below(6) {
                    0 => channel_ref.access_key = "0".repeat(64),
                    1 => {
                        if let Some(other) = input.pick(&self.refs) {
                            channel_ref.access_key = other.access_key.clone();
                        }
                    }
                    2 => {
                        channel_ref.direction = match channel_ref.direction {
                            Direction::Read => Direction::Write,
                            Direction::Write => Direction::Read,
                        }
                    }
                    _ => {}
                }
                channel_url("", &channel_ref)
            }
            5 => format!(
                "/ws/channels/{}?key={}&dir={}",
                input.text(40),
                input.text(70),
                input.text(6)
            ),
            _ => input.text(80),
        }
    }

    fn builtin_data(&self, input: &mut Input<'_>, function_id: &str) -> Value {
        match function_id {
            "engine::channels::create" => match input.below(4) {
                0 => Value::Null,
                1 => json!({"buffer_size": "x"}),
                _ => json!({"buffer_size": input.u16()}),
            },
            "engine::workers::register" => json!({
                "name": input.text(12),
                "runtime": "fuzz",
                "pid": input.u32(),
                "namespace": input.pick(&NAMESPACES).copied().flatten(),
            }),
            "engine::log::info" => json!({
                "message": input.text(90),
                "data": payload_value(input, &self.refs),
                "trace_id": input.text(8),
            }),
            "engine::functions::list" | "engine::triggers::list" => json!({
                "include_internal": input.bool(),
                "prefix": if input.bool() { Some(input.text(6)) } else { None },
                "search": if input.bool() { Some(input.text(6)) } else { None },
            }),
            _ => payload_value(input, &self.refs),
        }
    }

    fn message(&self, input: &mut Input<'_>) -> Message {
        match input.below(6) {
            0 => Message::Binary(Bytes::copy_from_slice(input.bytes(700))),
            1 => Message::Text(Text::from(input.text(700))),
            2 => {
                let len = input.below(1200);
                let byte = if input.bool() { b'x' } else { b' ' };
                Message::Binary(Bytes::from(vec![byte; len]))
            }
            _ => Message::Text(Text::from(self.control_json(input))),
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(14) {
            0 | 1 => {
                let target = self.target(input);
                let authorization = match input.below(4) {
                    0 => None,
                    1 => Some(format!("Bearer {TOKEN}")),
                    2 => Some(input.text(24)),
                    _ => Some(format!("bearer   {TOKEN} ")),
                };
                // One byte picks the origin and the listener (2 and 4: the main one,
                // 3: the RBAC one, 5: one that does not exist).
                let choice = input.below(6);
                let origin = match choice {
                    0 => Some(ORIGIN.to_owned()),
                    1 => Some(input.text(24)),
                    _ => None,
                };
                let listener = match choice {
                    3 => 1,
                    5 => 2,
                    _ => 0,
                };
                let headers = [("cookie".to_owned(), "session=fuzz".to_owned())];
                let peer = Some(std::net::IpAddr::from([127, 0, 0, 1]));
                let request = UpgradeRequest::to(&target)
                    .with_authorization(authorization.as_deref())
                    .with_origin(origin.as_deref())
                    .on_listener(listener, peer, &headers);
                match self.engine.accept(now, &request) {
                    Admission::Accepted(accepted) => self.admitted(accepted.conn),
                    Admission::Deferred(ticket) => {
                        assert!(self.deferred.insert(ticket), "{ticket:?} handed out twice");
                    }
                    Admission::Refused(_) => {}
                }
            }
            2..=6 => {
                let conn = self.pick_conn(input);
                let message = self.message(input);
                // The adapter honours PauseRead: nothing is read from a paused socket.
                if self.conns.get(&conn).is_some_and(|c| c.paused) {
                    return;
                }
                self.engine.handle_message(now, conn, message);
            }
            7 | 8 => {
                let conn = self.pick_conn(input);
                let in_flight = self.conns.get(&conn).map_or(0, |c| c.in_flight);
                let count = match input.below(4) {
                    0 | 1 => in_flight,
                    2 => 1,
                    _ => input.below(8),
                };
                if let Some(state) = self.conns.get_mut(&conn) {
                    state.in_flight -= count.min(state.in_flight);
                }
                self.engine.handle_sent(now, conn, count);
            }
            9 => {
                let conn = self.pick_conn(input);
                let close = match input.below(4) {
                    0 => PeerClose::Frame {
                        code: None,
                        reason: String::new(),
                    },
                    1 => PeerClose::Frame {
                        code: Some(CloseCode::NORMAL),
                        reason: "bye".to_owned(),
                    },
                    2 => PeerClose::Frame {
                        code: Some(CloseCode(input.u16())),
                        reason: input.text(8),
                    },
                    _ => PeerClose::Lost,
                };
                self.engine.handle_closed(now, conn, close);
                self.conns.remove(&conn);
                self.gone.insert(conn);
            }
            10 | 11 => {
                match input.below(3) {
                    0 => self.now += Duration::from_millis(input.below(3000) as u64),
                    1 => {
                        if let Some(at) = self.engine.poll_timeout() {
                            self.now = self.now.max(at);
                        }
                    }
                    _ => {}
                }
                let now = self.now;
                self.engine.handle_timeout(now);
                if let Some(at) = self.engine.poll_timeout() {
                    assert!(at > now, "poll_timeout is due right after handle_timeout");
                }
            }
            12 => {
                let buffer_size = match input.below(3) {
                    0 => None,
                    1 => Some(input.u64()),
                    _ => Some(input.below(12) as u64),
                };
                if let Ok(refs) = self.engine.create_channel(now, buffer_size) {
                    push_capped(&mut self.refs, refs.writer);
                    push_capped(&mut self.refs, refs.reader);
                }
            }
            _ => {
                if input.below(8) == 0 {
                    self.engine.shutdown(now);
                }
            }
        }
        self.drain();
    }
}

/// `engine_inputs`: one [`Engine`] fed arbitrary upgrades, messages (raw bytes and
/// well-formed control messages built from the input), send completions, closes,
/// channel creations and time. After every input the outputs are drained (bounded) and
/// checked: no output for a connection after its `Close` or after `handle_closed`,
/// never more in flight than the send credit, `poll_timeout` after `handle_timeout(now)`
/// is later than `now`, per-channel buffers within `channel_buffer_bytes` and
/// `buffer_size` (the adapter honours `PauseRead`), totals consistent, and connections
/// and channels within their limits.
pub fn engine_inputs(data: &[u8], start: Instant) {
    let mut input = Input::new(data);
    let mut rig = EngineRig::new(input.u8(), start);
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        rig.step(&mut input);
    }
}
