//! Events from the core: registration state, invocations, call results, triggers and
//! channel data.

use std::sync::atomic::Ordering;
use std::time::Instant;

use futures_util::FutureExt;
use iii_core::channel::ChannelRefs;
use iii_core::wire::control::to_payload;
use iii_core::wire::{ErrorBody, Payload};
use iii_core::worker::{ConnectionState, SyncOutcome, TraceContext, WorkerEvent};
use iii_core::{ConnId, InvocationId};
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;
use tracing::Instrument;

use super::{CallReply, EndKind, Net, ReaderItem, Task, Waiter};
use crate::runtime::Runtime;
use crate::worker::context::{CallerKeys, Invocation, WithInvocation};
use crate::worker::dial::{DialAnswer, DialFailure};
use crate::worker::handlers::{run_handler, TriggerRequest, DESERIALIZATION_ERROR};
use crate::worker::Error;

impl<R: Runtime> Task<R> {
    /// The control connection could not be opened. A definitive answer (the upgrade
    /// refused as unauthorized; nothing listening at the address before this worker was
    /// ever registered) is reported to waits and calls now rather than after
    /// `connect_timeout`; the worker keeps retrying either way. A refused connection
    /// after a registration (an engine restarting) keeps the usual grace.
    pub(super) fn control_dial_failed(&mut self, now: Instant, conn: ConnId, failure: DialFailure) {
        tracing::warn!(url = %self.address, detail = %failure.detail,
            "cannot connect to the engine; retrying");
        let definitive = match failure.answer {
            DialAnswer::Unauthorized => true,
            DialAnswer::NothingListens => {
                self.core.connection_state() == ConnectionState::Connecting
            }
            DialAnswer::Other => false,
        };
        self.errors.unauthorized = match failure.answer {
            DialAnswer::Unauthorized => failure.status,
            _ => None,
        };
        self.errors.last_dial_error = Some(failure.detail);
        self.core.handle_connect_failed(now, conn, failure.status);
        if definitive {
            self.core.engine_refused(now);
        }
    }

    pub(super) fn event(&mut self, now: Instant, event: WorkerEvent) {
        match event {
            WorkerEvent::Registered { worker_id } => {
                tracing::debug!(%worker_id, "registered with the engine");
                self.registered = true;
                self.unreachable = false;
                self.function_rejections.clear();
                for (_, waiter) in self.connect_waiters.drain(..) {
                    let _ = waiter.send(Ok(()));
                }
            }
            WorkerEvent::Disconnected { reconnect_at } => {
                self.registered = false;
                if reconnect_at.is_none() {
                    self.shared.stopped.store(true, Ordering::Release);
                    let error = self.stop_error();
                    for (_, waiter) in self.connect_waiters.drain(..) {
                        let _ = waiter.send(Err(error.clone()));
                    }
                }
            }
            WorkerEvent::Rejected { rejection, fatal } => {
                tracing::warn!(code = %rejection.code, namespace = %rejection.namespace,
                    function_id = ?rejection.function_id, owner = %rejection.owner_worker_id,
                    fatal, "registration rejected");
                if fatal {
                    self.errors.rejection = Some(rejection);
                } else {
                    self.function_rejections.push(rejection);
                }
            }
            WorkerEvent::Unreachable => {
                self.unreachable = true;
                let error = self.errors.unreachable();
                tracing::error!(%error, "giving up waiting for the engine (still retrying)");
                for (_, waiter) in self.connect_waiters.drain(..) {
                    let _ = waiter.send(Err(error.clone()));
                }
            }
            WorkerEvent::Synced { id, outcome } => {
                let Some(reply) = self.syncs.remove(&id) else {
                    return;
                };
                let result = match outcome {
                    SyncOutcome::Done => match self.function_rejections.first() {
                        Some(rejection) => Err(Error::Rejected(rejection.clone())),
                        None => Ok(()),
                    },
                    SyncOutcome::TimedOut if self.unreachable => Err(self.errors.unreachable()),
                    SyncOutcome::TimedOut => Err(Error::Timeout),
                    SyncOutcome::Stopped => Err(self.stop_error()),
                };
                let _ = reply.send(result);
            }
            WorkerEvent::Invoked {
                invocation_id,
                function_id,
                data,
                metadata,
                traceparent,
                baggage,
            } => {
                let trace = TraceContext {
                    traceparent,
                    baggage,
                };
                self.invoked(now, invocation_id, function_id, &data, metadata, trace);
            }
            WorkerEvent::CallCompleted {
                invocation_id,
                outcome,
                trace,
            } => {
                let result = self.errors.call_result(outcome).map(|raw| (raw, trace));
                self.call_completed(now, invocation_id, result);
            }
            WorkerEvent::TriggerRequested {
                id,
                trigger_type,
                function_id,
                config,
                metadata,
            } => {
                let request = TriggerRequest {
                    id: id.clone(),
                    trigger_type,
                    function_id,
                    config: serde_json::from_str(config.get()).unwrap_or(Value::Null),
                    metadata: metadata.and_then(|m| serde_json::from_str(m.get()).ok()),
                };
                let Some(handler) = self.trigger_types.get(&request.trigger_type).cloned() else {
                    let error = ErrorBody::trigger_type_not_found();
                    let _ = self.core.trigger_registration_result(now, &id, Err(error));
                    return;
                };
                self.bindings.insert(id.clone(), request.clone());
                let tx = self.net_tx.clone();
                self.rt.spawn(Box::pin(async move {
                    let result = handler.register(request).await;
                    let _ = tx.unbounded_send(Net::TriggerResult(id, result));
                }));
            }
            WorkerEvent::TriggerRemoved { id, trigger_type } => {
                let request = self.bindings.remove(&id).unwrap_or(TriggerRequest {
                    id,
                    trigger_type: trigger_type.unwrap_or_default(),
                    function_id: String::new(),
                    config: Value::Null,
                    metadata: None,
                });
                if let Some(handler) = self.trigger_types.get(&request.trigger_type).cloned() {
                    self.rt.spawn(Box::pin(async move {
                        if let Err(error) = handler.unregister(request).await {
                            tracing::warn!(code = %error.code, message = %error.message,
                                "trigger unregister failed");
                        }
                    }));
                }
            }
            WorkerEvent::TriggerFailed {
                id,
                trigger_type,
                function_id,
                error,
            } => {
                tracing::warn!(%id, %trigger_type, %function_id, code = %error.code,
                    message = %error.message, "trigger refused");
                self.shared.mirror().triggers.remove(&id);
            }
            WorkerEvent::ChannelData { end, data } => {
                self.deliver(end, ReaderItem::Binary(data));
            }
            WorkerEvent::ChannelText { end, text } => {
                self.deliver(end, ReaderItem::Text(text.as_str().to_owned()));
            }
            WorkerEvent::ChannelWritable { end } => {
                if let Some(key) = self.keys.get(&end).copied() {
                    self.pump_writer(now, key);
                }
            }
            WorkerEvent::ChannelEnded { end, outcome } => self.ended(now, end, outcome),
            WorkerEvent::ProtocolViolation { detail } => {
                tracing::warn!(%detail, "undecodable message from the engine");
            }
            _ => {}
        }
    }

    pub(super) fn invoked(
        &mut self,
        now: Instant,
        id: InvocationId,
        function_id: String,
        data: &RawValue,
        metadata: Option<Payload>,
        trace: TraceContext,
    ) {
        let Some(handler) = self.handlers.get(&function_id).cloned() else {
            let error = ErrorBody::function_not_found();
            let _ = self.core.complete(now, id, Err(error));
            return;
        };
        let mut input = match serde_json::from_str::<Value>(data.get()) {
            Ok(input) => input,
            Err(error) => {
                let error = ErrorBody::new(DESERIALIZATION_ERROR, error.to_string());
                let _ = self.core.complete(now, id, Err(error));
                return;
            }
        };
        let span = tracing::info_span!("iii.invocation", function_id = %function_id,
            invocation_id = %id, traceparent = trace.traceparent.as_deref().unwrap_or(""));
        let invocation = Invocation {
            invocation_id: id.to_string(),
            function_id,
            metadata: metadata.and_then(|m| serde_json::from_str(m.get()).ok()),
            trace,
            caller: CallerKeys::take_from(&mut input),
        };
        let running = WithInvocation {
            invocation: Arc::new(invocation.clone()),
            future: Box::pin(run_handler(handler, input, invocation)),
        };
        // Poll the handler once here: one that is ready at once (no IO) is answered in
        // this turn, without a spawned task and a hop back through the network queue.
        // One that waits moves to its own task, which polls it again with a real waker.
        let mut running = running.instrument(span);
        if let Some(result) = (&mut running).now_or_never() {
            self.handler_done(now, id, result);
            return;
        }
        let tx = self.net_tx.clone();
        self.rt.spawn(Box::pin(async move {
            let result = running.await;
            let _ = tx.unbounded_send(Net::Complete(id, result));
        }));
    }

    /// A handler finished: its value (or error) answers invocation `id`.
    pub(super) fn handler_done(
        &mut self,
        now: Instant,
        id: InvocationId,
        result: Result<Value, ErrorBody>,
    ) {
        let result = result.map(|value| Some(to_payload(&value)));
        if let Err(error) = self.core.complete(now, id, result) {
            tracing::debug!(%error, "result dropped");
        }
    }

    pub(super) fn call_completed(&mut self, now: Instant, id: InvocationId, result: CallReply) {
        match self.calls.remove(&id) {
            None => {}
            Some(Waiter::Call(reply)) => {
                let _ = reply.send(result);
            }
            Some(Waiter::Channel {
                writer,
                reader,
                credit,
                items,
                reply,
            }) => {
                let refs = result.and_then(|(payload, _)| {
                    let text = payload.as_ref().map_or("null", |p| p.get());
                    serde_json::from_str::<ChannelRefs>(text).map_err(Error::from)
                });
                match refs {
                    Ok(refs) => {
                        self.open_end(now, writer, refs.writer.clone(), EndKind::Writer(credit));
                        self.open_end(now, reader, refs.reader.clone(), EndKind::Reader(items));
                        if reply.send(Ok(refs)).is_err() {
                            // The caller gave up: nobody will ever use these ends.
                            self.release(now, writer);
                            self.release(now, reader);
                        }
                    }
                    Err(error) => {
                        let _ = reply.send(Err(error));
                    }
                }
            }
        }
    }
}
