//! The control protocol: JSON objects in text frames, tagged by a lowercase `type`.
//!
//! Decoding follows the reference engine's tolerance: unknown fields
//! are ignored, an unknown `type` is reported as [`Decoded::Unknown`] (never an error),
//! a missing `data`/`config` reads as `null`, and invocation ids must be UUIDs.
//! Payloads (`data`, `result`, `config`, `metadata`, ...) are kept as raw JSON text
//! so a relayed payload is passed on byte for byte and never parsed into a tree.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::frame::Text;
use crate::ids::InvocationId;

/// Raw JSON text of a payload, passed through untouched.
pub type Payload = Box<RawValue>;

/// The JSON `null` as a payload.
pub fn null_payload() -> Payload {
    // "null" is valid JSON: the conversion cannot fail, but stay total anyway.
    RawValue::from_string("null".to_owned()).unwrap_or_else(|_| unreachable_null())
}

fn unreachable_null() -> Payload {
    serde_json::value::to_raw_value(&serde_json::Value::Null).unwrap_or_else(|_| {
        // serde_json never fails to encode Null; this branch only keeps the function total.
        Box::<RawValue>::default()
    })
}

/// Encodes a serializable value as a payload.
pub fn to_payload<T: Serialize + ?Sized>(value: &T) -> Payload {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| null_payload())
}

fn is_null(payload: &Payload) -> bool {
    payload.get().trim() == "null"
}

/// The error carried by a failed invocation: `{code, message, stacktrace?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A machine-readable code such as `function_not_found`.
    pub code: String,
    /// A human-readable message.
    pub message: String,
    /// A stack trace, when the failing side had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stacktrace: Option<String>,
}

impl ErrorBody {
    /// An error without a stack trace.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            stacktrace: None,
        }
    }

    /// The answer to a call of a function this worker does not serve
    /// (`function_not_found`, as every SDK sends it).
    pub fn function_not_found() -> Self {
        Self::new(super::codes::FUNCTION_NOT_FOUND, "Function not found")
    }

    /// The answer to a trigger binding of a type this worker does not provide
    /// (`trigger_type_not_found`).
    pub fn trigger_type_not_found() -> Self {
        Self::new(
            super::codes::TRIGGER_TYPE_NOT_FOUND,
            "Trigger type not found",
        )
    }
}

/// What the caller wants done with an `invokefunction`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Action {
    /// Fire and forget: no result is sent back.
    Void,
    /// Put the call on a named queue (needs a queue provider).
    Enqueue {
        /// The queue name.
        queue: String,
    },
}

/// `registerfunction` (W→E).
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterFunction {
    /// The function id, e.g. `math::add`.
    pub id: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON-Schema-like description of the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_format: Option<Payload>,
    /// A JSON-Schema-like description of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Payload>,
    /// Free metadata; `internal: true` hides it from listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Payload>,
    /// HTTP invocation settings (not supported by this engine; kept for listings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<Payload>,
}

/// `unregisterfunction` (W→E).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnregisterFunction {
    /// The function id.
    pub id: String,
}

/// `invokefunction` (both directions).
#[derive(Debug, Serialize, Deserialize)]
pub struct InvokeFunction {
    /// Present when the caller wants an `invocationresult` (always present E→W).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<InvocationId>,
    /// The function to run.
    pub function_id: String,
    /// The payload; a missing `data` reads as `null`.
    #[serde(default = "null_payload")]
    pub data: Payload,
    /// W3C trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C baggage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
    /// Void or enqueue; absent for an ordinary call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    /// Per-call sidecar delivered to the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Payload>,
    /// Where `function_id` resolves; absent means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `invocationresult` (both directions).
#[derive(Debug, Serialize, Deserialize)]
pub struct InvocationResult {
    /// The id of the `invokefunction` this answers.
    pub invocation_id: InvocationId,
    /// Echo of the function id.
    pub function_id: String,
    /// The result; absent or `null` means "no result".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Payload>,
    /// Present when the invocation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
    /// W3C trace context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C baggage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baggage: Option<String>,
}

/// `registertriggertype` (W→E).
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterTriggerType {
    /// The trigger type id.
    pub id: String,
    /// Free text; required by the reference decoder, so always encoded.
    #[serde(default)]
    pub description: String,
    /// Schema of a trigger's config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_request_format: Option<Payload>,
    /// Schema of the payload a fire delivers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_request_format: Option<Payload>,
    /// The provider's namespace; absent means the connection's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `unregistertriggertype` (W→E; sent by the SDKs, unknown to the 0.23 engine).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnregisterTriggerType {
    /// The trigger type id.
    pub id: String,
}

/// `registertrigger` (W→E request; E→W delivery to the provider).
#[derive(Debug, Serialize, Deserialize)]
pub struct RegisterTrigger {
    /// The binding id (generated by the registering SDK).
    pub id: String,
    /// The trigger type.
    pub trigger_type: String,
    /// The function fired by the trigger.
    pub function_id: String,
    /// Type-specific configuration; a missing `config` reads as `null` and is always encoded.
    #[serde(default = "null_payload")]
    pub config: Payload,
    /// Delivered with every fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Payload>,
    /// Namespace of the target function; absent means `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Where the provider is looked up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_namespace: Option<String>,
}

/// `triggerregistrationresult` (W→E from a provider; E→W to the originator).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TriggerRegistrationResult {
    /// The binding id.
    pub id: String,
    /// The trigger type.
    #[serde(default)]
    pub trigger_type: String,
    /// The bound function.
    #[serde(default)]
    pub function_id: String,
    /// Present when the registration failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

/// `unregistertrigger` (W→E; E→W to the provider, always with `trigger_type`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnregisterTrigger {
    /// The binding id.
    pub id: String,
    /// The trigger type (optional toward the engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger_type: Option<String>,
}

/// `registerservice` (W→E, legacy; accepted and ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegisterService {
    /// The service id.
    pub id: String,
}

/// `reattach` (W→E): the first frame of a reconnect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reattach {
    /// The worker id the engine gave the previous connection.
    pub previous_worker_id: String,
    /// The token that came with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reattach_token: Option<String>,
}

/// `workerregistered` (E→W): the first frame on every control connection.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerRegistered {
    /// The connection's worker id.
    pub worker_id: String,
    /// The secret to present in a later `reattach`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reattach_token: Option<String>,
}

/// `registrationrejected` (E→W).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegistrationRejected {
    /// `WORKER_NAMESPACE_CONFLICT` or `FUNCTION_NAMESPACE_CONFLICT`.
    pub code: String,
    /// The namespace of the conflict.
    #[serde(default)]
    pub namespace: String,
    /// The worker name, for worker conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_name: Option<String>,
    /// The function id, for function conflicts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_id: Option<String>,
    /// The current owner (empty for reserved ids).
    #[serde(default)]
    pub owner_worker_id: String,
}

/// `error` (E→W): a refusal for which the protocol has no answer of its own (a trigger
/// type that another worker owns, a quota, a payload nested too deep). The reference
/// engine sends this type for authentication failures; every published SDK ignores
/// types it does not know, so it is safe to send to any worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineError {
    /// What went wrong: a code such as `trigger_type_conflict` or `quota_exceeded`.
    pub error: ErrorBody,
    /// The type of the message that was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The id that message carried (function, trigger type or binding id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Every control message this implementation understands.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
#[allow(missing_docs)] // each variant is documented on its payload type
pub enum ControlMessage {
    RegisterFunction(RegisterFunction),
    UnregisterFunction(UnregisterFunction),
    InvokeFunction(InvokeFunction),
    InvocationResult(InvocationResult),
    RegisterTriggerType(RegisterTriggerType),
    UnregisterTriggerType(UnregisterTriggerType),
    RegisterTrigger(RegisterTrigger),
    TriggerRegistrationResult(TriggerRegistrationResult),
    UnregisterTrigger(UnregisterTrigger),
    RegisterService(RegisterService),
    Ping,
    Pong,
    Reattach(Reattach),
    WorkerRegistered(WorkerRegistered),
    RegistrationRejected(RegistrationRejected),
    Error(EngineError),
}

impl ControlMessage {
    /// The wire tag of this message.
    pub fn kind(&self) -> &'static str {
        match self {
            ControlMessage::RegisterFunction(_) => "registerfunction",
            ControlMessage::UnregisterFunction(_) => "unregisterfunction",
            ControlMessage::InvokeFunction(_) => "invokefunction",
            ControlMessage::InvocationResult(_) => "invocationresult",
            ControlMessage::RegisterTriggerType(_) => "registertriggertype",
            ControlMessage::UnregisterTriggerType(_) => "unregistertriggertype",
            ControlMessage::RegisterTrigger(_) => "registertrigger",
            ControlMessage::TriggerRegistrationResult(_) => "triggerregistrationresult",
            ControlMessage::UnregisterTrigger(_) => "unregistertrigger",
            ControlMessage::RegisterService(_) => "registerservice",
            ControlMessage::Ping => "ping",
            ControlMessage::Pong => "pong",
            ControlMessage::Reattach(_) => "reattach",
            ControlMessage::WorkerRegistered(_) => "workerregistered",
            ControlMessage::RegistrationRejected(_) => "registrationrejected",
            ControlMessage::Error(_) => "error",
        }
    }

    /// Encodes the message as one JSON text frame.
    ///
    /// Encoding omits absent optional fields and always writes the fields the
    /// reference decoders require (`data`, `config`, `description`).
    pub fn encode(&self) -> Text {
        match serde_json::to_string(self) {
            Ok(json) => Text::from(json),
            // Only a non-string map key could fail, and no message has one.
            Err(_) => Text::from(r#"{"type":"ping"}"#),
        }
    }
}

/// The result of decoding one control frame.
#[derive(Debug)]
pub enum Decoded {
    /// A message this implementation understands.
    Message(ControlMessage),
    /// A well-formed object with a `type` this implementation does not know (for example
    /// the observe-era messages of newer SDKs): ignore it and keep the connection.
    Unknown {
        /// The unknown tag.
        kind: String,
    },
    /// A whitespace-only frame: ignored, as the reference does.
    Empty,
}

/// Why a control frame could not be decoded. The connection stays up: the reference
/// engine drops such a message and keeps reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame exceeds the configured control message limit.
    #[error("control message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The frame's size.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Not a JSON object with a string `type`.
    #[error("not a JSON object with a string `type`: {0}")]
    NotAnObject(String),
    /// A known `type` whose fields are missing or mistyped (for example a non-UUID
    /// `invocation_id`).
    #[error("malformed `{kind}` message: {detail}")]
    Malformed {
        /// The message type.
        kind: String,
        /// What serde reported.
        detail: String,
    },
}

#[derive(Deserialize)]
struct Tag<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
}

/// Decodes one control frame (text, or a binary frame holding JSON).
pub fn decode(frame: &[u8], limit: usize) -> Result<Decoded, DecodeError> {
    if frame.len() > limit {
        return Err(DecodeError::TooLarge {
            size: frame.len(),
            limit,
        });
    }
    if frame.iter().all(u8::is_ascii_whitespace) {
        return Ok(Decoded::Empty);
    }
    let tag: Tag<'_> =
        serde_json::from_slice(frame).map_err(|e| DecodeError::NotAnObject(e.to_string()))?;
    let kind = tag.kind;
    let malformed = |e: serde_json::Error| DecodeError::Malformed {
        kind: kind.to_string(),
        detail: e.to_string(),
    };
    fn body<'a, T: Deserialize<'a>>(frame: &'a [u8]) -> Result<T, serde_json::Error> {
        serde_json::from_slice(frame)
    }
    let message = match kind.as_ref() {
        "registerfunction" => ControlMessage::RegisterFunction(body(frame).map_err(malformed)?),
        "unregisterfunction" => ControlMessage::UnregisterFunction(body(frame).map_err(malformed)?),
        "invokefunction" => ControlMessage::InvokeFunction(body(frame).map_err(malformed)?),
        "invocationresult" => ControlMessage::InvocationResult(body(frame).map_err(malformed)?),
        "registertriggertype" => {
            ControlMessage::RegisterTriggerType(body(frame).map_err(malformed)?)
        }
        "unregistertriggertype" => {
            ControlMessage::UnregisterTriggerType(body(frame).map_err(malformed)?)
        }
        "registertrigger" => ControlMessage::RegisterTrigger(body(frame).map_err(malformed)?),
        "triggerregistrationresult" => {
            ControlMessage::TriggerRegistrationResult(body(frame).map_err(malformed)?)
        }
        "unregistertrigger" => ControlMessage::UnregisterTrigger(body(frame).map_err(malformed)?),
        "registerservice" => ControlMessage::RegisterService(body(frame).map_err(malformed)?),
        "ping" => ControlMessage::Ping,
        "pong" => ControlMessage::Pong,
        "reattach" => ControlMessage::Reattach(body(frame).map_err(malformed)?),
        "workerregistered" => ControlMessage::WorkerRegistered(body(frame).map_err(malformed)?),
        "registrationrejected" => {
            ControlMessage::RegistrationRejected(body(frame).map_err(malformed)?)
        }
        "error" => ControlMessage::Error(body(frame).map_err(malformed)?),
        other => {
            return Ok(Decoded::Unknown {
                kind: other.to_owned(),
            })
        }
    };
    Ok(Decoded::Message(message))
}

/// True when a result payload is absent or `null`.
pub fn is_no_result(result: &Option<Payload>) -> bool {
    result.as_ref().is_none_or(is_null)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_ok(text: &str) -> ControlMessage {
        match decode(text.as_bytes(), 1 << 20) {
            Ok(Decoded::Message(m)) => m,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[test]
    fn missing_data_reads_as_null_and_unknown_fields_are_ignored() {
        let m = decode_ok(
            r#"{"type":"invokefunction","function_id":"a::b","extra":1,"invocation_id":"6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60"}"#,
        );
        let ControlMessage::InvokeFunction(call) = m else {
            panic!("wrong variant")
        };
        assert_eq!(call.data.get(), "null");
        assert!(call.invocation_id.is_some());
    }

    #[test]
    fn non_uuid_invocation_id_is_malformed() {
        let err = decode(
            br#"{"type":"invocationresult","invocation_id":"nope","function_id":"x"}"#,
            1024,
        )
        .unwrap_err();
        assert!(matches!(err, DecodeError::Malformed { .. }), "{err}");
    }

    #[test]
    fn unknown_type_and_whitespace_are_not_errors() {
        assert!(matches!(
            decode(br#"{"type":"observe","x":1}"#, 1024),
            Ok(Decoded::Unknown { kind }) if kind == "observe"
        ));
        assert!(matches!(decode(b" \n ", 1024), Ok(Decoded::Empty)));
        assert!(matches!(
            decode(b"[1,2]", 1024),
            Err(DecodeError::NotAnObject(_))
        ));
        assert!(matches!(
            decode(&[b' '; 20], 10),
            Err(DecodeError::TooLarge {
                size: 20,
                limit: 10
            })
        ));
    }

    #[test]
    fn encoding_keeps_payload_bytes_and_required_fields() {
        let msg = ControlMessage::RegisterTrigger(RegisterTrigger {
            id: "t".into(),
            trigger_type: "cron".into(),
            function_id: "f".into(),
            config: null_payload(),
            metadata: None,
            namespace: None,
            trigger_namespace: None,
        });
        let text = msg.encode();
        assert_eq!(
            text.as_str(),
            r#"{"type":"registertrigger","id":"t","trigger_type":"cron","function_id":"f","config":null}"#
        );
        let raw = r#"{"type":"invokefunction","function_id":"f","data":{"b":1,  "a":[2]}}"#;
        let ControlMessage::InvokeFunction(call) = decode_ok(raw) else {
            panic!()
        };
        assert_eq!(call.data.get(), r#"{"b":1,  "a":[2]}"#);
        assert_eq!(ControlMessage::Ping.encode().as_str(), r#"{"type":"ping"}"#);
    }
}
