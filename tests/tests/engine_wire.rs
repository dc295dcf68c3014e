//! The engine's control protocol, byte for byte, driven with raw JSON.

use iii_core::engine::{EngineConfig, EngineEvent};
use iii_core::upgrade::Rejection;
use iii_core::{CloseCode, PeerClose};
use iii_tests::raw::RawEngine;
use serde_json::{json, Value};

const ID1: &str = "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60";
const ID2: &str = "0b8f2c1d-1111-4a2b-8c3d-4e5f6a7b8c9d";

fn engine() -> RawEngine {
    RawEngine::new(EngineConfig::default())
}

fn register(raw: &mut RawEngine, conn: iii_core::ConnId, id: &str) {
    raw.send(conn, json!({"type": "registerfunction", "id": id}));
}

#[test]
fn greeting_is_the_first_message_and_carries_uuid_ids() {
    let mut raw = engine();
    let conn = raw.connect("/?anything=1").expect("accepted").conn;
    let first = raw.take_json(conn);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["type"], "workerregistered");
    let worker_id = first[0]["worker_id"].as_str().expect("worker id");
    assert!(uuid::Uuid::parse_str(worker_id).is_ok());
    assert!(first[0]["reattach_token"]
        .as_str()
        .is_some_and(|t| t.len() >= 32));
    assert!(first[0].get("features").is_none());
}

#[test]
fn invoke_reuses_the_callers_id_injects_caller_and_relays_the_result_verbatim() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    let (caller, caller_id) = raw.control();
    register(&mut raw, owner, "math::add");
    raw.take_json(owner);
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "math::add",
               "data": {"a": 1, "b": 2}, "traceparent": "00-abc-def-01", "metadata": {"m": 1}}),
    );
    let forwarded = raw.take_json(owner);
    assert_eq!(forwarded.len(), 1);
    let call = &forwarded[0];
    assert_eq!(call["type"], "invokefunction");
    assert_eq!(call["invocation_id"], ID1);
    assert_eq!(
        call["data"],
        json!({"a": 1, "b": 2, "_caller_worker_id": caller_id})
    );
    assert_eq!(call["metadata"], json!({"m": 1}));
    assert_eq!(call["traceparent"], "00-abc-def-01");
    assert!(call.get("action").is_none());
    raw.send(
        owner,
        json!({"type": "invocationresult", "invocation_id": ID1, "function_id": "math::add",
               "error": {"code": "invocation_failed", "message": "boom", "stacktrace": "at x"}}),
    );
    let answers = raw.take_json(caller);
    assert_eq!(
        answers,
        vec![
            json!({"type": "invocationresult", "invocation_id": ID1, "function_id": "math::add",
                    "error": {"code": "invocation_failed", "message": "boom", "stacktrace": "at x"},
                    "traceparent": "00-abc-def-01"})
        ]
    );
}

#[test]
fn python_style_call_without_data_is_served_with_null() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    let (caller, _) = raw.control();
    register(&mut raw, owner, "f");
    raw.take_json(owner);
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f"}),
    );
    let call = raw.take_json(owner).remove(0);
    assert_eq!(call["data"], Value::Null);
}

#[test]
fn void_calls_get_an_engine_id_and_the_reply_is_discarded() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    let (caller, _) = raw.control();
    register(&mut raw, owner, "f");
    raw.take_json(owner);
    raw.take_json(caller);
    raw.send(
        caller,
        json!({"type": "invokefunction", "function_id": "f", "data": 1,
                            "action": {"type": "void"}}),
    );
    let call = raw.take_json(owner).remove(0);
    let id = call["invocation_id"]
        .as_str()
        .expect("engine-generated id")
        .to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    raw.send(
        owner,
        json!({"type": "invocationresult", "invocation_id": id, "function_id": "f",
                           "result": 2}),
    );
    assert!(raw.take_json(caller).is_empty());
    assert_eq!(raw.engine.stats().pending_invocations, 0);
}

#[test]
fn unknown_function_enqueue_and_blank_namespace_errors() {
    let mut raw = engine();
    let (caller, _) = raw.control();
    raw.take_json(caller);
    raw.send(caller, json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "nope", "data": null}));
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID2, "function_id": "nope",
                            "data": null, "action": {"type": "enqueue", "queue": "q"}}),
    );
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "x",
                            "data": null, "namespace": "  "}),
    );
    // A void call to a missing function is dropped silently.
    raw.send(
        caller,
        json!({"type": "invokefunction", "function_id": "nope", "data": null,
                            "action": {"type": "void"}}),
    );
    let answers = raw.take_json(caller);
    let codes: Vec<&str> = answers
        .iter()
        .map(|a| a["error"]["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        codes,
        ["function_not_found", "enqueue_error", "INVALID_NAMESPACE"]
    );
    assert_eq!(
        answers[0]["error"]["message"],
        "Function nope not found in namespace default."
    );
    assert!(answers[1]["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("queue")));
}

#[test]
fn owner_disconnect_stops_pending_calls_and_caller_disconnect_drops_them() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    let (caller, _) = raw.control();
    register(&mut raw, owner, "slow");
    raw.take_json(caller);
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "slow", "data": {}}),
    );
    raw.close(owner, PeerClose::Lost);
    let answers = raw.take_json(caller);
    assert_eq!(answers[0]["error"]["code"], "invocation_stopped");
    assert_eq!(answers[0]["error"]["message"], "Invocation stopped");
    assert_eq!(answers[0]["invocation_id"], ID1);

    let (owner, _) = raw.control();
    register(&mut raw, owner, "slow");
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID2, "function_id": "slow", "data": {}}),
    );
    raw.close(caller, PeerClose::Lost);
    raw.send(owner, json!({"type": "invocationresult", "invocation_id": ID2, "function_id": "slow", "result": 1}));
    assert_eq!(raw.engine.stats().pending_invocations, 0);
}

#[test]
fn a_second_owner_is_rejected_and_reserved_ids_are_refused() {
    let mut raw = engine();
    let (first, first_id) = raw.control();
    let (second, _) = raw.control();
    register(&mut raw, first, "f");
    raw.take_json(second);
    register(&mut raw, second, "f");
    register(&mut raw, second, "engine::channels::create");
    let answers = raw.take_json(second);
    assert_eq!(answers[0]["type"], "registrationrejected");
    assert_eq!(answers[0]["code"], "FUNCTION_NAMESPACE_CONFLICT");
    assert_eq!(answers[0]["function_id"], "f");
    assert_eq!(answers[0]["owner_worker_id"], first_id.as_str());
    assert_eq!(answers[1]["owner_worker_id"], "");
    // The owner may re-register (idempotent) and, once gone, the id is free.
    register(&mut raw, first, "f");
    assert!(raw.take_json(first).is_empty());
    raw.close(first, PeerClose::Lost);
    register(&mut raw, second, "f");
    assert!(raw.take_json(second).is_empty());
}

#[test]
fn reattach_with_the_right_token_evicts_the_old_connection() {
    let mut raw = engine();
    let conn = raw.connect("/").expect("accepted").conn;
    let hello = raw.take_json(conn).remove(0);
    register(&mut raw, conn, "f");
    let (fresh, _) = raw.control();
    // A wrong token is ignored.
    raw.send(fresh, json!({"type": "reattach", "previous_worker_id": hello["worker_id"], "reattach_token": "00"}));
    assert!(raw.inboxes[&conn].closed.is_none());
    raw.send(
        fresh,
        json!({"type": "reattach", "previous_worker_id": hello["worker_id"],
                           "reattach_token": hello["reattach_token"]}),
    );
    assert_eq!(
        raw.inboxes[&conn].closed.as_ref().map(|c| c.0),
        Some(Some(CloseCode::POLICY))
    );
    register(&mut raw, fresh, "f");
    assert!(raw
        .take_json(fresh)
        .iter()
        .all(|m| m["type"] != "registrationrejected"));
}

#[test]
fn ping_pong_unknown_types_and_garbage_keep_the_connection() {
    let mut raw = engine();
    let (conn, _) = raw.control();
    raw.take_json(conn);
    raw.send_text(conn, "not json");
    raw.send_text(conn, "   ");
    raw.send(conn, json!({"type": "observe", "whatever": true}));
    raw.send(
        conn,
        json!({"type": "invocationresult", "invocation_id": "not-a-uuid", "function_id": "f"}),
    );
    raw.send_binary(conn, b"OTLP{\"resourceSpans\":[]}".to_vec());
    raw.send(conn, json!({"type": "ping"}));
    assert_eq!(raw.take_json(conn), vec![json!({"type": "pong"})]);
    assert!(raw.inboxes[&conn].closed.is_none());
    assert!(raw
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::MessageIgnored { kind, .. } if kind == "observe")));
}

#[test]
fn oversized_control_message_closes_with_1009() {
    let mut raw = RawEngine::new(EngineConfig {
        max_control_message_bytes: 64,
        ..EngineConfig::default()
    });
    let (conn, _) = raw.control();
    raw.send_text(
        conn,
        &format!("{{\"type\":\"ping\",\"pad\":\"{}\"}}", "x".repeat(100)),
    );
    assert_eq!(
        raw.inboxes[&conn].closed.as_ref().map(|c| c.0),
        Some(Some(CloseCode::TOO_BIG))
    );
}

#[test]
fn upgrade_validation_answers_before_the_upgrade() {
    let mut raw = engine();
    assert_eq!(raw.connect("/nope").unwrap_err(), Rejection::NotFound);
    assert_eq!(
        raw.connect("/ws/channels/x?key=k").unwrap_err(),
        Rejection::BadRequest
    );
    assert_eq!(
        raw.connect("/ws/channels/x?key=k&dir=read").unwrap_err(),
        Rejection::NotFound
    );
    assert!(raw.connect("/otel").is_ok());
    let mut secured = RawEngine::new(EngineConfig {
        auth_token: Some("s3cret".into()),
        ..EngineConfig::default()
    });
    assert_eq!(secured.connect("/").unwrap_err(), Rejection::Unauthorized);
    assert_eq!(
        secured.connect_with("/", Some("Bearer wrong")).unwrap_err(),
        Rejection::Unauthorized
    );
    assert!(secured.connect_with("/", Some("Bearer s3cret")).is_ok());
}

#[test]
fn builtins_list_functions_workers_and_trigger_types() {
    let mut raw = engine();
    let (conn, worker_id) = raw.control();
    raw.send(conn, json!({"type": "invokefunction", "function_id": "engine::workers::register",
        "action": {"type": "void"}, "data": {"name": "svc", "runtime": "python", "pid": 42, "namespace": null}}));
    raw.send(
        conn,
        json!({"type": "registerfunction", "id": "b::two", "description": "second",
               "request_format": {"type": "object", "properties": {"n": {"type": "integer"}}},
               "response_format": {"type": "string"}}),
    );
    raw.send(
        conn,
        json!({"type": "registerfunction", "id": "a::one", "metadata": {"internal": true}}),
    );
    raw.send(
        conn,
        json!({"type": "registertriggertype", "id": "cron", "description": "every so often"}),
    );
    raw.take_json(conn);
    raw.send(conn, json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "engine::functions::list", "data": {}}));
    raw.send(conn, json!({"type": "invokefunction", "invocation_id": ID2, "function_id": "engine::workers::list", "data": null}));
    raw.send(conn, json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "engine::triggers::list", "data": {}}));
    let answers = raw.take_json(conn);
    let functions = &answers[0]["result"]["functions"];
    assert_eq!(
        functions.as_array().map(Vec::len),
        Some(1),
        "internal and engine functions hidden"
    );
    assert_eq!(functions[0]["function_id"], "b::two");
    assert_eq!(functions[0]["worker_name"], "svc");
    assert_eq!(functions[0]["description"], "second");
    // The formats are kept as registered and listed (what `iii describe` shows).
    assert_eq!(
        functions[0]["request_format"],
        json!({"type": "object", "properties": {"n": {"type": "integer"}}})
    );
    assert_eq!(functions[0]["response_format"], json!({"type": "string"}));
    let workers = &answers[1]["result"]["workers"];
    assert_eq!(workers[0]["id"], worker_id.as_str());
    assert_eq!(workers[0]["runtime"], "python");
    assert_eq!(workers[0]["pid"], 42);
    assert_eq!(workers[0]["function_count"], 2);
    let triggers = &answers[2]["result"]["triggers"];
    assert_eq!(triggers.as_array().map(Vec::len), Some(1));
    assert_eq!(triggers[0]["id"], "cron");
}

#[test]
fn announced_namespace_moves_functions_and_calls_resolve_there() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    let (caller, _) = raw.control();
    register(&mut raw, owner, "f");
    raw.send(
        owner,
        json!({"type": "invokefunction", "function_id": "engine::workers::register",
        "action": {"type": "void"}, "data": {"name": "n", "namespace": "team"}}),
    );
    raw.take_json(owner);
    raw.take_json(caller);
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f", "data": {}}),
    );
    assert_eq!(
        raw.take_json(caller)[0]["error"]["code"],
        "function_not_found"
    );
    raw.send(caller, json!({"type": "invokefunction", "invocation_id": ID2, "function_id": "f", "data": {}, "namespace": "team"}));
    assert_eq!(raw.take_json(owner)[0]["function_id"], "f");
}

#[test]
fn trigger_bindings_are_forwarded_parked_and_cleaned_up() {
    let mut raw = engine();
    let (consumer, _) = raw.control();
    register(&mut raw, consumer, "on_tick");
    // Bound before any provider exists: parked silently.
    raw.send(
        consumer,
        json!({"type": "registertrigger", "id": "t1", "trigger_type": "tick",
                              "function_id": "on_tick"}),
    );
    raw.take_json(consumer);
    let (provider, _) = raw.control();
    raw.take_json(provider);
    raw.send(
        provider,
        json!({"type": "registertriggertype", "id": "tick", "description": "d"}),
    );
    let delivered = raw.take_json(provider);
    assert_eq!(
        delivered,
        vec![
            json!({"type": "registertrigger", "id": "t1", "trigger_type": "tick",
                    "function_id": "on_tick", "config": null})
        ]
    );
    // A provider error is forwarded to the originator with the stored fields.
    raw.send(provider, json!({"type": "triggerregistrationresult", "id": "t1", "trigger_type": "x",
        "function_id": "y", "error": {"code": "trigger_registration_failed", "message": "bad config"}}));
    let forwarded = raw.take_json(consumer);
    assert_eq!(forwarded[0]["type"], "triggerregistrationresult");
    assert_eq!(forwarded[0]["trigger_type"], "tick");
    assert_eq!(forwarded[0]["function_id"], "on_tick");
    assert_eq!(forwarded[0]["error"]["code"], "trigger_registration_failed");
    // Re-registering the type re-delivers parked bindings; the owner leaving unbinds.
    raw.send(
        provider,
        json!({"type": "registertriggertype", "id": "tick", "description": "d"}),
    );
    assert_eq!(raw.take_json(provider)[0]["type"], "registertrigger");
    raw.close(consumer, PeerClose::Lost);
    assert_eq!(
        raw.take_json(provider),
        vec![json!({"type": "unregistertrigger", "id": "t1", "trigger_type": "tick"})]
    );
}

#[test]
fn engine_trigger_types_fire_into_worker_functions() {
    let mut raw = engine();
    let (watcher, _) = raw.control();
    register(&mut raw, watcher, "on_workers");
    register(&mut raw, watcher, "on_functions");
    raw.send(
        watcher,
        json!({"type": "registertrigger", "id": "w", "trigger_type": "engine::workers-available",
        "function_id": "on_workers", "config": {}, "metadata": {"k": 1}}),
    );
    raw.send(
        watcher,
        json!({"type": "registertrigger", "id": "f", "trigger_type": "engine::functions-available",
        "function_id": "on_functions", "config": {}}),
    );
    raw.take_json(watcher);
    let (other, other_id) = raw.control();
    let fired = raw.take_json(watcher);
    assert_eq!(fired[0]["function_id"], "on_workers");
    assert_eq!(
        fired[0]["data"],
        json!({"event": "worker_connected", "worker_id": other_id})
    );
    assert_eq!(fired[0]["metadata"], json!({"k": 1}));
    register(&mut raw, other, "new::fn");
    raw.advance(std::time::Duration::from_secs(1));
    let fired = raw.take_json(watcher);
    let notice = fired
        .iter()
        .find(|m| m["function_id"] == "on_functions")
        .expect("functions fired");
    assert_eq!(notice["data"]["event"], "functions_changed");
    let ids: Vec<&str> = notice["data"]["functions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["function_id"].as_str())
        .collect();
    assert!(ids.contains(&"new::fn"));
}
