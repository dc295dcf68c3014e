//! The driver: the core [`Worker`], its sockets and its timer, and what its events mean
//! for the JavaScript side (promises, handlers, trigger hooks, connection state).

use std::collections::BTreeMap;
use std::rc::Weak;

use iii_core::channel::ChannelRefs;
use iii_core::wire::{ErrorBody, Payload};
use iii_core::worker::{CallOutcome, ConnectTarget, EndId, Worker, WorkerEvent, WorkerOutput};
use iii_core::{ConnId, Instant, InvocationId, Message, PeerClose};
use js_sys::Function;
use wasm_bindgen::prelude::*;

use super::channel::EndSlot;
use super::convert::object;
use super::discovery::FunctionsWatch;
use super::socket::{Held, Socket};
use super::{deliver, parse_payload, Deferred, Effect, Inner};
use crate::discovery::ListQuery;
use crate::errors::{ErrorInfo, ErrorKind};

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(handler: &Function, ms: f64) -> JsValue;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(handle: &JsValue);
}

/// The longest delay `setTimeout` takes (2^31 - 1 ms, about 24.8 days).
const MAX_TIMEOUT_MS: f64 = 2_147_483_647.0;

/// The worker's connection state, as `connectionState` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionState {
    /// The first connect is under way.
    Connecting,
    /// Registered with the engine.
    Connected,
    /// Lost; the next attempt is scheduled.
    Reconnecting,
    /// Shut down.
    Disconnected,
    /// Stopped for good: rejected by the engine, or `maxRetries` attempts failed.
    Failed,
}

impl ConnectionState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Connecting => "connecting",
            ConnectionState::Connected => "connected",
            ConnectionState::Reconnecting => "reconnecting",
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Failed => "failed",
        }
    }
}

/// A call waiting for its result.
pub(super) enum Waiter {
    Call(Deferred),
    /// `createChannel`: the result holds the refs.
    Channel(Deferred),
    /// A page of a listing (`listFunctions`, ...).
    List(Deferred, ListQuery),
}

/// The one `setTimeout` the driver keeps armed for the core's next deadline (and, while
/// sent messages wait to be reported flushed, for polling `bufferedAmount`).
struct Timer {
    callback: Closure<dyn FnMut()>,
    handle: Option<JsValue>,
    at: Option<Instant>,
}

/// A freed driver's pending `setTimeout` must not call the freed callback.
impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            clear_timeout(&handle);
        }
    }
}

/// See the [module docs](self).
pub(crate) struct Driver {
    pub(super) core: Worker,
    /// The worker itself while it runs: like a `WebSocket`, a running worker is not
    /// freed when the page drops its last reference to it (its sockets and timer hold
    /// only weak ones). Released when it stops for good (`disconnected` or `failed`).
    pub(super) keep_alive: Option<std::rc::Rc<Inner>>,
    url: String,
    pub(super) weak: Weak<Inner>,
    sockets: BTreeMap<ConnId, Socket>,
    timer: Timer,
    pub(super) handlers: BTreeMap<String, Function>,
    pub(super) trigger_types: BTreeMap<String, JsValue>,
    /// Bindings of our trigger types: their type and the argument given to the hook.
    bindings: BTreeMap<String, (String, JsValue)>,
    pub(super) calls: BTreeMap<InvocationId, Waiter>,
    /// The `onFunctionsAvailable` subscribers and their engine binding.
    pub(super) watch: FunctionsWatch,
    pub(super) ends: BTreeMap<EndId, EndSlot>,
    effects: Vec<Effect>,
    pub(super) state: ConnectionState,
    pub(super) state_listeners: Vec<Function>,
    max_retries: Option<u32>,
    failures: u32,
}

impl Driver {
    /// A driver around `core` (whose first output, the control connect, is queued).
    pub(super) fn new(
        core: Worker,
        url: String,
        max_retries: Option<u32>,
        weak: Weak<Inner>,
    ) -> Self {
        let timer_weak = weak.clone();
        let callback = Closure::<dyn FnMut()>::new(move || {
            if let Some(shared) = timer_weak.upgrade() {
                deliver(
                    &shared,
                    Box::new(|driver: &mut Driver, now| {
                        driver.timer.handle = None;
                        driver.timer.at = None;
                        driver.core.handle_timeout(now);
                    }),
                );
            }
        });
        Self {
            core,
            keep_alive: None,
            url,
            weak,
            sockets: BTreeMap::new(),
            timer: Timer {
                callback,
                handle: None,
                at: None,
            },
            handlers: BTreeMap::new(),
            trigger_types: BTreeMap::new(),
            bindings: BTreeMap::new(),
            calls: BTreeMap::new(),
            watch: FunctionsWatch::default(),
            ends: BTreeMap::new(),
            effects: Vec::new(),
            state: ConnectionState::Connecting,
            state_listeners: Vec::new(),
            max_retries,
            failures: 0,
        }
    }

    pub(super) fn effect(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    pub(super) fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Executes the core's outputs until there are none, feeding the held messages of
    /// resumed connections in between, after reporting flushed messages.
    pub(super) fn drain(&mut self, now: Instant) {
        let flushed: Vec<(ConnId, usize)> = self
            .sockets
            .iter_mut()
            .map(|(conn, socket)| (*conn, socket.flushed()))
            .filter(|(_, count)| *count > 0)
            .collect();
        for (conn, count) in flushed {
            self.core.handle_sent(now, conn, count);
        }
        loop {
            while let Some(output) = self.core.poll_output() {
                self.execute(now, output);
            }
            let held = self
                .sockets
                .iter_mut()
                .find_map(|(conn, socket)| socket.next_held().map(|held| (*conn, held)));
            match held {
                Some((conn, Held::Message(message))) => {
                    self.core.handle_message(now, conn, message);
                }
                Some((conn, Held::Closed(close))) => {
                    self.sockets.remove(&conn);
                    self.core.handle_closed(now, conn, close);
                }
                None => return,
            }
        }
    }

    /// Arms the timer for the core's next deadline, or at once while messages wait to
    /// be reported flushed.
    pub(super) fn arm_timer(&mut self, now: Instant) {
        let polling = self.sockets.values().any(Socket::has_in_flight);
        let at = match (self.core.poll_timeout(), polling) {
            (Some(deadline), true) => Some(deadline.min(now)),
            (None, true) => Some(now),
            (deadline, false) => deadline,
        };
        if at == self.timer.at && (at.is_none() || self.timer.handle.is_some()) {
            return;
        }
        if let Some(handle) = self.timer.handle.take() {
            clear_timeout(&handle);
        }
        self.timer.at = at;
        if let Some(at) = at {
            let ms = at.saturating_duration_since(now).as_secs_f64() * 1000.0;
            // setTimeout fires at once beyond 2^31 - 1 ms; a farther deadline (a call
            // timeout of weeks) wakes the core early, which it ignores, and re-arms.
            let ms = ms.ceil().min(MAX_TIMEOUT_MS);
            let handle = set_timeout(self.timer.callback.as_ref().unchecked_ref(), ms);
            self.timer.handle = Some(handle);
        }
    }

    fn execute(&mut self, now: Instant, output: WorkerOutput) {
        match output {
            WorkerOutput::Connect { conn, target } => {
                let url = match target {
                    ConnectTarget::Control => self.url.clone(),
                    ConnectTarget::Channel(channel_ref) => {
                        iii_core::channel::channel_url(&self.url, &channel_ref)
                    }
                };
                match Socket::open(&self.weak, conn, &url) {
                    Ok(socket) => {
                        self.sockets.insert(conn, socket);
                    }
                    Err(error) => {
                        self.effect(Effect::Warn(format!("cannot open {url}: {error:?}")));
                        self.core.handle_connect_failed(now, conn, None);
                    }
                }
            }
            WorkerOutput::Transmit { conn, message } => {
                let failed = match self.sockets.get_mut(&conn) {
                    Some(socket) => socket.send(&message).is_err(),
                    None => false,
                };
                if failed {
                    if let Some(socket) = self.sockets.remove(&conn) {
                        socket.close(None, "");
                    }
                    self.core.handle_closed(now, conn, PeerClose::Lost);
                }
            }
            WorkerOutput::Close { conn, code, reason } => {
                if let Some(socket) = self.sockets.remove(&conn) {
                    socket.close(code, reason);
                }
            }
            WorkerOutput::PauseRead { conn } => self.pause(conn, true),
            WorkerOutput::ResumeRead { conn } => self.pause(conn, false),
            WorkerOutput::Event(event) => self.event(now, event),
        }
    }

    fn pause(&mut self, conn: ConnId, paused: bool) {
        if let Some(socket) = self.sockets.get_mut(&conn) {
            socket.set_paused(paused);
        }
    }

    /// Socket `conn` opened.
    pub(super) fn opened(&mut self, now: Instant, conn: ConnId) {
        if let Some(socket) = self.sockets.get_mut(&conn) {
            socket.opened = true;
            self.core.handle_connected(now, conn);
        }
    }

    /// A message arrived on socket `conn`.
    pub(super) fn received(&mut self, now: Instant, conn: ConnId, message: Message) {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return;
        };
        if let Some(message) = socket.incoming(message) {
            self.core.handle_message(now, conn, message);
        }
    }

    /// Socket `conn` closed (or failed to open).
    pub(super) fn ended(&mut self, now: Instant, conn: ConnId, close: PeerClose) {
        let Some(socket) = self.sockets.get_mut(&conn) else {
            return;
        };
        if !socket.opened {
            self.sockets.remove(&conn);
            // The browser does not say why an upgrade failed (no HTTP status).
            self.core.handle_connect_failed(now, conn, None);
            return;
        }
        if let Some(close) = socket.peer_closed(close) {
            self.sockets.remove(&conn);
            self.core.handle_closed(now, conn, close);
        }
    }

    fn set_state(&mut self, state: ConnectionState) {
        if self.state == state {
            return;
        }
        self.state = state;
        if matches!(
            state,
            ConnectionState::Disconnected | ConnectionState::Failed
        ) {
            // Every caller holds a strong reference of its own, so this is not the last.
            self.keep_alive = None;
        }
        let name = JsValue::from_str(state.as_str());
        for listener in self.state_listeners.clone() {
            self.effect(Effect::Callback(listener, name.clone()));
        }
    }

    /// A call made with `invoke` or `create_channel`: its promise settles at
    /// `CallCompleted`.
    pub(super) fn wait_call(&mut self, id: InvocationId, deferred: Deferred, channel: bool) {
        let waiter = if channel {
            Waiter::Channel(deferred)
        } else {
            Waiter::Call(deferred)
        };
        self.calls.insert(id, waiter);
    }

    /// A function handler finished.
    pub(super) fn complete(
        &mut self,
        now: Instant,
        id: InvocationId,
        result: Result<Option<Payload>, ErrorBody>,
    ) {
        // Unknown after a reconnect (the engine stopped the invocation): nothing to do.
        let _ = self.core.complete(now, id, result);
    }

    /// A trigger type's `registerTrigger` hook finished.
    pub(super) fn trigger_result(&mut self, now: Instant, id: &str, result: Result<(), ErrorBody>) {
        let _ = self.core.trigger_registration_result(now, id, result);
    }

    fn event(&mut self, now: Instant, event: WorkerEvent) {
        match event {
            WorkerEvent::Registered { .. } => {
                self.failures = 0;
                self.set_state(ConnectionState::Connected);
            }
            WorkerEvent::Disconnected { reconnect_at } => self.disconnected(now, reconnect_at),
            WorkerEvent::Rejected { rejection, fatal } => {
                let what = rejection
                    .function_id
                    .map_or(String::new(), |id| format!(" ({id})"));
                let code = rejection.code;
                self.effect(Effect::Warn(format!("registration rejected: {code}{what}")));
                if fatal {
                    self.set_state(ConnectionState::Failed);
                }
            }
            WorkerEvent::Invoked {
                invocation_id,
                function_id,
                data,
                ..
            } if self.watch.serves(&function_id) => {
                self.functions_available(now, invocation_id, &data);
            }
            WorkerEvent::Invoked {
                invocation_id,
                function_id,
                data,
                ..
            } => match self.handlers.get(&function_id).cloned() {
                Some(handler) => {
                    let input = self.input_value(now, &data);
                    self.effect(Effect::Invoke {
                        invocation: invocation_id,
                        handler,
                        input,
                    });
                }
                None => {
                    let error = ErrorBody::function_not_found();
                    let _ = self.core.complete(now, invocation_id, Err(error));
                }
            },
            WorkerEvent::CallCompleted {
                invocation_id,
                outcome,
                ..
            } => self.call_completed(now, invocation_id, outcome),
            WorkerEvent::TriggerRequested {
                id,
                trigger_type,
                function_id,
                config,
                metadata,
            } => {
                let Some(handler) = self.trigger_types.get(&trigger_type).cloned() else {
                    let error = ErrorBody::trigger_type_not_found();
                    let _ = self.core.trigger_registration_result(now, &id, Err(error));
                    return;
                };
                let argument = object(&[
                    ("id", JsValue::from_str(&id)),
                    ("trigger_type", JsValue::from_str(&trigger_type)),
                    ("function_id", JsValue::from_str(&function_id)),
                    ("config", parse_payload(Some(&config))),
                    ("metadata", parse_payload(metadata.as_ref())),
                ]);
                self.bindings
                    .insert(id.clone(), (trigger_type, argument.clone()));
                self.effect(Effect::TriggerHook {
                    id,
                    handler,
                    method: "registerTrigger",
                    argument,
                    reply: true,
                });
            }
            WorkerEvent::TriggerRemoved { id, trigger_type } => {
                let (trigger_type, argument) = match self.bindings.remove(&id) {
                    Some(binding) => binding,
                    None => {
                        let trigger_type = trigger_type.unwrap_or_default();
                        let argument = object(&[
                            ("id", JsValue::from_str(&id)),
                            ("trigger_type", JsValue::from_str(&trigger_type)),
                        ]);
                        (trigger_type, argument)
                    }
                };
                if let Some(handler) = self.trigger_types.get(&trigger_type).cloned() {
                    self.effect(Effect::TriggerHook {
                        id,
                        handler,
                        method: "unregisterTrigger",
                        argument,
                        reply: false,
                    });
                }
            }
            WorkerEvent::TriggerFailed {
                id,
                trigger_type,
                function_id,
                error,
            } => self.effect(Effect::Warn(format!(
                "trigger {id} ({trigger_type} -> {function_id}) refused: {}: {}",
                error.code, error.message
            ))),
            WorkerEvent::ChannelData { end, data } => self.channel_data(now, end, data),
            WorkerEvent::ChannelText { end, text } => self.channel_text(now, end, text),
            WorkerEvent::ChannelWritable { end } => self.pump_writes(now, end),
            WorkerEvent::ChannelEnded { end, outcome } => self.channel_ended(now, end, outcome),
            WorkerEvent::ProtocolViolation { detail } => {
                self.effect(Effect::Warn(format!(
                    "undecodable message from the engine: {detail}"
                )));
            }
            _ => {}
        }
    }

    fn disconnected(&mut self, now: Instant, reconnect_at: Option<Instant>) {
        if reconnect_at.is_none() {
            if self.state != ConnectionState::Failed {
                self.set_state(ConnectionState::Disconnected);
            }
            return;
        }
        self.failures = self.failures.saturating_add(1);
        if self.max_retries.is_some_and(|max| self.failures > max) {
            self.effect(Effect::Warn(format!(
                "gave up after {} failed connection attempts (reconnectionConfig.maxRetries)",
                self.failures
            )));
            self.set_state(ConnectionState::Failed);
            self.core.shutdown(now);
        } else {
            self.set_state(ConnectionState::Reconnecting);
        }
    }

    fn call_completed(&mut self, now: Instant, id: InvocationId, outcome: CallOutcome) {
        let Some(waiter) = self.calls.remove(&id) else {
            return;
        };
        let (deferred, channel) = match waiter {
            Waiter::Call(deferred) => (deferred, false),
            Waiter::Channel(deferred) => (deferred, true),
            Waiter::List(deferred, query) => {
                self.listed(now, deferred, query, outcome);
                return;
            }
        };
        if let Some(error) = ErrorInfo::from_call(&outcome) {
            self.effect(Effect::Reject(deferred, error));
            return;
        }
        let CallOutcome::Ok(result) = outcome else {
            return;
        };
        if !channel {
            let value = parse_payload(result.as_ref());
            self.effect(Effect::Resolve(deferred, value));
            return;
        }
        let text = result.as_ref().map_or("null", |payload| payload.get());
        match serde_json::from_str::<ChannelRefs>(text) {
            Ok(refs) => {
                let channel = self.channel_object(now, refs);
                self.effect(Effect::Resolve(deferred, channel));
            }
            Err(error) => {
                let message = format!("engine::channels::create answered without refs: {error}");
                self.effect(Effect::Reject(
                    deferred,
                    ErrorInfo::new(ErrorKind::Remote, message),
                ));
            }
        }
    }
}
