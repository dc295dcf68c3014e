//! The protocol spoken directly over async-tungstenite: no SDK between the bench and
//! the engine, so these numbers show what the engine itself can do.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tokio::{client_async_with_config, TokioAdapter};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use bytes::Bytes;
use futures_util::StreamExt;
use iii_core::channel::{channel_url, ChannelRef, ChannelRefs};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::BoxError;

/// A client WebSocket over tokio.
pub type Ws = WebSocketStream<TokioAdapter<TcpStream>>;

/// How long any single protocol step may take.
pub const STEP: Duration = Duration::from_secs(30);

/// Opens a WebSocket to `url` (`ws://host:port/path`) with `TCP_NODELAY`.
pub async fn dial(url: &str) -> Result<Ws, BoxError> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(64 << 20);
    dial_with(url, config).await
}

/// [`dial`] with a WebSocket configuration of the caller's (e.g. a small read buffer for
/// thousands of idle connections).
pub async fn dial_with(url: &str, config: WebSocketConfig) -> Result<Ws, BoxError> {
    let rest = url.strip_prefix("ws://").ok_or("not a ws:// URL")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.split('?').next().unwrap_or(authority);
    let tcp = TcpStream::connect(authority).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) = tokio::time::timeout(STEP, client_async_with_config(url, tcp, Some(config)))
        .await
        .map_err(|_| "handshake timed out")??;
    Ok(ws)
}

/// The next text message parsed as JSON (binary and ping frames are skipped).
pub async fn next_json(ws: &mut Ws) -> Result<Value, BoxError> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Err(_) => return Err("timed out waiting for a message".into()),
            Ok(Some(Ok(Message::Text(text)))) => return Ok(serde_json::from_str(&text)?),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return Err(format!("connection closed: {frame:?}").into())
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err("connection ended".into()),
        }
    }
}

/// Dials a control connection and waits for `workerregistered`.
pub async fn control(url: &str) -> Result<Ws, BoxError> {
    registered(dial(url).await?).await
}

/// Waits on a freshly dialled control connection for `workerregistered`.
pub async fn registered(mut ws: Ws) -> Result<Ws, BoxError> {
    let hello = next_json(&mut ws).await?;
    if hello["type"] != "workerregistered" {
        return Err(format!("expected workerregistered, got {hello}").into());
    }
    Ok(ws)
}

/// Sends a JSON value as a text message.
pub async fn send_json(ws: &mut Ws, value: &Value) -> Result<(), BoxError> {
    ws.send(Message::text(value.to_string())).await?;
    Ok(())
}

/// Sends a ping and waits for the pong: everything sent before has been handled.
pub async fn sync(ws: &mut Ws) -> Result<(), BoxError> {
    send_json(ws, &json!({"type": "ping"})).await?;
    loop {
        if next_json(ws).await?["type"] == "pong" {
            return Ok(());
        }
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh invocation id (a UUID made from a counter).
pub fn invocation_id() -> String {
    let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    uuid::Uuid::from_u128((0x5eed_u128 << 96) | u128::from(n)).to_string()
}

/// An `invokefunction` message.
pub fn invoke(id: &str, function_id: &str, data: &Value) -> Value {
    json!({"type": "invokefunction", "invocation_id": id, "function_id": function_id, "data": data})
}

/// The result (or error) of an `invocationresult`.
pub fn result_of(message: &Value) -> Result<Value, BoxError> {
    if let Some(error) = message.get("error").filter(|e| !e.is_null()) {
        return Err(format!("invocation failed: {error}").into());
    }
    Ok(message.get("result").cloned().unwrap_or(Value::Null))
}

type Reply = oneshot::Sender<Result<Value, BoxError>>;

/// A control connection shared by tasks: calls are multiplexed by invocation id.
#[derive(Clone)]
pub struct Control {
    calls: mpsc::UnboundedSender<(String, Value, Reply)>,
}

impl Control {
    /// Dials `url` and starts the connection's task.
    pub async fn connect(url: &str) -> Result<Self, BoxError> {
        let mut ws = control(url).await?;
        let (calls, mut rx) = mpsc::unbounded_channel::<(String, Value, Reply)>();
        tokio::spawn(async move {
            let mut pending: BTreeMap<String, Reply> = BTreeMap::new();
            loop {
                tokio::select! {
                    call = rx.recv() => {
                        let Some((function_id, data, reply)) = call else { break };
                        let id = invocation_id();
                        let message = invoke(&id, &function_id, &data);
                        if let Err(e) = send_json(&mut ws, &message).await {
                            let _ = reply.send(Err(e));
                            break;
                        }
                        pending.insert(id, reply);
                    }
                    message = ws.next() => {
                        let Some(Ok(message)) = message else { break };
                        let Message::Text(text) = message else { continue };
                        let Ok(value) = serde_json::from_str::<Value>(&text) else { continue };
                        if value["type"] != "invocationresult" {
                            continue;
                        }
                        let id = value["invocation_id"].as_str().unwrap_or_default();
                        if let Some(reply) = pending.remove(id) {
                            let _ = reply.send(result_of(&value));
                        }
                    }
                }
            }
            let _ = ws.close(None).await;
        });
        Ok(Self { calls })
    }

    /// Calls `function_id` with `data`.
    pub async fn call(&self, function_id: &str, data: Value) -> Result<Value, BoxError> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send((function_id.to_owned(), data, reply))
            .map_err(|_| "control connection closed")?;
        tokio::time::timeout(STEP, answer)
            .await
            .map_err(|_| "call timed out")?
            .map_err(|_| "control connection closed")?
    }

    /// `engine::channels::create`.
    pub async fn create_channel(&self) -> Result<ChannelRefs, BoxError> {
        let refs = self.call("engine::channels::create", json!({})).await?;
        Ok(serde_json::from_value(refs)?)
    }
}

/// Opens one channel end.
pub async fn open_end(base: &str, channel_ref: &ChannelRef) -> Result<Ws, BoxError> {
    dial(&channel_url(base, channel_ref)).await
}

/// Writes `data` as one binary message (flushed).
pub async fn write(ws: &mut Ws, data: Bytes) -> Result<(), BoxError> {
    ws.send(Message::Binary(data)).await?;
    Ok(())
}

/// Closes a writer cleanly and waits for the engine's Close.
pub async fn close(ws: &mut Ws) -> Result<(), BoxError> {
    ws.close(None).await?;
    let drain = async { while let Some(Ok(_)) = ws.next().await {} };
    tokio::time::timeout(STEP, drain)
        .await
        .map_err(|_| "close timed out")?;
    Ok(())
}

/// The next binary message of a reader; `None` at a clean Close.
pub async fn next_binary(ws: &mut Ws) -> Result<Option<Bytes>, BoxError> {
    loop {
        match tokio::time::timeout(STEP, ws.next()).await {
            Err(_) => return Err("read timed out".into()),
            Ok(Some(Ok(Message::Binary(data)))) => return Ok(Some(data)),
            Ok(Some(Ok(Message::Close(frame)))) => {
                return match frame {
                    None => Ok(None),
                    Some(f) if u16::from(f.code) == 1000 => Ok(None),
                    Some(f) => Err(format!("reader closed with {f:?}").into()),
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err("reader ended without a Close".into()),
        }
    }
}

/// A callee serving `bench::echo` (result = input) and `bench::sink` (reads the channel
/// named by `input.reader` to its end and answers `{"bytes": n}`).
pub async fn serve(url: &str) -> Result<tokio::task::JoinHandle<()>, BoxError> {
    let mut ws = control(url).await?;
    for id in [crate::SINK, crate::ECHO] {
        send_json(&mut ws, &json!({"type": "registerfunction", "id": id})).await?;
    }
    sync(&mut ws).await?;
    let base = Arc::new(url.to_owned());
    Ok(tokio::spawn(async move {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Value>();
        loop {
            tokio::select! {
                message = ws.next() => {
                    let Some(Ok(message)) = message else { break };
                    let Message::Text(text) = message else { continue };
                    let Ok(call) = serde_json::from_str::<Value>(&text) else { continue };
                    if call["type"] != "invokefunction" {
                        continue;
                    }
                    let id = call["invocation_id"].clone();
                    let function_id = call["function_id"].clone();
                    if function_id == crate::ECHO {
                        let answer = json!({"type": "invocationresult", "invocation_id": id,
                            "function_id": function_id, "result": call["data"]});
                        if send_json(&mut ws, &answer).await.is_err() {
                            break;
                        }
                    } else {
                        let done = done_tx.clone();
                        let base = base.clone();
                        tokio::spawn(async move {
                            let outcome = sink(&base, &call["data"]["reader"]).await;
                            let mut answer = json!({"type": "invocationresult",
                                "invocation_id": id, "function_id": function_id});
                            match outcome {
                                Ok(n) => answer["result"] = json!({"bytes": n}),
                                Err(e) => answer["error"] = json!({"code": "invocation_failed",
                                    "message": e.to_string()}),
                            }
                            let _ = done.send(answer);
                        });
                    }
                }
                answer = done_rx.recv() => {
                    let Some(answer) = answer else { break };
                    if send_json(&mut ws, &answer).await.is_err() {
                        break;
                    }
                }
            }
        }
    }))
}

async fn sink(base: &str, reader: &Value) -> Result<u64, BoxError> {
    let reader = ChannelRef::from_value(reader).ok_or("no reader ref in the input")?;
    let mut ws = open_end(base, &reader).await?;
    let mut n = 0u64;
    while let Some(chunk) = next_binary(&mut ws).await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}
