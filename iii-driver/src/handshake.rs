//! The server side of the WebSocket upgrade, by hand, so that the engine can refuse a
//! request with the right HTTP status *before* upgrading it.

use async_tungstenite::tungstenite::handshake::derive_accept_key;
use futures_io::{AsyncRead, AsyncWrite};
use futures_util::{AsyncReadExt, AsyncWriteExt};

/// What the engine needs from an upgrade request.
#[derive(Debug)]
pub(crate) struct UpgradeRequest {
    /// Path and query.
    pub(crate) target: String,
    /// The `Authorization` header, if any.
    pub(crate) authorization: Option<String>,
    /// The `Origin` header, if any (browsers send it; other clients do not).
    pub(crate) origin: Option<String>,
    /// Every header with a UTF-8 value (names lowercased), for an RBAC listener's
    /// authentication function.
    pub(crate) headers: Vec<(String, String)>,
    /// `Sec-WebSocket-Key`.
    key: String,
    /// Bytes read past the request head (a client that did not wait for the 101).
    pub(crate) leftover: Vec<u8>,
}

/// A plain HTTP request for one of the engine's operational endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `GET /metrics`: Prometheus exposition.
    Metrics,
    /// `GET /healthz`: 200 while serving, 503 otherwise.
    Health,
}

/// A plain (not upgrading) request for an [`Endpoint`].
#[derive(Debug)]
pub(crate) struct PlainRequest {
    pub(crate) endpoint: Endpoint,
    /// The `Authorization` header, if any.
    pub(crate) authorization: Option<String>,
    /// The `Origin` header, if any.
    pub(crate) origin: Option<String>,
}

/// What a connection asked for.
#[derive(Debug)]
pub(crate) enum Request {
    /// A WebSocket upgrade.
    Upgrade(UpgradeRequest),
    /// An operational endpoint.
    Plain(PlainRequest),
}

/// A request that cannot be upgraded, with the status to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: u16,
    pub(crate) reason: &'static str,
    pub(crate) body: &'static str,
}

impl Refusal {
    const fn new(status: u16, reason: &'static str, body: &'static str) -> Self {
        Self {
            status,
            reason,
            body,
        }
    }
}

const HEAD_TOO_LARGE: Refusal = Refusal::new(
    431,
    "Request Header Fields Too Large",
    "request head too large",
);
const MALFORMED: Refusal = Refusal::new(400, "Bad Request", "malformed HTTP request");
const NOT_GET: Refusal = Refusal::new(405, "Method Not Allowed", "WebSocket upgrades use GET");
const NOT_UPGRADE: Refusal = Refusal::new(426, "Upgrade Required", "WebSocket upgrade required");
const BAD_VERSION: Refusal = Refusal::new(426, "Upgrade Required", "WebSocket version 13 required");
/// The answer to an upgrade the engine cannot take now.
pub(crate) const OVERLOADED: Refusal =
    Refusal::new(503, "Service Unavailable", "Service Unavailable");

/// Why reading a request head ended without a request.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The socket failed: answer nothing.
    Io(std::io::Error),
    /// The peer closed its side before a whole head arrived: answer nothing.
    Closed,
    /// Answer with this refusal.
    Refuse(Refusal),
}

fn header_has_token(value: &[u8], token: &str) -> bool {
    std::str::from_utf8(value).is_ok_and(|v| {
        v.split(',')
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    })
}

/// Reads and validates an upgrade request head of at most `max_head` bytes.
pub(crate) async fn read_request<S>(stream: &mut S, max_head: usize) -> Result<Request, HeadError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(HeadError::Io)?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => return validate(&request, buf[len..].to_vec()),
            Ok(httparse::Status::Partial) if buf.len() < max_head => continue,
            Ok(httparse::Status::Partial) => return Err(HeadError::Refuse(HEAD_TOO_LARGE)),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Refuse(HEAD_TOO_LARGE)),
            Err(_) => return Err(HeadError::Refuse(MALFORMED)),
        }
    }
}

fn validate(request: &httparse::Request<'_, '_>, leftover: Vec<u8>) -> Result<Request, HeadError> {
    let refuse = |r| Err(HeadError::Refuse(r));
    if request.method != Some("GET") {
        return refuse(NOT_GET);
    }
    let target = request.path.unwrap_or("/").to_owned();
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    let text = |name: &str| {
        header(name)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    };
    let upgrade = header("upgrade").is_some_and(|v| header_has_token(v, "websocket"));
    let connection = header("connection").is_some_and(|v| header_has_token(v, "upgrade"));
    if !upgrade {
        let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
        let endpoint = match path {
            "/metrics" => Some(Endpoint::Metrics),
            "/healthz" => Some(Endpoint::Health),
            _ => None,
        };
        if let Some(endpoint) = endpoint {
            return Ok(Request::Plain(PlainRequest {
                endpoint,
                authorization: text("authorization"),
                origin: text("origin"),
            }));
        }
    }
    if !upgrade || !connection {
        return refuse(NOT_UPGRADE);
    }
    if header("sec-websocket-version") != Some(b"13".as_slice()) {
        return refuse(BAD_VERSION);
    }
    let Some(key) = header("sec-websocket-key").and_then(|v| std::str::from_utf8(v).ok()) else {
        return refuse(MALFORMED);
    };
    let headers = request
        .headers
        .iter()
        .filter_map(|h| {
            let value = std::str::from_utf8(h.value).ok()?;
            Some((h.name.to_ascii_lowercase(), value.to_owned()))
        })
        .collect();
    Ok(Request::Upgrade(UpgradeRequest {
        target,
        authorization: text("authorization"),
        origin: text("origin"),
        headers,
        key: key.trim().to_owned(),
        leftover,
    }))
}

/// Answers a plain request with `status` and a body of `content_type`, then ends the
/// exchange.
pub(crate) async fn respond<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: (u16, &str),
    content_type: &str,
    body: &str,
) {
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        status.0,
        status.1,
        body.len(),
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
}

/// Answers with `refusal` (plain text) and ends the exchange.
pub(crate) async fn refuse<S: AsyncWrite + Unpin>(stream: &mut S, refusal: Refusal) {
    let response = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n{}\r\n{}",
        refusal.status,
        refusal.reason,
        refusal.body.len(),
        if refusal.status == 426 { "Sec-WebSocket-Version: 13\r\n" } else { "" },
        refusal.body
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.flush().await;
    let _ = stream.close().await;
}

/// Answers `101 Switching Protocols` for `request`.
pub(crate) async fn switch<S: AsyncWrite + Unpin>(
    stream: &mut S,
    request: &UpgradeRequest,
) -> std::io::Result<()> {
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nx-iii-capabilities: tcp-nodelay\r\n\r\n",
        derive_accept_key(request.key.as_bytes())
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// The refusal for a core routing decision.
pub(crate) fn refusal_for(rejection: iii_core::upgrade::Rejection) -> Refusal {
    use iii_core::upgrade::Rejection;
    match rejection {
        Rejection::BadRequest => Refusal::new(400, "Bad Request", "Bad Request"),
        Rejection::Unauthorized => Refusal::new(401, "Unauthorized", "Unauthorized"),
        Rejection::Forbidden => Refusal::new(403, "Forbidden", "Forbidden"),
        Rejection::NotFound => Refusal::new(404, "Not Found", "Channel not found"),
        Rejection::Overloaded | Rejection::Unavailable => OVERLOADED,
    }
}
