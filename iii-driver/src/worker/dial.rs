//! Dialing: the engine URL and token from options or the environment, the upgrade
//! request, and the connect-plus-handshake of one WebSocket.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::handshake::client::Request;
use async_tungstenite::tungstenite::http::{header, HeaderName, HeaderValue, Uri};
use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Error as WsError;
use async_tungstenite::WebSocketStream;
use futures_util::future::{self, Either};

pub(crate) use super::tls::tls_config;
use super::tls::TlsConfig;
use super::Error;
use crate::read_batch::ReadBatch;
use crate::runtime::{self, Runtime};
use crate::transport::Transport;

/// The engine URL when neither the options nor `III_URL` give one.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:49134";

/// How long a connect plus WebSocket handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The engine URL: the option, else a non-blank `III_URL`, else [`DEFAULT_URL`].
pub(crate) fn resolve_url(option: Option<&str>, env: Option<&str>) -> String {
    option
        .or(env.filter(|url| !url.trim().is_empty()))
        .unwrap_or(DEFAULT_URL)
        .trim()
        .to_owned()
}

/// The bearer token: the option, else a non-blank `III_TOKEN`. A blank token is none.
pub(crate) fn resolve_token(option: Option<&str>, env: Option<&str>) -> Option<String> {
    option
        .or(env)
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .map(str::to_owned)
}

/// The worker name: the option, else a non-blank `III_WORKER_NAME`, else `iii-rs:<pid>`
/// (with `:<n>` appended for the second and later worker of this process, so two
/// workers of one process do not conflict at the engine).
pub(crate) fn resolve_name(option: Option<&str>, env: Option<&str>) -> String {
    static WORKERS: AtomicU64 = AtomicU64::new(0);
    if let Some(name) = option.or(env).filter(|name| !name.trim().is_empty()) {
        return name.to_owned();
    }
    let pid = std::process::id();
    match WORKERS.fetch_add(1, Ordering::Relaxed) {
        0 => format!("iii-rs:{pid}"),
        n => format!("iii-rs:{pid}:{}", n + 1),
    }
}

/// Where one WebSocket goes and how to ask for it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// The host to connect to (IPv6 without brackets).
    pub(crate) host: String,
    /// The TCP port.
    pub(crate) port: u16,
    /// The upgrade request, with `Authorization` when there is a token.
    pub(crate) request: Request,
}

/// Parses a `ws://` or `wss://` URL and builds its upgrade request, with the bearer
/// `token` and the custom `headers`. (Whether `wss://` can be dialed is decided by
/// [`tls_config`], from the crate's features.)
pub(crate) fn endpoint(
    url: &str,
    token: Option<&str>,
    headers: &[(String, String)],
) -> Result<Endpoint, Error> {
    let uri: Uri = url
        .parse()
        .map_err(|e| Error::InvalidOption(format!("bad engine URL {url:?}: {e}")))?;
    let tls = match uri.scheme_str() {
        Some("ws") => false,
        Some("wss") => true,
        _ => {
            return Err(Error::InvalidOption(format!(
                "{url:?}: the engine URL must start with ws:// or wss://"
            )))
        }
    };
    let host = uri
        .host()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| Error::InvalidOption(format!("{url:?} has no host")))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
    let mut request = uri
        .into_client_request()
        .map_err(|e| Error::InvalidOption(format!("bad engine URL {url:?}: {e}")))?;
    for (name, value) in headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| Error::InvalidOption(format!("{name:?} is not a header name")))?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            Error::InvalidOption(format!("the value of header {name} is not a header value"))
        })?;
        request.headers_mut().append(name, value);
    }
    if let Some(token) = token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| Error::InvalidOption("the token is not a valid header value".into()))?;
        request.headers_mut().insert(header::AUTHORIZATION, value);
    }
    Ok(Endpoint {
        host,
        port,
        request,
    })
}

/// The HTTP status of a refused upgrade, if the error is one.
pub(crate) fn refused_status(error: &WsError) -> Option<u16> {
    match error {
        WsError::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

/// The socket type of a worker's connections.
pub(crate) type Socket<R> = ReadBatch<Transport<<R as Runtime>::Tcp>>;

/// The WebSocket settings of every connection of a worker. Its unsent output is bounded
/// too (two messages plus 1 MiB, pongs included), so an engine that pings without
/// reading cannot make the worker queue pongs without end: the pongs past it are dropped.
pub(crate) fn ws_config(max_message_bytes: usize, read_buffer_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(read_buffer_bytes)
        .max_write_buffer_size(max_message_bytes.saturating_mul(2).saturating_add(1 << 20))
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes))
}

/// Why a dial failed.
#[derive(Debug, Clone)]
pub(crate) struct DialFailure {
    /// The HTTP status of a refused upgrade, if it was one.
    pub(crate) status: Option<u16>,
    /// What went wrong, for the logs and [`Error::Unreachable`].
    pub(crate) detail: String,
    /// Whether retrying soon can help.
    pub(crate) answer: DialAnswer,
}

/// What a failed dial says about the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DialAnswer {
    /// Nothing listens at the address (the TCP connection was refused).
    NothingListens,
    /// The upgrade was refused as unauthorized (HTTP 401 or 403): a bad or missing
    /// token, or an RBAC listener's authentication function said no.
    Unauthorized,
    /// Anything else (timeouts, TLS, other statuses, lost connections).
    Other,
}

impl DialFailure {
    fn new(status: Option<u16>, detail: impl std::fmt::Display) -> Self {
        let answer = match status {
            Some(401 | 403) => DialAnswer::Unauthorized,
            _ => DialAnswer::Other,
        };
        Self {
            status,
            detail: detail.to_string(),
            answer,
        }
    }
}

/// How every connection of a worker dials.
#[derive(Debug, Clone)]
pub(crate) struct DialConfig {
    pub(crate) token: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) ws: WebSocketConfig,
    pub(crate) socket_read_bytes: usize,
    pub(crate) tls: TlsConfig,
}

/// Connects and upgrades, within [`HANDSHAKE_TIMEOUT`]. `control`: the worker task
/// polls this socket itself, often, so its read buffer is kept while idle.
pub(crate) async fn dial<R: Runtime>(
    rt: R,
    url: String,
    config: DialConfig,
    control: bool,
) -> Result<WebSocketStream<Socket<R>>, DialFailure> {
    let endpoint = endpoint(&url, config.token.as_deref(), &config.headers)
        .map_err(|error| DialFailure::new(None, error))?;
    let Endpoint {
        host,
        port,
        request,
    } = endpoint;
    let connecting = rt.connect(host.clone(), port);
    let attempt = async move {
        let tcp = connecting.await.map_err(|error| {
            let refused = error.kind() == std::io::ErrorKind::ConnectionRefused;
            let mut failure =
                DialFailure::new(None, format!("TCP connect to {host}:{port}: {error}"));
            if refused {
                failure.answer = DialAnswer::NothingListens;
            }
            failure
        })?;
        let transport = Transport::start(tcp, &host, &config.tls)
            .await
            .map_err(|detail| DialFailure::new(None, detail))?;
        let mut tcp = ReadBatch::new(transport, config.socket_read_bytes);
        if control {
            tcp = tcp.hold_while_idle();
        }
        async_tungstenite::client_async_with_config(request, tcp, Some(config.ws))
            .await
            .map(|(ws, _response)| ws)
            .map_err(|error| {
                DialFailure::new(
                    refused_status(&error),
                    format!("WebSocket handshake: {error}"),
                )
            })
    };
    let deadline = rt.sleep_until(runtime::now() + HANDSHAKE_TIMEOUT);
    match future::select(std::pin::pin!(attempt), deadline).await {
        Either::Left((result, _)) => result,
        Either::Right(((), _)) => Err(DialFailure::new(
            None,
            format!("no connection within {HANDSHAKE_TIMEOUT:?}"),
        )),
    }
}
