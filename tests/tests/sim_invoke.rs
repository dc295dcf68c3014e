//! Invocation scenarios through the simulator: workers calling each other via the engine.

use std::time::Duration;

use iii_core::wire::ErrorBody;
use iii_core::worker::{CallOutcome, WorkerEvent};
use iii_tests::Sim;
use serde_json::json;

#[test]
fn a_call_round_trips_through_the_engine() {
    let mut sim = Sim::with_seed(1);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.serve(owner, "math::add", |input| {
        Ok(json!(
            input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0)
        ))
    });
    let call = sim.invoke(caller, "math::add", json!({"a": 2, "b": 40}));
    assert_eq!(sim.result(caller, call), json!(42));
}

#[test]
fn the_handler_sees_the_caller_and_errors_come_back_verbatim() {
    let mut sim = Sim::with_seed(2);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let caller_id = sim.workers[caller].core.worker_id().map(str::to_owned);
    sim.serve(owner, "who", |input| Ok(input["_caller_worker_id"].clone()));
    sim.serve(owner, "fail", |_| {
        Err(ErrorBody {
            code: "invocation_failed".into(),
            message: "nope".into(),
            stacktrace: Some("trace".into()),
        })
    });
    let who = sim.invoke(caller, "who", json!({}));
    assert_eq!(sim.result(caller, who), json!(caller_id));
    let fail = sim.invoke(caller, "fail", json!(null));
    match sim.outcome(caller, fail) {
        CallOutcome::Error(error) => {
            assert_eq!(error.code, "invocation_failed");
            assert_eq!(error.stacktrace.as_deref(), Some("trace"));
        }
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn calling_an_unknown_function_fails_with_function_not_found() {
    let mut sim = Sim::with_seed(3);
    let [caller] = sim.connected_workers(1)[..] else {
        unreachable!()
    };
    let call = sim.invoke(caller, "does::not::exist", json!({}));
    match sim.outcome(caller, call) {
        CallOutcome::Error(error) => assert_eq!(error.code, "function_not_found"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn void_calls_run_without_a_reply() {
    let mut sim = Sim::with_seed(4);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(owner, "log");
    let now = sim.now;
    sim.workers[caller]
        .core
        .invoke_void(
            now,
            "log",
            iii_core::wire::control::to_payload(&json!({"line": "hi"})),
        )
        .expect("void call");
    let invocation = sim.next_invocation(owner, "log");
    assert_eq!(invocation.data["line"], "hi");
    sim.complete(owner, invocation.id, Ok(json!("ignored")));
    sim.run_until_idle(10_000);
    assert!(sim.workers[caller].outcomes.is_empty());
    assert_eq!(sim.engine.stats().pending_invocations, 0);
}

#[test]
fn the_owner_disconnecting_stops_the_call() {
    let mut sim = Sim::with_seed(5);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(owner, "slow");
    let call = sim.invoke(caller, "slow", json!({}));
    sim.next_invocation(owner, "slow");
    sim.kill_worker(owner);
    match sim.outcome(caller, call) {
        CallOutcome::Error(error) => assert_eq!(error.code, "invocation_stopped"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_call_times_out_at_its_deadline_and_the_late_result_is_ignored() {
    let mut sim = Sim::with_seed(6);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(owner, "slow");
    let start = sim.now;
    let call = sim.invoke_with_timeout(caller, "slow", json!({}), Some(Duration::from_millis(250)));
    let invocation = sim.next_invocation(owner, "slow");
    assert!(matches!(sim.outcome(caller, call), CallOutcome::TimedOut));
    let waited = sim.now - start;
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_millis(260),
        "{waited:?}"
    );
    // The late answer reaches the caller and is ignored (the sim would panic on a second outcome).
    sim.complete(owner, invocation.id, Ok(json!(1)));
    sim.run_until_idle(10_000);
}

#[test]
fn the_caller_disconnecting_drops_its_pending_call() {
    let mut sim = Sim::with_seed(7);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(owner, "slow");
    sim.invoke(caller, "slow", json!({}));
    let invocation = sim.next_invocation(owner, "slow");
    sim.kill_worker(caller);
    sim.complete(owner, invocation.id, Ok(json!(1)));
    sim.run_until_idle(10_000);
    assert_eq!(sim.engine.stats().pending_invocations, 0);
}

#[test]
fn a_reconnecting_worker_reattaches_and_replays_its_functions() {
    let mut sim = Sim::with_seed(8);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.serve(owner, "ping", |_| Ok(json!("pong")));
    let first_id = sim.workers[owner].core.worker_id().map(str::to_owned);
    let control = sim.worker_conns(owner)[0];
    sim.cut(owner, control);
    sim.run_until("owner reconnected", 100_000, |sim| {
        let id = sim.workers[owner].core.worker_id().map(str::to_owned);
        id.is_some() && id != first_id
    });
    let call = sim.invoke(caller, "ping", json!({}));
    assert_eq!(sim.result(caller, call), json!("pong"));
    assert!(sim.workers[owner]
        .events
        .iter()
        .all(|e| !matches!(e, WorkerEvent::Rejected { .. })));
}

#[test]
fn a_half_open_old_connection_is_evicted_by_reattach() {
    let mut sim = Sim::with_seed(9);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.serve(owner, "ping", |_| Ok(json!("pong")));
    let control = sim.worker_conns(owner)[0];
    // The worker loses its side, the engine never hears: the old session stays "live".
    sim.stall(owner, control, true);
    sim.workers[owner]
        .core
        .handle_closed(sim.now, control, iii_core::PeerClose::Lost);
    sim.run_until("owner reconnected", 100_000, |sim| {
        sim.worker_conns(owner).len() >= 2 && sim.workers[owner].core.is_connected()
    });
    sim.run_until_idle(100_000);
    let call = sim.invoke(caller, "ping", json!({}));
    assert_eq!(sim.result(caller, call), json!("pong"));
}

#[test]
fn an_absurd_timeout_is_clamped_not_dropped() {
    let mut sim = Sim::with_seed(10);
    let [caller, owner] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(owner, "slow");
    let before = sim.workers[caller].core.poll_timeout();
    sim.invoke_with_timeout(caller, "slow", json!({}), Some(Duration::MAX));
    let deadline = sim.workers[caller].core.poll_timeout();
    assert!(
        deadline.is_some() && deadline != before,
        "the call has a deadline"
    );
    let at = deadline.unwrap_or(sim.now);
    assert!(at - sim.now <= iii_core::worker::MAX_CALL_TIMEOUT);
}
