//! RBAC listeners, wire-exact against one core engine driven by hand: exposure,
//! the authentication function, session policies, registration hooks, middleware,
//! trigger configs, per-address limits, origins and channels.

use std::time::Duration;

use iii_core::engine::{
    Admission, EngineConfig, FunctionFilter, ListenerPolicy, Pattern, Rbac, RefusalReason,
    WorkerQuotas,
};
use iii_core::upgrade::{Rejection, UpgradeRequest};
use iii_core::wire::codes;
use iii_tests::raw::RawEngine;
use iii_tests::rbac_fixtures::{
    admit_with, engine, engine_with, exposing, function_ids, open_worker, trusted_backend, AUTHED,
};
use serde_json::{json, Value};

#[test]
fn untrusted_workers_call_exposed_functions_only_and_learn_nothing_else() {
    let mut raw = engine();
    let backend = trusted_backend(&mut raw);
    let guest = open_worker(&mut raw);

    // Exposed by id and by metadata: forwarded.
    raw.call_async(guest, "api::echo", json!({"x": 1}));
    raw.call_async(guest, "meta::open", json!({}));
    let forwarded: Vec<String> = raw
        .invocations(backend)
        .iter()
        .map(|m| m["function_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(forwarded, ["api::echo", "meta::open"]);

    // Not exposed, missing, or an engine built-in not listed: the same FORBIDDEN
    // answer, naming the id and the setting, so nothing tells them apart.
    let hidden = raw.call(guest, "internal::secret", json!({}));
    let missing = raw.call(guest, "internal::nothing", json!({}));
    let builtin = raw.call(guest, "engine::functions::list", json!({}));
    for (answer, id) in [
        (&hidden, "internal::secret"),
        (&missing, "internal::nothing"),
        (&builtin, "engine::functions::list"),
    ] {
        assert_eq!(answer["error"]["code"], codes::FORBIDDEN, "{answer}");
        assert_eq!(answer["function_id"], id, "{answer}");
        assert_eq!(
            answer["error"]["message"],
            format!("function '{id}' not allowed (add to rbac.expose_functions)"),
        );
    }
    assert!(raw.invocations(backend).is_empty());
    // Every refusal is counted (and logged), existing or not.
    assert_eq!(raw.refusals(), [RefusalReason::Forbidden; 3]);

    // A trusted worker still calls everything.
    let (trusted, _) = raw.control();
    raw.call_async(trusted, "internal::secret", json!({}));
    assert_eq!(raw.invocations(backend).len(), 1);
}

#[test]
fn listings_show_untrusted_workers_only_what_they_may_call() {
    let mut raw = RawEngine::new(EngineConfig {
        listeners: vec![ListenerPolicy::untrusted(
            "open",
            Rbac {
                expose_functions: [
                    exposing(),
                    vec![FunctionFilter::Id(Pattern::new("engine::functions::list"))],
                ]
                .concat(),
                ..Rbac::default()
            },
        )],
        ..EngineConfig::default()
    });
    let backend = trusted_backend(&mut raw);
    let guest = open_worker(&mut raw);
    let listing = raw.call(guest, "engine::functions::list", json!({}));
    assert_eq!(function_ids(&listing), ["api::echo", "meta::open"]);
    // With the engine's own functions: only those it may call.
    let listing = raw.call(
        guest,
        "engine::functions::list",
        json!({"include_internal": true}),
    );
    assert_eq!(
        function_ids(&listing),
        [
            "api::echo",
            "engine::channels::create",
            "engine::functions::list",
            "engine::log::debug",
            "engine::log::error",
            "engine::log::info",
            "engine::log::trace",
            "engine::log::warn",
            "engine::workers::register",
            "meta::open"
        ]
    );
    // Nor do workers or bindings of others show.
    let workers = raw.call(guest, "engine::workers::list", json!({}));
    assert_eq!(workers["error"]["code"], codes::FORBIDDEN);
    // The trusted backend sees everything.
    let full = raw.call(backend, "engine::functions::list", json!({}));
    assert!(function_ids(&full).contains(&"internal::secret".to_owned()));
}

#[test]
fn the_authentication_function_sees_headers_query_cookies_and_address() {
    let mut raw = engine();
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.take_json(auth);
    let headers = vec![
        (
            "authorization".to_owned(),
            "Bearer tenant-secret".to_owned(),
        ),
        ("cookie".to_owned(), "session=abc; theme=dark".to_owned()),
        ("x-tenant".to_owned(), "acme".to_owned()),
    ];
    let request = UpgradeRequest::to("/?token=t1&token=t2&lang=en").on_listener(
        AUTHED,
        Some("10.1.2.3".parse().expect("ip")),
        &headers,
    );
    let Admission::Deferred(ticket) = raw.upgrade(&request) else {
        panic!("an authenticated listener defers the upgrade");
    };
    let calls = raw.invocations(auth);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function_id"], "auth::check");
    assert_eq!(
        calls[0]["data"],
        json!({
            "headers": {"authorization": "Bearer tenant-secret",
                        "cookie": "session=abc; theme=dark", "x-tenant": "acme"},
            "query_params": {"token": ["t1", "t2"], "lang": ["en"]},
            "cookies": {"session": "abc", "theme": "dark"},
            "ip_address": "10.1.2.3",
        })
    );
    assert!(
        raw.admitted.is_empty(),
        "undecided until the function answers"
    );
    raw.answer(auth, &calls[0], json!({"allowed_functions": []}));
    let accepted = raw
        .admitted
        .remove(&ticket)
        .expect("decided")
        .expect("admitted");
    let hello = raw.take_json(accepted.conn);
    assert_eq!(hello[0]["type"], "workerregistered");
}

#[test]
fn a_failed_late_or_missing_authentication_function_means_401() {
    let mut raw = engine();
    let request = UpgradeRequest::to("/").on_listener(AUTHED, None, &[]);
    // Not registered at all.
    assert!(matches!(
        raw.upgrade(&request),
        Admission::Refused(Rejection::Unauthorized)
    ));
    // Registered by an untrusted worker: does not count.
    let guest = open_worker(&mut raw);
    raw.register(guest, "auth::check", None);
    assert!(matches!(
        raw.upgrade(&request),
        Admission::Refused(Rejection::Unauthorized)
    ));
    raw.close(guest, iii_core::PeerClose::Lost);

    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.take_json(auth);
    // Fails.
    let Admission::Deferred(failed) = raw.upgrade(&request) else {
        panic!("deferred")
    };
    let call = raw.invocations(auth).remove(0);
    raw.answer_denied(auth, &call);
    assert_eq!(
        raw.admitted.remove(&failed),
        Some(Err(Rejection::Unauthorized))
    );
    // Answers something that is not an AuthResult.
    let not_a_result = admit_with(&mut raw, auth, json!("yes"));
    assert_eq!(not_a_result, Err(Rejection::Unauthorized));
    // Does not answer in time (default 5 s).
    let Admission::Deferred(late) = raw.upgrade(&request) else {
        panic!("deferred")
    };
    let call = raw.invocations(auth).remove(0);
    raw.advance(Duration::from_millis(4_900));
    assert!(raw.admitted.is_empty());
    raw.advance(Duration::from_millis(200));
    assert_eq!(
        raw.admitted.remove(&late),
        Some(Err(Rejection::Unauthorized))
    );
    // Its answer after the timeout is ignored.
    raw.answer(auth, &call, json!({}));
    assert!(raw.admitted.is_empty());
    // Its worker leaves while deciding.
    let Admission::Deferred(orphaned) = raw.upgrade(&request) else {
        panic!("deferred")
    };
    raw.close(auth, iii_core::PeerClose::Lost);
    assert_eq!(
        raw.admitted.remove(&orphaned),
        Some(Err(Rejection::Unauthorized))
    );

    let reasons = raw.auth_failures();
    assert_eq!(reasons.len(), 6, "{reasons:?}");
    // Never the credentials, only why.
    assert!(reasons.iter().all(|r| !r.contains("Bearer")));
    assert_eq!(raw.engine.metrics().refused_upgrades.unauthorized, 6);
}

#[test]
fn the_auth_result_narrows_the_session() {
    let mut raw = engine();
    let backend = trusted_backend(&mut raw);
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.take_json(auth);
    let guest = admit_with(
        &mut raw,
        auth,
        json!({
            "allowed_functions": ["internal::secret"],
            "forbidden_functions": ["api::echo"],
            "context": {"tenant": "acme", "user": 7},
        }),
    )
    .expect("admitted");

    // allowed_functions opens an unexposed function; forbidden_functions closes an
    // exposed one (forbidden first).
    raw.call_async(guest, "internal::secret", json!({"q": 1}));
    let denied = raw.call(guest, "api::echo", json!({}));
    assert_eq!(denied["error"]["code"], codes::FORBIDDEN);
    assert_eq!(
        denied["error"]["message"],
        "function 'api::echo' not allowed (remove from rbac.forbidden_functions)"
    );
    let calls = raw.invocations(backend);
    assert_eq!(calls.len(), 1);
    // The context reaches the callee, beside the caller's worker id.
    assert_eq!(calls[0]["data"]["q"], 1);
    assert_eq!(
        calls[0]["data"]["_caller_context"],
        json!({"tenant": "acme", "user": 7})
    );
    assert!(calls[0]["data"]["_caller_worker_id"].is_string());
    // The answer reaches the caller.
    raw.answer(backend, &calls[0], json!("ok"));
    let results: Vec<Value> = raw
        .take_json(guest)
        .into_iter()
        .filter(|m| m["type"] == "invocationresult")
        .collect();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["result"], "ok");
}

#[test]
fn registration_prefixes_apply_and_are_stripped_when_invoking() {
    let mut raw = engine();
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    let (caller, _) = raw.control();
    raw.take_json(auth);
    let guest = admit_with(
        &mut raw,
        auth,
        json!({"function_registration_prefix": "acme", "allow_function_registration": true}),
    )
    .expect("admitted");
    raw.register(guest, "resize", None);
    let listing = raw.call(caller, "engine::functions::list", json!({}));
    let ids = function_ids(&listing);
    assert!(ids.contains(&"acme::resize".to_owned()), "{ids:?}");
    assert!(!ids.contains(&"resize".to_owned()));
    raw.call_async(caller, "acme::resize", json!({"w": 10}));
    let calls = raw.invocations(guest);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["function_id"], "resize", "stripped for its worker");
    // A worker refused registration rights registers nothing.
    let frozen = admit_with(
        &mut raw,
        auth,
        json!({"allow_function_registration": false}),
    )
    .expect("admitted");
    raw.register(frozen, "thing", None);
    let answers = raw.take_json(frozen);
    assert!(
        answers
            .iter()
            .any(|m| m["type"] == "error" && m["error"]["code"] == RefusalReason::Forbidden.code()),
        "{answers:?}"
    );
    let ids = function_ids(&raw.call(caller, "engine::functions::list", json!({})));
    assert!(!ids.contains(&"thing".to_owned()));
}

#[test]
fn untrusted_workers_cannot_take_over_reserved_or_trusted_names() {
    let mut raw = engine();
    let backend = trusted_backend(&mut raw);
    let guest = open_worker(&mut raw);
    raw.register(guest, "api::echo", None);
    raw.register(guest, "engine::functions::list", None);
    let answers = raw.take_json(guest);
    assert_eq!(
        answers
            .iter()
            .filter(|m| m["type"] == "registrationrejected")
            .count(),
        2,
        "{answers:?}"
    );
    raw.call_async(backend, "api::echo", json!({}));
    assert_eq!(raw.invocations(backend).len(), 1, "still the backend's");
}

#[test]
fn registration_hooks_approve_rewrite_or_refuse() {
    let mut raw = engine_with(|policy| {
        let rbac = policy.rbac.as_mut().expect("rbac");
        rbac.on_function_registration_function_id = Some("hooks::function".to_owned());
        rbac.on_trigger_type_registration_function_id = Some("hooks::trigger_type".to_owned());
        rbac.on_trigger_registration_function_id = Some("hooks::trigger".to_owned());
    });
    let (auth, _) = raw.control();
    for id in [
        "auth::check",
        "hooks::function",
        "hooks::trigger_type",
        "hooks::trigger",
    ] {
        raw.register(auth, id, None);
    }
    raw.take_json(auth);
    let guest = admit_with(
        &mut raw,
        auth,
        json!({"allow_trigger_type_registration": true, "context": {"tenant": "acme"}}),
    )
    .expect("admitted");
    let (caller, _) = raw.control();

    // Approved with a rewrite.
    raw.register(guest, "draft", Some(json!({"v": 1})));
    let hook = raw.invocations(auth).remove(0);
    assert_eq!(hook["function_id"], "hooks::function");
    assert_eq!(
        hook["data"],
        json!({"function_id": "draft", "metadata": {"v": 1}, "context": {"tenant": "acme"}})
    );
    let ids = function_ids(&raw.call(caller, "engine::functions::list", json!({})));
    assert!(!ids.contains(&"draft".to_owned()), "held until approved");
    raw.answer(auth, &hook, json!({"function_id": "approved::draft"}));
    let ids = function_ids(&raw.call(caller, "engine::functions::list", json!({})));
    assert!(ids.contains(&"approved::draft".to_owned()), "{ids:?}");

    // Refused by an error; refused by silence: dropped without a word to the worker
    // (as the reference engine does), and counted.
    raw.take_json(guest);
    let before = raw.refusals().len();
    raw.register(guest, "nope", None);
    let hook = raw.invocations(auth).remove(0);
    raw.answer_denied(auth, &hook);
    raw.register(guest, "slow", None);
    raw.advance(Duration::from_secs(6));
    assert_eq!(raw.invocations(auth).len(), 1, "the hook was asked");
    let answers = raw.take_json(guest);
    assert!(answers.is_empty(), "{answers:?}");
    assert_eq!(raw.refusals()[before..], [RefusalReason::NotApproved; 2]);
    let ids = function_ids(&raw.call(caller, "engine::functions::list", json!({})));
    assert!(!ids.contains(&"nope".to_owned()) && !ids.contains(&"slow".to_owned()));

    // Trigger types and triggers go through their hooks too.
    raw.send(
        guest,
        json!({"type": "registertriggertype", "id": "webhook", "description": "d"}),
    );
    let hook = raw.invocations(auth).remove(0);
    assert_eq!(hook["function_id"], "hooks::trigger_type");
    assert_eq!(hook["data"]["trigger_type_id"], "webhook");
    raw.answer(auth, &hook, Value::Null);
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "t1", "trigger_type": "webhook",
               "function_id": "approved::draft", "config": {"path": "/x"}}),
    );
    let hook = raw.invocations(auth).remove(0);
    assert_eq!(hook["function_id"], "hooks::trigger");
    assert_eq!(hook["data"]["config"], json!({"path": "/x"}));
    assert_eq!(hook["data"]["context"], json!({"tenant": "acme"}));
}

#[test]
fn untrusted_workers_never_see_other_workers_trigger_configs() {
    let mut raw = engine();
    let backend = trusted_backend(&mut raw);
    let guest = open_worker(&mut raw);
    // The guest provides a trigger type; a trusted worker binds to it with a secret.
    raw.send(
        guest,
        json!({"type": "registertriggertype", "id": "guest::hook", "description": "d"}),
    );
    raw.send(
        backend,
        json!({"type": "registertrigger", "id": "b1", "trigger_type": "guest::hook",
               "function_id": "internal::secret", "config": {"api_key": "S3CRET"}}),
    );
    // A trusted provider with a trusted binding holding a secret.
    let (provider, _) = raw.control();
    raw.send(
        provider,
        json!({"type": "registertriggertype", "id": "cron", "description": "d"}),
    );
    raw.send(
        backend,
        json!({"type": "registertrigger", "id": "c1", "trigger_type": "cron",
               "function_id": "internal::secret", "config": {"password": "S3CRET"}}),
    );
    // The guest binds its own trigger to an exposed function: delivered to itself.
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "g1", "trigger_type": "guest::hook",
               "function_id": "api::echo", "config": {"mine": true}}),
    );
    // ... and cannot bind to what it may not call.
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "g2", "trigger_type": "cron",
               "function_id": "internal::secret", "config": {}}),
    );
    // Not its own unexposed functions either (it may not call them, as in the
    // reference); the engine's notifications (which describe every worker and
    // function) not at all.
    raw.register(guest, "guest::own", None);
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "g3", "trigger_type": "guest::hook",
               "function_id": "guest::own", "config": {}}),
    );
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "g4", "trigger_type": "engine::functions-available",
               "function_id": "guest::own", "config": {}}),
    );
    let seen = raw.take_json(guest);
    let text = serde_json::to_string(&seen).expect("json");
    assert!(
        seen.iter().any(|m| m["type"] == "triggerregistrationresult"
            && m["id"] == "g3"
            && m["error"]["code"] == codes::FORBIDDEN),
        "{text}"
    );
    assert!(
        seen.iter().any(|m| m["type"] == "triggerregistrationresult"
            && m["id"] == "g4"
            && m["error"]["code"] == RefusalReason::Forbidden.code()),
        "{text}"
    );
    assert!(!text.contains("S3CRET"), "{text}");
    assert!(
        !text.contains("\"b1\"") && !text.contains("\"c1\""),
        "{text}"
    );
    assert!(
        seen.iter()
            .any(|m| m["type"] == "registertrigger" && m["id"] == "g1"),
        "its own binding reaches it: {text}"
    );
    assert!(
        seen.iter().any(|m| m["type"] == "triggerregistrationresult"
            && m["id"] == "g2"
            && m["error"]["code"] == RefusalReason::Forbidden.code()),
        "{text}"
    );
    // Listing trigger bindings is not exposed; listing types shows no configs.
    let listing = raw.call(guest, "engine::triggers::list", json!({}));
    assert_eq!(listing["error"]["code"], codes::FORBIDDEN);
}

#[test]
fn the_middleware_sees_every_call_and_decides() {
    let mut raw = engine_with(|policy| {
        policy.middleware_function_id = Some("mw::route".to_owned());
        if let Some(rbac) = policy.rbac.as_mut() {
            let listing = FunctionFilter::Id(Pattern::new("engine::functions::list"));
            rbac.expose_functions.push(listing);
        }
    });
    let backend = trusted_backend(&mut raw);
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.register(auth, "mw::route", None);
    raw.take_json(auth);
    let guest = admit_with(&mut raw, auth, json!({"context": {"user": "u1"}})).expect("admitted");
    let id = raw.call_async(guest, "api::echo", json!({"x": 1}));
    assert!(raw.invocations(backend).is_empty(), "not called directly");
    let routed = raw.invocations(auth).remove(0);
    assert_eq!(routed["function_id"], "mw::route");
    assert_eq!(
        routed["data"],
        json!({"function_id": "api::echo", "payload": {"x": 1}, "context": {"user": "u1"}})
    );
    raw.answer(auth, &routed, json!({"decided": "by middleware"}));
    let result = raw
        .take_json(guest)
        .into_iter()
        .find(|m| m["type"] == "invocationresult" && m["invocation_id"] == id.as_str())
        .expect("answered");
    assert_eq!(result["result"], json!({"decided": "by middleware"}));
    // Calls it may not make never reach the middleware.
    let denied = raw.call(guest, "internal::secret", json!({}));
    assert_eq!(denied["error"]["code"], codes::FORBIDDEN);
    assert!(raw.invocations(auth).is_empty());
    // The engine's own functions bypass it and answer as the guest: the listing stays
    // filtered, the channel is the guest's.
    let listing = raw.call(guest, "engine::functions::list", json!({}));
    assert_eq!(function_ids(&listing), ["api::echo", "meta::open"]);
    let created = raw.call(guest, "engine::channels::create", json!({}));
    assert!(
        created["result"]["writer"]["channel_id"].is_string(),
        "{created}"
    );
    assert!(
        raw.invocations(auth).is_empty(),
        "the middleware saw a built-in"
    );
}

#[test]
fn per_address_limits_and_origins_apply_per_listener() {
    let mut raw = RawEngine::new(EngineConfig {
        listeners: vec![ListenerPolicy {
            max_connections_per_ip: Some(2),
            allowed_origins: Some(vec!["https://app.example".to_owned()]),
            ..ListenerPolicy::untrusted("browsers", Rbac::default())
        }],
        allowed_origins: vec!["https://admin.example".to_owned()],
        ..EngineConfig::default()
    });
    let ip = Some("192.0.2.1".parse().expect("ip"));
    let from = |origin| {
        UpgradeRequest::to("/")
            .with_origin(origin)
            .on_listener(1, ip, &[])
    };
    let mut kept = Vec::new();
    for _ in 0..2 {
        match raw.upgrade(&from(Some("https://app.example"))) {
            Admission::Accepted(accepted) => kept.push(accepted.conn),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        raw.upgrade(&from(Some("https://app.example"))),
        Admission::Refused(Rejection::Overloaded)
    ));
    // Another address is not affected; a foreign origin is refused with 403.
    let other = UpgradeRequest::to("/").on_listener(1, Some("192.0.2.2".parse().expect("ip")), &[]);
    assert!(matches!(raw.upgrade(&other), Admission::Accepted(_)));
    assert!(matches!(
        raw.upgrade(&from(Some("https://evil.example"))),
        Admission::Refused(Rejection::Forbidden)
    ));
    // Each listener has its own list: the engine's is the main listener's.
    assert!(matches!(
        raw.upgrade(&from(Some("https://admin.example"))),
        Admission::Refused(Rejection::Forbidden)
    ));
    assert!(matches!(
        raw.upgrade(&UpgradeRequest::to("/").with_origin(Some("https://admin.example"))),
        Admission::Accepted(_)
    ));
    // A slot frees when a connection ends.
    raw.close(kept[0], iii_core::PeerClose::Lost);
    assert!(matches!(
        raw.upgrade(&from(Some("https://app.example"))),
        Admission::Accepted(_)
    ));
}

#[test]
fn untrusted_workers_use_channels_on_their_listener_under_their_quotas() {
    let mut raw = RawEngine::new(EngineConfig {
        listeners: vec![ListenerPolicy {
            quotas: WorkerQuotas {
                channels: 1,
                ..WorkerQuotas::untrusted()
            },
            ..ListenerPolicy::untrusted("open", Rbac::default())
        }],
        ..EngineConfig::default()
    });
    let guest = open_worker(&mut raw);
    let created = raw.call(guest, "engine::channels::create", json!({}));
    let refs = &created["result"];
    assert!(refs["writer"]["channel_id"].is_string(), "{created}");
    for end in ["writer", "reader"] {
        let r = &refs[end];
        let target = format!(
            "/ws/channels/{}?key={}&dir={}",
            r["channel_id"].as_str().expect("id"),
            r["access_key"].as_str().expect("key"),
            r["direction"].as_str().expect("dir"),
        );
        let request = UpgradeRequest::to(&target).on_listener(1, None, &[]);
        assert!(
            matches!(raw.upgrade(&request), Admission::Accepted(_)),
            "{end} end attaches on the untrusted listener"
        );
    }
    let second = raw.call(guest, "engine::channels::create", json!({}));
    assert_eq!(second["error"]["code"], "quota_exceeded", "{second}");
}
