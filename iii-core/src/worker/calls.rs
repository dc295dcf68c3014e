//! Calls: outgoing invocations with deadlines, incoming invocations of local functions,
//! trigger requests, and the dispatch of every control message from the engine.

use std::time::Duration;

use crate::Instant;

use super::session::Control;
use super::{
    CallOutcome, CompleteError, InvokeError, Rejection, TimerKey, TraceContext, Worker, WorkerEvent,
};
use crate::ids::InvocationId;
use crate::wire::control::to_payload;
use crate::wire::control::{
    is_no_result, Action, InvocationResult, InvokeFunction, RegistrationRejected,
    TriggerRegistrationResult,
};
use crate::wire::{decode, CloseCode, ControlMessage, Decoded, ErrorBody, Payload};

/// The engine's built-in that mints a channel.
const CREATE_CHANNEL: &str = crate::wire::builtins::CHANNELS_CREATE;
/// The only non-fatal rejection code.
const FUNCTION_CONFLICT: &str = crate::wire::codes::FUNCTION_NAMESPACE_CONFLICT;

/// The longest a call may wait for its result; longer timeouts are clamped to it, so
/// every call has a deadline.
pub const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A call made by this worker that has not finished.
#[derive(Debug)]
pub(super) struct PendingCall {
    /// True once handed to an open control connection (the engine knows it).
    pub(super) sent: bool,
}

/// An invocation of a local function waiting for `complete`.
#[derive(Debug)]
pub(super) struct Incoming {
    function_id: String,
    /// False for a call that arrived without an id: its completion is discarded.
    reply: bool,
    /// The call's trace context, carried back with the result.
    trace: TraceContext,
}

/// How to make a call: everything but the function and its input.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline of the call; `None`: `invocation_timeout`. Ignored by void calls.
    pub timeout: Option<Duration>,
    /// Per-call metadata, delivered to the handler beside the input.
    pub metadata: Option<Payload>,
    /// W3C trace context sent with the call.
    pub trace: TraceContext,
    /// Put the call on this named queue (the engine answers with a receipt) instead of
    /// calling the function directly. Ignored by void calls.
    pub queue: Option<String>,
}

/// A trigger request (as a provider) waiting for `trigger_registration_result`.
#[derive(Debug)]
pub(super) struct TriggerRequest {
    trigger_type: String,
    function_id: String,
}

impl Worker {
    /// Calls `function_id` with `data`; the result arrives as
    /// [`WorkerEvent::CallCompleted`] (after `timeout`, or the configured default, it
    /// is [`CallOutcome::TimedOut`]). Queued while disconnected.
    pub fn invoke(
        &mut self,
        now: Instant,
        function_id: &str,
        data: Payload,
        timeout: Option<Duration>,
    ) -> Result<InvocationId, InvokeError> {
        let options = CallOptions {
            timeout,
            ..CallOptions::default()
        };
        self.invoke_with(now, function_id, data, options)
    }

    /// [`invoke`](Self::invoke) with metadata, trace context or a queue.
    pub fn invoke_with(
        &mut self,
        now: Instant,
        function_id: &str,
        data: Payload,
        options: CallOptions,
    ) -> Result<InvocationId, InvokeError> {
        self.check_invokable(function_id)?;
        let id = self.ids.uuid();
        let message = ControlMessage::InvokeFunction(InvokeFunction {
            invocation_id: Some(id),
            function_id: function_id.to_owned(),
            data,
            traceparent: options.trace.traceparent,
            baggage: options.trace.baggage,
            action: options.queue.map(|queue| Action::Enqueue { queue }),
            metadata: options.metadata,
            namespace: None,
        });
        let sent = self.send_call(Some(id), message.encode())?;
        self.calls.insert(id, PendingCall { sent });
        // Every call has a deadline: an absurd timeout is clamped rather than dropped.
        let timeout = options
            .timeout
            .unwrap_or(self.config.invocation_timeout)
            .min(MAX_CALL_TIMEOUT);
        let at = now.checked_add(timeout).unwrap_or(now);
        self.timers.set(TimerKey::Call(id), at);
        Ok(id)
    }

    fn check_invokable(&self, function_id: &str) -> Result<(), InvokeError> {
        if function_id.is_empty() {
            return Err(InvokeError::EmptyFunctionId);
        }
        if matches!(self.control, Control::Stopped) {
            return Err(InvokeError::Stopped);
        }
        if self.liveness.unreachable {
            return Err(InvokeError::Unreachable);
        }
        Ok(())
    }

    /// Calls `function_id` fire-and-forget (`action: void`, no result).
    pub fn invoke_void(
        &mut self,
        now: Instant,
        function_id: &str,
        data: Payload,
    ) -> Result<(), InvokeError> {
        self.invoke_void_with(now, function_id, data, CallOptions::default())
    }

    /// [`invoke_void`](Self::invoke_void) with metadata and trace context.
    pub fn invoke_void_with(
        &mut self,
        now: Instant,
        function_id: &str,
        data: Payload,
        options: CallOptions,
    ) -> Result<(), InvokeError> {
        let _ = now;
        self.check_invokable(function_id)?;
        let message = ControlMessage::InvokeFunction(InvokeFunction {
            invocation_id: None,
            function_id: function_id.to_owned(),
            data,
            traceparent: options.trace.traceparent,
            baggage: options.trace.baggage,
            action: Some(Action::Void),
            metadata: options.metadata,
            namespace: None,
        });
        self.send_call(None, message.encode()).map(|_| ())
    }

    /// Asks the engine for a new channel (`engine::channels::create`); the result,
    /// delivered as a call result, holds the writer and reader refs.
    pub fn create_channel(
        &mut self,
        now: Instant,
        buffer_size: Option<usize>,
    ) -> Result<InvocationId, InvokeError> {
        #[derive(serde::Serialize)]
        struct Create {
            buffer_size: Option<usize>,
        }
        self.invoke(
            now,
            CREATE_CHANNEL,
            to_payload(&Create { buffer_size }),
            None,
        )
    }

    /// Answers an [`WorkerEvent::Invoked`]: `Ok(None)` sends no `result`.
    pub fn complete(
        &mut self,
        now: Instant,
        invocation_id: InvocationId,
        result: Result<Option<Payload>, ErrorBody>,
    ) -> Result<(), CompleteError> {
        let _ = now;
        let Some(incoming) = self.incoming.remove(&invocation_id) else {
            return Err(CompleteError::UnknownInvocation(invocation_id));
        };
        if incoming.reply {
            let (result, error) = match result {
                Ok(result) => (result, None),
                Err(error) => (None, Some(error)),
            };
            let message = ControlMessage::InvocationResult(InvocationResult {
                invocation_id,
                function_id: incoming.function_id,
                result,
                error,
                traceparent: incoming.trace.traceparent,
                baggage: incoming.trace.baggage,
            });
            self.push_control(message.encode());
            self.pump_control();
        }
        Ok(())
    }

    /// Answers a [`WorkerEvent::TriggerRequested`]: `Ok(())` reports success.
    pub fn trigger_registration_result(
        &mut self,
        now: Instant,
        id: &str,
        result: Result<(), ErrorBody>,
    ) -> Result<(), CompleteError> {
        let _ = now;
        let Some(request) = self.trigger_requests.remove(id) else {
            return Err(CompleteError::UnknownTrigger(id.to_owned()));
        };
        let message = ControlMessage::TriggerRegistrationResult(TriggerRegistrationResult {
            id: id.to_owned(),
            trigger_type: request.trigger_type,
            function_id: request.function_id,
            error: result.err(),
        });
        self.push_control(message.encode());
        self.pump_control();
        Ok(())
    }

    fn send_result(
        &mut self,
        invocation_id: InvocationId,
        function_id: String,
        result: Option<Payload>,
        error: Option<ErrorBody>,
    ) {
        let message = ControlMessage::InvocationResult(InvocationResult {
            invocation_id,
            function_id,
            result,
            error,
            traceparent: None,
            baggage: None,
        });
        self.push_control(message.encode());
        self.pump_control();
    }

    /// Finishes a pending call once: cancels its deadline and emits `CallCompleted`.
    pub(super) fn finish_call(&mut self, id: InvocationId, outcome: CallOutcome) {
        self.finish_call_traced(id, outcome, TraceContext::default());
    }

    fn finish_call_traced(&mut self, id: InvocationId, outcome: CallOutcome, trace: TraceContext) {
        if self.calls.remove(&id).is_none() {
            return;
        }
        self.timers.cancel(&TimerKey::Call(id));
        self.unqueue_call(id);
        self.event(WorkerEvent::CallCompleted {
            invocation_id: id,
            outcome,
            trace,
        });
    }

    /// A call's deadline passed.
    pub(super) fn call_timed_out(&mut self, id: InvocationId) {
        self.finish_call(id, CallOutcome::TimedOut);
    }

    /// One frame from the engine on the open control connection.
    pub(super) fn control_message(&mut self, now: Instant, frame: &[u8]) {
        self.inbound(now);
        let message = match decode(frame, self.config.max_control_message_bytes) {
            Ok(Decoded::Message(message)) => message,
            Ok(Decoded::Unknown { .. } | Decoded::Empty) => return,
            Err(error) => {
                self.event(WorkerEvent::ProtocolViolation {
                    detail: error.to_string(),
                });
                return;
            }
        };
        match message {
            ControlMessage::WorkerRegistered(registered) => {
                self.worker_id = Some(registered.worker_id.clone());
                self.previous = Some((registered.worker_id.clone(), registered.reattach_token));
                self.reached();
                self.event(WorkerEvent::Registered {
                    worker_id: registered.worker_id,
                });
            }
            ControlMessage::RegistrationRejected(rejected) => self.rejected(now, rejected),
            ControlMessage::InvocationResult(result) => {
                if self.liveness.announce == Some(result.invocation_id) {
                    self.announced();
                    return;
                }
                let outcome = match result.error {
                    Some(error) => CallOutcome::Error(error),
                    None if is_no_result(&result.result) => CallOutcome::Ok(None),
                    None => CallOutcome::Ok(result.result),
                };
                let trace = TraceContext {
                    traceparent: result.traceparent,
                    baggage: result.baggage,
                };
                self.finish_call_traced(result.invocation_id, outcome, trace);
            }
            ControlMessage::InvokeFunction(call) => self.invoked(call),
            ControlMessage::RegisterTrigger(request) => {
                if self.registry.has_trigger_type(&request.trigger_type) {
                    self.trigger_requests.insert(
                        request.id.clone(),
                        TriggerRequest {
                            trigger_type: request.trigger_type.clone(),
                            function_id: request.function_id.clone(),
                        },
                    );
                    self.event(WorkerEvent::TriggerRequested {
                        id: request.id,
                        trigger_type: request.trigger_type,
                        function_id: request.function_id,
                        config: request.config,
                        metadata: request.metadata,
                    });
                } else {
                    let reply =
                        ControlMessage::TriggerRegistrationResult(TriggerRegistrationResult {
                            id: request.id,
                            trigger_type: request.trigger_type,
                            function_id: request.function_id,
                            error: Some(ErrorBody::trigger_type_not_found()),
                        });
                    self.push_control(reply.encode());
                    self.pump_control();
                }
            }
            ControlMessage::UnregisterTrigger(removed) => {
                self.trigger_requests.remove(&removed.id);
                self.event(WorkerEvent::TriggerRemoved {
                    id: removed.id,
                    trigger_type: removed.trigger_type,
                });
            }
            ControlMessage::TriggerRegistrationResult(result) => {
                if let Some(error) = result.error {
                    self.event(WorkerEvent::TriggerFailed {
                        id: result.id,
                        trigger_type: result.trigger_type,
                        function_id: result.function_id,
                        error,
                    });
                }
            }
            ControlMessage::Ping => {
                self.push_control(ControlMessage::Pong.encode());
                self.pump_control();
            }
            ControlMessage::Pong => self.pong(),
            // Worker-to-engine messages and pongs mean nothing here.
            _ => {}
        }
    }

    fn invoked(&mut self, call: InvokeFunction) {
        if !self.registry.has_function(&call.function_id) {
            if let Some(invocation_id) = call.invocation_id {
                let error = ErrorBody::function_not_found();
                self.send_result(invocation_id, call.function_id, None, Some(error));
            }
            return;
        }
        let (invocation_id, reply) = match call.invocation_id {
            Some(id) => (id, true),
            None => (self.ids.uuid(), false),
        };
        self.incoming.insert(
            invocation_id,
            Incoming {
                function_id: call.function_id.clone(),
                reply,
                trace: TraceContext {
                    traceparent: call.traceparent.clone(),
                    baggage: call.baggage.clone(),
                },
            },
        );
        self.event(WorkerEvent::Invoked {
            invocation_id,
            function_id: call.function_id,
            data: call.data,
            metadata: call.metadata,
            traceparent: call.traceparent,
            baggage: call.baggage,
        });
    }

    fn rejected(&mut self, now: Instant, rejected: RegistrationRejected) {
        let _ = now;
        let fatal = rejected.code != FUNCTION_CONFLICT;
        let rejection = Rejection {
            code: rejected.code,
            namespace: rejected.namespace,
            worker_name: rejected.worker_name,
            function_id: rejected.function_id,
            owner_worker_id: rejected.owner_worker_id,
        };
        self.event(WorkerEvent::Rejected { rejection, fatal });
        if fatal {
            self.stop_control(
                Some(CloseCode::NORMAL),
                "registration rejected",
                CallOutcome::Rejected,
            );
        }
    }
}
