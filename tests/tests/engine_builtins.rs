//! What the engine's own functions cost a caller: each call is admitted under the
//! session's pending-invocation quota and its built-in call rate, and a guest's listing
//! shows what it may see however many functions other workers hold.

use std::time::Duration;

use iii_core::engine::{
    EngineConfig, FunctionFilter, ListenerPolicy, Pattern, Rbac, RefusalReason, WorkerQuotas,
    OTHER_REFUSALS,
};
use iii_tests::raw::RawEngine;
use iii_tests::rbac_fixtures::{
    engine, exposing, function_ids, open_worker, trusted_backend, OPEN,
};
use serde_json::json;

fn rate_limited_metric(raw: &RawEngine) -> u64 {
    let index = OTHER_REFUSALS
        .iter()
        .position(|r| *r == RefusalReason::RateLimited)
        .expect("a counted refusal");
    raw.engine.metrics().other_refusals[index]
}

#[test]
fn built_in_calls_are_rate_limited_per_session_and_refill_with_time() {
    let mut raw = RawEngine::new(EngineConfig {
        quotas: WorkerQuotas {
            builtin_calls_per_sec: 2,
            builtin_call_burst: 3,
            ..WorkerQuotas::default()
        },
        ..EngineConfig::default()
    });
    let (busy, _) = raw.control();
    let (other, _) = raw.control();
    for _ in 0..3 {
        let answer = raw.call(busy, "engine::functions::list", json!({}));
        assert!(answer["result"]["functions"].is_array(), "{answer}");
    }
    // Every built-in draws from the same bucket.
    for id in ["engine::functions::list", "engine::workers::list"] {
        let refused = raw.call(busy, id, json!({}));
        assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    }
    assert_eq!(rate_limited_metric(&raw), 2);
    // Another session has its own bucket.
    let answer = raw.call(other, "engine::workers::list", json!({}));
    assert!(answer["result"]["workers"].is_array(), "{answer}");
    // Two a second: one more call after half a second, not two.
    raw.advance(Duration::from_millis(500));
    let answer = raw.call(busy, "engine::functions::list", json!({}));
    assert!(answer["result"]["functions"].is_array(), "{answer}");
    let refused = raw.call(busy, "engine::functions::list", json!({}));
    assert_eq!(refused["error"]["code"], "rate_limited");
    assert_eq!(rate_limited_metric(&raw), 3);
}

#[test]
fn untrusted_listeners_rate_limit_built_ins_more_strictly_and_per_listener() {
    let defaults = WorkerQuotas::untrusted();
    assert!(defaults.builtin_call_burst < WorkerQuotas::default().builtin_call_burst);
    assert!(defaults.builtin_calls_per_sec < WorkerQuotas::default().builtin_calls_per_sec);
    let mut raw = engine();
    let guest = open_worker(&mut raw);
    let (trusted, _) = raw.control();
    let burst = defaults.builtin_call_burst;
    for _ in 0..burst {
        let answer = raw.call(guest, "engine::channels::create", json!({}));
        assert!(answer.get("error").is_none() || answer["error"]["code"] != "rate_limited");
    }
    let refused = raw.call(guest, "engine::workers::register", json!({"name": "g"}));
    assert_eq!(refused["error"]["code"], "rate_limited", "{refused}");
    // The trusted listener's bucket is larger and the guest's flood did not touch it.
    for _ in 0..=burst {
        let answer = raw.call(trusted, "engine::workers::list", json!({}));
        assert!(answer["result"]["workers"].is_array(), "{answer}");
    }
    assert_eq!(raw.engine.config().listeners[OPEN - 1].quotas, defaults);
}

#[test]
fn a_built_in_call_is_refused_past_the_pending_invocation_quota() {
    let mut raw = RawEngine::new(EngineConfig {
        quotas: WorkerQuotas {
            pending_invocations: 2,
            ..WorkerQuotas::default()
        },
        ..EngineConfig::default()
    });
    let (owner, _) = raw.control();
    let (caller, _) = raw.control();
    raw.register(owner, "slow", None);
    raw.take_json(owner);
    raw.call_async(caller, "slow", json!({}));
    raw.call_async(caller, "slow", json!({}));
    let refused = raw.call(caller, "engine::functions::list", json!({}));
    assert_eq!(refused["error"]["code"], "quota_exceeded", "{refused}");
    // Answered calls free the quota again.
    for invocation in raw.invocations(owner) {
        raw.answer(owner, &invocation, json!(null));
    }
    let answer = raw.call(caller, "engine::functions::list", json!({}));
    assert!(answer["result"]["functions"].is_array(), "{answer}");
}

/// The fixtures' engine whose open listener also exposes `engine::functions::list`.
fn listing_engine() -> RawEngine {
    let mut filters = exposing();
    filters.push(FunctionFilter::Id(Pattern::new("engine::functions::list")));
    let open = ListenerPolicy::untrusted(
        "open",
        Rbac {
            expose_functions: filters,
            ..Rbac::default()
        },
    );
    RawEngine::new(EngineConfig {
        listeners: vec![open],
        ..EngineConfig::default()
    })
}

#[test]
fn a_guest_lists_what_it_may_see_among_many_foreign_functions_and_the_index_follows_changes() {
    let mut raw = listing_engine();
    let backend = trusted_backend(&mut raw);
    let (bulk, _) = raw.control();
    for i in 0..2_000 {
        raw.register(bulk, &format!("bulk::f{i:04}"), None);
    }
    raw.register(bulk, "api::late", None);
    raw.take_json(bulk);
    let guest = open_worker(&mut raw);
    let listed = raw.call(guest, "engine::functions::list", json!({}));
    assert_eq!(
        function_ids(&listed),
        ["api::echo", "api::late", "meta::open"]
    );
    // Paging walks the same order.
    let first = raw.call(guest, "engine::functions::list", json!({"limit": 2}));
    assert_eq!(first["result"]["next_offset"], 2);
    let rest = raw.call(
        guest,
        "engine::functions::list",
        json!({"limit": 2, "offset": 2}),
    );
    assert_eq!(function_ids(&rest), ["meta::open"]);
    // Unregistered, or gone with its worker: gone from the guest's listing too.
    raw.send(
        bulk,
        json!({"type": "unregisterfunction", "id": "api::late"}),
    );
    raw.close(backend, iii_core::PeerClose::Lost);
    let listed = raw.call(guest, "engine::functions::list", json!({}));
    assert!(function_ids(&listed).is_empty(), "{listed}");
    // A worker that moves to another namespace takes its exposed functions out of reach.
    let (mover, _) = raw.control();
    raw.register(mover, "api::moved", None);
    let listed = raw.call(guest, "engine::functions::list", json!({}));
    assert_eq!(function_ids(&listed), ["api::moved"]);
    raw.call(
        mover,
        "engine::workers::register",
        json!({"namespace": "other"}),
    );
    let listed = raw.call(guest, "engine::functions::list", json!({}));
    assert!(function_ids(&listed).is_empty(), "{listed}");
    // A trusted worker still sees everything, in id order, in pages.
    let (admin, _) = raw.control();
    let page = raw.call(
        admin,
        "engine::functions::list",
        json!({"prefix": "bulk::", "offset": 1_000, "limit": 3}),
    );
    let ids: Vec<&str> = page["result"]["functions"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|f| f["function_id"].as_str())
        .collect();
    assert_eq!(ids, ["bulk::f1000", "bulk::f1001", "bulk::f1002"]);
    assert_eq!(page["result"]["next_offset"], 1_003);
}
