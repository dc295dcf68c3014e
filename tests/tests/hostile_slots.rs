//! Slots a hostile peer can make the engine hold before a connection is a worker:
//! pre-upgrade slots (accepted, TLS handshake, request head not yet complete) per
//! listener and per address with the main listener's reserve, and the per-address limit
//! of an RBAC listener counting telemetry connections and upgrades waiting for the
//! authentication function. Other source addresses are 127.0.0.x (all of 127.0.0.0/8
//! reaches loopback on Linux). Counts are kept small through small limits; every wait is
//! bounded.

use std::net::SocketAddr;
use std::time::Duration;

use iii_core::engine::{Admission, ListenerPolicy, Rbac};
use iii_core::upgrade::{Rejection, UpgradeRequest};
use iii_tests::peer::{Patience, Peer, ANSWER_TIMEOUT};
use iii_tests::rbac_fixtures::{engine_with, AUTHED};
use iii_tokio::engine::{bind, EngineServer, EngineSettings, ListenerSettings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A TCP connection to `addr` from `source` (an address of 127.0.0.0/8).
async fn tcp_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind the source address");
    tokio::time::timeout(ANSWER_TIMEOUT, socket.connect(addr))
        .await
        .expect("connected in time")
        .expect("connect")
}

/// The head of an upgrade request to `target`, without the blank line that ends it.
fn head(target: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
}

/// Sends a whole upgrade request to `target` on `tcp`.
async fn request(tcp: &mut TcpStream, target: &str) {
    let text = format!("{}\r\n", head(target));
    tcp.write_all(text.as_bytes()).await.expect("request");
}

/// The status line `tcp` is answered with (empty when it is closed without one).
async fn status(tcp: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 512];
    let n = tokio::time::timeout(ANSWER_TIMEOUT, tcp.read(&mut buf))
        .await
        .expect("an answer in time")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    text.lines().next().unwrap_or("").to_owned()
}

/// The status of a whole upgrade request to `target` from `source`.
async fn upgrade_status(source: [u8; 4], addr: SocketAddr, target: &str) -> String {
    let mut tcp = tcp_from(source, addr).await;
    request(&mut tcp, target).await;
    status(&mut tcp).await
}

/// `count` connections from `source` that send half an upgrade request and stall.
async fn stalled(count: usize, source: [u8; 4], addr: SocketAddr) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut tcp = tcp_from(source, addr).await;
        tcp.write_all(head("/").as_bytes())
            .await
            .expect("half a request");
        held.push(tcp);
    }
    held
}

/// A worker on `url`, within [`ANSWER_TIMEOUT`] (`None`: refused).
async fn worker(url: &str) -> Option<Peer> {
    tokio::time::timeout(ANSWER_TIMEOUT, Peer::connect(url))
        .await
        .expect("an answer in time")
        .ok()
}

/// The body of `GET /metrics` on the main listener.
async fn metrics(addr: SocketAddr) -> String {
    let mut tcp = tcp_from([127, 0, 0, 1], addr).await;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut text = Vec::new();
    tokio::time::timeout(ANSWER_TIMEOUT, tcp.read_to_end(&mut text))
        .await
        .expect("an answer in time")
        .expect("read");
    String::from_utf8_lossy(&text).into_owned()
}

fn rbac_listener(name: &str, policy: impl FnOnce(&mut ListenerPolicy)) -> ListenerSettings {
    let mut rbac = ListenerPolicy::untrusted(name, Rbac::default());
    policy(&mut rbac);
    ListenerSettings::new("127.0.0.1:0", rbac)
}

async fn engine(settings: EngineSettings) -> EngineServer {
    bind("127.0.0.1:0", settings).await.expect("bind")
}

#[tokio::test]
async fn half_sent_requests_on_the_rbac_listener_leave_the_trusted_listener_its_reserve() {
    let settings = EngineSettings {
        max_handshakes: 40,
        reserved_handshakes: 10,
        max_handshakes_per_ip: 100,
        handshake_timeout: Duration::from_secs(60),
        listeners: vec![rbac_listener("guests", |_| {})],
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let rbac = server.local_addrs()[1];
    // As many as the whole engine has: the RBAC listener holds 30 of them at most.
    let _held = stalled(40, [127, 0, 0, 1], rbac).await;
    let patience = Patience::new();
    while upgrade_status([127, 0, 0, 1], rbac, "/").await != "HTTP/1.1 503 Service Unavailable" {
        patience.wait("the RBAC listener's share is full").await;
    }
    for i in 0..5 {
        let peer = worker(&server.url()).await;
        assert!(
            peer.is_some(),
            "worker {i} kept out of the trusted listener"
        );
    }
    let text = metrics(server.local_addr()).await;
    assert!(
        text.contains(r#"iii_handshakes_in_progress{listener="guests"} 30"#),
        "{text}"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn trickling_sockets_from_one_address_leave_other_addresses_their_slots() {
    let settings = EngineSettings {
        max_handshakes: 60,
        max_handshakes_per_ip: 20,
        handshake_timeout: Duration::from_secs(60),
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let main = server.local_addr();
    let mut held = stalled(60, [127, 0, 0, 2], main).await;
    // They trickle: one more byte each, well within the handshake timeout.
    for tcp in &mut held {
        let _ = tcp.write_all(b"X").await;
    }
    let patience = Patience::new();
    while upgrade_status([127, 0, 0, 2], main, "/").await != "HTTP/1.1 503 Service Unavailable" {
        patience.wait("127.0.0.2's share is full").await;
    }
    for i in 0..7 {
        let peer = worker(&server.url()).await;
        assert!(peer.is_some(), "worker {i} from 127.0.0.1 kept out");
    }
    // Another address gets in too, and the refusals are counted by whose share was full.
    assert_eq!(
        upgrade_status([127, 0, 0, 3], main, "/").await,
        "HTTP/1.1 101 Switching Protocols"
    );
    let text = metrics(main).await;
    let refused = text
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"iii_handshakes_refused_total{listener="main",reason="address"} "#)
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert!(refused.is_some_and(|n| n >= 40), "{text}");
    drop(held);
    server.shutdown().await;
}

/// The trusted worker serving `auth::slow`, once the function is registered.
async fn auth_worker(server: &EngineServer) -> Peer {
    let mut auth = worker(&server.url()).await.expect("the trusted worker");
    auth.register("auth::slow").await;
    let patience = Patience::new();
    loop {
        let listing = auth
            .call("engine::functions::list", json!({"prefix": "auth::"}))
            .await;
        if listing["result"]["functions"].as_array().map(Vec::len) == Some(1) {
            return auth;
        }
        patience.wait("auth::slow registered").await;
    }
}

/// Has `auth` answer `count` calls of the authentication function, admitting each.
async fn admit(auth: &mut Peer, count: usize) {
    for _ in 0..count {
        let call = auth.next_where(|m| m["type"] == "invokefunction").await;
        auth.send(json!({"type": "invocationresult",
                         "invocation_id": call["invocation_id"],
                         "function_id": call["function_id"],
                         "result": {"allowed_functions": []}}))
            .await;
    }
}

#[tokio::test]
async fn concurrent_deferred_admissions_from_one_address_are_held_to_its_limit() {
    let settings = EngineSettings {
        listeners: vec![ListenerSettings::new(
            "127.0.0.1:0",
            ListenerPolicy {
                max_connections_per_ip: Some(4),
                ..ListenerPolicy::untrusted(
                    "guests",
                    Rbac {
                        auth_function_id: Some("auth::slow".to_owned()),
                        // Those it never answers are refused (401) after this.
                        hook_timeout: Duration::from_secs(3),
                        ..Rbac::default()
                    },
                )
            },
        )],
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let rbac = server.local_addrs()[1];
    let mut auth = auth_worker(&server).await;
    // 12 upgrades from one address at once; the authentication function answers 4 calls.
    let upgrades: Vec<_> = (0..12)
        .map(|_| tokio::spawn(upgrade_status([127, 0, 0, 1], rbac, "/")))
        .collect();
    admit(&mut auth, 4).await;
    let mut statuses = Vec::new();
    for upgrade in upgrades {
        statuses.push(upgrade.await.expect("the upgrade task"));
    }
    let admitted = statuses.iter().filter(|s| s.contains(" 101 ")).count();
    let refused = statuses.iter().filter(|s| s.contains(" 503 ")).count();
    assert_eq!((admitted, refused), (4, 8), "{statuses:?}");
    assert!(auth.is_served().await);
    server.shutdown().await;
}

#[tokio::test]
async fn upgrades_waiting_for_the_authentication_function_hold_no_pre_upgrade_slot() {
    let settings = EngineSettings {
        // The RBAC listener's share of pre-upgrade slots is 6.
        max_handshakes: 8,
        reserved_handshakes: 2,
        listeners: vec![ListenerSettings::new(
            "127.0.0.1:0",
            ListenerPolicy {
                max_connections_per_ip: Some(20),
                ..ListenerPolicy::untrusted(
                    "guests",
                    Rbac {
                        auth_function_id: Some("auth::slow".to_owned()),
                        hook_timeout: Duration::from_secs(30),
                        ..Rbac::default()
                    },
                )
            },
        )],
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let rbac = server.local_addrs()[1];
    let mut auth = auth_worker(&server).await;
    // Ten upgrades, one after the other, each waiting for the function before the next.
    let mut upgrades = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..10 {
        upgrades.push(tokio::spawn(upgrade_status([127, 0, 0, 1], rbac, "/")));
        calls.push(auth.next_where(|m| m["type"] == "invokefunction").await);
    }
    for call in calls {
        auth.send(json!({"type": "invocationresult",
                         "invocation_id": call["invocation_id"],
                         "function_id": call["function_id"],
                         "result": {"allowed_functions": []}}))
            .await;
    }
    for upgrade in upgrades {
        assert_eq!(
            upgrade.await.expect("the upgrade task"),
            "HTTP/1.1 101 Switching Protocols"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn telemetry_connections_count_toward_the_per_address_limit() {
    let settings = EngineSettings {
        listeners: vec![rbac_listener("guests", |p| {
            p.max_connections_per_ip = Some(3)
        })],
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let rbac = server.local_addrs()[1];
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut tcp = tcp_from([127, 0, 0, 1], rbac).await;
        request(&mut tcp, "/otel").await;
        assert_eq!(status(&mut tcp).await, "HTTP/1.1 101 Switching Protocols");
        open.push(tcp);
    }
    for target in ["/otel", "/"] {
        assert_eq!(
            upgrade_status([127, 0, 0, 1], rbac, target).await,
            "HTTP/1.1 503 Service Unavailable",
            "{target} beyond the address's limit"
        );
    }
    // Another address is not affected; a closed telemetry connection frees its place.
    assert_eq!(
        upgrade_status([127, 0, 0, 2], rbac, "/otel").await,
        "HTTP/1.1 101 Switching Protocols"
    );
    drop(open.pop());
    let patience = Patience::new();
    while upgrade_status([127, 0, 0, 1], rbac, "/").await != "HTTP/1.1 101 Switching Protocols" {
        patience
            .wait("the closed telemetry connection's place is free")
            .await;
    }
    server.shutdown().await;
}

/// A deferred upgrade on the authenticated listener from `peer`.
fn deferred(raw: &mut iii_tests::raw::RawEngine, peer: [u8; 4]) -> Admission {
    let request = UpgradeRequest::to("/").on_listener(AUTHED, Some(peer.into()), &[]);
    raw.upgrade(&request)
}

#[test]
fn upgrades_waiting_for_the_authentication_function_are_bounded_per_listener_and_engine() {
    let mut raw = engine_with(|p| {
        p.max_connections_per_ip = None;
        p.max_pending_admissions = Some(3);
    });
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.take_json(auth);
    for i in 0..3 {
        assert!(matches!(
            deferred(&mut raw, [10, 0, 0, i]),
            Admission::Deferred(_)
        ));
    }
    assert_eq!(
        deferred(&mut raw, [10, 0, 0, 9]),
        Admission::Refused(Rejection::Overloaded),
        "beyond the listener's share"
    );
    // Decided ones give their place back.
    for call in raw.invocations(auth) {
        raw.answer(auth, &call, json!({"allowed_functions": []}));
    }
    assert_eq!(raw.engine.pending_admissions(), 0);
    assert!(matches!(
        deferred(&mut raw, [10, 0, 0, 9]),
        Admission::Deferred(_)
    ));
    assert_eq!(raw.engine.tracked_addresses(), 4);
    // Engine-wide: the core's `max_pending_admissions`.
    let mut raw = engine_with(|p| p.max_connections_per_ip = None);
    let (auth, _) = raw.control();
    raw.register(auth, "auth::check", None);
    raw.take_json(auth);
    let limit = raw.engine.config().max_pending_admissions;
    for i in 0..limit {
        let peer = [10, 1, (i / 250) as u8, (i % 250) as u8];
        assert!(matches!(deferred(&mut raw, peer), Admission::Deferred(_)));
    }
    assert_eq!(
        deferred(&mut raw, [10, 2, 0, 1]),
        Admission::Refused(Rejection::Overloaded)
    );
    // Timed out, they are gone, and so are their addresses.
    raw.advance(Duration::from_secs(6));
    assert_eq!(raw.engine.pending_admissions(), 0);
    assert_eq!(raw.engine.tracked_addresses(), 0);
}
