//! Reading the little the engine needs from raw JSON without building a tree.
//!
//! Payloads stay raw text ([`super::Payload`]) on every path the engine forwards or
//! stores. Where it must look inside one (how deep it nests, the top-level keys of an
//! object) it scans the text once, here, with no recursion and no allocation beyond the
//! output. Every function accepts any input without panicking; on text that is not
//! valid JSON the answers are unspecified but safe (the engine only passes text that
//! `serde_json` already validated).

use serde_json::value::RawValue;

use super::control::Payload;

/// True when `text` nests arrays and objects more than `limit` levels deep.
/// Stops scanning as soon as the limit is passed.
pub fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &byte in text.as_bytes() {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// The key under which the engine tells a handler who called it.
pub const CALLER_WORKER_ID: &str = "_caller_worker_id";

/// The key under which the engine passes a caller's RBAC context.
pub const CALLER_CONTEXT: &str = "_caller_context";

/// Sets `"_caller_worker_id": <worker_id>` in a JSON object payload, as the reference
/// engine does for calls that come from a worker; other payloads are returned unchanged.
///
/// A top-level key that already spells `_caller_worker_id` (in any JSON escaping) is
/// removed, so the handler sees exactly one, the true one, whatever its parser does with
/// duplicate keys. Keys nested deeper are left alone. One pass over the text.
pub fn with_caller_worker_id(data: Payload, worker_id: &str) -> Payload {
    with_caller_keys(data, Some(worker_id), None)
}

/// [`with_caller_worker_id`] (or, when `worker_id` is `None`, without any
/// `_caller_worker_id`: for callees that must not learn who called), and for a caller
/// on an RBAC listener (`context` is `Some`) also `"_caller_context"`: set to its
/// session's context, or removed when it has none, so that no caller can forge one.
pub fn with_caller_keys(
    data: Payload,
    worker_id: Option<&str>,
    context: Option<Option<&RawValue>>,
) -> Payload {
    let id = worker_id.map(|w| serde_json::to_string(w).unwrap_or_else(|_| "\"\"".to_owned()));
    let mut keys: Vec<(&str, Option<&str>)> = vec![(CALLER_WORKER_ID, id.as_deref())];
    if let Some(context) = context {
        keys.push((CALLER_CONTEXT, context.map(RawValue::get)));
    }
    set_keys(data, &keys)
}

/// The prefix of every key through which the engine tells a handler about its caller.
pub const CALLER_PREFIX: &str = "_caller_";

/// `data` without the top-level keys that start with `_caller_` (in any JSON
/// escaping); other payloads, and objects without such keys, are returned unchanged
/// (byte for byte). Keys nested deeper are left alone. One pass over the text.
pub fn without_caller_keys(data: Payload) -> Payload {
    let text = data.get();
    let Some(object) = TopLevelObject::scan(text) else {
        return data;
    };
    let reserved = |m: &Member| key_starts_with(&text[m.key.clone()], CALLER_PREFIX);
    if !object.members.iter().any(reserved) {
        return data;
    }
    let mut out = String::with_capacity(text.len());
    out.push('{');
    let mut any = false;
    for member in object.members.iter().filter(|m| !reserved(m)) {
        if any {
            out.push(',');
        }
        out.push_str(&text[member.key.start..member.value_end]);
        any = true;
    }
    out.push('}');
    // Fail closed: were the rebuilt object ever refused, nothing of the payload passes,
    // rather than the payload with the keys it must lose.
    RawValue::from_string(out).unwrap_or_else(|_| super::control::null_payload())
}

/// Sets (value `Some`, raw JSON) or removes (`None`) top-level keys of a JSON object
/// payload; other payloads are returned unchanged. Keys already present in any
/// spelling are replaced, so each appears at most once.
fn set_keys(data: Payload, keys: &[(&str, Option<&str>)]) -> Payload {
    let text = data.get();
    let Some(object) = TopLevelObject::scan(text) else {
        return data;
    };
    let managed = |m: &Member| keys.iter().any(|(k, _)| key_is(&text[m.key.clone()], k));
    let mut out = String::with_capacity(text.len() + 64);
    let mut any = false;
    if object.members.iter().any(managed) {
        out.push('{');
        for member in object.members.iter().filter(|m| !managed(m)) {
            if any {
                out.push(',');
            }
            out.push_str(&text[member.key.start..member.value_end]);
            any = true;
        }
    } else {
        // Keep the payload byte for byte and append before the closing brace.
        out.push_str(&text[..object.close]);
        any = !object.members.is_empty();
    }
    for (key, value) in keys {
        let Some(value) = value else {
            continue;
        };
        if any {
            out.push(',');
        }
        out.push('"');
        out.push_str(key);
        out.push_str("\":");
        out.push_str(value);
        any = true;
    }
    out.push('}');
    // Fail closed: were the rebuilt object ever refused, nothing of the payload passes,
    // rather than the payload with the keys it must lose.
    RawValue::from_string(out).unwrap_or_else(|_| super::control::null_payload())
}

/// One `"key": value` of a top-level object: the key's span (with its quotes) and
/// where the value ends.
#[derive(Debug)]
struct Member {
    key: std::ops::Range<usize>,
    value_end: usize,
}

/// The members of a top-level JSON object and the position of its closing brace.
#[derive(Debug)]
struct TopLevelObject {
    members: Vec<Member>,
    close: usize,
}

impl TopLevelObject {
    fn scan(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        let mut at = skip_ws(bytes, 0);
        if bytes.get(at) != Some(&b'{') {
            return None;
        }
        at += 1;
        let mut members = Vec::new();
        loop {
            at = skip_ws(bytes, at);
            match bytes.get(at)? {
                b'}' => {
                    let close = at;
                    let rest = skip_ws(bytes, at + 1);
                    return (rest == bytes.len()).then_some(Self { members, close });
                }
                b',' => at += 1,
                b'"' => {
                    let key_start = at;
                    let key_end = string_end(bytes, at)?;
                    at = skip_ws(bytes, key_end);
                    if bytes.get(at) != Some(&b':') {
                        return None;
                    }
                    let value_start = skip_ws(bytes, at + 1);
                    let value_end = value_end(bytes, value_start)?;
                    members.push(Member {
                        key: key_start..key_end,
                        value_end,
                    });
                    at = value_end;
                }
                _ => return None,
            }
        }
    }
}

fn skip_ws(bytes: &[u8], mut at: usize) -> usize {
    while bytes
        .get(at)
        .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
    {
        at += 1;
    }
    at
}

/// The position after the string starting with the quote at `at`.
fn string_end(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        match bytes.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The position after the JSON value starting at `at`.
fn value_end(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => string_end(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                match bytes.get(i)? {
                    b'"' => {
                        i = string_end(bytes, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            // A number, true, false or null: up to the next delimiter.
            let mut i = at;
            while bytes
                .get(i)
                .is_some_and(|b| !matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            (i > at).then_some(i)
        }
    }
}

/// True when the JSON string literal `quoted` (with its quotes) decodes to a string
/// that starts with `prefix`.
fn key_starts_with(quoted: &str, prefix: &str) -> bool {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or("");
    if !inner.contains('\\') {
        return inner.starts_with(prefix);
    }
    // Escaped spellings such as "_caller\u005frole" decode to the same key.
    serde_json::from_str::<String>(quoted).is_ok_and(|key| key.starts_with(prefix))
}

/// True when the JSON string literal `quoted` (with its quotes) decodes to `expected`.
fn key_is(quoted: &str, expected: &str) -> bool {
    let inner = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or("");
    if !inner.contains('\\') {
        return inner == expected;
    }
    // Escaped spellings such as "_caller\u005fworker_id" decode to the same key. The
    // escaped form is at most six bytes per character, which bounds the work.
    if inner.len() > expected.len() * 6 {
        return false;
    }
    serde_json::from_str::<String>(quoted).is_ok_and(|key| key == expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Payload {
        RawValue::from_string(s.to_owned()).expect("valid json")
    }

    fn add(s: &str) -> String {
        with_caller_worker_id(raw(s), "w1").get().to_owned()
    }

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert!(!nesting_exceeds(r#"{"a":[1,{"b":2}]}"#, 3));
        assert!(nesting_exceeds(r#"{"a":[1,{"b":[]}]}"#, 3));
        assert!(!nesting_exceeds(r#"{"a":"[[[[[[\"[[["}"#, 1));
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        assert!(nesting_exceeds(&deep, 100));
        assert!(!nesting_exceeds(&deep, 5000));
        assert!(!nesting_exceeds("", 0));
        assert!(nesting_exceeds("]]][", 0));
    }

    #[test]
    fn caller_id_is_appended_keeping_the_payload_bytes() {
        assert_eq!(add(r#"{"a":1}"#), r#"{"a":1,"_caller_worker_id":"w1"}"#);
        assert_eq!(add(r#"{ }"#), r#"{ "_caller_worker_id":"w1"}"#);
        assert_eq!(
            add(r#"{"b":1,  "a":[2]}"#),
            r#"{"b":1,  "a":[2],"_caller_worker_id":"w1"}"#
        );
        assert_eq!(add("[1]"), "[1]");
        assert_eq!(add("null"), "null");
        assert_eq!(add(r#""{}""#), r#""{}""#);
    }

    #[test]
    fn a_forged_caller_id_is_replaced_not_duplicated() {
        assert_eq!(
            add(r#"{"x": 1, "_caller_worker_id": "fake"}"#),
            r#"{"x": 1,"_caller_worker_id":"w1"}"#
        );
        assert_eq!(
            add(r#"{"_caller_worker_id":{"deep":["}"]},"y":"a\"b"}"#),
            r#"{"y":"a\"b","_caller_worker_id":"w1"}"#
        );
        // Escaped spellings of the same key are the same key.
        assert_eq!(
            add(r#"{"_caller\u005fworker_id":"fake","z":null}"#),
            r#"{"z":null,"_caller_worker_id":"w1"}"#
        );
        // Nested occurrences belong to the payload and stay.
        assert_eq!(
            add(r#"{"inner":{"_caller_worker_id":"keep"}}"#),
            r#"{"inner":{"_caller_worker_id":"keep"},"_caller_worker_id":"w1"}"#
        );
        // Several forged copies all go.
        let out = add(r#"{"_caller_worker_id":1,"_caller_worker_id":2}"#);
        assert_eq!(out, r#"{"_caller_worker_id":"w1"}"#);
        // Every output is one valid object with exactly one such key.
        for input in [
            r#"{"a":"\\","_caller_worker_id":"f"}"#,
            r#"{"k\"ey":1,"_caller_worker_id":[1,2]}"#,
        ] {
            let out = add(input);
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&out).expect("valid object");
            assert_eq!(map[CALLER_WORKER_ID], "w1", "{out}");
            assert_eq!(out.matches(CALLER_WORKER_ID).count(), 1, "{out}");
        }
    }

    #[test]
    fn every_caller_key_is_stripped_at_top_level_only() {
        let strip = |s: &str| without_caller_keys(raw(s)).get().to_owned();
        assert_eq!(
            strip(r#"{"a":1,"_caller_context":{"role":"admin"},"_caller_role":"x","b":[2]}"#),
            r#"{"a":1,"b":[2]}"#
        );
        assert_eq!(strip(r#"{"_caller\u005fcontext":1}"#), "{}");
        assert_eq!(
            strip(r#"{"_caller":1, "x": {"_caller_id":2}}"#),
            r#"{"_caller":1, "x": {"_caller_id":2}}"#
        );
        assert_eq!(strip(r#"[{"_caller_id":2}]"#), r#"[{"_caller_id":2}]"#);
        assert_eq!(strip(r#""_caller_x""#), r#""_caller_x""#);
        let out = strip(r#"{"_caller_a":1,"_caller_a":2,"k":"}"}"#);
        assert_eq!(out, r#"{"k":"}"}"#);
        assert!(serde_json::from_str::<serde_json::Value>(&out).is_ok());
    }

    #[test]
    fn the_caller_context_is_set_or_removed_for_rbac_callers() {
        let context = raw(r#"{"user":"u1"}"#);
        let set = |s: &str, c: Option<Option<&RawValue>>| {
            with_caller_keys(raw(s), Some("w"), c).get().to_owned()
        };
        assert_eq!(
            set(r#"{"a":1}"#, Some(Some(&context))),
            r#"{"a":1,"_caller_worker_id":"w","_caller_context":{"user":"u1"}}"#
        );
        assert_eq!(
            set(r#"{"_caller_context":"forged","a":1}"#, Some(None)),
            r#"{"a":1,"_caller_worker_id":"w"}"#
        );
        assert_eq!(
            set(r#"{"_caller_context":"kept"}"#, None),
            r#"{"_caller_context":"kept","_caller_worker_id":"w"}"#
        );
        assert_eq!(set("[]", Some(Some(&context))), "[]");
    }

    #[test]
    fn the_worker_id_is_escaped() {
        assert_eq!(
            with_caller_worker_id(raw("{}"), "a\"b").get(),
            r#"{"_caller_worker_id":"a\"b"}"#
        );
    }
}
