//! What one worker can make the engine hold, and how every refusal is answered: payload
//! depth, per-worker quotas, trigger type ownership, the slow-consumer bound, listings
//! that cost nothing to ask for, the engine-wide channel budget and the engine-side
//! invocation timeout. Driven raw, byte for byte (issue: engine hardening).

use std::time::Duration;

use iii_core::channel::{channel_url, ChannelRefs};
use iii_core::engine::{EngineConfig, EngineEvent, Quota, RefusalReason, WorkerQuotas};
use iii_core::{CloseCode, ConnId, PeerClose};
use iii_tests::raw::RawEngine;
use serde_json::{json, Value};

const ID1: &str = "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60";

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn error_codes(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["type"] == "error")
        .map(|m| m["error"]["code"].as_str().unwrap_or("").to_owned())
        .collect()
}

fn create_channel(raw: &mut RawEngine, conn: ConnId) -> Value {
    raw.call(conn, "engine::channels::create", json!({}))
}

#[test]
fn the_308_byte_message_that_killed_the_engine_is_refused_and_listings_survive() {
    // The observed crash: metadata nested ~130 deep, turned into a Value tree 500 ms later.
    let mut raw = RawEngine::new(EngineConfig::default());
    let (conn, _) = raw.control();
    raw.call(conn, "engine::functions::list", json!({})); // nothing stored yet
    let text = format!(
        r#"{{"type":"registerfunction","id":"d","metadata":{}}}"#,
        nested(128)
    );
    assert!(text.len() <= 308);
    raw.send_text(conn, &text);
    let answers = raw.take_json(conn);
    assert_eq!(answers[0]["type"], "registrationrejected");
    assert_eq!(answers[0]["code"], "FUNCTION_NAMESPACE_CONFLICT");
    assert_eq!(error_codes(&answers), ["payload_too_deep"]);
    assert_eq!(raw.refusals(), [RefusalReason::TooDeep]);
    raw.advance(Duration::from_secs(1));
    let list = raw.call(conn, "engine::functions::list", json!({}));
    assert_eq!(list["result"]["functions"], json!([]));
}

#[test]
fn listings_never_parse_stored_payloads_however_deep() {
    // Even with the depth limit raised far past serde_json's recursion limit, listings
    // and notifications pass metadata through as raw text.
    let mut raw = RawEngine::new(EngineConfig {
        max_payload_depth: 5000,
        ..EngineConfig::default()
    });
    let (watcher, _) = raw.control();
    raw.send(watcher, json!({"type": "registerfunction", "id": "watch"}));
    raw.send(
        watcher,
        json!({"type": "registertrigger", "id": "t", "trigger_type": "engine::functions-available",
               "function_id": "watch", "config": {}}),
    );
    let (conn, _) = raw.control();
    let deep = nested(4000);
    raw.send_text(
        conn,
        &format!(r#"{{"type":"registerfunction","id":"deep","metadata":{deep}}}"#),
    );
    raw.take_json(watcher);
    raw.advance(Duration::from_secs(1));
    let notified = raw.inboxes[&watcher].messages.clone();
    let fired = notified
        .iter()
        .filter_map(|m| match m {
            iii_core::Message::Text(t) => Some(t.as_str().to_owned()),
            _ => None,
        })
        .find(|t| t.contains("functions_changed"))
        .expect("notified");
    assert!(fired.contains(&deep), "metadata relayed raw");
    raw.send(
        conn,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "engine::functions::list",
               "data": {"include_internal": true}}),
    );
    let text = match raw.inboxes[&conn].messages.last() {
        Some(iii_core::Message::Text(t)) => t.as_str().to_owned(),
        other => panic!("{other:?}"),
    };
    assert!(text.contains(&deep));
}

#[test]
fn deep_call_payloads_and_results_get_typed_errors() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (owner, _) = raw.control();
    let (caller, _) = raw.control();
    raw.send(owner, json!({"type": "registerfunction", "id": "f"}));
    let data: Value = serde_json::from_str(&nested(101)).expect("json");
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f", "data": data}),
    );
    let answer = raw.take_json(caller).remove(0);
    assert_eq!(answer["error"]["code"], "payload_too_deep");
    assert!(raw.take_json(owner).is_empty(), "never forwarded");
    // A result too deep for the caller's parser: the caller gets an error instead.
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f", "data": {}}),
    );
    let call = raw.take_json(owner).remove(0);
    raw.send_text(
        owner,
        &format!(
            r#"{{"type":"invocationresult","invocation_id":"{}","function_id":"f","result":{}}}"#,
            call["invocation_id"].as_str().expect("id"),
            nested(200)
        ),
    );
    let answer = raw.take_json(caller).remove(0);
    assert_eq!(answer["invocation_id"], ID1);
    assert_eq!(answer["error"]["code"], "payload_too_deep");
    assert!(answer.get("result").is_none());
}

fn quotas() -> EngineConfig {
    EngineConfig {
        quotas: WorkerQuotas {
            functions: 2,
            trigger_types: 1,
            bindings: 2,
            engine_bindings: 1,
            pending_invocations: 2,
            channels: 2,
            registration_bytes: 200,
            total_registration_bytes: 300,
            ..WorkerQuotas::default()
        },
        ..EngineConfig::default()
    }
}

#[test]
fn function_quotas_refuse_with_a_non_fatal_rejection_and_a_typed_error() {
    let mut raw = RawEngine::new(quotas());
    let (conn, _) = raw.control();
    for id in ["a", "b", "c"] {
        raw.send(conn, json!({"type": "registerfunction", "id": id}));
    }
    let answers = raw.take_json(conn);
    assert_eq!(answers[0]["code"], "FUNCTION_NAMESPACE_CONFLICT");
    assert_eq!(answers[0]["function_id"], "c");
    assert_eq!(answers[0]["owner_worker_id"], "");
    assert_eq!(answers[1]["error"]["code"], "quota_exceeded");
    assert_eq!(answers[1]["refused"], "registerfunction");
    assert_eq!(answers[1]["id"], "c");
    // Re-registering an owned id is not a new function.
    raw.send(
        conn,
        json!({"type": "registerfunction", "id": "a", "description": "again"}),
    );
    assert!(raw.take_json(conn).is_empty());
    // After an unregister there is room again.
    raw.send(conn, json!({"type": "unregisterfunction", "id": "b"}));
    raw.send(conn, json!({"type": "registerfunction", "id": "c"}));
    assert!(raw.take_json(conn).is_empty());
    // One registration's payloads and all of them together are bounded in bytes.
    raw.send(conn, json!({"type": "unregisterfunction", "id": "c"}));
    let big = "x".repeat(250);
    raw.send(
        conn,
        json!({"type": "registerfunction", "id": "d", "metadata": {"k": big}}),
    );
    let answers = raw.take_json(conn);
    assert_eq!(error_codes(&answers), ["quota_exceeded"]);
    let medium = "y".repeat(150);
    raw.send(
        conn,
        json!({"type": "registerfunction", "id": "a", "metadata": {"k": medium}}),
    );
    raw.send(
        conn,
        json!({"type": "registerfunction", "id": "d", "metadata": {"k": medium}}),
    );
    let answers = raw.take_json(conn);
    assert_eq!(answers.len(), 2, "{answers:?}");
    assert!(raw.events.iter().any(|e| matches!(
        e,
        EngineEvent::Refused {
            reason: RefusalReason::Quota(Quota::TotalRegistrationBytes),
            ..
        }
    )));
}

#[test]
fn binding_and_pending_invocation_quotas_answer_with_errors() {
    let mut raw = RawEngine::new(quotas());
    let (conn, _) = raw.control();
    let bind = |id: &str, trigger_type: &str| {
        json!({"type": "registertrigger", "id": id, "trigger_type": trigger_type,
               "function_id": "f", "config": {}})
    };
    raw.send(conn, bind("w1", "engine::workers-available"));
    raw.send(conn, bind("w2", "engine::workers-available"));
    raw.send(conn, bind("b1", "cron"));
    raw.send(conn, bind("b2", "cron"));
    let answers = raw.take_json(conn);
    let codes: Vec<&str> = answers
        .iter()
        .map(|m| m["error"]["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(codes, ["quota_exceeded", "quota_exceeded"], "{answers:?}");
    assert_eq!(answers[0]["type"], "triggerregistrationresult");
    assert_eq!(answers[0]["id"], "w2");
    assert_eq!(answers[1]["id"], "b2");
    // Pending invocations: calls (void ones too) to a worker that never answers.
    let (slow, _) = raw.control();
    raw.send(slow, json!({"type": "registerfunction", "id": "slow"}));
    let (caller, _) = raw.control();
    raw.send(
        caller,
        json!({"type": "invokefunction", "function_id": "slow", "data": {}, "action": {"type": "void"}}),
    );
    for i in 0..2 {
        raw.send(
            caller,
            json!({"type": "invokefunction", "invocation_id": format!("00000000-0000-4000-8000-00000000000{i}"),
                   "function_id": "slow", "data": {}}),
        );
    }
    let answers = raw.take_json(caller);
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert_eq!(answers[0]["error"]["code"], "quota_exceeded");
    assert_eq!(raw.take_json(slow).len(), 2);
    // When the caller leaves, what it started is forgotten and no longer counts.
    raw.close(caller, PeerClose::Lost);
    assert_eq!(raw.engine.stats().pending_invocations, 0);
}

#[test]
fn channels_per_worker_are_bounded_and_a_departed_creators_channels_expire_quickly() {
    let mut raw = RawEngine::new(EngineConfig {
        orphan_channel_timeout: Duration::from_secs(2),
        ..quotas()
    });
    let (conn, _) = raw.control();
    let first = create_channel(&mut raw, conn);
    create_channel(&mut raw, conn);
    let third = create_channel(&mut raw, conn);
    assert_eq!(third["error"]["code"], "quota_exceeded");
    // A reader attached to the first channel waits for a writer that never comes.
    let refs: ChannelRefs = serde_json::from_value(first["result"].clone()).expect("refs");
    let reader = raw
        .connect(&channel_url("", &refs.reader))
        .expect("reader")
        .conn;
    raw.close(conn, PeerClose::Lost);
    raw.advance(Duration::from_secs(1));
    assert_eq!(raw.engine.stats().channels, 2);
    raw.advance(Duration::from_secs(2));
    assert_eq!(
        raw.engine.stats().channels,
        0,
        "expired after the orphan timeout"
    );
    let closed = raw.inboxes[&reader].closed.clone().expect("reader told");
    assert_eq!(closed.0, Some(CloseCode::INTERNAL));
}

#[test]
fn a_live_workers_trigger_type_cannot_be_taken_over_nor_its_configs_read() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (provider, _) = raw.control();
    raw.send(
        provider,
        json!({"type": "registertriggertype", "id": "webhook", "description": "d"}),
    );
    let (owner, _) = raw.control();
    raw.send(
        owner,
        json!({"type": "registertrigger", "id": "b1", "trigger_type": "webhook",
               "function_id": "f", "config": {"secret": "s3cr3t"}}),
    );
    assert_eq!(
        raw.take_json(provider).len(),
        1,
        "the provider holds the binding"
    );
    let (thief, _) = raw.control();
    raw.send(
        thief,
        json!({"type": "registertriggertype", "id": "webhook", "description": "mine"}),
    );
    let answers = raw.take_json(thief);
    assert_eq!(
        answers.len(),
        1,
        "only the refusal, never a binding: {answers:?}"
    );
    assert_eq!(answers[0]["type"], "error");
    assert_eq!(answers[0]["error"]["code"], "trigger_type_conflict");
    assert_eq!(answers[0]["id"], "webhook");
    // The engine's own types and ids are reserved too.
    raw.send(
        thief,
        json!({"type": "registertriggertype", "id": "engine::functions-available", "description": "x"}),
    );
    assert_eq!(error_codes(&raw.take_json(thief)), ["reserved_id"]);
    // Once the provider is gone the type is free, and parked bindings go to the new one.
    raw.close(provider, PeerClose::Lost);
    raw.send(
        thief,
        json!({"type": "registertriggertype", "id": "webhook", "description": "mine"}),
    );
    let handed = raw.take_json(thief);
    assert_eq!(handed[0]["type"], "registertrigger");
}

#[test]
fn a_worker_that_does_not_read_is_aborted_counting_bytes_in_flight() {
    let mut raw = RawEngine::new(EngineConfig {
        max_control_queue_bytes: 64 * 1024,
        ..EngineConfig::default()
    });
    raw.auto_sent = false; // nothing the engine transmits is ever flushed
    let (slow, _) = raw.control();
    raw.send(slow, json!({"type": "registerfunction", "id": "f"}));
    let (caller, _) = raw.control();
    let payload = "p".repeat(10 * 1024);
    let mut sent = 0;
    while raw.inboxes[&slow].closed.is_none() {
        raw.send(
            caller,
            json!({"type": "invokefunction", "function_id": "f", "data": {"p": payload},
                   "action": {"type": "void"}}),
        );
        sent += 1;
        assert!(sent < 20, "never dropped");
    }
    // Before, only queued bytes counted: 32 messages in flight were free.
    assert!(sent <= 7, "dropped after {sent} calls of 10 KiB");
    assert!(
        raw.inboxes[&slow].aborted,
        "aborted, not closed behind its queue"
    );
    assert_eq!(
        raw.inboxes[&slow].closed.as_ref().map(|c| c.0),
        Some(Some(CloseCode::POLICY))
    );
    assert!(raw
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::SlowConsumer { conn } if *conn == slow)));
}

#[test]
fn listings_are_capped_and_paged() {
    let mut raw = RawEngine::new(EngineConfig {
        max_list_bytes: 1024,
        ..EngineConfig::default()
    });
    let (conn, _) = raw.control();
    for i in 0..100 {
        raw.send(
            conn,
            json!({"type": "registerfunction", "id": format!("fn::{i:03}")}),
        );
    }
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let answer = raw.call(conn, "engine::functions::list", json!({"offset": offset}));
        let text = serde_json::to_string(&answer["result"]).expect("json");
        assert!(text.len() <= 1024, "{} bytes", text.len());
        let page = answer["result"]["functions"]
            .as_array()
            .expect("rows")
            .clone();
        assert!(!page.is_empty());
        seen.extend(
            page.iter()
                .map(|f| f["function_id"].as_str().unwrap_or("").to_owned()),
        );
        match answer["result"]["next_offset"].as_u64() {
            Some(next) => offset = next,
            None => break,
        }
    }
    let expected: Vec<String> = (0..100).map(|i| format!("fn::{i:03}")).collect();
    assert_eq!(seen, expected, "every function exactly once, in order");
    let limited = raw.call(
        conn,
        "engine::functions::list",
        json!({"limit": 3, "prefix": "fn::09"}),
    );
    assert_eq!(
        limited["result"]["functions"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(limited["result"]["next_offset"], 3);
    for _ in 0..40 {
        create_channel(&mut raw, conn);
    }
    let channels = raw.call(conn, "engine::channels::list", json!({}));
    assert!(
        serde_json::to_string(&channels["result"])
            .expect("json")
            .len()
            <= 1024
    );
    assert!(channels["result"]["next_offset"].as_u64().is_some());
}

#[test]
fn no_notification_is_prepared_when_nobody_listens() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (conn, _) = raw.control();
    raw.send(conn, json!({"type": "registerfunction", "id": "f"}));
    assert_eq!(raw.engine.poll_timeout(), None, "no notification timer");
}

#[test]
fn the_engine_wide_budget_pauses_writers_until_channels_drain() {
    let config = EngineConfig {
        channel_buffer_bytes: 256 * 1024,
        max_channel_message_bytes: 16 * 1024,
        read_ahead_bytes: 16 * 1024,
        max_buffered_channel_bytes: 256 * 1024,
        ..EngineConfig::default()
    };
    let mut raw = RawEngine::new(config);
    raw.auto_sent = false;
    let (conn, _) = raw.control();
    let open = |raw: &mut RawEngine| {
        let answer = create_channel(raw, conn);
        let refs: ChannelRefs = serde_json::from_value(answer["result"].clone()).expect("refs");
        let writer = raw.connect(&channel_url("", &refs.writer)).expect("w").conn;
        let reader = raw.connect(&channel_url("", &refs.reader)).expect("r").conn;
        (writer, reader)
    };
    let (w1, r1) = open(&mut raw);
    let (w2, _r2) = open(&mut raw);
    // Channel 1 fills to its own high water; channel 2 then finds the budget spent.
    while !raw.inboxes[&w1].paused {
        raw.send_binary(w1, vec![1; 16 * 1024]);
    }
    let mut second = 0;
    while !raw.inboxes[&w2].paused {
        raw.send_binary(w2, vec![2; 16 * 1024]);
        second += 1;
        assert!(second < 64, "never paused");
    }
    // What counts (buffers plus the read-ahead of paused writers) passed the budget by
    // at most the reserve of the one writer that was still reading.
    let stats = raw.engine.stats();
    let reserve = 16 * 1024 + 2 * 16 * 1024;
    assert_eq!(stats.paused_writers, 2);
    assert!(
        stats.committed_channel_bytes <= 256 * 1024 + reserve,
        "{stats:?}"
    );
    // Draining channel 1 frees the budget: channel 2's writer resumes.
    for _ in 0..64 {
        raw.flush(r1);
    }
    assert!(!raw.inboxes[&w1].paused);
    assert!(
        !raw.inboxes[&w2].paused,
        "resumed once the budget recovered"
    );
}

#[test]
fn the_optional_engine_side_invocation_timeout_answers_the_caller() {
    let mut raw = RawEngine::new(EngineConfig {
        invocation_timeout: Some(Duration::from_secs(5)),
        ..EngineConfig::default()
    });
    let (owner, _) = raw.control();
    raw.send(owner, json!({"type": "registerfunction", "id": "f"}));
    let (caller, _) = raw.control();
    raw.send(
        caller,
        json!({"type": "invokefunction", "invocation_id": ID1, "function_id": "f", "data": {}}),
    );
    let call = raw.take_json(owner).remove(0);
    raw.advance(Duration::from_secs(6));
    let answer = raw.take_json(caller).remove(0);
    assert_eq!(answer["invocation_id"], ID1);
    assert_eq!(answer["error"]["code"], "invocation_timeout");
    // The late answer goes nowhere.
    raw.send(
        owner,
        json!({"type": "invocationresult", "invocation_id": call["invocation_id"], "function_id": "f", "result": 1}),
    );
    assert!(raw.take_json(caller).is_empty());
    assert_eq!(raw.engine.stats().pending_invocations, 0);
}

#[test]
fn foreign_origins_are_refused_and_allowed_ones_accepted() {
    use iii_core::engine::Admission;
    use iii_core::upgrade::{Rejection, UpgradeRequest};
    let mut raw = RawEngine::new(EngineConfig {
        allowed_origins: vec!["http://127.0.0.1:8080".into()],
        ..EngineConfig::default()
    });
    let evil = UpgradeRequest::to("/").with_origin(Some("http://evil.example"));
    assert!(matches!(
        raw.upgrade(&evil),
        Admission::Refused(Rejection::Forbidden)
    ));
    let good = UpgradeRequest::to("/").with_origin(Some("http://127.0.0.1:8080"));
    assert!(matches!(raw.upgrade(&good), Admission::Accepted(_)));
    // No Origin header (every non-browser SDK): not affected.
    assert!(matches!(
        raw.upgrade(&UpgradeRequest::to("/")),
        Admission::Accepted(_)
    ));
}

#[test]
fn the_control_queues_of_all_workers_share_an_engine_wide_bound() {
    let mut raw = RawEngine::new(EngineConfig {
        max_control_queue_bytes: 1 << 20,
        max_total_control_queue_bytes: 100 * 1024,
        ..EngineConfig::default()
    });
    raw.auto_sent = false; // nothing the engine transmits is ever flushed
    let (a, _) = raw.control();
    raw.send(a, json!({"type": "registerfunction", "id": "a"}));
    let (b, _) = raw.control();
    raw.send(b, json!({"type": "registerfunction", "id": "b"}));
    let (caller, _) = raw.control();
    let payload = "p".repeat(10 * 1024);
    let mut rounds = 0;
    while raw.inboxes[&a].closed.is_none() && raw.inboxes[&b].closed.is_none() {
        for function_id in ["a", "b"] {
            raw.send(
                caller,
                json!({"type": "invokefunction", "function_id": function_id,
                       "data": {"p": payload}, "action": {"type": "void"}}),
            );
        }
        rounds += 1;
        assert!(rounds < 20, "never dropped");
        let queued = raw.engine.stats().control_queued_bytes;
        assert!(queued <= 100 * 1024, "{queued} bytes queued");
    }
    // Each queue is far below its own 1 MiB: the engine-wide bound dropped one.
    assert!(rounds <= 6, "dropped after {rounds} rounds");
    assert!(raw
        .events
        .iter()
        .any(|e| matches!(e, EngineEvent::SlowConsumer { .. })));
}
