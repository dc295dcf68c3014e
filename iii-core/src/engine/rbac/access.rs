//! What a session on an RBAC listener may call and see, and the middleware that sees
//! its calls.

use serde::Serialize;
use serde_json::value::RawValue;

use super::super::session::DEFAULT_NAMESPACE;
use super::super::{builtins, Engine, FnKey};
use crate::ids::ConnId;
use crate::wire::control::{to_payload, Action, Payload};

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
