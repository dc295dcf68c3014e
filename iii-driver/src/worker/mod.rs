//! The worker SDK: connect to an engine, serve functions, call functions, stream data
//! through channels.
//!
//! [`Iii::connect`] spawns one task per worker on the given [`Runtime`]; that task owns
//! the sans-IO [`iii_core::worker::Worker`] and every connection, and the [`Iii`] handle
//! (cheap to clone) talks to it over a command queue. The worker connects in the
//! background and reconnects with the core's backoff; registrations are replayed on
//! every connection.
//!
//! ```no_run
//! # async fn demo<R: iii_driver::Runtime>(rt: R) -> Result<(), iii_driver::worker::Error> {
//! use std::time::Duration;
//! use iii_driver::worker::{Iii, WorkerOptions};
//! use serde_json::{json, Value};
//!
//! let iii = Iii::connect(rt, WorkerOptions::default())?;
//! iii.register_function("math::double", |input: Value| async move {
//!     let n = input["n"].as_i64().ok_or("`n` must be an integer")?;
//!     Ok::<_, &str>(json!({ "n": n * 2 }))
//! })?;
//! iii.wait_connected(Duration::from_secs(5)).await?;
//! let doubled = iii.trigger("math::double", json!({ "n": 21 })).await?;
//! assert_eq!(doubled["n"], 42);
//! # Ok(()) }
//! ```
//!
//! Channels: [`Iii::create_channel`] gives a [`ChannelWriter`] / [`ChannelReader`] pair and
//! their refs; the other side builds its end from a ref with [`ChannelReader::new`] or
//! [`ChannelWriter::new`]. Ends are driven by the worker task, so they take the worker
//! handle (`&iii`) rather than an address: the seed API's
//! `ChannelReader::new(iii.address(), &ref)` becomes `ChannelReader::new(&iii, &ref)`.

mod channel;
mod credit;
mod dial;
mod error;
mod handlers;
mod reader;
mod task;
#[cfg(feature = "tokio")]
mod tokio_io;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use futures_util::future::{self, Either};
use iii_core::wire::control::to_payload;
use iii_core::wire::Payload;
use iii_core::worker::{FunctionSpec, TriggerSpec, TriggerTypeSpec, Worker};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use bytes::Bytes;
pub use channel::{Channel, ChannelItem};
pub use dial::{DEFAULT_URL, HANDSHAKE_TIMEOUT};
pub use error::{Error, IntoErrorBody, INVOCATION_FAILED};
pub use handlers::{TriggerHandler, TriggerRequest, DESERIALIZATION_ERROR, SERIALIZATION_ERROR};
pub use iii_core::channel::{extract_channel_refs, ChannelRef, Direction};
pub use iii_core::wire::ErrorBody;
pub use iii_core::worker::{
    ConfigError, EndOutcome, InvokeError, ReadError, RegisterError, WorkerConfig, WorkerIdentity,
    WriteError,
};
pub use iii_core::CloseCode;
pub use reader::ChannelReader;
pub use writer::ChannelWriter;

use crate::runtime::{self, Runtime};
use task::{Command, DialConfig, Task};

/// How to reach the engine and who this worker is.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The engine URL (`ws://host:port`). `None`: the `III_URL` environment variable when
    /// it is set and not blank, else [`DEFAULT_URL`].
    pub url: Option<String>,
    /// The worker name announced to the engine. `None`: `III_WORKER_NAME` when set, else
    /// `iii-rs:<pid>` (with `:<n>` for the second and later worker of the process).
    pub name: Option<String>,
    /// The bearer token sent in the upgrade request. `None`: `III_TOKEN` when set and not
    /// blank, else no `Authorization` header.
    pub token: Option<String>,
    /// Deadline of [`Iii::trigger`] (and of channel creation); default 30 s. Overrides
    /// `core.invocation_timeout`.
    pub invocation_timeout: Duration,
    /// Limits, backoff and the rest of the identity (namespace, description). The
    /// identity's `name`, `runtime`, `version` and `pid` are set by the SDK.
    pub core: WorkerConfig,
    /// WebSocket read buffer of each connection (control and every channel end), in
    /// bytes: kept for the connection's life and cleared before every read, so it is
    /// what an idle channel end costs. Default 2 KiB (tungstenite's own default, 128 KiB,
    /// cost ~5 % of the CPU of a channel stream).
    pub read_buffer_bytes: usize,
    /// Largest single read from a socket, in bytes. Its buffer exists only while data
    /// arrives (freed whenever the socket has nothing more to read). Default 64 KiB.
    pub socket_read_bytes: usize,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            url: None,
            name: None,
            token: None,
            invocation_timeout: Duration::from_secs(30),
            core: WorkerConfig::default(),
            read_buffer_bytes: 2 * 1024,
            socket_read_bytes: 64 * 1024,
        }
    }
}

/// What the handles know without asking the task: the ids registered so far, so that
/// the synchronous registration methods can report duplicates and unknown ids.
#[derive(Debug, Default)]
pub(crate) struct Mirror {
    functions: BTreeSet<String>,
    trigger_types: BTreeSet<String>,
    pub(crate) triggers: BTreeSet<String>,
}

/// State shared by the handles and the task (never the core).
#[derive(Debug)]
pub(crate) struct Shared {
    address: String,
    mirror: Mutex<Mirror>,
    next_key: AtomicU64,
    /// The core's `writer_window_bytes`: every writer's initial credit.
    writer_window_bytes: usize,
    /// Set once the worker stopped (shut down or fatally rejected).
    pub(crate) stopped: AtomicBool,
}

impl Shared {
    pub(crate) fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn key(&self) -> u64 {
        self.next_key.fetch_add(1, Ordering::Relaxed)
    }
}

/// A connected (or connecting) worker. Cheap to clone: every clone drives the same
/// worker. The worker stops on [`Iii::shutdown`], on a fatal rejection, or once every
/// handle (including channel ends and handles captured by registered functions) is
/// dropped.
pub struct Iii<R: Runtime> {
    rt: R,
    commands: UnboundedSender<Command>,
    shared: Arc<Shared>,
    invocation_timeout: Duration,
}

impl<R: Runtime> Clone for Iii<R> {
    fn clone(&self) -> Self {
        Self {
            rt: self.rt.clone(),
            commands: self.commands.clone(),
            shared: self.shared.clone(),
            invocation_timeout: self.invocation_timeout,
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Iii<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Iii")
            .field("address", &self.shared.address)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl<R: Runtime> Iii<R> {
    /// Starts a worker on `rt`: it connects in the background (see
    /// [`Iii::wait_connected`]) and reconnects with backoff. Fails only on unusable
    /// options (a URL that is not `ws://`, an invalid token or configuration).
    pub fn connect(rt: R, options: WorkerOptions) -> Result<Self, Error> {
        let address = dial::resolve_url(options.url.as_deref(), env("III_URL").as_deref());
        let token = dial::resolve_token(options.token.as_deref(), env("III_TOKEN").as_deref());
        dial::endpoint(&address, token.as_deref())?;
        let mut config = options.core;
        config.invocation_timeout = options.invocation_timeout;
        let identity = &mut config.identity;
        identity.name =
            dial::resolve_name(options.name.as_deref(), env("III_WORKER_NAME").as_deref());
        identity.runtime = "rust".to_owned();
        identity.version = env!("CARGO_PKG_VERSION").to_owned();
        identity.pid = Some(std::process::id());
        let ws = dial::ws_config(config.max_control_message_bytes, options.read_buffer_bytes);
        let writer_window_bytes = config.writer_window_bytes;
        let core = Worker::new(config, runtime::os_seed(), runtime::now())?;
        let shared = Arc::new(Shared {
            address: address.clone(),
            mirror: Mutex::default(),
            next_key: AtomicU64::new(1),
            writer_window_bytes,
            stopped: AtomicBool::new(false),
        });
        let (commands, command_rx) = futures_channel::mpsc::unbounded();
        let (net_tx, net_rx) = futures_channel::mpsc::unbounded();
        let dial = DialConfig {
            address,
            token,
            ws,
            socket_read_bytes: options.socket_read_bytes,
        };
        let task = Task::new(rt.clone(), core, dial, shared.clone(), net_tx);
        rt.spawn(Box::pin(task.run(command_rx, net_rx)));
        Ok(Self {
            rt,
            commands,
            shared,
            invocation_timeout: options.invocation_timeout,
        })
    }

    /// The engine's base URL (e.g. `ws://127.0.0.1:49134`).
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// True once the worker has stopped (shut down or fatally rejected).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .unbounded_send(command)
            .map_err(|_| Error::Closed)
    }

    /// Waits until the engine has registered this worker (`workerregistered`) on the
    /// current connection. `Err(Timeout)` after `timeout`; `Err(Rejected)` or
    /// `Err(Closed)` once the worker has stopped.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::WaitConnected(reply))?;
        self.with_timeout(timeout, async {
            answer.await.unwrap_or(Err(Error::Closed))
        })
        .await
    }

    async fn with_timeout<T>(
        &self,
        timeout: Duration,
        work: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let deadline = self.rt.sleep_until(runtime::now() + timeout);
        match future::select(std::pin::pin!(work), deadline).await {
            Either::Left((result, _)) => result,
            Either::Right(((), _)) => Err(Error::Timeout),
        }
    }

    fn check_running(&self) -> Result<(), Error> {
        if self.is_stopped() {
            return Err(RegisterError::Stopped.into());
        }
        Ok(())
    }

    /// Serves `id` with `handler`: it receives the call's input and its `Ok` becomes the
    /// result, its `Err` an error for the caller ([`IntoErrorBody`]; a plain message is
    /// sent as `invocation_failed`). A panic is reported as `invocation_failed`.
    pub fn register_function<F, Fut, E>(&self, id: &str, handler: F) -> Result<(), Error>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        self.register_function_spec(spec(id), handler)
    }

    /// [`Iii::register_function`] with a full spec (description, schemas, metadata).
    pub fn register_function_spec<F, Fut, E>(
        &self,
        spec: FunctionSpec,
        handler: F,
    ) -> Result<(), Error>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        self.register_erased(spec, handlers::erase(handler))
    }

    /// Serves `id` with a typed handler: the input is deserialized into `I` (a bad input
    /// answers the caller with `deserialization_error`) and the output serialized.
    pub fn register_typed<I, O, F, Fut, E>(&self, id: &str, handler: F) -> Result<(), Error>
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        self.register_erased(spec(id), handlers::erase_typed(handler))
    }

    fn register_erased(&self, spec: FunctionSpec, handler: handlers::Handler) -> Result<(), Error> {
        self.check_running()?;
        if spec.id.is_empty() {
            return Err(RegisterError::EmptyField("id").into());
        }
        let mut mirror = self.shared.mirror();
        if mirror.functions.contains(&spec.id) {
            return Err(RegisterError::Duplicate(spec.id).into());
        }
        mirror.functions.insert(spec.id.clone());
        self.send(Command::RegisterFunction(spec, handler))
    }

    /// Stops serving `id`.
    pub fn unregister_function(&self, id: &str) -> Result<(), Error> {
        self.check_running()?;
        let mut mirror = self.shared.mirror();
        if !mirror.functions.remove(id) {
            return Err(RegisterError::NotFound(id.to_owned()).into());
        }
        self.send(Command::UnregisterFunction(id.to_owned()))
    }

    /// Calls `function_id` with `payload` and waits for its result, at most the default
    /// invocation timeout. `null` or no result reads as `Value::Null`.
    pub async fn trigger(&self, function_id: &str, payload: Value) -> Result<Value, Error> {
        self.trigger_with_timeout(function_id, payload, self.invocation_timeout)
            .await
    }

    /// [`Iii::trigger`] with its own deadline.
    pub async fn trigger_with_timeout(
        &self,
        function_id: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let result = self
            .call(function_id, to_payload(&payload), timeout)
            .await?;
        parse_result(result.as_deref())
    }

    /// [`Iii::trigger`] with a typed input and output.
    pub async fn trigger_typed<I, O>(&self, function_id: &str, input: &I) -> Result<O, Error>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let payload = serde_json::value::to_raw_value(input)?;
        let result = self
            .call(function_id, payload, self.invocation_timeout)
            .await?;
        parse_result(result.as_deref())
    }

    async fn call(
        &self,
        function_id: &str,
        data: Payload,
        timeout: Duration,
    ) -> Result<Option<Payload>, Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Invoke {
            function_id: function_id.to_owned(),
            data,
            timeout: Some(timeout),
            reply,
        })?;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Calls `function_id` fire-and-forget (no result, no error from the function).
    /// Queued while disconnected.
    pub fn trigger_void(&self, function_id: &str, payload: Value) -> Result<(), Error> {
        self.check_running()?;
        if function_id.is_empty() {
            return Err(iii_core::worker::InvokeError::EmptyFunctionId.into());
        }
        self.send(Command::InvokeVoid {
            function_id: function_id.to_owned(),
            data: to_payload(&payload),
        })
    }

    /// Creates a channel at the engine (`buffer_size`: its buffer in messages; `None`
    /// for the engine's default) and returns both local ends and their refs. The ends
    /// connect lazily: the writer on its first write or close, the reader on its first
    /// read.
    pub async fn create_channel(&self, buffer_size: Option<usize>) -> Result<Channel<R>, Error> {
        let (writer_key, reader_key) = (self.shared.key(), self.shared.key());
        let (items, item_rx) = futures_channel::mpsc::unbounded();
        let credit = self.new_write_credit();
        let (reply, answer) = oneshot::channel();
        self.send(Command::CreateChannel {
            buffer_size,
            writer: writer_key,
            reader: reader_key,
            credit: credit.clone(),
            items,
            reply,
        })?;
        let refs = answer.await.unwrap_or(Err(Error::Closed))?;
        Ok(Channel {
            writer: ChannelWriter::attach(self, writer_key, credit),
            reader: ChannelReader::attach(self, reader_key, item_rx),
            writer_ref: refs.writer,
            reader_ref: refs.reader,
        })
    }

    pub(crate) fn new_key(&self) -> u64 {
        self.shared.key()
    }

    pub(crate) fn new_write_credit(&self) -> Arc<credit::WriteCredit> {
        Arc::new(credit::WriteCredit::new(self.shared.writer_window_bytes))
    }

    pub(crate) fn commands(&self) -> UnboundedSender<Command> {
        self.commands.clone()
    }

    /// Provides trigger type `id`: the engine sends it the bindings of that type, which
    /// `handler` accepts or refuses.
    pub fn register_trigger_type<H: TriggerHandler>(
        &self,
        id: &str,
        description: &str,
        handler: H,
    ) -> Result<(), Error> {
        self.check_running()?;
        if id.is_empty() {
            return Err(RegisterError::EmptyField("id").into());
        }
        let mut mirror = self.shared.mirror();
        if mirror.trigger_types.contains(id) {
            return Err(RegisterError::Duplicate(id.to_owned()).into());
        }
        mirror.trigger_types.insert(id.to_owned());
        let spec = TriggerTypeSpec {
            id: id.to_owned(),
            description: description.to_owned(),
            trigger_request_format: None,
            call_request_format: None,
        };
        self.send(Command::RegisterTriggerType(spec, Arc::new(handler)))
    }

    /// Stops providing trigger type `id`.
    pub fn unregister_trigger_type(&self, id: &str) -> Result<(), Error> {
        self.check_running()?;
        let mut mirror = self.shared.mirror();
        if !mirror.trigger_types.remove(id) {
            return Err(RegisterError::NotFound(id.to_owned()).into());
        }
        self.send(Command::UnregisterTriggerType(id.to_owned()))
    }

    /// Binds `function_id` to a trigger of `trigger_type` with `config`; returns the
    /// binding id. The binding is replayed on every reconnect. Asynchronous because the
    /// worker task mints the id; a refusal by the provider is logged (`tracing`).
    pub async fn register_trigger(
        &self,
        trigger_type: &str,
        function_id: &str,
        config: Value,
    ) -> Result<String, Error> {
        let spec = TriggerSpec {
            trigger_type: trigger_type.to_owned(),
            function_id: function_id.to_owned(),
            config: to_payload(&config),
            metadata: None,
        };
        let (reply, answer) = oneshot::channel();
        self.send(Command::RegisterTrigger(spec, reply))?;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Removes a binding made with [`Iii::register_trigger`].
    pub fn unregister_trigger(&self, id: &str) -> Result<(), Error> {
        self.check_running()?;
        let mut mirror = self.shared.mirror();
        if !mirror.triggers.remove(id) {
            return Err(RegisterError::NotFound(id.to_owned()).into());
        }
        self.send(Command::UnregisterTrigger(id.to_owned()))
    }

    /// Stops the worker: closes the control connection and every channel end (pending
    /// calls fail with [`Error::Disconnected`], open ends with a `Closed` outcome), and
    /// resolves once the connections are closed (or after a short grace).
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Shutdown(reply)).is_ok() {
            let _ = answer.await;
        }
    }
}

fn spec(id: &str) -> FunctionSpec {
    FunctionSpec {
        id: id.to_owned(),
        description: None,
        request_format: None,
        response_format: None,
        metadata: None,
    }
}

/// Parses a call's raw result; no result reads as JSON `null`.
fn parse_result<T: DeserializeOwned>(
    result: Option<&serde_json::value::RawValue>,
) -> Result<T, Error> {
    let text = result.map_or("null", |raw| raw.get());
    Ok(serde_json::from_str(text)?)
}
