//! Trigger types provided by one worker and bound from another, through the simulator.

use iii_core::wire::control::{null_payload, to_payload};
use iii_core::worker::{TriggerSpec, TriggerTypeSpec, WorkerEvent};
use iii_tests::Sim;
use serde_json::json;

#[test]
fn a_provider_receives_bindings_and_fires_the_bound_function() {
    let mut sim = Sim::with_seed(31);
    let [provider, consumer] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(consumer, "on_tick");
    let now = sim.now;
    // Bind before the type exists: the engine parks the binding.
    let binding = sim.workers[consumer]
        .core
        .register_trigger(
            now,
            TriggerSpec {
                trigger_type: "tick".into(),
                function_id: "on_tick".into(),
                config: to_payload(&json!({"every_ms": 100})),
                metadata: Some(to_payload(&json!({"source": "test"}))),
            },
        )
        .expect("register trigger");
    sim.run_until_idle(10_000);
    sim.workers[provider]
        .core
        .register_trigger_type(
            now,
            TriggerTypeSpec {
                id: "tick".into(),
                description: "a timer".into(),
                trigger_request_format: None,
                call_request_format: None,
            },
        )
        .expect("register trigger type");
    sim.run_until("binding delivered to the provider", 10_000, |sim| {
        sim.workers[provider]
            .events
            .iter()
            .any(|e| matches!(e, WorkerEvent::TriggerRequested { .. }))
    });
    let (id, config) = sim.workers[provider]
        .events
        .iter()
        .find_map(|e| match e {
            WorkerEvent::TriggerRequested {
                id,
                function_id,
                config,
                ..
            } if function_id == "on_tick" => Some((id.clone(), config.get().to_owned())),
            _ => None,
        })
        .expect("request");
    assert_eq!(id, binding);
    assert_eq!(config, r#"{"every_ms":100}"#);
    let now = sim.now;
    sim.workers[provider]
        .core
        .trigger_registration_result(now, &id, Ok(()))
        .expect("ack");
    // The provider fires: an ordinary call of the bound function.
    let fire = sim.invoke(provider, "on_tick", json!({"tick": 1}));
    let delivered = sim.next_invocation(consumer, "on_tick");
    assert_eq!(delivered.data["tick"], 1);
    sim.complete(consumer, delivered.id, Ok(json!("handled")));
    assert_eq!(sim.result(provider, fire), json!("handled"));
    // The consumer unbinds: the provider hears about it.
    let now = sim.now;
    sim.workers[consumer]
        .core
        .unregister_trigger(now, &binding)
        .expect("unregister");
    sim.run_until("unbinding delivered", 10_000, |sim| {
        sim.workers[provider]
            .events
            .iter()
            .any(|e| matches!(e, WorkerEvent::TriggerRemoved { .. }))
    });
}

#[test]
fn a_failed_registration_reaches_the_consumer() {
    let mut sim = Sim::with_seed(32);
    let [provider, consumer] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let now = sim.now;
    sim.workers[provider]
        .core
        .register_trigger_type(
            now,
            TriggerTypeSpec {
                id: "cron".into(),
                description: "d".into(),
                trigger_request_format: None,
                call_request_format: None,
            },
        )
        .expect("type");
    sim.run_until_idle(10_000);
    let now = sim.now;
    sim.workers[consumer]
        .core
        .register_trigger(
            now,
            TriggerSpec {
                trigger_type: "cron".into(),
                function_id: "nightly".into(),
                config: null_payload(),
                metadata: None,
            },
        )
        .expect("bind");
    sim.run_until("request", 10_000, |sim| {
        sim.workers[provider]
            .events
            .iter()
            .any(|e| matches!(e, WorkerEvent::TriggerRequested { .. }))
    });
    let id = sim.workers[provider]
        .events
        .iter()
        .find_map(|e| match e {
            WorkerEvent::TriggerRequested { id, .. } => Some(id.clone()),
            _ => None,
        })
        .expect("id");
    let now = sim.now;
    let error =
        iii_core::wire::ErrorBody::new("trigger_registration_failed", "bad cron expression");
    sim.workers[provider]
        .core
        .trigger_registration_result(now, &id, Err(error))
        .expect("nack");
    sim.run_until("failure forwarded", 10_000, |sim| {
        sim.workers[consumer].events.iter().any(|e| {
            matches!(e,
            WorkerEvent::TriggerFailed { trigger_type, function_id, .. }
                if trigger_type == "cron" && function_id == "nightly")
        })
    });
}

#[test]
fn engine_notifications_fire_on_worker_connects() {
    let mut sim = Sim::with_seed(33);
    let [watcher] = sim.connected_workers(1)[..] else {
        unreachable!()
    };
    sim.register(watcher, "on_workers");
    let now = sim.now;
    sim.workers[watcher]
        .core
        .register_trigger(
            now,
            TriggerSpec {
                trigger_type: "engine::workers-available".into(),
                function_id: "on_workers".into(),
                config: to_payload(&json!({})),
                metadata: None,
            },
        )
        .expect("bind");
    sim.run_until_idle(10_000);
    sim.add_worker("late");
    let event = sim.next_invocation(watcher, "on_workers");
    assert_eq!(event.data["event"], "worker_connected");
}
