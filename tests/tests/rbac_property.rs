//! The RBAC policy machine under random message sequences: whatever two untrusted
//! workers send, in any order, no call of theirs reaches a function their listener does
//! not expose, and nothing they receive carries another worker's trigger configs or the
//! descriptions and metadata of functions they may not see.

use std::collections::BTreeMap;

use iii_core::engine::{
    EngineConfig, FunctionFilter, ListenerPolicy, MetadataMatch, Pattern, Rbac,
};
use iii_core::ConnId;
use iii_tests::raw::RawEngine;
use proptest::prelude::*;
use serde_json::{json, Value};

/// Function ids the workers use. The exposure of an id is a function of its name:
/// `api::*` by pattern, `pub::*` by metadata (always registered `{"public": true}`),
/// everything else not exposed.
const IDS: [&str; 10] = [
    "api::a",
    "api::b",
    "pub::b",
    "pub::g",
    "secret::x",
    "guest::own",
    "engine::functions::list",
    "engine::triggers::list",
    "engine::channels::create",
    "engine::workers::list",
];

const TRIGGER_TYPES: [&str; 4] = ["cron", "guest::hook", "engine::functions-available", "x"];

fn exposed(id: &str) -> bool {
    id.starts_with("api::") || id.starts_with("pub::")
}

/// What one untrusted worker (0 or 1) does.
#[derive(Debug, Clone)]
enum Op {
    Call(usize, usize),
    List(usize, bool),
    Register(usize, usize),
    Unregister(usize, usize),
    RegisterTriggerType(usize, usize),
    Bind(usize, usize, usize, u8),
    Unbind(usize, u8),
    /// Answers every invocation the worker holds.
    Answer(usize),
    /// The trusted backend calls a function (perhaps a guest's).
    TrustedCall(usize),
    /// The trusted backend binds a trigger with a secret config to a type.
    TrustedBind(usize, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let guest = 0usize..2;
    let id = 0..IDS.len();
    let ty = 0..TRIGGER_TYPES.len();
    prop_oneof![
        4 => (guest.clone(), id.clone()).prop_map(|(g, i)| Op::Call(g, i)),
        1 => (guest.clone(), any::<bool>()).prop_map(|(g, b)| Op::List(g, b)),
        3 => (guest.clone(), id.clone()).prop_map(|(g, i)| Op::Register(g, i)),
        1 => (guest.clone(), id.clone()).prop_map(|(g, i)| Op::Unregister(g, i)),
        2 => (guest.clone(), ty.clone()).prop_map(|(g, t)| Op::RegisterTriggerType(g, t)),
        3 => (guest.clone(), ty.clone(), id.clone(), 0u8..4).prop_map(|(g, t, i, n)| Op::Bind(g, t, i, n)),
        1 => (guest.clone(), 0u8..4).prop_map(|(g, n)| Op::Unbind(g, n)),
        2 => guest.prop_map(Op::Answer),
        2 => id.prop_map(Op::TrustedCall),
        2 => (ty, 0u8..4).prop_map(|(t, n)| Op::TrustedBind(t, n)),
    ]
}

struct World {
    raw: RawEngine,
    backend: ConnId,
    provider: ConnId,
    guests: [ConnId; 2],
    guest_ids: [String; 2],
    /// The worker ids of the backend and the provider.
    trusted_ids: [String; 2],
    /// Invocations each connection holds, unanswered.
    held: BTreeMap<ConnId, Vec<Value>>,
}

impl World {
    fn new() -> Self {
        let mut raw = RawEngine::new(EngineConfig {
            listeners: vec![ListenerPolicy::untrusted(
                "guests",
                Rbac {
                    expose_functions: vec![
                        FunctionFilter::Id(Pattern::new("api::*")),
                        FunctionFilter::Metadata(vec![(
                            "public".to_owned(),
                            MetadataMatch::Equals(json!(true)),
                        )]),
                    ],
                    ..Rbac::default()
                },
            )],
            ..EngineConfig::default()
        });
        let (backend, backend_id) = raw.control();
        for (id, extra) in [
            ("api::a", json!({})),
            ("pub::b", json!({"metadata": {"public": true}})),
            (
                "secret::x",
                json!({"description": "S3CRET description", "metadata": {"S3CRET": 1}}),
            ),
        ] {
            let mut message = json!({"type": "registerfunction", "id": id});
            if let Value::Object(extra) = extra {
                message.as_object_mut().expect("object").extend(extra);
            }
            raw.send(backend, message);
        }
        let (provider, provider_id) = raw.control();
        raw.send(
            provider,
            json!({"type": "registertriggertype", "id": "cron", "description": "S3CRET type"}),
        );
        let mut admit = || raw.control_on(1, "/", &[]).expect("admitted");
        let (first, second) = (admit(), admit());
        let guests = [first.0, second.0];
        let guest_ids = [first.1, second.1];
        let mut world = Self {
            raw,
            backend,
            provider,
            guests,
            guest_ids,
            trusted_ids: [backend_id, provider_id],
            held: BTreeMap::new(),
        };
        world.check();
        world
    }

    fn apply(&mut self, op: &Op) {
        let raw = &mut self.raw;
        match *op {
            Op::Call(g, i) => {
                raw.call_async(self.guests[g], IDS[i], json!({"from": g}));
            }
            Op::List(g, internal) => {
                raw.call_async(
                    self.guests[g],
                    "engine::functions::list",
                    json!({"include_internal": internal}),
                );
            }
            Op::Register(g, i) => {
                let id = IDS[i];
                let mut message = json!({"type": "registerfunction", "id": id});
                if id.starts_with("pub::") {
                    message["metadata"] = json!({"public": true});
                }
                raw.send(self.guests[g], message);
            }
            Op::Unregister(g, i) => raw.send(
                self.guests[g],
                json!({"type": "unregisterfunction", "id": IDS[i]}),
            ),
            Op::RegisterTriggerType(g, t) => raw.send(
                self.guests[g],
                json!({"type": "registertriggertype", "id": TRIGGER_TYPES[t], "description": "d"}),
            ),
            Op::Bind(g, t, i, n) => raw.send(
                self.guests[g],
                json!({"type": "registertrigger", "id": format!("g{g}-{n}"),
                       "trigger_type": TRIGGER_TYPES[t], "function_id": IDS[i],
                       "config": {"owner": format!("cfg-of-guest{g}")}}),
            ),
            Op::Unbind(g, n) => raw.send(
                self.guests[g],
                json!({"type": "unregistertrigger", "id": format!("g{g}-{n}")}),
            ),
            Op::Answer(g) => {
                let conn = self.guests[g];
                for call in self.held.remove(&conn).unwrap_or_default() {
                    raw.send(
                        conn,
                        json!({"type": "invocationresult", "invocation_id": call["invocation_id"],
                               "function_id": call["function_id"], "result": {"by": g}}),
                    );
                }
            }
            Op::TrustedCall(i) => {
                raw.call_async(self.backend, IDS[i], json!({"trusted": true}));
            }
            Op::TrustedBind(t, n) => raw.send(
                self.backend,
                json!({"type": "registertrigger", "id": format!("b-{n}"),
                       "trigger_type": TRIGGER_TYPES[t], "function_id": "secret::x",
                       "config": {"password": "S3CRET config"}}),
            ),
        }
        self.check();
    }

    /// Reads every inbox and checks the invariants on what arrived.
    fn check(&mut self) {
        let conns = [self.backend, self.provider, self.guests[0], self.guests[1]];
        for conn in conns {
            for message in self.raw.take_json(conn) {
                // No worker id but its own ever reaches a guest (calls included).
                if let Some(g) = self.guests.iter().position(|c| *c == conn) {
                    let text = message.to_string();
                    let ids = [&self.trusted_ids[..], &self.guest_ids[1 - g..2 - g]].concat();
                    assert!(
                        ids.iter().all(|id| !text.contains(id.as_str())),
                        "guest {g} learned another worker's id: {text}"
                    );
                }
                if message["type"] == "invokefunction" {
                    let function_id = message["function_id"].as_str().unwrap_or_default();
                    let caller = message["data"]["_caller_worker_id"].as_str();
                    let from_guest = caller.is_some_and(|c| self.guest_ids.iter().any(|g| g == c));
                    assert!(
                        !from_guest || exposed(function_id),
                        "a guest's call reached unexposed {function_id}: {message}"
                    );
                    if message.get("invocation_id").is_some_and(|id| !id.is_null()) {
                        self.held.entry(conn).or_default().push(message);
                    }
                    continue;
                }
                let Some(g) = self.guests.iter().position(|c| *c == conn) else {
                    continue;
                };
                let text = message.to_string();
                assert!(!text.contains("S3CRET"), "guest {g} saw a secret: {text}");
                let other = format!("cfg-of-guest{}", 1 - g);
                assert!(
                    !text.contains(&other),
                    "guest {g} saw the other guest's config: {text}"
                );
                assert!(
                    self.raw.inboxes[&conn].closed.is_none(),
                    "guest {g} was closed: {text}"
                );
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn untrusted_sequences_reach_nothing_unexposed_and_see_no_configs(ops in prop::collection::vec(op(), 1..60)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
        }
    }
}

/// The invariants are not vacuous: the same world with the checks pointed at a
/// trusted caller does see unexposed functions and secrets.
#[test]
fn the_oracle_notices_what_trusted_workers_may_see() {
    let mut world = World::new();
    let backend = world.backend;
    let listing = world
        .raw
        .call(backend, "engine::functions::list", json!({}));
    assert!(listing.to_string().contains("S3CRET"));
    world.raw.send(
        backend,
        json!({"type": "registertrigger", "id": "t", "trigger_type": "cron",
               "function_id": "secret::x", "config": {"password": "S3CRET config"}}),
    );
    let provider_saw = world.raw.take_json(world.provider);
    assert!(serde_json::to_string(&provider_saw)
        .expect("json")
        .contains("S3CRET config"));
}
