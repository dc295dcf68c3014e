//! Untrusted workers end to end: our engine with RBAC listeners whose authentication
//! functions and middlewares are written with the published Python and Node SDKs, and
//! the published SDKs and ours as untrusted workers admitted by a header, a query
//! parameter or a cookie, or refused with 401. See INTEROP.md, "Untrusted workers
//! (RBAC)".

use iii_core::wire::codes;
use iii_tests::interop::bytes::{generate, sha256_hex};
use iii_tests::interop::rbac::{
    function_ids, rbac_harness, Credential, Guest, RbacHarness, Sdk, NODE_AUTH, NODE_MIDDLEWARE,
    PYTHON_AUTH, PYTHON_MIDDLEWARE,
};
use serde_json::{json, Value};

/// What the functions an untrusted worker calls see as `_caller_context`: the
/// `AuthResult.context` of its authentication function.
/// False (after saying so) when the published SDKs' toolchain is missing: every test
/// here has Python and Node workers.
fn published_sdks_ready() -> bool {
    iii_tests::toolchain::run_or_skip("interop_rbac", iii_tests::toolchain::published_sdks())
}

fn context(auth: Sdk, credential: &Credential) -> Value {
    json!({"tenant": credential.tenant(), "auth_sdk": auth.name(),
           "credential": credential.kind(), "ip": "127.0.0.1"})
}

/// Has `guest` call `function_id` through its own SDK: `{ok}` or `{error}`.
async fn guest_call(h: &RbacHarness, guest: &Guest, function_id: &str, payload: Value) -> Value {
    h.run(
        guest,
        json!({"op": "call", "function_id": function_id, "payload": payload}),
    )
    .await
}

/// The error a guest's SDK gave, or a panic naming what it got instead.
fn error_of<'a>(answer: &'a Value, what: &str, guest: &Guest) -> &'a Value {
    answer
        .get("error")
        .filter(|e| !e.is_null())
        .unwrap_or_else(|| {
            panic!(
                "{} calling {what}: expected an error, got {answer}",
                guest.sdk.label()
            )
        })
}

/// The authentication function of `auth` admitted `credential` as it says, and saw the
/// loopback address (and, for a cookie, the header split into its cookies).
async fn check_decision(h: &RbacHarness, auth: Sdk, credential: &Credential) {
    let key = credential.key();
    let decisions = h.decisions(auth, key).await;
    let decision = decisions
        .iter()
        .find(|d| d["allowed"] == true)
        .unwrap_or_else(|| panic!("{} admitted no {key}: {decisions:?}", auth.label()));
    assert_eq!(decision["credential"], credential.kind(), "{decision}");
    assert_eq!(decision["ip"], "127.0.0.1", "{decision}");
    if let Credential::Cookie(_) = credential {
        let cookies = json!({"theme": "dark", "session": key});
        assert_eq!(decision["cookies"], cookies, "{decision}");
    }
}

/// Everything an admitted untrusted worker does: its registration is prefixed, it calls
/// exposed functions (which see its context), gets `FORBIDDEN` for anything
/// else exactly as for a missing function, lists only what it may call, and streams
/// bytes through a channel to a trusted reader.
async fn basics(h: &RbacHarness, guest: &Guest, context: &Value) {
    let label = guest.sdk.label();
    // Its `run` is published under its tenant's prefix (the driver calls it that way);
    // the bare id does not exist.
    let ids = h.trusted_function_ids().await;
    assert!(ids.contains(&guest.run_id()), "{ids:?}");
    assert!(!ids.contains(&"run".to_owned()), "{ids:?}");

    // Exposed by id: the callee sees the auth context and the caller's worker id.
    let echo = guest_call(h, guest, "api::echo", json!({"value": guest.tenant})).await;
    let seen = &echo["ok"]["seen"];
    assert_eq!(seen["value"], guest.tenant, "{label}: {echo}");
    assert_eq!(&seen["_caller_context"], context, "{label}: {echo}");
    assert!(seen["_caller_worker_id"].is_string(), "{label}: {echo}");
    // Exposed by metadata.
    let open = guest_call(h, guest, "meta::open", json!({})).await;
    assert_eq!(open["ok"]["open"], true, "{label}: {open}");

    // Not exposed, forbidden by the AuthResult, the authentication function itself, an
    // unexposed built-in: each fails exactly like a function that does not exist.
    let missing_id = "nobody::here";
    let missing = guest_call(h, guest, missing_id, json!({})).await;
    let missing = error_of(&missing, missing_id, guest).clone();
    assert_eq!(missing["code"], codes::FORBIDDEN, "{label}: {missing}");
    // The remedy named differs for an id the AuthResult forbids (the session's own
    // policy), never with whether the function exists.
    let same_shape = |error: &Value, id: &str| {
        error["message"].as_str().map(|m| {
            m.replace(id, "ID").replace(
                "remove from rbac.forbidden_functions",
                "add to rbac.expose_functions",
            )
        }) == missing["message"]
            .as_str()
            .map(|m| m.replace(missing_id, "ID"))
    };
    for hidden in [
        "internal::secret",
        "api::admin",
        "rbac.node.auth",
        "engine::workers::list",
    ] {
        let answer = guest_call(h, guest, hidden, json!({})).await;
        let error = error_of(&answer, hidden, guest);
        assert_eq!(error["code"], missing["code"], "{label} {hidden}: {error}");
        assert_eq!(
            error["class"], missing["class"],
            "{label} {hidden}: {error}"
        );
        assert!(
            same_shape(error, hidden),
            "{label} {hidden}: {error} vs {missing}"
        );
    }

    // Listing shows only what it may call (not api::admin, nor its own `run`).
    let listing = guest_call(h, guest, "engine::functions::list", json!({})).await;
    assert_eq!(
        function_ids(&listing["ok"]),
        ["api::echo", "api::read_channel", "meta::open"],
        "{label}: {listing}"
    );

    // A channel it creates: it writes, the trusted backend reads and hashes.
    let size = (1 << 20) + 7;
    let seed = guest.tenant.len() as u64 * 1000 + 17;
    let streamed = h
        .run(
            guest,
            json!({"op": "channel", "size": size, "seed": seed,
                   "reader_function": "api::read_channel"}),
        )
        .await;
    assert_eq!(streamed["written"], size, "{label}: {streamed}");
    let read = &streamed["read"]["ok"];
    assert_eq!(read["bytes"], size, "{label}: {streamed}");
    assert_eq!(read["sha256"], sha256_hex(&generate(seed, size)), "{label}");
    assert_eq!(&read["caller_context"], context, "{label}: {streamed}");
}

/// `sdk` as an untrusted worker presenting `credential` on `listener`, whose
/// authentication function is written with `auth`: admitted, then [`basics`].
fn admitted(sdk: Sdk, auth: Sdk, listener: usize, credential: Credential) {
    if !published_sdks_ready() {
        return;
    }
    let h = rbac_harness();
    h.block_on(async {
        let guest = h.start_guest(sdk, listener, credential.clone()).await;
        check_decision(h, auth, &credential).await;
        basics(h, &guest, &context(auth, &credential)).await;
    });
}

#[test]
fn python_guest_by_header_admitted_by_the_node_auth_function() {
    let key = Credential::Header("good-pyh".into());
    admitted(Sdk::Python, Sdk::Node, NODE_AUTH, key);
}

#[test]
fn python_guest_by_query_admitted_by_the_python_auth_function() {
    let key = Credential::Query("good-pyq".into());
    admitted(Sdk::Python, Sdk::Python, PYTHON_AUTH, key);
}

#[test]
fn python_guest_by_cookie_admitted_by_the_node_auth_function() {
    let key = Credential::Cookie("good-pyc".into());
    admitted(Sdk::Python, Sdk::Node, NODE_AUTH, key);
}

#[test]
fn node_guest_by_header_admitted_by_the_python_auth_function() {
    let key = Credential::Header("good-nodeh".into());
    admitted(Sdk::Node, Sdk::Python, PYTHON_AUTH, key);
}

#[test]
fn node_guest_by_query_admitted_by_the_node_auth_function() {
    let key = Credential::Query("good-nodeq".into());
    admitted(Sdk::Node, Sdk::Node, NODE_AUTH, key);
}

#[test]
fn node_guest_by_cookie_admitted_by_the_python_auth_function() {
    let key = Credential::Cookie("good-nodec".into());
    admitted(Sdk::Node, Sdk::Python, PYTHON_AUTH, key);
}

#[test]
fn our_guest_by_header_admitted_by_the_node_auth_function() {
    let key = Credential::Header("good-oursh".into());
    admitted(Sdk::Ours, Sdk::Node, NODE_AUTH, key);
}

#[test]
fn our_guest_by_query_admitted_by_the_python_auth_function() {
    let key = Credential::Query("good-oursq".into());
    admitted(Sdk::Ours, Sdk::Python, PYTHON_AUTH, key);
}

#[test]
fn our_guest_by_cookie_admitted_by_the_node_auth_function() {
    let key = Credential::Cookie("good-oursc".into());
    admitted(Sdk::Ours, Sdk::Node, NODE_AUTH, key);
}

/// `sdk` presenting a `credential` the authentication function of `auth` refuses: the
/// function was asked (and said no) on every attempt, each attempt got 401 (as the SDK
/// reports it), and the SDK gave up or reported the engine unreachable.
fn refused(sdk: Sdk, auth: Sdk, listener: usize, credential: Credential) {
    if !published_sdks_ready() {
        return;
    }
    let h = rbac_harness();
    h.block_on(async {
        let outcome = h.refused(sdk, listener, credential.clone()).await;
        let (result, log) = (&outcome.result, &outcome.log);
        let decisions = h.decisions(auth, credential.key()).await;
        assert!(!decisions.is_empty(), "{} was not asked", auth.label());
        for decision in &decisions {
            assert_eq!(decision["allowed"], false, "{decision}");
            assert_eq!(decision["credential"], credential.kind(), "{decision}");
        }
        // What each SDK says about a 401 on its worker connection.
        let rejected = match sdk {
            Sdk::Python => {
                assert_eq!(result["state"], "failed", "{result}\n{log}");
                // The SDK queues the call and times it out (2 s).
                assert_eq!(result["call_error"]["code"], "TIMEOUT", "{result}");
                "Connection failed: InvalidStatus: server rejected WebSocket connection: HTTP 401"
            }
            Sdk::Node => {
                assert_eq!(result["state"], "failed", "{result}\n{log}");
                assert_eq!(result["call_error"]["code"], "TIMEOUT", "{result}");
                "[iii] WebSocket error Error: Unexpected server response: 401"
            }
            Sdk::Ours => {
                let error = result["error"].as_str().unwrap_or_default();
                assert!(error.contains("401 Unauthorized"), "{result}");
                assert!(
                    result["call_error"].is_string(),
                    "a call succeeded: {result}"
                );
                return;
            }
        };
        // The peers retry twice: three attempts, each asked the function and got 401.
        let attempts = log.lines().filter(|line| line.contains(rejected)).count();
        assert_eq!(
            attempts,
            3,
            "{} attempts rejected with 401:\n{log}",
            sdk.label()
        );
        assert_eq!(
            decisions.len(),
            3,
            "{} decisions: {decisions:?}",
            auth.label()
        );
    });
}

#[test]
fn python_guest_with_a_bad_header_is_refused_by_the_node_auth_function() {
    let key = Credential::Header("bad-pyh".into());
    refused(Sdk::Python, Sdk::Node, NODE_AUTH, key);
}

#[test]
fn node_guest_with_a_bad_query_is_refused_by_the_python_auth_function() {
    let key = Credential::Query("bad-nodeq".into());
    refused(Sdk::Node, Sdk::Python, PYTHON_AUTH, key);
}

#[test]
fn our_guest_with_a_bad_cookie_is_refused_by_the_node_auth_function() {
    let key = Credential::Cookie("bad-oursc".into());
    refused(Sdk::Ours, Sdk::Node, NODE_AUTH, key);
}

/// `sdk` as a guest on `listener`, whose middleware is written with `middleware` and
/// authentication function with `auth`: the middleware sees `{function_id, payload,
/// context}` of an exposed call and answers for it, refuses a call with `deny: true`,
/// and never sees a call the worker may not make.
fn middleware(sdk: Sdk, middleware: Sdk, auth: Sdk, listener: usize, credential: Credential) {
    if !published_sdks_ready() {
        return;
    }
    let h = rbac_harness();
    h.block_on(async {
        let guest = h.start_guest(sdk, listener, credential.clone()).await;
        let label = format!(
            "{} through the {} middleware",
            sdk.label(),
            middleware.label()
        );
        let payload = json!({"value": guest.tenant});
        let echo = guest_call(h, &guest, "api::echo", payload.clone()).await;
        let ok = &echo["ok"];
        assert_eq!(ok["middleware"], middleware.name(), "{label}: {echo}");
        let seen = json!({"function_id": "api::echo", "payload": payload,
                          "context": context(auth, &credential)});
        assert_eq!(ok["seen"], seen, "{label}: what the middleware saw");
        // The middleware invoked it (as itself, a trusted worker).
        assert_eq!(
            ok["result"]["seen"]["value"], guest.tenant,
            "{label}: {echo}"
        );

        let denied_payload = json!({"value": guest.tenant, "deny": true});
        let denied = guest_call(h, &guest, "api::echo", denied_payload.clone()).await;
        let error = error_of(&denied, "api::echo with deny", &guest);
        let message = error["message"].as_str().unwrap_or_default();
        let expected = format!("refused by the {} middleware: api::echo", middleware.name());
        assert!(message.contains(&expected), "{label}: {error}");

        let hidden = guest_call(h, &guest, "internal::secret", json!({"deny": false})).await;
        let error = error_of(&hidden, "internal::secret", &guest);
        assert_eq!(error["code"], codes::FORBIDDEN, "{label}: {error}");
        let log = h.middleware_log(middleware).await;
        let mine: Vec<&Value> = log
            .iter()
            .filter(|entry| entry["context"]["tenant"] == guest.tenant.as_str())
            .collect();
        let expected_log = [
            seen,
            json!({"function_id": "api::echo", "payload": denied_payload,
                   "context": context(auth, &credential)}),
        ];
        assert_eq!(
            mine,
            expected_log.iter().collect::<Vec<_>>(),
            "{label}: the middleware's log"
        );
    });
}

#[test]
fn the_python_middleware_sees_and_refuses_calls_of_a_node_guest() {
    let key = Credential::Header("good-mwpy".into());
    middleware(Sdk::Node, Sdk::Python, Sdk::Node, PYTHON_MIDDLEWARE, key);
}

#[test]
fn the_node_middleware_sees_and_refuses_calls_of_our_guest() {
    let key = Credential::Query("good-mwnode".into());
    middleware(Sdk::Ours, Sdk::Node, Sdk::Python, NODE_MIDDLEWARE, key);
}
