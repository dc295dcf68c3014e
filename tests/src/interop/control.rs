//! The test driver's own worker: a raw control WebSocket (no SDK) that calls functions,
//! and serves `interop.driver.echo` so peers have someone to call back.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

/// The function the driver serves: answers `{"sdk": "driver", "value": data.value}`.
pub const DRIVER_ECHO: &str = "interop.driver.echo";

type Pending = Arc<Mutex<BTreeMap<String, oneshot::Sender<Value>>>>;

/// Why a call did not return a result.
#[derive(Debug, Clone)]
pub enum CallError {
    /// The function failed: the `error` body of the `invocationresult`.
    Remote(Value),
    /// No answer within the timeout.
    Timeout(String),
    /// The driver's connection ended.
    Closed,
}

impl CallError {
    /// The `code` of a remote error (empty for other errors).
    pub fn code(&self) -> &str {
        match self {
            CallError::Remote(body) => body["code"].as_str().unwrap_or(""),
            _ => "",
        }
    }

    /// The `message` of a remote error (empty for other errors).
    pub fn message(&self) -> &str {
        match self {
            CallError::Remote(body) => body["message"].as_str().unwrap_or(""),
            _ => "",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Remote(body) => write!(f, "remote error {body}"),
            CallError::Timeout(what) => write!(f, "timed out: {what}"),
            CallError::Closed => write!(f, "driver connection closed"),
        }
    }
}

/// A raw control connection. Cheap to clone.
#[derive(Clone)]
pub struct Driver {
    outgoing: mpsc::UnboundedSender<Message>,
    pending: Pending,
    next_id: Arc<AtomicU64>,
}

impl Driver {
    /// Connects to `url` (the engine's control endpoint), announces itself as
    /// `interop-driver` and registers [`DRIVER_ECHO`]. Must run inside a tokio runtime.
    pub async fn connect(url: &str) -> Result<Self, String> {
        let (ws, _) = tokio::time::timeout(Duration::from_secs(10), connect_async(url))
            .await
            .map_err(|_| "driver connect timed out".to_owned())?
            .map_err(|e| format!("driver connect: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let (outgoing, mut queue) = mpsc::unbounded_channel::<Message>();
        let pending: Pending = Arc::default();
        tokio::spawn(async move {
            while let Some(message) = queue.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let reply = outgoing.clone();
        let results = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let Ok(value) = serde_json::from_str::<Value>(&text) else {
                    continue;
                };
                match value["type"].as_str() {
                    Some("invocationresult") => {
                        let id = value["invocation_id"].as_str().unwrap_or("").to_owned();
                        let waiter = results.lock().expect("pending lock").remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(value);
                        }
                    }
                    Some("invokefunction") => {
                        let answer = serve(&value);
                        let _ = reply.send(Message::text(answer.to_string()));
                    }
                    _ => {}
                }
            }
            // Dropping every waiter tells the callers the connection ended.
            results.lock().expect("pending lock").clear();
        });
        let driver = Self {
            outgoing,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
        };
        driver.send(json!({"type": "invokefunction", "function_id": "engine::workers::register",
            "action": {"type": "void"},
            "data": {"name": "interop-driver", "runtime": "rust", "version": "0", "pid": std::process::id()}}))?;
        driver.send(json!({"type": "registerfunction", "id": DRIVER_ECHO}))?;
        Ok(driver)
    }

    fn send(&self, value: Value) -> Result<(), String> {
        self.outgoing
            .send(Message::text(value.to_string()))
            .map_err(|_| "driver connection closed".to_owned())
    }

    /// Calls `function_id` with `data` and waits at most `timeout` for its result.
    pub async fn call(
        &self,
        function_id: &str,
        data: Value,
        timeout: Duration,
    ) -> Result<Value, CallError> {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let id = format!("00000000-0000-4000-8000-{n:012x}");
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock")
            .insert(id.clone(), tx);
        self.send(json!({"type": "invokefunction", "invocation_id": id,
            "function_id": function_id, "data": data}))
            .map_err(|_| CallError::Closed)?;
        let answer = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => return Err(CallError::Closed),
            Err(_) => {
                self.pending.lock().expect("pending lock").remove(&id);
                return Err(CallError::Timeout(format!(
                    "{function_id} gave no result within {timeout:?}"
                )));
            }
        };
        match answer.get("error") {
            Some(error) if !error.is_null() => Err(CallError::Remote(error.clone())),
            _ => Ok(answer.get("result").cloned().unwrap_or(Value::Null)),
        }
    }
}

fn serve(invoke: &Value) -> Value {
    let function_id = invoke["function_id"].as_str().unwrap_or("");
    let mut answer = json!({"type": "invocationresult",
        "invocation_id": invoke["invocation_id"], "function_id": function_id});
    if function_id == DRIVER_ECHO {
        let value = invoke
            .get("data")
            .and_then(|d| d.get("value"))
            .cloned()
            .unwrap_or(Value::Null);
        answer["result"] =
            json!({"sdk": "driver", "value": value, "data_present": invoke.get("data").is_some()});
    } else {
        answer["error"] = json!({"code": "function_not_found", "message": "Function not found"});
    }
    answer
}
