//! The control plane: listings, registration details and handles, void calls and
//! per-call timeouts, typed rejections, the functions-available subscription, and the
//! per-call metadata and trace context a handler sees.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iii_driver::worker::{CallOptions, Error, FunctionDef, Invocation, TraceContext};
use iii_driver::Runtime;
use serde_json::{json, Value};

use super::{pause, with_timeout, worker, WAIT};

/// Registration with description, metadata and formats shows in the listings; the
/// handles unregister; workers and trigger types are listed.
pub async fn listings_and_handles<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "control-owner").await;
    let observer = worker(rt, url, "control-observer").await;
    let def = FunctionDef::new("control.described")
        .description("adds numbers")
        .metadata(json!({"team": "core"}))
        .request_format(json!({"type": "object"}))
        .response_format(json!({"type": "number"}));
    let function = owner
        .register_function(def, |_: Value| async move { Ok::<_, Error>(json!(1)) })
        .expect("register");
    owner.wait_registered(WAIT).await.expect("in effect");
    let listed = observer.list_functions().await.expect("list functions");
    let found = listed
        .iter()
        .find(|f| f.function_id == "control.described")
        .expect("listed");
    assert_eq!(found.description.as_deref(), Some("adds numbers"));
    assert_eq!(found.metadata, Some(json!({"team": "core"})));
    assert_eq!(found.worker_name.as_deref(), Some("control-owner"));

    let workers = observer.list_workers().await.expect("list workers");
    for name in ["control-owner", "control-observer"] {
        assert!(
            workers.iter().any(|w| w.name.as_deref() == Some(name)),
            "{name} in {workers:?}"
        );
    }
    let types = observer
        .list_trigger_types(true)
        .await
        .expect("list trigger types");
    assert!(types.iter().any(|t| t.id == "engine::functions-available"));
    assert!(observer
        .list_trigger_types(false)
        .await
        .expect("list")
        .iter()
        .all(|t| !t.id.starts_with("engine::")));
    // Engines without `engine::registered-triggers::list` say so with a typed error.
    match observer.list_triggers(true).await {
        Ok(_) => {}
        Err(Error::Remote(body)) => assert_eq!(body.code, "function_not_found"),
        Err(other) => panic!("{other:?}"),
    }

    function.unregister().expect("unregister");
    owner.wait_registered(WAIT).await.expect("in effect");
    let listed = observer.list_functions().await.expect("list functions");
    assert!(listed.iter().all(|f| f.function_id != "control.described"));
    assert!(
        function.unregister().is_err(),
        "unregistering twice is refused"
    );
    owner.shutdown().await;
    observer.shutdown().await;
}

/// Void calls run the function without a result; a per-call timeout bounds one call;
/// another worker's function id is refused with a typed rejection naming code and
/// namespace.
pub async fn void_timeout_and_rejection<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "control-void-owner").await;
    let caller = worker(rt, url, "control-void-caller").await;
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = seen.clone();
    owner
        .register_function("control.log", move |input: Value| {
            if let Ok(mut seen) = sink.lock() {
                seen.push(input);
            }
            async move { Ok::<_, Error>(Value::Null) }
        })
        .expect("register");
    owner
        .register_function("control.never", |_: Value| async move {
            futures_util::future::pending::<()>().await;
            Ok::<_, Error>(Value::Null)
        })
        .expect("register");
    owner.wait_registered(WAIT).await.expect("in effect");
    caller
        .trigger_void_with(
            "control.log",
            json!({"line": 1}),
            CallOptions {
                metadata: Some(json!({"m": 1})),
                ..CallOptions::default()
            },
        )
        .expect("void call");
    let start = std::time::Instant::now();
    let timed_out = caller
        .trigger_with(
            "control.never",
            json!({}),
            CallOptions {
                timeout: Some(Duration::from_millis(200)),
                ..CallOptions::default()
            },
        )
        .await;
    assert!(
        matches!(&timed_out, Err(Error::CallTimeout { function_id, .. }) if function_id == "control.never"),
        "{timed_out:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    for _ in 0..300 {
        if !seen.lock().map(|s| s.is_empty()).unwrap_or(true) {
            break;
        }
        pause(Duration::from_millis(10)).await;
    }
    assert_eq!(seen.lock().expect("lock")[0]["line"], 1);

    // The caller tries to serve a function the owner already serves.
    caller
        .register_function("control.log", |_: Value| async move {
            Ok::<_, Error>(Value::Null)
        })
        .expect("accepted locally");
    match caller.wait_registered(WAIT).await {
        Err(Error::Rejected(rejection)) => {
            assert_eq!(rejection.code, "FUNCTION_NAMESPACE_CONFLICT");
            assert_eq!(rejection.namespace, "default");
            assert_eq!(rejection.function_id.as_deref(), Some("control.log"));
        }
        other => panic!("expected a typed rejection, got {other:?}"),
    }
    owner.shutdown().await;
    caller.shutdown().await;
}

/// `on_functions_available` calls back with the new list when a function appears, and
/// stops after `unsubscribe`.
pub async fn functions_available_subscription<R: Runtime>(rt: R, url: &str) {
    let watcher = worker(rt.clone(), url, "control-watcher").await;
    let other = worker(rt, url, "control-other").await;
    let (tx, mut lists) = futures_channel::mpsc::unbounded();
    let subscription = watcher
        .on_functions_available(move |functions| {
            let _ = tx.unbounded_send(functions);
        })
        .await
        .expect("subscribe");
    watcher.wait_registered(WAIT).await.expect("in effect");
    other
        .register_function("control.appears", |_: Value| async move {
            Ok::<_, Error>(Value::Null)
        })
        .expect("register");
    let list = with_timeout(async {
        loop {
            let list = futures_util::StreamExt::next(&mut lists)
                .await
                .expect("callbacks go on");
            if list.iter().any(|f| f.function_id == "control.appears") {
                return list;
            }
        }
    })
    .await;
    assert!(!list.is_empty());
    subscription.unsubscribe().expect("unsubscribe");
    watcher.wait_registered(WAIT).await.expect("in effect");
    let all = watcher
        .trigger("engine::functions::list", json!({"include_internal": true}))
        .await
        .expect("list");
    let hidden = all["functions"]
        .as_array()
        .map(|l| {
            l.iter().any(|f| {
                f["function_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("iii-rs.functions-available"))
            })
        })
        .unwrap_or(true);
    assert!(!hidden, "the private function is gone: {all}");
    watcher.shutdown().await;
    other.shutdown().await;
}

/// A handler reads the call's metadata and trace context; calls it makes carry the
/// trace context on; the result carries it back.
pub async fn metadata_and_trace_context<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "control-trace-owner").await;
    let caller = worker(rt, url, "control-trace-caller").await;
    owner
        .register_function("control.inner", |_: Value| async move {
            let invocation = Invocation::current().expect("inside a handler");
            Ok::<_, Error>(json!({"traceparent": invocation.trace.traceparent}))
        })
        .expect("register");
    let me = owner.clone();
    owner
        .register_function_with_context("control.outer", move |_: Value, invocation: Invocation| {
            let iii = me.clone();
            async move {
                let current = Invocation::current().expect("current inside the handler");
                assert_eq!(current, invocation);
                // A nested call carries the trace context on by itself.
                let inner = iii.trigger("control.inner", json!({})).await?;
                Ok::<_, Error>(json!({
                    "metadata": invocation.metadata,
                    "baggage": invocation.trace.baggage,
                    "function_id": invocation.function_id,
                    "inner": inner,
                }))
            }
        })
        .expect("register");
    owner.wait_registered(WAIT).await.expect("in effect");
    let trace = TraceContext {
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
        baggage: Some("tenant=acme".into()),
    };
    let reply = caller
        .trigger_with(
            "control.outer",
            json!({}),
            CallOptions {
                metadata: Some(json!({"request": 7})),
                trace: trace.clone(),
                ..CallOptions::default()
            },
        )
        .await
        .expect("call");
    assert_eq!(reply.value["metadata"], json!({"request": 7}));
    assert_eq!(reply.value["baggage"], "tenant=acme");
    assert_eq!(reply.value["function_id"], "control.outer");
    assert_eq!(
        reply.value["inner"]["traceparent"].as_str(),
        trace.traceparent.as_deref()
    );
    // The engine may rewrite the trace context; ours passes the callee's through.
    assert!(reply.trace.traceparent.is_some(), "{reply:?}");
    assert!(
        Invocation::current().is_none(),
        "nothing current outside handlers"
    );
    owner.shutdown().await;
    caller.shutdown().await;
}
