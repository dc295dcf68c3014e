//! The argument objects of the JavaScript API (`trigger`'s `TriggerRequest`,
//! `registerFunction`'s input and options, `registerTrigger`, `registerTriggerType`),
//! read from their `JSON.stringify` text into the core's specs, with a typed error for
//! a bad shape. Payloads stay raw JSON.

use std::time::Duration;

use iii_core::wire::control::null_payload;
use iii_core::wire::Payload;
use iii_core::worker::{FunctionSpec, TriggerSpec, TriggerTypeSpec, MAX_CALL_TIMEOUT};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::options::{millis, OptionsError};

/// Why an argument object was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// Not JSON of the expected shape (missing field, unknown key, wrong type).
    #[error("invalid {what}: {detail}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// serde's description.
        detail: String,
    },
    /// A number out of range.
    #[error(transparent)]
    Range(#[from] OptionsError),
    /// Something the browser worker does not do.
    #[error("{0}")]
    Unsupported(&'static str),
}

fn parse<T: DeserializeOwned>(what: &'static str, json: &str) -> Result<T, RequestError> {
    serde_json::from_str(json).map_err(|error| RequestError::Shape {
        what,
        detail: error.to_string(),
    })
}

/// How `trigger` routes a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// Wait for the result (no `action`).
    Call {
        /// `timeoutMs`, when given.
        timeout: Option<Duration>,
    },
    /// `action: {type: "void"}`: fire and forget.
    Void,
}

/// A parsed `TriggerRequest`.
#[derive(Debug)]
pub struct Trigger {
    /// The function to call.
    pub function_id: String,
    /// Its input (`null` when absent).
    pub payload: Payload,
    /// How to route it.
    pub routing: Routing,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrigger {
    function_id: String,
    #[serde(default)]
    payload: Option<Payload>,
    #[serde(default)]
    action: Option<RawAction>,
    #[serde(default, rename = "timeoutMs")]
    timeout_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum RawAction {
    Void,
    Enqueue {
        #[allow(dead_code)]
        queue: String,
    },
}

/// Reads `trigger`'s request object.
pub fn trigger(json: &str) -> Result<Trigger, RequestError> {
    let raw: RawTrigger = parse("TriggerRequest", json)?;
    let routing = match raw.action {
        None => Routing::Call {
            timeout: raw
                .timeout_ms
                .map(|ms| millis("timeoutMs", ms, MAX_CALL_TIMEOUT))
                .transpose()?,
        },
        Some(RawAction::Void) => Routing::Void,
        Some(RawAction::Enqueue { .. }) => {
            return Err(RequestError::Unsupported(
                "TriggerAction.Enqueue needs the engine's queue worker, which this engine does not have",
            ))
        }
    };
    Ok(Trigger {
        function_id: raw.function_id,
        payload: raw.payload.unwrap_or_else(null_payload),
        routing,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFunction {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    request_format: Option<Payload>,
    #[serde(default)]
    response_format: Option<Payload>,
    #[serde(default)]
    metadata: Option<Payload>,
    #[serde(default)]
    invocation: Option<Payload>,
}

/// Reads `registerFunction`'s arguments: `id` is the string form's id (`None` when the
/// first argument is a `RegisterFunctionInput` object, given as `input`), `options` the
/// optional third argument.
pub fn function(
    id: Option<String>,
    input: Option<&str>,
    options: Option<&str>,
) -> Result<FunctionSpec, RequestError> {
    let input: RawFunction = match input {
        Some(json) => parse("RegisterFunctionInput", json)?,
        None => RawFunction::default(),
    };
    let options: RawFunction = match options {
        Some(json) => parse("RegisterFunctionOptions", json)?,
        None => RawFunction::default(),
    };
    if options.id.is_some() {
        return Err(RequestError::Shape {
            what: "RegisterFunctionOptions",
            detail: "`id` belongs in the first argument".to_owned(),
        });
    }
    if input.invocation.is_some() || options.invocation.is_some() {
        return Err(RequestError::Unsupported(
            "HTTP-invoked functions (`invocation`) are registered by backend SDKs, not in the browser",
        ));
    }
    let id = id.or(input.id).ok_or(RequestError::Shape {
        what: "RegisterFunctionInput",
        detail: "missing field `id`".to_owned(),
    })?;
    Ok(FunctionSpec {
        id,
        description: options.description.or(input.description),
        request_format: options.request_format.or(input.request_format),
        response_format: options.response_format.or(input.response_format),
        metadata: options.metadata.or(input.metadata),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggerInput {
    #[serde(rename = "type")]
    trigger_type: String,
    function_id: String,
    #[serde(default)]
    config: Option<Payload>,
    #[serde(default)]
    metadata: Option<Payload>,
}

/// Reads `registerTrigger`'s `RegisterTriggerInput` (`config` defaults to `null`, which
/// is still sent: providers need the key).
pub fn trigger_binding(json: &str) -> Result<TriggerSpec, RequestError> {
    let raw: RawTriggerInput = parse("RegisterTriggerInput", json)?;
    Ok(TriggerSpec {
        trigger_type: raw.trigger_type,
        function_id: raw.function_id,
        config: raw.config.unwrap_or_else(null_payload),
        metadata: raw.metadata,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggerType {
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    trigger_request_format: Option<Payload>,
    #[serde(default)]
    call_request_format: Option<Payload>,
}

/// Reads `registerTriggerType`'s `RegisterTriggerTypeInput` (a missing description is
/// sent as `""`: the engine needs the key).
pub fn trigger_type(json: &str) -> Result<TriggerTypeSpec, RequestError> {
    let raw: RawTriggerType = parse("RegisterTriggerTypeInput", json)?;
    Ok(TriggerTypeSpec {
        id: raw.id,
        description: raw.description.unwrap_or_default(),
        trigger_request_format: raw.trigger_request_format,
        call_request_format: raw.call_request_format,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_requests_route_and_default_their_payload() {
        let call =
            trigger(r#"{"function_id":"f","payload":{"a":[1]},"timeoutMs":1500}"#).expect("valid");
        assert_eq!(call.function_id, "f");
        assert_eq!(call.payload.get(), r#"{"a":[1]}"#);
        assert_eq!(
            call.routing,
            Routing::Call {
                timeout: Some(Duration::from_millis(1500))
            }
        );
        let void = trigger(r#"{"function_id":"f","action":{"type":"void"}}"#).expect("valid");
        assert_eq!(void.payload.get(), "null");
        assert_eq!(void.routing, Routing::Void);
        let enqueue = trigger(r#"{"function_id":"f","action":{"type":"enqueue","queue":"q"}}"#);
        assert!(matches!(enqueue, Err(RequestError::Unsupported(_))));
        let missing = trigger(r#"{"payload":1}"#);
        assert!(matches!(missing, Err(RequestError::Shape { .. })));
        let typo = trigger(r#"{"function_id":"f","timeout_ms":1}"#);
        assert!(matches!(typo, Err(RequestError::Shape { .. })));
        let negative = trigger(r#"{"function_id":"f","timeoutMs":0}"#);
        assert!(matches!(negative, Err(RequestError::Range(_))));
    }

    #[test]
    fn functions_take_either_form_and_options_win() {
        let by_id =
            function(Some("a::b".into()), None, Some(r#"{"description":"d"}"#)).expect("valid");
        assert_eq!(
            (by_id.id.as_str(), by_id.description.as_deref()),
            ("a::b", Some("d"))
        );
        let by_input =
            function(None, Some(r#"{"id":"ui::x","metadata":{"k":1}}"#), None).expect("valid");
        assert_eq!(by_input.id, "ui::x");
        assert_eq!(
            by_input.metadata.map(|m| m.get().to_owned()),
            Some(r#"{"k":1}"#.into())
        );
        assert!(matches!(
            function(None, Some("{}"), None),
            Err(RequestError::Shape { .. })
        ));
        assert!(matches!(
            function(None, Some(r#"{"id":"x","invocation":{"url":"u"}}"#), None),
            Err(RequestError::Unsupported(_))
        ));
    }

    #[test]
    fn triggers_and_trigger_types_keep_the_keys_providers_need() {
        let binding = trigger_binding(r#"{"type":"cron","function_id":"f"}"#).expect("valid");
        assert_eq!(binding.config.get(), "null");
        assert_eq!(binding.trigger_type, "cron");
        let kind = trigger_type(r#"{"id":"cron"}"#).expect("valid");
        assert_eq!(kind.description, "");
        assert!(matches!(
            trigger_binding(r#"{"function_id":"f"}"#),
            Err(RequestError::Shape { .. })
        ));
    }
}
