//! Unit tests: a `Worker` driven directly with a fixed seed and a base instant.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use super::*;
use crate::channel::{ChannelRef, Direction};
use crate::wire::control::{null_payload, to_payload};
use crate::wire::{CloseCode, ErrorBody, Message, PeerClose, Text};

const SEED: [u8; 32] = [9; 32];

/// The only clock reading in these tests: a base every other instant is offset from.
#[allow(clippy::disallowed_methods)]
fn base() -> Instant {
    Instant::now()
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn drain(worker: &mut Worker) -> Vec<WorkerOutput> {
    std::iter::from_fn(|| worker.poll_output()).collect()
}

fn json_of(message: &Message) -> Value {
    let Message::Text(text) = message else {
        panic!("expected text, got {message:?}");
    };
    serde_json::from_str(text.as_str()).expect("worker sends JSON")
}

/// The JSON of every control message transmitted on `conn`.
fn sent_json(outputs: &[WorkerOutput], conn: ConnId) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            WorkerOutput::Transmit { conn: c, message } if *c == conn => Some(json_of(message)),
            _ => None,
        })
        .collect()
}

fn events(outputs: Vec<WorkerOutput>) -> Vec<WorkerEvent> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            WorkerOutput::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}

fn connect_conn(outputs: &[WorkerOutput]) -> ConnId {
    outputs
        .iter()
        .find_map(|output| match output {
            WorkerOutput::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a Connect output")
}

fn engine(worker: &mut Worker, now: Instant, conn: ConnId, value: Value) {
    worker.handle_message(now, conn, Message::Text(Text::from(value.to_string())));
}

fn function(id: &str) -> FunctionSpec {
    FunctionSpec {
        id: id.into(),
        description: None,
        request_format: None,
        response_format: None,
        metadata: None,
    }
}

/// A worker whose control connection is open, with its outputs drained.
fn connected(config: WorkerConfig) -> (Worker, Instant, ConnId) {
    let t0 = base();
    let mut worker = Worker::new(config, SEED, t0).expect("valid config");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    drain(&mut worker);
    (worker, t0, conn)
}

#[test]
fn announce_order_then_replay_with_reattach_first() {
    let t0 = base();
    let mut config = WorkerConfig::default();
    config.identity.pid = Some(42);
    let mut worker = Worker::new(config, SEED, t0).expect("valid config");
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [WorkerOutput::Connect {
            target: ConnectTarget::Control,
            ..
        }]
    ));
    let conn1 = connect_conn(&out);
    worker
        .register_function(t0, function("math::add"))
        .expect("registers");
    let tt = TriggerTypeSpec {
        id: "cron".into(),
        description: "clock".into(),
        trigger_request_format: None,
        call_request_format: None,
    };
    worker.register_trigger_type(t0, tt).expect("registers");
    let trigger = TriggerSpec {
        trigger_type: "cron".into(),
        function_id: "math::add".into(),
        config: null_payload(),
        metadata: None,
    };
    let trigger_id = worker.register_trigger(t0, trigger).expect("registers");
    let call = worker
        .invoke(t0, "other::fn", to_payload(&json!({"a": 1})), None)
        .expect("queued offline");
    assert!(drain(&mut worker).is_empty(), "nothing is sent before open");

    worker.handle_connected(t0, conn1);
    let sent = sent_json(&drain(&mut worker), conn1);
    let kinds: Vec<&str> = sent
        .iter()
        .map(|m| m["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "invokefunction",
            "registertriggertype",
            "registerfunction",
            "registertrigger",
            "invokefunction"
        ]
    );
    let announce = &sent[0];
    assert_eq!(announce["function_id"], "engine::workers::register");
    assert_eq!(announce["action"], json!({"type": "void"}));
    assert_eq!(announce["namespace"], "default");
    assert!(announce.get("invocation_id").is_none());
    assert_eq!(announce["data"]["runtime"], "rust");
    assert_eq!(announce["data"]["pid"], 42);
    assert_eq!(
        announce["data"]["telemetry"],
        json!({"language": "rust", "framework": "iii-rs"})
    );
    assert!(announce["data"].get("namespace").is_none());
    assert_eq!(sent[3]["id"], trigger_id.as_str());
    assert_eq!(sent[3]["config"], Value::Null);
    assert_eq!(sent[4]["invocation_id"], call.to_string());

    engine(
        &mut worker,
        t0,
        conn1,
        json!({"type": "workerregistered", "worker_id": "w1", "reattach_token": "tok"}),
    );
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::Registered { worker_id }] if worker_id == "w1"
    ));
    assert_eq!(worker.worker_id(), Some("w1"));

    worker.handle_closed(t0, conn1, PeerClose::Lost);
    let evs = events(drain(&mut worker));
    assert!(matches!(
        &evs[0],
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Disconnected }
            if *invocation_id == call
    ));
    let Some(WorkerEvent::Disconnected {
        reconnect_at: Some(at),
    }) = evs.get(1)
    else {
        panic!("expected Disconnected, got {evs:?}");
    };
    assert!(!worker.is_connected());
    assert_eq!(worker.poll_timeout(), Some(*at));
    worker.handle_timeout(*at);
    let conn2 = connect_conn(&drain(&mut worker));
    assert_ne!(conn1, conn2);
    worker.handle_connected(*at, conn2);
    let sent = sent_json(&drain(&mut worker), conn2);
    assert_eq!(
        sent[0],
        json!({"type": "reattach", "previous_worker_id": "w1", "reattach_token": "tok"})
    );
    let kinds: Vec<&str> = sent
        .iter()
        .map(|m| m["type"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "reattach",
            "invokefunction",
            "registertriggertype",
            "registerfunction",
            "registertrigger"
        ],
        "the failed call is not replayed"
    );
}

#[test]
fn registrations_while_connected_are_sent_and_checked() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    worker.register_function(t0, function("a")).expect("ok");
    assert_eq!(
        worker.register_function(t0, function("a")),
        Err(RegisterError::Duplicate("a".into()))
    );
    assert_eq!(
        worker.register_function(t0, function("")),
        Err(RegisterError::EmptyField("id"))
    );
    let trigger = TriggerSpec {
        trigger_type: "cron".into(),
        function_id: "a".into(),
        config: to_payload(&json!({"expr": "* * *"})),
        metadata: None,
    };
    let id = worker.register_trigger(t0, trigger).expect("ok");
    worker.unregister_trigger(t0, &id).expect("ok");
    worker.unregister_function(t0, "a").expect("ok");
    assert_eq!(
        worker.unregister_function(t0, "a"),
        Err(RegisterError::NotFound("a".into()))
    );
    let sent = sent_json(&drain(&mut worker), conn);
    assert_eq!(sent[0]["type"], "registerfunction");
    assert_eq!(sent[1]["config"], json!({"expr": "* * *"}));
    assert_eq!(
        sent[2],
        json!({"type": "unregistertrigger", "id": id, "trigger_type": "cron"})
    );
    assert_eq!(sent[3], json!({"type": "unregisterfunction", "id": "a"}));
}

#[test]
fn invoke_result_completes_exactly_once() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    let id = worker
        .invoke(t0, "math::add", to_payload(&json!([1, 2])), None)
        .expect("sent");
    let sent = sent_json(&drain(&mut worker), conn);
    assert_eq!(sent[0]["invocation_id"], id.to_string());
    assert!(sent[0].get("action").is_none());
    assert_eq!(worker.poll_timeout(), Some(t0 + secs(30)));
    let result = json!({"type": "invocationresult", "invocation_id": id.to_string(),
        "function_id": "math::add", "result": {"sum": 3}});
    engine(&mut worker, t0, conn, result.clone());
    let evs = events(drain(&mut worker));
    let [WorkerEvent::CallCompleted {
        invocation_id,
        outcome: CallOutcome::Ok(Some(value)),
    }] = evs.as_slice()
    else {
        panic!("expected one completion, got {evs:?}");
    };
    assert_eq!(*invocation_id, id);
    assert_eq!(value.get(), r#"{"sum":3}"#);
    engine(&mut worker, t0, conn, result);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(worker.poll_timeout(), None);

    let failing = worker.invoke(t0, "x", null_payload(), None).expect("sent");
    drain(&mut worker);
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invocationresult", "invocation_id": failing.to_string(), "function_id": "x",
            "error": {"code": "invocation_stopped", "message": "stopped"}}),
    );
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::CallCompleted { outcome: CallOutcome::Error(e), .. }] if e.code == "invocation_stopped"
    ));
}

#[test]
fn timeout_then_late_result_is_ignored() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    let id = worker
        .invoke(t0, "slow", null_payload(), Some(secs(5)))
        .expect("sent");
    drain(&mut worker);
    worker.handle_timeout(t0 + secs(4));
    assert!(drain(&mut worker).is_empty());
    worker.handle_timeout(t0 + secs(5));
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::TimedOut }] if *invocation_id == id
    ));
    engine(
        &mut worker,
        t0 + secs(6),
        conn,
        json!({"type": "invocationresult", "invocation_id": id.to_string(), "function_id": "slow"}),
    );
    assert!(drain(&mut worker).is_empty());
}

#[test]
fn queued_call_that_times_out_is_not_sent() {
    let t0 = base();
    let mut worker = Worker::new(WorkerConfig::default(), SEED, t0).expect("valid");
    let conn = connect_conn(&drain(&mut worker));
    worker
        .invoke(t0, "f", null_payload(), Some(secs(1)))
        .expect("queued");
    worker.handle_timeout(t0 + secs(1));
    drain(&mut worker);
    worker.handle_connected(t0 + secs(2), conn);
    let sent = sent_json(&drain(&mut worker), conn);
    assert_eq!(sent.len(), 1, "only the announce: {sent:?}");
}

#[test]
fn reconnect_backoff_grows_is_capped_and_resets() {
    let t0 = base();
    let config = WorkerConfig {
        reconnect_jitter: 0.0,
        ..WorkerConfig::default()
    };
    let mut worker = Worker::new(config, SEED, t0).expect("valid");
    let mut conn = connect_conn(&drain(&mut worker));
    let mut now = t0;
    let mut delays = Vec::new();
    for _ in 0..7 {
        worker.handle_connect_failed(now, conn, None);
        let evs = events(drain(&mut worker));
        let [WorkerEvent::Disconnected {
            reconnect_at: Some(at),
        }] = evs.as_slice()
        else {
            panic!("expected Disconnected, got {evs:?}");
        };
        delays.push(at.duration_since(now).as_secs());
        now = *at;
        worker.handle_timeout(now);
        conn = connect_conn(&drain(&mut worker));
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
    worker.handle_connected(now, conn);
    drain(&mut worker);
    worker.handle_closed(now, conn, PeerClose::Lost);
    let evs = events(drain(&mut worker));
    assert!(matches!(
        evs.as_slice(),
        [WorkerEvent::Disconnected { reconnect_at: Some(at) }] if at.duration_since(now) == secs(1)
    ));
}

#[test]
fn jittered_backoff_stays_within_bounds() {
    let t0 = base();
    let mut worker = Worker::new(WorkerConfig::default(), SEED, t0).expect("valid");
    let mut conn = connect_conn(&drain(&mut worker));
    let mut now = t0;
    for attempt in 0..12u32 {
        worker.handle_connect_failed(now, conn, Some(503));
        let evs = events(drain(&mut worker));
        let Some(WorkerEvent::Disconnected {
            reconnect_at: Some(at),
        }) = evs.first()
        else {
            panic!("expected Disconnected");
        };
        let delay = at.duration_since(now).as_secs_f64();
        let base = f64::from(1u32 << attempt.min(5)).min(30.0);
        assert!(
            delay >= base * 0.7 && delay <= base * 1.3,
            "{attempt}: {delay}"
        );
        now = *at;
        worker.handle_timeout(now);
        conn = connect_conn(&drain(&mut worker));
    }
}

#[test]
fn incoming_invocations_and_trigger_requests() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    worker.register_function(t0, function("local")).expect("ok");
    let tt = TriggerTypeSpec {
        id: "webhook".into(),
        description: String::new(),
        trigger_request_format: None,
        call_request_format: None,
    };
    worker.register_trigger_type(t0, tt).expect("ok");
    drain(&mut worker);

    let unknown = "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60";
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invokefunction", "invocation_id": unknown, "function_id": "nope", "data": 1}),
    );
    let sent = sent_json(&drain(&mut worker), conn);
    assert_eq!(
        sent,
        [
            json!({"type": "invocationresult", "invocation_id": unknown, "function_id": "nope",
            "error": {"code": "function_not_found", "message": "Function not found"}})
        ]
    );

    let known = "7f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f61";
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invokefunction", "invocation_id": known, "function_id": "local",
            "data": {"x": 1}, "traceparent": "tp"}),
    );
    let evs = events(drain(&mut worker));
    let [WorkerEvent::Invoked {
        invocation_id,
        data,
        traceparent,
        ..
    }] = evs.as_slice()
    else {
        panic!("expected Invoked, got {evs:?}");
    };
    assert_eq!(data.get(), r#"{"x":1}"#);
    assert_eq!(traceparent.as_deref(), Some("tp"));
    let id = *invocation_id;
    worker.complete(t0, id, Ok(None)).expect("completes");
    assert_eq!(
        worker.complete(t0, id, Ok(None)),
        Err(CompleteError::UnknownInvocation(id))
    );
    let sent = sent_json(&drain(&mut worker), conn);
    assert_eq!(
        sent,
        [json!({"type": "invocationresult", "invocation_id": known, "function_id": "local"})]
    );

    // Without an invocation id: still invoked, completion discarded.
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invokefunction", "function_id": "local", "data": null}),
    );
    let Some(WorkerEvent::Invoked { invocation_id, .. }) = events(drain(&mut worker)).pop() else {
        panic!("expected Invoked");
    };
    worker
        .complete(t0, invocation_id, Err(ErrorBody::new("e", "m")))
        .expect("accepted");
    assert!(drain(&mut worker).is_empty());

    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "registertrigger", "id": "b1", "trigger_type": "webhook",
            "function_id": "f", "config": {"path": "/x"}}),
    );
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::TriggerRequested { id, config, .. }] if id == "b1" && config.get() == r#"{"path":"/x"}"#
    ));
    worker
        .trigger_registration_result(t0, "b1", Ok(()))
        .expect("answers");
    assert_eq!(
        worker.trigger_registration_result(t0, "b1", Ok(())),
        Err(CompleteError::UnknownTrigger("b1".into()))
    );
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "registertrigger", "id": "b2", "trigger_type": "cron", "function_id": "f", "config": null}),
    );
    engine(&mut worker, t0, conn, json!({"type": "ping"}));
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "unregistertrigger", "id": "b1", "trigger_type": "webhook"}),
    );
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "triggerregistrationresult", "id": "t9", "trigger_type": "cron",
            "function_id": "f", "error": {"code": "FORBIDDEN", "message": "no"}}),
    );
    worker.handle_message(t0, conn, Message::Text(Text::from("{not json")));
    engine(&mut worker, t0, conn, json!({"type": "observe"}));
    let out = drain(&mut worker);
    let sent = sent_json(&out, conn);
    assert_eq!(
        sent,
        [
            json!({"type": "triggerregistrationresult", "id": "b1", "trigger_type": "webhook", "function_id": "f"}),
            json!({"type": "triggerregistrationresult", "id": "b2", "trigger_type": "cron", "function_id": "f",
                "error": {"code": "trigger_type_not_found", "message": "Trigger type not found"}}),
            json!({"type": "pong"}),
        ]
    );
    let evs = events(out);
    assert!(
        matches!(&evs[0], WorkerEvent::TriggerRemoved { id, trigger_type: Some(t) } if id == "b1" && t == "webhook")
    );
    assert!(
        matches!(&evs[1], WorkerEvent::TriggerFailed { error, .. } if error.code == "FORBIDDEN")
    );
    assert!(matches!(&evs[2], WorkerEvent::ProtocolViolation { .. }));
    assert_eq!(evs.len(), 3);
}

#[test]
fn control_loss_drops_incoming_invocations() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    worker.register_function(t0, function("local")).expect("ok");
    let known = "7f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f61";
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invokefunction", "invocation_id": known, "function_id": "local"}),
    );
    drain(&mut worker);
    worker.handle_closed(
        t0,
        conn,
        PeerClose::Frame {
            code: Some(CloseCode::GOING_AWAY),
            reason: String::new(),
        },
    );
    let id = known.parse().expect("uuid");
    assert_eq!(
        worker.complete(t0, id, Ok(None)),
        Err(CompleteError::UnknownInvocation(id))
    );
}

#[test]
fn fatal_rejection_fails_calls_and_stops_reconnecting() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    let sent = worker.invoke(t0, "f", null_payload(), None).expect("sent");
    drain(&mut worker);
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "registrationrejected", "code": "FUNCTION_NAMESPACE_CONFLICT",
            "namespace": "default", "function_id": "f", "owner_worker_id": "o"}),
    );
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::Rejected { fatal: false, function_id: Some(f), .. }] if f == "f"
    ));
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "registrationrejected", "code": "WORKER_NAMESPACE_CONFLICT",
            "namespace": "default", "owner_worker_id": "o"}),
    );
    let out = drain(&mut worker);
    assert!(out
        .iter()
        .any(|o| matches!(o, WorkerOutput::Close { conn: c, .. } if *c == conn)));
    let evs = events(out);
    assert!(matches!(&evs[0], WorkerEvent::Rejected { fatal: true, .. }));
    assert!(matches!(
        &evs[1],
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Rejected } if *invocation_id == sent
    ));
    assert!(matches!(
        &evs[2],
        WorkerEvent::Disconnected { reconnect_at: None }
    ));
    worker.handle_closed(t0, conn, PeerClose::Lost);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(worker.poll_timeout(), None);
    assert_eq!(
        worker.invoke(t0, "f", null_payload(), None),
        Err(InvokeError::Stopped)
    );
    assert_eq!(
        worker.register_function(t0, function("g")),
        Err(RegisterError::Stopped)
    );
}

#[test]
fn create_channel_invokes_the_builtin() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    worker.create_channel(t0, Some(8)).expect("sent");
    worker.create_channel(t0, None).expect("sent");
    worker.invoke_void(t0, "log", null_payload()).expect("sent");
    let sent = sent_json(&drain(&mut worker), conn);
    assert_eq!(sent[0]["function_id"], "engine::channels::create");
    assert_eq!(sent[0]["data"], json!({"buffer_size": 8}));
    assert_eq!(sent[1]["data"], json!({"buffer_size": null}));
    assert_eq!(sent[2]["action"], json!({"type": "void"}));
    assert!(sent[2].get("invocation_id").is_none());
}

#[test]
fn offline_queue_is_bounded() {
    let t0 = base();
    let config = WorkerConfig {
        max_offline_queue_bytes: 300,
        ..WorkerConfig::default()
    };
    let mut worker = Worker::new(config, SEED, t0).expect("valid");
    worker
        .invoke(t0, "f", null_payload(), None)
        .expect("first fits");
    let big = to_payload(&"x".repeat(300));
    assert!(matches!(
        worker.invoke(t0, "f", big, None),
        Err(InvokeError::QueueFull { limit: 300, .. })
    ));
}

#[test]
fn control_credit_limits_transmits() {
    let config = WorkerConfig {
        send_credit: 2,
        ..WorkerConfig::default()
    };
    let t0 = base();
    let mut worker = Worker::new(config, SEED, t0).expect("valid");
    let conn = connect_conn(&drain(&mut worker));
    for name in ["a", "b", "c"] {
        worker.register_function(t0, function(name)).expect("ok");
    }
    worker.handle_connected(t0, conn);
    assert_eq!(sent_json(&drain(&mut worker), conn).len(), 2);
    worker.handle_sent(t0, conn, 1);
    assert_eq!(sent_json(&drain(&mut worker), conn).len(), 1);
    worker.handle_sent(t0, conn, 5);
    assert_eq!(sent_json(&drain(&mut worker), conn).len(), 1);
    assert!(drain(&mut worker).is_empty());
}

#[test]
fn shutdown_closes_everything_without_reconnect() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    let call = worker.invoke(t0, "f", null_payload(), None).expect("sent");
    let reader = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_start_reading(t0, reader).expect("starts");
    let reader_conn = connect_conn(&drain(&mut worker));
    worker.shutdown(t0);
    let out = drain(&mut worker);
    assert!(out.iter().any(
        |o| matches!(o, WorkerOutput::Close { conn: c, code: Some(CloseCode::NORMAL), .. } if *c == conn)
    ));
    assert!(out
        .iter()
        .any(|o| matches!(o, WorkerOutput::Close { conn: c, .. } if *c == reader_conn)));
    let evs = events(out);
    assert!(evs.iter().any(|e| matches!(e,
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Disconnected } if *invocation_id == call)));
    assert!(evs.iter().any(|e| matches!(
        e,
        WorkerEvent::ChannelEnded {
            outcome: EndOutcome::Closed,
            ..
        }
    )));
    worker.handle_closed(t0, conn, PeerClose::Lost);
    worker.handle_closed(t0, reader_conn, PeerClose::Lost);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(worker.poll_timeout(), None);
}

pub(super) fn channel_ref(direction: Direction) -> ChannelRef {
    ChannelRef {
        channel_id: "c1".into(),
        access_key: "k".into(),
        direction,
    }
}

#[test]
fn writer_chunks_under_credit_and_window() {
    let config = WorkerConfig {
        send_credit: 2,
        writer_window_bytes: 256 * 1024,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    assert!(drain(&mut worker).is_empty(), "open_channel is lazy");
    let data = Bytes::from(vec![7u8; 200 * 1024]);
    assert_eq!(worker.channel_write(t0, end, data), Ok(200 * 1024));
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [WorkerOutput::Connect { target: ConnectTarget::Channel(r), .. }] if r.direction == Direction::Write
    ));
    let conn = connect_conn(&out);
    // 56 KiB fit the window: a partial write.
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from(vec![1u8; 100 * 1024])),
        Ok(56 * 1024)
    );
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Blocked(end))
    );
    worker.handle_connected(t0, conn);
    let sizes = |out: &[WorkerOutput]| -> Vec<usize> {
        out.iter()
            .filter_map(|o| match o {
                WorkerOutput::Transmit {
                    message: Message::Binary(b),
                    ..
                } => Some(b.len() / 1024),
                _ => None,
            })
            .collect()
    };
    assert_eq!(sizes(&drain(&mut worker)), [64, 64]);
    worker.handle_sent(t0, conn, 1);
    let out = drain(&mut worker);
    assert_eq!(sizes(&out), [64]);
    assert!(matches!(
        events(out).as_slice(),
        [WorkerEvent::ChannelWritable { end: e }] if *e == end
    ));
    worker.handle_sent(t0, conn, 2);
    let out = drain(&mut worker);
    assert_eq!(sizes(&out), [8, 56]);
    assert!(events(out).is_empty(), "Writable is reported once");
    worker.channel_close(t0, end).expect("closes");
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Close { conn: c, code: None, .. },
            WorkerOutput::Event(WorkerEvent::ChannelEnded { outcome: EndOutcome::Closed, .. })
        ] if *c == conn
    ));
    worker.handle_sent(t0, conn, 2);
    worker.handle_closed(t0, conn, PeerClose::Lost);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Ended(end))
    );
}

#[test]
fn clean_close_waits_for_the_queue() {
    let config = WorkerConfig {
        send_credit: 1,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_send_text(t0, end, Text::from("hello"))
        .expect("queued");
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("queued");
    worker.channel_close(t0, end).expect("closing");
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Closing(end))
    );
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [WorkerOutput::Transmit {
            message: Message::Text(_),
            ..
        }]
    ));
    worker.handle_sent(t0, conn, 1);
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Transmit {
                message: Message::Binary(_),
                ..
            },
            WorkerOutput::Close { code: None, .. },
            WorkerOutput::Event(WorkerEvent::ChannelEnded { .. }),
        ]
    ));
}

#[test]
fn close_of_never_connected_writer_connects_then_closes() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker.channel_close(t0, end).expect("closes");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Close { conn: c, code: None, .. },
            WorkerOutput::Event(WorkerEvent::ChannelEnded { outcome: EndOutcome::Closed, .. })
        ] if *c == conn
    ));
}

#[test]
fn abort_drops_the_queue_and_closes_with_code() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("queued");
    worker
        .channel_abort(t0, end, CloseCode::INTERNAL)
        .expect("aborts");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    assert!(matches!(
        drain(&mut worker).as_slice(),
        [
            WorkerOutput::Close {
                code: Some(CloseCode::INTERNAL),
                ..
            },
            WorkerOutput::Event(WorkerEvent::ChannelEnded {
                outcome: EndOutcome::Closed,
                ..
            })
        ]
    ));
}

#[test]
fn writer_closed_by_engine_is_aborted() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("queued");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    drain(&mut worker);
    worker.handle_closed(
        t0,
        conn,
        PeerClose::Frame {
            code: Some(CloseCode::TOO_BIG),
            reason: "too big".into(),
        },
    );
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::ChannelEnded { outcome: EndOutcome::Aborted { code: Some(CloseCode::TOO_BIG), reason }, .. }]
            if reason == "too big"
    ));
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Ended(end))
    );
    worker.handle_sent(t0, conn, 1);
    assert!(drain(&mut worker).is_empty());
}

#[test]
fn reader_pauses_and_resumes() {
    let config = WorkerConfig {
        reader_window_bytes: 100,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    assert_eq!(
        worker.channel_write(t0, end, Bytes::new()),
        Err(WriteError::NotWriter(end))
    );
    worker.channel_start_reading(t0, end).expect("starts");
    worker.channel_start_reading(t0, end).expect("idempotent");
    let out = drain(&mut worker);
    assert_eq!(out.len(), 1);
    let conn = connect_conn(&out);
    worker.handle_connected(t0, conn);
    worker.handle_message(t0, conn, Message::Binary(Bytes::from(vec![1; 60])));
    worker.handle_message(t0, conn, Message::Text(Text::from("x".repeat(50))));
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Event(WorkerEvent::ChannelData { data, .. }),
            WorkerOutput::Event(WorkerEvent::ChannelText { text, .. }),
            WorkerOutput::PauseRead { conn: c },
        ] if data.len() == 60 && text.len() == 50 && *c == conn
    ));
    worker.channel_consumed(t0, end, 50).expect("ok");
    assert!(drain(&mut worker).is_empty(), "60 > half of 100");
    worker.channel_consumed(t0, end, 10).expect("ok");
    assert!(matches!(
        drain(&mut worker).as_slice(),
        [WorkerOutput::ResumeRead { conn: c }] if *c == conn
    ));
}

fn reader_outcome(finish: impl FnOnce(&mut Worker, Instant, ConnId)) -> EndOutcome {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_start_reading(t0, end).expect("starts");
    let conn = connect_conn(&drain(&mut worker));
    finish(&mut worker, t0, conn);
    let evs = events(drain(&mut worker));
    let [WorkerEvent::ChannelEnded { end: e, outcome }] = evs.as_slice() else {
        panic!("expected ChannelEnded, got {evs:?}");
    };
    assert_eq!(*e, end);
    assert_eq!(
        worker.channel_start_reading(t0, end),
        Err(ReadError::Ended(end))
    );
    outcome.clone()
}

#[test]
fn reader_outcomes() {
    let closed = |code: Option<CloseCode>| {
        move |w: &mut Worker, t: Instant, c: ConnId| {
            w.handle_connected(t, c);
            w.handle_closed(
                t,
                c,
                PeerClose::Frame {
                    code,
                    reason: "r".into(),
                },
            );
        }
    };
    assert_eq!(reader_outcome(closed(None)), EndOutcome::Clean);
    assert_eq!(
        reader_outcome(closed(Some(CloseCode::NORMAL))),
        EndOutcome::Clean
    );
    assert_eq!(
        reader_outcome(closed(Some(CloseCode::INTERNAL))),
        EndOutcome::Aborted {
            code: Some(CloseCode::INTERNAL),
            reason: "r".into()
        }
    );
    assert_eq!(
        reader_outcome(|w, t, c| {
            w.handle_connected(t, c);
            w.handle_closed(t, c, PeerClose::Lost);
        }),
        EndOutcome::Lost
    );
    assert_eq!(
        reader_outcome(|w, t, c| w.handle_connect_failed(t, c, Some(404))),
        EndOutcome::Refused { status: Some(404) }
    );
}

#[test]
fn unknown_and_released_ends_are_errors() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let ghost = EndId(99);
    assert_eq!(
        worker.channel_write(t0, ghost, Bytes::new()),
        Err(WriteError::UnknownEnd(ghost))
    );
    assert_eq!(
        worker.channel_consumed(t0, ghost, 1),
        Err(ReadError::UnknownEnd(ghost))
    );
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_start_reading(t0, end).expect("starts");
    let conn = connect_conn(&drain(&mut worker));
    worker.channel_release(t0, end);
    assert!(matches!(
        drain(&mut worker).as_slice(),
        [WorkerOutput::Close { conn: c, .. }] if *c == conn
    ));
    worker.handle_connected(t0, conn);
    worker.handle_message(t0, conn, Message::Binary(Bytes::from_static(b"late")));
    worker.handle_closed(t0, conn, PeerClose::Lost);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(
        worker.channel_start_reading(t0, end),
        Err(ReadError::UnknownEnd(end))
    );
}
