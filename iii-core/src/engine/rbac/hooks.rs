//! Registration hooks of RBAC listeners: a function (on a trusted worker) approves, and
//! may rewrite, each function, trigger type and trigger an untrusted worker registers.
//! The registration waits for the hook's answer, within the listener's hook timeout;
//! a refusal, an error, no answer in time or a hook that is not registered refuses it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::super::invoke::Purpose;
use super::super::session::DEFAULT_NAMESPACE;
use super::super::{Engine, FnKey, RefusalReason, Timer};
use crate::ids::ConnId;
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
        let Some(owner) = owner else {
            self.registration_not_approved(now, conn, registration);
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
        let id = self.forward_internal(now, owner, call, Purpose::Hook(ticket));
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
        let Some(pending) = self.hooks.remove(&ticket) else {
            return;
        };
        self.timers.cancel(&Timer::Hook(ticket));
        let conn = pending.conn;
        if self.session(conn).is_none() {
            return; // the worker left meanwhile
        }
        let answer = match answer {
            Ok(answer) => answer,
            Err(_) => return self.registration_not_approved(now, conn, pending.registration),
        };
        let answer = answer.as_deref();
        match pending.registration {
            Hooked::Function(mut spec, local_id) => {
                let Some(map) = mapping::<FunctionMapping>(answer) else {
                    let refused = Hooked::Function(spec, local_id);
                    return self.registration_not_approved(now, conn, refused);
                };
                spec.id = map.function_id.unwrap_or(spec.id);
                spec.description = map.description.or(spec.description);
                spec.metadata = map.metadata.or(spec.metadata);
                self.register_approved_function(now, conn, spec, local_id);
            }
            Hooked::TriggerType(mut msg) => {
                let Some(map) = mapping::<TriggerTypeMapping>(answer) else {
                    let refused = Hooked::TriggerType(msg);
                    return self.registration_not_approved(now, conn, refused);
                };
                msg.id = map.trigger_type_id.unwrap_or(msg.id);
                msg.description = map.description.unwrap_or(msg.description);
                self.register_approved_trigger_type(now, conn, msg);
            }
            Hooked::Trigger(mut msg) => {
                let Some(map) = mapping::<TriggerMapping>(answer) else {
                    return self.registration_not_approved(now, conn, Hooked::Trigger(msg));
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
    pub(in crate::engine) fn hook_timed_out(&mut self, now: Instant, ticket: u64) {
        let Some(pending) = self.hooks.remove(&ticket) else {
            return;
        };
        if let Some(key) = pending.call {
            self.forget_pending(key);
        }
        if self.session(pending.conn).is_some() {
            self.registration_not_approved(now, pending.conn, pending.registration);
        }
    }

    /// Refuses a registration its hook did not approve, with the answer its kind has.
    fn registration_not_approved(&mut self, now: Instant, conn: ConnId, registration: Hooked) {
        let reason = RefusalReason::NotApproved;
        let message = "the registration hook did not approve it".to_owned();
        let what = registration.what();
        match registration {
            Hooked::Function(spec, _) => self.refuse_function(now, conn, &spec.id, reason, message),
            Hooked::TriggerType(msg) => {
                self.refuse_with_error(now, conn, what, Some(msg.id), reason, message)
            }
            Hooked::Trigger(msg) => {
                self.refused(conn, what, Some(msg.id.clone()), reason);
                let error = ErrorBody::new(reason.code(), message);
                self.trigger_error(
                    now,
                    conn,
                    &msg.id,
                    &msg.trigger_type,
                    &msg.function_id,
                    error,
                );
            }
        }
    }
}
