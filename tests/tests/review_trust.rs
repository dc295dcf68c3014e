//! Reviewer's probes of the RBAC trust change (issue 19): a guest must not tell a taken
//! function id from a free one, nor learn what exists or another worker's id, by any
//! path.

use std::time::Duration;

use iii_core::engine::{EngineConfig, ListenerPolicy, Rbac, WorkerQuotas};
use iii_tests::raw::RawEngine;
use iii_tests::rbac_fixtures::{exposing, open_worker};
use serde_json::{json, Value};

fn engine() -> RawEngine {
    RawEngine::new(EngineConfig {
        listeners: vec![ListenerPolicy {
            quotas: WorkerQuotas {
                functions: 4,
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
    })
}

/// The listener exposes functions by metadata (`{"public": true}`), which the guest
/// controls for what it registers: registering a taken id with that metadata must be
/// answered exactly as registering a free one.
#[test]
fn metadata_the_guest_chooses_does_not_turn_a_taken_id_into_an_oracle() {
    let mut raw = engine();
    let (backend, _) = raw.control();
    raw.register(backend, "internal::secret", None);
    raw.take_json(backend);
    let guest = open_worker(&mut raw);
    let public = || Some(json!({"public": true}));
    raw.register(guest, "internal::free", public());
    let free = raw.take_json(guest);
    raw.register(guest, "internal::secret", public());
    let taken = raw.take_json(guest);
    assert_eq!(free, taken, "free: {free:?}, taken: {taken:?}");
}

/// A guest may bind one engine trigger (`engine_bindings: 1` for untrusted quotas):
/// `engine::functions-available` must not hand it the ids it may not see.
#[test]
fn the_functions_available_trigger_shows_a_guest_only_what_it_may_see() {
    let mut raw = engine();
    let (backend, backend_id) = raw.control();
    raw.register(backend, "internal::secret", None);
    raw.take_json(backend);
    let guest = open_worker(&mut raw);
    raw.register(guest, "api::mine", None);
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "t", "trigger_type": "engine::functions-available",
               "function_id": "api::mine", "config": {}}),
    );
    raw.take_json(guest);
    raw.register(backend, "internal::another", None);
    raw.advance(Duration::from_secs(2));
    let seen: Vec<Value> = raw.take_json(guest);
    let text = serde_json::to_string(&seen).expect("json");
    assert!(
        !text.contains("internal::secret") && !text.contains("internal::another"),
        "{text}"
    );
    assert!(!text.contains(&backend_id), "{text}");
}

/// `engine::workers-available` must not hand a guest other workers' ids.
#[test]
fn the_workers_available_trigger_never_shows_a_guest_another_workers_id() {
    let mut raw = engine();
    let guest = open_worker(&mut raw);
    raw.register(guest, "api::mine", None);
    raw.send(
        guest,
        json!({"type": "registertrigger", "id": "t", "trigger_type": "engine::workers-available",
               "function_id": "api::mine", "config": {}}),
    );
    raw.take_json(guest);
    let (_, other_id) = raw.control();
    raw.advance(Duration::from_secs(2));
    let text = serde_json::to_string(&raw.take_json(guest)).expect("json");
    assert!(!text.contains(&other_id), "{text}");
}
