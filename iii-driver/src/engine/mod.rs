//! The engine server: one task owns the core [`Engine`]; each accepted TCP connection
//! runs [`serve_connection`] (the HTTP upgrade, then the connection pump).
//!
//! If the engine task ends for any reason (a panic included), every upgrade waiting for
//! its decision and every later one is answered 503, and [`EngineHandle::stopped`]
//! resolves, so the process around it can exit and be restarted.

mod events;
mod serve;
mod settings;
mod task;
pub mod tls;

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_channel::mpsc::UnboundedSender;
use futures_channel::oneshot;
use futures_util::future::Shared;
use futures_util::FutureExt;
use iii_core::engine::{Engine, EngineStats};

#[cfg(any(test, fuzzing))]
pub(crate) use serve::ws_config;
pub(crate) use serve::{log_refusal, serve_counted};
pub use serve::{serve_connection, serve_connection_on};
pub use settings::{EngineSettings, ListenerSettings, StartError};
use task::{run, Input};
use tls::ServerTls;
pub use tls::{TlsError, TlsSettings};

use crate::memory::{MemoryBudget, MemoryUse};
use crate::metrics::{Snapshot, TransportCounters};
use crate::runtime::{now, try_os_seed, Runtime};
use crate::slots::SlotBudget;

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// Every invocation was answered and every channel finished.
    Idle,
    /// The drain timeout passed; what was left was closed with 1001.
    TimedOut,
}

/// How the engine task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineExit {
    /// It was shut down.
    Shutdown,
    /// It panicked (a bug: the panic message was logged).
    Panicked,
    /// Every handle to it was dropped.
    Abandoned,
}

/// A handle to a running engine task. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    tx: UnboundedSender<Input>,
    settings: Arc<EngineSettings>,
    running: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
    exit: Shared<oneshot::Receiver<EngineExit>>,
    pub(crate) transport: Arc<TransportCounters>,
    /// Pre-upgrade slots, per listener and per address.
    pub(crate) slots: Arc<SlotBudget>,
    /// The TLS side of each listener.
    pub(crate) tls: Arc<ServerTls>,
    /// The engine-wide byte budget of messages in progress and unsent output.
    pub(crate) memory: Arc<MemoryBudget>,
    /// The per-reason limit of refused upgrades' log lines.
    pub(crate) refusal_log: Arc<std::sync::Mutex<crate::log_limit::ReasonLimit>>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

/// The engine task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the engine has stopped")]
pub struct EngineStopped;

impl EngineHandle {
    /// Current counts (connections, channels, buffered bytes, ...).
    pub async fn stats(&self) -> Result<EngineStats, EngineStopped> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .unbounded_send(Input::Stats(reply))
            .map_err(|_| EngineStopped)?;
        answer.await.map_err(|_| EngineStopped)
    }

    /// Closes every connection (1001) and stops the engine task.
    pub async fn shutdown(&self) {
        let (reply, done) = oneshot::channel();
        if self.tx.unbounded_send(Input::Shutdown(reply)).is_ok() {
            let _ = done.await;
        }
    }

    /// True while the engine task runs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// True once a drain has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// True while the engine takes new workers: running and not draining (what
    /// `GET /healthz` answers 200 for).
    pub fn is_serving(&self) -> bool {
        self.is_running() && !self.is_draining()
    }

    /// Drains, then stops: from now on new workers are refused (503) while connected
    /// workers go on, in-flight invocations finish and open channels drain; once nothing
    /// is in flight, or after `timeout`, every connection is closed with 1001 and the
    /// engine task stops once their close handshakes are done (at most
    /// [`EngineSettings::close_wait`] more), so a process that exits next leaves no peer
    /// with a reset.
    pub async fn drain(&self, timeout: Duration) -> DrainOutcome {
        self.draining.store(true, Ordering::Release);
        let (done, outcome) = oneshot::channel();
        let until = now().checked_add(timeout).unwrap_or_else(now);
        if self
            .tx
            .unbounded_send(Input::Drain { until, done })
            .is_err()
        {
            return DrainOutcome::Idle;
        }
        outcome.await.unwrap_or(DrainOutcome::Idle)
    }

    /// What `GET /metrics` shows, now.
    async fn snapshot(&self) -> Option<Snapshot> {
        let (reply, answer) = oneshot::channel();
        self.tx.unbounded_send(Input::Metrics(reply)).ok()?;
        let (metrics, stats) = answer.await.ok()?;
        Some(Snapshot::new(
            metrics,
            stats,
            &self.transport,
            &self.slots,
            self.listener_names(),
            self.memory.snapshot(),
            self.is_draining(),
        ))
    }

    /// Listener names by index, for `/metrics`: `main`, then each listener's policy name.
    fn listener_names(&self) -> Vec<String> {
        std::iter::once("main".to_owned())
            .chain(
                self.settings
                    .listeners
                    .iter()
                    .map(|l| l.policy.name.clone()),
            )
            .collect()
    }

    /// The engine-wide byte budget's use now (see
    /// [`EngineSettings::memory_budget_bytes`]).
    pub fn memory(&self) -> MemoryUse {
        self.memory.snapshot()
    }

    /// Resolves when the engine task has ended, with how.
    pub async fn stopped(&self) -> EngineExit {
        self.exit.clone().await.unwrap_or(EngineExit::Abandoned)
    }

    /// The settings in force.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Reads the certificate and key files of every TLS listener again: handshakes that
    /// start afterwards get the new certificate, open connections keep theirs. A listener
    /// whose files cannot be used keeps its previous certificate (logged at warn) while
    /// the others are reloaded. Returns how many listeners were reloaded (0 without a TLS
    /// listener), or the first [`TlsError`], which names the file. What `iii-engine`
    /// does on SIGHUP; see [`tls`] for the file polling that does it by itself. Reads
    /// the files on the calling thread (two small files per listener).
    pub fn reload_tls(&self) -> Result<usize, TlsError> {
        self.tls.reload()
    }

    /// Makes the engine task panic, to test what happens around it. Only with the
    /// `fault-injection` feature; never enable it in production.
    #[cfg(feature = "fault-injection")]
    #[doc(hidden)]
    pub fn inject_panic(&self) {
        let _ = self.tx.unbounded_send(Input::Panic);
    }
}

/// Starts the engine task on `rt`. Feed it connections with [`serve_connection`].
pub fn start<R: Runtime>(rt: R, settings: EngineSettings) -> Result<EngineHandle, StartError> {
    settings.validate()?;
    let seed = try_os_seed().map_err(|e| StartError::Randomness(e.to_string()))?;
    let engine = Engine::new(settings.core_config(), seed, now())?;
    let (tx, rx) = futures_channel::mpsc::unbounded();
    let (exit_tx, exit_rx) = oneshot::channel();
    let running = Arc::new(AtomicBool::new(true));
    let transport = Arc::new(TransportCounters::default());
    let tls = Arc::new(ServerTls::load(&settings, transport.clone())?);
    let settings = Arc::new(settings);
    let handle = EngineHandle {
        tx,
        settings: settings.clone(),
        running: running.clone(),
        draining: Arc::new(AtomicBool::new(false)),
        exit: exit_rx.shared(),
        transport,
        slots: SlotBudget::new(&settings),
        tls: tls.clone(),
        memory: Arc::new(MemoryBudget::with_policy(settings.memory_policy())),
        refusal_log: Arc::new(std::sync::Mutex::new(crate::log_limit::ReasonLimit::new(
            u32::try_from(settings.log_lines_per_reason).unwrap_or(u32::MAX),
            settings.log_window,
        ))),
    };
    #[cfg(feature = "tls")]
    if let (true, Some(every)) = (tls.any(), settings.tls_poll_interval) {
        let exit = handle.exit.clone();
        rt.spawn(Box::pin(tls::watch(rt.clone(), tls, every, exit)));
    }
    let task = AssertUnwindSafe(run(rt.clone(), engine, rx, settings)).catch_unwind();
    rt.spawn(Box::pin(async move {
        let exit = match task.await {
            Ok(()) => EngineExit::Shutdown,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %message, "the engine task panicked; the engine stops");
                EngineExit::Panicked
            }
        };
        running.store(false, Ordering::Release);
        let _ = exit_tx.send(exit);
    }));
    Ok(handle)
}
