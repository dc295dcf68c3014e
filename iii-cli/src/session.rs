//! The command's worker: connecting (with a diagnosis when that fails), and shutting
//! down without disturbing the channel ends handed to functions.

use std::time::Duration;

use async_tungstenite::tungstenite::client::IntoClientRequest;
use async_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use async_tungstenite::tungstenite::Error as WsError;
use iii_tokio::worker::{connect, ChannelWriter, Error, Iii, WorkerOptions};
use tokio::time::Instant;

use crate::cli::ConnectionArgs;
use crate::exit::Failure;

/// How long the worker may take to connect before the command looks for the reason
/// itself (the SDK keeps retrying and does not say why it failed).
const DIAGNOSE_AFTER: Duration = Duration::from_secs(1);

/// Deadline of the engine requests the command makes for itself (listings, channel
/// creation) when `--timeout` is not given.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected worker for one command.
pub(crate) struct Session {
    iii: Iii,
    name: String,
    /// Local channel writers whose refs went to a function: dropping one would abort
    /// the channel (the SDK dials an unused writer to abort it), so they live until the
    /// worker is shut down.
    parked: Vec<ChannelWriter>,
}

impl Session {
    /// Connects to the engine named by `args`, or says why it cannot.
    pub(crate) async fn open(args: &ConnectionArgs) -> Result<Session, Failure> {
        let name = format!("iii-cli:{}", std::process::id());
        let options = WorkerOptions {
            url: Some(args.url().to_owned()),
            name: Some(name.clone()),
            token: args.token.clone(),
            invocation_timeout: args.timeout.unwrap_or(DEFAULT_TIMEOUT),
            ..WorkerOptions::default()
        };
        let iii = connect(options).map_err(|error| match error {
            Error::InvalidOption(message) => Failure::Usage(message),
            other => Failure::Usage(other.to_string()),
        })?;
        let session = Session {
            iii,
            name,
            parked: Vec::new(),
        };
        match session.wait(args).await {
            Ok(()) => Ok(session),
            Err(reason) => {
                session.close().await;
                Err(Failure::Connect {
                    url: args.url().to_owned(),
                    reason,
                })
            }
        }
    }

    async fn wait(&self, args: &ConnectionArgs) -> Result<(), String> {
        let deadline = Instant::now() + args.connect_timeout;
        match self
            .iii
            .wait_connected(args.connect_timeout.min(DIAGNOSE_AFTER))
            .await
        {
            Ok(()) => return Ok(()),
            // Diagnosed below with a person's reading of the refusal.
            Err(Error::Timeout | Error::Unreachable { .. } | Error::Unauthorized { .. }) => {}
            Err(Error::Rejected(_)) => return Err("the engine rejected this worker".into()),
            Err(error) => return Err(error.to_string()),
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if let Some(reason) = diagnose(args.url(), token(args), remaining).await {
            return Err(reason);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match self.iii.wait_connected(remaining).await {
            Ok(()) => Ok(()),
            Err(Error::Timeout) => Err(format!(
                "the engine did not register this worker within {}",
                humantime::format_duration(args.connect_timeout)
            )),
            Err(Error::Rejected(_)) => Err("the engine rejected this worker".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// The worker.
    pub(crate) fn iii(&self) -> &Iii {
        &self.iii
    }

    /// The worker name this command announced (`iii-cli:<pid>`).
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Keeps `writer` (whose ref a function uses) until [`Session::close`].
    pub(crate) fn park(&mut self, writer: ChannelWriter) {
        self.parked.push(writer);
    }

    /// Shuts the worker down (open channel ends are closed with 1001, queued messages
    /// are sent first), then lets go of the parked writers.
    pub(crate) async fn close(self) {
        self.iii.shutdown().await;
        drop(self.parked);
    }
}

/// The token the worker sends: `--token` or `III_TOKEN` unless blank (as the SDK reads it).
fn token(args: &ConnectionArgs) -> Option<&str> {
    args.token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Why `url` does not take a worker connection, found with one upgrade of our own; `None`
/// when it does (the engine is merely slow).
async fn diagnose(url: &str, token: Option<&str>, within: Duration) -> Option<String> {
    let mut request = match url.into_client_request() {
        Ok(request) => request,
        Err(error) => return Some(format!("bad URL: {error}")),
    };
    if let Some(token) = token {
        match HeaderValue::from_str(&format!("Bearer {token}")) {
            Ok(value) => {
                request.headers_mut().insert(header::AUTHORIZATION, value);
            }
            Err(_) => return Some("the token is not a valid header value".into()),
        }
    }
    let attempt = async_tungstenite::tokio::connect_async(request);
    match tokio::time::timeout(within, attempt).await {
        Err(_) => Some(format!(
            "no answer within {}",
            humantime::format_duration(within)
        )),
        Ok(Ok((mut ws, _))) => {
            let _ = ws.close(None).await;
            None
        }
        Ok(Err(WsError::Http(response))) => Some(refusal(response.status(), token.is_some())),
        Ok(Err(WsError::Io(error))) => Some(match error.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                format!("{error} (is the engine running?)")
            }
            _ => error.to_string(),
        }),
        Ok(Err(error)) => Some(error.to_string()),
    }
}

/// A person's reading of a refused upgrade.
fn refusal(status: StatusCode, sent_token: bool) -> String {
    let hint = match (status.as_u16(), sent_token) {
        (401, false) => ": the engine requires a token (--token or III_TOKEN)",
        (401, true) => ": the engine refused the token",
        (403, _) => ": forbidden (a foreign Origin or a denied address)",
        (503, _) => ": the engine is at its connection limit or shutting down",
        _ => "",
    };
    format!(
        "HTTP {} {}{hint}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_explain_themselves() {
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, false),
            "HTTP 401 Unauthorized: the engine requires a token (--token or III_TOKEN)"
        );
        assert_eq!(
            refusal(StatusCode::UNAUTHORIZED, true),
            "HTTP 401 Unauthorized: the engine refused the token"
        );
        assert_eq!(refusal(StatusCode::NOT_FOUND, false), "HTTP 404 Not Found");
    }
}
