//! Calls: outgoing invocations, incoming invocations and trigger requests.

use serde_json::json;

use super::*;
use crate::wire::control::{null_payload, to_payload};
use crate::wire::{CloseCode, ErrorBody, Message, PeerClose, Text};

#[test]
fn invoke_result_completes_exactly_once() {
    let config = WorkerConfig {
        keepalive_interval: secs(1000),
        idle_timeout: secs(2000),
        connect_timeout: secs(3000),
        ..WorkerConfig::default()
    };
    let (mut worker, t0, conn) = connected(config);
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
        ..
    }] = evs.as_slice()
    else {
        panic!("expected one completion, got {evs:?}");
    };
    assert_eq!(*invocation_id, id);
    assert_eq!(value.get(), r#"{"sum":3}"#);
    engine(&mut worker, t0, conn, result);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(
        worker.poll_timeout(),
        Some(t0 + secs(1000)),
        "only the keepalive is left"
    );

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
        [WorkerEvent::CallCompleted { outcome: CallOutcome::Error(e), .. }] if e.code == crate::wire::codes::INVOCATION_STOPPED
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
        [WorkerEvent::CallCompleted { invocation_id, outcome: CallOutcome::TimedOut, .. }] if *invocation_id == id
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
        [
            json!({"type": "invocationresult", "invocation_id": known, "function_id": "local",
            "traceparent": "tp"})
        ],
        "the call's trace context goes back with the result"
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
        matches!(&evs[1], WorkerEvent::TriggerFailed { error, .. } if error.code == crate::wire::codes::FORBIDDEN)
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
