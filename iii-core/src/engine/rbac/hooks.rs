//! Registration hooks of RBAC listeners: a function (on a trusted worker) approves, and
//! may rewrite, each function, trigger type and trigger an untrusted worker registers.
//! Only a registration that passed the size and count quotas reaches the hook, and the
//! hook call is one of the session's pending calls (its `pending_invocations` quota).
//! The registration waits for the hook's answer, within the listener's hook timeout;
//! a refusal, an error, no answer in time or a hook that is not registered drops it
//! without telling the worker (as the reference engine does).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::super::invoke::Purpose;
use super::super::session::DEFAULT_NAMESPACE;

use super::super::quota::{count_message, Registration};
use super::super::{Engine, FnKey, Quota, RefusalReason, Timer};
use crate::ids::ConnId;
use crate::wire::builtins::RESERVED_PREFIX;
use crate::wire::control::{
    to_payload, InvokeFunction, Payload, RegisterFunction, RegisterTrigger, RegisterTriggerType,
};
use crate::wire::ErrorBody;
use crate::Instant;

/// A registration waiting for its hook.
#[derive(Debug)]
pub(in crate::engine) enum Hooked {
    /// A function (its id already prefixed), and the id its worker knows it by.
    Function(RegisterFunction, String),
    /// A trigger type.
    TriggerType(RegisterTriggerType),
    /// A trigger (its function id already prefixed).
    Trigger(RegisterTrigger),
}

impl Hooked {
    fn what(&self) -> &'static str {
        match self {
            Hooked::Function(..) => "registerfunction",
            Hooked::TriggerType(_) => "registertriggertype",
            Hooked::Trigger(_) => "registertrigger",
        }
    }

    /// Its index in [`super::super::session::Session::hooks_pending`].
    pub(in crate::engine) fn kind(&self) -> usize {
        match self {
            Hooked::Function(..) => 0,
            Hooked::TriggerType(_) => 1,
            Hooked::Trigger(_) => 2,
        }
    }

    /// Its id (a function's already prefixed).
    fn id(&self) -> &str {
        match self {
            Hooked::Function(spec, _) => &spec.id,
            Hooked::TriggerType(msg) => &msg.id,
            Hooked::Trigger(msg) => &msg.id,
        }
    }

    /// Its payloads, as the size quotas measure them.
    fn measured(&self) -> Registration<'_> {
        match self {
            Hooked::Function(spec, _) => Registration {
                text: spec.id.len() + spec.description.as_ref().map_or(0, String::len),
                payloads: [
                    spec.metadata.as_ref(),
                    spec.request_format.as_ref(),
                    spec.response_format.as_ref(),
                    spec.invocation.as_ref(),
                ],
            },
            Hooked::TriggerType(msg) => Registration {
                text: 0,
                payloads: [
                    msg.trigger_request_format.as_ref(),
                    msg.call_request_format.as_ref(),
                    None,
                    None,
                ],
            },
            Hooked::Trigger(msg) => Registration {
                text: msg.id.len() + msg.trigger_type.len() + msg.function_id.len(),
                payloads: [Some(&msg.config), msg.metadata.as_ref(), None, None],
            },
        }
    }
}

/// A registration of `conn` waiting for its hook.
#[derive(Debug)]
pub(in crate::engine) struct PendingHook {
    conn: ConnId,
    registration: Hooked,
    call: Option<(ConnId, Uuid)>,
}

#[derive(Serialize)]
struct FunctionInput<'a> {
    function_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<&'a RawValue>,
    context: &'a RawValue,
}

#[derive(Serialize)]
struct TriggerTypeInput<'a> {
    trigger_type_id: &'a str,
    description: &'a str,
    context: &'a RawValue,
}

#[derive(Serialize)]
struct TriggerInput<'a> {
    trigger_id: &'a str,
    trigger_type: &'a str,
    function_id: &'a str,
    config: &'a RawValue,
    context: &'a RawValue,
}

#[derive(Deserialize, Default)]
struct FunctionMapping {
    function_id: Option<String>,
    description: Option<String>,
    metadata: Option<Payload>,
}

#[derive(Deserialize, Default)]
struct TriggerTypeMapping {
    trigger_type_id: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize, Default)]
struct TriggerMapping {
    trigger_id: Option<String>,
    trigger_type: Option<String>,
    function_id: Option<String>,
    config: Option<Payload>,
}

/// The mapping a hook answered; a missing or `null` answer keeps everything.
fn mapping<T: for<'de> Deserialize<'de> + Default>(answer: Option<&RawValue>) -> Option<T> {
    match answer {
        None => Some(T::default()),
        Some(raw) => serde_json::from_str(raw.get()).ok(),
    }
}

impl Engine {
    /// The hook that must approve `registration` from `conn`, if its listener has one.
    fn hook_for(&self, conn: ConnId, registration: &Hooked) -> Option<String> {
        let session = self.session(conn)?;
        session.policy.as_ref()?;
        let rbac = self.listener_policy(session.listener)?.rbac.as_ref()?;
        match registration {
            Hooked::Function(..) => rbac.on_function_registration_function_id.clone(),
            Hooked::TriggerType(_) => rbac.on_trigger_type_registration_function_id.clone(),
            Hooked::Trigger(_) => rbac.on_trigger_registration_function_id.clone(),
        }
    }

    /// Sends `registration` of `conn` to its hook when its listener has one (and returns
    /// `None`: the registration continues when the hook answers); returns it back when
    /// no hook applies.
    pub(in crate::engine) fn hold_for_hook(
        &mut self,
        now: Instant,
        conn: ConnId,
        registration: Hooked,
    ) -> Option<Hooked> {
        let Some(hook) = self.hook_for(conn, &registration) else {
            return Some(registration);
        };
        let key: FnKey = (DEFAULT_NAMESPACE.to_owned(), hook.clone());
        let owner = self
            .functions
            .get(&key)
            .copied()
            .filter(|owner| self.session(*owner).is_some_and(|s| s.policy.is_none()));
        let (context, timeout) = {
            let session = self.session(conn)?;
            let context = session
                .policy
                .as_ref()
                .and_then(|p| p.context.clone())
                .unwrap_or_else(|| to_payload(&serde_json::Map::new()));
            let timeout = self
                .listener_policy(session.listener)
                .and_then(|l| l.rbac.as_ref())
                .map(|r| r.hook_timeout)?;
            (context, timeout)
        };
        // Only what could be stored reaches the hook: its size and counts are checked
        // first (counting the registrations of its kind already waiting for a hook),
        // and the hook call is one of the session's pending calls.
        if let Err((reason, message)) = self.hook_precheck(conn, &registration) {
            self.refuse_hooked(now, conn, registration, reason, message);
            return None;
        }
        let Some(owner) = owner else {
            self.registration_not_approved(conn, registration);
            return None;
        };
        let data = match &registration {
            Hooked::Function(spec, _) => to_payload(&FunctionInput {
                function_id: &spec.id,
                description: spec.description.as_deref(),
                metadata: spec.metadata.as_deref(),
                context: &context,
            }),
            Hooked::TriggerType(msg) => to_payload(&TriggerTypeInput {
                trigger_type_id: &msg.id,
                description: &msg.description,
                context: &context,
            }),
            Hooked::Trigger(msg) => to_payload(&TriggerInput {
                trigger_id: &msg.id,
                trigger_type: &msg.trigger_type,
                function_id: &msg.function_id,
                config: &msg.config,
                context: &context,
            }),
        };
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        let call = InvokeFunction {
            invocation_id: None,
            function_id: self.local_id(&key),
            data,
            traceparent: None,
            baggage: None,
            action: None,
            metadata: None,
            namespace: None,
        };
        let id = self.forward_internal(now, owner, call, Purpose::Hook(ticket), Some(conn));
        if let Some(session) = self.session_mut(conn) {
            session.hooks_pending[registration.kind()] += 1;
            session.hook_tickets.insert(ticket);
        }
        self.hooks.insert(
            ticket,
            PendingHook {
                conn,
                registration,
                call: Some((owner, id)),
            },
        );
        self.timers.set_after(Timer::Hook(ticket), now, timeout);
        None
    }

    /// A hook answered: apply its mapping and continue the registration, or refuse it.
    pub(in crate::engine) fn hook_answered(
        &mut self,
        now: Instant,
        ticket: u64,
        answer: Result<Option<Payload>, ErrorBody>,
    ) {
        let Some(pending) = self.take_hook(ticket) else {
            return;
        };
        let conn = pending.conn;
        if self.session(conn).is_none() {
            return; // the worker left meanwhile
        }
        let answer = match answer {
            Ok(answer) => answer,
            Err(_) => return self.registration_not_approved(conn, pending.registration),
        };
        let answer = answer.as_deref();
        match pending.registration {
            Hooked::Function(mut spec, local_id) => {
                let Some(map) = mapping::<FunctionMapping>(answer) else {
                    let refused = Hooked::Function(spec, local_id);
                    return self.registration_not_approved(conn, refused);
                };
                spec.id = map.function_id.unwrap_or(spec.id);
                spec.description = map.description.or(spec.description);
                spec.metadata = map.metadata.or(spec.metadata);
                self.register_approved_function(now, conn, spec, local_id);
            }
            Hooked::TriggerType(mut msg) => {
                let Some(map) = mapping::<TriggerTypeMapping>(answer) else {
                    let refused = Hooked::TriggerType(msg);
                    return self.registration_not_approved(conn, refused);
                };
                msg.id = map.trigger_type_id.unwrap_or(msg.id);
                msg.description = map.description.unwrap_or(msg.description);
                self.register_approved_trigger_type(now, conn, msg);
            }
            Hooked::Trigger(mut msg) => {
                let Some(map) = mapping::<TriggerMapping>(answer) else {
                    return self.registration_not_approved(conn, Hooked::Trigger(msg));
                };
                msg.id = map.trigger_id.unwrap_or(msg.id);
                msg.trigger_type = map.trigger_type.unwrap_or(msg.trigger_type);
                msg.function_id = map.function_id.unwrap_or(msg.function_id);
                msg.config = map.config.unwrap_or(msg.config);
                self.register_approved_trigger(now, conn, msg);
            }
        }
    }

    /// A hook did not answer in time.
    pub(in crate::engine) fn hook_timed_out(&mut self, _now: Instant, ticket: u64) {
        let Some(pending) = self.take_hook(ticket) else {
            return;
        };
        if let Some(key) = pending.call {
            self.forget_pending(key);
        }
        if self.session(pending.conn).is_some() {
            self.registration_not_approved(pending.conn, pending.registration);
        }
    }

    /// Removes hook `ticket` and what its session counts of it.
    fn take_hook(&mut self, ticket: u64) -> Option<PendingHook> {
        let pending = self.hooks.remove(&ticket)?;
        self.timers.cancel(&Timer::Hook(ticket));
        if let Some(session) = self.session_mut(pending.conn) {
            let kind = pending.registration.kind();
            session.hooks_pending[kind] = session.hooks_pending[kind].saturating_sub(1);
            session.hook_tickets.remove(&ticket);
        }
        Some(pending)
    }

    /// Forgets the hooks of a session that ended (their calls were forgotten with the
    /// session's other pending calls).
    pub(in crate::engine) fn drop_session_hooks(&mut self, tickets: &BTreeSet<u64>) {
        for ticket in tickets {
            self.hooks.remove(ticket);
            self.timers.cancel(&Timer::Hook(*ticket));
        }
    }

    /// Checks what a registration waiting for its hook would hold: the same size and
    /// count quotas as when it is stored (the registrations of its kind already waiting
    /// count as held), and one more pending call.
    fn hook_precheck(
        &self,
        conn: ConnId,
        registration: &Hooked,
    ) -> Result<(), (RefusalReason, String)> {
        let Some(session) = self.session(conn) else {
            return Ok(());
        };
        let quotas = self.quotas_of(conn);
        let waiting = session.hooks_pending[registration.kind()];
        let id = registration.id();
        if matches!(registration, Hooked::Function(..) | Hooked::TriggerType(_))
            && (id.is_empty() || id.starts_with(RESERVED_PREFIX))
        {
            return Err((
                RefusalReason::Reserved,
                "ids must be non-empty and outside engine::".to_owned(),
            ));
        }
        let (held, limit, quota, replacing) = match registration {
            Hooked::Function(spec, _) => {
                let key: FnKey = (session.namespace.clone(), spec.id.clone());
                let owned = self.functions.get(&key) == Some(&conn);
                let bytes = session.shadowed.get(&key).copied().or_else(|| {
                    let spec = self.function_specs.get(&key).filter(|_| owned);
                    spec.map(|s| s.bytes)
                });
                (
                    session.functions.len(),
                    quotas.functions,
                    Quota::Functions,
                    bytes,
                )
            }
            Hooked::TriggerType(_) => (
                session.trigger_types.len(),
                quotas.trigger_types,
                Quota::TriggerTypes,
                None,
            ),
            Hooked::Trigger(msg) => {
                let key = self.binding_key(conn, &msg.id);
                let own = self.triggers.bindings.get(&key).filter(|b| b.owner == conn);
                let bytes = own.map(|b| b.bytes);
                (
                    session.bindings.len(),
                    quotas.bindings,
                    Quota::Bindings,
                    bytes,
                )
            }
        };
        if replacing.is_none() && held.saturating_add(waiting) >= limit {
            return Err((RefusalReason::Quota(quota), count_message(quota, limit)));
        }
        self.measure_registration(conn, &registration.measured(), replacing.unwrap_or(0))?;
        let pending = self.pending_by_origin.get(&conn).map_or(0, BTreeSet::len);
        if pending >= quotas.pending_invocations {
            let limit = quotas.pending_invocations;
            return Err((
                RefusalReason::Quota(Quota::PendingInvocations),
                format!(
                    "this worker already has {limit} invocations pending (quota pending_invocations)"
                ),
            ));
        }
        Ok(())
    }

    /// Refuses a registration before its hook is called, with the answer its kind has.
    fn refuse_hooked(
        &mut self,
        now: Instant,
        conn: ConnId,
        registration: Hooked,
        reason: RefusalReason,
        message: String,
    ) {
        let what = registration.what();
        match registration {
            Hooked::Function(spec, _) => self.refuse_function(now, conn, &spec.id, reason, message),
            Hooked::TriggerType(msg) => {
                self.refuse_with_error(now, conn, what, Some(msg.id), reason, message)
            }
            Hooked::Trigger(msg) => {
                self.refused(conn, what, Some(msg.id.clone()), reason);
                let error = ErrorBody::new(reason.code(), message);
                let (id, trigger_type, function_id) =
                    (&msg.id, &msg.trigger_type, &msg.function_id);
                self.trigger_error(now, conn, id, trigger_type, function_id, error);
            }
        }
    }

    /// Drops a registration its hook did not approve (refused, failed, did not answer
    /// in time, or is not registered). As the reference engine does, the worker is not
    /// told: the registration simply does not exist.
    fn registration_not_approved(&mut self, conn: ConnId, registration: Hooked) {
        let what = registration.what();
        let id = registration.id().to_owned();
        self.refused(conn, what, Some(id), RefusalReason::NotApproved);
    }
}
