//! Validation of a WebSocket upgrade request before the engine answers it.
//!
//! The adapter hands what it read of the request ([`UpgradeRequest`]: target, the
//! `Authorization` and `Origin` headers) to [`crate::engine::Engine::accept`]; this
//! module decides the route.

use crate::channel::refs::Direction;

/// What the engine needs of an HTTP upgrade request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpgradeRequest<'a> {
    /// The request target: path and query.
    pub target: &'a str,
    /// The `Authorization` header, if present.
    pub authorization: Option<&'a str>,
    /// The `Origin` header, if present (browsers always send it; other clients do not).
    pub origin: Option<&'a str>,
    /// The listener it arrived on (0 is the main one; see
    /// [`crate::engine::EngineConfig::listeners`]).
    pub listener: usize,
    /// The client's address, when known.
    pub peer: Option<std::net::IpAddr>,
    /// Every header (name, value), for an authentication function.
    pub headers: &'a [(String, String)],
}

impl<'a> UpgradeRequest<'a> {
    /// A request for `target` with no headers of interest.
    pub fn to(target: &'a str) -> Self {
        Self {
            target,
            ..Self::default()
        }
    }

    /// The same request with an `Authorization` header.
    pub fn with_authorization(self, authorization: Option<&'a str>) -> Self {
        Self {
            authorization,
            ..self
        }
    }

    /// The same request with an `Origin` header.
    pub fn with_origin(self, origin: Option<&'a str>) -> Self {
        Self { origin, ..self }
    }

    /// The same request, arrived on `listener` from `peer` with `headers`.
    pub fn on_listener(
        self,
        listener: usize,
        peer: Option<std::net::IpAddr>,
        headers: &'a [(String, String)],
    ) -> Self {
        Self {
            listener,
            peer,
            headers,
            ..self
        }
    }
}

/// Where an upgrade request is going.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/` (any query): a worker's control connection.
    Control,
    /// `/otel`: telemetry, accepted and discarded.
    Telemetry,
    /// `/ws/channels/{id}?key=…&dir=…`: one end of a data channel.
    Channel {
        /// The channel id from the path.
        channel_id: String,
        /// The `key` query parameter.
        key: String,
        /// The `dir` query parameter.
        direction: Direction,
    },
}

/// Why an upgrade is refused, with the HTTP status to answer before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// 400: a channel URL without `key` or with a missing or invalid `dir`.
    #[error("400 Bad Request: channel URL needs key=… and dir=read|write")]
    BadRequest,
    /// 401: the engine has a token and the request did not present it.
    #[error("401 Unauthorized: missing or wrong bearer token")]
    Unauthorized,
    /// 403: the request comes from a web page whose origin is not allowed.
    #[error("403 Forbidden: origin not allowed")]
    Forbidden,
    /// 404: an unknown path, or a channel that does not exist, whose key is wrong for
    /// that end, or whose end was already used. Deliberately uninformative.
    #[error("404 Not Found")]
    NotFound,
    /// 503: the engine is at its configured connection limit.
    #[error("503 Service Unavailable: connection limit reached")]
    Overloaded,
    /// 503: the engine is not serving (it is stopping, or its task has ended).
    #[error("503 Service Unavailable: the engine is not serving")]
    Unavailable,
}

impl Rejection {
    /// The HTTP status code.
    pub fn status(self) -> u16 {
        match self {
            Rejection::BadRequest => 400,
            Rejection::Unauthorized => 401,
            Rejection::Forbidden => 403,
            Rejection::NotFound => 404,
            Rejection::Overloaded | Rejection::Unavailable => 503,
        }
    }

    /// Why, in a few words, for logs.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::BadRequest => "bad channel URL",
            Rejection::Unauthorized => "missing or wrong token",
            Rejection::Forbidden => "origin not allowed",
            Rejection::NotFound => "unknown path, channel or key",
            Rejection::Overloaded => "connection limit reached",
            Rejection::Unavailable => "engine not serving",
        }
    }

    /// A short body for the HTTP answer.
    pub fn body(self) -> &'static str {
        match self {
            Rejection::BadRequest => "Bad Request",
            Rejection::Unauthorized => "Unauthorized",
            Rejection::Forbidden => "Forbidden",
            Rejection::NotFound => "Channel not found",
            Rejection::Overloaded | Rejection::Unavailable => "Service Unavailable",
        }
    }
}

/// Parses a request target such as `/ws/channels/abc?key=k&dir=read`.
pub fn parse_target(target: &str) -> Result<Route, Rejection> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, query),
        None => (target, ""),
    };
    match path {
        "/" | "" => return Ok(Route::Control),
        "/otel" => return Ok(Route::Telemetry),
        _ => {}
    }
    let encoded_id = path
        .strip_prefix("/ws/channels/")
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or(Rejection::NotFound)?;
    // The SDKs percent-encode the id (as `channel_url` does); an id that is not UTF-8
    // once decoded cannot name a channel.
    let channel_id = percent_encoding::percent_decode_str(encoded_id)
        .decode_utf8()
        .map_err(|_| Rejection::NotFound)?;
    // The last `key` and `dir` count: the SDKs append theirs to the engine URL's own
    // query, which may hold a credential of the same name (RBAC listeners).
    let mut key = None;
    let mut direction = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "key" => key = Some(value.into_owned()),
            "dir" => direction = Some(Direction::parse(&value)),
            _ => {}
        }
    }
    match (key, direction) {
        (Some(key), Some(Some(direction))) => Ok(Route::Channel {
            channel_id: channel_id.into_owned(),
            key,
            direction,
        }),
        _ => Err(Rejection::BadRequest),
    }
}

/// The address a client is counted under by the per-address limits: an IPv4 address as
/// it is (an IPv4-mapped IPv6 address as its IPv4 address), an IPv6 address by its /64
/// network, since one IPv6 client commonly holds a whole /64 and could otherwise take a
/// fresh address for every connection.
pub fn address_key(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(prefix.into())
            }
        },
    }
}

/// Extracts the token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(parse_target("/"), Ok(Route::Control));
        assert_eq!(parse_target("/?a=b"), Ok(Route::Control));
        assert_eq!(parse_target("/otel"), Ok(Route::Telemetry));
        assert_eq!(parse_target("/nope"), Err(Rejection::NotFound));
        assert_eq!(parse_target("/ws/channels/"), Err(Rejection::NotFound));
        assert_eq!(
            parse_target("/ws/channels/a/b?key=k&dir=read"),
            Err(Rejection::NotFound)
        );
        assert_eq!(
            parse_target("/ws/channels/c?x=1&key=k%2Fz&dir=write"),
            Ok(Route::Channel {
                channel_id: "c".into(),
                key: "k/z".into(),
                direction: Direction::Write
            })
        );
        assert_eq!(
            parse_target("/ws/channels/c?key=k"),
            Err(Rejection::BadRequest)
        );
        assert_eq!(
            parse_target("/ws/channels/c?dir=read"),
            Err(Rejection::BadRequest)
        );
        assert_eq!(
            parse_target("/ws/channels/c?key=k&dir=up"),
            Err(Rejection::BadRequest)
        );
        assert_eq!(Rejection::NotFound.status(), 404);
    }

    #[test]
    fn the_last_key_and_dir_count() {
        // An RBAC credential named `key` in the engine URL's query comes first; the
        // SDK's own `key` and `dir` follow it.
        assert_eq!(
            parse_target("/ws/channels/c?key=credential&dir=up&key=k&dir=read"),
            Ok(Route::Channel {
                channel_id: "c".into(),
                key: "k".into(),
                direction: Direction::Read
            })
        );
        assert_eq!(
            parse_target("/ws/channels/c?key=k&dir=read&dir=up"),
            Err(Rejection::BadRequest)
        );
    }

    #[test]
    fn bearer() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn clients_are_counted_by_ipv4_address_or_ipv6_network() {
        use std::net::IpAddr;
        let ip = |s: &str| s.parse::<IpAddr>().expect("an address");
        assert_eq!(address_key(ip("127.0.0.2")), ip("127.0.0.2"));
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(
            address_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            address_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            address_key(ip("2001:db8:1:2::7"))
        );
        assert_ne!(address_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
    }
}
