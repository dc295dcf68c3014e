//! Keepalive, idle timeout, the unreachable deadline, connection state and
//! registration barriers.

use serde_json::json;

use super::*;
use crate::wire::control::null_payload;

fn registered(worker: &mut Worker, now: Instant, conn: ConnId) {
    engine(
        worker,
        now,
        conn,
        json!({"type": "workerregistered", "worker_id": "w1"}),
    );
}

fn kinds(outputs: &[WorkerOutput], conn: ConnId) -> Vec<String> {
    sent_json(outputs, conn)
        .iter()
        .map(|m| m["type"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[test]
fn quiet_connections_are_pinged_and_silent_ones_replaced() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    registered(&mut worker, t0, conn);
    drain(&mut worker);
    worker.handle_timeout(t0 + secs(20));
    assert_eq!(kinds(&drain(&mut worker), conn), ["ping"]);
    // A pong (any message) keeps it alive.
    engine(&mut worker, t0 + secs(21), conn, json!({"type": "pong"}));
    worker.handle_timeout(t0 + secs(40));
    assert!(
        kinds(&drain(&mut worker), conn).is_empty(),
        "not quiet for 20 s yet"
    );
    worker.handle_timeout(t0 + secs(41));
    assert_eq!(kinds(&drain(&mut worker), conn), ["ping"]);
    // Nothing more comes back: at 60 s of silence the connection is given up.
    worker.handle_timeout(t0 + secs(61));
    drain(&mut worker);
    worker.handle_timeout(t0 + secs(81));
    let out = drain(&mut worker);
    assert!(
        out.iter().any(|o| matches!(o,
            WorkerOutput::Close { conn: c, reason: "idle timeout", .. } if *c == conn)),
        "{out:?}"
    );
    assert_eq!(worker.connection_state(), ConnectionState::Reconnecting);
    assert!(out.iter().any(|o| matches!(
        o,
        WorkerOutput::Event(WorkerEvent::Disconnected {
            reconnect_at: Some(_)
        })
    )));
}

#[test]
fn an_unreachable_engine_fails_calls_after_the_connect_timeout() {
    let t0 = base();
    let config = WorkerConfig {
        connect_timeout: secs(5),
        ..WorkerConfig::default()
    };
    let mut worker = Worker::new(config, SEED, t0).expect("valid");
    assert_eq!(worker.connection_state(), ConnectionState::Connecting);
    let conn = connect_conn(&drain(&mut worker));
    let queued = worker
        .invoke(t0, "f", null_payload(), None)
        .expect("queued");
    worker.handle_connect_failed(t0, conn, None);
    drain(&mut worker);
    worker.handle_timeout(t0 + secs(5));
    let out = drain(&mut worker);
    let conn = connect_conn(&out); // the reconnect attempt, due after ~1 s
    let evs = events(out);
    assert!(evs.iter().any(|e| matches!(e,
        WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::Unreachable, .. }
            if *invocation_id == queued)));
    assert!(evs.iter().any(|e| matches!(e, WorkerEvent::Unreachable)));
    assert_eq!(
        worker.invoke(t0, "f", null_payload(), None),
        Err(InvokeError::Unreachable),
        "fails at once while unreachable"
    );
    // Reached again: calls work.
    worker.handle_connected(t0 + secs(60), conn);
    registered(&mut worker, t0 + secs(60), conn);
    assert_eq!(worker.connection_state(), ConnectionState::Connected);
    assert!(worker.invoke(t0, "f", null_payload(), None).is_ok());
}

#[test]
fn a_barrier_waits_for_the_announce_answer_then_a_pong() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    let announce = worker.liveness.announce.expect("announce pending");
    worker
        .register_function(t0, function("late::fn"))
        .expect("registers");
    drain(&mut worker);
    let id = worker.sync(t0, secs(5));
    assert!(
        kinds(&drain(&mut worker), conn).is_empty(),
        "no ping before the announce is answered"
    );
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invocationresult", "invocation_id": announce.to_string(),
            "function_id": "engine::workers::register", "result": {"success": true}}),
    );
    let out = drain(&mut worker);
    assert_eq!(kinds(&out, conn), ["ping"]);
    assert!(
        events(out).is_empty(),
        "the announce answer is not a call result"
    );
    engine(&mut worker, t0, conn, json!({"type": "pong"}));
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::Synced { id: done, outcome: SyncOutcome::Done }] if *done == id
    ));
    // A barrier that cannot finish times out.
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let id = worker.sync(t0, secs(2));
    worker.handle_timeout(t0 + secs(2));
    assert!(events(drain(&mut worker)).iter().any(|e| matches!(e,
        WorkerEvent::Synced { id: done, outcome: SyncOutcome::TimedOut } if *done == id)));
    worker.shutdown(t0);
    let id = worker.sync(t0, secs(2));
    assert!(events(drain(&mut worker)).iter().any(|e| matches!(e,
        WorkerEvent::Synced { id: done, outcome: SyncOutcome::Stopped } if *done == id)));
    assert_eq!(worker.connection_state(), ConnectionState::Stopped);
}

#[test]
fn calls_and_results_carry_metadata_and_trace_context() {
    let (mut worker, t0, conn) = connected(WorkerConfig::default());
    let options = CallOptions {
        metadata: Some(crate::wire::control::to_payload(&json!({"tenant": "acme"}))),
        trace: TraceContext {
            traceparent: Some("00-abc-def-01".into()),
            baggage: Some("k=v".into()),
        },
        queue: Some("jobs".into()),
        ..CallOptions::default()
    };
    let id = worker
        .invoke_with(t0, "f", null_payload(), options)
        .expect("sent");
    let sent = sent_json(&drain(&mut worker), conn);
    let call = sent.last().expect("the call");
    assert_eq!(call["metadata"], json!({"tenant": "acme"}));
    assert_eq!(call["traceparent"], "00-abc-def-01");
    assert_eq!(call["baggage"], "k=v");
    assert_eq!(call["action"], json!({"type": "enqueue", "queue": "jobs"}));
    engine(
        &mut worker,
        t0,
        conn,
        json!({"type": "invocationresult", "invocation_id": id.to_string(), "function_id": "f",
            "result": 1, "traceparent": "00-abc-fed-01", "baggage": "k=w"}),
    );
    let evs = events(drain(&mut worker));
    let [WorkerEvent::CallCompleted { trace, .. }] = evs.as_slice() else {
        panic!("{evs:?}");
    };
    assert_eq!(trace.traceparent.as_deref(), Some("00-abc-fed-01"));
    assert_eq!(trace.baggage.as_deref(), Some("k=w"));
}

#[test]
fn keepalive_can_be_turned_off() {
    let config = WorkerConfig {
        keepalive: false,
        connect_timeout: secs(5),
        ..WorkerConfig::default()
    };
    let (mut worker, t0, conn) = connected(config);
    registered(&mut worker, t0, conn);
    drain(&mut worker);
    assert_eq!(worker.poll_timeout(), None, "no timer left: nothing recurs");
    worker.handle_timeout(t0 + secs(3600));
    assert!(kinds(&drain(&mut worker), conn).is_empty());
}
