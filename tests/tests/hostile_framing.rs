//! Raw WebSocket clients that break the framing rules get the RFC 6455 close code of
//! what they did (1002 protocol error, 1007 invalid data, 1009 too big) rather than a
//! Close without a status, and the engine goes on serving everyone else.

use std::time::Duration;

use iii_tests::peer::{masked_text_frame, DeafPeer, Peer};
use iii_tokio::engine::{bind, EngineServer, EngineSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn engine() -> EngineServer {
    let mut settings = EngineSettings::default();
    settings.core.max_control_message_bytes = 1024;
    bind("127.0.0.1:0", settings).await.expect("bind")
}

/// A control connection upgraded by hand, reading what the engine sends.
async fn upgraded(addr: &str) -> TcpStream {
    DeafPeer::connect(addr).await.into_tcp()
}

/// A masked client frame with the first byte `first` (FIN, RSV bits, opcode).
fn masked_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = masked_text_frame(payload);
    frame[0] = first;
    frame
}

/// Reads the engine's frames until its Close; returns the Close's status code (`None`
/// for a Close without one, or a connection that ended without a Close).
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    let read = async {
        loop {
            let mut header = [0u8; 2];
            tcp.read_exact(&mut header).await.ok()?;
            let opcode = header[0] & 0x0f;
            let len = match header[1] & 0x7f {
                126 => {
                    let mut n = [0u8; 2];
                    tcp.read_exact(&mut n).await.ok()?;
                    u64::from(u16::from_be_bytes(n))
                }
                127 => {
                    let mut n = [0u8; 8];
                    tcp.read_exact(&mut n).await.ok()?;
                    u64::from_be_bytes(n)
                }
                n => u64::from(n),
            };
            let mut payload = vec![0u8; usize::try_from(len).ok()?];
            tcp.read_exact(&mut payload).await.ok()?;
            if opcode == 0x8 {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("closed in time")
}

#[tokio::test]
async fn framing_violations_are_closed_with_their_rfc_6455_codes() {
    let server = engine().await;
    let addr = server.local_addr().to_string();
    let unmasked = b"\x81\x05hello".to_vec();
    let oversized = masked_text_frame(&vec![b'x'; 4096]);
    let cases: [(&str, Vec<u8>, u16); 6] = [
        ("an unmasked client frame", unmasked, 1002),
        ("a reserved data opcode", masked_frame(0x83, b"x"), 1002),
        ("a reserved control opcode", masked_frame(0x8b, b""), 1002),
        ("a reserved bit set", masked_frame(0xc1, b"{}"), 1002),
        (
            "invalid UTF-8 in a text frame",
            masked_frame(0x81, &[0xff, 0xfe]),
            1007,
        ),
        ("a frame over the message limit", oversized, 1009),
    ];
    for (what, bytes, code) in cases {
        let mut tcp = upgraded(&addr).await;
        tcp.write_all(&bytes).await.expect("frame");
        assert_eq!(close_code(&mut tcp).await, Some(code), "{what}");
    }
    let mut bystander = Peer::connect(&server.url()).await.expect("bystander");
    assert!(bystander.is_served().await);
    server.shutdown().await;
}

#[tokio::test]
async fn a_fragmented_text_message_with_invalid_utf8_is_closed_with_1007() {
    let server = engine().await;
    let addr = server.local_addr().to_string();
    let mut tcp = upgraded(&addr).await;
    // "é" split across two fragments is fine; a lone continuation byte is not.
    let first = masked_frame(0x01, &[b'"', 0xc3]);
    let last = masked_frame(0x80, &[0xa9, 0x80, b'"']);
    tcp.write_all(&first).await.expect("first");
    tcp.write_all(&last).await.expect("last");
    assert_eq!(close_code(&mut tcp).await, Some(1007));
    server.shutdown().await;
}
