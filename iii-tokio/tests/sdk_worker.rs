//! The worker SDK against our engine in-process (plain listener): what a handler sees
//! of its input and caller, how connection failures and handler failures reach the
//! application.

use std::time::Duration;

use iii_tokio::engine::{bind, EngineServer, EngineSettings};
use iii_tokio::worker::{connect, Error, Iii, Invocation, WorkerOptions};
use serde::Deserialize;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn engine() -> EngineServer {
    bind("127.0.0.1:0", EngineSettings::default())
        .await
        .expect("engine")
}

fn worker(url: &str, name: &str) -> Iii {
    connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    })
    .expect("worker")
}

/// An input that refuses any key it does not know.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Strict {
    a: i64,
    b: i64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_inputs_accept_calls_and_the_caller_is_on_the_invocation() {
    let engine = engine().await;
    let url = engine.url();
    let server = worker(&url, "server");
    server
        .register_typed("math::add", |input: Strict| async move {
            let caller = Invocation::current().expect("inside a handler");
            Ok::<_, Error>(json!({
                "sum": input.a + input.b,
                "caller": caller.caller_worker_id(),
            }))
        })
        .expect("register typed");
    server
        .register_function(
            "raw::echo",
            |input: Value| async move { Ok::<_, Error>(input) },
        )
        .expect("register echo");
    server.wait_registered(WAIT).await.expect("registered");

    let client = worker(&url, "client");
    client.wait_connected(WAIT).await.expect("connected");
    let answer = client
        .trigger("math::add", json!({"a": 1, "b": 2}))
        .await
        .expect("a strict input accepts the call");
    assert_eq!(answer["sum"], 3);
    let caller = answer["caller"].as_str().expect("the caller's worker id");
    assert!(!caller.is_empty());

    // Untyped handlers see exactly what the caller sent; nested keys are the caller's own.
    let sent = json!({"x": 1, "inner": {"_caller_worker_id": "mine"}});
    let echoed = client
        .trigger("raw::echo", sent.clone())
        .await
        .expect("echo");
    assert_eq!(echoed, sent);
    client.shutdown().await;
    server.shutdown().await;
    engine.shutdown().await;
}
