//! Bounds on the engine's own functions and on workers' log lines beyond each session:
//! per client address (IPv6 by /64) and engine-wide, so that many sessions, or one
//! address reconnecting, cannot multiply a session's budget. Driven by hand on a virtual
//! clock.

use std::net::IpAddr;
use std::time::Duration;

use iii_core::engine::{
    Admission, EngineConfig, EngineEvent, ListenerPolicy, RateBound, RateLimit, Rbac,
    DEFAULT_GUEST_BUILTIN_CALLS_PER_IP,
};
use iii_core::upgrade::UpgradeRequest;
use iii_core::{ConnId, PeerClose};
use iii_tests::raw::RawEngine;
use serde_json::{json, Value};

/// Listener 1: untrusted, nothing exposed beyond the infrastructure functions.
const GUESTS: usize = 1;

fn engine(config: EngineConfig, guests: impl FnOnce(&mut ListenerPolicy)) -> RawEngine {
    let mut policy = ListenerPolicy::untrusted("guests", Rbac::default());
    policy.max_connections_per_ip = Some(64);
    guests(&mut policy);
    RawEngine::new(EngineConfig {
        listeners: vec![policy],
        ..config
    })
}

/// A control connection on `listener` from `peer`.
fn session(raw: &mut RawEngine, listener: usize, peer: &str) -> ConnId {
    let peer: IpAddr = peer.parse().expect("an address");
    let request = UpgradeRequest::to("/").on_listener(listener, Some(peer), &[]);
    let Admission::Accepted(accepted) = raw.upgrade(&request) else {
        panic!("{peer} admitted at once");
    };
    let hello = raw.take_json(accepted.conn);
    assert_eq!(hello[0]["type"], "workerregistered");
    accepted.conn
}

/// A cheap built-in every guest may call.
fn announce(raw: &mut RawEngine, conn: ConnId) -> Value {
    raw.call(conn, "engine::workers::register", json!({"name": "w"}))
}

fn answered(answer: &Value) -> bool {
    answer["result"]["success"] == true
}

fn refused_by(answer: &Value, setting: &str) -> bool {
    answer["error"]["code"] == "rate_limited"
        && answer["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(setting))
}

#[test]
fn many_sessions_from_one_address_share_its_built_in_budget_and_a_bystander_is_answered() {
    let mut raw = engine(EngineConfig::default(), |p| {
        p.builtin_calls_per_ip = Some(RateLimit::new(10, 20));
    });
    // 40 sessions from one address, each well inside its own burst (50).
    let flood: Vec<ConnId> = (0..40)
        .map(|_| session(&mut raw, GUESTS, "10.0.0.1"))
        .collect();
    let mut ok = 0;
    for &conn in &flood {
        for _ in 0..3 {
            let answer = announce(&mut raw, conn);
            if answered(&answer) {
                ok += 1;
            } else {
                assert!(
                    refused_by(&answer, "builtin_calls_per_sec_per_ip"),
                    "{answer}"
                );
            }
        }
    }
    assert_eq!(ok, 20, "the address's burst, however many sessions");
    let address = RateBound::Address.index();
    assert_eq!(
        raw.engine.metrics().builtin_calls_rate_limited[address],
        100
    );
    // A refusal loses nothing else: the sessions are still open.
    assert!(flood.iter().all(|&conn| raw.engine.is_open(conn)));
    // A bystander from another address is answered, on its own budget.
    let bystander = session(&mut raw, GUESTS, "10.0.0.2");
    for _ in 0..20 {
        assert!(answered(&announce(&mut raw, bystander)));
    }
    // Reconnecting refills nothing: the address's bucket outlives its sessions.
    for conn in flood {
        raw.close(conn, PeerClose::Lost);
    }
    let again = session(&mut raw, GUESTS, "10.0.0.1");
    assert!(refused_by(
        &announce(&mut raw, again),
        "builtin_calls_per_sec_per_ip"
    ));
    // Ten a second: half a second later, five more for the whole address.
    raw.advance(Duration::from_millis(500));
    let others: Vec<ConnId> = (0..4)
        .map(|_| session(&mut raw, GUESTS, "10.0.0.1"))
        .collect();
    let ok = others
        .iter()
        .chain([&again])
        .flat_map(|&conn| (0..3).map(move |_| conn))
        .filter(|&conn| answered(&announce(&mut raw, conn)))
        .count();
    assert_eq!(ok, 5);
}

#[test]
fn ipv6_clients_share_a_budget_per_64_network() {
    let mut raw = engine(EngineConfig::default(), |p| {
        p.builtin_calls_per_ip = Some(RateLimit::new(1, 4));
    });
    let a = session(&mut raw, GUESTS, "2001:db8::1");
    let b = session(&mut raw, GUESTS, "2001:db8::ffff:2");
    let c = session(&mut raw, GUESTS, "2001:db8:0:1::1");
    let ok = [a, b, a, b, a, b]
        .into_iter()
        .filter(|&conn| answered(&announce(&mut raw, conn)))
        .count();
    assert_eq!(ok, 4, "one /64, one budget");
    assert!(answered(&announce(&mut raw, c)), "another /64");
}

#[test]
fn guests_together_are_bounded_engine_wide_and_trusted_workers_are_not() {
    let config = EngineConfig {
        guest_builtin_calls: RateLimit::new(4, 6),
        ..EngineConfig::default()
    };
    let mut raw = engine(config, |_| {});
    assert_eq!(
        raw.engine.config().listeners[GUESTS - 1].builtin_calls_per_ip,
        Some(DEFAULT_GUEST_BUILTIN_CALLS_PER_IP),
        "untrusted listeners have a per-address bound by default"
    );
    // One call each from ten addresses: six fit the guests' shared burst.
    let guests: Vec<ConnId> = (1..=10)
        .map(|i| session(&mut raw, GUESTS, &format!("10.0.1.{i}")))
        .collect();
    let answers: Vec<Value> = guests.iter().map(|&g| announce(&mut raw, g)).collect();
    assert_eq!(answers.iter().filter(|a| answered(a)).count(), 6);
    assert!(answers
        .iter()
        .filter(|a| !answered(a))
        .all(|a| refused_by(a, "guest_builtin_calls_per_sec")));
    let engine = RateBound::Engine.index();
    assert_eq!(raw.engine.metrics().builtin_calls_rate_limited[engine], 4);
    // Trusted workers do not draw on the guests' bucket.
    let (trusted, _) = raw.control();
    for _ in 0..10 {
        let answer = raw.call(trusted, "engine::workers::list", json!({}));
        assert!(answer["result"]["workers"].is_array(), "{answer}");
    }
    // Four a second for all guests.
    raw.advance(Duration::from_millis(500));
    let ok = guests
        .iter()
        .filter(|&&g| answered(&announce(&mut raw, g)))
        .count();
    assert_eq!(ok, 2);
}

/// The `engine::log::*` lines the engine emitted, and its summaries of dropped ones
/// (`per_worker`, `per_address`, `engine_wide`).
fn log_events(raw: &RawEngine) -> (usize, Vec<[u64; 3]>) {
    let mut lines = 0;
    let mut summaries = Vec::new();
    for event in &raw.events {
        match event {
            EngineEvent::WorkerLog { .. } => lines += 1,
            EngineEvent::WorkerLogSuppressed {
                per_worker,
                per_address,
                engine_wide,
            } => summaries.push([*per_worker, *per_address, *engine_wide]),
            _ => {}
        }
    }
    (lines, summaries)
}

fn log(raw: &mut RawEngine, conn: ConnId, message: &str) {
    let answer = raw.call(conn, "engine::log::info", json!({ "message": message }));
    // A dropped line is no error for the worker: logging never fails it.
    assert!(answer.get("error").is_none(), "{answer}");
}

#[test]
fn log_lines_over_the_engine_wide_bound_are_dropped_and_summarised_with_a_count() {
    let mut raw = RawEngine::new(EngineConfig {
        worker_log_lines_per_second_total: 5,
        ..EngineConfig::default()
    });
    let workers: Vec<ConnId> = (0..10).map(|_| raw.control().0).collect();
    for &worker in &workers {
        for i in 0..3 {
            log(&mut raw, worker, &format!("line {i}"));
        }
    }
    assert_eq!(log_events(&raw), (5, vec![]), "no summary before a second");
    raw.advance(Duration::from_secs(1));
    assert_eq!(log_events(&raw), (5, vec![[0, 0, 25]]));
    assert_eq!(raw.engine.metrics().worker_log_lines_suppressed, [0, 0, 25]);
    // A quiet second summarises nothing more; the bucket refilled.
    raw.advance(Duration::from_secs(1));
    log(&mut raw, workers[0], "again");
    assert_eq!(log_events(&raw), (6, vec![[0, 0, 25]]));
}

#[test]
fn log_lines_of_one_address_are_bounded_together_and_a_bystander_still_logs() {
    let config = EngineConfig {
        worker_log_lines_per_second: 3,
        worker_log_lines_per_second_per_ip: 4,
        ..EngineConfig::default()
    };
    let mut raw = engine(config, |_| {});
    let flood: Vec<ConnId> = (0..6)
        .map(|_| session(&mut raw, GUESTS, "10.0.2.1"))
        .collect();
    for &conn in &flood {
        for i in 0..4 {
            log(&mut raw, conn, &format!("line {i}"));
        }
    }
    let bystander = session(&mut raw, GUESTS, "10.0.2.2");
    log(&mut raw, bystander, "still heard");
    assert_eq!(
        log_events(&raw).0,
        5,
        "four of the address's 24, and the bystander's"
    );
    raw.advance(Duration::from_secs(1));
    // The first session hit its own bound (3) once before the address's was spent.
    assert_eq!(log_events(&raw).1, vec![[1, 19, 0]]);
    assert_eq!(raw.engine.tracked_log_addresses(), 2);
}
