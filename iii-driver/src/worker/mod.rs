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
//! // Connected, and the engine has applied the registration.
//! iii.wait_registered(Duration::from_secs(5)).await?;
//! let doubled = iii.trigger("math::double", json!({ "n": 21 })).await?;
//! assert_eq!(doubled["n"], 42);
//! # Ok(()) }
//! ```
//!
//! Channels: [`Iii::create_channel`] gives a [`ChannelWriter`] / [`ChannelReader`] pair and
//! their refs; the other side builds its end from a ref with [`ChannelReader::new`] or
//! [`ChannelWriter::new`]. Ends are driven by the worker task, so they take the worker
//! handle (`&iii`) rather than an address (the documentation's
//! `ChannelReader::new(iii.address(), &ref)` is in the `sdk` facade).

mod calls;
mod channel;
mod context;
mod credit;
mod dial;
mod error;
mod extract;
mod handlers;
mod introspect;
mod options;
mod reader;
mod registry;
mod state;
mod task;
mod tls;
#[cfg(feature = "tokio")]
pub(crate) mod tokio_io;
mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use iii_core::worker::Worker;

pub use crate::runtime::BoxFuture;
pub use bytes::Bytes;
pub use calls::{CallOptions, Reply};
pub use channel::{Channel, ChannelItem};
pub use context::{CallerKeys, Invocation};
pub use dial::{DEFAULT_URL, HANDSHAKE_TIMEOUT};
pub use error::{Error, IntoErrorBody, INVOCATION_FAILED};
pub use handlers::{TriggerHandler, TriggerRequest, DESERIALIZATION_ERROR, SERIALIZATION_ERROR};
pub use iii_core::channel::{extract_channel_refs, ChannelRef, Direction};
pub use iii_core::wire::ErrorBody;
/// The engine's built-in function ids and the error codes of `ErrorBody::code`.
pub use iii_core::wire::{builtins, codes};
pub use iii_core::worker::{
    ConfigError, ConnectionState, EndOutcome, InvokeError, ReadError, RegisterError, Rejection,
    TraceContext, WorkerConfig, WorkerIdentity, WriteError,
};
pub use iii_core::CloseCode;
pub use introspect::{
    FunctionInfo, FunctionsSubscription, TriggerInfo, TriggerTypeInfo, WorkerInfo,
};
pub use options::WorkerOptions;
pub use reader::ChannelReader;
pub use registry::{FunctionDef, FunctionRef, Trigger, TriggerTypeRef};
pub use state::ConnectionStates;
pub use writer::ChannelWriter;

use crate::runtime::{self, Runtime};
use task::{Command, Task};

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
    /// The connection state and its subscribers.
    pub(crate) state: state::StateCell,
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
/// handle (including channel ends, registration handles and handles captured by
/// registered functions) is dropped.
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
    /// [`Iii::wait_connected`]) and reconnects with backoff. Fails at once on unusable
    /// options (a URL that is not `ws://`/`wss://`, an invalid token, header or
    /// configuration) and with [`Error::NoRuntime`] where `rt` cannot run (e.g. tokio
    /// outside a tokio runtime). An engine that cannot be reached is reported by calls
    /// and waits after `core.connect_timeout`, naming the URL; a definitive answer (a
    /// refused TCP connection before the first registration, [`Error::Unauthorized`])
    /// is reported at once. The worker keeps retrying in the background either way.
    pub fn connect(rt: R, options: WorkerOptions) -> Result<Self, Error> {
        rt.check().map_err(Error::NoRuntime)?;
        let address = dial::resolve_url(options.url.as_deref(), env("III_URL").as_deref());
        let token = dial::resolve_token(options.token.as_deref(), env("III_TOKEN").as_deref());
        dial::endpoint(&address, token.as_deref(), &options.headers)?;
        let tls = dial::tls_config(&address, &options.tls_root_certificates)?;
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
            state: state::StateCell::default(),
        });
        let (commands, command_rx) = futures_channel::mpsc::unbounded();
        let (net_tx, net_rx) = futures_channel::mpsc::unbounded();
        let dial = dial::DialConfig {
            token,
            headers: options.headers,
            ws,
            socket_read_bytes: options.socket_read_bytes,
            tls,
        };
        let task = Task::new(rt.clone(), core, address, dial, shared.clone(), net_tx);
        rt.spawn(Box::pin(task.run(command_rx, net_rx)));
        Ok(Self {
            rt,
            commands,
            shared,
            invocation_timeout: options.invocation_timeout,
        })
    }

    /// The runtime this worker runs on.
    pub(crate) fn runtime(&self) -> &R {
        &self.rt
    }

    /// The engine's base URL (e.g. `ws://127.0.0.1:49134`).
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// True once the worker has stopped (shut down or fatally rejected).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::Acquire)
    }

    /// Where the control connection stands now.
    pub fn connection_state(&self) -> ConnectionState {
        self.shared.state.get()
    }

    /// The connection state now, then every change, until the worker stops (the
    /// stream ends after [`ConnectionState::Stopped`]).
    pub fn connection_states(&self) -> ConnectionStates {
        self.shared.state.subscribe()
    }

    pub(crate) fn send(&self, command: Command) -> Result<(), Error> {
        self.commands
            .unbounded_send(command)
            .map_err(|_| Error::Closed)
    }

    /// Waits until the engine has registered this worker (`workerregistered`) on the
    /// current connection. `Err(Timeout)` after `timeout`; `Err(Unreachable)` naming the
    /// URL once the engine was unreachable for `core.connect_timeout`, or at once when
    /// nothing listens at the URL before the worker was ever registered;
    /// `Err(Unauthorized)` at once when the engine refuses the upgrade with 401 or 403
    /// (bad or missing token); `Err(Rejected)`
    /// or `Err(Closed)` once the worker has stopped. Needs no runtime in the caller: the
    /// deadline is kept by the worker task.
    pub async fn wait_connected(&self, timeout: Duration) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        let deadline = runtime::now() + timeout;
        self.send(Command::WaitConnected { deadline, reply })?;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Waits until every function, trigger type and trigger registered before this
    /// call is in effect at the engine, so that a call made next finds them. Engines
    /// may apply registrations late (the reference engine holds them until this
    /// worker's announce has run); this waits for the engine's answer to the announce,
    /// then for a `ping` sent after the registrations to come back.
    ///
    /// Errors: `Timeout` after `timeout`, [`Error::Rejected`] if the engine refused a
    /// function of this worker (`FUNCTION_NAMESPACE_CONFLICT`) or the worker, and the
    /// errors of [`wait_connected`](Self::wait_connected).
    pub async fn wait_registered(&self, timeout: Duration) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.send(Command::Sync { timeout, reply })?;
        answer.await.unwrap_or(Err(Error::Closed))
    }

    /// Creates a channel at the engine (`buffer_size`: its buffer in messages; `None`
    /// for the engine's default) and returns both local ends and their refs. The ends
    /// connect lazily: the writer on its first write or close, the reader on its first
    /// read; an end dropped unused has no effect (hand its ref to another worker).
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

    /// Stops the worker: closes the control connection and every channel end (pending
    /// calls fail with [`Error::Disconnected`], open ends with a `Closed` outcome), and
    /// resolves once the connections are closed (or after a short grace).
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self.send(Command::Shutdown(Some(reply))).is_ok() {
            let _ = answer.await;
        }
    }

    /// Asks the worker to stop without waiting (see [`shutdown`](Self::shutdown)).
    pub fn shutdown_now(&self) {
        let _ = self.send(Command::Shutdown(None));
    }
}
