//! The discovery calls of the JavaScript API: `listFunctions()`,
//! `listTriggers(includeInternal?)`, `listTriggerTypes(includeInternal?)` and the
//! notifications behind `onFunctionsAvailable(callback)`.
//!
//! Each listing is a call of one of the engine's built-ins
//! ([`iii_core::wire::builtins`]); an answer larger than the engine's page
//! (`max_list_bytes`) carries `next_offset`, and [`ListQuery`] asks for the next page
//! until the last. The engine's rows become the documented objects, with exactly their
//! fields:
//!
//! | Method | Built-in | Object |
//! |---|---|---|
//! | `listFunctions()` | `engine::functions::list` | `FunctionInfo {function_id, description?, request_format?, response_format?, metadata?}` |
//! | `listTriggers(includeInternal)` | `engine::registered-triggers::list` | `TriggerInfo {id, trigger_type, function_id, config?}` |
//! | `listTriggerTypes(includeInternal)` | `engine::triggers::list` | `TriggerTypeInfo {id, description, trigger_request_format?, call_request_format?}` |
//!
//! `listTriggers` lists trigger *bindings* (what `registerTrigger` made), which this
//! engine and the reference engine list with `engine::registered-triggers::list`;
//! `engine::triggers::list` lists trigger *types*.

use iii_core::wire::builtins::{
    FUNCTIONS_AVAILABLE, FUNCTIONS_LIST, REGISTERED_TRIGGERS_LIST, TRIGGER_TYPES_LIST,
};
use iii_core::wire::Payload;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};

/// Why an engine's answer could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    /// The answer is not an object with the expected list.
    #[error("{function} answered without a `{key}` list")]
    NoList {
        /// The built-in called.
        function: &'static str,
        /// The list's key.
        key: &'static str,
    },
    /// A row lacks a field the documented object requires, or has it of another type.
    #[error("{function} answered with a row whose `{field}` is not a string: {row}")]
    BadRow {
        /// The built-in called.
        function: &'static str,
        /// The field.
        field: &'static str,
        /// The row, as JSON.
        row: String,
    },
    /// `next_offset` did not move forward (a page would be asked for again and again).
    #[error("{function} answered with next_offset {next} after offset {offset}")]
    NoProgress {
        /// The built-in called.
        function: &'static str,
        /// The offset asked for.
        offset: u64,
        /// The offset the answer named next.
        next: u64,
    },
}

/// Which listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `listFunctions()`: `FunctionInfo`s.
    Functions,
    /// `listTriggers()`: `TriggerInfo`s (trigger bindings).
    Triggers,
    /// `listTriggerTypes()`: `TriggerTypeInfo`s.
    TriggerTypes,
}

/// Whether a listing includes the engine's own (`engine::*`) entries, and functions
/// marked `metadata.internal`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Internal {
    /// Hidden (the documented default).
    Hidden,
    /// Included (`includeInternal: true`).
    Included,
}

impl Internal {
    /// From the optional `includeInternal` argument (absent means hidden).
    pub fn from_flag(include_internal: Option<bool>) -> Self {
        match include_internal {
            Some(true) => Internal::Included,
            Some(false) | None => Internal::Hidden,
        }
    }
}

/// What a documented field of an info object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// A string the object always has (the row must have it).
    Id(&'static str),
    /// A string the object always has (empty when the row has none).
    Text(&'static str),
    /// Copied when the row has it and it is not `null`.
    Optional(&'static str),
}

const FUNCTION_INFO: &[Field] = &[
    Field::Id("function_id"),
    Field::Optional("description"),
    Field::Optional("request_format"),
    Field::Optional("response_format"),
    Field::Optional("metadata"),
];

const TRIGGER_INFO: &[Field] = &[
    Field::Id("id"),
    Field::Id("trigger_type"),
    Field::Id("function_id"),
    Field::Optional("config"),
];

const TRIGGER_TYPE_INFO: &[Field] = &[
    Field::Id("id"),
    Field::Text("description"),
    Field::Optional("trigger_request_format"),
    Field::Optional("call_request_format"),
];

impl Listing {
    /// The built-in it calls.
    pub fn function_id(self) -> &'static str {
        match self {
            Listing::Functions => FUNCTIONS_LIST,
            Listing::Triggers => REGISTERED_TRIGGERS_LIST,
            Listing::TriggerTypes => TRIGGER_TYPES_LIST,
        }
    }

    /// The key of the answer's list.
    fn key(self) -> &'static str {
        match self {
            Listing::Functions => "functions",
            Listing::Triggers => "registered_triggers",
            Listing::TriggerTypes => "triggers",
        }
    }

    fn fields(self) -> &'static [Field] {
        match self {
            Listing::Functions => FUNCTION_INFO,
            Listing::Triggers => TRIGGER_INFO,
            Listing::TriggerTypes => TRIGGER_TYPE_INFO,
        }
    }

    /// A row of `function`'s answer as the documented object.
    fn project(self, row: &Value, function: &'static str) -> Result<Value, DiscoveryError> {
        let mut object = Map::new();
        for field in self.fields() {
            match *field {
                Field::Id(name) => match row.get(name) {
                    Some(Value::String(text)) => {
                        object.insert(name.to_owned(), Value::String(text.clone()));
                    }
                    _ => {
                        return Err(DiscoveryError::BadRow {
                            function,
                            field: name,
                            row: row.to_string(),
                        })
                    }
                },
                Field::Text(name) => {
                    let text = row.get(name).and_then(Value::as_str).unwrap_or_default();
                    object.insert(name.to_owned(), Value::String(text.to_owned()));
                }
                Field::Optional(name) => {
                    if let Some(value) = row.get(name).filter(|value| !value.is_null()) {
                        object.insert(name.to_owned(), value.clone());
                    }
                }
            }
        }
        Ok(Value::Object(object))
    }

    /// The rows of the list in `function`'s answer, projected.
    fn rows(self, answer: &Value, function: &'static str) -> Result<Vec<Value>, DiscoveryError> {
        let key = self.key();
        let rows = answer
            .get(key)
            .and_then(Value::as_array)
            .ok_or(DiscoveryError::NoList { function, key })?;
        rows.iter().map(|row| self.project(row, function)).collect()
    }
}

/// What to do after an answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Page {
    /// Call the built-in again with [`ListQuery::request`].
    More,
    /// Done: the documented objects, as a JSON array.
    Done(String),
}

/// One listing in progress: the next request and the rows so far.
#[derive(Debug)]
pub struct ListQuery {
    listing: Listing,
    internal: Internal,
    offset: u64,
    rows: Vec<Value>,
}

impl ListQuery {
    /// A listing from its first page.
    pub fn new(listing: Listing, internal: Internal) -> Self {
        Self {
            listing,
            internal,
            offset: 0,
            rows: Vec::new(),
        }
    }

    /// Which listing.
    pub fn listing(&self) -> Listing {
        self.listing
    }

    /// The input of the next call of [`Listing::function_id`].
    pub fn request(&self) -> Payload {
        let mut input = Map::new();
        if self.listing != Listing::Functions || self.internal == Internal::Included {
            let included = self.internal == Internal::Included;
            input.insert("include_internal".to_owned(), Value::Bool(included));
        }
        if self.offset > 0 {
            input.insert("offset".to_owned(), json!(self.offset));
        }
        let text = Value::Object(input).to_string();
        RawValue::from_string(text).unwrap_or_else(|_| iii_core::wire::control::null_payload())
    }

    /// Takes one answer (the call's result payload).
    pub fn feed(&mut self, answer: Option<&Payload>) -> Result<Page, DiscoveryError> {
        let function = self.listing.function_id();
        let key = self.listing.key();
        let answer: Value = answer
            .and_then(|payload| serde_json::from_str(payload.get()).ok())
            .ok_or(DiscoveryError::NoList { function, key })?;
        let rows = self.listing.rows(&answer, function)?;
        let next = answer.get("next_offset").and_then(Value::as_u64);
        let count = rows.len() as u64;
        self.rows.extend(rows);
        match next {
            None => Ok(Page::Done(
                Value::Array(std::mem::take(&mut self.rows)).to_string(),
            )),
            Some(next) if next > self.offset && count > 0 => {
                self.offset = next;
                Ok(Page::More)
            }
            Some(next) => Err(DiscoveryError::NoProgress {
                function,
                offset: self.offset,
                next,
            }),
        }
    }
}

/// The `FunctionInfo` list of an `engine::functions-available` notification
/// (`{event, functions: [...]}`), as a JSON array.
pub fn available_functions(input: &Payload) -> Result<String, DiscoveryError> {
    let event: Value = serde_json::from_str(input.get()).unwrap_or(Value::Null);
    let rows = Listing::Functions.rows(&event, FUNCTIONS_AVAILABLE)?;
    Ok(Value::Array(rows).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(value: Value) -> Payload {
        RawValue::from_string(value.to_string()).expect("json")
    }

    #[test]
    fn rows_become_the_documented_objects_and_nothing_more() {
        let mut query = ListQuery::new(Listing::Functions, Internal::Hidden);
        let answer = json!({"functions": [
            {"function_id": "a", "namespace": "default", "worker_name": "w", "description": "A",
             "metadata": {"k": 1}},
            {"function_id": "b", "namespace": "default", "worker_name": "w", "description": null,
             "request_format": {"type": "object"}},
        ]});
        let Page::Done(text) = query.feed(Some(&payload(answer))).expect("page") else {
            panic!("one page");
        };
        let listed: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            listed,
            json!([
                {"function_id": "a", "description": "A", "metadata": {"k": 1}},
                {"function_id": "b", "request_format": {"type": "object"}},
            ])
        );

        let mut query = ListQuery::new(Listing::Triggers, Internal::Included);
        let answer = json!({"registered_triggers": [
            {"id": "t", "trigger_type": "cron", "function_id": "f", "worker_name": "w",
             "config": {"every": 1}, "config_summary": "every=1"},
        ]});
        let Page::Done(text) = query.feed(Some(&payload(answer))).expect("page") else {
            panic!("one page");
        };
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!([{"id": "t", "trigger_type": "cron", "function_id": "f", "config": {"every": 1}}])
        );

        // A trigger type without a description still has one (the field is required).
        let mut query = ListQuery::new(Listing::TriggerTypes, Internal::Hidden);
        let answer = json!({"triggers": [{"id": "x", "namespace": "default", "worker_name": "w"}]});
        let Page::Done(text) = query.feed(Some(&payload(answer))).expect("page") else {
            panic!("one page");
        };
        assert_eq!(
            serde_json::from_str::<Value>(&text).expect("json"),
            json!([{"id": "x", "description": ""}])
        );
    }

    #[test]
    fn requests_name_include_internal_as_the_reference_sdks_do() {
        let request = |listing, internal| {
            serde_json::from_str::<Value>(ListQuery::new(listing, internal).request().get())
                .expect("json")
        };
        assert_eq!(request(Listing::Functions, Internal::Hidden), json!({}));
        assert_eq!(
            request(Listing::Triggers, Internal::Hidden),
            json!({"include_internal": false})
        );
        assert_eq!(
            request(Listing::TriggerTypes, Internal::Included),
            json!({"include_internal": true})
        );
        assert_eq!(Internal::from_flag(None), Internal::Hidden);
        assert_eq!(Internal::from_flag(Some(true)), Internal::Included);
    }

    #[test]
    fn pages_are_followed_until_the_last() {
        let mut query = ListQuery::new(Listing::TriggerTypes, Internal::Included);
        let first = json!({"triggers": [{"id": "a", "description": "A"}], "next_offset": 1});
        assert_eq!(query.feed(Some(&payload(first))), Ok(Page::More));
        let asked: Value = serde_json::from_str(query.request().get()).expect("json");
        assert_eq!(asked, json!({"include_internal": true, "offset": 1}));
        let last = json!({"triggers": [{"id": "b", "description": "B"}]});
        let Ok(Page::Done(text)) = query.feed(Some(&payload(last))) else {
            panic!("the last page");
        };
        let ids: Vec<Value> = serde_json::from_str::<Vec<Value>>(&text)
            .expect("json")
            .into_iter()
            .map(|row| row["id"].clone())
            .collect();
        assert_eq!(ids, vec![json!("a"), json!("b")]);
    }

    #[test]
    fn bad_answers_are_typed_errors() {
        let mut query = ListQuery::new(Listing::Functions, Internal::Hidden);
        assert!(matches!(
            query.feed(None),
            Err(DiscoveryError::NoList {
                key: "functions",
                ..
            })
        ));
        let nameless = json!({"functions": [{"description": "no id"}]});
        assert!(matches!(
            query.feed(Some(&payload(nameless))),
            Err(DiscoveryError::BadRow {
                field: "function_id",
                ..
            })
        ));
        let stuck = json!({"functions": [{"function_id": "a"}], "next_offset": 0});
        assert!(matches!(
            query.feed(Some(&payload(stuck))),
            Err(DiscoveryError::NoProgress { next: 0, .. })
        ));
    }

    #[test]
    fn notifications_give_the_function_list() {
        let event = json!({"event": "functions_changed", "functions": [
            {"function_id": "f", "namespace": "default", "worker_name": "w"}]});
        let listed = available_functions(&payload(event)).expect("list");
        assert_eq!(listed, r#"[{"function_id":"f"}]"#);
        let empty = available_functions(&payload(json!({"event": "functions_changed"})));
        assert!(matches!(empty, Err(DiscoveryError::NoList { .. })));
    }
}
