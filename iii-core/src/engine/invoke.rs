//! Invocation routing: calls from workers to the owning worker or to a built-in, and
//! results back to the caller (PROTOCOL.md §4).

use crate::Instant;

use uuid::Uuid;

use super::session::DEFAULT_NAMESPACE;
use super::{Engine, FnKey, Violation};
use crate::ids::ConnId;
use crate::wire::control::{
    with_caller_worker_id, Action, InvocationResult, InvokeFunction, Payload,
};
use crate::wire::{ControlMessage, ErrorBody};

/// An invocation forwarded to a worker and not yet answered.
#[derive(Debug)]
pub(super) struct Pending {
    /// Who gets the result, under which id; `None` for void calls and trigger fires.
    pub(super) caller: Option<(ConnId, Uuid)>,
    pub(super) function_id: String,
}

/// Where a call goes once resolved.
enum Target {
    Builtin,
    Worker(ConnId),
    Missing,
}

impl Engine {
    /// An `invokefunction` from a worker.
    pub(super) fn invoke_from(&mut self, now: Instant, conn: ConnId, call: InvokeFunction) {
        let Some(session) = self.session(conn) else {
            return;
        };
        let caller_worker_id = session.worker_id.clone();
        let void = matches!(call.action, Some(Action::Void));
        let reply_to = if void { None } else { call.invocation_id };
        let reply = |engine: &mut Engine, outcome: Result<Payload, ErrorBody>| {
            if let Some(id) = reply_to {
                engine.reply(now, conn, id, &call.function_id, outcome);
            }
        };
        let namespace = match call.namespace.as_deref() {
            None => DEFAULT_NAMESPACE,
            Some(ns) if ns.trim().is_empty() => {
                let error = ErrorBody::new("INVALID_NAMESPACE", "namespace must not be blank");
                reply(self, Err(error));
                return;
            }
            Some(ns) => ns,
        };
        if let Some(Action::Enqueue { queue }) = &call.action {
            let error = ErrorBody::new(
                "enqueue_error",
                format!(
                    "cannot enqueue to queue '{queue}': no queue provider is installed on this engine"
                ),
            );
            reply(self, Err(error));
            return;
        }
        let key: FnKey = (namespace.to_owned(), call.function_id.clone());
        match self.resolve(&key) {
            Target::Builtin => {
                let outcome = self.call_builtin(now, conn, &call.function_id, &call.data);
                reply(self, outcome);
            }
            Target::Missing => {
                let message = format!(
                    "Function {} not found in namespace {}.",
                    call.function_id, namespace
                );
                reply(self, Err(ErrorBody::new("function_not_found", message)));
            }
            Target::Worker(owner) => {
                let data = with_caller_worker_id(call.data, &caller_worker_id);
                let forwarded = InvokeFunction {
                    invocation_id: None,
                    function_id: call.function_id,
                    data,
                    traceparent: call.traceparent,
                    baggage: call.baggage,
                    action: None,
                    metadata: call.metadata,
                    namespace: None,
                };
                let caller = reply_to.map(|id| (conn, id));
                self.forward(now, owner, forwarded, caller);
            }
        }
    }

    fn resolve(&self, key: &FnKey) -> Target {
        if let Some(owner) = self.functions.get(key) {
            return Target::Worker(*owner);
        }
        if key.0 == DEFAULT_NAMESPACE && super::builtins::is_builtin(&key.1) {
            return Target::Builtin;
        }
        Target::Missing
    }

    /// Sends `call` to `owner`, recording it first so that even an immediate answer finds
    /// its entry. The caller's id is reused toward the owner unless that id is already
    /// pending there.
    fn forward(
        &mut self,
        now: Instant,
        owner: ConnId,
        mut call: InvokeFunction,
        caller: Option<(ConnId, Uuid)>,
    ) {
        let mut id = caller.map_or_else(|| self.ids.uuid(), |(_, id)| id);
        while self.pending.contains_key(&(owner, id)) {
            id = self.ids.uuid();
        }
        call.invocation_id = Some(id);
        self.pending.insert(
            (owner, id),
            Pending {
                caller,
                function_id: call.function_id.clone(),
            },
        );
        if let Some((caller_conn, _)) = caller {
            self.calls_by_caller
                .entry(caller_conn)
                .or_default()
                .insert((owner, id));
        }
        self.send_control(now, owner, &ControlMessage::InvokeFunction(call));
    }

    /// Calls `function_id` from inside the engine (trigger fires); the result is
    /// discarded. Unknown functions are skipped.
    pub(super) fn invoke_internal(
        &mut self,
        now: Instant,
        key: &FnKey,
        data: Payload,
        metadata: Option<Payload>,
    ) {
        let Target::Worker(owner) = self.resolve(key) else {
            return;
        };
        let call = InvokeFunction {
            invocation_id: None,
            function_id: key.1.clone(),
            data,
            traceparent: None,
            baggage: None,
            action: None,
            metadata,
            namespace: None,
        };
        self.forward(now, owner, call, None);
    }

    /// An `invocationresult` from the worker that served the call.
    pub(super) fn result_from(&mut self, now: Instant, conn: ConnId, result: InvocationResult) {
        let Some(pending) = self.pending.remove(&(conn, result.invocation_id)) else {
            // Normal after the caller left; also what a stray or forged result looks like.
            self.violation(conn, Violation::UnknownResult);
            return;
        };
        let Some((caller, caller_id)) = pending.caller else {
            return;
        };
        if let Some(calls) = self.calls_by_caller.get_mut(&caller) {
            calls.remove(&(conn, result.invocation_id));
            if calls.is_empty() {
                self.calls_by_caller.remove(&caller);
            }
        }
        let answer = InvocationResult {
            invocation_id: caller_id,
            function_id: pending.function_id,
            result: result.result,
            error: result.error,
            traceparent: result.traceparent,
            baggage: result.baggage,
        };
        self.send_control(now, caller, &ControlMessage::InvocationResult(answer));
    }

    /// Sends a result to `conn` for its call `id`.
    pub(super) fn reply(
        &mut self,
        now: Instant,
        conn: ConnId,
        id: Uuid,
        function_id: &str,
        outcome: Result<Payload, ErrorBody>,
    ) {
        let (result, error) = match outcome {
            Ok(result) => (Some(result), None),
            Err(error) => (None, Some(error)),
        };
        let answer = InvocationResult {
            invocation_id: id,
            function_id: function_id.to_owned(),
            result,
            error,
            traceparent: None,
            baggage: None,
        };
        self.send_control(now, conn, &ControlMessage::InvocationResult(answer));
    }

    /// `conn` is gone: its callers get `invocation_stopped`, and the calls it made are
    /// forgotten (their results will have nowhere to go).
    pub(super) fn stop_invocations(&mut self, now: Instant, conn: ConnId) {
        let served: Vec<(ConnId, Uuid)> = self
            .pending
            .range((conn, Uuid::nil())..=(conn, Uuid::max()))
            .map(|(key, _)| *key)
            .collect();
        for key in served {
            let Some(pending) = self.pending.remove(&key) else {
                continue;
            };
            if let Some((caller, caller_id)) = pending.caller {
                if let Some(calls) = self.calls_by_caller.get_mut(&caller) {
                    calls.remove(&key);
                    if calls.is_empty() {
                        self.calls_by_caller.remove(&caller);
                    }
                }
                let error = ErrorBody::new("invocation_stopped", "Invocation stopped");
                self.reply(now, caller, caller_id, &pending.function_id, Err(error));
            }
        }
        if let Some(made) = self.calls_by_caller.remove(&conn) {
            for key in made {
                if let Some(pending) = self.pending.get_mut(&key) {
                    pending.caller = None;
                }
            }
        }
    }
}
