//! Is the engine there, and has it taken our registrations? Keepalive pings with an
//! idle timeout, the deadline after which an unreachable engine fails calls, the
//! connection state, and registration barriers.
//!
//! Keepalive uses the protocol's JSON `ping` (every engine answers `pong`, in order with
//! the messages before it) rather than WebSocket pings, so it works where an adapter
//! cannot send WebSocket control frames (a browser) and doubles as the barrier's probe.

use std::time::Duration;

use crate::ids::ConnId;
use crate::wire::{CloseCode, ControlMessage};
use crate::Instant;

use super::{CallOutcome, TimerKey, Worker, WorkerEvent, WorkerOutput};

/// Where the control connection stands, as an application sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionState {
    /// The first connection is being made (or the engine has not registered it yet).
    Connecting,
    /// The engine registered this worker (`workerregistered`) on the current connection.
    Connected,
    /// The connection was lost (or never made it): the worker is reconnecting.
    Reconnecting,
    /// Shut down or fatally rejected: the worker never connects again.
    Stopped,
}

/// Handle of a registration barrier (see [`Worker::sync`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncId(pub u64);

/// How a registration barrier finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Everything registered before the barrier is in effect at the engine.
    Done,
    /// The deadline passed first.
    TimedOut,
    /// The worker stopped first.
    Stopped,
}

/// Liveness state of the current control connection.
#[derive(Debug, Default)]
pub(super) struct Liveness {
    /// The announce call of this connection, until the engine answers it.
    pub(super) announce: Option<crate::ids::InvocationId>,
    /// The engine answered this connection's announce.
    pub(super) announced: bool,
    /// When the last message arrived on this connection.
    pub(super) last_inbound: Option<Instant>,
    /// Pings sent / pongs received on this connection.
    pings: u64,
    pongs: u64,
    /// Barriers not finished: the ping count they wait for, once their ping is out.
    syncs: std::collections::BTreeMap<SyncId, Option<u64>>,
    next_sync: u64,
    /// The engine could not be reached within `connect_timeout`: calls fail at once.
    pub(super) unreachable: bool,
}

impl Worker {
    /// Where the control connection stands.
    pub fn connection_state(&self) -> ConnectionState {
        if self.control_stopped() {
            ConnectionState::Stopped
        } else if self.worker_id.is_some() {
            ConnectionState::Connected
        } else if self.ever_registered {
            ConnectionState::Reconnecting
        } else {
            ConnectionState::Connecting
        }
    }

    /// A registration barrier: [`WorkerEvent::Synced`] reports when every function,
    /// trigger type and trigger registered before this call is in effect at the engine,
    /// or that `timeout` passed first.
    ///
    /// Engines may apply registrations late (the reference engine holds them until the
    /// announce call has run). The barrier waits for the engine's answer to this
    /// connection's announce, then for the `pong` to a `ping` sent after the
    /// registrations: engines handle control messages in order. After a reconnect the
    /// barrier starts over on the new connection (registrations are replayed there).
    pub fn sync(&mut self, now: Instant, timeout: Duration) -> SyncId {
        self.liveness.next_sync += 1;
        let id = SyncId(self.liveness.next_sync);
        if self.control_stopped() {
            self.event(WorkerEvent::Synced {
                id,
                outcome: SyncOutcome::Stopped,
            });
            return id;
        }
        self.liveness.syncs.insert(id, None);
        let at = now.checked_add(timeout).unwrap_or(now);
        self.timers.set(TimerKey::Sync(id), at);
        self.advance_syncs();
        id
    }

    /// Sends the barriers' pings once the announce is answered, and finishes those
    /// whose pong came back.
    pub(super) fn advance_syncs(&mut self) {
        if self.control.open().is_none() || !self.liveness.announced {
            return;
        }
        let waiting = self.liveness.syncs.values().any(Option::is_none);
        if waiting {
            self.send_ping();
            let target = self.liveness.pings;
            for slot in self.liveness.syncs.values_mut() {
                slot.get_or_insert(target);
            }
        }
        let pongs = self.liveness.pongs;
        let done: Vec<SyncId> = self
            .liveness
            .syncs
            .iter()
            .filter(|(_, target)| target.is_some_and(|t| t <= pongs))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            self.finish_sync(id, SyncOutcome::Done);
        }
    }

    pub(super) fn pending_syncs(&self) -> Vec<SyncId> {
        self.liveness.syncs.keys().copied().collect()
    }

    pub(super) fn finish_sync(&mut self, id: SyncId, outcome: SyncOutcome) {
        if self.liveness.syncs.remove(&id).is_some() {
            self.timers.cancel(&TimerKey::Sync(id));
            self.event(WorkerEvent::Synced { id, outcome });
        }
    }

    fn send_ping(&mut self) {
        self.liveness.pings += 1;
        self.push_control(ControlMessage::Ping.encode());
        self.pump_control();
    }

    /// A `pong` arrived.
    pub(super) fn pong(&mut self) {
        self.liveness.pongs += 1;
        self.advance_syncs();
    }

    /// The engine answered this connection's announce (success or not).
    pub(super) fn announced(&mut self) {
        self.liveness.announce = None;
        self.liveness.announced = true;
        self.advance_syncs();
    }

    /// A control connection opened: fresh counters, the first keepalive check.
    pub(super) fn liveness_opened(&mut self, now: Instant, announce: crate::ids::InvocationId) {
        let live = &mut self.liveness;
        live.announce = Some(announce);
        live.announced = false;
        live.last_inbound = Some(now);
        live.pings = 0;
        live.pongs = 0;
        for target in live.syncs.values_mut() {
            *target = None;
        }
        if self.config.keepalive {
            let at = now
                .checked_add(self.config.keepalive_interval)
                .unwrap_or(now);
            self.timers.set(TimerKey::Keepalive, at);
        }
    }

    /// Any message on the open control connection.
    pub(super) fn inbound(&mut self, now: Instant) {
        self.liveness.last_inbound = Some(now);
    }

    /// The engine registered the current connection: reachable again.
    pub(super) fn reached(&mut self) {
        self.ever_registered = true;
        self.liveness.unreachable = false;
        self.timers.cancel(&TimerKey::Unreachable);
    }

    /// The control connection is down: the engine counts as unreachable if it is not
    /// back within `connect_timeout` (an earlier deadline stands).
    pub(super) fn arm_unreachable(&mut self, now: Instant) {
        self.timers.cancel(&TimerKey::Keepalive);
        if !self.timers.contains(&TimerKey::Unreachable) && !self.liveness.unreachable {
            let at = now.checked_add(self.config.connect_timeout).unwrap_or(now);
            self.timers.set(TimerKey::Unreachable, at);
        }
    }

    /// `connect_timeout` passed without a registered connection: queued calls fail,
    /// and new ones fail at once until the engine is reached.
    pub(super) fn unreachable_now(&mut self) {
        if self.worker_id.is_some() || self.control_stopped() {
            return;
        }
        self.liveness.unreachable = true;
        let queued: Vec<_> = self.calls.keys().copied().collect();
        for id in queued {
            self.finish_call(id, CallOutcome::Unreachable);
        }
        self.event(WorkerEvent::Unreachable);
    }

    /// The keepalive check: ping a quiet connection, drop a dead one.
    pub(super) fn keepalive(&mut self, now: Instant) {
        let Some(conn) = self.control.open() else {
            return;
        };
        let last = self.liveness.last_inbound.unwrap_or(now);
        let quiet = now.saturating_duration_since(last);
        let interval = self.config.keepalive_interval;
        if quiet >= self.config.idle_timeout {
            self.idle_lost(now, conn);
            return;
        }
        let later = |at: Instant, by: Duration| at.checked_add(by).unwrap_or(at);
        let next = if quiet >= interval {
            self.send_ping();
            later(now, interval).min(later(last, self.config.idle_timeout))
        } else {
            later(last, interval)
        };
        self.timers.set(TimerKey::Keepalive, next);
    }

    fn idle_lost(&mut self, now: Instant, conn: ConnId) {
        self.emit(WorkerOutput::Close {
            conn,
            code: Some(CloseCode::GOING_AWAY),
            reason: "idle timeout",
        });
        self.control_lost(now);
    }
}
