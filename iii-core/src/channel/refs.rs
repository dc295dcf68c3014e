//! Channel refs (`{channel_id, access_key, direction}`), their discovery inside
//! payloads, and the channel URL an end dials.

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Which end of a channel a ref opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// The reading end.
    Read,
    /// The writing end.
    Write,
}

impl Direction {
    /// The wire form (`read` / `write`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Read => "read",
            Direction::Write => "write",
        }
    }

    /// Parses the wire form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "read" => Some(Direction::Read),
            "write" => Some(Direction::Write),
            _ => None,
        }
    }
}

/// A serializable reference to one end of a channel; it travels in call payloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRef {
    /// The channel id.
    pub channel_id: String,
    /// The secret that opens this end.
    pub access_key: String,
    /// Which end this ref opens.
    pub direction: Direction,
}

/// The result of `engine::channels::create`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRefs {
    /// The ref that opens the writing end.
    pub writer: ChannelRef,
    /// The ref that opens the reading end.
    pub reader: ChannelRef,
}

impl ChannelRef {
    /// Reads a ref from a JSON value of the right shape (extra keys allowed).
    pub fn from_value(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        Some(Self {
            channel_id: object.get("channel_id")?.as_str()?.to_owned(),
            access_key: object.get("access_key")?.as_str()?.to_owned(),
            direction: Direction::parse(object.get("direction")?.as_str()?)?,
        })
    }
}

/// Every channel ref inside `value`, with its path (`a.b`, `a[0]`; `""` for the value
/// itself), in document order. Objects of the ref's shape are reported and not searched
/// further.
pub fn extract_channel_refs(value: &Value) -> Vec<(String, ChannelRef)> {
    let mut found = Vec::new();
    walk(value, String::new(), &mut found);
    found
}

fn walk(value: &Value, path: String, found: &mut Vec<(String, ChannelRef)>) {
    if let Some(channel_ref) = ChannelRef::from_value(value) {
        found.push((path, channel_ref));
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(child, child_path, found);
            }
        }
        Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                walk(child, format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

/// Everything outside `A–Z a–z 0–9 - _ . ~` is percent-encoded, like the SDKs do.
const QUERY_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The URL that opens `channel_ref`'s end on the engine at `engine_url`
/// (`ws://host:port`, with or without a trailing `/` or a query of its own).
pub fn channel_url(engine_url: &str, channel_ref: &ChannelRef) -> String {
    let (base, query) = match engine_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (engine_url, None),
    };
    let base = base.trim_end_matches('/');
    let mut url = format!(
        "{base}/ws/channels/{}?",
        utf8_percent_encode(&channel_ref.channel_id, QUERY_COMPONENT)
    );
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        url.push_str(query);
        url.push('&');
    }
    url.push_str("key=");
    url.extend(utf8_percent_encode(
        &channel_ref.access_key,
        QUERY_COMPONENT,
    ));
    url.push_str("&dir=");
    url.push_str(channel_ref.direction.as_str());
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(dir: Direction) -> ChannelRef {
        ChannelRef {
            channel_id: "c1".into(),
            access_key: "k/+ y".into(),
            direction: dir,
        }
    }

    #[test]
    fn url_strips_slash_keeps_query_and_encodes_key() {
        assert_eq!(
            channel_url("ws://h:1/", &r(Direction::Read)),
            "ws://h:1/ws/channels/c1?key=k%2F%2B%20y&dir=read"
        );
        assert_eq!(
            channel_url("ws://h:1?t=1", &r(Direction::Write)),
            "ws://h:1/ws/channels/c1?t=1&key=k%2F%2B%20y&dir=write"
        );
    }

    #[test]
    fn refs_found_at_every_depth_with_paths() {
        let reader = serde_json::to_value(r(Direction::Read)).expect("ser");
        let writer = serde_json::to_value(r(Direction::Write)).expect("ser");
        let value = json!({"label": "x", "reader": reader, "nested": {"list": [1, writer]},
            "bad": {"channel_id": "c", "access_key": "k", "direction": "sideways"}});
        let found = extract_channel_refs(&value);
        let paths: Vec<_> = found.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["nested.list[1]", "reader"]);
        assert_eq!(extract_channel_refs(&reader)[0].0, "");
    }
}
