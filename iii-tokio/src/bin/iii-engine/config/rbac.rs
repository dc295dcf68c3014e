//! The `rbac:` block of an `iii-worker-manager` entry, in the reference's shape:
//!
//! ```yaml
//! rbac:
//!   auth_function_id: auth::check          # optional; without it every upgrade is admitted
//!   expose_functions:
//!     - match("api::*")                    # a wildcard on the function id
//!     - match: "billing::public::*"        # the same, as a mapping
//!     - metadata: {public: true}           # every key must hold (`match("…")` values are wildcards)
//!   on_function_registration_function_id: hooks::function
//!   on_trigger_registration_function_id: hooks::trigger
//!   on_trigger_type_registration_function_id: hooks::trigger_type
//!   hook_timeout_ms: 5000                  # ours: the auth function and hooks answer within it
//! ```
//!
//! A filter scoped to a `namespace` other than `default` is refused: untrusted workers
//! reach the default namespace only on this engine, so such a rule could only mislead.

use std::time::Duration;

use iii_tokio::engine::{FunctionFilter, MetadataMatch, Pattern, Rbac};
use serde::Deserialize;
use serde_json::Value;

/// The `rbac:` mapping as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename = "rbac")]
pub(crate) struct RbacEntry {
    /// Decides each upgrade (a function on a trusted worker).
    #[serde(default)]
    pub(crate) auth_function_id: Option<String>,
    /// What the listener's workers may call: `match("…")` strings or mappings with
    /// `match`, `metadata` and `namespace`.
    #[serde(default)]
    pub(crate) expose_functions: Vec<Value>,
    /// Approves each function registration.
    #[serde(default)]
    pub(crate) on_function_registration_function_id: Option<String>,
    /// Approves each trigger registration.
    #[serde(default)]
    pub(crate) on_trigger_registration_function_id: Option<String>,
    /// Approves each trigger type registration.
    #[serde(default)]
    pub(crate) on_trigger_type_registration_function_id: Option<String>,
    /// Ours: milliseconds the authentication function and the hooks may take.
    #[serde(default)]
    pub(crate) hook_timeout_ms: Option<u64>,
}

/// An `expose_functions` entry that cannot be used, with why.
#[derive(Debug, thiserror::Error)]
#[error("rbac.expose_functions[{index}]: {why}")]
pub(crate) struct FilterError {
    index: usize,
    why: String,
}

impl RbacEntry {
    /// The core's [`Rbac`] for this block.
    pub(crate) fn to_rbac(&self) -> Result<Rbac, FilterError> {
        let expose_functions = self
            .expose_functions
            .iter()
            .enumerate()
            .map(|(index, value)| filter(value).map_err(|why| FilterError { index, why }))
            .collect::<Result<Vec<_>, _>>()?;
        let defaults = Rbac::default();
        Ok(Rbac {
            auth_function_id: self.auth_function_id.clone(),
            hook_timeout: self
                .hook_timeout_ms
                .map_or(defaults.hook_timeout, Duration::from_millis),
            expose_functions,
            on_function_registration_function_id: self.on_function_registration_function_id.clone(),
            on_trigger_registration_function_id: self.on_trigger_registration_function_id.clone(),
            on_trigger_type_registration_function_id: self
                .on_trigger_type_registration_function_id
                .clone(),
        })
    }
}

/// One `expose_functions` entry.
pub(crate) fn filter(value: &Value) -> Result<FunctionFilter, String> {
    match value {
        Value::String(text) => Pattern::parse_match(text)
            .map(FunctionFilter::Id)
            .ok_or_else(|| format!("expected match(\"pattern\"), got {text:?}")),
        Value::Object(map) => {
            let mut pattern = None;
            let mut metadata = None;
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("match", Value::String(raw)) => pattern = Some(Pattern::new(raw.as_str())),
                    ("metadata", Value::Object(wanted)) => metadata = Some(wanted),
                    ("namespace", Value::String(ns)) if ns == "default" => {}
                    ("namespace", _) => {
                        return Err(
                            "a namespace other than `default`: untrusted workers reach the \
                             default namespace only on this engine"
                                .to_owned(),
                        )
                    }
                    ("match" | "metadata", _) => {
                        return Err(format!("`{key}` has the wrong type"));
                    }
                    (other, _) => {
                        return Err(format!(
                            "unknown key `{other}` (expected `match`, `metadata` or `namespace`)"
                        ))
                    }
                }
            }
            match (pattern, metadata) {
                (Some(pattern), None) => Ok(FunctionFilter::Id(pattern)),
                (None, Some(wanted)) if !wanted.is_empty() => Ok(FunctionFilter::Metadata(
                    wanted
                        .iter()
                        .map(|(key, value)| (key.clone(), metadata_match(value)))
                        .collect(),
                )),
                (Some(_), Some(_)) => Err("either `match` or `metadata`, not both".to_owned()),
                (None, _) => Err("a `match` or a non-empty `metadata` is needed".to_owned()),
            }
        }
        _ => Err("expected match(\"pattern\") or a mapping".to_owned()),
    }
}

/// A metadata value: `match("…")` is a wildcard on strings, anything else must be equal.
fn metadata_match(value: &Value) -> MetadataMatch {
    match value.as_str().and_then(Pattern::parse_match) {
        Some(pattern) => MetadataMatch::Pattern(pattern),
        None => MetadataMatch::Equals(value.clone()),
    }
}

/// A filter as the `--rbac-expose` flag spells it: `api::*` or `match("api::*")` for an
/// id pattern, `metadata.KEY=VALUE` for a metadata key (VALUE read as JSON when it is
/// JSON, as a string otherwise; `match("…")` is a wildcard).
pub(crate) fn flag_filter(text: &str) -> Result<FunctionFilter, String> {
    if let Some(rest) = text.strip_prefix("metadata.") {
        let (key, raw) = rest
            .split_once('=')
            .filter(|(key, _)| !key.is_empty())
            .ok_or_else(|| format!("expected metadata.KEY=VALUE, got {text:?}"))?;
        let value =
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.to_owned()));
        return Ok(FunctionFilter::Metadata(vec![(
            key.to_owned(),
            metadata_match(&value),
        )]));
    }
    if text.trim().is_empty() {
        return Err("an empty pattern".to_owned());
    }
    Ok(FunctionFilter::Id(
        Pattern::parse_match(text).unwrap_or_else(|| Pattern::new(text.trim())),
    ))
}

/// A filter written back in the file's shape (`--print-config`).
pub(crate) fn filter_value(filter: &FunctionFilter) -> Value {
    match filter {
        FunctionFilter::Id(pattern) => Value::String(format!("match(\"{}\")", pattern.as_str())),
        FunctionFilter::Metadata(wanted) => {
            let wanted = wanted
                .iter()
                .map(|(key, want)| {
                    let value = match want {
                        MetadataMatch::Equals(value) => value.clone(),
                        MetadataMatch::Pattern(pattern) => {
                            Value::String(format!("match(\"{}\")", pattern.as_str()))
                        }
                    };
                    (key.clone(), value)
                })
                .collect();
            serde_json::json!({ "metadata": Value::Object(wanted) })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_read_in_every_shape_the_reference_writes() {
        let read = |v: Value| filter(&v);
        assert_eq!(
            read(json!("match(\"api::*\")")),
            Ok(FunctionFilter::Id(Pattern::new("api::*")))
        );
        assert_eq!(
            read(json!({"match": "api::*", "namespace": "default"})),
            Ok(FunctionFilter::Id(Pattern::new("api::*")))
        );
        assert_eq!(
            read(json!({"metadata": {"public": true, "tier": "match(\"pro*\")"}})),
            Ok(FunctionFilter::Metadata(vec![
                ("public".to_owned(), MetadataMatch::Equals(json!(true))),
                (
                    "tier".to_owned(),
                    MetadataMatch::Pattern(Pattern::new("pro*"))
                ),
            ]))
        );
        for bad in [
            json!("api::*"),
            json!({"match": "a", "metadata": {"x": 1}}),
            json!({"metadata": {}}),
            json!({"match": "a", "namespace": "billing"}),
            json!({"namesapce": "default", "match": "a"}),
            json!(3),
        ] {
            assert!(read(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn flag_filters_and_written_filters_read_back() {
        for (text, written) in [
            ("api::*", json!("match(\"api::*\")")),
            ("match(\"x::*\")", json!("match(\"x::*\")")),
            (
                "metadata.public=true",
                json!({"metadata": {"public": true}}),
            ),
            ("metadata.tier=free", json!({"metadata": {"tier": "free"}})),
        ] {
            let parsed = flag_filter(text).expect(text);
            assert_eq!(filter_value(&parsed), written, "{text}");
            assert_eq!(filter(&written), Ok(parsed), "{text}");
        }
        assert!(flag_filter("metadata.=1").is_err());
        assert!(flag_filter(" ").is_err());
    }
}
