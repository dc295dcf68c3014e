//! A scripted stand-in for an engine, on tokio and loopback: it accepts WebSocket
//! upgrades, keeps each request's headers, and hands every connection to the test,
//! which speaks the protocol by hand. For behaviours a real engine does not show on
//! demand: an engine that goes silent (half-open), that applies registrations late, or
//! that checks headers.

use std::time::Duration;

use async_tungstenite::tokio::TokioAdapter;
use async_tungstenite::tungstenite::handshake::server::{Request, Response};
use async_tungstenite::tungstenite::http::HeaderMap;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// How long a fake-engine step may wait before the test fails.
pub const STEP: Duration = Duration::from_secs(30);

/// One accepted connection.
pub struct FakeConn {
    /// The upgrade request's headers.
    pub headers: HeaderMap,
    /// The request path and query.
    pub path: String,
    /// The WebSocket.
    pub ws: WebSocketStream<TokioAdapter<TcpStream>>,
}

impl FakeConn {
    /// Sends a JSON text message.
    pub async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .expect("fake engine send");
    }

    /// Sends `workerregistered`.
    pub async fn register(&mut self, worker_id: &str) {
        self.send(json!({"type": "workerregistered", "worker_id": worker_id}))
            .await;
    }

    /// The next JSON text message; `None` once the connection ended.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            let message = tokio::time::timeout(STEP, self.ws.next())
                .await
                .expect("a message within STEP")?;
            match message.ok()? {
                Message::Text(text) => return serde_json::from_str(&text).ok(),
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }

    /// Reads until a message of `kind` arrives (returned), or the connection ends.
    pub async fn next_of(&mut self, kind: &str) -> Option<Value> {
        loop {
            let message = self.next_json().await?;
            if message["type"] == kind {
                return Some(message);
            }
        }
    }
}

/// A fake engine listening on an ephemeral loopback port.
pub struct FakeEngine {
    /// `ws://127.0.0.1:<port>`.
    pub url: String,
    connections: mpsc::UnboundedReceiver<FakeConn>,
    accept: tokio::task::JoinHandle<()>,
}

impl FakeEngine {
    /// Starts listening (inside a tokio runtime).
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("ws://{}", listener.local_addr().expect("address"));
        let (tx, connections) = mpsc::unbounded_channel();
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut headers = HeaderMap::new();
                    let mut path = String::new();
                    // The callback's error type is tungstenite's; it is never returned here.
                    #[allow(clippy::result_large_err)]
                    let capture = |request: &Request, response: Response| {
                        headers = request.headers().clone();
                        path = request.uri().to_string();
                        Ok(response)
                    };
                    if let Ok(ws) = async_tungstenite::tokio::accept_hdr_async(tcp, capture).await {
                        let _ = tx.send(FakeConn { headers, path, ws });
                    }
                });
            }
        });
        Self {
            url,
            connections,
            accept,
        }
    }

    /// The next connection a worker opened.
    pub async fn next_conn(&mut self) -> FakeConn {
        tokio::time::timeout(STEP, self.connections.recv())
            .await
            .expect("a connection within STEP")
            .expect("the accept loop runs")
    }
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
