//! Engine messages built from fuzz input for the worker rig.

use super::*;
use crate::Input;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use iii_core::wire::{CloseCode, Message, PeerClose, Text};

impl super::WorkerRig {
    /// A result or error for a known call (pending or finished) or an unknown id.
    pub(super) fn result_json(&mut self, input: &mut Input<'_>) -> String {
        let mut o = Map::new();
        o.insert("type".to_owned(), json!("invocationresult"));
        let id = match input.pick(&self.made) {
            Some(id) if input.below(5) != 0 => Some(*id),
            _ => None,
        };
        match id {
            Some(id) => o.insert("invocation_id".to_owned(), json!(id)),
            None => o.insert("invocation_id".to_owned(), uuid_value(input)),
        };
        o.insert("function_id".to_owned(), json!("f0"));
        let expect = match input.below(4) {
            0 => {
                o.insert("error".to_owned(), error_value(input));
                if input.bool() {
                    o.insert("result".to_owned(), json!(1));
                }
                Expect::Error
            }
            1 => Expect::OkNone,
            2 => {
                o.insert("result".to_owned(), Value::Null);
                Expect::OkNone
            }
            _ => {
                o.insert("result".to_owned(), json!({"v": input.u8()}));
                Expect::Ok
            }
        };
        if let Some(id) = id {
            if self.calls.contains_key(&id) {
                self.expect = Some((id, expect, false));
            }
        }
        Value::Object(o).to_string()
    }

    pub(super) fn control_json(&mut self, input: &mut Input<'_>) -> String {
        let mut o = Map::new();
        let set = |o: &mut Map<String, Value>, key: &str, value: Value| {
            o.insert(key.to_owned(), value);
        };
        match input.below(14) {
            0 => {
                set(&mut o, "type", json!("workerregistered"));
                set(&mut o, "worker_id", json!(input.text(8)));
                if input.bool() {
                    set(&mut o, "reattach_token", json!("ab".repeat(32)));
                }
            }
            1 => {
                set(&mut o, "type", json!("registrationrejected"));
                let code = match input.below(4) {
                    0 => "WORKER_NAMESPACE_CONFLICT".to_owned(),
                    1 => input.text(8),
                    _ => "FUNCTION_NAMESPACE_CONFLICT".to_owned(),
                };
                set(&mut o, "code", json!(code));
                set(&mut o, "namespace", json!("default"));
                set(&mut o, "function_id", json!("f0"));
                set(&mut o, "owner_worker_id", json!("other"));
            }
            2..=5 => return self.result_json(input),
            6..=8 => {
                set(&mut o, "type", json!("invokefunction"));
                match input.below(4) {
                    0 => {}
                    1 => {
                        if let Some(id) = input.pick(&self.incoming_seen) {
                            set(&mut o, "invocation_id", json!(id));
                        }
                    }
                    _ => set(&mut o, "invocation_id", uuid_value(input)),
                }
                let function_id = input.pick(&WORKER_FUNCTIONS).copied().unwrap_or_default();
                set(&mut o, "function_id", json!(function_id));
                set(&mut o, "data", payload_value(input, &[]));
                if input.bool() {
                    set(&mut o, "metadata", json!({"m": 1}));
                }
            }
            9 => {
                set(&mut o, "type", json!("registertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                let trigger_type = match input.pick(&self.trigger_types) {
                    Some(t) if input.bool() => t.clone(),
                    _ => "tt9".to_owned(),
                };
                set(&mut o, "trigger_type", json!(trigger_type));
                set(&mut o, "function_id", json!("f0"));
                set(&mut o, "config", json!({"c": 1}));
            }
            10 => {
                set(&mut o, "type", json!("unregistertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                if input.bool() {
                    set(&mut o, "trigger_type", json!("tt0"));
                }
            }
            11 => {
                set(&mut o, "type", json!("triggerregistrationresult"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                set(&mut o, "trigger_type", json!("tt0"));
                set(&mut o, "function_id", json!("f0"));
                if input.bool() {
                    set(&mut o, "error", error_value(input));
                }
            }
            12 => set(
                &mut o,
                "type",
                json!(["ping", "pong", "observe"][input.below(3)]),
            ),
            _ => return input.text(200),
        }
        finish_object(input, o)
    }

    /// The adapter's side: connects, failures, messages, completions, closes.
    pub(super) fn network(&mut self, input: &mut Input<'_>) {
        let now = self.now;
        match input.below(8) {
            0 | 1 => {
                let Some(conn) = self.pick_conn(input, &[Link::Pending]) else {
                    return;
                };
                if input.below(4) == 0 {
                    let status = [None, Some(404), Some(401), Some(503)][input.below(4)];
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.link = Link::Gone;
                    }
                    self.worker.handle_connect_failed(now, conn, status);
                } else {
                    let control = self.conns.get(&conn).is_some_and(|c| c.control);
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.link = Link::Open;
                    }
                    if control {
                        // The worker hands every pending call to the new connection.
                        for call in self.calls.values_mut() {
                            call.sent = true;
                        }
                    }
                    self.worker.handle_connected(now, conn);
                }
            }
            2..=4 => {
                let Some(conn) = self.pick_conn(input, &[Link::Open]) else {
                    return;
                };
                let Some(state) = self.conns.get(&conn) else {
                    return;
                };
                if state.paused {
                    return;
                }
                let control = state.control;
                let current = self.open_control() == Some(conn);
                let message = match (control, input.below(8)) {
                    (true, 0) => Message::Binary(Bytes::copy_from_slice(input.bytes(300))),
                    (true, _) => Message::Text(Text::from(self.control_json(input))),
                    (false, 0) => Message::Text(Text::from(input.text(100))),
                    (false, _) => {
                        let len = input.below(400);
                        Message::Binary(Bytes::from(vec![7u8; len]))
                    }
                };
                if !current {
                    self.expect = None;
                }
                self.worker.handle_message(now, conn, message);
            }
            5 | 6 => {
                let Some(conn) = self.pick_conn(input, &[Link::Open, Link::Closed]) else {
                    return;
                };
                let in_flight = self.conns.get(&conn).map_or(0, |c| c.in_flight);
                let count = match input.below(4) {
                    0 | 1 => in_flight,
                    2 => 1,
                    _ => input.below(8),
                };
                if let Some(state) = self.conns.get_mut(&conn) {
                    state.in_flight -= count.min(state.in_flight);
                }
                self.worker.handle_sent(now, conn, count);
            }
            _ => {
                let Some(conn) = self.pick_conn(input, &[Link::Open, Link::Closed]) else {
                    return;
                };
                let close = match input.below(4) {
                    0 => PeerClose::Frame {
                        code: None,
                        reason: String::new(),
                    },
                    1 => PeerClose::Frame {
                        code: Some(CloseCode(input.u16())),
                        reason: "x".to_owned(),
                    },
                    _ => PeerClose::Lost,
                };
                let lost_control = self.open_control() == Some(conn);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.link = Link::Gone;
                }
                self.worker.handle_closed(now, conn, close);
                if lost_control {
                    self.drain();
                    let stranded: Vec<_> = self.calls.iter().filter(|(_, c)| c.sent).collect();
                    assert!(
                        stranded.is_empty(),
                        "calls sent on a lost connection did not finish: {stranded:?}"
                    );
                }
            }
        }
    }
}
