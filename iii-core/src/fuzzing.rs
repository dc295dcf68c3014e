//! Property drivers behind the cargo-fuzz targets in `fuzz/` (feature `fuzzing`).
//!
//! Every driver is an ordinary function over a byte slice that panics when a property
//! fails. The libFuzzer targets are one-line wrappers around them, and
//! `tests/tests/corpus_replay.rs` replays the committed corpus and regression inputs
//! through the same functions on stable, so `cargo test --workspace` keeps every input
//! that ever found a bug. The drivers of the role machines take their base `Instant`
//! from the caller: the core owns no clock.
//!
//! Inputs are read with [`Input`], which never fails: once the bytes run out every read
//! is zero, so any byte string is a valid (if short) program.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::Instant;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::channel::{channel_url, extract_channel_refs, ChannelRef, Direction};
use crate::chunk::chunks;
use crate::engine::{Engine, EngineConfig, EngineOutput};
use crate::ids::{ConnId, InvocationId};
use crate::outbox::Outbox;
use crate::upgrade::{parse_target, Route};
use crate::wire::control::to_payload;
use crate::wire::{decode, CloseCode, Decoded, ErrorBody, Message, Payload, PeerClose, Text};
use crate::worker::{
    CallOutcome, ConnectTarget, EndId, FunctionSpec, TriggerSpec, TriggerTypeSpec, Worker,
    WorkerConfig, WorkerEvent, WorkerOutput,
};

/// Outputs one input may produce before draining is declared non-terminating.
pub const DRAIN_LIMIT: usize = 100_000;

/// Operations one role-machine input may run (longer inputs are cut).
pub const MAX_OPS: usize = 2_000;

/// A cursor over fuzz input that never fails: past the end every read is zero.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((byte, rest)) => {
                self.data = rest;
                *byte
            }
            None => 0,
        }
    }

    /// One bit of a byte.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A value in `0..n` (0 when `n` is 0), read from as few bytes as fit `n`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let raw = if n <= 1 << 8 {
            usize::from(self.u8())
        } else if n <= 1 << 16 {
            usize::from(self.u16())
        } else {
            self.u32() as usize
        };
        raw % n
    }

    /// Up to `max` raw bytes; the length comes first (one byte, two when `max` > 255).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = if max < 256 {
            usize::from(self.u8())
        } else {
            usize::from(self.u16())
        };
        let len = want.min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        head
    }

    /// Up to `max` bytes as text (invalid UTF-8 replaced).
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// One of `items` (`None` when there are none).
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Small sub-machines
// ---------------------------------------------------------------------------------------

/// `control_decode`: decoding never panics, and a decoded message re-encodes to a fixed
/// point (encode, decode, encode gives the same text and the same message type).
pub fn control_decode(data: &[u8]) {
    let Ok(Decoded::Message(message)) = decode(data, 1 << 20) else {
        return;
    };
    let encoded = message.encode();
    match decode(encoded.as_bytes(), usize::MAX) {
        Ok(Decoded::Message(again)) => {
            assert_eq!(again.kind(), message.kind(), "type changed: {encoded:?}");
            assert_eq!(again.encode(), encoded, "re-encoding is not a fixed point");
        }
        other => panic!("re-encoded message {encoded:?} did not decode: {other:?}"),
    }
}

/// `upgrade_target`: `parse_target` never panics on any string, and a channel route
/// re-rendered with `channel_url("", ..)` parses back to exactly the same channel id, key
/// and direction (routing percent-decodes the id that `channel_url` encodes; see
/// FUZZING.md, findings 1 and 3).
pub fn upgrade_target(data: &[u8]) {
    let target = String::from_utf8_lossy(data);
    let Ok(Route::Channel {
        channel_id,
        key,
        direction,
    }) = parse_target(&target)
    else {
        return;
    };
    let channel_ref = ChannelRef {
        channel_id: channel_id.clone(),
        access_key: key.clone(),
        direction,
    };
    let url = channel_url("", &channel_ref);
    let Ok(Route::Channel {
        channel_id: id_again,
        key: key_again,
        direction: direction_again,
    }) = parse_target(&url)
    else {
        panic!("{url:?} (rendered from {target:?}) is not a channel route");
    };
    assert_eq!(key_again, key, "key of {target:?} changed through {url:?}");
    assert_eq!(
        direction_again, direction,
        "direction changed through {url:?}"
    );
    assert_eq!(id_again, channel_id, "channel id changed through {url:?}");
}

/// `chunker`: chunks concatenate to the input, each is at most `max` (0 counts as 1)
/// and none is empty; there are exactly `ceil(len / max)` of them.
pub fn chunker(data: &[u8]) {
    let mut input = Input::new(data);
    let max = match input.below(4) {
        0 => input.below(4),
        1 => input.below(64),
        2 => input.below(4096),
        _ => usize::from(input.u16()),
    };
    let payload = Bytes::copy_from_slice(input.rest());
    let parts: Vec<Bytes> = chunks(payload.clone(), max).collect();
    let limit = max.max(1);
    for part in &parts {
        assert!(!part.is_empty(), "empty chunk");
        assert!(part.len() <= limit, "chunk of {} > {limit}", part.len());
    }
    assert_eq!(parts.len(), payload.len().div_ceil(limit), "chunk count");
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert_eq!(
        joined,
        payload.to_vec(),
        "chunks do not concatenate to the input"
    );
}

/// `credit`: arbitrary push / release / sent / take_credit sequences on one [`Outbox`],
/// checked step by step against a model: in-flight never exceeds the credit, queued
/// counts and bytes match, pushes overflow exactly when the model says so, and every
/// accepted message is released once, in order.
pub fn credit(data: &[u8]) {
    let mut input = Input::new(data);
    let asked = input.below(5);
    let credit = asked.max(1);
    let mut outbox = Outbox::new(asked);
    let mut queue: VecDeque<(u32, usize)> = VecDeque::new();
    let mut in_flight = 0usize;
    let mut next_tag = 0u32;
    let mut accepted: Vec<u32> = Vec::new();
    let mut released: Vec<u32> = Vec::new();
    let release = |outbox: &mut Outbox, queue: &mut VecDeque<(u32, usize)>, in_flight: usize| {
        let expected = if in_flight < credit {
            queue.pop_front()
        } else {
            None
        };
        let got = outbox.release().map(|message| {
            let Message::Binary(bytes) = message else {
                panic!("a text message came out of a binary-only outbox");
            };
            let tag = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            (tag, bytes.len())
        });
        assert_eq!(got, expected, "release");
        got
    };
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        match input.below(6) {
            0 | 1 => {
                let len = 4 + input.below(64);
                let limit = match input.below(4) {
                    0 => usize::MAX,
                    _ => input.below(512),
                };
                let mut body = vec![0u8; len];
                body[..4].copy_from_slice(&next_tag.to_le_bytes());
                let queued: usize = queue.iter().map(|(_, l)| l).sum();
                let fits = queue.is_empty() || queued.saturating_add(len) <= limit;
                let pushed = outbox.push(Message::Binary(Bytes::from(body)), limit);
                assert_eq!(pushed.is_ok(), fits, "push of {len} with limit {limit}");
                if fits {
                    queue.push_back((next_tag, len));
                    accepted.push(next_tag);
                }
                next_tag += 1;
            }
            2 => {
                if let Some((tag, _)) = release(&mut outbox, &mut queue, in_flight) {
                    in_flight += 1;
                    released.push(tag);
                }
            }
            3 => {
                let count = match input.below(3) {
                    0 => usize::MAX,
                    _ => input.below(4),
                };
                assert_eq!(outbox.sent(count), count.min(in_flight), "sent({count})");
                in_flight -= count.min(in_flight);
            }
            4 => {
                let expected = in_flight < credit;
                assert_eq!(outbox.take_credit(), expected, "take_credit");
                if expected {
                    in_flight += 1;
                }
            }
            _ => assert_eq!(outbox.has_credit(), in_flight < credit),
        }
        assert!(outbox.in_flight() <= credit, "in flight over credit");
        assert_eq!(outbox.in_flight(), in_flight, "in-flight count");
        assert_eq!(outbox.queued(), queue.len(), "queued count");
        let queued: usize = queue.iter().map(|(_, l)| l).sum();
        assert_eq!(outbox.queued_bytes(), queued, "queued bytes");
    }
    // Return all credit and drain: every accepted message comes out exactly once, in order.
    loop {
        outbox.sent(usize::MAX);
        in_flight = 0;
        match release(&mut outbox, &mut queue, in_flight) {
            Some((tag, _)) => released.push(tag),
            None => break,
        }
    }
    assert_eq!(released, accepted, "messages lost, duplicated or reordered");
    assert_eq!(outbox.queued_bytes(), 0);
}

// ---------------------------------------------------------------------------------------
// The engine
// ---------------------------------------------------------------------------------------

const FUNCTION_IDS: [&str; 6] = ["f0", "f1", "f2", "ns::g", "engine::mine", ""];
const BUILTINS: [&str; 7] = [
    "engine::channels::create",
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
const BINDINGS: [&str; 3] = ["b0", "b1", "b2"];
const TOKEN: &str = "fuzz-token";

/// Engine limits small enough for fuzz inputs to reach every one of them.
fn engine_config(flags: u8) -> EngineConfig {
    EngineConfig {
        max_control_message_bytes: 4096,
        max_control_queue_bytes: if flags & 1 == 0 { 1024 } else { 64 << 10 },
        send_credit: 1 + usize::from((flags >> 1) & 3),
        default_channel_buffer: 4,
        max_channel_buffer: 8,
        channel_buffer_bytes: 2048,
        max_channel_message_bytes: 512,
        channel_attach_timeout: Duration::from_millis(1000),
        max_channels: 6,
        max_connections: 12,
        auth_token: (flags & 8 != 0).then(|| TOKEN.to_owned()),
        functions_available_delay: Duration::from_millis(20),
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
}

fn push_capped<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= 16 {
        list.remove(0);
    }
    list.push(item);
}

fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A JSON payload: scalars, objects, arrays, and objects holding known channel refs.
fn payload_value(input: &mut Input<'_>, refs: &[ChannelRef]) -> Value {
    match input.below(6) {
        0 => Value::Null,
        1 => json!({}),
        2 => json!({"a": input.u8(), "s": input.text(16)}),
        3 => json!([1, "x", null, {"k": [true]}]),
        4 => match input.pick(refs) {
            Some(channel_ref) => json!({"label": "x", "stream": channel_ref}),
            None => json!({"channel_id": "c", "access_key": "k", "direction": "read"}),
        },
        _ => Value::String(input.text(16)),
    }
}

fn uuid_value(input: &mut Input<'_>) -> Value {
    match input.below(8) {
        0 => Value::String("not-a-uuid".to_owned()),
        1 => Value::Null,
        _ => Value::String(Uuid::from_u64_pair(input.u64(), input.u64()).to_string()),
    }
}

fn error_value(input: &mut Input<'_>) -> Value {
    json!({"code": input.text(12), "message": input.text(12)})
}

/// Drops one field now and then, so decoders see missing and mistyped fields too.
fn finish_object(input: &mut Input<'_>, mut object: Map<String, Value>) -> String {
    match input.below(16) {
        0 if !object.is_empty() => {
            let index = input.below(object.len());
            if let Some(key) = object.keys().nth(index).cloned() {
                object.remove(&key);
            }
        }
        1 => {
            let index = input.below(object.len().max(1));
            if let Some(key) = object.keys().nth(index).cloned() {
                object.insert(key, json!(17));
            }
        }
        _ => {}
    }
    Value::Object(object).to_string()
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
        }
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
                EngineOutput::Close { conn, .. } => self.live(conn, "Close").closed = true,
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
        for channel in &channels {
            assert!(
                channel.buffered_bytes <= self.config.channel_buffer_bytes,
                "channel holds {} bytes, limit {}",
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
            "engine::functions::list" | "engine::triggers::list" => json!({
                "include_internal": input.bool(),
                "prefix": if input.bool() { Some(input.text(6)) } else { None },
                "search": if input.bool() { Some(input.text(6)) } else { None },
            }),
            _ => payload_value(input, &self.refs),
        }
    }

    /// A well-formed control message (sometimes with one field dropped or mistyped)
    /// built from the input and from what the engine said before.
    fn control_json(&self, input: &mut Input<'_>) -> String {
        let mut o = Map::new();
        let set = |o: &mut Map<String, Value>, key: &str, value: Value| {
            o.insert(key.to_owned(), value);
        };
        let function = |input: &mut Input<'_>| {
            input
                .pick(&FUNCTION_IDS)
                .copied()
                .unwrap_or_default()
                .to_owned()
        };
        match input.below(16) {
            0 => {
                set(&mut o, "type", json!("registerfunction"));
                set(&mut o, "id", json!(function(input)));
                if input.bool() {
                    set(&mut o, "description", json!(input.text(20)));
                }
                if input.bool() {
                    set(&mut o, "metadata", json!({"internal": input.bool()}));
                }
            }
            1 => {
                set(&mut o, "type", json!("unregisterfunction"));
                set(&mut o, "id", json!(function(input)));
            }
            2..=4 => {
                set(&mut o, "type", json!("invokefunction"));
                let function_id = if input.bool() {
                    function(input)
                } else {
                    input
                        .pick(&BUILTINS)
                        .copied()
                        .unwrap_or_default()
                        .to_owned()
                };
                if input.below(4) != 0 {
                    set(&mut o, "invocation_id", uuid_value(input));
                }
                let data = self.builtin_data(input, &function_id);
                set(&mut o, "data", data);
                set(&mut o, "function_id", json!(function_id));
                match input.below(6) {
                    0 => set(&mut o, "action", json!({"type": "void"})),
                    1 => set(&mut o, "action", json!({"type": "enqueue", "queue": "q"})),
                    _ => {}
                }
                if input.bool() {
                    set(&mut o, "namespace", json!(input.pick(&NAMESPACES)));
                }
                if input.bool() {
                    set(&mut o, "metadata", payload_value(input, &self.refs));
                }
            }
            5 | 6 => {
                set(&mut o, "type", json!("invocationresult"));
                match input.pick(&self.calls) {
                    Some((_, id, function_id)) if input.below(4) != 0 => {
                        set(&mut o, "invocation_id", json!(id));
                        set(&mut o, "function_id", json!(function_id));
                    }
                    _ => {
                        set(&mut o, "invocation_id", uuid_value(input));
                        set(&mut o, "function_id", json!(function(input)));
                    }
                }
                match input.below(3) {
                    0 => set(&mut o, "error", error_value(input)),
                    1 => set(&mut o, "result", payload_value(input, &self.refs)),
                    _ => {}
                }
            }
            7 => {
                set(&mut o, "type", json!("registertriggertype"));
                set(&mut o, "id", json!(input.pick(&TRIGGER_TYPES)));
                set(&mut o, "description", json!(input.text(10)));
                if input.bool() {
                    set(&mut o, "namespace", json!(input.pick(&NAMESPACES)));
                }
            }
            8 => {
                set(&mut o, "type", json!("unregistertriggertype"));
                set(&mut o, "id", json!(input.pick(&TRIGGER_TYPES)));
            }
            9 => {
                set(&mut o, "type", json!("registertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                set(&mut o, "trigger_type", json!(input.pick(&TRIGGER_TYPES)));
                set(&mut o, "function_id", json!(function(input)));
                set(&mut o, "config", payload_value(input, &self.refs));
                if input.bool() {
                    set(&mut o, "namespace", json!(input.pick(&NAMESPACES)));
                }
                if input.bool() {
                    set(&mut o, "trigger_namespace", json!(input.pick(&NAMESPACES)));
                }
            }
            10 => {
                set(&mut o, "type", json!("triggerregistrationresult"));
                match input.pick(&self.triggers) {
                    Some((id, trigger_type, function_id)) => {
                        set(&mut o, "id", json!(id));
                        set(&mut o, "trigger_type", json!(trigger_type));
                        set(&mut o, "function_id", json!(function_id));
                    }
                    None => set(&mut o, "id", json!(input.pick(&BINDINGS))),
                }
                if input.bool() {
                    set(&mut o, "error", error_value(input));
                }
            }
            11 => {
                set(&mut o, "type", json!("unregistertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                if input.bool() {
                    set(&mut o, "trigger_type", json!(input.pick(&TRIGGER_TYPES)));
                }
            }
            12 => {
                let kind = ["ping", "pong", "registerservice"][input.below(3)];
                set(&mut o, "type", json!(kind));
                set(&mut o, "id", json!("svc"));
            }
            13 => {
                set(&mut o, "type", json!("reattach"));
                match input.pick(&self.workers) {
                    Some((worker_id, token)) => {
                        set(&mut o, "previous_worker_id", json!(worker_id));
                        match input.below(3) {
                            0 => {}
                            1 => set(&mut o, "reattach_token", json!("0".repeat(64))),
                            _ => set(&mut o, "reattach_token", json!(token)),
                        }
                    }
                    None => set(&mut o, "previous_worker_id", json!(input.text(8))),
                }
            }
            14 => {
                if input.bool() {
                    set(&mut o, "type", json!("workerregistered"));
                    set(&mut o, "worker_id", json!("w"));
                } else {
                    set(&mut o, "type", json!("registrationrejected"));
                    set(&mut o, "code", json!("WORKER_NAMESPACE_CONFLICT"));
                }
            }
            _ => set(&mut o, "type", json!(input.text(12))),
        }
        finish_object(input, o)
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
                if let Ok(accepted) = self.engine.accept(now, &target, authorization.as_deref()) {
                    let conn = accepted.conn;
                    assert!(
                        !self.conns.contains_key(&conn) && !self.gone.contains(&conn),
                        "{conn} was handed out twice"
                    );
                    self.conns.insert(conn, EngineConn::default());
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

// ---------------------------------------------------------------------------------------
// The worker
// ---------------------------------------------------------------------------------------

/// Worker limits small enough for fuzz inputs to reach them.
fn worker_config(flags: u8) -> WorkerConfig {
    WorkerConfig {
        invocation_timeout: Duration::from_millis(500),
        reconnect_initial: Duration::from_millis(10),
        reconnect_max: Duration::from_millis(80),
        reconnect_jitter: 0.2,
        max_control_message_bytes: 4096,
        send_credit: 1 + usize::from(flags & 3),
        max_offline_queue_bytes: 1024,
        chunk_size: 32 + 32 * usize::from((flags >> 2) & 3),
        writer_window_bytes: 256,
        reader_window_bytes: 256,
        ..WorkerConfig::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// `Connect` emitted; no answer yet.
    Pending,
    /// Reported connected.
    Open,
    /// The worker emitted `Close` for it.
    Closed,
    /// Reported closed or failed.
    Gone,
}

#[derive(Debug)]
struct WorkerConn {
    control: bool,
    link: Link,
    paused: bool,
    in_flight: usize,
}

#[derive(Debug)]
struct CallModel {
    deadline: Instant,
    /// Handed to an open control connection (the engine knows it).
    sent: bool,
}

/// What a delivered `invocationresult` must complete, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    OkNone,
    Error,
}

struct WorkerRig {
    worker: Worker,
    credit: usize,
    default_timeout: Duration,
    now: Instant,
    conns: BTreeMap<ConnId, WorkerConn>,
    /// Calls returned by `invoke` and not completed.
    calls: BTreeMap<InvocationId, CallModel>,
    /// Every call ever made (results are also sent for finished ones).
    made: Vec<InvocationId>,
    completed: BTreeSet<InvocationId>,
    /// A result was delivered for a pending call: it must complete in this drain.
    expect: Option<(InvocationId, Expect, bool)>,
    /// `Invoked` ids waiting for `complete`.
    incoming: BTreeSet<InvocationId>,
    incoming_seen: Vec<InvocationId>,
    /// `TriggerRequested` ids waiting for an answer.
    trigger_requests: BTreeSet<String>,
    functions: Vec<String>,
    trigger_types: Vec<String>,
    bindings: Vec<String>,
    ends: Vec<EndId>,
    /// Only the ops about calls (the `correlator` target).
    calls_only: bool,
}

const WORKER_FUNCTIONS: [&str; 3] = ["f0", "f1", ""];

impl WorkerRig {
    fn new(flags: u8, start: Instant, calls_only: bool) -> Self {
        let config = worker_config(flags);
        let credit = config.send_credit;
        let default_timeout = config.invocation_timeout;
        let worker = match Worker::new(config, [flags; 32], start) {
            Ok(worker) => worker,
            Err(error) => panic!("fuzz worker config is invalid: {error}"),
        };
        let mut rig = Self {
            worker,
            credit,
            default_timeout,
            now: start,
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            made: Vec::new(),
            completed: BTreeSet::new(),
            expect: None,
            incoming: BTreeSet::new(),
            incoming_seen: Vec::new(),
            trigger_requests: BTreeSet::new(),
            functions: Vec::new(),
            trigger_types: Vec::new(),
            bindings: Vec::new(),
            ends: Vec::new(),
            calls_only,
        };
        rig.drain();
        rig
    }

    /// The control connection the worker asked for last, if it is open.
    fn open_control(&self) -> Option<ConnId> {
        self.conns
            .iter()
            .rev()
            .find(|(_, c)| c.control)
            .filter(|(_, c)| c.link == Link::Open)
            .map(|(conn, _)| *conn)
    }

    fn live(&mut self, conn: ConnId, what: &str) -> &mut WorkerConn {
        let Some(state) = self.conns.get_mut(&conn) else {
            panic!("{what} for {conn}, which the worker never asked to connect");
        };
        assert!(
            !matches!(state.link, Link::Closed | Link::Gone),
            "{what} for {conn} after it was closed ({:?})",
            state.link
        );
        state
    }

    fn drain(&mut self) {
        let credit = self.credit;
        let mut count = 0;
        while let Some(output) = self.worker.poll_output() {
            count += 1;
            assert!(count <= DRAIN_LIMIT, "draining outputs does not terminate");
            match output {
                WorkerOutput::Connect { conn, target } => {
                    assert!(!self.conns.contains_key(&conn), "{conn} reused");
                    self.conns.insert(
                        conn,
                        WorkerConn {
                            control: target == ConnectTarget::Control,
                            link: Link::Pending,
                            paused: false,
                            in_flight: 0,
                        },
                    );
                }
                WorkerOutput::Transmit { conn, .. } => {
                    let state = self.live(conn, "Transmit");
                    assert_eq!(
                        state.link,
                        Link::Open,
                        "Transmit on {conn} before it opened"
                    );
                    state.in_flight += 1;
                    assert!(state.in_flight <= credit, "{conn}: in flight over credit");
                }
                WorkerOutput::Close { conn, .. } => self.live(conn, "Close").link = Link::Closed,
                WorkerOutput::PauseRead { conn } => self.live(conn, "PauseRead").paused = true,
                WorkerOutput::ResumeRead { conn } => {
                    self.live(conn, "ResumeRead").paused = false;
                }
                WorkerOutput::Event(event) => self.event(event),
            }
        }
        if let Some((id, _, _)) = self.expect.take() {
            panic!("a result for pending call {id} did not complete it");
        }
    }

    fn event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::CallCompleted {
                invocation_id,
                outcome,
                ..
            } => {
                assert!(
                    self.calls.remove(&invocation_id).is_some(),
                    "call {invocation_id} completed but was not pending (completed before: {})",
                    self.completed.contains(&invocation_id)
                );
                self.completed.insert(invocation_id);
                if let Some((id, expect, _)) = self.expect {
                    if id == invocation_id {
                        let got = match &outcome {
                            CallOutcome::Ok(Some(_)) => Some(Expect::Ok),
                            CallOutcome::Ok(None) => Some(Expect::OkNone),
                            CallOutcome::Error(_) => Some(Expect::Error),
                            _ => None,
                        };
                        assert_eq!(got, Some(expect), "call {id} ended with {outcome:?}");
                        self.expect = None;
                    }
                }
            }
            WorkerEvent::Invoked { invocation_id, .. } => {
                self.incoming.insert(invocation_id);
                push_capped(&mut self.incoming_seen, invocation_id);
            }
            WorkerEvent::TriggerRequested { id, .. } => {
                self.trigger_requests.insert(id);
            }
            WorkerEvent::TriggerRemoved { id, .. } => {
                self.trigger_requests.remove(&id);
            }
            WorkerEvent::Disconnected { .. } => {
                // The worker drops incoming work and trigger requests with the connection.
                self.incoming.clear();
                self.trigger_requests.clear();
            }
            _ => {}
        }
    }

    fn pick_conn(&self, input: &mut Input<'_>, want: &[Link]) -> Option<ConnId> {
        let conns: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| want.contains(&c.link))
            .map(|(conn, _)| *conn)
            .collect();
        input.pick(&conns).copied()
    }

    /// A result or error for a known call (pending or finished) or an unknown id.
    fn result_json(&mut self, input: &mut Input<'_>) -> String {
        let mut o = Map::new();
        o.insert("type".to_owned(), json!("invocationresult"));
        let id = match input.pick(&self.made) {
            Some(id) if input.below(5) != 0 => Some(*id),
            _ => None,
        };
        match id {
            Some(id) => o.insert("invocation_id".to_owned(), json!(id)),
            None => o.insert("invocation_id".to_owned(), uuid_value(input)),
        };
        o.insert("function_id".to_owned(), json!("f0"));
        let expect = match input.below(4) {
            0 => {
                o.insert("error".to_owned(), error_value(input));
                if input.bool() {
                    o.insert("result".to_owned(), json!(1));
                }
                Expect::Error
            }
            1 => Expect::OkNone,
            2 => {
                o.insert("result".to_owned(), Value::Null);
                Expect::OkNone
            }
            _ => {
                o.insert("result".to_owned(), json!({"v": input.u8()}));
                Expect::Ok
            }
        };
        if let Some(id) = id {
            if self.calls.contains_key(&id) {
                self.expect = Some((id, expect, false));
            }
        }
        Value::Object(o).to_string()
    }

    fn control_json(&mut self, input: &mut Input<'_>) -> String {
        let mut o = Map::new();
        let set = |o: &mut Map<String, Value>, key: &str, value: Value| {
            o.insert(key.to_owned(), value);
        };
        match input.below(14) {
            0 => {
                set(&mut o, "type", json!("workerregistered"));
                set(&mut o, "worker_id", json!(input.text(8)));
                if input.bool() {
                    set(&mut o, "reattach_token", json!("ab".repeat(32)));
                }
            }
            1 => {
                set(&mut o, "type", json!("registrationrejected"));
                let code = match input.below(4) {
                    0 => "WORKER_NAMESPACE_CONFLICT".to_owned(),
                    1 => input.text(8),
                    _ => "FUNCTION_NAMESPACE_CONFLICT".to_owned(),
                };
                set(&mut o, "code", json!(code));
                set(&mut o, "namespace", json!("default"));
                set(&mut o, "function_id", json!("f0"));
                set(&mut o, "owner_worker_id", json!("other"));
            }
            2..=5 => return self.result_json(input),
            6..=8 => {
                set(&mut o, "type", json!("invokefunction"));
                match input.below(4) {
                    0 => {}
                    1 => {
                        if let Some(id) = input.pick(&self.incoming_seen) {
                            set(&mut o, "invocation_id", json!(id));
                        }
                    }
                    _ => set(&mut o, "invocation_id", uuid_value(input)),
                }
                let function_id = input.pick(&WORKER_FUNCTIONS).copied().unwrap_or_default();
                set(&mut o, "function_id", json!(function_id));
                set(&mut o, "data", payload_value(input, &[]));
                if input.bool() {
                    set(&mut o, "metadata", json!({"m": 1}));
                }
            }
            9 => {
                set(&mut o, "type", json!("registertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                let trigger_type = match input.pick(&self.trigger_types) {
                    Some(t) if input.bool() => t.clone(),
                    _ => "tt9".to_owned(),
                };
                set(&mut o, "trigger_type", json!(trigger_type));
                set(&mut o, "function_id", json!("f0"));
                set(&mut o, "config", json!({"c": 1}));
            }
            10 => {
                set(&mut o, "type", json!("unregistertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                if input.bool() {
                    set(&mut o, "trigger_type", json!("tt0"));
                }
            }
            11 => {
                set(&mut o, "type", json!("triggerregistrationresult"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                set(&mut o, "trigger_type", json!("tt0"));
                set(&mut o, "function_id", json!("f0"));
                if input.bool() {
                    set(&mut o, "error", error_value(input));
                }
            }
            12 => set(
                &mut o,
                "type",
                json!(["ping", "pong", "observe"][input.below(3)]),
            ),
            _ => return input.text(200),
        }
        finish_object(input, o)
    }

    /// The adapter's side: connects, failures, messages, completions, closes.
    fn network(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(8) {
            0 | 1 => {
                let Some(conn) = self.pick_conn(input, &[Link::Pending]) else {
                    return;
                };
                if input.below(4) == 0 {
                    let status = [None, Some(404), Some(401), Some(503)][input.below(4)];
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.link = Link::Gone;
                    }
                    self.worker.handle_connect_failed(now, conn, status);
                } else {
                    let control = self.conns.get(&conn).is_some_and(|c| c.control);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.link = Link::Open;
                    }
                    if control {
                        // The worker hands every pending call to the new connection.
                        for call in self.calls.values_mut() {
                            call.sent = true;
                        }
                    }
                    self.worker.handle_connected(now, conn);
                }
            }
            2..=4 => {
                let Some(conn) = self.pick_conn(input, &[Link::Open]) else {
                    return;
                };
                let Some(state) = self.conns.get(&conn) else {
                    return;
                };
                if state.paused {
                    return;
                }
                let control = state.control;
                let current = self.open_control() == Some(conn);
                let message = match (control, input.below(8)) {
                    (true, 0) => Message::Binary(Bytes::copy_from_slice(input.bytes(300))),
                    (true, _) => Message::Text(Text::from(self.control_json(input))),
                    (false, 0) => Message::Text(Text::from(input.text(100))),
                    (false, _) => {
                        let len = input.below(400);
                        Message::Binary(Bytes::from(vec![7u8; len]))
                    }
                };
                if !current {
                    self.expect = None;
                }
                self.worker.handle_message(now, conn, message);
            }
            5 | 6 => {
                let Some(conn) = self.pick_conn(input, &[Link::Open, Link::Closed]) else {
                    return;
                };
                let in_flight = self.conns.get(&conn).map_or(0, |c| c.in_flight);
                let count = match input.below(4) {
                    0 | 1 => in_flight,
                    2 => 1,
                    _ => input.below(8),
                };
                if let Some(state) = self.conns.get_mut(&conn) {
                    state.in_flight -= count.min(state.in_flight);
                }
                self.worker.handle_sent(now, conn, count);
            }
            _ => {
                let Some(conn) = self.pick_conn(input, &[Link::Open, Link::Closed]) else {
                    return;
                };
                let close = match input.below(4) {
                    0 => PeerClose::Frame {
                        code: None,
                        reason: String::new(),
                    },
                    1 => PeerClose::Frame {
                        code: Some(CloseCode(input.u16())),
                        reason: "x".to_owned(),
                    },
                    _ => PeerClose::Lost,
                };
                let lost_control = self.open_control() == Some(conn);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.link = Link::Gone;
                }
                self.worker.handle_closed(now, conn, close);
                if lost_control {
                    self.drain();
                    let stranded: Vec<_> = self.calls.iter().filter(|(_, c)| c.sent).collect();
                    assert!(
                        stranded.is_empty(),
                        "calls sent on a lost connection did not finish: {stranded:?}"
                    );
                }
            }
        }
    }

    fn time(&mut self, input: &mut Input<'_>) {
        match input.below(3) {
            0 => self.now += Duration::from_millis(input.below(1000) as u64),
            1 => {
                if let Some(at) = self.worker.poll_timeout() {
                    self.now = self.now.max(at);
                }
            }
            _ => {}
        }
        let now = self.now;
        self.worker.handle_timeout(now);
        if let Some(at) = self.worker.poll_timeout() {
            assert!(at > now, "poll_timeout is due right after handle_timeout");
        }
        self.drain();
        let overdue: Vec<_> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .collect();
        assert!(overdue.is_empty(), "calls past their deadline: {overdue:?}");
    }

    fn invoke(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        let function_id = ["f0", "remote", "engine::channels::create", ""][input.below(4)];
        let timeout = match input.below(3) {
            0 => None,
            _ => Some(Duration::from_millis(input.below(2000) as u64)),
        };
        let data = to_payload(&payload_value(input, &[]));
        let open = self.worker.is_connected();
        let (result, timeout) = match input.below(6) {
            // `create_channel` always uses the configured default timeout.
            0 => (self.worker.create_channel(now, Some(input.below(9))), None),
            1 => {
                let _ = self.worker.invoke_void(now, function_id, data);
                return;
            }
            _ => (self.worker.invoke(now, function_id, data, timeout), timeout),
        };
        if let Ok(id) = result {
            assert!(
                !self.completed.contains(&id) && !self.calls.contains_key(&id),
                "invocation id {id} reused"
            );
            let timeout = timeout.unwrap_or(self.default_timeout);
            self.calls.insert(
                id,
                CallModel {
                    deadline: now + timeout,
                    sent: open,
                },
            );
            push_capped(&mut self.made, id);
        }
    }

    fn complete(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        let id = match input.pick(&self.incoming_seen) {
            Some(id) if input.below(4) != 0 => *id,
            _ => Uuid::from_u64_pair(input.u64(), 1),
        };
        let result: Result<Option<Payload>, ErrorBody> = match input.below(3) {
            0 => Err(ErrorBody::new("failed", "fuzz")),
            1 => Ok(None),
            _ => Ok(Some(to_payload(&json!({"r": input.u8()})))),
        };
        let waiting = self.incoming.remove(&id);
        let done = self.worker.complete(now, id, result).is_ok();
        assert_eq!(
            done, waiting,
            "complete({id}) accepted={done}, waiting={waiting}"
        );
    }

    /// The application's side: every command of the worker API.
    fn command(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(20) {
            0..=2 => self.invoke(input),
            3 | 4 => self.complete(input),
            5 => {
                let id = match input.pick(&BINDINGS) {
                    Some(id) => (*id).to_owned(),
                    None => String::new(),
                };
                let waiting = self.trigger_requests.remove(&id);
                let result = if input.bool() {
                    Ok(())
                } else {
                    Err(ErrorBody::new("trigger_registration_failed", "no"))
                };
                let done = self
                    .worker
                    .trigger_registration_result(now, &id, result)
                    .is_ok();
                assert_eq!(done, waiting, "trigger_registration_result({id})");
            }
            6 => {
                let id = WORKER_FUNCTIONS[input.below(3)].to_owned();
                if input.bool() {
                    let spec = FunctionSpec {
                        id: id.clone(),
                        description: None,
                        request_format: None,
                        response_format: None,
                        metadata: None,
                    };
                    if self.worker.register_function(now, spec).is_ok() {
                        self.functions.push(id);
                    }
                } else if self.worker.unregister_function(now, &id).is_ok() {
                    self.functions.retain(|f| *f != id);
                }
            }
            7 => {
                let id = ["tt0", "tt1", ""][input.below(3)].to_owned();
                if input.bool() {
                    let spec = TriggerTypeSpec {
                        id: id.clone(),
                        description: "fuzz".to_owned(),
                        trigger_request_format: None,
                        call_request_format: None,
                    };
                    if self.worker.register_trigger_type(now, spec).is_ok() {
                        self.trigger_types.push(id);
                    }
                } else if self.worker.unregister_trigger_type(now, &id).is_ok() {
                    self.trigger_types.retain(|t| *t != id);
                }
            }
            8 => {
                if input.bool() {
                    let spec = TriggerSpec {
                        trigger_type: ["tt0", "cron", ""][input.below(3)].to_owned(),
                        function_id: ["f0", ""][input.below(2)].to_owned(),
                        config: to_payload(&json!({"c": 1})),
                        metadata: None,
                    };
                    if let Ok(id) = self.worker.register_trigger(now, spec) {
                        push_capped(&mut self.bindings, id);
                    }
                } else {
                    let id = input.pick(&self.bindings).cloned().unwrap_or_default();
                    let _ = self.worker.unregister_trigger(now, &id);
                }
            }
            9 => {
                let channel_ref = ChannelRef {
                    channel_id: input.text(8),
                    access_key: "ab".repeat(32),
                    direction: if input.bool() {
                        Direction::Read
                    } else {
                        Direction::Write
                    },
                };
                let end = self.worker.open_channel(now, channel_ref);
                push_capped(&mut self.ends, end);
            }
            10..=18 => {
                let end = match input.pick(&self.ends) {
                    Some(end) => *end,
                    None => EndId(u64::from(input.u8())),
                };
                match input.below(9) {
                    0..=2 => {
                        let len = input.below(600);
                        let _ = self
                            .worker
                            .channel_write(now, end, Bytes::from(vec![1u8; len]));
                    }
                    3 => {
                        let text = input.text(80);
                        let _ = self.worker.channel_send_text(now, end, Text::from(text));
                    }
                    4 => {
                        let _ = self.worker.channel_close(now, end);
                    }
                    5 => {
                        let _ = self.worker.channel_abort(now, end, CloseCode(input.u16()));
                    }
                    6 => {
                        let _ = self.worker.channel_start_reading(now, end);
                    }
                    7 => {
                        let _ = self.worker.channel_consumed(now, end, input.below(400));
                    }
                    _ => self.worker.channel_release(now, end),
                }
            }
            _ => {
                if input.below(8) == 0 {
                    self.worker.shutdown(now);
                    self.drain();
                    assert!(self.calls.is_empty(), "shutdown left calls pending");
                }
            }
        }
    }

    /// The `correlator` op set: calls, results, invocations and their completion,
    /// connection loss, credit and time.
    fn correlator_step(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(12) {
            0..=2 => self.invoke(input),
            3 | 4 => {
                let Some(conn) = self.open_control() else {
                    return self.network(input);
                };
                let text = if input.below(4) == 0 {
                    let mut o = Map::new();
                    o.insert("type".to_owned(), json!("invokefunction"));
                    if input.below(4) != 0 {
                        o.insert("invocation_id".to_owned(), uuid_value(input));
                    }
                    o.insert("function_id".to_owned(), json!("f0"));
                    o.insert("data".to_owned(), json!({"x": 1}));
                    Value::Object(o).to_string()
                } else {
                    self.result_json(input)
                };
                self.worker
                    .handle_message(now, conn, Message::Text(text.into()));
            }
            5 => self.complete(input),
            6 | 7 => self.time(input),
            8 => {
                if input.below(16) == 0 {
                    self.worker.shutdown(now);
                    self.drain();
                    assert!(self.calls.is_empty(), "shutdown left calls pending");
                }
            }
            _ => self.network(input),
        }
    }

    fn step(&mut self, input: &mut Input<'_>) {
        if self.calls_only {
            self.correlator_step(input);
        } else {
            match input.below(4) {
                0 => self.network(input),
                1 => self.time(input),
                _ => self.command(input),
            }
        }
        self.drain();
    }

    /// Runs far past every deadline: each call made must have completed exactly once.
    fn finish(&mut self) {
        for _ in 0..3 {
            self.now += Duration::from_secs(3600);
            let now = self.now;
            self.worker.handle_timeout(now);
            self.drain();
        }
        assert!(
            self.calls.is_empty(),
            "calls never completed: {:?}",
            self.calls
        );
    }
}

/// `worker_inputs`: one [`Worker`] fed connects, connect failures, arbitrary engine
/// messages (raw and well-formed), channel data, send completions, closes, timeouts and
/// every command. After every input the outputs are drained (bounded) and checked: no
/// output for a connection after the worker closed it or it was reported closed,
/// `Transmit` only on connections reported open and within the send credit, connection
/// ids never reused, `poll_timeout` after `handle_timeout(now)` later than `now`, and the
/// call/invocation bookkeeping of [`correlator`]. At the end every call has completed
/// exactly once.
pub fn worker_inputs(data: &[u8], start: Instant) {
    let mut input = Input::new(data);
    let mut rig = WorkerRig::new(input.u8(), start, false);
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        rig.step(&mut input);
    }
    rig.finish();
}

/// `correlator`: the worker's call correlation through the public [`Worker`] API.
/// Arbitrary sequences of `invoke`, results (for pending, finished and unknown ids, with
/// results, nulls and errors), incoming invocations and `complete`, timeouts, connection
/// losses and reconnects. Every call completes exactly once, with the outcome of the
/// result delivered for it, no later than its deadline, and at once when the connection
/// it was sent on is lost; `complete` succeeds exactly once per waiting invocation.
pub fn correlator(data: &[u8], start: Instant) {
    let mut input = Input::new(data);
    let mut rig = WorkerRig::new(input.u8(), start, true);
    // Serve `f0` and start connected, so most calls reach the "engine".
    let spec = FunctionSpec {
        id: "f0".to_owned(),
        description: None,
        request_format: None,
        response_format: None,
        metadata: None,
    };
    if rig.worker.register_function(start, spec).is_ok() {
        rig.functions.push("f0".to_owned());
    }
    if let Some(conn) = rig.pick_conn(&mut Input::new(&[]), &[Link::Pending]) {
        if let Some(c) = rig.conns.get_mut(&conn) {
            c.link = Link::Open;
        }
        rig.worker.handle_connected(start, conn);
        rig.drain();
    }
    let mut ops = 0;
    while !input.is_empty() && ops < MAX_OPS {
        ops += 1;
        rig.step(&mut input);
    }
    rig.finish();
}
