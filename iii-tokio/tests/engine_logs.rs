//! The `iii-engine` binary's log as an operator keeps it: no escape codes when standard
//! error is not a terminal, no warning on a default start, JSON lines on request (flag
//! or configuration file), connect and disconnect lines that name the worker and its
//! address, refused upgrades limited per reason, and `--version`/`--help` that say what
//! the program is and how its log is chosen.

mod common;

use std::time::Duration;

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use common::{run, Engine};
use futures_util::StreamExt;
use serde_json::{json, Value};

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, WsError>> + Unpin,
{
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

/// Connects a worker that announces itself as `name`, waits for the engine's answer,
/// and disconnects.
async fn visit(url: &str, name: &str) {
    let (mut ws, _) = connect_async(url).await.expect("connect");
    next_json(&mut ws).await;
    ws.send(Message::text(
        json!({"type": "invokefunction", "invocation_id": "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f61",
               "function_id": "engine::workers::register", "data": {"name": name, "runtime": "test"}})
        .to_string(),
    ))
    .await
    .expect("register");
    loop {
        if next_json(&mut ws).await["type"] == "invocationresult" {
            break;
        }
    }
    ws.close(None).await.expect("close");
    while let Some(Ok(_)) = ws.next().await {}
}

/// Waits (bounded) until the engine's log contains `needle`.
fn wait_for(engine: &Engine, needle: &str) {
    for _ in 0..500 {
        if engine.log_text().contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{needle:?} never logged: {}", engine.log_text());
}

#[test]
fn version_names_the_engine_and_help_explains_the_log() {
    let (status, stdout, _) = run(&["--version"], &[]);
    assert!(status.success());
    assert_eq!(
        stdout.trim(),
        format!("iii-engine {}", env!("CARGO_PKG_VERSION"))
    );
    let (status, help, _) = run(&["--help"], &[]);
    assert!(status.success());
    assert!(help.contains("RUST_LOG"), "{help}");
    assert!(help.contains("--log-format"), "{help}");
}

#[tokio::test]
async fn a_default_start_logs_no_warning_and_no_escape_codes_into_a_pipe() {
    let engine = Engine::start_logged(&[], &[]);
    visit(&engine.url, "plain").await;
    wait_for(&engine, "worker disconnected");
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!log.contains('\u{1b}'), "escape codes in a pipe: {log:?}");
    assert!(!log.contains("WARN"), "a warning on a default start: {log}");
}

#[tokio::test]
async fn json_lines_name_the_worker_and_its_address_on_connect_and_disconnect() {
    let engine = Engine::start_logged(&["--log-format", "json"], &[]);
    visit(&engine.url, "billing-worker").await;
    wait_for(&engine, "worker disconnected");
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let lines: Vec<Value> = log
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let find = |message: &str| {
        lines
            .iter()
            .find(|line| line["fields"]["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} line: {log}"))
            .clone()
    };
    let connected = find("worker connected");
    assert_eq!(connected["fields"]["peer"], "127.0.0.1", "{connected}");
    let announced = find("worker announced");
    assert_eq!(announced["fields"]["worker_name"], "billing-worker");
    let gone = find("worker disconnected");
    assert_eq!(gone["fields"]["worker_name"], "billing-worker", "{gone}");
    assert_eq!(gone["fields"]["peer"], "127.0.0.1");
    assert_eq!(
        gone["fields"]["worker_id"],
        connected["fields"]["worker_id"]
    );
}

#[tokio::test]
async fn the_configuration_file_can_ask_for_json_lines() {
    let dir = std::env::temp_dir().join(format!("iii-engine-logs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("config.yaml");
    std::fs::write(
        &file,
        "workers:\n  - name: iii-worker-manager\n    config:\n      port: 0\n      log_format: json\n",
    )
    .expect("file");
    let engine = Engine::start_unaddressed(&["--config", file.to_str().expect("utf-8")], &[]);
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.lines().count() > 2, "{log}");
    for line in log.lines().filter(|line| !line.trim().is_empty()) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_worker_refused_again_and_again_gets_a_few_lines_per_window() {
    let engine = Engine::start_logged(
        &[
            "--token",
            "right-token",
            "--log-lines-per-reason",
            "3",
            // One window for the whole test, so the count does not depend on its speed.
            "--log-window-ms",
            "600000",
        ],
        &[],
    );
    for _ in 0..20 {
        match connect_async(&engine.url).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 401),
            other => panic!("expected 401, got {other:?}"),
        }
    }
    // A refusal for another reason is logged on its own allowance.
    let unknown = format!("{}/no/such/route", engine.url);
    assert!(connect_async(&unknown).await.is_err());
    wait_for(&engine, "upgrade refused");
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "{log}");
    let refused = |reason: &str| {
        log.lines()
            .filter(|line| line.contains("upgrade refused") && line.contains(reason))
            .count()
    };
    assert_eq!(refused("missing or wrong token"), 3, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("upgrade refused"))
            .count(),
        4,
        "the other reason keeps its own allowance: {log}"
    );
}
