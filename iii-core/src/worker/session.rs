//! The control session: connect, announce and replay, reconnect with backoff, and the
//! registration commands whose effects are replayed on every connection.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use crate::Instant;

use serde::Serialize;

use super::{
    CallOutcome, ConnectTarget, FunctionSpec, RegisterError, TimerKey, TriggerSpec,
    TriggerTypeSpec, Worker, WorkerEvent, WorkerOutput,
};
use crate::ids::{ConnId, InvocationId};
use crate::outbox::Outbox;
use crate::wire::control::to_payload;
use crate::wire::control::{
    InvokeFunction, Reattach, RegisterFunction, RegisterTrigger, RegisterTriggerType,
    UnregisterFunction, UnregisterTrigger, UnregisterTriggerType,
};
use crate::wire::{CloseCode, ControlMessage, Message, Text};

/// The function every connection calls first to announce its identity.
const REGISTER_FUNCTION: &str = crate::wire::builtins::WORKERS_REGISTER;

/// State of the control connection.
#[derive(Debug)]
pub(super) enum Control {
    /// `Connect` was emitted; waiting for the adapter.
    Connecting(ConnId),
    /// Open; control messages go through the outbox.
    Open {
        /// The connection.
        conn: ConnId,
        /// Its queue under send credit.
        outbox: Outbox,
    },
    /// Not connected; a reconnect timer is pending (or about to be).
    Waiting,
    /// Shut down or fatally rejected: never connects again.
    Stopped,
}

impl Control {
    /// The connection in progress, if any.
    pub(super) fn connecting(&self) -> Option<ConnId> {
        match self {
            Control::Connecting(conn) => Some(*conn),
            _ => None,
        }
    }

    /// The open connection, if any.
    pub(super) fn open(&self) -> Option<ConnId> {
        match self {
            Control::Open { conn, .. } => Some(*conn),
            _ => None,
        }
    }

    /// The connection in progress or open, if any.
    pub(super) fn conn(&self) -> Option<ConnId> {
        self.connecting().or_else(|| self.open())
    }
}

/// Control messages waiting for the connection to open.
#[derive(Debug, Default)]
pub(super) struct OfflineQueue {
    entries: VecDeque<(Option<InvocationId>, Text)>,
    bytes: usize,
}

impl OfflineQueue {
    fn remove_call(&mut self, id: InvocationId) {
        let before = self.entries.len();
        self.entries.retain(|(call, _)| *call != Some(id));
        if self.entries.len() != before {
            self.bytes = self.entries.iter().map(|(_, text)| text.len()).sum();
        }
    }
}

/// Everything registered, replayed on every connection.
#[derive(Debug, Default)]
pub(super) struct Registry {
    functions: BTreeMap<String, FunctionSpec>,
    trigger_types: BTreeMap<String, TriggerTypeSpec>,
    triggers: BTreeMap<String, TriggerSpec>,
}

impl Registry {
    /// True when `id` is a locally registered function.
    pub(super) fn has_function(&self, id: &str) -> bool {
        self.functions.contains_key(id)
    }

    /// True when `id` is a locally registered trigger type.
    pub(super) fn has_trigger_type(&self, id: &str) -> bool {
        self.trigger_types.contains_key(id)
    }
}

#[derive(Serialize)]
struct Announce<'a> {
    runtime: &'a str,
    version: &'a str,
    name: &'a str,
    os: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    telemetry: Telemetry,
}

#[derive(Serialize)]
struct Telemetry {
    language: &'static str,
    framework: &'static str,
}

fn function_message(spec: &FunctionSpec) -> ControlMessage {
    ControlMessage::RegisterFunction(RegisterFunction {
        id: spec.id.clone(),
        description: spec.description.clone(),
        request_format: spec.request_format.clone(),
        response_format: spec.response_format.clone(),
        metadata: spec.metadata.clone(),
        invocation: None,
    })
}

fn trigger_type_message(spec: &TriggerTypeSpec) -> ControlMessage {
    ControlMessage::RegisterTriggerType(RegisterTriggerType {
        id: spec.id.clone(),
        description: spec.description.clone(),
        trigger_request_format: spec.trigger_request_format.clone(),
        call_request_format: spec.call_request_format.clone(),
        namespace: None,
    })
}

impl Worker {
    /// Emits `Connect { Control }` with a fresh connection id.
    pub(super) fn connect_control(&mut self) {
        let conn = self.alloc_conn();
        self.control = Control::Connecting(conn);
        self.emit(WorkerOutput::Connect {
            conn,
            target: ConnectTarget::Control,
        });
    }

    /// The control connection opened: announce, replay, flush the offline queue.
    pub(super) fn control_connected(&mut self, now: Instant, conn: ConnId) {
        self.failures = 0;
        self.control = Control::Open {
            conn,
            outbox: Outbox::new(self.config.send_credit),
        };
        if let Some((worker_id, token)) = &self.previous {
            let reattach = ControlMessage::Reattach(Reattach {
                previous_worker_id: worker_id.clone(),
                reattach_token: token.clone(),
            });
            self.push_control(reattach.encode());
        }
        let announce_id = self.ids.uuid();
        let announce = self.announce_message(announce_id);
        self.push_control(announce.encode());
        self.liveness_opened(now, announce_id);
        let mut replay: Vec<Text> = Vec::new();
        replay.extend(
            self.registry
                .trigger_types
                .values()
                .map(|spec| trigger_type_message(spec).encode()),
        );
        replay.extend(
            self.registry
                .functions
                .values()
                .map(|spec| function_message(spec).encode()),
        );
        for (id, spec) in &self.registry.triggers {
            replay.push(self.trigger_message(id, spec).encode());
        }
        for text in replay {
            self.push_control(text);
        }
        let queued = std::mem::take(&mut self.offline);
        for (call, text) in queued.entries {
            if let Some(id) = call {
                match self.calls.get_mut(&id) {
                    Some(pending) => pending.sent = true,
                    None => continue,
                }
            }
            self.push_control(text);
        }
        self.pump_control();
    }

    /// The identity announce. It is a call (the engine's answer tells when it has run
    /// and, on the reference engine, applied the registrations it held back), where the
    /// published SDKs send it void; engines answer it either way.
    fn announce_message(&self, id: InvocationId) -> ControlMessage {
        let identity = &self.config.identity;
        let data = to_payload(&Announce {
            runtime: &identity.runtime,
            version: &identity.version,
            name: &identity.name,
            os: &identity.os,
            pid: identity.pid,
            description: identity.description.as_deref(),
            namespace: identity.namespace.as_deref(),
            telemetry: Telemetry {
                language: "rust",
                framework: "iii-rs",
            },
        });
        ControlMessage::InvokeFunction(InvokeFunction {
            invocation_id: Some(id),
            function_id: REGISTER_FUNCTION.to_owned(),
            data,
            traceparent: None,
            baggage: None,
            action: None,
            metadata: None,
            namespace: Some("default".to_owned()),
        })
    }

    fn trigger_message(&self, id: &str, spec: &TriggerSpec) -> ControlMessage {
        ControlMessage::RegisterTrigger(RegisterTrigger {
            id: id.to_owned(),
            trigger_type: spec.trigger_type.clone(),
            function_id: spec.function_id.clone(),
            config: spec.config.clone(),
            metadata: spec.metadata.clone(),
            namespace: self.config.identity.namespace.clone(),
            trigger_namespace: None,
        })
    }

    /// Queues a message on the open control connection without a byte limit (announce,
    /// replay, replies). Does nothing while not open: such messages are replayed or
    /// moot after a reconnect.
    pub(super) fn push_control(&mut self, text: Text) {
        if let Control::Open { outbox, .. } = &mut self.control {
            // With no limit the push cannot overflow.
            let _ = outbox.push(Message::Text(text), usize::MAX);
        }
    }

    /// Sends (or queues while offline) a call's message under the byte limit. Returns
    /// whether it went to an open connection.
    pub(super) fn send_call(
        &mut self,
        call: Option<InvocationId>,
        text: Text,
    ) -> Result<bool, super::InvokeError> {
        let limit = self.config.max_offline_queue_bytes;
        let size = text.len();
        match &mut self.control {
            Control::Open { outbox, .. } => {
                let queued = outbox.queued_bytes();
                outbox.push(Message::Text(text), limit).map_err(|_| {
                    super::InvokeError::QueueFull {
                        queued,
                        size,
                        limit,
                    }
                })?;
                self.pump_control();
                Ok(true)
            }
            Control::Stopped => Err(super::InvokeError::Stopped),
            Control::Connecting(_) | Control::Waiting => {
                let queue = &mut self.offline;
                if !queue.entries.is_empty() && queue.bytes.saturating_add(size) > limit {
                    return Err(super::InvokeError::QueueFull {
                        queued: queue.bytes,
                        size,
                        limit,
                    });
                }
                queue.bytes += size;
                queue.entries.push_back((call, text));
                Ok(false)
            }
        }
    }

    /// Forgets a call's message still waiting for the connection.
    pub(super) fn unqueue_call(&mut self, id: InvocationId) {
        self.offline.remove_call(id);
    }

    /// Releases control messages under credit.
    pub(super) fn pump_control(&mut self) {
        let mut released = Vec::new();
        if let Control::Open { conn, outbox } = &mut self.control {
            while let Some(message) = outbox.release() {
                released.push(WorkerOutput::Transmit {
                    conn: *conn,
                    message,
                });
            }
        }
        self.outputs.extend(released);
    }

    /// The control connection failed to open or was lost: fail sent calls, drop
    /// incoming work, schedule a reconnect.
    pub(super) fn control_lost(&mut self, now: Instant) {
        self.control = Control::Waiting;
        self.worker_id = None;
        let sent: Vec<InvocationId> = self
            .calls
            .iter()
            .filter(|(_, call)| call.sent)
            .map(|(id, _)| *id)
            .collect();
        for id in sent {
            self.finish_call(id, CallOutcome::Disconnected);
        }
        self.incoming.clear();
        self.trigger_requests.clear();
        let delay = self.backoff();
        let at = now.checked_add(delay).unwrap_or(now);
        self.timers.set(TimerKey::Reconnect, at);
        self.arm_unreachable(now);
        self.event(WorkerEvent::Disconnected {
            reconnect_at: Some(at),
        });
    }

    /// The next reconnect delay: doubled per failure, capped, then jittered.
    fn backoff(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.failures.min(31)).unwrap_or(u32::MAX);
        let base = self
            .config
            .reconnect_initial
            .checked_mul(factor)
            .unwrap_or(self.config.reconnect_max)
            .min(self.config.reconnect_max);
        self.failures = self.failures.saturating_add(1);
        let jitter = self.config.reconnect_jitter;
        let scale = 1.0 + jitter * (2.0 * self.ids.fraction() - 1.0);
        Duration::try_from_secs_f64(base.as_secs_f64() * scale).unwrap_or(base)
    }

    /// Stops the control session for good: closes the connection, fails every call
    /// with `outcome`, cancels the reconnect.
    pub(super) fn stop_control(
        &mut self,
        code: Option<CloseCode>,
        reason: &'static str,
        outcome: CallOutcome,
    ) {
        if let Some(conn) = self.control.conn() {
            self.emit(WorkerOutput::Close { conn, code, reason });
        }
        let was_stopped = matches!(self.control, Control::Stopped);
        self.control = Control::Stopped;
        for key in [
            TimerKey::Reconnect,
            TimerKey::Keepalive,
            TimerKey::Unreachable,
        ] {
            self.timers.cancel(&key);
        }
        self.worker_id = None;
        self.offline = OfflineQueue::default();
        let syncs: Vec<_> = self.pending_syncs();
        for id in syncs {
            self.finish_sync(id, super::SyncOutcome::Stopped);
        }
        let calls: Vec<InvocationId> = self.calls.keys().copied().collect();
        for id in calls {
            self.finish_call(id, outcome.clone());
        }
        self.incoming.clear();
        self.trigger_requests.clear();
        if !was_stopped {
            self.event(WorkerEvent::Disconnected { reconnect_at: None });
        }
    }

    fn check_registrable(&self) -> Result<(), RegisterError> {
        match self.control {
            Control::Stopped => Err(RegisterError::Stopped),
            _ => Ok(()),
        }
    }

    /// Registers a function: sent now if connected, and on every (re)connect.
    pub fn register_function(
        &mut self,
        now: Instant,
        spec: FunctionSpec,
    ) -> Result<(), RegisterError> {
        let _ = now;
        self.check_registrable()?;
        if spec.id.is_empty() {
            return Err(RegisterError::EmptyField("id"));
        }
        if self.registry.functions.contains_key(&spec.id) {
            return Err(RegisterError::Duplicate(spec.id));
        }
        self.push_control(function_message(&spec).encode());
        self.pump_control();
        self.registry.functions.insert(spec.id.clone(), spec);
        Ok(())
    }

    /// Unregisters a function (sends `unregisterfunction` if connected).
    pub fn unregister_function(&mut self, now: Instant, id: &str) -> Result<(), RegisterError> {
        let _ = now;
        self.check_registrable()?;
        if self.registry.functions.remove(id).is_none() {
            return Err(RegisterError::NotFound(id.to_owned()));
        }
        let message = ControlMessage::UnregisterFunction(UnregisterFunction { id: id.to_owned() });
        self.push_control(message.encode());
        self.pump_control();
        Ok(())
    }

    /// Registers a trigger type this worker provides.
    pub fn register_trigger_type(
        &mut self,
        now: Instant,
        spec: TriggerTypeSpec,
    ) -> Result<(), RegisterError> {
        let _ = now;
        self.check_registrable()?;
        if spec.id.is_empty() {
            return Err(RegisterError::EmptyField("id"));
        }
        if self.registry.trigger_types.contains_key(&spec.id) {
            return Err(RegisterError::Duplicate(spec.id));
        }
        self.push_control(trigger_type_message(&spec).encode());
        self.pump_control();
        self.registry.trigger_types.insert(spec.id.clone(), spec);
        Ok(())
    }

    /// Unregisters a trigger type (sends `unregistertriggertype` if connected).
    pub fn unregister_trigger_type(&mut self, now: Instant, id: &str) -> Result<(), RegisterError> {
        let _ = now;
        self.check_registrable()?;
        if self.registry.trigger_types.remove(id).is_none() {
            return Err(RegisterError::NotFound(id.to_owned()));
        }
        let message =
            ControlMessage::UnregisterTriggerType(UnregisterTriggerType { id: id.to_owned() });
        self.push_control(message.encode());
        self.pump_control();
        Ok(())
    }

    /// Binds `spec.function_id` to a trigger; returns the generated binding id (a UUID).
    pub fn register_trigger(
        &mut self,
        now: Instant,
        spec: TriggerSpec,
    ) -> Result<String, RegisterError> {
        let _ = now;
        self.check_registrable()?;
        if spec.trigger_type.is_empty() {
            return Err(RegisterError::EmptyField("trigger_type"));
        }
        if spec.function_id.is_empty() {
            return Err(RegisterError::EmptyField("function_id"));
        }
        let id = self.ids.uuid().to_string();
        let message = self.trigger_message(&id, &spec);
        self.push_control(message.encode());
        self.pump_control();
        self.registry.triggers.insert(id.clone(), spec);
        Ok(id)
    }

    /// Removes a binding made with `register_trigger` (sends `unregistertrigger` with its
    /// `trigger_type` if connected).
    pub fn unregister_trigger(&mut self, now: Instant, id: &str) -> Result<(), RegisterError> {
        let _ = now;
        self.check_registrable()?;
        let Some(spec) = self.registry.triggers.remove(id) else {
            return Err(RegisterError::NotFound(id.to_owned()));
        };
        let message = ControlMessage::UnregisterTrigger(UnregisterTrigger {
            id: id.to_owned(),
            trigger_type: Some(spec.trigger_type),
        });
        self.push_control(message.encode());
        self.pump_control();
        Ok(())
    }
}
