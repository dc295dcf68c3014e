//! Trigger types and trigger bindings (`registertriggertype`, `registertrigger`,
//! `triggerregistrationresult`, `unregistertrigger`).
//!
//! A trigger type is provided either by the engine itself (the two notification types)
//! or by a worker. A binding asks a provider to fire a function; it is forwarded to a
//! worker provider as `registertrigger`, or parked until a provider registers the type.

use crate::wire::codes;
use crate::Instant;
use std::collections::BTreeMap;

use super::quota::{count_message, Registration};
use super::rbac::Hooked;
use super::session::{sanitize, Session, DEFAULT_NAMESPACE};
use super::{Engine, FnKey, Quota, RefusalReason, Timer, Violation};
use crate::ids::ConnId;
use crate::wire::control::{
    Payload, RegisterTrigger, RegisterTriggerType, TriggerRegistrationResult, UnregisterTrigger,
};
use crate::wire::{ControlMessage, ErrorBody};

pub(super) use crate::wire::builtins::{FUNCTIONS_AVAILABLE, RESERVED_PREFIX, WORKERS_AVAILABLE};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provider {
    Engine,
    Worker(ConnId),
}

#[derive(Debug)]
pub(super) struct TriggerType {
    pub(super) provider: Provider,
    pub(super) description: String,
}

#[derive(Debug)]
pub(super) struct Binding {
    pub(super) owner: ConnId,
    pub(super) trigger_type: String,
    /// Where the provider is looked up.
    pub(super) trigger_namespace: String,
    /// The target function.
    pub(super) function: FnKey,
    pub(super) config: Payload,
    pub(super) metadata: Option<Payload>,
    /// The provider currently holding the binding; `None` while parked.
    pub(super) active: Option<Provider>,
    /// Bytes counted toward the owner's registration quota.
    pub(super) bytes: usize,
    /// The id its owner knows it by, when that differs from its key (a guest's
    /// bindings are keyed in the guest's own scope: see `Engine::binding_key`).
    pub(super) local_id: Option<String>,
}

#[derive(Debug, Default)]
pub(super) struct Triggers {
    pub(super) types: BTreeMap<FnKey, TriggerType>,
    pub(super) bindings: BTreeMap<String, Binding>,
}

impl Triggers {
    pub(super) fn with_builtin_types() -> Self {
        let mut triggers = Self::default();
        for (id, description) in [
            (
                FUNCTIONS_AVAILABLE,
                "Fires when functions are registered or unregistered",
            ),
            (
                WORKERS_AVAILABLE,
                "Fires when a worker connects, announces itself or disconnects",
            ),
        ] {
            triggers.types.insert(
                (DEFAULT_NAMESPACE.to_owned(), id.to_owned()),
                TriggerType {
                    provider: Provider::Engine,
                    description: description.to_owned(),
                },
            );
        }
        triggers
    }

    /// The provider key for `trigger_type` seen from `namespace`, falling back to
    /// `default`.
    fn lookup(&self, namespace: &str, trigger_type: &str) -> Option<FnKey> {
        [namespace, DEFAULT_NAMESPACE]
            .into_iter()
            .map(|ns| (ns.to_owned(), trigger_type.to_owned()))
            .find(|key| self.types.contains_key(key))
    }
}

impl Engine {
    pub(super) fn register_trigger_type(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut msg: RegisterTriggerType,
    ) {
        let Some(session) = self.session(conn) else {
            return;
        };
        if let Some(policy) = &session.policy {
            if !policy.allow_trigger_type_registration {
                let (what, reason) = ("registertriggertype", RefusalReason::Forbidden);
                let message = "this session may not register trigger types".to_owned();
                self.refuse_with_error(now, conn, what, Some(msg.id), reason, message);
                return;
            }
            // Sessions of RBAC listeners provide in the default namespace only.
            msg.namespace = None;
        }
        if let Some(Hooked::TriggerType(msg)) =
            self.hold_for_hook(now, conn, Hooked::TriggerType(msg))
        {
            self.register_approved_trigger_type(now, conn, msg);
        }
    }

    /// Registers trigger type `msg` for `conn` (approved by its hook, if it needed one).
    pub(super) fn register_approved_trigger_type(
        &mut self,
        now: Instant,
        conn: ConnId,
        msg: RegisterTriggerType,
    ) {
        let Some(session) = self.session(conn) else {
            return;
        };
        let owned = session.trigger_types.len();
        let namespace = msg.namespace.unwrap_or_else(|| session.namespace.clone());
        let key: FnKey = (namespace, msg.id);
        let refusal = match self.triggers.types.get(&key).map(|t| t.provider) {
            _ if key.1.is_empty() || key.1.starts_with(RESERVED_PREFIX) => Some((
                RefusalReason::Reserved,
                "trigger type ids must be non-empty and outside engine::".to_owned(),
            )),
            Some(Provider::Engine) => Some((
                RefusalReason::Reserved,
                "the engine provides this trigger type".to_owned(),
            )),
            // A live worker provides it: taking it over would hand that worker's
            // bindings (and their configs) to this one.
            Some(Provider::Worker(owner)) if owner != conn => Some((
                RefusalReason::TriggerTypeOwned,
                "another worker provides this trigger type".to_owned(),
            )),
            Some(Provider::Worker(_)) => None,
            None if owned >= self.quotas_of(conn).trigger_types => Some((
                RefusalReason::Quota(Quota::TriggerTypes),
                count_message(Quota::TriggerTypes, self.quotas_of(conn).trigger_types),
            )),
            None => None,
        };
        if let Some((reason, message)) = refusal {
            let what = "registertriggertype";
            self.refuse_with_error(now, conn, what, Some(key.1), reason, message);
            return;
        }
        let registration = Registration {
            text: 0,
            payloads: [
                msg.trigger_request_format.as_ref(),
                msg.call_request_format.as_ref(),
                None,
                None,
            ],
        };
        // The formats are not stored; they are checked so that a refusal is as typed as
        // for the other registrations.
        if let Err((reason, message)) = self.measure_registration(conn, &registration, 0) {
            let what = "registertriggertype";
            self.refuse_with_error(now, conn, what, Some(key.1), reason, message);
            return;
        }
        self.triggers.types.insert(
            key.clone(),
            TriggerType {
                provider: Provider::Worker(conn),
                description: sanitize(&msg.description),
            },
        );
        if let Some(session) = self.session_mut(conn) {
            session.trigger_types.insert(key.clone());
        }
        // Hand every parked binding of this type to it.
        let ids: Vec<String> = self
            .triggers
            .bindings
            .iter()
            .filter(|(_, b)| b.trigger_type == key.1 && b.active.is_none())
            .filter(|(_, b)| {
                self.triggers.lookup(&b.trigger_namespace, &b.trigger_type) == Some(key.clone())
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.activate(now, &id, Provider::Worker(conn));
        }
    }

    pub(super) fn unregister_trigger_type(&mut self, now: Instant, conn: ConnId, id: &str) {
        let Some(session) = self.session(conn) else {
            return;
        };
        let key: FnKey = (session.namespace.clone(), id.to_owned());
        let owned = matches!(
            self.triggers.types.get(&key),
            Some(TriggerType { provider: Provider::Worker(p), .. }) if *p == conn
        );
        if owned {
            self.drop_trigger_type(now, conn, &key);
        }
    }

    fn drop_trigger_type(&mut self, _now: Instant, conn: ConnId, key: &FnKey) {
        self.triggers.types.remove(key);
        if let Some(session) = self.session_mut(conn) {
            session.trigger_types.remove(key);
        }
        for binding in self.triggers.bindings.values_mut() {
            if binding.active == Some(Provider::Worker(conn)) && binding.trigger_type == key.1 {
                binding.active = None;
            }
        }
    }

    pub(super) fn register_trigger(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut msg: RegisterTrigger,
    ) {
        let Some(session) = self.session(conn) else {
            return;
        };
        if let Some(policy) = &session.policy {
            let elsewhere =
                |ns: &Option<String>| ns.as_deref().is_some_and(|n| n != DEFAULT_NAMESPACE);
            msg.function_id = policy.registered_id(&msg.function_id);
            let refusal = if elsewhere(&msg.namespace) || elsewhere(&msg.trigger_namespace) {
                Some("sessions of this listener bind in the default namespace only")
            } else if !policy.may_use_trigger_type(&msg.trigger_type) {
                Some("this session may not use this trigger type")
            } else if is_engine_type(&msg.trigger_type) {
                // The engine's notifications describe every worker and function.
                Some("the engine's trigger types are for trusted workers only")
            } else {
                None
            };
            // Whether it may call the target is decided after the hook, which sees
            // every binding that passes these checks (as the reference's does).
            if let Some(message) = refusal {
                let reason = RefusalReason::Forbidden;
                self.refused(conn, "registertrigger", Some(msg.id.clone()), reason);
                let error = ErrorBody::new(reason.code(), message);
                let (id, trigger_type, function_id) =
                    (&msg.id, &msg.trigger_type, &msg.function_id);
                self.trigger_error(now, conn, id, trigger_type, function_id, error);
                return;
            }
        }
        if let Some(Hooked::Trigger(msg)) = self.hold_for_hook(now, conn, Hooked::Trigger(msg)) {
            self.register_approved_trigger(now, conn, msg);
        }
    }

    /// Registers binding `msg` for `conn` (approved by its hook, if it needed one).
    pub(super) fn register_approved_trigger(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut msg: RegisterTrigger,
    ) {
        let local_id = msg.id.clone();
        msg.id = self.binding_key(conn, &msg.id);
        let Some(session) = self.session(conn) else {
            return;
        };
        // A guest binds only functions it may call (its own included only when
        // exposed to it); anything else is answered as a call would be.
        let target: FnKey = (DEFAULT_NAMESPACE.to_owned(), msg.function_id.clone());
        if session.policy.is_some() && !self.may_call(conn, &target) {
            self.refused(
                conn,
                "registertrigger",
                Some(msg.id.clone()),
                RefusalReason::Forbidden,
            );
            let error = self.forbidden_error(conn, &msg.function_id);
            let (id, trigger_type, function_id) = (&msg.id, &msg.trigger_type, &msg.function_id);
            self.trigger_error(now, conn, id, trigger_type, function_id, error);
            return;
        }
        let Some(session) = self.session(conn) else {
            return;
        };
        let session_namespace = session.namespace.clone();
        let (bindings, engine_bindings) = (session.bindings.len(), session.engine_bindings);
        let blank = |ns: &Option<String>| ns.as_deref().is_some_and(|n| n.trim().is_empty());
        let existing = self
            .triggers
            .bindings
            .get(&msg.id)
            .map(|b| (b.owner, b.bytes, is_engine_type(&b.trigger_type)));
        let quotas = self.quotas_of(conn);
        let on_engine_type = is_engine_type(&msg.trigger_type);
        let replaced_engine_binding = existing.is_some_and(|(_, _, engine)| engine);
        let refusal = if blank(&msg.namespace) || blank(&msg.trigger_namespace) {
            Some(ErrorBody::new(
                codes::INVALID_NAMESPACE,
                "namespace must not be blank",
            ))
        } else if existing.is_some_and(|(owner, _, _)| owner != conn) {
            Some(ErrorBody::new(
                codes::TRIGGER_REGISTRATION_FAILED,
                "a trigger with this id is registered by another worker",
            ))
        } else if existing.is_none() && bindings >= quotas.bindings {
            Some(self.binding_refusal(conn, &msg.id, Quota::Bindings, quotas.bindings))
        } else if on_engine_type
            && !replaced_engine_binding
            && engine_bindings >= quotas.engine_bindings
        {
            let limit = quotas.engine_bindings;
            Some(self.binding_refusal(conn, &msg.id, Quota::EngineBindings, limit))
        } else {
            None
        };
        if let Some(error) = refusal {
            let (id, trigger_type, function_id) = (&msg.id, &msg.trigger_type, &msg.function_id);
            self.trigger_error(now, conn, id, trigger_type, function_id, error);
            return;
        }
        let registration = Registration {
            text: msg.id.len() + msg.trigger_type.len() + msg.function_id.len(),
            payloads: [Some(&msg.config), msg.metadata.as_ref(), None, None],
        };
        let replacing = existing.map_or(0, |(_, bytes, _)| bytes);
        let bytes = match self.measure_registration(conn, &registration, replacing) {
            Ok(bytes) => bytes,
            Err((reason, message)) => {
                self.refused(conn, "registertrigger", Some(msg.id.clone()), reason);
                let error = ErrorBody::new(reason.code(), message);
                let (id, trigger_type, function_id) =
                    (&msg.id, &msg.trigger_type, &msg.function_id);
                self.trigger_error(now, conn, id, trigger_type, function_id, error);
                return;
            }
        };
        if existing.is_some() {
            self.remove_binding(now, &msg.id);
        }
        self.account_registration(conn, 0, bytes);
        let trigger_namespace = msg.trigger_namespace.unwrap_or(session_namespace);
        let function = (
            msg.namespace
                .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            msg.function_id,
        );
        self.triggers.bindings.insert(
            msg.id.clone(),
            Binding {
                owner: conn,
                trigger_type: msg.trigger_type,
                trigger_namespace,
                function,
                config: msg.config,
                metadata: msg.metadata,
                active: None,
                bytes,
                local_id: (local_id != msg.id).then_some(local_id),
            },
        );
        if let Some(session) = self.session_mut(conn) {
            session.bindings.insert(msg.id.clone());
            if on_engine_type {
                session.engine_bindings += 1;
            }
        }
        let provider = self.triggers.bindings.get(&msg.id).and_then(|b| {
            let key = self
                .triggers
                .lookup(&b.trigger_namespace, &b.trigger_type)?;
            Some(self.triggers.types.get(&key)?.provider)
        });
        if let Some(provider) = provider {
            self.activate(now, &msg.id, provider);
        }
    }

    /// Reports a binding refused for a count quota and builds its error.
    fn binding_refusal(&mut self, conn: ConnId, id: &str, quota: Quota, limit: usize) -> ErrorBody {
        let reason = RefusalReason::Quota(quota);
        self.refused(conn, "registertrigger", Some(id.to_owned()), reason);
        ErrorBody::new(reason.code(), count_message(quota, limit))
    }

    /// Gives binding `id` to `provider`, telling a worker provider with `registertrigger`.
    /// A provider on an RBAC listener gets only its own bindings: another worker's stay
    /// parked, so their configs never reach it.
    fn activate(&mut self, now: Instant, id: &str, provider: Provider) {
        if let (Provider::Worker(conn), Some(binding)) = (provider, self.triggers.bindings.get(id))
        {
            let untrusted = self.session(conn).is_some_and(|s| s.policy.is_some());
            if untrusted && binding.owner != conn {
                return;
            }
        }
        let local_id = match provider {
            Provider::Worker(conn) => self.local_binding_id(conn, id),
            Provider::Engine => id.to_owned(),
        };
        let Some(binding) = self.triggers.bindings.get_mut(id) else {
            return;
        };
        binding.active = Some(provider);
        let Provider::Worker(conn) = provider else {
            return;
        };
        let not_default = |ns: &str| (ns != DEFAULT_NAMESPACE).then(|| ns.to_owned());
        let message = ControlMessage::RegisterTrigger(RegisterTrigger {
            id: local_id,
            trigger_type: binding.trigger_type.clone(),
            function_id: binding.function.1.clone(),
            config: binding.config.clone(),
            metadata: binding.metadata.clone(),
            namespace: not_default(&binding.function.0),
            trigger_namespace: not_default(&binding.trigger_namespace),
        });
        self.send_control(now, conn, &message);
    }

    pub(super) fn unregister_trigger(&mut self, now: Instant, conn: ConnId, id: &str) {
        let key = self.binding_key(conn, id);
        if self.triggers.bindings.get(&key).map(|b| b.owner) != Some(conn) {
            return;
        }
        self.remove_binding(now, &key);
    }

    /// Removes binding `id`, releasing what it counted for its owner and telling its
    /// worker provider (always with `trigger_type`, which Rust ≤0.23 providers require).
    fn remove_binding(&mut self, now: Instant, id: &str) {
        let Some(binding) = self.triggers.bindings.remove(id) else {
            return;
        };
        self.account_registration(binding.owner, binding.bytes, 0);
        if let Some(session) = self.session_mut(binding.owner) {
            if session.bindings.remove(id) && is_engine_type(&binding.trigger_type) {
                session.engine_bindings = session.engine_bindings.saturating_sub(1);
            }
        }
        if let Some(Provider::Worker(provider)) = binding.active {
            let message = ControlMessage::UnregisterTrigger(UnregisterTrigger {
                id: self.local_binding_id(provider, id),
                trigger_type: Some(binding.trigger_type),
            });
            self.send_control(now, provider, &message);
        }
    }

    /// A provider's verdict on a binding: errors park the binding and go to its owner.
    pub(super) fn trigger_result_from(
        &mut self,
        now: Instant,
        conn: ConnId,
        mut msg: TriggerRegistrationResult,
    ) {
        msg.id = self.binding_key(conn, &msg.id);
        let Some(binding) = self.triggers.bindings.get_mut(&msg.id) else {
            return;
        };
        if binding.active != Some(Provider::Worker(conn)) {
            self.violation(conn, Violation::UnexpectedTriggerResult);
            return;
        }
        let Some(error) = msg.error else {
            return;
        };
        binding.active = None;
        let (owner, trigger_type, function_id) = (
            binding.owner,
            binding.trigger_type.clone(),
            binding.function.1.clone(),
        );
        self.trigger_error(now, owner, &msg.id, &trigger_type, &function_id, error);
    }

    pub(super) fn trigger_error(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: &str,
        trigger_type: &str,
        function_id: &str,
        error: ErrorBody,
    ) {
        let message = ControlMessage::TriggerRegistrationResult(TriggerRegistrationResult {
            id: self.local_binding_id(conn, id),
            trigger_type: trigger_type.to_owned(),
            function_id: function_id.to_owned(),
            error: Some(error),
        });
        self.send_control(now, conn, &message);
    }

    /// A control connection ended: its bindings go (providers are told), its trigger
    /// types go (bindings to them are parked).
    pub(super) fn drop_session_triggers(&mut self, now: Instant, conn: ConnId, session: &Session) {
        for id in &session.bindings {
            if self.triggers.bindings.get(id).map(|b| b.owner) == Some(conn) {
                self.remove_binding(now, id);
            }
        }
        for key in &session.trigger_types {
            if matches!(
                self.triggers.types.get(key),
                Some(TriggerType { provider: Provider::Worker(p), .. }) if *p == conn
            ) {
                self.drop_trigger_type(now, conn, key);
            }
        }
    }

    /// Fires every active binding of the engine-provided `trigger_type`, each on behalf
    /// of the binding's owner.
    fn fire_builtin(&mut self, now: Instant, trigger_type: &str, payload: &Payload) {
        let targets: Vec<(FnKey, Option<Payload>, ConnId)> = self
            .triggers
            .bindings
            .values()
            .filter(|b| b.trigger_type == trigger_type && b.active == Some(Provider::Engine))
            .map(|b| (b.function.clone(), b.metadata.clone(), b.owner))
            .collect();
        for (function, metadata, owner) in targets {
            self.invoke_internal(now, &function, payload.clone(), metadata, owner);
        }
    }

    /// True when some binding of the engine-provided `trigger_type` is active.
    pub(super) fn has_subscribers(&self, trigger_type: &str) -> bool {
        self.triggers
            .bindings
            .values()
            .any(|b| b.trigger_type == trigger_type && b.active == Some(Provider::Engine))
    }

    pub(super) fn fire_workers_available(&mut self, now: Instant, event: &str, worker_id: &str) {
        if !self.has_subscribers(WORKERS_AVAILABLE) {
            return;
        }
        #[derive(serde::Serialize)]
        struct WorkersChanged<'a> {
            event: &'a str,
            worker_id: &'a str,
        }
        let payload = crate::wire::control::to_payload(&WorkersChanged { event, worker_id });
        self.fire_builtin(now, WORKERS_AVAILABLE, &payload);
    }

    /// The function set changed: notify after the configured delay (one notification
    /// per burst), if anybody listens.
    pub(super) fn functions_changed(&mut self, now: Instant) {
        if self.timers.contains(&Timer::FunctionsAvailable)
            || !self.has_subscribers(FUNCTIONS_AVAILABLE)
        {
            return;
        }
        self.timers.set_after(
            Timer::FunctionsAvailable,
            now,
            self.config.functions_available_delay,
        );
    }

    pub(super) fn notify_functions_available(&mut self, now: Instant) {
        if !self.has_subscribers(FUNCTIONS_AVAILABLE) {
            return;
        }
        let payload = self.functions_available_payload();
        self.fire_builtin(now, FUNCTIONS_AVAILABLE, &payload);
    }
}

/// True for the engine's own trigger types, whose bindings count toward
/// `engine_bindings`.
fn is_engine_type(trigger_type: &str) -> bool {
    trigger_type.starts_with(RESERVED_PREFIX)
}
