//! What a session on an RBAC listener may call and see, and the middleware that sees
//! its calls.

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::session::DEFAULT_NAMESPACE;
use super::super::{builtins, Engine, FnKey};
use crate::ids::ConnId;
use crate::wire::codes;
use crate::wire::control::{to_payload, Action, Payload};
use crate::wire::json::without_caller_keys;
use crate::wire::{ControlMessage, ErrorBody};

/// What routing needs to know about a caller.
#[derive(Debug, Clone, Default)]
pub(in crate::engine) struct Caller {
    /// Its listener has RBAC.
    pub(in crate::engine) untrusted: bool,
    /// `AuthResult.context`, for `_caller_context` and the middleware.
    pub(in crate::engine) context: Option<Payload>,
    /// Its listener's middleware function.
    pub(in crate::engine) middleware: Option<String>,
}

/// What the middleware function receives.
#[derive(Serialize)]
struct MiddlewareInput<'a> {
    function_id: &'a str,
    payload: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<&'a Action>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    context: &'a RawValue,
}

impl Engine {
    /// How calls from `conn` are routed.
    pub(in crate::engine) fn caller(&self, conn: ConnId) -> Caller {
        let Some(session) = self.session(conn) else {
            return Caller::default();
        };
        let listener = self.listener_policy(session.listener);
        Caller {
            untrusted: session.policy.is_some(),
            context: session.policy.as_ref().and_then(|p| p.context.clone()),
            middleware: listener.and_then(|l| l.middleware_function_id.clone()),
        }
    }

    /// True when `conn` may call `key`: always for trusted workers; for a session on an
    /// RBAC listener, by its policy (functions of other namespaces never).
    pub(in crate::engine) fn may_call(&self, conn: ConnId, key: &FnKey) -> bool {
        let Some(session) = self.session(conn) else {
            return false;
        };
        let Some(policy) = &session.policy else {
            return true;
        };
        if key.0 != DEFAULT_NAMESPACE {
            return false;
        }
        policy.may_call(&key.1, self.exposed(policy.listener, key))
    }

    /// True when guest `conn` may use `key`, which another worker holds: when it may
    /// call it as registered (it could then find out that it exists by calling it, so a
    /// conflict tells it nothing new). Never judged by the metadata the guest offers:
    /// metadata that would expose the id would turn the conflict into an existence
    /// oracle for every id.
    pub(in crate::engine) fn may_use_taken(&self, conn: ConnId, key: &FnKey) -> bool {
        let Some(policy) = self.session(conn).and_then(|s| s.policy.as_ref()) else {
            return true;
        };
        key.0 == DEFAULT_NAMESPACE && policy.may_call(&key.1, self.exposed(policy.listener, key))
    }

    /// The key of binding `id` of `conn`: a guest's trigger ids live in its own scope
    /// (`{worker_id}::{id}`), so a guest can neither take another worker's id nor tell
    /// a taken id from a free one. Trusted workers' ids are their keys.
    pub(in crate::engine) fn binding_key(&self, conn: ConnId, id: &str) -> String {
        match self.session(conn) {
            Some(session) if session.policy.is_some() => format!("{}::{id}", session.worker_id),
            _ => id.to_owned(),
        }
    }

    /// The id `conn` knows binding `key` by (the inverse of [`Engine::binding_key`]).
    pub(in crate::engine) fn local_binding_id(&self, conn: ConnId, key: &str) -> String {
        match self.session(conn) {
            Some(session) if session.policy.is_some() => key
                .strip_prefix(session.worker_id.as_str())
                .and_then(|rest| rest.strip_prefix("::"))
                .unwrap_or(key)
                .to_owned(),
            _ => key.to_owned(),
        }
    }

    /// True when function `key` matches the `expose_functions` of `listener`.
    pub(in crate::engine) fn exposed(&self, listener: usize, key: &FnKey) -> bool {
        if let Some(spec) = self.function_specs.get(key) {
            return spec.exposed_on.contains(&listener);
        }
        // The engine's own functions have no metadata: only id filters can expose them.
        builtins::is_builtin(&key.1)
            && self
                .listener_policy(listener)
                .and_then(|l| l.rbac.as_ref())
                .is_some_and(|rbac| {
                    rbac.expose_functions
                        .iter()
                        .any(|f| f.matches(&key.1, None))
                })
    }

    /// The RBAC listeners whose filters expose function `id` with `metadata`.
    pub(in crate::engine) fn exposure(
        &self,
        id: &str,
        metadata: Option<&RawValue>,
    ) -> std::collections::BTreeSet<usize> {
        self.config
            .listeners
            .iter()
            .enumerate()
            .filter_map(|(i, listener)| Some((i + 1, listener.rbac.as_ref()?)))
            .filter(|(_, rbac)| {
                rbac.expose_functions
                    .iter()
                    .any(|f| f.matches(id, metadata))
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// The payload the middleware function receives for a call of `function_id`.
    pub(in crate::engine) fn middleware_input(
        function_id: &str,
        payload: &RawValue,
        action: Option<&Action>,
        namespace: Option<&str>,
        context: Option<&RawValue>,
    ) -> Payload {
        let empty = to_payload(&serde_json::Map::new());
        to_payload(&MiddlewareInput {
            function_id,
            payload,
            action,
            namespace,
            context: context.unwrap_or(&empty),
        })
    }
}

impl Engine {
    /// The answer to a call `conn` (a session on an RBAC listener) may not make: the
    /// same for every id outside its exposure, existing or not, naming the setting
    /// that would allow it.
    pub(in crate::engine) fn forbidden_error(&self, conn: ConnId, function_id: &str) -> ErrorBody {
        let denied = self
            .session(conn)
            .and_then(|s| s.policy.as_ref())
            .is_some_and(|p| p.forbidden_functions.iter().any(|f| f == function_id));
        let remedy = if denied {
            "remove from rbac.forbidden_functions"
        } else {
            "add to rbac.expose_functions"
        };
        ErrorBody::new(
            codes::FORBIDDEN,
            format!("function '{function_id}' not allowed ({remedy})"),
        )
    }
}

/// The boundary where a guest's messages (a session on an RBAC listener) enter the
/// engine: every payload it sends loses its top-level `_caller_*` keys here, once, for
/// every path (direct calls, the middleware's `payload`, registration hooks, trigger
/// configs, results). The engine sets `_caller_worker_id` and `_caller_context` itself
/// afterwards, so a trusted function only ever sees the ones the engine vouches for.
pub(in crate::engine) fn from_guest(message: ControlMessage) -> ControlMessage {
    let strip = |p: Option<Payload>| p.map(without_caller_keys);
    match message {
        ControlMessage::InvokeFunction(mut call) => {
            call.data = without_caller_keys(call.data);
            call.metadata = strip(call.metadata);
            ControlMessage::InvokeFunction(call)
        }
        ControlMessage::InvocationResult(mut result) => {
            result.result = strip(result.result);
            ControlMessage::InvocationResult(result)
        }
        ControlMessage::RegisterFunction(mut spec) => {
            spec.metadata = strip(spec.metadata);
            ControlMessage::RegisterFunction(spec)
        }
        ControlMessage::RegisterTrigger(mut msg) => {
            msg.config = without_caller_keys(msg.config);
            msg.metadata = strip(msg.metadata);
            ControlMessage::RegisterTrigger(msg)
        }
        other => other,
    }
}
