//! Payloads from the command line: JSON text from an argument or standard input, and
//! the channel ref added to a `send`/`recv` payload.

use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;

use crate::exit::Failure;

/// Parses `text` (what the user typed, or read from `source`) as JSON.
pub(crate) fn parse(text: &str, source: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|error| {
        let hint = if error.is_syntax() && !text.trim_start().starts_with(['{', '[', '"']) {
            " (a string must be quoted as JSON, e.g. '\"hello\"')"
        } else {
            ""
        };
        Failure::Usage(format!("{source} is not valid JSON: {error}{hint}"))
    })
}

/// True for a `KEY=VALUE` argument: a key before the first `=`, and not JSON text
/// (`"a=b"` quoted is a JSON string).
pub(crate) fn is_pair(argument: &str) -> bool {
    match argument.split_once('=') {
        Some((key, _)) => {
            !key.is_empty()
                && !key.starts_with(['{', '[', '"'])
                && serde_json::from_str::<Value>(argument).is_err()
        }
        None => false,
    }
}

/// The object `KEY=VALUE` arguments describe: each VALUE is JSON where it parses as
/// JSON (`n=1`, `ok=true`, `tags=["a"]`), otherwise the text itself (`name=joe`).
pub(crate) fn pairs(arguments: &[String]) -> Result<Value, Failure> {
    let mut object = Map::new();
    for argument in arguments {
        let Some((key, value)) = argument.split_once('=').filter(|_| is_pair(argument)) else {
            return Err(Failure::Usage(format!(
                "{argument:?}: give one JSON payload, or KEY=VALUE pairs"
            )));
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::from(value));
        if object.insert(key.to_owned(), value).is_some() {
            return Err(Failure::Usage(format!("{key} is given twice")));
        }
    }
    Ok(Value::Object(object))
}

/// The payload of `iii call`: the argument, standard input for `-` (at most `max_bytes`),
/// or `{}`.
pub(crate) async fn call_payload(argument: Option<&str>, max_bytes: u64) -> Result<Value, Failure> {
    match argument {
        None => Ok(Value::Object(Map::new())),
        Some("-") => {
            let mut text = String::new();
            let read = tokio::io::stdin()
                .take(max_bytes.saturating_add(1))
                .read_to_string(&mut text)
                .await;
            match read {
                Ok(n) if n as u64 > max_bytes => Err(Failure::Usage(format!(
                    "the payload on standard input is larger than {max_bytes} bytes \
                     (--max-payload-bytes)"
                ))),
                Ok(_) => parse(&text, "the payload on standard input"),
                Err(error) if error.kind() == std::io::ErrorKind::InvalidData => Err(
                    Failure::Usage("the payload on standard input is not UTF-8".into()),
                ),
                Err(error) => Err(Failure::LocalIo {
                    context: "cannot read standard input".into(),
                    source: error,
                }),
            }
        }
        Some(text) => parse(text, "the payload"),
    }
}

/// The `--payload` object of `send`/`recv`, checked before anything is created: a JSON
/// object without `field`, where the channel ref will go.
pub(crate) fn ref_payload(payload: &str, field: &str) -> Result<Map<String, Value>, Failure> {
    if field.is_empty() {
        return Err(Failure::Usage("--field is empty".into()));
    }
    let object = match parse(payload, "--payload")? {
        Value::Object(object) => object,
        other => {
            return Err(Failure::Usage(format!(
                "--payload must be a JSON object (the channel ref is added to it), not {}",
                kind(&other)
            )))
        }
    };
    if object.contains_key(field) {
        return Err(Failure::Usage(format!(
            "--payload already has a `{field}` field, where the channel ref goes; \
             choose another with --field"
        )));
    }
    Ok(object)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_object_payload_is_accepted() {
        let object = ref_payload(r#"{"name":"x"}"#, "reader").expect("valid");
        assert_eq!(Value::Object(object), json!({"name": "x"}));
    }

    #[test]
    fn the_payload_must_be_an_object_without_the_field() {
        let error = |payload: &str, field: &str| match ref_payload(payload, field) {
            Err(Failure::Usage(message)) => message,
            other => panic!("expected a usage error, got {other:?}"),
        };
        assert!(error("[1]", "reader").contains("not an array"));
        assert!(error(r#"{"reader":1}"#, "reader").contains("already has a `reader` field"));
        assert!(error("{}", "").contains("--field is empty"));
        assert!(error("{", "reader").contains("--payload is not valid JSON"));
    }

    #[test]
    fn bare_words_get_a_quoting_hint() {
        match parse("hello", "the payload") {
            Err(Failure::Usage(message)) => assert!(message.contains("must be quoted")),
            other => panic!("expected a usage error, got {other:?}"),
        }
        assert_eq!(parse("\"hello\"", "the payload").ok(), Some(json!("hello")));
    }
}

#[cfg(test)]
mod pair_tests {
    use super::*;
    use serde_json::json;

    fn owned(arguments: &[&str]) -> Vec<String> {
        arguments.iter().map(|a| (*a).to_owned()).collect()
    }

    #[test]
    fn key_value_pairs_make_an_object_with_json_where_it_is_json() {
        let value = pairs(&owned(&[
            "a=1",
            "name=joe",
            "ok=true",
            "tags=[\"x\"]",
            "empty=",
        ]));
        assert_eq!(
            value.ok(),
            Some(json!({"a": 1, "name": "joe", "ok": true, "tags": ["x"], "empty": ""}))
        );
        assert!(pairs(&owned(&["a=1", "a=2"])).is_err(), "a key twice");
        assert!(pairs(&owned(&["a=1", "{}"])).is_err(), "JSON among pairs");
    }

    #[test]
    fn json_is_never_taken_for_a_pair() {
        assert!(is_pair("a=1"));
        assert!(!is_pair("{\"a\": \"b=c\"}"));
        assert!(!is_pair("\"a=b\""));
        assert!(!is_pair("=1"));
        assert!(!is_pair("-"));
    }
}
