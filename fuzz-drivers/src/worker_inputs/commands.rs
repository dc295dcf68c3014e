//! Time, calls and commands driven from fuzz input on the worker rig.

use std::time::Duration;

use super::*;
use crate::Input;

use bytes::Bytes;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use iii_core::channel::{ChannelRef, Direction};
use iii_core::wire::control::to_payload;
use iii_core::wire::{CloseCode, ErrorBody, Message, Payload, Text};
use iii_core::worker::{EndId, FunctionSpec, TriggerSpec, TriggerTypeSpec};

impl super::WorkerRig {
    pub(super) fn time(&mut self, input: &mut Input<'_>) {
        match input.below(3) {
            0 => self.now += Duration::from_millis(input.below(1000) as u64),
            1 => {
                if let Some(at) = self.worker.poll_timeout() {
                    self.now = self.now.max(at);
                }
            }
            _ => {}
        }
        let now = self.now;
        self.worker.handle_timeout(now);
        if let Some(at) = self.worker.poll_timeout() {
            assert!(at > now, "poll_timeout is due right after handle_timeout");
        }
        self.drain();
        let overdue: Vec<_> = self
            .calls
            .iter()
            .filter(|(_, c)| c.deadline <= now)
            .collect();
        assert!(overdue.is_empty(), "calls past their deadline: {overdue:?}");
    }

    pub(super) fn invoke(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        let function_id = ["f0", "remote", "engine::channels::create", ""][input.below(4)];
        let timeout = match input.below(3) {
            0 => None,
            _ => Some(Duration::from_millis(input.below(2000) as u64)),
        };
        let data = to_payload(&payload_value(input, &[]));
        let open = self.worker.is_connected();
        let (result, timeout) = match input.below(6) {
            // `create_channel` always uses the configured default timeout.
            0 => (self.worker.create_channel(now, Some(input.below(9))), None),
            1 => {
                let _ = self.worker.invoke_void(now, function_id, data);
                return;
            }
            _ => (self.worker.invoke(now, function_id, data, timeout), timeout),
        };
        if let Ok(id) = result {
            assert!(
                !self.completed.contains(&id) && !self.calls.contains_key(&id),
                "invocation id {id} reused"
            );
            let timeout = timeout.unwrap_or(self.default_timeout);
            self.calls.insert(
                id,
                CallModel {
                    deadline: now + timeout,
                    sent: open,
                },
            );
            push_capped(&mut self.made, id);
        }
    }

    pub(super) fn complete(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        let id = match input.pick(&self.incoming_seen) {
            Some(id) if input.below(4) != 0 => *id,
            _ => Uuid::from_u64_pair(input.u64(), 1),
        };
        let result: Result<Option<Payload>, ErrorBody> = match input.below(3) {
            0 => Err(ErrorBody::new("failed", "fuzz")),
            1 => Ok(None),
            _ => Ok(Some(to_payload(&json!({"r": input.u8()})))),
        };
        let waiting = self.incoming.remove(&id);
        let done = self.worker.complete(now, id, result).is_ok();
        assert_eq!(
            done, waiting,
            "complete({id}) accepted={done}, waiting={waiting}"
        );
    }

    /// The application's side: every command of the worker API.
    pub(super) fn command(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(20) {
            0..=2 => self.invoke(input),
            3 | 4 => self.complete(input),
            5 => {
                let id = match input.pick(&BINDINGS) {
                    Some(id) => (*id).to_owned(),
                    None => String::new(),
                };
                let waiting = self.trigger_requests.remove(&id);
                let result = if input.bool() {
                    Ok(())
                } else {
                    Err(ErrorBody::new("trigger_registration_failed", "no"))
                };
                let done = self
                    .worker
                    .trigger_registration_result(now, &id, result)
                    .is_ok();
                assert_eq!(done, waiting, "trigger_registration_result({id})");
            }
            6 => {
                let id = WORKER_FUNCTIONS[input.below(3)].to_owned();
                if input.bool() {
                    let spec = FunctionSpec {
                        id: id.clone(),
                        description: None,
                        request_format: None,
                        response_format: None,
                        metadata: None,
                    };
                    if self.worker.register_function(now, spec).is_ok() {
                        self.functions.push(id);
                    }
                } else if self.worker.unregister_function(now, &id).is_ok() {
                    self.functions.retain(|f| *f != id);
                }
            }
            7 => {
                let id = ["tt0", "tt1", ""][input.below(3)].to_owned();
                if input.bool() {
                    let spec = TriggerTypeSpec {
                        id: id.clone(),
                        description: "fuzz".to_owned(),
                        trigger_request_format: None,
                        call_request_format: None,
                    };
                    if self.worker.register_trigger_type(now, spec).is_ok() {
                        self.trigger_types.push(id);
                    }
                } else if self.worker.unregister_trigger_type(now, &id).is_ok() {
                    self.trigger_types.retain(|t| *t != id);
                }
            }
            8 => {
                if input.bool() {
                    let spec = TriggerSpec {
                        trigger_type: ["tt0", "cron", ""][input.below(3)].to_owned(),
                        function_id: ["f0", ""][input.below(2)].to_owned(),
                        config: to_payload(&json!({"c": 1})),
                        metadata: None,
                    };
                    if let Ok(id) = self.worker.register_trigger(now, spec) {
                        push_capped(&mut self.bindings, id);
                    }
                } else {
                    let id = input.pick(&self.bindings).cloned().unwrap_or_default();
                    let _ = self.worker.unregister_trigger(now, &id);
                }
            }
            9 => {
                let channel_ref = ChannelRef {
                    channel_id: input.text(8),
                    access_key: "ab".repeat(32),
                    direction: if input.bool() {
                        Direction::Read
                    } else {
                        Direction::Write
                    },
                };
                let end = self.worker.open_channel(now, channel_ref);
                push_capped(&mut self.ends, end);
            }
            10..=18 => {
                let end = match input.pick(&self.ends) {
                    Some(end) => *end,
                    None => EndId(u64::from(input.u8())),
                };
                match input.below(9) {
                    0..=2 => {
                        let len = input.below(600);
                        let _ = self
                            .worker
                            .channel_write(now, end, Bytes::from(vec![1u8; len]));
                    }
                    3 => {
                        let text = input.text(80);
                        let _ = self.worker.channel_send_text(now, end, Text::from(text));
                    }
                    4 => {
                        let _ = self.worker.channel_close(now, end);
                    }
                    5 => {
                        let _ = self.worker.channel_abort(now, end, CloseCode(input.u16()));
                    }
                    6 => {
                        let _ = self.worker.channel_start_reading(now, end);
                    }
                    7 => {
                        let _ = self.worker.channel_consumed(now, end, input.below(400));
                    }
                    _ => self.worker.channel_release(now, end),
                }
            }
            _ => {
                if input.below(8) == 0 {
                    self.worker.shutdown(now);
                    self.drain();
                    assert!(self.calls.is_empty(), "shutdown left calls pending");
                }
            }
        }
    }

    /// The `correlator` op set: calls, results, invocations and their completion,
    /// connection loss, credit and time.
    pub(super) fn correlator_step(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(12) {
            0..=2 => self.invoke(input),
            3 | 4 => {
                let Some(conn) = self.open_control() else {
                    return self.network(input);
                };
                let text = if input.below(4) == 0 {
                    let mut o = Map::new();
                    o.insert("type".to_owned(), json!("invokefunction"));
                    if input.below(4) != 0 {
                        o.insert("invocation_id".to_owned(), uuid_value(input));
                    }
                    o.insert("function_id".to_owned(), json!("f0"));
                    o.insert("data".to_owned(), json!({"x": 1}));
                    Value::Object(o).to_string()
                } else {
                    self.result_json(input)
                };
                self.worker
                    .handle_message(now, conn, Message::Text(text.into()));
            }
            5 => self.complete(input),
            6 | 7 => self.time(input),
            8 => {
                if input.below(16) == 0 {
                    self.worker.shutdown(now);
                    self.drain();
                    assert!(self.calls.is_empty(), "shutdown left calls pending");
                }
            }
            _ => self.network(input),
        }
    }
}
