//! The worker role machine: the core of a client SDK.
//!
//! A [`Worker`] keeps one control session with the engine (announce, registrations
//! replayed on every reconnect, calls with deadlines, invocations of local functions,
//! trigger requests) and any number of local channel ends, each on its own connection
//! (chunked writes under a byte window and send credit, reads with backpressure).
//! It is driven as described in the [crate docs](crate): feed inputs, drain
//! [`Worker::poll_output`], sleep until [`Worker::poll_timeout`].

mod calls;
mod config;
mod ends;
mod error;
mod events;
mod liveness;
mod session;
mod writes;

#[cfg(test)]
mod tests;

use crate::Instant;
use std::collections::{BTreeMap, VecDeque};

pub use calls::CallOptions;
pub use calls::MAX_CALL_TIMEOUT;
pub use config::{ConfigError, WorkerConfig, WorkerIdentity, MAX_RECONNECT_DELAY};
pub use error::{CompleteError, InvokeError, ReadError, RegisterError, WriteError};
pub use events::{
    CallOutcome, ConnectTarget, EndId, EndOutcome, FunctionSpec, Rejection, TraceContext,
    TriggerSpec, TriggerTypeSpec, WorkerEvent, WorkerOutput,
};
pub use liveness::{ConnectionState, SyncId, SyncOutcome};
pub use writes::{WriteFailure, WriteOp, WriteQueue, WriteResult};

use crate::ids::{ConnId, IdGen, InvocationId};
use crate::timers::TimerTable;
use crate::wire::{Message, PeerClose};
use calls::{Incoming, PendingCall, TriggerRequest};
use ends::End;
use liveness::Liveness;
use session::{Control, OfflineQueue, Registry};

/// What a deadline is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    /// Reconnect the control connection.
    Reconnect,
    /// A call's deadline.
    Call(InvocationId),
    /// Check the open control connection for silence.
    Keepalive,
    /// The engine has not been reached for `connect_timeout`.
    Unreachable,
    /// A registration barrier's deadline.
    Sync(SyncId),
}

/// The worker (client SDK) state machine. See the [module docs](self).
#[derive(Debug)]
pub struct Worker {
    config: WorkerConfig,
    ids: IdGen,
    next_conn: u64,
    next_end: u64,
    outputs: VecDeque<WorkerOutput>,
    timers: TimerTable<TimerKey>,
    /// The control connection's state.
    control: Control,
    /// Consecutive failed connects (or losses) since the last successful open.
    failures: u32,
    /// The worker id of the current control connection.
    worker_id: Option<String>,
    /// The last `workerregistered` seen: worker id and reattach token.
    previous: Option<(String, Option<String>)>,
    registry: Registry,
    offline: OfflineQueue,
    /// Calls made by this worker and not finished yet.
    calls: BTreeMap<InvocationId, PendingCall>,
    /// Invocations of local functions not completed yet.
    incoming: BTreeMap<InvocationId, Incoming>,
    /// Trigger requests (as a provider) not answered yet.
    trigger_requests: BTreeMap<String, TriggerRequest>,
    ends: BTreeMap<EndId, End>,
    end_conns: BTreeMap<ConnId, EndId>,
    /// `shutdown` was called.
    shut_down: bool,
    /// Keepalive, reachability and registration barriers.
    liveness: Liveness,
    /// The engine registered some connection of this worker once.
    ever_registered: bool,
}

impl Worker {
    /// A worker that immediately asks to connect its control connection.
    pub fn new(config: WorkerConfig, seed: [u8; 32], now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut worker = Self {
            config,
            ids: IdGen::new(seed),
            next_conn: 0,
            next_end: 0,
            outputs: VecDeque::new(),
            timers: TimerTable::default(),
            control: Control::Waiting,
            failures: 0,
            worker_id: None,
            previous: None,
            registry: Registry::default(),
            offline: OfflineQueue::default(),
            calls: BTreeMap::new(),
            incoming: BTreeMap::new(),
            trigger_requests: BTreeMap::new(),
            ends: BTreeMap::new(),
            end_conns: BTreeMap::new(),
            shut_down: false,
            liveness: Liveness::default(),
            ever_registered: false,
        };
        worker.connect_control();
        worker.arm_unreachable(now);
        Ok(worker)
    }

    /// The adapter opened connection `conn`.
    pub fn handle_connected(&mut self, now: Instant, conn: ConnId) {
        if self.control.connecting() == Some(conn) {
            self.control_connected(now, conn);
        } else if let Some(end) = self.end_conns.get(&conn).copied() {
            self.end_connected(now, end, conn);
        }
    }

    /// The adapter could not open connection `conn` (`status`: the HTTP status of a
    /// refused upgrade, e.g. 404 for a used channel ref).
    pub fn handle_connect_failed(&mut self, now: Instant, conn: ConnId, status: Option<u16>) {
        if self.control.conn() == Some(conn) {
            self.control_lost(now);
        } else if let Some(end) = self.end_conns.remove(&conn) {
            self.end_finished(end, EndOutcome::Refused { status });
        }
    }

    /// The engine gave a definitive answer to the control connection (nothing listens
    /// at its address, or the upgrade was refused as unauthorized): waiting for
    /// `connect_timeout` would not change it, so the engine counts as unreachable now.
    /// Queued calls fail with [`CallOutcome::Unreachable`] and
    /// [`WorkerEvent::Unreachable`] is reported, exactly as when `connect_timeout`
    /// passes; the worker keeps reconnecting. Call it after
    /// [`handle_connect_failed`](Self::handle_connect_failed); it does nothing while a
    /// connection is registered or once the worker stopped.
    pub fn engine_refused(&mut self, now: Instant) {
        let _ = now;
        if self.liveness.unreachable {
            return;
        }
        self.timers.cancel(&TimerKey::Unreachable);
        self.unreachable_now();
    }

    /// A message arrived on connection `conn`.
    pub fn handle_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        if self.control.open() == Some(conn) {
            let bytes = match message {
                Message::Text(text) => text.into_bytes(),
                Message::Binary(bytes) => bytes,
            };
            self.control_message(now, &bytes);
        } else if let Some(end) = self.end_conns.get(&conn).copied() {
            self.end_message(end, conn, message);
        }
    }

    /// `count` messages transmitted on `conn` were flushed to the socket.
    pub fn handle_sent(&mut self, now: Instant, conn: ConnId, count: usize) {
        let _ = now;
        if let Control::Open { conn: open, outbox } = &mut self.control {
            if *open == conn {
                outbox.sent(count);
                self.pump_control();
                return;
            }
        }
        if let Some(end) = self.end_conns.get(&conn).copied() {
            self.end_sent(end, count);
        }
    }

    /// Connection `conn` ended.
    pub fn handle_closed(&mut self, now: Instant, conn: ConnId, close: PeerClose) {
        if self.control.conn() == Some(conn) {
            self.control_lost(now);
        } else if let Some(end) = self.end_conns.remove(&conn) {
            self.end_closed(end, close);
        }
    }

    /// Fires every deadline at or before `now` (early or spurious calls are harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            match key {
                TimerKey::Reconnect => {
                    if matches!(self.control, Control::Waiting) {
                        self.connect_control();
                    }
                }
                TimerKey::Call(id) => self.call_timed_out(id),
                TimerKey::Keepalive => self.keepalive(now),
                TimerKey::Unreachable => self.unreachable_now(),
                TimerKey::Sync(id) => self.finish_sync(id, SyncOutcome::TimedOut),
            }
        }
    }

    /// The next instruction for the adapter.
    pub fn poll_output(&mut self) -> Option<WorkerOutput> {
        self.outputs.pop_front()
    }

    /// The next deadline: call `handle_timeout` then.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// The worker id the engine gave the current control connection (`None` while
    /// disconnected or before `workerregistered`).
    pub fn worker_id(&self) -> Option<&str> {
        self.worker_id.as_deref()
    }

    /// True while the control connection is open.
    pub fn is_connected(&self) -> bool {
        self.control.open().is_some()
    }

    /// Closes the control connection and every channel end; never reconnects. Pending
    /// calls finish with [`CallOutcome::Disconnected`], open ends with
    /// [`EndOutcome::Closed`].
    pub fn shutdown(&mut self, now: Instant) {
        let _ = now;
        self.shut_down = true;
        self.stop_control(
            Some(crate::wire::CloseCode::NORMAL),
            "shutdown",
            CallOutcome::Disconnected,
        );
        self.close_all_ends();
    }

    fn control_stopped(&self) -> bool {
        matches!(self.control, Control::Stopped)
    }

    fn alloc_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    fn emit(&mut self, output: WorkerOutput) {
        self.outputs.push_back(output);
    }

    fn event(&mut self, event: WorkerEvent) {
        self.outputs.push_back(WorkerOutput::Event(event));
    }
}
