//! Which functions a listener exposes: `match("api::*")` id patterns and metadata
//! matchers, in the shape of the reference engine's `expose_functions`.

use serde_json::value::RawValue;
use serde_json::Value;

/// A wildcard pattern: `*` matches any run of characters (none included); everything
/// else matches itself. Anchored at both ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern(String);

impl Pattern {
    /// The pattern `text` (with its `*`s).
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// Parses `match("…")` (the reference's syntax); `None` for anything else.
    pub fn parse_match(text: &str) -> Option<Self> {
        let inner = text
            .trim()
            .strip_prefix("match(")?
            .strip_suffix(')')?
            .trim();
        let quoted = inner
            .strip_prefix('"')
            .and_then(|i| i.strip_suffix('"'))
            .or_else(|| inner.strip_prefix('\'').and_then(|i| i.strip_suffix('\'')))?;
        Some(Self::new(quoted))
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        glob(self.0.as_bytes(), text.as_bytes())
    }
}

/// Iterative wildcard matching (no recursion, linear backtracking on the last `*`).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// What one metadata key must hold.
#[derive(Debug, Clone, PartialEq)]
pub enum MetadataMatch {
    /// Exactly this JSON scalar (`true`, `"free"`, `3`, `null`).
    Equals(Value),
    /// A string matching this pattern.
    Pattern(Pattern),
}

/// One entry of `expose_functions`: a function is exposed if any entry matches.
#[derive(Debug, Clone, PartialEq)]
pub enum FunctionFilter {
    /// The function id matches the pattern.
    Id(Pattern),
    /// Every listed metadata key holds what it must (AND).
    Metadata(Vec<(String, MetadataMatch)>),
}

impl FunctionFilter {
    /// True when function `id` with `metadata` (raw JSON, as registered) matches.
    pub fn matches(&self, id: &str, metadata: Option<&RawValue>) -> bool {
        match self {
            FunctionFilter::Id(pattern) => pattern.matches(id),
            FunctionFilter::Metadata(wanted) => {
                let Some(members) = metadata.and_then(top_level_members) else {
                    return false;
                };
                wanted.iter().all(|(key, want)| {
                    members
                        .iter()
                        .find(|(k, _)| k == key)
                        .and_then(|(_, raw)| scalar(raw))
                        .is_some_and(|value| match want {
                            MetadataMatch::Equals(expected) => &value == expected,
                            MetadataMatch::Pattern(pattern) => {
                                value.as_str().is_some_and(|s| pattern.matches(s))
                            }
                        })
                })
            }
        }
    }
}

/// The members of a JSON object (values kept raw); `None` for anything else.
fn top_level_members(raw: &RawValue) -> Option<Vec<(String, &RawValue)>> {
    let map: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_str(raw.get()).ok()?;
    Some(map.into_iter().collect())
}

/// A raw JSON value that is a scalar, parsed; `None` for objects and arrays (which a
/// filter never matches, and which are never parsed).
fn scalar(raw: &RawValue) -> Option<Value> {
    let text = raw.get().trim_start();
    if text.starts_with(['{', '[']) {
        return None;
    }
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).expect("json")
    }

    #[test]
    fn patterns_are_anchored_wildcards() {
        let api = Pattern::parse_match(r#"match("api::*")"#).expect("parsed");
        assert!(api.matches("api::users::list"));
        assert!(api.matches("api::"));
        assert!(!api.matches("xapi::a"));
        let public = Pattern::new("*::public");
        assert!(public.matches("a::b::public"));
        assert!(!public.matches("a::public::b"));
        let read = Pattern::new("api::*::read");
        assert!(read.matches("api::users::read"));
        assert!(!read.matches("api::users::write"));
        assert!(Pattern::new("*").matches(""));
        assert!(Pattern::new("a*b*c").matches("aXXbYYc"));
        assert!(!Pattern::new("a*b*c").matches("aXXbYY"));
        assert!(Pattern::new("exact").matches("exact"));
        assert_eq!(Pattern::parse_match("api::*"), None);
        assert_eq!(
            Pattern::parse_match("match('x')").map(|p| p.as_str().to_owned()),
            Some("x".to_owned())
        );
        // Long inputs and many stars stay linear-ish.
        let long = "a".repeat(10_000);
        assert!(!Pattern::new("*a*a*a*a*b").matches(&long));
    }

    #[test]
    fn metadata_filters_match_scalars_and_patterns() {
        let public = FunctionFilter::Metadata(vec![(
            "public".into(),
            MetadataMatch::Equals(Value::Bool(true)),
        )]);
        assert!(public.matches("f", Some(&raw(r#"{"public": true, "x": [1]}"#))));
        assert!(!public.matches("f", Some(&raw(r#"{"public": "true"}"#))));
        assert!(!public.matches("f", Some(&raw(r#"[{"public": true}]"#))));
        assert!(!public.matches("f", None));
        let both = FunctionFilter::Metadata(vec![
            ("tier".into(), MetadataMatch::Equals(Value::from("free"))),
            (
                "name".into(),
                MetadataMatch::Pattern(Pattern::new("*public*")),
            ),
        ]);
        assert!(both.matches("f", Some(&raw(r#"{"tier":"free","name":"my public fn"}"#))));
        assert!(!both.matches("f", Some(&raw(r#"{"tier":"free","name":"private"}"#))));
        assert!(!both.matches("f", Some(&raw(r#"{"tier":"free","name":{"public":1}}"#))));
    }
}
