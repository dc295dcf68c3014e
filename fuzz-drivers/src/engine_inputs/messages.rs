//! Control messages built from fuzz input for the engine rig.

use super::*;
use crate::Input;

use serde_json::{json, Map, Value};

impl super::EngineRig {
    /// A well-formed control message (sometimes with one field dropped or mistyped)
    /// built from the input and from what the engine said before.
    pub(super) fn control_json(&self, input: &mut Input<'_>) -> String {
        let mut o = Map::new();
        let set = |o: &mut Map<String, Value>, key: &str, value: Value| {
            o.insert(key.to_owned(), value);
        };
        let function = |input: &mut Input<'_>| {
            input
                .pick(&FUNCTION_IDS)
                .copied()
                .unwrap_or_default()
                .to_owned()
        };
        match input.below(16) {
            0 => {
                set(&mut o, "type", json!("registerfunction"));
                set(&mut o, "id", json!(function(input)));
                if input.bool() {
                    set(&mut o, "description", json!(input.text(20)));
                }
                if input.bool() {
                    set(&mut o, "metadata", json!({"internal": input.bool()}));
                }
            }
            1 => {
                set(&mut o, "type", json!("unregisterfunction"));
                set(&mut o, "id", json!(function(input)));
            }
            2..=4 => {
                set(&mut o, "type", json!("invokefunction"));
                let function_id = if input.bool() {
                    function(input)
                } else {
                    input
                        .pick(&BUILTINS)
                        .copied()
                        .unwrap_or_default()
                        .to_owned()
                };
                if input.below(4) != 0 {
                    set(&mut o, "invocation_id", uuid_value(input));
                }
                let data = self.builtin_data(input, &function_id);
                set(&mut o, "data", data);
                set(&mut o, "function_id", json!(function_id));
                match input.below(6) {
                    0 => set(&mut o, "action", json!({"type": "void"})),
                    1 => set(&mut o, "action", json!({"type": "enqueue", "queue": "q"})),
                    _ => {}
                }
                if input.bool() {
                    set(&mut o, "namespace", json!(input.pick(&NAMESPACES)));
                }
                if input.bool() {
                    set(&mut o, "metadata", payload_value(input, &self.refs));
                }
            }
            5 | 6 => {
                set(&mut o, "type", json!("invocationresult"));
                match input.pick(&self.calls) {
                    Some((_, id, function_id)) if input.below(4) != 0 => {
                        set(&mut o, "invocation_id", json!(id));
                        set(&mut o, "function_id", json!(function_id));
                    }
                    _ => {
                        set(&mut o, "invocation_id", uuid_value(input));
                        set(&mut o, "function_id", json!(function(input)));
                    }
                }
                match input.below(3) {
                    0 => set(&mut o, "error", error_value(input)),
                    1 => set(&mut o, "result", payload_value(input, &self.refs)),
                    _ => {}
                }
            }
            7 => {
                set(&mut o, "type", json!("registertriggertype"));
                set(&mut o, "id", json!(input.pick(&TRIGGER_TYPES)));
                set(&mut o, "description", json!(input.text(10)));
                if input.bool() {
                    set(&mut o, "namespace", json!(input.pick(&NAMESPACES)));
                }
            }
            8 => {
                set(&mut o, "type", json!("unregistertriggertype"));
                set(&mut o, "id", json!(input.pick(&TRIGGER_TYPES)));
            }
            9 => {
                set(&mut o, "type", json!("registertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                set(&mut o, "trigger_type", json!(input.pick(&TRIGGER_TYPES)));
                set(&mut o, "function_id", json!(function(input)));
                set(&mut o, "config", payload_value(input, &self.refs));
                if input.bool() {
                    set(&mut o, "namespace", json!(input.pick(&NAMESPACES)));
                }
                if input.bool() {
                    set(&mut o, "trigger_namespace", json!(input.pick(&NAMESPACES)));
                }
            }
            10 => {
                set(&mut o, "type", json!("triggerregistrationresult"));
                match input.pick(&self.triggers) {
                    Some((id, trigger_type, function_id)) => {
                        set(&mut o, "id", json!(id));
                        set(&mut o, "trigger_type", json!(trigger_type));
                        set(&mut o, "function_id", json!(function_id));
                    }
                    None => set(&mut o, "id", json!(input.pick(&BINDINGS))),
                }
                if input.bool() {
                    set(&mut o, "error", error_value(input));
                }
            }
            11 => {
                set(&mut o, "type", json!("unregistertrigger"));
                set(&mut o, "id", json!(input.pick(&BINDINGS)));
                if input.bool() {
                    set(&mut o, "trigger_type", json!(input.pick(&TRIGGER_TYPES)));
                }
            }
            12 => {
                let kind = ["ping", "pong", "registerservice"][input.below(3)];
                set(&mut o, "type", json!(kind));
                set(&mut o, "id", json!("svc"));
            }
            13 => {
                set(&mut o, "type", json!("reattach"));
                match input.pick(&self.workers) {
                    Some((worker_id, token)) => {
                        set(&mut o, "previous_worker_id", json!(worker_id));
                        match input.below(3) {
                            0 => {}
                            1 => set(&mut o, "reattach_token", json!("0".repeat(64))),
                            _ => set(&mut o, "reattach_token", json!(token)),
                        }
                    }
                    None => set(&mut o, "previous_worker_id", json!(input.text(8))),
                }
            }
            14 => {
                if input.bool() {
                    set(&mut o, "type", json!("workerregistered"));
                    set(&mut o, "worker_id", json!("w"));
                } else {
                    set(&mut o, "type", json!("registrationrejected"));
                    set(&mut o, "code", json!("WORKER_NAMESPACE_CONFLICT"));
                }
            }
            _ => set(&mut o, "type", json!(input.text(12))),
        }
        finish_object(input, o)
    }
}
