//! Control session: announce, replay, reconnect, rejection, shutdown.

use serde_json::{json, Value};

use super::*;
use crate::channel::Direction;
use crate::wire::control::{null_payload, to_payload};
use crate::wire::{CloseCode, PeerClose};

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
    assert!(
        announce.get("action").is_none(),
        "a call: the answer tells it ran"
    );
    assert_eq!(announce["namespace"], "default");
    assert!(announce["invocation_id"].is_string());
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
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Disconnected, .. }
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
        [WorkerEvent::Rejected { fatal: false, rejection }] if rejection.function_id.as_deref() == Some("f")
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
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Rejected, .. } if *invocation_id == sent
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
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Disconnected, .. } if *invocation_id == call)));
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

#[test]
fn same_seed_same_inputs_same_outputs() {
    let run = || {
        let t0 = base();
        let config = WorkerConfig {
            connect_timeout: secs(10_000),
            ..WorkerConfig::default()
        };
        let mut worker = Worker::new(config, SEED, t0).expect("valid");
        let mut log = Vec::new();
        let mut conn = connect_conn(&drain(&mut worker));
        for step in 0..4u64 {
            worker.handle_connect_failed(t0, conn, None);
            let trigger = TriggerSpec {
                trigger_type: "cron".into(),
                function_id: "f".into(),
                config: null_payload(),
                metadata: None,
            };
            log.push(worker.register_trigger(t0, trigger).expect("ok"));
            let id = worker
                .invoke(t0, "f", null_payload(), None)
                .expect("queued");
            log.push(id.to_string());
            let out = drain(&mut worker);
            log.push(format!("{:?}", worker.poll_timeout().map(|at| at - t0)));
            log.push(format!("{step}: {}", out.len()));
            worker.handle_timeout(t0 + secs(100));
            conn = connect_conn(&drain(&mut worker));
        }
        log
    };
    assert_eq!(run(), run());
}

#[test]
fn offline_changes_are_replayed_not_sent() {
    let t0 = base();
    let mut worker = Worker::new(WorkerConfig::default(), SEED, t0).expect("valid");
    let conn = connect_conn(&drain(&mut worker));
    worker.register_function(t0, function("a")).expect("ok");
    worker.register_function(t0, function("b")).expect("ok");
    worker.unregister_function(t0, "a").expect("ok");
    worker
        .invoke_void(t0, "log", null_payload())
        .expect("queued");
    assert!(drain(&mut worker).is_empty());
    worker.handle_connected(t0, conn);
    assert!(worker.is_connected());
    let sent = sent_json(&drain(&mut worker), conn);
    let summary: Vec<(&str, &str)> = sent
        .iter()
        .map(|m| {
            let kind = m["type"].as_str().unwrap_or("");
            let id = m["id"].as_str().or(m["function_id"].as_str()).unwrap_or("");
            (kind, id)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("invokefunction", "engine::workers::register"),
            ("registerfunction", "b"),
            ("invokefunction", "log"),
        ]
    );
}
