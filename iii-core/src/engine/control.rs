//! Control connections: the session lifecycle and the dispatch of control messages.

use crate::Instant;

use super::quota::{count_message, Registration};
use super::rbac::{self, Hooked, SessionPolicy};
use super::session::{sanitize, FunctionSpec, Session, WorkerMeta, DEFAULT_NAMESPACE};
use super::{ConnKind, Engine, EngineEvent, FnKey, Quota, RefusalReason, Timer, Violation};
use crate::ids::{ConnId, Secret};
use crate::wire::builtins::RESERVED_PREFIX;
use crate::wire::control::{RegisterFunction, RegistrationRejected, WorkerRegistered};
use crate::wire::{decode, CloseCode, ControlMessage, DecodeError, Decoded, Message};

const TELEMETRY_PREFIXES: [&[u8]; 3] = [b"OTLP", b"MTRC", b"LOGS"];

impl Engine {
    /// A new control connection on `listener` from `peer` (with `policy` on an RBAC
    /// listener): register it and greet it with `workerregistered`.
    pub(super) fn open_control(
        &mut self,
        now: Instant,
        conn: ConnId,
        listener: usize,
        peer: Option<std::net::IpAddr>,
        policy: Option<SessionPolicy>,
    ) {
        let worker_id = self.ids.uuid().to_string();
        let token = self.new_secret();
        let greeting = ControlMessage::WorkerRegistered(WorkerRegistered {
            worker_id: worker_id.clone(),
            reattach_token: Some(token.to_hex()),
        });
        let session = Session {
            worker_id: worker_id.clone(),
            reattach_token: token,
            connected_at: Some(now),
            peer,
            listener,
            policy,
            ..Session::default()
        };
        self.insert_counted(conn, ConnKind::Control(Box::new(session)), listener, peer);
        self.workers.insert(worker_id.clone(), conn);
        self.send_control(now, conn, &greeting);
        self.emit(EngineEvent::WorkerConnected {
            conn,
            worker_id: worker_id.clone(),
            peer,
        });
        self.fire_workers_available(now, "worker_connected", &worker_id);
    }

    pub(super) fn session(&self, conn: ConnId) -> Option<&Session> {
        match &self.conns.get(&conn)?.kind {
            ConnKind::Control(session) if !self.conns.get(&conn)?.closing => Some(session),
            _ => None,
        }
    }

    /// True when `conn` is a session on an RBAC listener (a guest).
    pub(super) fn is_guest(&self, conn: ConnId) -> bool {
        self.session(conn).is_some_and(|s| s.policy.is_some())
    }

    pub(super) fn session_mut(&mut self, conn: ConnId) -> Option<&mut Session> {
        let state = self.conns.get_mut(&conn)?;
        if state.closing {
            return None;
        }
        match &mut state.kind {
            ConnKind::Control(session) => Some(session),
            _ => None,
        }
    }

    /// One message on a control connection.
    pub(super) fn control_message(&mut self, now: Instant, conn: ConnId, message: Message) {
        let bytes = match &message {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => {
                if TELEMETRY_PREFIXES.iter().any(|p| bytes.starts_with(p)) {
                    return;
                }
                bytes
            }
        };
        let decoded = match decode(bytes, self.config.max_control_message_bytes) {
            Ok(decoded) => decoded,
            Err(DecodeError::TooLarge { .. }) => {
                self.close(
                    now,
                    conn,
                    Some(CloseCode::TOO_BIG),
                    "control message too large",
                );
                return;
            }
            Err(error) => {
                self.violation(conn, Violation::Undecodable(error));
                return;
            }
        };
        let message = match decoded {
            Decoded::Message(message) if self.is_guest(conn) => rbac::from_guest(message),
            Decoded::Message(message) => message,
            Decoded::Empty => return,
            Decoded::Unknown { kind } => {
                self.emit(EngineEvent::MessageIgnored { conn, kind });
                return;
            }
        };
        match message {
            ControlMessage::RegisterFunction(spec) => self.register_function(now, conn, spec),
            ControlMessage::UnregisterFunction(msg) => self.unregister_function(now, conn, &msg.id),
            ControlMessage::InvokeFunction(call) => self.invoke_from(now, conn, call),
            ControlMessage::InvocationResult(result) => self.result_from(now, conn, result),
            ControlMessage::RegisterTriggerType(msg) => self.register_trigger_type(now, conn, msg),
            ControlMessage::UnregisterTriggerType(msg) => {
                self.unregister_trigger_type(now, conn, &msg.id)
            }
            ControlMessage::RegisterTrigger(msg) => self.register_trigger(now, conn, msg),
            ControlMessage::TriggerRegistrationResult(msg) => {
                self.trigger_result_from(now, conn, msg)
            }
            ControlMessage::UnregisterTrigger(msg) => self.unregister_trigger(now, conn, &msg.id),
            ControlMessage::RegisterService(_) | ControlMessage::Pong => {}
            ControlMessage::Ping => self.send_control(now, conn, &ControlMessage::Pong),
            ControlMessage::Reattach(msg) => self.reattach(
                now,
                conn,
                &msg.previous_worker_id,
                msg.reattach_token.as_deref(),
            ),
            ControlMessage::WorkerRegistered(_) => {
                self.violation(conn, Violation::WrongDirection("workerregistered"))
            }
            ControlMessage::RegistrationRejected(_) => {
                self.violation(conn, Violation::WrongDirection("registrationrejected"))
            }
            ControlMessage::Error(_) => self.violation(conn, Violation::WrongDirection("error")),
        }
    }

    pub(super) fn violation(&mut self, conn: ConnId, violation: Violation) {
        self.emit(EngineEvent::ProtocolViolation { conn, violation });
    }

    fn register_function(&mut self, now: Instant, conn: ConnId, mut spec: RegisterFunction) {
        let Some(session) = self.session(conn) else {
            return;
        };
        let local_id = spec.id.clone();
        if let Some(policy) = &session.policy {
            if !policy.allow_function_registration {
                let message = "this session may not register functions".to_owned();
                let reason = RefusalReason::Forbidden;
                return self.refuse_function(now, conn, &local_id, reason, message);
            }
            spec.id = policy.registered_id(&local_id);
        }
        if let Some(Hooked::Function(spec, local_id)) =
            self.hold_for_hook(now, conn, Hooked::Function(spec, local_id))
        {
            self.register_approved_function(now, conn, spec, local_id);
        }
    }

    /// Registers `spec` for `conn` (approved by its hook, if it needed one); `local_id`
    /// is the id the worker knows it by.
    pub(super) fn register_approved_function(
        &mut self,
        now: Instant,
        conn: ConnId,
        spec: RegisterFunction,
        local_id: String,
    ) {
        let Some(session) = self.session(conn) else {
            return;
        };
        let namespace = session.namespace.clone();
        let owned_functions = session.functions.len();
        let limit = self.quotas_of(conn).functions;
        let key: FnKey = (namespace.clone(), spec.id.clone());
        if spec.id.is_empty() || spec.id.starts_with(RESERVED_PREFIX) {
            let message = "function ids must be non-empty and outside engine::".to_owned();
            self.reject_function(
                now,
                conn,
                &key,
                String::new(),
                RefusalReason::Reserved,
                message,
            );
            return;
        }
        let shadowed = session.shadowed.get(&key).copied();
        let guest = session.policy.is_some();
        let (replacing, shadow) = match self.functions.get(&key).copied() {
            // A guest never learns who holds an id, and learns that it is held only
            // when it may call it (it could find out by calling). An id it may not
            // use is answered as a free one: see `shadow_function`.
            Some(owner) if owner != conn && guest && !self.may_use_taken(conn, &key) => {
                (shadowed, true)
            }
            Some(owner) if owner != conn => {
                let owner_id = match guest {
                    true => String::new(),
                    false => self
                        .session(owner)
                        .map(|s| s.worker_id.clone())
                        .unwrap_or_default(),
                };
                let message = "another worker exports this function".to_owned();
                self.reject_function(
                    now,
                    conn,
                    &key,
                    owner_id,
                    RefusalReason::FunctionOwned,
                    message,
                );
                return;
            }
            Some(_) => (self.function_specs.get(&key).map(|s| s.bytes), false),
            None => (shadowed, false),
        };
        if replacing.is_none() && owned_functions >= limit {
            let reason = RefusalReason::Quota(Quota::Functions);
            let message = count_message(Quota::Functions, limit);
            self.reject_function(now, conn, &key, String::new(), reason, message);
            return;
        }
        let description = spec.description.as_deref().map(sanitize);
        let registration = Registration {
            text: spec.id.len() + description.as_ref().map_or(0, String::len),
            payloads: [
                spec.metadata.as_ref(),
                spec.request_format.as_ref(),
                spec.response_format.as_ref(),
                spec.invocation.as_ref(),
            ],
        };
        let replacing = replacing.unwrap_or(0);
        let bytes = match self.measure_registration(conn, &registration, replacing) {
            Ok(bytes) => bytes,
            Err((reason, message)) => {
                self.reject_function(now, conn, &key, String::new(), reason, message);
                return;
            }
        };
        self.account_registration(conn, replacing, bytes);
        if shadow {
            return self.shadow_function(conn, key, bytes);
        }
        if let Some(session) = self.session_mut(conn) {
            session.shadowed.remove(&key);
        }
        self.functions.insert(key.clone(), conn);
        let mut function = FunctionSpec::new(&key.1, description, spec.metadata, bytes);
        function.request_format = spec.request_format;
        function.response_format = spec.response_format;
        function.exposed_on = self.exposure(&key.1, function.metadata.as_deref());
        function.local_id = (local_id != key.1).then_some(local_id);
        self.insert_spec(key.clone(), function);
        if let Some(session) = self.session_mut(conn) {
            session.functions.insert(key.clone());
        }
        self.emit(EngineEvent::FunctionRegistered {
            conn,
            function_id: key.1,
        });
        self.functions_changed(now);
    }

    /// Refuses function `id` of `conn` for `reason` (see `reject_function`).
    pub(super) fn refuse_function(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: &str,
        reason: RefusalReason,
        message: String,
    ) {
        let namespace = self
            .session(conn)
            .map_or_else(|| DEFAULT_NAMESPACE.to_owned(), |s| s.namespace.clone());
        let key: FnKey = (namespace, id.to_owned());
        self.reject_function(now, conn, &key, String::new(), reason, message);
    }

    /// Refuses a `registerfunction`. The worker gets `registrationrejected` with
    /// `FUNCTION_NAMESPACE_CONFLICT`, the one code every published SDK treats as "this
    /// registration only, keep running" (any other code stops them for good); when the
    /// reason is not a conflict, an `error` message with the precise code follows.
    fn reject_function(
        &mut self,
        now: Instant,
        conn: ConnId,
        key: &FnKey,
        owner: String,
        reason: RefusalReason,
        message: String,
    ) {
        let rejection = ControlMessage::RegistrationRejected(RegistrationRejected {
            code: RefusalReason::FunctionOwned.code().to_owned(),
            namespace: key.0.clone(),
            worker_name: None,
            function_id: Some(key.1.clone()),
            owner_worker_id: owner,
        });
        self.send_control(now, conn, &rejection);
        if reason == RefusalReason::FunctionOwned {
            self.refused(conn, "registerfunction", Some(key.1.clone()), reason);
        } else {
            self.refuse_with_error(
                now,
                conn,
                "registerfunction",
                Some(key.1.clone()),
                reason,
                message,
            );
        }
    }

    fn unregister_function(&mut self, now: Instant, conn: ConnId, id: &str) {
        let Some(session) = self.session(conn) else {
            return;
        };
        let id = match &session.policy {
            Some(policy) => policy.registered_id(id),
            None => id.to_owned(),
        };
        let key: FnKey = (session.namespace.clone(), id);
        if self.release_function(conn, &key) {
            self.functions_changed(now);
        }
    }

    /// Records a guest's registration of an id another worker holds and the guest may
    /// not use (`bytes` already counted): it counts toward the guest's quotas, and
    /// unregistering it frees them, exactly as for a free id, but nothing is stored
    /// and nobody can call it. So the guest cannot tell a taken id from a free one:
    /// it may not call either, the answers, listings and quotas are the same.
    fn shadow_function(&mut self, conn: ConnId, key: FnKey, bytes: usize) {
        self.refused(
            conn,
            "registerfunction",
            Some(key.1.clone()),
            RefusalReason::FunctionOwned,
        );
        if let Some(session) = self.session_mut(conn) {
            session.functions.insert(key.clone());
            session.shadowed.insert(key, bytes);
        }
    }

    /// Removes `key` if `conn` still owns it (or forgets it if it was shadowed).
    fn release_function(&mut self, conn: ConnId, key: &FnKey) -> bool {
        let shadowed = self.session_mut(conn).and_then(|s| {
            let bytes = s.shadowed.remove(key)?;
            s.functions.remove(key);
            Some(bytes)
        });
        if let Some(bytes) = shadowed {
            self.account_registration(conn, bytes, 0);
            return false;
        }
        if self.functions.get(key) != Some(&conn) {
            return false;
        }
        self.functions.remove(key);
        let bytes = self.remove_spec(key).map_or(0, |s| s.bytes);
        self.account_registration(conn, bytes, 0);
        if let Some(session) = self.session_mut(conn) {
            session.functions.remove(key);
        }
        true
    }

    /// `engine::workers::register`: record the identity and, if the worker names a
    /// namespace, move its functions there (the reference buffers registrations until
    /// this call; re-keying gives the same result without the wait).
    pub(super) fn announce(&mut self, now: Instant, conn: ConnId, meta: WorkerMeta) -> bool {
        let namespace = match meta.namespace.as_deref() {
            None => DEFAULT_NAMESPACE.to_owned(),
            Some(ns) if ns.trim().is_empty() => return false,
            Some(ns) => ns.to_owned(),
        };
        // Sessions of RBAC listeners live in the default namespace, where their policy
        // applies.
        let untrusted = self.session(conn).is_some_and(|s| s.policy.is_some());
        if untrusted && namespace != DEFAULT_NAMESPACE {
            return false;
        }
        let Some(session) = self.session_mut(conn) else {
            return false;
        };
        let mut meta = meta;
        meta.name = meta.name.as_deref().map(sanitize);
        meta.description = meta.description.as_deref().map(sanitize);
        let name = meta.name.clone().unwrap_or_default();
        let runtime = meta.runtime.clone().unwrap_or_else(|| "unknown".to_owned());
        session.meta = meta;
        let old_namespace = std::mem::replace(&mut session.namespace, namespace.clone());
        let worker_id = session.worker_id.clone();
        if old_namespace != namespace {
            let owned: Vec<FnKey> = session.functions.iter().cloned().collect();
            for key in owned {
                if self.functions.get(&key) != Some(&conn) {
                    continue;
                }
                let Some(spec) = self.remove_spec(&key) else {
                    continue;
                };
                self.functions.remove(&key);
                let new_key = (namespace.clone(), key.1.clone());
                if let Some(session) = self.session_mut(conn) {
                    session.functions.remove(&key);
                }
                if self.functions.contains_key(&new_key) {
                    let owner = self.functions.get(&new_key).copied();
                    let owner_id = owner
                        .and_then(|o| self.session(o))
                        .map(|s| s.worker_id.clone())
                        .unwrap_or_default();
                    self.account_registration(conn, spec.bytes, 0);
                    let message = format!("another worker ({owner_id}) exports this function");
                    let reason = RefusalReason::FunctionOwned;
                    self.reject_function(now, conn, &new_key, owner_id, reason, message);
                    continue;
                }
                self.functions.insert(new_key.clone(), conn);
                self.insert_spec(new_key.clone(), spec);
                if let Some(session) = self.session_mut(conn) {
                    session.functions.insert(new_key);
                }
            }
            self.functions_changed(now);
        }
        self.emit(EngineEvent::WorkerAnnounced {
            conn,
            name,
            runtime,
        });
        self.fire_workers_available(now, "worker_metadata_updated", &worker_id);
        true
    }

    /// `reattach`: a reconnecting worker proves it held `previous` and the old connection
    /// (if still open, for example half-open) is evicted so the replayed registrations
    /// can claim their ids. Anything wrong is ignored, as the reference does.
    fn reattach(&mut self, now: Instant, conn: ConnId, previous: &str, token: Option<&str>) {
        let Some(old) = self.workers.get(previous).copied() else {
            self.violation(conn, Violation::BadReattach);
            return;
        };
        let presented = token.and_then(Secret::parse);
        let valid = match (self.session(old), presented) {
            (Some(session), Some(presented)) => {
                old != conn && session.reattach_token.matches(&presented)
            }
            _ => false,
        };
        if !valid {
            self.violation(conn, Violation::BadReattach);
            return;
        }
        // The old connection is most likely half-open: drop it without waiting for it to
        // read what is queued.
        self.abort(now, old, CloseCode::POLICY, "worker reattached elsewhere");
    }

    /// Releases everything a control connection held: its worker name, the functions it
    /// still owns (a faster reconnect keeps its fresh registration), the invocations it was
    /// serving or had made (callers get `invocation_stopped`), its hooks, its channels'
    /// quota, its trigger bindings and types; then `engine::workers-available` fires
    /// `worker_disconnected`, as the reference engine does.
    pub(super) fn end_session(&mut self, now: Instant, conn: ConnId, session: Session) {
        if self.workers.get(&session.worker_id) == Some(&conn) {
            self.workers.remove(&session.worker_id);
        }
        let mut changed = false;
        for key in &session.functions {
            if self.functions.get(key) == Some(&conn) {
                self.functions.remove(key);
                self.remove_spec(key);
                changed = true;
            }
        }
        if changed {
            self.functions_changed(now);
        }
        self.stop_invocations(now, conn);
        self.drop_session_hooks(&session.hook_tickets);
        self.orphan_channels(now, conn);
        self.drop_session_triggers(now, conn, &session);
        self.emit(EngineEvent::WorkerDisconnected {
            conn,
            worker_id: session.worker_id.clone(),
            name: session.meta.name.clone(),
            peer: session.peer,
        });
        self.fire_workers_available(now, "worker_disconnected", &session.worker_id);
    }

    /// The worker `conn` that created some channels is gone: they no longer count toward
    /// any quota, and those with an end that never attached expire within
    /// `orphan_channel_timeout`.
    fn orphan_channels(&mut self, now: Instant, conn: ConnId) {
        let Some(owned) = self.channels_by_owner.remove(&conn) else {
            return;
        };
        let orphan_timeout = self.config.orphan_channel_timeout;
        for id in owned {
            let Some(channel) = self.channels.get_mut(&id) else {
                continue;
            };
            channel.owner_conn = None;
            if !channel.half_attached() {
                continue;
            }
            let timer = Timer::ChannelExpiry(id);
            let sooner = now.checked_add(orphan_timeout);
            match (self.timers.deadline(&timer), sooner) {
                (Some(current), Some(sooner)) if sooner < current => self.timers.set(timer, sooner),
                _ => {}
            }
        }
    }
}
