//! Values between JSON and JavaScript: payloads out through `JSON.stringify`, handler
//! inputs in with every channel ref turned into a live `ChannelReader` /
//! `ChannelWriter` (as the Node and Python SDKs do; the shape test is the core's
//! [`ChannelRef::from_value`]), refs as plain objects.

use iii_core::channel::{extract_channel_refs, ChannelRef};
use iii_core::wire::{ErrorBody, Payload};
use iii_core::Instant;
use js_sys::{Array, Object, Reflect};
use serde_json::value::RawValue;
use serde_json::Value;
use wasm_bindgen::prelude::*;

use super::driver::Driver;

/// A plain object with these properties.
pub(crate) fn object(entries: &[(&str, JsValue)]) -> JsValue {
    let object = Object::new();
    for (key, value) in entries {
        let _ = Reflect::set(&object, &JsValue::from_str(key), value);
    }
    object.into()
}

/// A ref as the plain object `{channel_id, access_key, direction}`.
pub(crate) fn ref_value(channel_ref: &ChannelRef) -> JsValue {
    object(&[
        ("channel_id", JsValue::from_str(&channel_ref.channel_id)),
        ("access_key", JsValue::from_str(&channel_ref.access_key)),
        (
            "direction",
            JsValue::from_str(channel_ref.direction.as_str()),
        ),
    ])
}

/// A ref from a JavaScript value of its shape (a live end gives its own ref).
pub(crate) fn read_ref(value: &JsValue) -> Option<ChannelRef> {
    let text = stringify(value).ok().flatten()?;
    ChannelRef::from_value(&serde_json::from_str(&text).ok()?)
}

/// `JSON.stringify(value)`; `None` for `undefined` (and functions).
pub(crate) fn stringify(value: &JsValue) -> Result<Option<String>, JsValue> {
    Ok(js_sys::JSON::stringify(value)?.as_string())
}

/// A handler's return value as a result payload (`undefined` is `null`); a value JSON
/// cannot express (a `BigInt`, a cycle) fails the invocation with
/// `serialization_error`.
pub(crate) fn to_payload(value: JsValue) -> Result<Payload, ErrorBody> {
    let text = stringify(&value)
        .map_err(|error| ErrorBody::new("serialization_error", super::error_body(&error).message))?
        .unwrap_or_else(|| "null".to_owned());
    RawValue::from_string(text)
        .map_err(|error| ErrorBody::new("serialization_error", error.to_string()))
}

/// An argument object through `JSON.stringify` (`None` for `undefined` / `null`).
pub(crate) fn argument(value: &JsValue) -> Result<Option<String>, JsValue> {
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    stringify(value)
}

impl Driver {
    /// An invocation's input for its handler: `JSON.parse` of the payload, with every
    /// channel ref inside replaced by a live end of this worker.
    pub(super) fn input_value(&mut self, now: Instant, payload: &Payload) -> JsValue {
        let Ok(value) = serde_json::from_str::<Value>(payload.get()) else {
            return JsValue::NULL;
        };
        if extract_channel_refs(&value).is_empty() {
            return super::parse_payload(Some(payload));
        }
        self.build(now, &value)
    }

    fn build(&mut self, now: Instant, value: &Value) -> JsValue {
        if let Some(channel_ref) = ChannelRef::from_value(value) {
            return self.end_handle(now, channel_ref);
        }
        match value {
            Value::Null => JsValue::NULL,
            Value::Bool(b) => JsValue::from_bool(*b),
            Value::Number(n) => JsValue::from_f64(n.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => JsValue::from_str(s),
            Value::Array(items) => items
                .iter()
                .map(|item| self.build(now, item))
                .collect::<Array>()
                .into(),
            Value::Object(map) => {
                let object = Object::new();
                for (key, item) in map {
                    let item = self.build(now, item);
                    let _ = Reflect::set(&object, &JsValue::from_str(key), &item);
                }
                object.into()
            }
        }
    }
}
