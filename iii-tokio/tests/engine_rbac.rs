//! `iii-engine` with an untrusted (RBAC) listener beside the main one, as an operator
//! starts it: with the `--rbac-*` flags, and with a configuration file in the reference
//! engine's shape (a second `iii-worker-manager` entry with `rbac:`). A trusted worker
//! (our SDK, on the main listener) runs the authentication function and the backend;
//! untrusted workers (our SDK with headers or a query parameter, and raw upgrades) are
//! admitted or refused by it and reach only what the listener exposes.

mod common;

use std::process::Stdio;
use std::time::Duration;

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::Error as WsError;
use common::{run, Engine};
use iii_tokio::worker::{connect, Error, Iii, Invocation, WorkerOptions};
use serde_json::{json, Value};

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

fn worker(url: &str, name: &str, headers: &[(&str, &str)]) -> Iii {
    connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        headers: headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..WorkerOptions::default()
    })
    .expect("worker")
}

/// The trusted backend: `auth::check` admits `x-tenant-key: k-acme` or `?key=k-acme`
/// with a context naming the tenant; `api::echo` answers its input and the caller the
/// engine named (`_caller_context`, `_caller_worker_id`); `internal::secret` must stay out of reach.
async fn backend(url: &str) -> Iii {
    let iii = worker(url, "backend", &[]);
    iii.register_function("auth::check", |input: Value| async move {
        let header = input["headers"]["x-tenant-key"].as_str();
        let query = input["query_params"]["key"][0].as_str();
        if header == Some("k-acme") || query == Some("k-acme") {
            Ok(json!({
                "allowed_functions": [],
                "function_registration_prefix": "acme",
                "context": {"tenant": "acme"},
            }))
        } else {
            Err("unknown key".to_owned())
        }
    })
    .expect("register auth");
    iii.register_function("api::echo", |input: Value| async move {
        let caller = Invocation::current().expect("inside a handler");
        Ok::<_, Error>(json!({
            "input": input,
            "caller_context": caller.caller_context(),
            "caller_worker_id": caller.caller_worker_id(),
        }))
    })
    .expect("register echo");
    iii.register_function("internal::secret", |_input: Value| async move {
        Ok::<_, Error>(json!("S3CRET"))
    })
    .expect("register secret");
    iii.wait_connected(Duration::from_secs(30))
        .await
        .expect("backend connected");
    // Registrations travel after the connection: wait until they are callable.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while iii.trigger("api::echo", json!({})).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "backend never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    iii
}

/// The status of a raw upgrade to `url` with `headers` (101 when accepted).
async fn upgrade_status(url: &str, headers: &[(&str, &str)]) -> u16 {
    let mut request = url.into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(
            async_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes())
                .expect("name"),
            value.parse().expect("value"),
        );
    }
    match tokio::time::timeout(Duration::from_secs(20), connect_async(request))
        .await
        .expect("answered in time")
    {
        Ok(_) => 101,
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP answer, got {other:?}"),
    }
}

/// What an untrusted worker admitted on `rbac_url` may and may not do.
async fn exercise(rbac_url: &str, main_url: &str) {
    let backend = backend(main_url).await;
    // Admitted by header (our SDK's `headers`), and by query parameter (what a browser,
    // which cannot set headers, does).
    for (url, headers) in [
        (rbac_url.to_owned(), vec![("x-tenant-key", "k-acme")]),
        (format!("{rbac_url}/?key=k-acme"), vec![]),
    ] {
        let guest = worker(&url, "guest", &headers);
        guest
            .wait_connected(Duration::from_secs(30))
            .await
            .expect("admitted");
        let echoed = guest
            .trigger("api::echo", json!({"hello": 1}))
            .await
            .expect("an exposed function");
        // The handler's input is what the guest sent; the engine's `_caller_*` keys
        // are on the invocation.
        assert_eq!(echoed["input"], json!({"hello": 1}));
        assert_eq!(echoed["caller_context"], json!({"tenant": "acme"}));
        assert!(echoed["caller_worker_id"].is_string(), "{echoed}");
        match guest.trigger("internal::secret", json!({})).await {
            Err(Error::Remote(body)) => {
                assert_eq!(body.code, "FORBIDDEN");
                assert_eq!(
                    body.message,
                    "function 'internal::secret' not allowed (add to rbac.expose_functions)"
                );
            }
            other => panic!("expected FORBIDDEN, got {other:?}"),
        }
        // What it registers is prefixed for everyone else.
        guest
            .register_function("resize", |input: Value| async move {
                Ok::<_, Error>(json!({"w": input["w"]}))
            })
            .expect("register");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let resized = loop {
            match backend.trigger("acme::resize", json!({"w": 3})).await {
                Ok(value) => break value,
                Err(_) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(error) => panic!("acme::resize never callable: {error:?}"),
            }
        };
        assert_eq!(resized, json!({"w": 3}));
        guest.shutdown().await;
    }
    // Refused before the upgrade: a wrong key, no key.
    assert_eq!(
        upgrade_status(rbac_url, &[("x-tenant-key", "nope")]).await,
        401
    );
    assert_eq!(upgrade_status(rbac_url, &[]).await, 401);
    // Operators' endpoints are not on the untrusted listener.
    let metrics = reqwest_like_get(&format!("{rbac_url}/metrics")).await;
    assert!(metrics.starts_with("HTTP/1.1 404"), "{metrics}");
    backend.shutdown().await;
}

/// A plain `GET` over TCP; returns the response head and body.
async fn reqwest_like_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("ws://");
    let (addr, path) = rest.split_once('/').expect("a path");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(format!("GET /{path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut response = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response)).await;
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rbac_flags_open_an_untrusted_listener() {
    let rbac_addr = format!("127.0.0.1:{}", free_port());
    let engine = Engine::start_on(
        "127.0.0.1:0",
        &[
            "--rbac-addr",
            &rbac_addr,
            "--rbac-auth-function",
            "auth::check",
            "--rbac-expose",
            "api::*",
        ],
        &[],
        Stdio::null(),
    );
    exercise(&format!("ws://{rbac_addr}"), &engine.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_shaped_config_file_opens_an_untrusted_listener() {
    let (main_port, rbac_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("iii-engine-rbac-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "workers:\n\
             \x20 - name: iii-worker-manager\n\
             \x20   config: {{host: 127.0.0.1, port: {main_port}}}\n\
             \x20 - name: iii-worker-manager\n\
             \x20   config:\n\
             \x20     host: 127.0.0.1\n\
             \x20     port: {rbac_port}\n\
             \x20     rbac:\n\
             \x20       auth_function_id: auth::check\n\
             \x20       expose_functions:\n\
             \x20         - match(\"api::*\")\n\
             \x20         - metadata: {{public: true}}\n\
             \x20 - name: iii-stream\n\
             \x20   config: {{port: 3112}}\n"
        ),
    )
    .expect("write config");
    let config = path.to_str().expect("utf-8").to_owned();
    let engine = Engine::start_unaddressed(&["--config", &config], &[]);
    exercise(&format!("ws://127.0.0.1:{rbac_port}"), &engine.url).await;
    let (status, log) = engine.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("further listener ready") && log.contains("untrusted (rbac)"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn print_config_shows_the_untrusted_listener_and_bad_filters_exit_2() {
    let (status, stdout, stderr) = run(
        &[
            "--print-config",
            "--rbac-addr",
            "127.0.0.1:49135",
            "--rbac-expose",
            "api::*,metadata.public=true",
            "--rbac-middleware-function",
            "mw::route",
        ],
        &[],
    );
    assert!(status.success(), "{stderr}");
    for line in [
        "port: 49135",
        "- match(\"api::*\")",
        "public: true",
        "middleware_function_id: mw::route",
        "max_connections_per_ip: 16",
    ] {
        assert!(stdout.contains(line), "{line} in:\n{stdout}");
    }
    let (status, _, stderr) = run(
        &["--rbac-addr", "127.0.0.1:0", "--rbac-expose", "metadata.=x"],
        &[],
    );
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--rbac-expose"), "{stderr}");
    // The other --rbac-* flags need --rbac-addr.
    let (status, _, _) = run(&["--rbac-expose", "api::*"], &[]);
    assert_eq!(status.code(), Some(2));
}
