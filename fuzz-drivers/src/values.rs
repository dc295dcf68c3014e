//! JSON values built from fuzz input, shared by the role-machine rigs.

use crate::Input;

use serde_json::{json, Map, Value};
use uuid::Uuid;

use iii_core::channel::ChannelRef;

/// Binding ids the rigs use.
pub(crate) const BINDINGS: [&str; 3] = ["b0", "b1", "b2"];

pub(crate) fn push_capped<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= 16 {
        list.remove(0);
    }
    list.push(item);
}

pub(crate) fn str_field(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// A JSON payload: scalars, objects, arrays, and objects holding known channel refs.
pub(crate) fn payload_value(input: &mut Input<'_>, refs: &[ChannelRef]) -> Value {
    match input.below(6) {
        0 => Value::Null,
        1 => json!({}),
        2 => json!({"a": input.u8(), "s": input.text(16)}),
        3 => json!([1, "x", null, {"k": [true]}]),
        4 => match input.pick(refs) {
            Some(channel_ref) => json!({"label": "x", "stream": channel_ref}),
            None => json!({"channel_id": "c", "access_key": "k", "direction": "read"}),
        },
        _ => Value::String(input.text(16)),
    }
}

pub(crate) fn uuid_value(input: &mut Input<'_>) -> Value {
    match input.below(8) {
        0 => Value::String("not-a-uuid".to_owned()),
        1 => Value::Null,
        _ => Value::String(Uuid::from_u64_pair(input.u64(), input.u64()).to_string()),
    }
}

pub(crate) fn error_value(input: &mut Input<'_>) -> Value {
    json!({"code": input.text(12), "message": input.text(12)})
}

/// Drops one field now and then, so decoders see missing and mistyped fields too.
pub(crate) fn finish_object(input: &mut Input<'_>, mut object: Map<String, Value>) -> String {
    match input.below(16) {
        0 if !object.is_empty() => {
            let index = input.below(object.len());
            if let Some(key) = object.keys().nth(index).cloned() {
                object.remove(&key);
            }
        }
        1 => {
            let index = input.below(object.len().max(1));
            if let Some(key) = object.keys().nth(index).cloned() {
                object.insert(key, json!(17));
            }
        }
        _ => {}
    }
    Value::Object(object).to_string()
}
