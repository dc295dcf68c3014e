//! The worker on real (loopback) networks: no runtime, no engine, a half-open
//! connection, custom headers, an engine that applies registrations late, and the
//! connection state through an engine restart. tokio only: the scripted engine is
//! `iii_tests::fake_engine`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use iii_tests::adapter::{Flavor, TokioFlavor};
use iii_tests::fake_engine::FakeEngine;
use iii_tokio::worker::{connect, ConnectionState, Error, WorkerOptions};
use serde_json::json;

/// Runs a test body on tokio (the suite's 2-thread runtime).
fn run<F: std::future::Future>(body: F) -> F::Output {
    TokioFlavor::block_on(body)
}

fn options(url: &str, name: &str) -> WorkerOptions {
    WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    }
}

#[test]
fn connect_outside_a_runtime_is_an_error() {
    let result = connect(options("ws://127.0.0.1:1", "no-runtime"));
    assert!(matches!(result, Err(Error::NoRuntime(_))), "{result:?}");
    let client = iii_tokio::sdk::register_worker("ws://127.0.0.1:1", Default::default());
    assert!(client.fatal_error().is_some());
}

#[test]
fn an_unreachable_engine_is_reported_in_time_naming_the_url() {
    run(async {
        // A port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("ws://127.0.0.1:{port}");
        let mut options = options(&url, "unreachable");
        options.core.connect_timeout = Duration::from_millis(500);
        let iii = connect(options).expect("valid options");
        let start = Instant::now();
        let error = iii
            .trigger("anything", json!({}))
            .await
            .expect_err("no engine");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "reported after {:?}",
            start.elapsed()
        );
        assert!(
            matches!(&error, Error::Unreachable { url: u, .. } if *u == url),
            "{error:?}"
        );
        assert!(error.to_string().contains(&url), "{error}");
        let waited = iii.wait_connected(Duration::from_secs(60)).await;
        assert!(
            matches!(waited, Err(Error::Unreachable { .. })),
            "{waited:?}"
        );
        iii.shutdown().await;
    });
}

#[test]
fn a_half_open_connection_is_detected_and_replaced() {
    run(async {
        let mut engine = FakeEngine::start().await;
        let mut options = options(&engine.url, "keepalive");
        options.core.keepalive_interval = Duration::from_millis(100);
        options.core.idle_timeout = Duration::from_millis(400);
        let iii = connect(options).expect("valid options");
        let mut states = iii.connection_states();
        let mut first = engine.next_conn().await;
        first.register("w-1").await;
        // The worker pings the silent connection, then gives up on it.
        assert!(first.next_of("ping").await.is_some(), "a keepalive ping");
        let mut second = engine.next_conn().await;
        let reattach = second.next_json().await.expect("a first message");
        assert_eq!(reattach["type"], "reattach");
        assert_eq!(reattach["previous_worker_id"], "w-1");
        second.register("w-2").await;
        iii.wait_connected(Duration::from_secs(30))
            .await
            .expect("connected again");
        let mut seen = Vec::new();
        while seen.last() != Some(&ConnectionState::Connected) || seen.len() < 4 {
            let state = tokio::time::timeout(Duration::from_secs(30), states.next())
                .await
                .expect("a state")
                .expect("the stream goes on");
            seen.push(state);
        }
        assert_eq!(
            seen,
            [
                ConnectionState::Connecting,
                ConnectionState::Connected,
                ConnectionState::Reconnecting,
                ConnectionState::Connected
            ]
        );
        drop(first);
        iii.shutdown().await;
        assert_eq!(iii.connection_state(), ConnectionState::Stopped);
    });
}

#[test]
fn custom_headers_and_the_token_reach_the_engine() {
    run(async {
        let mut engine = FakeEngine::start().await;
        let mut options = options(&engine.url, "headers");
        options.headers = vec![("x-tenant".into(), "acme".into())];
        options.token = Some("s3cret".into());
        let iii = connect(options).expect("valid options");
        let conn = engine.next_conn().await;
        assert_eq!(conn.headers.get("x-tenant").expect("custom header"), "acme");
        assert_eq!(
            conn.headers.get("authorization").expect("token"),
            "Bearer s3cret"
        );
        let bad = WorkerOptions {
            headers: vec![("bad header".into(), "x".into())],
            ..WorkerOptions::default()
        };
        assert!(matches!(connect(bad), Err(Error::InvalidOption(_))));
        iii.shutdown().await;
    });
}

/// An engine that, like the reference engine, applies a connection's registrations only
/// once its announce has run: `wait_registered` returns after the announce's answer and
/// the pong to a ping sent after the registrations.
#[test]
fn wait_registered_waits_for_an_engine_that_applies_registrations_late() {
    run(async {
        let mut engine = FakeEngine::start().await;
        let iii = connect(options(&engine.url, "late-engine")).expect("valid options");
        iii.register_function("late.fn", |_: serde_json::Value| async move {
            Ok::<_, Error>(json!(1))
        })
        .expect("register");
        let waiting = {
            let iii = iii.clone();
            tokio::spawn(async move {
                iii.wait_registered(Duration::from_secs(30)).await?;
                Ok::<_, Error>(Instant::now())
            })
        };
        let mut conn = engine.next_conn().await;
        conn.register("w-late").await;
        let announce = conn.next_json().await.expect("the announce");
        assert_eq!(announce["function_id"], "engine::workers::register");
        let id = announce["invocation_id"].clone();
        assert!(id.is_string(), "the announce is a call: {announce}");
        let registration = conn
            .next_of("registerfunction")
            .await
            .expect("registration");
        assert_eq!(registration["id"], "late.fn");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "nothing is in effect yet");
        let answered = Instant::now();
        conn.send(json!({"type": "invocationresult", "invocation_id": id,
            "function_id": "engine::workers::register", "result": {"success": true}}))
            .await;
        assert!(conn.next_of("ping").await.is_some(), "the barrier's ping");
        conn.send(json!({"type": "pong"})).await;
        let done = waiting.await.expect("task").expect("registered");
        assert!(done >= answered);
        iii.shutdown().await;
    });
}

#[test]
fn the_connection_state_follows_an_engine_restart() {
    run(async {
        let engine = iii_tokio::bind("127.0.0.1:0", Default::default())
            .await
            .expect("engine");
        let url = engine.url();
        let mut options = options(&url, "restart");
        options.core.reconnect_initial = Duration::from_millis(50);
        options.core.reconnect_max = Duration::from_millis(200);
        let iii = connect(options).expect("valid options");
        let mut states = iii.connection_states();
        iii.wait_connected(Duration::from_secs(30))
            .await
            .expect("up");
        assert_eq!(next(&mut states).await, Some(ConnectionState::Connecting));
        assert_eq!(next(&mut states).await, Some(ConnectionState::Connected));
        engine.shutdown().await;
        assert_eq!(next(&mut states).await, Some(ConnectionState::Reconnecting));
        let address = url.trim_start_matches("ws://").to_owned();
        let engine = iii_tokio::bind(&address, Default::default())
            .await
            .expect("the same port again");
        assert_eq!(next(&mut states).await, Some(ConnectionState::Connected));
        iii.shutdown().await;
        assert_eq!(next(&mut states).await, Some(ConnectionState::Stopped));
        assert_eq!(next(&mut states).await, None, "the stream ends");
        engine.shutdown().await;
    });
}

async fn next(states: &mut iii_tokio::worker::ConnectionStates) -> Option<ConnectionState> {
    tokio::time::timeout(Duration::from_secs(30), states.next())
        .await
        .expect("a state change")
}
