//! A hostile (or careless) peer against a real engine on loopback: every attack of the
//! engine-hardening issue, each followed by the check that other workers are still
//! served. Loops are bounded and every wait has a timeout.

use std::time::Duration;

use iii_tests::peer::{DeafPeer, Patience, Peer};
use iii_tokio::engine::{bind, EngineExit, EngineServer, EngineSettings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn engine(settings: EngineSettings) -> EngineServer {
    bind("127.0.0.1:0", settings).await.expect("bind")
}

fn addr(server: &EngineServer) -> String {
    server.local_addr().to_string()
}

async fn connections(server: &EngineServer) -> usize {
    server.handle().stats().await.expect("running").connections
}

/// True when exactly one function with `prefix` is registered.
async fn listed(peer: &mut Peer, prefix: &str) -> bool {
    let answer = peer
        .call("engine::functions::list", json!({"prefix": prefix}))
        .await;
    answer["result"]["functions"]
        .as_array()
        .is_some_and(|f| f.len() == 1)
}

/// Sends an upgrade request on a fresh TCP connection and returns the status line.
async fn status_of_upgrade(addr: &str, extra_headers: &str) -> String {
    let mut tcp = TcpStream::connect(addr).await.expect("tcp");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test]
async fn a_deeply_nested_registration_does_not_stop_the_engine() {
    let server = engine(EngineSettings::default()).await;
    let url = server.url();
    let mut watcher = Peer::connect(&url).await.expect("watcher");
    watcher.register("watch").await;
    watcher
        .send(json!({"type": "registertrigger", "id": "t", "trigger_type": "engine::functions-available",
                     "function_id": "watch", "config": {}}))
        .await;
    let mut attacker = Peer::connect(&url).await.expect("attacker");
    let deep = format!("{}1{}", "[".repeat(128), "]".repeat(128));
    attacker
        .send_text(&format!(
            r#"{{"type":"registerfunction","id":"d","metadata":{deep}}}"#
        ))
        .await;
    let refusal = attacker.next_where(|m| m["type"] == "error").await;
    assert_eq!(refusal["error"]["code"], "payload_too_deep");
    // Past the notification delay, the engine still serves everyone.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let list = attacker.call("engine::functions::list", json!({})).await;
    assert!(list["result"]["functions"].is_array());
    let mut late = Peer::connect(&url).await.expect("a new worker connects");
    assert!(late.is_served().await);
    assert!(watcher.is_served().await);
    assert!(server.handle().is_running());
    server.shutdown().await;
}

#[tokio::test]
async fn when_the_engine_task_dies_upgrades_get_503_and_the_death_is_reported() {
    let server = engine(EngineSettings::default()).await;
    let mut worker = Peer::connect(&server.url()).await.expect("worker");
    assert!(worker.is_served().await);
    server.handle().inject_panic();
    let exit = tokio::time::timeout(Duration::from_secs(1), server.handle().stopped())
        .await
        .expect("reported within a second");
    assert_eq!(exit, EngineExit::Panicked);
    assert!(!server.handle().is_running());
    assert_eq!(
        status_of_upgrade(&addr(&server), "").await,
        "HTTP/1.1 503 Service Unavailable"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_and_its_slot_freed() {
    let mut settings = EngineSettings::default();
    settings.core.max_connections = 3;
    settings.write_timeout = Duration::from_secs(1);
    let server = engine(settings).await;
    let url = server.url();
    let mut deaf = DeafPeer::connect(&addr(&server)).await;
    deaf.send_text(r#"{"type":"registerfunction","id":"deaf::f"}"#)
        .await;
    let mut caller = Peer::connect(&url).await.expect("caller");
    let patience = Patience::new();
    while !listed(&mut caller, "deaf::").await {
        patience.wait("deaf::f registered").await;
    }
    // 16 MiB of calls: far more than the socket buffers take, well under the 64 MiB
    // queue bound, so only the write timeout can free the slot.
    let payload = "x".repeat(1 << 20);
    for _ in 0..16 {
        caller
            .send(json!({"type": "invokefunction", "function_id": "deaf::f",
                         "data": {"p": payload}, "action": {"type": "void"}}))
            .await;
    }
    let patience = Patience::new();
    while connections(&server).await > 1 {
        patience.wait("the deaf peer is dropped").await;
    }
    // Its slot is free: two more workers fit under max_connections = 3.
    let mut second = Peer::connect(&url).await.expect("second");
    let mut third = Peer::connect(&url).await.expect("third");
    assert!(second.is_served().await && third.is_served().await);
    let gone = caller.call("deaf::f", json!({})).await;
    assert_eq!(gone["error"]["code"], "function_not_found");
    server.shutdown().await;
}

#[tokio::test]
async fn a_peer_that_floods_past_its_queue_is_aborted_at_once() {
    let mut settings = EngineSettings::default();
    settings.core.max_control_queue_bytes = 4 << 20;
    settings.write_timeout = Duration::from_secs(600); // only the queue bound can act
    let server = engine(settings).await;
    let url = server.url();
    let mut deaf = DeafPeer::connect(&addr(&server)).await;
    deaf.send_text(r#"{"type":"registerfunction","id":"deaf::g"}"#)
        .await;
    let mut caller = Peer::connect(&url).await.expect("caller");
    let patience = Patience::new();
    while !listed(&mut caller, "deaf::").await {
        patience.wait("deaf::g registered").await;
    }
    let payload = "y".repeat(1 << 20);
    for _ in 0..16 {
        caller
            .send(json!({"type": "invokefunction", "function_id": "deaf::g",
                         "data": {"p": payload}, "action": {"type": "void"}}))
            .await;
    }
    let patience = Patience::new();
    while connections(&server).await > 1 {
        patience.wait("the flooded peer is aborted").await;
    }
    assert!(caller.is_served().await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_worker_is_pinged_then_dropped_and_its_functions_go() {
    let settings = EngineSettings {
        ping_interval: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(900),
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let url = server.url();
    let mut deaf = DeafPeer::connect(&addr(&server)).await;
    deaf.send_text(r#"{"type":"registerfunction","id":"ghost::f"}"#)
        .await;
    // A live worker that answers pings (tungstenite does, while the stream is read).
    let mut live = Peer::connect(&url).await.expect("live");
    let patience = Patience::new();
    while !listed(&mut live, "ghost::").await {
        patience.wait("ghost::f registered").await;
    }
    let patience = Patience::new();
    while connections(&server).await > 1 {
        // The live worker keeps reading, so it answers the engine's pings.
        assert!(live.is_served().await);
        patience.wait("the silent worker is dropped").await;
    }
    let gone = live.call("ghost::f", json!({})).await;
    assert_eq!(gone["error"]["code"], "function_not_found");
    // A worker that keeps reading (and so answers pings) outlives several idle timeouts.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(live.is_served().await);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn connections_in_their_upgrade_are_capped_and_silent_ones_time_out() {
    let settings = EngineSettings {
        max_handshakes: 4,
        handshake_timeout: Duration::from_millis(500),
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let address = addr(&server);
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(TcpStream::connect(&address).await.expect("tcp"));
    }
    // The engine counts them as they are accepted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status_of_upgrade(&address, "").await,
        "HTTP/1.1 503 Service Unavailable",
        "beyond max_handshakes: 503 at once"
    );
    // The silent ones are dropped after the handshake timeout; a worker then gets in.
    let patience = Patience::new();
    while Peer::connect(&server.url()).await.is_err() {
        patience.wait("a worker connects").await;
    }
    drop(silent);
    server.shutdown().await;
}

#[tokio::test]
async fn pages_of_other_origins_are_refused_with_403() {
    let mut settings = EngineSettings::default();
    settings.core.allowed_origins = vec!["http://127.0.0.1:5173".into()];
    let server = engine(settings).await;
    let address = addr(&server);
    assert_eq!(
        status_of_upgrade(&address, "Origin: http://evil.example\r\n").await,
        "HTTP/1.1 403 Forbidden"
    );
    assert_eq!(
        status_of_upgrade(&address, "Origin: http://127.0.0.1:5173\r\n").await,
        "HTTP/1.1 101 Switching Protocols"
    );
    assert_eq!(
        status_of_upgrade(&address, "").await,
        "HTTP/1.1 101 Switching Protocols"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn bindings_on_engine_notifications_cannot_amplify_connects() {
    let server = engine(EngineSettings::default()).await;
    let url = server.url();
    let mut victim = Peer::connect(&url).await.expect("victim");
    victim.register("victim::f").await;
    let mut attacker = Peer::connect(&url).await.expect("attacker");
    for i in 0..1000 {
        attacker
            .send(json!({"type": "registertrigger", "id": format!("b{i}"),
                         "trigger_type": "engine::workers-available",
                         "function_id": "victim::f", "config": {}}))
            .await;
    }
    let mut refused = 0;
    while refused < 1000 - 16 {
        let answer = attacker
            .next_where(|m| m["type"] == "triggerregistrationresult")
            .await;
        assert_eq!(answer["error"]["code"], "quota_exceeded");
        refused += 1;
    }
    for _ in 0..5 {
        drop(Peer::connect(&url).await.expect("anonymous"));
    }
    // 5 connects and 5 disconnects through 16 bindings: at most 160 calls.
    let mut calls = 0;
    while let Ok(message) =
        tokio::time::timeout(Duration::from_millis(500), victim.next_json()).await
    {
        if message["type"] == "invokefunction" {
            calls += 1;
        }
    }
    assert!((1..=160).contains(&calls), "{calls} calls");
    server.shutdown().await;
}
