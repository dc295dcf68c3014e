//! Control-plane parity with the reference engine found by the browser SDK's own
//! integration tests: `engine::registered-triggers::list`, the engine's own functions
//! and trigger types in listings, `_caller_worker_id` replaced rather than duplicated,
//! and which trace context a result carries. Driven raw, byte for byte.

use std::time::Duration;

use iii_core::engine::EngineConfig;
use iii_core::Message;
use iii_tests::raw::RawEngine;
use serde_json::{json, Value};

const ID1: &str = "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60";

fn engine() -> RawEngine {
    RawEngine::new(EngineConfig::default())
}

fn rows<'a>(answer: &'a Value, key: &str) -> &'a Vec<Value> {
    answer["result"][key].as_array().expect("rows")
}

#[test]
fn registered_triggers_are_listed_in_the_reference_shape() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    raw.call(owner, "engine::workers::register", json!({"name": "svc"}));
    raw.send(
        owner,
        json!({"type": "registerfunction", "id": "svc::on_http"}),
    );
    let (binder, _) = raw.control();
    let config = r#"{ "api_path" : "orders/list", "http_method": "GET" }"#;
    raw.send_text(
        binder,
        &format!(
            r#"{{"type":"registertrigger","id":"b1","trigger_type":"http","function_id":"svc::on_http","config":{config}}}"#
        ),
    );
    raw.send(
        binder,
        json!({"type": "registertrigger", "id": "b0", "trigger_type": "engine::functions-available",
               "function_id": "engine::functions::list", "config": {}}),
    );
    let answer = raw.call(binder, "engine::registered-triggers::list", json!({}));
    assert_eq!(
        rows(&answer, "registered_triggers"),
        &vec![json!({
            "id": "b1",
            "trigger_type": "http",
            "function_id": "svc::on_http",
            "worker_name": "svc",
            "config": {"api_path": "orders/list", "http_method": "GET"},
            "config_summary": r#"{"api_path":"orders/list","http_method":"GET"}"#,
        })],
        "parked bindings are listed; engine targets are internal"
    );
    let all = raw.call(
        binder,
        "engine::registered-triggers::list",
        json!({"include_internal": true}),
    );
    let ids: Vec<&str> = rows(&all, "registered_triggers")
        .iter()
        .map(|r| r["id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["b0", "b1"], "sorted by id");
    for (filter, expected) in [
        (json!({"trigger_type": "http"}), 1),
        (json!({"function_id": "svc::other"}), 0),
        (json!({"worker": "svc"}), 1),
        (json!({"search": "ORDERS"}), 0),
        (json!({"search": "ON_HTTP"}), 1),
    ] {
        let answer = raw.call(binder, "engine::registered-triggers::list", filter.clone());
        assert_eq!(
            rows(&answer, "registered_triggers").len(),
            expected,
            "{filter}"
        );
    }
}

#[test]
fn the_engines_own_functions_and_trigger_types_are_listed_as_internal() {
    let mut raw = engine();
    let (conn, _) = raw.control();
    raw.send(conn, json!({"type": "registerfunction", "id": "app::f"}));
    let public = raw.call(conn, "engine::functions::list", json!({}));
    let ids: Vec<&str> = rows(&public, "functions")
        .iter()
        .map(|f| f["function_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["app::f"]);
    let all = raw.call(
        conn,
        "engine::functions::list",
        json!({"include_internal": true}),
    );
    let list = rows(&all, "functions").clone();
    let own = list
        .iter()
        .find(|f| f["function_id"] == "engine::registered-triggers::list")
        .expect("built-ins listed");
    assert_eq!(own["worker_name"], "iii-engine-functions");
    assert_eq!(own["namespace"], "default");
    assert!(own["description"].as_str().is_some_and(|d| !d.is_empty()));
    let sorted: Vec<&str> = list
        .iter()
        .map(|f| f["function_id"].as_str().unwrap_or(""))
        .collect();
    let mut expected = sorted.clone();
    expected.sort_unstable();
    assert_eq!(sorted, expected, "one order for every row");
    let types = raw.call(
        conn,
        "engine::triggers::list",
        json!({"include_internal": true}),
    );
    let provided = rows(&types, "triggers")
        .iter()
        .find(|t| t["id"] == "engine::functions-available")
        .expect("engine trigger types listed");
    assert_eq!(provided["worker_name"], "engine");
    let public_types = raw.call(conn, "engine::triggers::list", json!({}));
    assert!(rows(&public_types, "triggers").is_empty());
    // The notification lists everything, the engine's functions included.
    raw.send(conn, json!({"type": "registerfunction", "id": "watch"}));
    raw.send(
        conn,
        json!({"type": "registertrigger", "id": "w", "trigger_type": "engine::functions-available",
               "function_id": "watch", "config": {}}),
    );
    raw.send(conn, json!({"type": "registerfunction", "id": "app::g"}));
    raw.take_json(conn);
    raw.advance(Duration::from_secs(1));
    let fired = raw
        .take_json(conn)
        .into_iter()
        .find(|m| m["type"] == "invokefunction")
        .expect("notified");
    assert_eq!(fired["data"]["event"], "functions_changed");
    let listed: Vec<&str> = fired["data"]["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["function_id"].as_str().unwrap_or(""))
        .collect();
    assert!(listed.contains(&"app::g") && listed.contains(&"engine::channels::create"));
}

#[test]
fn a_forged_caller_id_is_replaced_and_nested_or_escaped_keys_are_handled() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    raw.send(owner, json!({"type": "registerfunction", "id": "f"}));
    let (caller, caller_id) = raw.control();
    let cases = [
        // A forged id at the top: replaced, exactly one key remains.
        (
            r#"{"x":1,"_caller_worker_id":"fake"}"#,
            format!(r#"{{"x":1,"_caller_worker_id":"{caller_id}"}}"#),
        ),
        // Deeper keys belong to the payload.
        (
            r#"{"inner":{"_caller_worker_id":"keep"}}"#,
            format!(
                r#"{{"inner":{{"_caller_worker_id":"keep"}},"_caller_worker_id":"{caller_id}"}}"#
            ),
        ),
        // An escaped spelling is the same key.
        (
            r#"{"_caller\u005fworker_id":"fake","y":[1]}"#,
            format!(r#"{{"y":[1],"_caller_worker_id":"{caller_id}"}}"#),
        ),
    ];
    for (data, expected) in cases {
        raw.send_text(
            caller,
            &format!(
                r#"{{"type":"invokefunction","function_id":"f","action":{{"type":"void"}},"data":{data}}}"#
            ),
        );
        let forwarded = match raw.inboxes[&owner].messages.last() {
            Some(Message::Text(t)) => t.as_str().to_owned(),
            other => panic!("{other:?}"),
        };
        assert!(
            forwarded.contains(&format!(r#""data":{expected}"#)),
            "{data} became {forwarded}"
        );
        let parsed: Value = serde_json::from_str(&forwarded).expect("strict JSON parses");
        assert!(parsed["data"].is_object());
    }
}

#[test]
fn a_result_carries_the_callers_trace_context_not_the_callees() {
    let mut raw = engine();
    let (owner, _) = raw.control();
    raw.send(owner, json!({"type": "registerfunction", "id": "f"}));
    let (caller, _) = raw.control();
    let caller_trace = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-bbbbbbbbbbbbbbbb-01";
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f", "data": {},
               "traceparent": caller_trace, "baggage": "tenant=a"}),
    );
    let call = raw.take_json(owner).remove(0);
    assert_eq!(
        call["traceparent"], caller_trace,
        "the callee continues the trace"
    );
    raw.send(
        owner,
        json!({"type": "invocationresult", "invocation_id": call["invocation_id"], "function_id": "f",
               "result": 1, "traceparent": "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-01",
               "baggage": "internal=secret"}),
    );
    let answer = raw.take_json(caller).remove(0);
    assert_eq!(answer["result"], 1);
    assert_eq!(answer["traceparent"], caller_trace);
    assert_eq!(answer["baggage"], "tenant=a");
    // A caller that sent no trace context gets none back.
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f", "data": {}}),
    );
    let call = raw.take_json(owner).remove(0);
    raw.send(
        owner,
        json!({"type": "invocationresult", "invocation_id": call["invocation_id"], "function_id": "f",
               "traceparent": "00-cccccccccccccccccccccccccccccccc-dddddddddddddddd-01"}),
    );
    let answer = raw.take_json(caller).remove(0);
    assert!(answer.get("traceparent").is_none(), "{answer}");
}
