//! What an operator gets from the engine: `/metrics` counting a scripted workload
//! exactly, `/healthz` and its guards, and a graceful drain on SIGTERM that lets a
//! transfer in progress finish while new workers are refused.

mod common;

use std::time::Duration;

use async_tungstenite::tokio::{connect_async, ConnectStream};
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Request;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use common::Engine;
use futures_util::StreamExt;
use iii_tokio::engine::{bind, EngineSettings};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Ws = WebSocketStream<ConnectStream>;

const TOKEN: &str = "op-token";

fn with_token(url: &str) -> Request {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {TOKEN}").parse().expect("header"),
    );
    request
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).expect("json"),
            Some(Ok(_)) => continue,
            other => panic!("ended: {other:?}"),
        }
    }
}

async fn worker(url: &str) -> Ws {
    let (mut ws, _) = connect_async(with_token(url)).await.expect("worker");
    next_json(&mut ws).await; // workerregistered
    ws
}

async fn call(ws: &mut Ws, id: &str, function_id: &str, data: Value) {
    ws.send(Message::text(
        json!({"type": "invokefunction", "invocation_id": id, "function_id": function_id, "data": data})
            .to_string(),
    ))
    .await
    .expect("call");
}

async fn result_of(ws: &mut Ws, id: &str) -> Value {
    loop {
        let message = next_json(ws).await;
        if message["type"] == "invocationresult" && message["invocation_id"] == id {
            return message;
        }
    }
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012x}")
}

/// `GET path` with optional headers; returns the status code and the body.
async fn get(addr: &str, path: &str, headers: &str) -> (u16, String) {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_string(&mut response))
        .await
        .expect("in time")
        .expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `name` (with its labels, e.g. `iii_x_total{a="b"}`).
fn sample(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
        .trim()
        .parse::<f64>()
        .unwrap_or_else(|_| panic!("{name} is not a number")) as u64
}

fn end_url(url: &str, r: &Value) -> String {
    format!(
        "{url}/ws/channels/{}?key={}&dir={}",
        r["channel_id"].as_str().unwrap_or(""),
        r["access_key"].as_str().unwrap_or(""),
        r["direction"].as_str().unwrap_or("")
    )
}

#[tokio::test]
async fn metrics_count_a_scripted_workload_exactly() {
    let mut settings = EngineSettings::default();
    settings.core.auth_token = Some(TOKEN.into());
    settings.core.invocation_timeout = Some(Duration::from_millis(300));
    settings.core.quotas.channels = 2;
    // `ok` and `bad` are called first and get a label; `slow` is counted as `other`.
    settings.core.metrics_function_labels = 2;
    let server = bind("127.0.0.1:0", settings).await.expect("bind");
    let (url, addr) = (server.url(), server.local_addr().to_string());
    let mut callee = worker(&url).await;
    let mut caller = worker(&url).await;
    for id in ["ok", "bad", "slow"] {
        callee
            .send(Message::text(
                json!({"type": "registerfunction", "id": id}).to_string(),
            ))
            .await
            .expect("register");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    // 2 ok, 1 error, 1 not found, 1 timeout.
    let mut n = 0;
    for function in ["ok", "ok", "bad", "nope", "slow"] {
        n += 1;
        call(&mut caller, &uuid(n), function, json!({})).await;
        if function == "nope" {
            continue;
        }
        let invoked = next_json(&mut callee).await;
        let id = invoked["invocation_id"].as_str().expect("id").to_owned();
        let answer = match function {
            "ok" => {
                json!({"type": "invocationresult", "invocation_id": id, "function_id": function, "result": 1})
            }
            "bad" => {
                json!({"type": "invocationresult", "invocation_id": id, "function_id": function,
                            "error": {"code": "boom", "message": "no"}})
            }
            _ => continue, // never answered: times out
        };
        callee
            .send(Message::text(answer.to_string()))
            .await
            .expect("answer");
    }
    for i in 1..=5 {
        result_of(&mut caller, &uuid(i)).await;
    }
    // 1 stopped: the callee leaves with a call pending.
    call(&mut caller, &uuid(6), "ok", json!({})).await;
    next_json(&mut callee).await;
    drop(callee);
    assert_eq!(
        result_of(&mut caller, &uuid(6)).await["error"]["code"],
        "invocation_stopped"
    );
    // Channels: one completed (3 messages, 10 bytes), one quota refusal, one writer lost.
    let mut refs = Vec::new();
    for i in 7..=9 {
        call(&mut caller, &uuid(i), "engine::channels::create", json!({})).await;
        refs.push(result_of(&mut caller, &uuid(i)).await);
    }
    assert_eq!(refs[2]["error"]["code"], "quota_exceeded");
    let (first, second) = (&refs[0]["result"], &refs[1]["result"]);
    let (mut reader, _) = connect_async(end_url(&url, &first["reader"]))
        .await
        .expect("r");
    let (mut writer, _) = connect_async(end_url(&url, &first["writer"]))
        .await
        .expect("w");
    writer.send(Message::binary(vec![1; 4])).await.expect("w1");
    writer.send(Message::text("abc")).await.expect("w2");
    writer.send(Message::binary(vec![2; 3])).await.expect("w3");
    writer.close(None).await.expect("close");
    while let Some(Ok(message)) = reader.next().await {
        if message.is_close() {
            break;
        }
    }
    let (mut reader2, _) = connect_async(end_url(&url, &second["reader"]))
        .await
        .expect("r2");
    let (writer2, _) = connect_async(end_url(&url, &second["writer"]))
        .await
        .expect("w2");
    drop(writer2); // lost without a Close
    while let Some(Ok(message)) = reader2.next().await {
        if message.is_close() {
            break;
        }
    }
    // Refusals: 401 (no token), 403 (origin), 404 (a spent key).
    assert!(matches!(connect_async(&url).await, Err(WsError::Http(r)) if r.status() == 401));
    let mut foreign = with_token(&url);
    foreign
        .headers_mut()
        .insert("Origin", "http://evil.example".parse().expect("origin"));
    assert!(matches!(connect_async(foreign).await, Err(WsError::Http(r)) if r.status() == 403));
    let spent = connect_async(end_url(&url, &first["reader"])).await;
    assert!(matches!(spent, Err(WsError::Http(r)) if r.status() == 404));

    let (status, _) = get(&addr, "/metrics", "").await;
    assert_eq!(status, 401, "metrics need the token");
    let (status, text) = get(
        &addr,
        "/metrics",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text");
    for (name, expected) in [
        (r#"iii_invocations_total{outcome="ok"}"#, 2 + 2), // + 2 channel creations
        (r#"iii_invocations_total{outcome="error"}"#, 1 + 1), // + the refused creation
        (r#"iii_invocations_total{outcome="not_found"}"#, 1),
        (r#"iii_invocations_total{outcome="timeout"}"#, 1),
        (r#"iii_invocations_total{outcome="stopped"}"#, 1),
        ("iii_invocation_duration_seconds_count", 4),
        ("iii_channels_created_total", 2),
        (r#"iii_channels_removed_total{outcome="completed"}"#, 1),
        (r#"iii_channels_removed_total{outcome="writer_lost"}"#, 1),
        ("iii_channel_messages_total", 3),
        ("iii_channel_bytes_total", 10),
        (r#"iii_quota_refusals_total{quota="channels"}"#, 1),
        (r#"iii_upgrades_refused_total{status="401"}"#, 2), // the worker and /metrics
        (r#"iii_upgrades_refused_total{status="403"}"#, 1),
        (r#"iii_upgrades_refused_total{status="404"}"#, 1),
        (r#"iii_connections_accepted_total{kind="control"}"#, 2),
        (
            r#"iii_connections_accepted_total{kind="channel_reader"}"#,
            2,
        ),
        (r#"iii_connections{kind="control"}"#, 1),
        ("iii_workers", 1),
        ("iii_draining", 0),
        (r#"iii_function_calls_total{function="ok",outcome="ok"}"#, 2),
        (
            r#"iii_function_calls_total{function="ok",outcome="stopped"}"#,
            1,
        ),
        (
            r#"iii_function_calls_total{function="bad",outcome="error"}"#,
            1,
        ),
        (
            r#"iii_function_calls_total{function="other",outcome="timeout"}"#,
            1,
        ),
        (
            r#"iii_function_calls_total{function="other",outcome="ok"}"#,
            0,
        ),
        (
            r#"iii_function_call_duration_seconds_count{function="ok"}"#,
            2,
        ),
        (
            r#"iii_function_call_duration_seconds_count{function="other"}"#,
            1,
        ),
        (
            &format!(
                r#"iii_build_info{{version="{}"}}"#,
                env!("CARGO_PKG_VERSION")
            ),
            1,
        ),
    ] {
        assert_eq!(sample(&text, name), expected, "{name}");
    }
    assert!(!text.contains(r#"function="slow""#), "beyond the label cap");
    // The function labels are the cap plus `other`, whatever was called.
    let labelled: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("iii_function_calls_total{function=\""))
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(
        labelled.into_iter().collect::<Vec<_>>(),
        ["bad", "ok", "other"]
    );
    if cfg!(target_os = "linux") {
        assert!(sample(&text, "process_resident_memory_bytes") > 0);
        assert!(sample(&text, "process_open_fds") > 0);
        assert!(sample(&text, "process_start_time_seconds") > 1_700_000_000);
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn health_answers_while_serving_and_is_guarded() {
    let mut settings = EngineSettings {
        metrics_token: Some("m-token".into()),
        ..EngineSettings::default()
    };
    settings.core.allowed_origins = vec!["https://console.example".into()];
    let server = bind("127.0.0.1:0", settings).await.expect("bind");
    let addr = server.local_addr().to_string();
    assert_eq!(get(&addr, "/healthz", "").await.0, 401);
    let auth = "Authorization: Bearer m-token\r\n";
    assert_eq!(get(&addr, "/healthz", auth).await, (200, "ok\n".to_owned()));
    let foreign = format!("{auth}Origin: http://evil.example\r\n");
    assert_eq!(get(&addr, "/healthz", &foreign).await.0, 403);
    let allowed = format!("{auth}Origin: https://console.example\r\n");
    assert_eq!(get(&addr, "/healthz", &allowed).await.0, 200);
    // Workers are not affected by the metrics token (no worker token is set).
    assert!(connect_async(server.url()).await.is_ok());
    server.shutdown().await;
}

fn sigterm(engine: &Engine) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &engine.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// A worker's control connection and the two ends of a channel it created, attached.
async fn channel(url: &str) -> (Ws, Ws, Ws) {
    let (mut control, _) = connect_async(url).await.expect("control");
    next_json(&mut control).await;
    call(
        &mut control,
        &uuid(1),
        "engine::channels::create",
        json!({}),
    )
    .await;
    let refs = result_of(&mut control, &uuid(1)).await["result"].clone();
    let (reader, _) = connect_async(end_url(url, &refs["reader"]))
        .await
        .expect("reader");
    let (writer, _) = connect_async(end_url(url, &refs["writer"]))
        .await
        .expect("writer");
    (control, reader, writer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_transfer_in_progress_then_exits_0() {
    const TOTAL: usize = 64 << 20;
    let engine = Engine::start_logged(&["--drain-timeout-secs", "30"], &[]);
    let url = engine.url.clone();
    let (_control, mut reader, mut writer) = channel(&url).await;
    let writing = tokio::spawn(async move {
        let chunk = vec![0x3cu8; 64 * 1024];
        for _ in 0..TOTAL / chunk.len() {
            writer
                .send(Message::binary(chunk.clone()))
                .await
                .expect("write");
        }
        writer.close(None).await.expect("close");
    });
    let mut received = 0usize;
    let mut signalled = false;
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Binary(bytes))) => {
                assert!(bytes.iter().all(|b| *b == 0x3c));
                received += bytes.len();
                if !signalled && received >= 1 << 20 {
                    signalled = true;
                    sigterm(&engine);
                    // A reader slower than the writer: the drain has work to wait for.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    // While draining: new workers get 503, health says so.
                    let refused = connect_async(&url).await;
                    assert!(matches!(refused, Err(WsError::Http(r)) if r.status() == 503));
                    assert_eq!(get(engine.addr(), "/healthz", "").await.0, 503);
                }
            }
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => {}
            other => panic!("reader ended: {other:?}"),
        }
    };
    assert!(close.is_none(), "a clean end of stream, not {close:?}");
    assert_eq!(received, TOTAL, "every byte arrived");
    writing.await.expect("writer");
    let mut engine = engine;
    let status = common::wait(&mut engine.child, Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", engine.log_text());
    assert!(engine.log_text().contains("Idle"), "{}", engine.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_stops_at_once_with_1001() {
    let engine = Engine::start_logged(&["--drain-timeout-secs", "600"], &[]);
    let url = engine.url.clone();
    let (_control, mut reader, mut writer) = channel(&url).await;
    writer
        .send(Message::binary(vec![1; 1024]))
        .await
        .expect("write");
    assert!(matches!(reader.next().await, Some(Ok(Message::Binary(_)))));
    sigterm(&engine);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&engine);
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), reader.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(Message::Close(frame))) => break frame.map(|f| f.code),
            Some(Ok(_)) => {}
            other => panic!("ended without a Close: {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Away));
    let mut engine = engine;
    let status = common::wait(&mut engine.child, Duration::from_secs(10)).expect("exits");
    assert_eq!(status.code(), Some(0), "{}", engine.log_text());
    assert!(engine.log_text().contains("second signal"));
}
