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

/// A bound for waits that must end long before it (the worker's own deadlines are an
/// hour, so only an early report ends them).
const BOUND: Duration = Duration::from_secs(60);

fn patient(url: &str, name: &str, token: Option<&str>) -> Iii {
    let mut options = WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        token: token.map(str::to_owned),
        ..WorkerOptions::default()
    };
    options.core.connect_timeout = Duration::from_secs(3600);
    connect(options).expect("valid options")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_reported_by_the_first_wait_and_call() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let iii = patient(&url, "nobody-listens", None);
    let waited = tokio::time::timeout(BOUND, iii.wait_connected(Duration::from_secs(3600)))
        .await
        .expect("reported before the worker's own deadline");
    match waited {
        Err(Error::Unreachable { url: named, detail }) => {
            assert_eq!(named, url);
            assert!(detail.contains("refused"), "{detail}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
    let called = tokio::time::timeout(BOUND, iii.trigger("any::thing", json!({})))
        .await
        .expect("reported before the worker's own deadline");
    assert!(
        matches!(called, Err(Error::Unreachable { .. })),
        "{called:?}"
    );
    iii.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_missing_token_fails_at_once_as_unauthorized() {
    let mut settings = EngineSettings::default();
    settings.core.auth_token = Some("s3cret".to_owned());
    let engine = bind("127.0.0.1:0", settings).await.expect("engine");
    let url = engine.url();
    for token in [Some("wrong"), None] {
        let iii = patient(&url, "unauthorized", token);
        let waited = tokio::time::timeout(BOUND, iii.wait_connected(Duration::from_secs(3600)))
            .await
            .expect("reported before the worker's own deadline");
        match &waited {
            Err(
                error @ Error::Unauthorized {
                    url: named, status, ..
                },
            ) => {
                assert_eq!((named.as_str(), *status), (url.as_str(), 401));
                assert!(error.to_string().contains("token"), "{error}");
            }
            other => panic!("token {token:?}: expected Unauthorized, got {other:?}"),
        }
        let called = tokio::time::timeout(BOUND, iii.trigger("any::thing", json!({})))
            .await
            .expect("reported before the worker's own deadline");
        assert!(
            matches!(called, Err(Error::Unauthorized { status: 401, .. })),
            "{called:?}"
        );
        iii.shutdown().await;
    }
    let admitted = patient(&url, "admitted", Some("s3cret"));
    admitted
        .wait_connected(WAIT)
        .await
        .expect("the right token");
    admitted.shutdown().await;
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failures_reach_the_caller_with_their_context() {
    let engine = engine().await;
    let url = engine.url();
    let server = worker(&url, "failing");
    server
        .register_function("fail::panics", |input: Value| async move {
            if input["n"] == 1 {
                panic!("n must not be {}", input["n"]);
            }
            Ok::<_, Error>(input)
        })
        .expect("register");
    server
        .register_function("fail::anyhow", |input: Value| async move {
            anyhow::ensure!(input["ok"] == true, "not ok: {input}");
            Ok(input)
        })
        .expect("register");
    server
        .register_function("fail::slow", |_: Value| async move {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok::<_, Error>(Value::Null)
        })
        .expect("register");
    // The handler gets the worker to call through, without a clone per call.
    server
        .register_function_with_worker("fail::relay", |input: Value, iii: Iii| async move {
            iii.trigger("fail::anyhow", input).await
        })
        .expect("register");
    server.wait_registered(WAIT).await.expect("registered");
    let client = worker(&url, "caller");
    client.wait_connected(WAIT).await.expect("connected");

    match client.trigger("fail::panics", json!({"n": 1})).await {
        Err(Error::Remote(body)) => {
            assert_eq!(body.code, "invocation_failed");
            assert_eq!(
                body.message,
                "the handler of `fail::panics` panicked: n must not be 1"
            );
        }
        other => panic!("expected the panic's message, got {other:?}"),
    }
    match client.trigger("fail::relay", json!({"ok": false})).await {
        Err(Error::Remote(body)) => assert_eq!(body.message, r#"not ok: {"ok":false}"#),
        other => panic!("expected the anyhow message, got {other:?}"),
    }
    let relayed = client.trigger("fail::relay", json!({"ok": true})).await;
    assert_eq!(relayed.expect("relayed"), json!({"ok": true}));
    let slow = client
        .trigger_with_timeout("fail::slow", json!({}), Duration::from_millis(200))
        .await
        .expect_err("too slow");
    assert_eq!(slow.to_string(), "`fail::slow` did not answer within 200ms");
    assert!(slow.is_timeout());
    client.shutdown().await;
    server.shutdown().await;
    engine.shutdown().await;
}

/// The published 0.23 documentation's forms, run: typed `RegisterFunction`s, listing,
/// a trigger binding, and channel ends used through tokio's I/O traits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_published_facade_forms_run_against_our_engine() {
    use iii_tokio::sdk::{
        is_channel_ref, register_worker, ChannelReader, IIIClient, IIIError, InitOptions,
        RegisterFunction, StreamChannelRef, TriggerRequest,
    };
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Deserialize)]
    struct Add {
        a: i64,
        b: i64,
    }
    let engine = engine().await;
    let url = engine.url();
    let iii: IIIClient = register_worker(&url, InitOptions::default());
    let add = iii.register_function(
        "math::add",
        RegisterFunction::new_async(|input: Add| async move {
            Ok::<_, IIIError>(json!({"c": input.a + input.b}))
        })
        .description("adds"),
    );
    assert!(add.error().is_none(), "{:?}", add.error());
    let duplicate = iii.register_function(
        "math::add",
        RegisterFunction::new(|n: i64| Ok::<_, IIIError>(n)),
    );
    assert!(duplicate.error().is_some(), "a refusal reaches the caller");
    let address = iii.address().to_string();
    let me = iii.clone();
    iii.register_function("bytes::count", move |input: Value| {
        let iii = me.clone();
        async move {
            assert!(is_channel_ref(&input["reader"]));
            let reader_ref: StreamChannelRef = serde_json::from_value(input["reader"].clone())?;
            let mut reader = ChannelReader::new(iii.address(), &reader_ref);
            let mut bytes = Vec::new();
            reader.read_to_end(&mut bytes).await?;
            Ok(json!(bytes.len()))
        }
    });
    iii.wait_registered(WAIT).await.expect("registered");
    assert_eq!(address, url);

    let sum = iii
        .trigger(TriggerRequest::new("math::add", json!({"a": 1, "b": 2})))
        .await
        .expect("added");
    assert_eq!(sum, json!({"c": 3}));
    let functions = iii.list_functions().await.expect("listed");
    let listed = functions
        .iter()
        .find(|f| f.function_id == "math::add")
        .expect("math::add is listed");
    assert_eq!(listed.description.as_deref(), Some("adds"));

    let channel = iii.create_channel(None).await.expect("channel");
    let counting = iii.trigger(TriggerRequest::new(
        "bytes::count",
        json!({"reader": channel.reader_ref}),
    ));
    let mut writer = channel.writer;
    let writing = async move {
        writer.write_all(&[7u8; 100_000]).await?;
        writer.shutdown().await
    };
    let (count, written) = tokio::join!(counting, writing);
    written.expect("written through AsyncWrite");
    assert_eq!(count.expect("counted"), json!(100_000));
    iii.shutdown_async().await;
    engine.shutdown().await;
}

/// A typed input's `ChannelReader` field opens the end the caller's ref names; a ref
/// of the wrong direction is a deserialization error for the caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_refs_in_a_typed_input_become_live_ends() {
    use iii_tokio::worker::ChannelReader;

    #[derive(Deserialize)]
    struct Upload {
        name: String,
        data: ChannelReader,
    }
    let engine = engine().await;
    let url = engine.url();
    let server = worker(&url, "uploads");
    server
        .register_typed("files::upload", |mut upload: Upload| async move {
            let bytes = upload.data.read_all().await?;
            Ok::<_, Error>(json!({"name": upload.name, "bytes": bytes.len()}))
        })
        .expect("register");
    server.wait_registered(WAIT).await.expect("registered");
    let client = worker(&url, "uploader");
    let channel = client.create_channel(None).await.expect("channel");
    let call = client.trigger(
        "files::upload",
        json!({"name": "a.bin", "data": channel.reader_ref}),
    );
    let writer = channel.writer;
    let writing = async move {
        writer.write(&[1u8; 70_000]).await?;
        writer.close().await
    };
    let (answer, written) = tokio::join!(call, writing);
    written.expect("written");
    assert_eq!(
        answer.expect("read"),
        json!({"name": "a.bin", "bytes": 70_000})
    );

    let refused = client
        .trigger(
            "files::upload",
            json!({"name": "b.bin", "data": channel.writer_ref}),
        )
        .await;
    match refused {
        Err(Error::Remote(body)) => {
            assert_eq!(body.code, "deserialization_error");
            assert!(
                body.message.contains("direction `read`"),
                "{}",
                body.message
            );
        }
        other => panic!("expected a deserialization error, got {other:?}"),
    }
    client.shutdown().await;
    server.shutdown().await;
    engine.shutdown().await;
}
