//! Reviewer's probe of the memory budget (issue 19): what the WebSocket layer keeps
//! after a message is complete. The budget (`iii-driver/src/memory.rs`) gives a message's
//! charge back when its last frame has been read; this shows what the layer still holds
//! then, for the life of the connection, with nothing charged.

use std::io::{self, Read, Write};

use async_tungstenite::tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// One masked text frame of `len` bytes (mask 0, so the payload is sent as is), produced
/// on the fly so the probe itself holds nothing; then the socket stays open and silent.
struct OneFrame {
    header: Vec<u8>,
    sent: usize,
    len: usize,
}

impl Read for OneFrame {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let total = self.header.len() + self.len;
        if self.sent >= total {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(total - self.sent);
        for (i, byte) in buf[..n].iter_mut().enumerate() {
            let at = self.sent + i;
            *byte = self.header.get(at).copied().unwrap_or(b'a');
        }
        self.sent += n;
        Ok(n)
    }
}

impl Write for OneFrame {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Resident bytes of this process.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("linux");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("n");
    pages * 4096
}

#[test]
#[ignore = "measures this process's RSS: run alone, `--ignored --test-threads 1`"]
fn a_completed_message_leaves_no_large_buffer_behind() {
    const LEN: usize = 48 << 20;
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(LEN as u64).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    let stream = OneFrame {
        header,
        sent: 0,
        len: LEN,
    };
    // As the engine configures a connection: a 2 KiB read buffer, 64 MiB messages.
    let config = WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .max_message_size(Some((64 << 20) + 1))
        .max_frame_size(Some((64 << 20) + 1));
    let before = rss();
    let mut ws = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let message = ws.read().expect("the whole message");
    assert_eq!(message.len(), LEN);
    // The core is done with the message; the peer stays connected and silent.
    drop(message);
    let _ = ws.read();
    let held = rss().saturating_sub(before);
    drop(ws);
    let after_close = rss().saturating_sub(before);
    assert!(
        held < 4 << 20,
        "the connection still holds {} MiB after its message was delivered and dropped \
         ({} MiB once it is closed)",
        held >> 20,
        after_close >> 20
    );
}

/// The same, against the engine: a peer sends one complete message of 24 MiB (a valid
/// `ping`, padded with whitespace) and stays connected. The WebSocket layer keeps the
/// message's buffer for the connection's life (above), so the budget must still count
/// it; today it counts nothing, and 100 such peers hold 2.4 GiB the budget never sees.
#[tokio::test]
async fn a_completed_large_message_stays_charged_while_its_buffer_is_held() {
    use iii_tokio::engine::{bind, EngineSettings};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    use tokio::time::{timeout, Duration};

    const LEN: usize = 24 << 20;
    let server = bind("127.0.0.1:0", EngineSettings::default())
        .await
        .expect("bind");
    let addr = server.local_addr().to_string();
    let mut tcp = TcpStream::connect(&addr).await.expect("tcp");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&(LEN as u64).to_be_bytes());
    header.extend_from_slice(&[0; 4]);
    let mut payload = br#"{"type":"ping"}"#.to_vec();
    payload.resize(LEN, b' ');
    tcp.write_all(&header).await.expect("header");
    tcp.write_all(&payload).await.expect("payload");
    drop(payload);
    // Read until the engine's pong: the message was whole and the core answered it.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let found = timeout(Duration::from_secs(30), async {
        while !seen.windows(4).any(|w| w == b"pong") {
            let n = tcp.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the engine closed the connection");
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(found.is_ok(), "no pong");
    let used = server.handle().memory().used;
    assert!(
        used >= LEN,
        "the engine holds the 24 MiB buffer of a delivered message, the budget counts {used} bytes"
    );
    drop(tcp);
}

/// Opens a raw control connection to `addr` and sends `first` after the upgrade.
async fn raw_with(addr: &str, first: &[u8]) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("tcp");
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tcp.read_exact(&mut byte).await.expect("response");
        head.push(byte[0]);
    }
    tcp.write_all(first).await.expect("first bytes");
    tcp
}

/// Peers that each hold a small unfinished message (under `memory_small_holding_bytes`,
/// so the reserve does not apply) fill the whole engine-wide budget from one address;
/// a bystander from another address then sends one ordinary call of 100 KiB (more than
/// one read and more than any attacker holds). The budget cuts the largest holders of
/// the address holding the most, not the bystander that grows next.
#[tokio::test]
async fn peers_holding_small_unfinished_messages_cannot_get_a_bystander_cut() {
    use iii_tests::peer::{Patience, Peer};
    use iii_tokio::engine::{bind, EngineSettings};
    use serde_json::json;

    let server = bind(
        "127.0.0.1:0",
        EngineSettings {
            memory_budget_bytes: 1 << 20,
            ..EngineSettings::default()
        },
    )
    .await
    .expect("bind");
    let handle = server.handle().clone();
    let addr = server.local_addr().to_string();
    let mut held = Vec::new();
    // Fill the budget with ever smaller unfinished messages, until even 8 bytes are
    // refused: each cut (a refusal of the one asking, or of the largest holder) takes
    // only attackers.
    for chunk in [48 << 10, 4 << 10, 256, 8] {
        for _ in 0..64 {
            let before = handle.memory();
            // A text frame announcing 200 KiB (under the small holding), of which `chunk`.
            let mut first = vec![0x81, 0x80 | 127];
            first.extend_from_slice(&(200u64 << 10).to_be_bytes());
            first.extend_from_slice(&[0; 4]);
            first.resize(first.len() + chunk, b' ');
            held.push(raw_with(&addr, &first).await);
            let patience = Patience::new();
            loop {
                let now = handle.memory();
                if now.refused != before.refused
                    || now.evicted != before.evicted
                    || now.used != before.used
                {
                    break;
                }
                patience.wait("the chunk is charged or a holder cut").await;
            }
            if handle.memory().refused > before.refused {
                break;
            }
        }
    }
    let full = handle.memory();
    assert!(
        full.used + (100 << 10) > full.limit,
        "the attackers did not fill the budget: {full:?}"
    );
    let mut bystander = Peer::connect_from([127, 0, 0, 2].into(), &addr)
        .await
        .expect("bystander");
    let answer = bystander
        .call(
            "engine::functions::list",
            json!({"prefix": "nothing", "pad": "x".repeat(100 << 10)}),
        )
        .await;
    assert!(
        answer["result"].is_object(),
        "a bystander's ordinary call was not served: {answer} ({:?})",
        handle.memory()
    );
    assert!(
        handle.memory().evicted > full.evicted,
        "the bystander was served without any holder cut: {:?}",
        handle.memory()
    );
    // The holders cut were idle, waiting on their sockets: the budget woke their tasks,
    // which closed them. The engine keeps the bystander and the attackers never cut.
    let patience = Patience::new();
    loop {
        let memory = handle.memory();
        let cut = (memory.refused + memory.evicted) as usize;
        let open = handle.stats().await.expect("running").connections;
        if open + cut <= held.len() + 1 {
            break;
        }
        patience.wait("the holders cut are closed").await;
    }
    drop(held);
}
