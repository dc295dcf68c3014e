//! Fixtures of the RBAC wire tests: an engine with two untrusted listeners (one open,
//! one with an authentication function), a trusted backend, and the helpers that admit
//! untrusted workers and read listings.

use iii_core::engine::{
    Admission, EngineConfig, FunctionFilter, ListenerPolicy, MetadataMatch, Pattern, Rbac,
};
use iii_core::upgrade::{Rejection, UpgradeRequest};
use iii_core::ConnId;
use serde_json::{json, Value};

use crate::raw::RawEngine;

/// Listener 1: no authentication function, `api::*` and `{public: true}` exposed.
pub const OPEN: usize = 1;

/// Listener 2: `auth::check` admits; hooks and middleware as each test configures.
pub const AUTHED: usize = 2;

/// The exposure list of both listeners: `api::*` and functions whose metadata has
/// `public: true`.
pub fn exposing() -> Vec<FunctionFilter> {
    vec![
        FunctionFilter::Id(Pattern::new("api::*")),
        FunctionFilter::Metadata(vec![(
            "public".to_owned(),
            MetadataMatch::Equals(json!(true)),
        )]),
    ]
}

/// An engine with the two listeners, the authenticated one adjusted by `authed`.
pub fn engine_with(authed: impl FnOnce(&mut ListenerPolicy)) -> RawEngine {
    let open = ListenerPolicy::untrusted(
        "open",
        Rbac {
            expose_functions: exposing(),
            ..Rbac::default()
        },
    );
    let mut second = ListenerPolicy::untrusted(
        "authed",
        Rbac {
            auth_function_id: Some("auth::check".to_owned()),
            expose_functions: exposing(),
            ..Rbac::default()
        },
    );
    authed(&mut second);
    RawEngine::new(EngineConfig {
        listeners: vec![open, second],
        ..EngineConfig::default()
    })
}

/// An engine with the two listeners as they are.
pub fn engine() -> RawEngine {
    engine_with(|_| {})
}

/// A trusted worker with `api::echo`, `internal::secret` and `meta::open` (public).
pub fn trusted_backend(raw: &mut RawEngine) -> ConnId {
    let (conn, _) = raw.control();
    raw.register(conn, "api::echo", None);
    raw.register(conn, "internal::secret", None);
    raw.register(
        conn,
        "meta::open",
        Some(json!({"public": true, "tier": "free"})),
    );
    raw.take_json(conn);
    conn
}

/// An untrusted worker admitted on the open listener.
pub fn open_worker(raw: &mut RawEngine) -> ConnId {
    raw.control_on(OPEN, "/", &[]).expect("admitted").0
}

/// The sorted function ids of an `engine::functions::list` answer.
pub fn function_ids(listing: &Value) -> Vec<String> {
    let mut ids: Vec<String> = listing["result"]["functions"]
        .as_array()
        .expect("a function list")
        .iter()
        .map(|f| f["function_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids
}

/// Upgrades on the authenticated listener and has `auth` (the trusted worker serving
/// `auth::check`) answer the authentication call with `result`: the admitted
/// connection, or the refusal.
pub fn admit_with(raw: &mut RawEngine, auth: ConnId, result: Value) -> Result<ConnId, Rejection> {
    let request = UpgradeRequest::to("/").on_listener(AUTHED, None, &[]);
    let ticket = match raw.upgrade(&request) {
        Admission::Deferred(ticket) => ticket,
        Admission::Refused(rejection) => return Err(rejection),
        Admission::Accepted(_) => panic!("admitted without the authentication function"),
    };
    let call = raw.invocations(auth).remove(0);
    raw.answer(auth, &call, result);
    let conn = raw.admitted.remove(&ticket).expect("decided")?.conn;
    raw.take_json(conn);
    Ok(conn)
}
