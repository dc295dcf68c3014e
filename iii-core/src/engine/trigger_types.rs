//! Trigger type registration (`registertriggertype`, `unregistertriggertype`): a worker
//! provides a type, no other worker may take it over, and a guest cannot tell a type
//! another worker provides from a free id unless it may use that type.

use crate::Instant;

use super::quota::{count_message, Registration};
use super::rbac::Hooked;
use super::session::sanitize;
use super::triggers::{Provider, TriggerType, RESERVED_PREFIX};
use super::{Engine, FnKey, Quota, RefusalReason};
use crate::ids::ConnId;
use crate::wire::control::RegisterTriggerType;

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
        let provider = self.triggers.types.get(&key).map(|t| t.provider);
        let held = session.trigger_types.contains(&key);
        // A guest learns that a type is taken only when it may use (and so list) it;
        // one it may not use is answered as a free one: see `shadow_trigger_type`.
        let hidden = session
            .policy
            .as_ref()
            .is_some_and(|p| !p.may_use_trigger_type(&key.1));
        let shadow = hidden && matches!(provider, Some(Provider::Worker(owner)) if owner != conn);
        let limit = self.quotas_of(conn).trigger_types;
        let refusal = match provider {
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
            Some(Provider::Worker(owner)) if owner != conn && !shadow => Some((
                RefusalReason::TriggerTypeOwned,
                "another worker provides this trigger type".to_owned(),
            )),
            Some(Provider::Worker(owner)) if owner == conn => None,
            _ if !held && owned >= limit => Some((
                RefusalReason::Quota(Quota::TriggerTypes),
                count_message(Quota::TriggerTypes, limit),
            )),
            _ => None,
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
        if shadow {
            return self.shadow_trigger_type(conn, key);
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

    /// Records a guest's registration of a trigger type another worker provides and the
    /// guest may not use: it counts toward the guest's quota, and unregistering it frees
    /// it, exactly as for a free id, but nothing is stored and the provider keeps its
    /// type. So the guest cannot tell a taken id from a free one: the answers (none),
    /// listings (it sees neither) and quotas are the same.
    fn shadow_trigger_type(&mut self, conn: ConnId, key: FnKey) {
        let what = "registertriggertype";
        let reason = RefusalReason::TriggerTypeOwned;
        self.refused(conn, what, Some(key.1.clone()), reason);
        if let Some(session) = self.session_mut(conn) {
            session.trigger_types.insert(key);
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
        } else if let Some(session) = self.session_mut(conn) {
            // A shadowed registration (see `shadow_trigger_type`): only its count.
            session.trigger_types.remove(&key);
        }
    }

    pub(super) fn drop_trigger_type(&mut self, _now: Instant, conn: ConnId, key: &FnKey) {
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
}
