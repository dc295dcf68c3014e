//! Commands from the handles.

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Command, Task, Waiter};
use crate::runtime::Runtime;
use crate::worker::Error;

impl<R: Runtime> Task<R> {
    pub(super) fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::WaitConnected { deadline, reply } => {
                if self.stopping.is_some() || self.shared.stopped.load(Ordering::Acquire) {
                    let _ = reply.send(Err(self.stop_error()));
                } else if self.registered {
                    let _ = reply.send(Ok(()));
                } else if self.unreachable {
                    let _ = reply.send(Err(self.errors.unreachable()));
                } else {
                    self.connect_waiters.push((deadline, reply));
                }
            }
            Command::Sync { timeout, reply } => {
                let id = self.core.sync(now, timeout);
                self.syncs.insert(id, reply);
            }
            Command::RegisterFunction(spec, handler) => {
                let id = spec.id.clone();
                match self.core.register_function(now, spec) {
                    Ok(()) => {
                        self.handlers.insert(id, handler);
                    }
                    Err(error) => tracing::warn!(%error, "register_function refused"),
                }
            }
            Command::UnregisterFunction(id) => {
                self.handlers.remove(&id);
                if let Err(error) = self.core.unregister_function(now, &id) {
                    tracing::warn!(%error, "unregister_function refused");
                }
            }
            Command::RegisterTriggerType(spec, handler) => {
                let id = spec.id.clone();
                match self.core.register_trigger_type(now, spec) {
                    Ok(()) => {
                        self.trigger_types.insert(id, handler);
                    }
                    Err(error) => tracing::warn!(%error, "register_trigger_type refused"),
                }
            }
            Command::UnregisterTriggerType(id) => {
                self.trigger_types.remove(&id);
                if let Err(error) = self.core.unregister_trigger_type(now, &id) {
                    tracing::warn!(%error, "unregister_trigger_type refused");
                }
            }
            Command::RegisterTrigger(spec, reply) => {
                let result = self.core.register_trigger(now, spec).map_err(Error::from);
                if let Ok(id) = &result {
                    self.shared.mirror().triggers.insert(id.clone());
                }
                let _ = reply.send(result);
            }
            Command::UnregisterTrigger(id) => {
                if let Err(error) = self.core.unregister_trigger(now, &id) {
                    tracing::warn!(%error, "unregister_trigger refused");
                }
            }
            Command::Invoke {
                function_id,
                data,
                options,
                reply,
            } => match self.core.invoke_with(now, &function_id, data, options) {
                Ok(id) => {
                    self.calls.insert(id, Waiter::Call(reply));
                }
                Err(error) => {
                    let _ = reply.send(Err(self.errors.invoke_error(error)));
                }
            },
            Command::InvokeVoid {
                function_id,
                data,
                options,
            } => {
                if let Err(error) = self.core.invoke_void_with(now, &function_id, data, options) {
                    tracing::warn!(%error, %function_id, "trigger_void refused");
                }
            }
            Command::CreateChannel {
                buffer_size,
                writer,
                reader,
                credit,
                items,
                reply,
            } => match self.core.create_channel(now, buffer_size) {
                Ok(id) => {
                    let waiter = Waiter::Channel {
                        writer,
                        reader,
                        credit,
                        items,
                        reply,
                    };
                    self.calls.insert(id, waiter);
                }
                Err(error) => {
                    let _ = reply.send(Err(self.errors.invoke_error(error)));
                }
            },
            Command::OpenEnd {
                key,
                channel_ref,
                kind,
            } => self.open_end(now, key, channel_ref, kind),
            Command::Write {
                key,
                data,
                credited,
            } => self.writer_data(now, key, data, credited),
            Command::Text { key, text, cost } => self.writer_text(now, key, text, cost),
            Command::CloseWriter { key, reply } => self.writer_close(now, key, reply),
            Command::Abort(key) => self.abort(now, key),
            Command::StartReading(key) => self.start_reading(now, key),
            Command::CloseReader(key) => self.close_reader(now, key),
            Command::Consumed { key, bytes } => {
                if let Some(slot) = self.slots.get(&key) {
                    let _ = self.core.channel_consumed(now, slot.end, bytes);
                }
            }
            Command::DropEnd(key) => self.drop_end(now, key),
            Command::Shutdown(reply) => self.begin_stop(now, reply),
        }
    }

    pub(super) fn stop_error(&self) -> Error {
        self.errors.rejected()
    }
}
