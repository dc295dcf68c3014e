//! Hostile peers against the engine's memory: each attack ends with the attacker cut,
//! the engine-wide byte budget (`EngineHandle::memory`) bounded and back to zero once
//! the attackers are gone, and bystanders still served. Loops are bounded and every wait
//! has a timeout; nothing here measures time.

use std::time::Duration;

use iii_tests::peer::{Patience, Peer};
use iii_tokio::engine::{bind, EngineServer, EngineSettings};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn engine(settings: EngineSettings) -> EngineServer {
    bind("127.0.0.1:0", settings).await.expect("bind")
}

/// Opens a raw WebSocket to `path` on `addr` with a 4 KiB receive buffer and reads
/// exactly the 101 response head; nothing after it is ever read.
async fn deaf_socket(addr: &str, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let mut tcp = socket
        .connect(addr.parse().expect("address"))
        .await
        .expect("tcp");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("response");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgraded");
    tcp
}

/// The header of a masked client frame (`first`: FIN and opcode) announcing `len` bytes,
/// with a zero mask (so the payload goes as it is).
fn frame_header(first: u8, len: usize) -> Vec<u8> {
    let mut header = vec![first];
    match len {
        0..=125 => header.push(0x80 | len as u8),
        126..=0xffff => {
            header.push(0x80 | 126);
            header.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            header.push(0x80 | 127);
            header.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    header.extend_from_slice(&[0; 4]);
    header
}

/// A worker that registers `id` and answers its calls, and a caller; true when the call
/// is answered.
async fn bystanders_are_served(url: &str, id: &str) -> bool {
    let mut worker = Peer::connect(url).await.expect("worker");
    worker.register(id).await;
    let mut caller = Peer::connect(url).await.expect("caller");
    let patience = Patience::new();
    loop {
        let listed = caller
            .call("engine::functions::list", json!({"prefix": id}))
            .await;
        if listed["result"]["functions"]
            .as_array()
            .is_some_and(|f| f.len() == 1)
        {
            break;
        }
        patience
            .wait("the bystander's function is registered")
            .await;
    }
    caller
        .send(json!({"type": "invokefunction", "invocation_id": "00000000-0000-4000-8000-000000000001",
                     "function_id": id, "data": {"n": 1}}))
        .await;
    let call = worker.next_where(|m| m["type"] == "invokefunction").await;
    worker
        .send(
            json!({"type": "invocationresult", "invocation_id": call["invocation_id"],
                     "function_id": id, "result": {"ok": true}}),
        )
        .await;
    let answer = caller.next_where(|m| m["type"] == "invocationresult").await;
    answer["result"]["ok"] == true
}

#[tokio::test]
async fn a_pong_flood_from_a_peer_that_reads_nothing_is_cut_as_a_slow_consumer() {
    let settings = EngineSettings {
        // Not what cuts it: the flood is cut long before.
        write_timeout: Duration::from_secs(600),
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let handle = server.handle().clone();
    let mut tcp = deaf_socket(&server.local_addr().to_string(), "/").await;
    let mut ping = frame_header(0x89, 125);
    ping.extend_from_slice(&[b'p'; 125]);
    let burst: Vec<u8> = ping.repeat(1000);
    // At most 400 000 pings (52 MB): each would queue a 127-byte pong without the cap.
    let mut bursts = 0;
    while bursts < 400 && handle.memory().slow_consumers == 0 {
        if tcp.write_all(&burst).await.is_err() {
            break;
        }
        bursts += 1;
    }
    let patience = Patience::new();
    while handle.memory().slow_consumers == 0 {
        patience.wait("the flooder is cut as a slow consumer").await;
    }
    let patience = Patience::new();
    while handle.stats().await.expect("running").connections > 0 || handle.memory().used > 0 {
        patience
            .wait("the flooder's connection and bytes are released")
            .await;
    }
    let memory = handle.memory();
    assert!(memory.peak < 1 << 20, "{} bytes held at most", memory.peak);
    assert!(bystanders_are_served(&server.url(), "bystander::f").await);
    drop(tcp);
    server.shutdown().await;
}

#[tokio::test]
async fn partial_messages_beyond_the_engine_wide_budget_are_cut_and_bystanders_served() {
    const BUDGET: usize = 8 << 20;
    let settings = EngineSettings {
        memory_budget_bytes: BUDGET,
        ..EngineSettings::default()
    };
    let server = engine(settings).await;
    let handle = server.handle().clone();
    let addr = server.local_addr().to_string();
    // Six hoarders each announce a 3 MiB text message and send 2 MiB of it: 12 MiB
    // wanted, more than the budget. A telemetry hoarder announces more than the
    // telemetry limit (4 MiB).
    let mut hoarders = Vec::new();
    for i in 0..7 {
        let (path, announced) = if i == 6 {
            ("/otel", 5 << 20)
        } else {
            ("/", 3 << 20)
        };
        let mut tcp = deaf_socket(&addr, path).await;
        hoarders.push(tokio::spawn(async move {
            let _ = tcp.write_all(&frame_header(0x01, announced)).await;
            let chunk = vec![b'a'; 64 * 1024];
            for _ in 0..32 {
                if tcp.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            tcp
        }));
    }
    let mut sockets = Vec::new();
    for hoarder in hoarders {
        sockets.push(hoarder.await.expect("hoarder"));
    }
    // At most three hoarders fit under the budget less its reserve (7 MiB): the others
    // are cut, either refused as they grow or cut as the largest holder.
    let patience = Patience::new();
    while handle.memory().refused + handle.memory().evicted < 3 {
        patience.wait("hoarders beyond the budget are cut").await;
    }
    let memory = handle.memory();
    assert!(memory.used <= BUDGET, "{} bytes held", memory.used);
    assert!(memory.peak <= BUDGET, "{} bytes held at most", memory.peak);
    // Small messages still fit in the reserve.
    assert!(bystanders_are_served(&server.url(), "bystander::g").await);
    drop(sockets);
    let patience = Patience::new();
    while handle.memory().used > 0 {
        patience.wait("the hoarders' bytes are released").await;
    }
    assert!(bystanders_are_served(&server.url(), "bystander::h").await);
    server.shutdown().await;
}
