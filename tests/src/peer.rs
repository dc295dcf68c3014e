//! Peers for tests against a real engine on loopback: a well-behaved raw WebSocket
//! worker ([`Peer`]) and a hostile one that completes the upgrade by hand and then
//! never reads a byte ([`DeafPeer`]).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use async_tungstenite::tokio::{
    client_async_tls_with_connector_and_config, connect_async, ConnectStream,
};
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a test waits for any one answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// A raw control connection speaking JSON.
pub struct Peer {
    ws: WebSocketStream<ConnectStream>,
    calls: u64,
    /// The worker id from `workerregistered`.
    pub worker_id: String,
    /// The reattach token from `workerregistered`.
    pub reattach_token: String,
}

impl Peer {
    /// Connects to `url` and reads the greeting.
    pub async fn connect(url: &str) -> Result<Self, WsError> {
        let (ws, _) = connect_async(url).await?;
        Self::greeted(ws).await
    }

    /// Connects to `ws://{addr}` from the local address `local` (another loopback
    /// address, for a peer the engine must tell apart by address) and reads the greeting.
    pub async fn connect_from(local: IpAddr, addr: &str) -> Result<Self, WsError> {
        let socket = match local {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(local, 0))?;
        let target: SocketAddr = addr.parse().expect("a socket address");
        let tcp = socket.connect(target).await?;
        let (ws, _) =
            client_async_tls_with_connector_and_config(format!("ws://{addr}"), tcp, None, None)
                .await?;
        Self::greeted(ws).await
    }

    async fn greeted(ws: WebSocketStream<ConnectStream>) -> Result<Self, WsError> {
        let mut peer = Self {
            ws,
            calls: 0,
            worker_id: String::new(),
            reattach_token: String::new(),
        };
        let hello = peer.next_json().await;
        peer.worker_id = hello["worker_id"].as_str().unwrap_or("").to_owned();
        peer.reattach_token = hello["reattach_token"].as_str().unwrap_or("").to_owned();
        Ok(peer)
    }

    /// Sends one JSON message.
    pub async fn send(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send");
    }

    /// The next JSON message, within [`ANSWER_TIMEOUT`].
    pub async fn next_json(&mut self) -> Value {
        loop {
            match tokio::time::timeout(ANSWER_TIMEOUT, self.ws.next())
                .await
                .expect("an answer in time")
            {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(&text).expect("json");
                }
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }

    /// The next message that satisfies `pick` (others are dropped).
    pub async fn next_where(&mut self, pick: impl Fn(&Value) -> bool) -> Value {
        loop {
            let message = self.next_json().await;
            if pick(&message) {
                return message;
            }
        }
    }

    /// Calls `function_id` and returns its `invocationresult`.
    pub async fn call(&mut self, function_id: &str, data: Value) -> Value {
        self.calls += 1;
        let id = format!("00000000-0000-4000-8000-{:012x}", self.calls);
        self.send(json!({"type": "invokefunction", "invocation_id": id,
                         "function_id": function_id, "data": data}))
            .await;
        self.next_where(|m| m["type"] == "invocationresult" && m["invocation_id"] == id.as_str())
            .await
    }

    /// The control connection answers a JSON ping.
    pub async fn is_served(&mut self) -> bool {
        self.send(json!({"type": "ping"})).await;
        self.next_where(|m| m["type"] == "pong").await["type"] == "pong"
    }

    /// Registers `id` (no answer is expected).
    pub async fn register(&mut self, id: &str) {
        self.send(json!({"type": "registerfunction", "id": id}))
            .await;
    }

    /// Waits for the engine to end the connection, returning how it ended.
    pub async fn closed(&mut self) -> Option<Message> {
        loop {
            match tokio::time::timeout(ANSWER_TIMEOUT, self.ws.next())
                .await
                .expect("closed in time")
            {
                Some(Ok(Message::Close(frame))) => return Some(Message::Close(frame)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    }
}

/// A client that upgrades to a control connection by hand, may send a few messages,
/// and never reads anything: its receive window fills and stays full.
pub struct DeafPeer {
    tcp: TcpStream,
}

impl DeafPeer {
    /// Connects to `addr` (`host:port`) and completes the upgrade to `/`.
    pub async fn connect(addr: &str) -> Self {
        let mut tcp = TcpStream::connect(addr).await.expect("tcp");
        let request = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.expect("request");
        // Read exactly the 101 response head; nothing after it is ever read.
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            tcp.read_exact(&mut byte).await.expect("response");
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"), "upgraded");
        Self { tcp }
    }

    /// The upgraded socket, for tests that write raw frames and read what the engine
    /// sends back.
    pub fn into_tcp(self) -> TcpStream {
        self.tcp
    }

    /// Sends one masked text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.tcp
            .write_all(&masked_text_frame(text.as_bytes()))
            .await
            .expect("frame");
    }
}

/// A client-to-server WebSocket text frame (FIN, masked with a fixed key).
pub fn masked_text_frame(payload: &[u8]) -> Vec<u8> {
    const MASK: [u8; 4] = [0x12, 0x34, 0x56, 0x78];
    let mut frame = vec![0x81];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= u16::MAX as usize => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// A bounded wait for a condition polled by the test: [`Patience::wait`] sleeps 20 ms,
/// and fails the test once [`ANSWER_TIMEOUT`] has passed since [`Patience::new`].
pub struct Patience {
    deadline: tokio::time::Instant,
}

impl Patience {
    /// Starts the clock.
    pub fn new() -> Self {
        Self {
            deadline: tokio::time::Instant::now() + ANSWER_TIMEOUT,
        }
    }

    /// Sleeps a little before the next poll; panics naming `what` when time is up.
    pub async fn wait(&self, what: &str) {
        assert!(tokio::time::Instant::now() < self.deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Default for Patience {
    fn default() -> Self {
        Self::new()
    }
}
