//! Invocation routing: calls from workers to the owning worker or to a built-in, and
//! results back to the caller, correlated by the caller's `invocation_id` (a call with
//! `action: void` has none and gets no result).
//!
//! Every invocation forwarded to a worker counts against the quota of its *origin*: the
//! worker that made the call (void calls included) or, for a trigger fire, the worker
//! that registered the binding. When the origin disconnects its pending invocations are
//! forgotten (a late result is dropped as unknown), so what one worker can leave
//! pending in the engine is bounded by its `pending_invocations` quota.

use crate::wire::codes;
use std::collections::BTreeSet;

use uuid::Uuid;

use super::metrics::InvocationOutcome;
use super::rbac::Caller;
use super::session::DEFAULT_NAMESPACE;
use super::{Engine, EngineEvent, FnKey, Quota, RefusalReason, Ticket, Timer, Violation};
use crate::ids::ConnId;
use crate::wire::control::{Action, InvocationResult, InvokeFunction, Payload};
use crate::wire::json::{nesting_exceeds, with_caller_keys};
use crate::wire::{ControlMessage, ErrorBody};
use crate::Instant;

/// An invocation forwarded to a worker and not yet answered.
#[derive(Debug)]
pub(super) struct Pending {
    /// Who gets the result, under which id; `None` for void calls and trigger fires.
    pub(super) caller: Option<(ConnId, Uuid)>,
    /// Whose quota it counts against.
    pub(super) origin: Option<ConnId>,
    pub(super) function_id: String,
    /// The caller's own trace context, echoed in its result (see `result_from`).
    pub(super) caller_trace: CallerTrace,
    /// When the engine forwarded it (for the latency histogram).
    pub(super) started: Instant,
    /// Why the engine sent it.
    pub(super) purpose: Purpose,
}

/// Why an invocation was forwarded to a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A call (from a worker, or a trigger fire).
    Call,
    /// The authentication function of a deferred upgrade.
    Admission(Ticket),
    /// A registration hook.
    Hook(u64),
}

/// The `traceparent` and `baggage` a caller sent with its call.
#[derive(Debug, Default)]
pub(super) struct CallerTrace {
    traceparent: Option<String>,
    baggage: Option<String>,
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
        let caller = self.caller(conn);
        let void = matches!(call.action, Some(Action::Void));
        let reply_to = if void { None } else { call.invocation_id };
        // An answer from the engine itself: counted, and sent unless the call is void.
        let reply = |engine: &mut Engine, outcome: Result<Payload, ErrorBody>| {
            let counted = match &outcome {
                Ok(_) => InvocationOutcome::Ok,
                Err(error) if error.code == codes::FUNCTION_NOT_FOUND => {
                    InvocationOutcome::NotFound
                }
                Err(_) => InvocationOutcome::Error,
            };
            engine.metrics.invocation(counted, None);
            if let Some(id) = reply_to {
                engine.reply(now, conn, id, &call.function_id, outcome);
            }
        };
        let namespace = match call.namespace.as_deref() {
            None => DEFAULT_NAMESPACE,
            Some(ns) if ns.trim().is_empty() => {
                let error = ErrorBody::new(codes::INVALID_NAMESPACE, "namespace must not be blank");
                reply(self, Err(error));
                return;
            }
            Some(ns) => ns,
        };
        if let Some(Action::Enqueue { queue }) = &call.action {
            let error = ErrorBody::new(
                codes::ENQUEUE_ERROR,
                format!(
                    "cannot enqueue to queue '{queue}': no queue provider is installed on this engine"
                ),
            );
            reply(self, Err(error));
            return;
        }
        let depth = self.config.max_payload_depth;
        let too_deep = nesting_exceeds(call.data.get(), depth)
            || call
                .metadata
                .as_ref()
                .is_some_and(|m| nesting_exceeds(m.get(), depth));
        if too_deep {
            self.refused(
                conn,
                "invokefunction",
                Some(call.function_id.clone()),
                RefusalReason::TooDeep,
            );
            reply(self, Err(too_deep_error(depth)));
            return;
        }
        let key: FnKey = (namespace.to_owned(), call.function_id.clone());
        let target = self.resolve(&key);
        let not_found = || {
            ErrorBody::new(
                codes::FUNCTION_NOT_FOUND,
                format!("Function {} not found in namespace {}.", key.1, key.0),
            )
        };
        // An untrusted caller learns nothing about what it may not call: every id
        // outside its exposure is answered FORBIDDEN, whether it exists or not.
        if caller.untrusted && !self.may_call(conn, &key) {
            self.refused(
                conn,
                "invokefunction",
                Some(key.1.clone()),
                RefusalReason::Forbidden,
            );
            let error = self.forbidden_error(conn, &key.1);
            reply(self, Err(error));
            return;
        }
        if matches!(target, Target::Missing) {
            reply(self, Err(not_found()));
            return;
        }
        // The engine's own functions bypass the middleware: forwarded by it, they would
        // run as the middleware's (trusted) worker, and a filtered listing or the
        // caller's own registration and channels would become the middleware's.
        if let Some(middleware) = caller.middleware.clone() {
            if !matches!(target, Target::Builtin) {
                self.invoke_middleware(now, conn, call, &key, &caller, &middleware);
                return;
            }
        }
        match target {
            Target::Missing => {}
            Target::Builtin => {
                // A built-in is answered at once, but it is a call like any other: it is
                // admitted under the pending-invocation quota and the session's rate.
                let admitted = self
                    .check_pending_quota(conn, "invokefunction", &key.1)
                    .and_then(|()| self.check_builtin_rate(now, conn, &key.1));
                let outcome = admitted
                    .and_then(|()| self.call_builtin(now, conn, &call.function_id, &call.data));
                reply(self, outcome);
            }
            Target::Worker(owner) => {
                if let Err(error) = self.check_pending_quota(conn, "invokefunction", &key.1) {
                    reply(self, Err(error));
                    return;
                }
                // A guest serving the call never learns another worker's id.
                let shown = (owner == conn || !self.is_guest(owner)).then_some(&*caller_worker_id);
                let data = with_caller(call.data, shown, &caller);
                let forwarded = InvokeFunction {
                    invocation_id: None,
                    function_id: self.local_id(&key),
                    data,
                    traceparent: call.traceparent,
                    baggage: call.baggage,
                    action: None,
                    metadata: call.metadata,
                    namespace: None,
                };
                let caller = reply_to.map(|id| (conn, id));
                let caller_trace = match caller {
                    Some(_) => CallerTrace {
                        traceparent: forwarded.traceparent.clone(),
                        baggage: forwarded.baggage.clone(),
                    },
                    None => CallerTrace::default(),
                };
                let pending = Pending {
                    caller,
                    origin: Some(conn),
                    function_id: call.function_id,
                    caller_trace,
                    started: now,
                    purpose: Purpose::Call,
                };
                self.forward(now, owner, forwarded, pending);
            }
        }
    }

    /// Sends a call of `conn` to its listener's middleware function instead of `key`:
    /// the middleware decides what is invoked, and its answer is the caller's.
    fn invoke_middleware(
        &mut self,
        now: Instant,
        conn: ConnId,
        call: InvokeFunction,
        key: &FnKey,
        caller: &Caller,
        middleware: &str,
    ) {
        let void = matches!(call.action, Some(Action::Void));
        let reply_to = if void { None } else { call.invocation_id };
        let middleware_key: FnKey = (DEFAULT_NAMESPACE.to_owned(), middleware.to_owned());
        let Target::Worker(owner) = self.resolve(&middleware_key) else {
            self.metrics.invocation(InvocationOutcome::Error, None);
            if let Some(id) = reply_to {
                let error = ErrorBody::new(
                    codes::MIDDLEWARE_UNAVAILABLE,
                    "this listener's middleware function is not registered",
                );
                self.reply(now, conn, id, &call.function_id, Err(error));
            }
            return;
        };
        if let Err(error) = self.check_pending_quota(conn, "invokefunction", &key.1) {
            if let Some(id) = reply_to {
                self.reply(now, conn, id, &call.function_id, Err(error));
            }
            return;
        }
        let namespace = (key.0 != DEFAULT_NAMESPACE).then_some(key.0.as_str());
        let data = Engine::middleware_input(
            &key.1,
            &call.data,
            call.action.as_ref(),
            namespace,
            caller.context.as_deref(),
        );
        let forwarded = InvokeFunction {
            invocation_id: None,
            function_id: self.local_id(&middleware_key),
            data,
            traceparent: call.traceparent,
            baggage: call.baggage,
            action: None,
            metadata: call.metadata,
            namespace: None,
        };
        let caller_trace = CallerTrace {
            traceparent: forwarded.traceparent.clone(),
            baggage: forwarded.baggage.clone(),
        };
        let pending = Pending {
            caller: reply_to.map(|id| (conn, id)),
            origin: Some(conn),
            function_id: call.function_id,
            caller_trace,
            started: now,
            purpose: Purpose::Call,
        };
        self.forward(now, owner, forwarded, pending);
    }

    /// The id the worker serving `key` knows it by (without the engine's prefix).
    pub(super) fn local_id(&self, key: &FnKey) -> String {
        self.function_specs
            .get(key)
            .and_then(|spec| spec.local_id.clone())
            .unwrap_or_else(|| key.1.clone())
    }

    /// Refuses a new invocation of `origin` past its `pending_invocations` quota.
    fn check_pending_quota(
        &mut self,
        origin: ConnId,
        what: &'static str,
        function_id: &str,
    ) -> Result<(), ErrorBody> {
        let limit = self.quotas_of(origin).pending_invocations;
        let pending = self.pending_by_origin.get(&origin).map_or(0, BTreeSet::len);
        if pending < limit {
            return Ok(());
        }
        let reason = RefusalReason::Quota(Quota::PendingInvocations);
        self.refused(origin, what, Some(function_id.to_owned()), reason);
        Err(ErrorBody::new(
            reason.code(),
            format!(
                "this worker already has {limit} invocations pending (quota pending_invocations)"
            ),
        ))
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
    /// pending there. Returns the id used toward the owner.
    fn forward(
        &mut self,
        now: Instant,
        owner: ConnId,
        mut call: InvokeFunction,
        pending: Pending,
    ) -> Uuid {
        let mut id = pending.caller.map_or_else(|| self.ids.uuid(), |(_, id)| id);
        while self.pending.contains_key(&(owner, id)) {
            id = self.ids.uuid();
        }
        call.invocation_id = Some(id);
        if let Some(origin) = pending.origin {
            self.pending_by_origin
                .entry(origin)
                .or_default()
                .insert((owner, id));
        }
        if let (Some(timeout), Purpose::Call) = (self.config.invocation_timeout, pending.purpose) {
            self.timers
                .set_after(Timer::Invocation(owner, id), now, timeout);
        }
        self.pending.insert((owner, id), pending);
        self.send_control(now, owner, &ControlMessage::InvokeFunction(call));
        id
    }

    /// Sends `call` to `owner` on the engine's own behalf (an authentication function or
    /// a registration hook); its answer comes back to the machine, per `purpose`. It
    /// counts as a pending call of `origin`, if any (the session whose registration a
    /// hook decides).
    pub(super) fn forward_internal(
        &mut self,
        now: Instant,
        owner: ConnId,
        call: InvokeFunction,
        purpose: Purpose,
        origin: Option<ConnId>,
    ) -> Uuid {
        let pending = Pending {
            caller: None,
            origin,
            function_id: call.function_id.clone(),
            caller_trace: CallerTrace::default(),
            started: now,
            purpose,
        };
        self.forward(now, owner, call, pending)
    }

    /// Forgets the invocation `key` (its answer will be dropped as unknown).
    pub(super) fn forget_pending(&mut self, key: (ConnId, Uuid)) {
        self.take_pending(key);
    }

    /// Calls `function_id` from inside the engine (trigger fires) on behalf of `origin`
    /// (the binding's owner); the result is discarded. Unknown functions are skipped,
    /// and so are fires past the origin's quota.
    pub(super) fn invoke_internal(
        &mut self,
        now: Instant,
        key: &FnKey,
        data: Payload,
        metadata: Option<Payload>,
        origin: ConnId,
    ) {
        let Target::Worker(owner) = self.resolve(key) else {
            return;
        };
        if self
            .check_pending_quota(origin, "trigger fire", &key.1)
            .is_err()
        {
            return;
        }
        let call = InvokeFunction {
            invocation_id: None,
            function_id: self.local_id(key),
            data,
            traceparent: None,
            baggage: None,
            action: None,
            metadata,
            namespace: None,
        };
        let pending = Pending {
            caller: None,
            origin: Some(origin),
            function_id: key.1.clone(),
            caller_trace: CallerTrace::default(),
            started: now,
            purpose: Purpose::Call,
        };
        self.forward(now, owner, call, pending);
    }

    /// Removes the pending invocation `key` and its bookkeeping.
    fn take_pending(&mut self, key: (ConnId, Uuid)) -> Option<Pending> {
        let pending = self.pending.remove(&key)?;
        if let Some(origin) = pending.origin {
            if let Some(keys) = self.pending_by_origin.get_mut(&origin) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.pending_by_origin.remove(&origin);
                }
            }
        }
        self.timers.cancel(&Timer::Invocation(key.0, key.1));
        Some(pending)
    }

    /// An `invocationresult` from the worker that served the call.
    pub(super) fn result_from(&mut self, now: Instant, conn: ConnId, result: InvocationResult) {
        let Some(pending) = self.take_pending((conn, result.invocation_id)) else {
            // Normal after the caller left; also what a stray or forged result looks like.
            self.violation(conn, Violation::UnknownResult);
            return;
        };
        let answered = match (&result.error, &result.result) {
            (Some(error), _) => Err(error.clone()),
            (None, result) => Ok(result
                .as_ref()
                .filter(|r| r.get().trim() != "null")
                .cloned()),
        };
        match pending.purpose {
            Purpose::Call => {}
            Purpose::Admission(ticket) => return self.admission_answered(now, ticket, answered),
            Purpose::Hook(ticket) => return self.hook_answered(now, ticket, answered),
        }
        let outcome = match result.error {
            Some(_) => InvocationOutcome::Error,
            None => InvocationOutcome::Ok,
        };
        let latency = now.saturating_duration_since(pending.started);
        self.metrics.invocation(outcome, Some(latency));
        self.metrics.function_call(
            self.config.metrics_function_labels,
            &pending.function_id,
            outcome,
            Some(latency),
        );
        let Some((caller, caller_id)) = pending.caller else {
            return;
        };
        let depth = self.config.max_payload_depth;
        let (result_payload, error) = match result.result {
            Some(payload) if nesting_exceeds(payload.get(), depth) => {
                self.refused(
                    conn,
                    "invocationresult",
                    Some(pending.function_id.clone()),
                    RefusalReason::TooDeep,
                );
                (None, Some(too_deep_error(depth)))
            }
            payload => (payload, result.error),
        };
        // The callee's trace context stays with the callee. In the W3C trace-context
        // model `traceparent` names the caller's span to a callee: it flows with the
        // request, never back. A callee's `traceparent` in a result would make a caller
        // that adopts it parent its next spans under a span of another process (and
        // reveal that process's trace ids). The caller gets its own context back, as
        // the reference engine does, so SDKs that read the field see a consistent one.
        let answer = InvocationResult {
            invocation_id: caller_id,
            function_id: pending.function_id,
            result: result_payload,
            error,
            traceparent: pending.caller_trace.traceparent,
            baggage: pending.caller_trace.baggage,
        };
        self.send_control(now, caller, &ControlMessage::InvocationResult(answer));
    }

    /// `invocation_timeout` passed for the invocation pending at `owner` under `id`.
    pub(super) fn invocation_timed_out(&mut self, now: Instant, owner: ConnId, id: Uuid) {
        let Some(pending) = self.take_pending((owner, id)) else {
            return;
        };
        let latency = now.saturating_duration_since(pending.started);
        self.metrics
            .invocation(InvocationOutcome::Timeout, Some(latency));
        self.metrics.function_call(
            self.config.metrics_function_labels,
            &pending.function_id,
            InvocationOutcome::Timeout,
            Some(latency),
        );
        self.emit(EngineEvent::InvocationTimedOut {
            conn: owner,
            function_id: pending.function_id.clone(),
        });
        if let Some((caller, caller_id)) = pending.caller {
            let millis = self.config.invocation_timeout.map_or(0, |t| t.as_millis());
            let error = ErrorBody::new(
                codes::INVOCATION_TIMEOUT,
                format!(
                    "the function did not answer within {millis} ms (engine invocation_timeout)"
                ),
            );
            self.reply(now, caller, caller_id, &pending.function_id, Err(error));
        }
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

    /// `conn` is gone: the callers of the invocations it served get
    /// `invocation_stopped`, and the invocations it originated are forgotten (their
    /// results will have nowhere to go).
    pub(super) fn stop_invocations(&mut self, now: Instant, conn: ConnId) {
        let served: Vec<(ConnId, Uuid)> = self
            .pending
            .range((conn, Uuid::nil())..=(conn, Uuid::max()))
            .map(|(key, _)| *key)
            .collect();
        for key in served {
            let Some(pending) = self.take_pending(key) else {
                continue;
            };
            let stopped = ErrorBody::new(codes::INVOCATION_STOPPED, "Invocation stopped");
            match pending.purpose {
                Purpose::Call => {}
                Purpose::Admission(ticket) => {
                    self.admission_answered(now, ticket, Err(stopped));
                    continue;
                }
                Purpose::Hook(ticket) => {
                    self.hook_answered(now, ticket, Err(stopped));
                    continue;
                }
            }
            self.metrics.invocation(InvocationOutcome::Stopped, None);
            self.metrics.function_call(
                self.config.metrics_function_labels,
                &pending.function_id,
                InvocationOutcome::Stopped,
                None,
            );
            if let Some((caller, caller_id)) = pending.caller {
                let error = ErrorBody::new(codes::INVOCATION_STOPPED, "Invocation stopped");
                self.reply(now, caller, caller_id, &pending.function_id, Err(error));
            }
        }
        if let Some(originated) = self.pending_by_origin.remove(&conn) {
            for key in originated {
                if self.pending.remove(&key).is_some() {
                    self.metrics.invocation(InvocationOutcome::Stopped, None);
                }
                self.timers.cancel(&Timer::Invocation(key.0, key.1));
            }
        }
    }

    /// Invocations pending at worker `conn`.
    pub(super) fn active_invocations(&self, conn: ConnId) -> usize {
        self.pending
            .range((conn, Uuid::nil())..=(conn, Uuid::max()))
            .count()
    }
}

/// `data` with `_caller_worker_id` set (removed when `worker_id` is `None`) and, for
/// callers on RBAC listeners, `_caller_context` set to their session's context (or
/// removed when it has none, so that an untrusted caller cannot forge one).
fn with_caller(data: Payload, worker_id: Option<&str>, caller: &Caller) -> Payload {
    let context = caller.untrusted.then_some(caller.context.as_deref());
    with_caller_keys(data, worker_id, context)
}

fn too_deep_error(depth: usize) -> ErrorBody {
    ErrorBody::new(
        codes::PAYLOAD_TOO_DEEP,
        format!("payload nests deeper than {depth} levels (engine max_payload_depth)"),
    )
}
