//! RBAC trust, wire-exact against one core engine driven by hand: a guest cannot forge
//! its identity on any path, cannot tell a taken id from a free one, gets FORBIDDEN for
//! every call outside its exposure, logs through the engine within a budget, and its
//! registrations reach the hooks only within its quotas.

use std::time::Duration;

use iii_core::engine::{
    EngineConfig, EngineEvent, ListenerPolicy, LogLevel, Rbac, RefusalReason, WorkerQuotas,
};
use iii_core::wire::codes;
use iii_core::ConnId;
use iii_tests::raw::RawEngine;
use iii_tests::rbac_fixtures::{
    admit_with, engine_with, exposing, function_ids, open_worker, trusted_backend,
};
use serde_json::{json, Value};

/// A forged identity: every key a guest might use to pass for someone else.
fn forged(mut data: Value) -> Value {
    data["_caller_context"] = json!({"role": "admin"});
    data["_caller_worker_id"] = json!("trusted-worker");
    data["_caller_role"] = json!("admin");
    data
}

/// True when `data` holds no top-level `_caller_` key but those the engine vouches for.
fn holds_no_forgery(data: &Value) -> bool {
    data.as_object().is_some_and(|o| {
        o.get("_caller_context") != Some(&json!({"role": "admin"}))
            && o.get("_caller_worker_id") != Some(&json!("trusted-worker"))
            && !o.contains_key("_caller_role")
    })
}

#[test]
fn a_forged_identity_never_reaches_a_trusted_function_through_the_middleware() {
    let mut raw = engine_with(|policy| {
        policy.middleware_function_id = Some("mw::route".to_owned());
    });
    let backend = trusted_backend(&mut raw);
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.register(auth, "mw::route", None);
    raw.take_json(auth);
    let guest = admit_with(&mut raw, auth, json!({"context": {"user": "u1"}})).expect("admitted");

    raw.call_async(guest, "api::echo", forged(json!({"x": 1})));
    let routed = raw.invocations(auth).remove(0);
    // The middleware sees the guest's payload without the forged keys, and the context
    // the engine vouches for beside it.
    assert_eq!(routed["data"]["payload"], json!({"x": 1}), "{routed}");
    assert_eq!(routed["data"]["context"], json!({"user": "u1"}));
    // A middleware that forwards the payload as it got it (adding its own keys)
    // cannot hand the forgery on: the backend never sees it.
    let mut payload = routed["data"]["payload"].clone();
    payload["_intercepted"] = json!(true);
    raw.call_async(auth, "api::echo", payload);
    let reached = raw.invocations(backend).remove(0);
    assert!(holds_no_forgery(&reached["data"]), "{reached}");
    assert_eq!(reached["data"]["_intercepted"], true);
    assert_eq!(reached["data"]["x"], 1);
}

#[test]
fn a_forged_identity_is_stripped_on_every_other_path_too() {
    let mut raw = engine_with(|policy| {
        let rbac = policy.rbac.as_mut().expect("rbac");
        rbac.on_trigger_registration_function_id = Some("hooks::trigger".to_owned());
    });
    let backend = trusted_backend(&mut raw);
    // Direct call from an open listener: the engine's own keys replace the forged
    // ones, any other `_caller_*` key is gone.
    let guest = open_worker(&mut raw);
    raw.call_async(guest, "api::echo", forged(json!({"x": 1})));
    let reached = raw.invocations(backend).remove(0);
    assert!(holds_no_forgery(&reached["data"]), "{reached}");
    assert!(reached["data"]["_caller_worker_id"].is_string());
    // Nested keys are data, not identity: kept.
    raw.call_async(guest, "api::echo", json!({"inner": {"_caller_role": "x"}}));
    let reached = raw.invocations(backend).remove(0);
    assert_eq!(reached["data"]["inner"]["_caller_role"], "x");

    // A trigger config reaches the hook (and the provider) without the forged keys.
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.register(auth, "hooks::trigger", None);
    raw.send(
        auth,
        json!({"type": "registertriggertype", "id": "webhook", "description": "d"}),
    );
    raw.take_json(auth);
    let hooked = admit_with(&mut raw, auth, json!({})).expect("admitted");
    raw.send(
        hooked,
        json!({"type": "registertrigger", "id": "t1", "trigger_type": "webhook",
               "function_id": "api::echo", "config": forged(json!({"path": "/x"}))}),
    );
    let hook = raw.invocations(auth).remove(0);
    assert_eq!(hook["function_id"], "hooks::trigger");
    assert_eq!(hook["data"]["config"], json!({"path": "/x"}), "{hook}");
    raw.answer(auth, &hook, Value::Null);
    let delivered = raw
        .take_json(auth)
        .into_iter()
        .find(|m| m["type"] == "registertrigger")
        .expect("the provider gets the binding");
    assert_eq!(delivered["config"], json!({"path": "/x"}), "{delivered}");
}

#[test]
fn every_call_outside_the_exposure_is_forbidden_alike() {
    let mut raw = engine_with(|_| {});
    trusted_backend(&mut raw);
    let guest = open_worker(&mut raw);
    let existing = raw.call(guest, "internal::secret", json!({}));
    let missing = raw.call(guest, "internal::nothing", json!({}));
    for (answer, id) in [
        (&existing, "internal::secret"),
        (&missing, "internal::nothing"),
    ] {
        assert_eq!(answer["function_id"], id);
        assert_eq!(answer["error"]["code"], codes::FORBIDDEN);
        let message = answer["error"]["message"].as_str().expect("message");
        assert!(message.contains(id) && message.contains("rbac.expose_functions"));
    }
    let blank = |v: &Value, id: &str| v.to_string().replace(id, "ID");
    assert_eq!(
        blank(&existing, "internal::secret").replace("0001", "N"),
        blank(&missing, "internal::nothing").replace("0002", "N"),
        "nothing but the id tells them apart"
    );
}

/// Registration answers, as a guest sees them.
fn answers(raw: &mut RawEngine, guest: ConnId) -> Vec<Value> {
    raw.take_json(guest)
}

#[test]
fn a_guest_cannot_tell_a_taken_function_id_from_a_free_one() {
    let mut raw = RawEngine::new(EngineConfig {
        listeners: vec![ListenerPolicy {
            quotas: WorkerQuotas {
                functions: 2,
                ..WorkerQuotas::untrusted()
            },
            ..ListenerPolicy::untrusted(
                "open",
                Rbac {
                    expose_functions: exposing(),
                    ..Rbac::default()
                },
            )
        }],
        ..EngineConfig::default()
    });
    let (backend, backend_id) = raw.control();
    raw.register(backend, "internal::secret", None);
    raw.register(backend, "api::echo", None);
    raw.take_json(backend);
    let guest = open_worker(&mut raw);

    // Taken (by a trusted worker, unexposed) and free: the same silence.
    raw.register(guest, "internal::secret", None);
    assert!(answers(&mut raw, guest).is_empty());
    raw.register(guest, "internal::free", None);
    assert!(answers(&mut raw, guest).is_empty());
    // Calling either: the same FORBIDDEN.
    for id in ["internal::secret", "internal::free"] {
        let answer = raw.call(guest, id, json!({}));
        assert_eq!(answer["error"]["code"], codes::FORBIDDEN, "{answer}");
    }
    // Both count toward its quota, and unregistering either frees it.
    raw.register(guest, "internal::third", None);
    let refused = answers(&mut raw, guest);
    assert!(
        refused
            .iter()
            .any(|m| m["error"]["code"] == codes::QUOTA_EXCEEDED),
        "{refused:?}"
    );
    raw.send(
        guest,
        json!({"type": "unregisterfunction", "id": "internal::secret"}),
    );
    raw.register(guest, "internal::third", None);
    assert!(answers(&mut raw, guest).is_empty());
    // The trusted function was never touched.
    let (caller, _) = raw.control();
    raw.call_async(caller, "internal::secret", json!({}));
    assert_eq!(raw.invocations(backend).len(), 1);

    // An id it may call (exposed) it could probe by calling: there the conflict is
    // answered, but never with the owner's worker id.
    raw.send(
        guest,
        json!({"type": "unregisterfunction", "id": "internal::third"}),
    );
    raw.register(guest, "api::echo", None);
    let conflict = answers(&mut raw, guest);
    let text = serde_json::to_string(&conflict).expect("json");
    assert!(
        conflict.iter().any(|m| m["type"] == "registrationrejected"
            && m["code"] == codes::FUNCTION_NAMESPACE_CONFLICT
            && m["owner_worker_id"] == ""),
        "{text}"
    );
    assert!(!text.contains(&backend_id), "{text}");
}

#[test]
fn a_guest_cannot_tell_a_taken_trigger_id_from_a_free_one() {
    let mut raw = engine_with(|_| {});
    let backend = trusted_backend(&mut raw);
    let (provider, _) = raw.control();
    raw.send(
        provider,
        json!({"type": "registertriggertype", "id": "cron", "description": "d"}),
    );
    raw.send(
        backend,
        json!({"type": "registertrigger", "id": "t1", "trigger_type": "cron",
               "function_id": "internal::secret", "config": {}}),
    );
    raw.take_json(provider);
    let guest = open_worker(&mut raw);
    // Taken by the backend, and free: both are the guest's own, in its own scope.
    for id in ["t1", "t2"] {
        raw.send(
            guest,
            json!({"type": "registertrigger", "id": id, "trigger_type": "cron",
                   "function_id": "api::echo", "config": {"mine": true}}),
        );
        assert!(answers(&mut raw, guest).is_empty(), "{id}");
    }
    let delivered: Vec<Value> = raw
        .take_json(provider)
        .into_iter()
        .filter(|m| m["type"] == "registertrigger")
        .collect();
    assert_eq!(delivered.len(), 2, "{delivered:?}");
    // A provider's error reaches the guest under the id it gave, for either.
    for binding in &delivered {
        raw.send(
            provider,
            json!({"type": "triggerregistrationresult", "id": binding["id"],
                   "trigger_type": "cron", "function_id": "api::echo",
                   "error": {"code": "bad_config", "message": "no"}}),
        );
    }
    let mut ids: Vec<String> = answers(&mut raw, guest)
        .iter()
        .filter(|m| m["type"] == "triggerregistrationresult")
        .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    assert_eq!(ids, ["t1", "t2"]);
    // Unregistering its t1 leaves the backend's alone.
    raw.send(guest, json!({"type": "unregistertrigger", "id": "t1"}));
    let listing = raw.call(backend, "engine::registered-triggers::list", json!({}));
    let text = listing.to_string();
    assert!(text.contains("\"id\":\"t1\""), "{text}");
}

#[test]
fn hooks_see_only_registrations_within_the_quotas_and_count_as_pending_calls() {
    let mut raw = engine_with(|policy| {
        policy.quotas = WorkerQuotas {
            functions: 3,
            pending_invocations: 4,
            registration_bytes: 1024,
            ..WorkerQuotas::untrusted()
        };
        let rbac = policy.rbac.as_mut().expect("rbac");
        rbac.on_function_registration_function_id = Some("hooks::function".to_owned());
    });
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.register(auth, "hooks::function", None);
    raw.take_json(auth);
    let guest = admit_with(&mut raw, auth, json!({})).expect("admitted");

    // Too large: refused before the hook.
    let big = json!({"blob": "x".repeat(4096)});
    raw.register(guest, "big", Some(big));
    assert!(
        raw.invocations(auth).is_empty(),
        "a refused size reached the hook"
    );
    // Ten at once with a quota of three: three hook calls, seven refusals.
    for i in 0..10 {
        raw.register(guest, &format!("f{i}"), None);
    }
    let hooks = raw.invocations(auth);
    assert_eq!(hooks.len(), 3);
    let refused = raw
        .take_json(guest)
        .into_iter()
        .filter(|m| m["type"] == "error" && m["error"]["code"] == codes::QUOTA_EXCEEDED)
        .count();
    assert_eq!(refused, 8, "seven over the count, one over the size");
    // Approved, they hold the quota: no more hook calls.
    for hook in &hooks {
        raw.answer(auth, hook, Value::Null);
    }
    raw.register(guest, "f10", None);
    assert!(raw.invocations(auth).is_empty());
    let listing = raw.call(auth, "engine::functions::list", json!({}));
    let ids = function_ids(&listing);
    assert!(ids.contains(&"f0".to_owned()) && !ids.contains(&"f3".to_owned()));

    // Hook calls are pending calls of the guest: with 4 allowed, a fifth waits for none.
    let mut raw = engine_with(|policy| {
        policy.quotas = WorkerQuotas {
            pending_invocations: 4,
            ..WorkerQuotas::untrusted()
        };
        let rbac = policy.rbac.as_mut().expect("rbac");
        rbac.on_function_registration_function_id = Some("hooks::function".to_owned());
    });
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.register(auth, "hooks::function", None);
    raw.take_json(auth);
    let guest = admit_with(&mut raw, auth, json!({})).expect("admitted");
    for i in 0..6 {
        raw.register(guest, &format!("g{i}"), None);
    }
    assert_eq!(raw.invocations(auth).len(), 4);
    assert!(raw.refusals().contains(&RefusalReason::Quota(
        iii_core::engine::Quota::PendingInvocations
    )));
}

#[test]
fn the_trigger_hook_is_asked_once_even_for_a_missing_function_and_its_no_is_silent() {
    let mut raw = engine_with(|policy| {
        let rbac = policy.rbac.as_mut().expect("rbac");
        rbac.on_trigger_registration_function_id = Some("hooks::trigger".to_owned());
    });
    trusted_backend(&mut raw);
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.register(auth, "hooks::trigger", None);
    raw.send(
        auth,
        json!({"type": "registertriggertype", "id": "webhook", "description": "d"}),
    );
    raw.take_json(auth);
    let guest =
        admit_with(&mut raw, auth, json!({"context": {"user_id": "user-1"}})).expect("admitted");
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "t1", "trigger_type": "webhook",
               "function_id": "denied-trig::my-fn", "config": {"key": "value"}}),
    );
    let hooks = raw.invocations(auth);
    assert_eq!(hooks.len(), 1);
    assert_eq!(hooks[0]["data"]["function_id"], "denied-trig::my-fn");
    assert_eq!(hooks[0]["data"]["context"]["user_id"], "user-1");
    raw.answer_denied(auth, &hooks[0]);
    assert!(raw.take_json(guest).is_empty(), "dropped without a word");

    // Approved, a binding to what it may not call is then refused, as a call would be.
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "t2", "trigger_type": "webhook",
               "function_id": "internal::secret", "config": {}}),
    );
    let hooks = raw.invocations(auth);
    assert_eq!(hooks.len(), 1);
    raw.answer(auth, &hooks[0], json!({}));
    let answer = raw.take_json(guest);
    assert!(
        answer
            .iter()
            .any(|m| m["type"] == "triggerregistrationresult"
                && m["id"] == "t2"
                && m["error"]["code"] == codes::FORBIDDEN),
        "{answer:?}"
    );
    assert!(raw
        .take_json(auth)
        .iter()
        .all(|m| m["type"] != "registertrigger"));
}

/// The lines the engine logged for workers, in order.
fn logged(raw: &RawEngine) -> Vec<(LogLevel, String, String, u64)> {
    raw.events
        .iter()
        .filter_map(|e| match e {
            EngineEvent::WorkerLog {
                level,
                message,
                worker_id,
                dropped,
                ..
            } => Some((*level, message.clone(), worker_id.clone(), *dropped)),
            _ => None,
        })
        .collect()
}

#[test]
fn workers_log_through_the_engine_under_any_exposure_within_a_budget() {
    let mut raw = RawEngine::new(EngineConfig {
        worker_log_lines_per_second: 3,
        max_worker_log_bytes: 16,
        listeners: vec![ListenerPolicy {
            middleware_function_id: Some("mw::route".to_owned()),
            // Nothing exposed at all.
            ..ListenerPolicy::untrusted("closed", Rbac::default())
        }],
        ..EngineConfig::default()
    });
    let (middleware, _) = raw.control();
    raw.register(middleware, "mw::route", None);
    raw.take_json(middleware);
    let (guest, guest_id) = raw.control_on(1, "/", &[]).expect("admitted");
    let answer = raw.call(
        guest,
        "engine::log::warn",
        json!({"message": "a\nforged line", "data": {"k": 1}}),
    );
    assert!(answer["error"].is_null(), "{answer}");
    assert!(
        raw.invocations(middleware).is_empty(),
        "the middleware saw a built-in"
    );
    let lines = logged(&raw);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].0, LogLevel::Warn);
    assert_eq!(lines[0].1, "a forged line", "control characters are spaces");
    assert_eq!(lines[0].2, guest_id);
    // Cut to the size; beyond the rate, dropped and counted in the next line logged.
    let long = "x".repeat(100);
    for _ in 0..5 {
        raw.call(guest, "engine::log::info", json!({"message": long}));
    }
    let lines = logged(&raw);
    assert_eq!(lines.len(), 3, "three lines a second");
    assert_eq!(lines[1].1.len(), 16);
    raw.advance(Duration::from_secs(1));
    raw.call(guest, "engine::log::error", json!({"message": "after"}));
    let last = logged(&raw).pop().expect("logged");
    assert_eq!(
        (last.0, last.1.as_str(), last.3),
        (LogLevel::Error, "after", 3)
    );
    // forbidden_functions still denies it, as any infrastructure function.
    let mut raw = engine_with(|_| {});
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.take_json(auth);
    let denied = admit_with(
        &mut raw,
        auth,
        json!({"forbidden_functions": ["engine::log::info"]}),
    )
    .expect("admitted");
    let answer = raw.call(denied, "engine::log::info", json!({"message": "m"}));
    assert_eq!(answer["error"]["code"], codes::FORBIDDEN);
    assert!(logged(&raw).is_empty());
}

#[test]
fn a_guest_cannot_tell_a_taken_trigger_type_id_from_a_free_one() {
    let mut raw = engine_with(|p| p.quotas.trigger_types = 2);
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.send(
        auth,
        json!({"type": "registertriggertype", "id": "secret::cron", "description": "trusted"}),
    );
    raw.take_json(auth);
    let granted = json!({
        "allow_trigger_type_registration": true,
        "allowed_trigger_types": ["guest::own"],
    });
    let guest = admit_with(&mut raw, auth, granted).expect("admitted");
    let register = |raw: &mut RawEngine, id: &str| {
        raw.send(
            guest,
            json!({"type": "registertriggertype", "id": id, "description": "mine"}),
        );
        answers(raw, guest)
    };
    // Taken (by a trusted worker, a type it may not use) and free: the same silence.
    assert_eq!(register(&mut raw, "secret::cron"), Vec::<Value>::new());
    assert_eq!(register(&mut raw, "guest::free"), Vec::<Value>::new());
    // Both count toward its quota, and unregistering either frees it.
    let refused = register(&mut raw, "guest::third");
    assert!(
        refused
            .iter()
            .any(|m| m["error"]["code"] == codes::QUOTA_EXCEEDED),
        "{refused:?}"
    );
    raw.send(
        guest,
        json!({"type": "unregistertriggertype", "id": "secret::cron"}),
    );
    assert_eq!(register(&mut raw, "guest::third"), Vec::<Value>::new());
    // The trusted provider kept its type: a binding on it still goes to it.
    let (binder, _) = raw.control();
    raw.register(binder, "job", None);
    raw.send(
        binder,
        json!({"type": "registertrigger", "id": "b1", "trigger_type": "secret::cron",
               "function_id": "job", "config": {}}),
    );
    let sent = raw.take_json(auth);
    assert!(
        sent.iter().any(|m| m["type"] == "registertrigger"),
        "{sent:?}"
    );
}
