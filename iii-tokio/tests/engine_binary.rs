//! The `iii-engine` binary as an operator and an attacker meet it: settings that cannot
//! work are refused at start-up with status 2, the log says whether auth is on and
//! records refusals with the peer's address, no secret reaches the log at any level, and
//! running out of file descriptors does not stall accepting.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use common::{run_to_exit, Engine};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// Flags, environment, and what the log must name.
type BadSettings<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn settings_that_cannot_work_are_refused_at_start_up_with_status_2() {
    let cases: [BadSettings<'_>; 7] = [
        (
            &["--channel-attach-timeout-secs", "18446744073709551615"],
            &[],
            "channel_attach_timeout",
        ),
        (&["--token", ""], &[], "token is empty"),
        (&["--token", "  "], &[], "token is empty"),
        (&[], &[("III_ENGINE_TOKEN", " ")], "token is empty"),
        (
            &["--ping-interval-secs", "30", "--idle-timeout-secs", "10"],
            &[],
            "idle_timeout",
        ),
        (
            &["--channel-buffer-bytes", "1000"],
            &[],
            "channel_buffer_bytes",
        ),
        (&["--allowed-origin", "evil.example"], &[], "allowed origin"),
    ];
    for (args, env, expected) in cases {
        let (status, log) = run_to_exit(args, env);
        assert_eq!(status.code(), Some(2), "{args:?} {env:?}: {log}");
        assert!(log.contains(expected), "{args:?}: log says {log}");
    }
}

fn with_token(
    url: &str,
    token: &str,
) -> async_tungstenite::tungstenite::handshake::client::Request {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    request
}

fn status_of<T: std::fmt::Debug>(result: Result<T, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

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

#[tokio::test]
async fn the_log_tells_auth_records_refusals_and_never_holds_a_secret() {
    let dir = std::env::temp_dir().join(format!("iii-engine-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let token = "tok-9f8e7d6c5b4a";
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{token}\n")).expect("token file");
    let engine = Engine::start_logged(
        &["--token-file", token_file.to_str().expect("utf-8 path")],
        &[("RUST_LOG", "trace")],
    );
    // Refused: no token, a wrong token, a bad channel key.
    assert_eq!(status_of(connect_async(&engine.url).await), 401);
    assert_eq!(
        status_of(connect_async(with_token(&engine.url, "nope")).await),
        401
    );
    let (mut control, _) = connect_async(with_token(&engine.url, token))
        .await
        .expect("with the token");
    let hello = next_json(&mut control).await;
    let reattach_token = hello["reattach_token"].as_str().expect("token").to_owned();
    let worker_id = hello["worker_id"].as_str().expect("id").to_owned();
    // A reconnect presents the reattach token.
    let (mut again, _) = connect_async(with_token(&engine.url, token))
        .await
        .expect("second");
    next_json(&mut again).await;
    again
        .send(Message::text(
            json!({"type": "reattach", "previous_worker_id": worker_id, "reattach_token": reattach_token})
                .to_string(),
        ))
        .await
        .expect("reattach");
    again
        .send(Message::text(
            json!({"type": "invokefunction", "invocation_id": "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60",
                   "function_id": "engine::channels::create", "data": {}})
            .to_string(),
        ))
        .await
        .expect("create");
    let refs = loop {
        let message = next_json(&mut again).await;
        if message["type"] == "invocationresult" {
            break message["result"].clone();
        }
    };
    let end = |r: &Value| {
        format!(
            "{}/ws/channels/{}?key={}&dir={}",
            engine.url,
            r["channel_id"].as_str().unwrap_or(""),
            r["access_key"].as_str().unwrap_or(""),
            r["direction"].as_str().unwrap_or("")
        )
    };
    let (mut reader, _) = connect_async(end(&refs["reader"])).await.expect("reader");
    let (mut writer, _) = connect_async(end(&refs["writer"])).await.expect("writer");
    writer
        .send(Message::text("side message"))
        .await
        .expect("text");
    writer.close(None).await.expect("close");
    while let Some(Ok(message)) = reader.next().await {
        if message.is_close() {
            break;
        }
    }
    // A second attach with the (now spent) key is refused: the URL holds the key.
    assert_eq!(status_of(connect_async(end(&refs["reader"])).await), 404);
    drop((control, again));
    let (status, log) = engine.stop();
    assert_eq!(status.code(), Some(0), "clean stop: {log}");
    assert!(
        log.contains("bearer token required"),
        "auth announced: {log}"
    );
    assert!(
        log.contains("upgrade refused") && log.contains("127.0.0.1"),
        "{log}"
    );
    assert!(log.contains("missing or wrong token"));
    assert!(
        log.contains("TRACE") || log.contains("DEBUG"),
        "the log was verbose"
    );
    let secrets = [
        token,
        reattach_token.as_str(),
        refs["reader"]["access_key"].as_str().unwrap_or("?"),
        refs["writer"]["access_key"].as_str().unwrap_or("?"),
    ];
    for secret in secrets {
        assert!(!log.contains(secret), "a secret reached the log: {secret}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn running_out_of_file_descriptors_does_not_stall_accepting() {
    // The engine gets 64 descriptors; 80 silent connections would use them all.
    let child = Command::new("sh")
        .args([
            "-c",
            "ulimit -n 64 && exec \"$0\" \"$@\"",
            env!("CARGO_BIN_EXE_iii-engine"),
            "--addr",
            "127.0.0.1:0",
            "--handshake-timeout-ms",
            "1000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sh");
    let engine = Engine::wait_for_url(child);
    let mut silent = Vec::new();
    for _ in 0..80 {
        if let Ok(tcp) = tokio::net::TcpStream::connect(engine.addr()).await {
            silent.push(tcp);
        }
    }
    // A legitimate worker gets in once the silent ones are shed or time out, well
    // before the 10 s the old engine needed with a 10 s handshake timeout.
    let started = Instant::now();
    let connected = loop {
        if let Ok(Ok((mut ws, _))) =
            tokio::time::timeout(Duration::from_secs(2), connect_async(&engine.url)).await
        {
            break next_json(&mut ws).await["type"] == "workerregistered";
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(connected);
    drop(silent);
}
