//! The SDK's error type and the conversions from the core's outcomes.

use std::fmt;
use std::time::Duration;

use iii_core::wire::{ErrorBody, Payload};
use iii_core::worker::{
    CallOutcome, ConfigError, EndOutcome, InvokeError, ReadError, RegisterError, Rejection,
    WriteError,
};

/// Everything that can go wrong in the worker SDK.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A wait's deadline passed (the worker did not register with the engine within
    /// `wait_connected`'s timeout, registrations were not confirmed in time).
    #[error("timed out")]
    Timeout,
    /// A call got no result within its deadline ([`Error::is_timeout`] is true for
    /// this and [`Error::Timeout`]).
    #[error("`{function_id}` did not answer within {timeout:?}")]
    CallTimeout {
        /// The function called.
        function_id: String,
        /// The call's deadline.
        timeout: Duration,
    },
    /// The called function (or the engine) answered with an error, e.g.
    /// `function_not_found` or `invocation_failed`.
    #[error("remote error `{}`: {}", .0.code, .0.message)]
    Remote(ErrorBody),
    /// The control connection was lost after the call was sent; the call may or may not
    /// have run.
    #[error("the control connection was lost before the call completed")]
    Disconnected,
    /// The engine rejected a registration: fatally for the worker (e.g.
    /// `WORKER_NAMESPACE_CONFLICT`: it stopped and does not reconnect), or one function
    /// (`FUNCTION_NAMESPACE_CONFLICT`, reported by [`Iii::wait_registered`](super::Iii::wait_registered)).
    #[error("the engine rejected the registration: {} in namespace `{}` (held by `{}`)", .0.code, .0.namespace, .0.owner_worker_id)]
    Rejected(Rejection),
    /// No connection to the engine could be made (and registered) within
    /// `connect_timeout`; the worker keeps trying in the background.
    #[error("the engine at {url} is unreachable: {detail}")]
    Unreachable {
        /// The engine URL.
        url: String,
        /// The last connection error.
        detail: String,
    },
    /// The engine refused this worker's upgrade as unauthorized (HTTP 401) or
    /// forbidden (403): a bad or missing token, an RBAC listener's authentication
    /// function refusing its headers, or a denied address. Reported at once by waits and
    /// calls; the worker keeps retrying in the background (a token fixed at the engine,
    /// or a refusal withdrawn, lets it in).
    #[error("the engine at {url} refused this worker with HTTP {status} (check the token or credentials): {detail}")]
    Unauthorized {
        /// The engine URL.
        url: String,
        /// The HTTP status (401 or 403).
        status: u16,
        /// The handshake error as received.
        detail: String,
    },
    /// The worker cannot run here (e.g. `iii_tokio::worker::connect` outside a tokio
    /// runtime).
    #[error("no async runtime: {0}")]
    NoRuntime(String),
    /// A channel end finished abnormally: aborted by the other side, connection lost,
    /// refused (e.g. 404 for a used or unknown ref), or closed locally.
    #[error("channel {}", ChannelOutcome(.0))]
    Channel(EndOutcome),
    /// The worker was shut down (or its task is gone), or this handle was already closed.
    #[error("the worker or this channel end is closed")]
    Closed,
    /// A registration was refused (empty id, duplicate, unknown id, stopped worker).
    #[error(transparent)]
    Register(#[from] RegisterError),
    /// A call could not be made (empty function id, offline queue full, stopped).
    #[error(transparent)]
    Invoke(#[from] InvokeError),
    /// A writer operation was refused by the core.
    #[error(transparent)]
    Write(#[from] WriteError),
    /// A reader operation was refused by the core (e.g. the ref opens a writer).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The worker configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The engine URL or token cannot be used.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A payload or result could not be serialized or deserialized.
    #[error("JSON error: {0}")]
    Json(String),
}

impl Error {
    /// True for a deadline that passed: [`Error::Timeout`] or [`Error::CallTimeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout | Error::CallTimeout { .. })
    }
}

impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Json(error.to_string())
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::Timeout | Error::CallTimeout { .. } => std::io::ErrorKind::TimedOut,
            Error::Closed => std::io::ErrorKind::NotConnected,
            Error::Channel(EndOutcome::Lost) => std::io::ErrorKind::ConnectionReset,
            Error::Channel(EndOutcome::Aborted { .. }) => std::io::ErrorKind::ConnectionAborted,
            Error::Channel(EndOutcome::Refused { .. }) => std::io::ErrorKind::ConnectionRefused,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// Readable form of an [`EndOutcome`].
struct ChannelOutcome<'a>(&'a EndOutcome);

impl fmt::Display for ChannelOutcome<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            EndOutcome::Clean => write!(f, "ended cleanly"),
            EndOutcome::Aborted { code, reason } => match code {
                Some(code) => write!(f, "aborted with code {} ({reason:?})", code.0),
                None => write!(f, "aborted ({reason:?})"),
            },
            EndOutcome::Lost => write!(f, "connection lost without a close"),
            EndOutcome::Refused {
                status: Some(status),
            } => write!(f, "connection refused with HTTP {status}"),
            EndOutcome::Refused { status: None } => write!(f, "connection could not be opened"),
            EndOutcome::Closed => write!(f, "closed locally (or the worker shut down)"),
        }
    }
}

/// What turns the core's bare outcomes into complete errors: the engine URL, the last
/// connection error and the fatal rejection, as the worker task knows them.
#[derive(Debug, Clone, Default)]
pub(crate) struct ErrorContext {
    pub(crate) url: String,
    pub(crate) last_dial_error: Option<String>,
    /// The HTTP status of the last control dial, when it was refused as unauthorized.
    pub(crate) unauthorized: Option<u16>,
    pub(crate) rejection: Option<Rejection>,
}

impl ErrorContext {
    /// Why the engine cannot be reached: [`Error::Unauthorized`] when it refused the
    /// last upgrade as such, else [`Error::Unreachable`] with the last dial error.
    pub(crate) fn unreachable(&self) -> Error {
        if let (Some(status), Some(detail)) = (self.unauthorized, &self.last_dial_error) {
            return Error::Unauthorized {
                url: self.url.clone(),
                status,
                detail: detail.clone(),
            };
        }
        Error::Unreachable {
            url: self.url.clone(),
            detail: self
                .last_dial_error
                .clone()
                .unwrap_or_else(|| "no connection was registered in time".to_owned()),
        }
    }

    pub(crate) fn rejected(&self) -> Error {
        match &self.rejection {
            Some(rejection) => Error::Rejected(rejection.clone()),
            None => Error::Closed,
        }
    }

    /// A call's outcome as the caller sees it: the raw result (`None` for no result).
    pub(crate) fn call_result(&self, outcome: CallOutcome) -> Result<Option<Payload>, Error> {
        match outcome {
            CallOutcome::Ok(result) => Ok(result),
            CallOutcome::Error(body) => Err(Error::Remote(body)),
            CallOutcome::TimedOut => Err(Error::Timeout),
            CallOutcome::Disconnected => Err(Error::Disconnected),
            CallOutcome::Rejected => Err(self.rejected()),
            CallOutcome::Unreachable => Err(self.unreachable()),
        }
    }

    /// A refused call, completed.
    pub(crate) fn invoke_error(&self, error: InvokeError) -> Error {
        match error {
            InvokeError::Unreachable => self.unreachable(),
            InvokeError::Stopped if self.rejection.is_some() => self.rejected(),
            other => Error::Invoke(other),
        }
    }
}

/// How a reader end's stream finished: only a clean end is a success.
pub(crate) fn reader_end(outcome: EndOutcome) -> Result<(), Error> {
    match outcome {
        EndOutcome::Clean => Ok(()),
        other => Err(Error::Channel(other)),
    }
}

/// What a function handler may fail with: turned into the `error` of the invocation's
/// result. Implemented for [`ErrorBody`] (sent as is), [`Error`] (a remote error is passed
/// through, anything else becomes `invocation_failed`), strings and common error types
/// (all `invocation_failed` with their message).
pub trait IntoErrorBody {
    /// The error to send to the caller.
    fn into_error_body(self) -> ErrorBody;
}

/// The code sent for a handler's failure.
pub const INVOCATION_FAILED: &str = iii_core::wire::codes::INVOCATION_FAILED;

fn failed(message: impl fmt::Display) -> ErrorBody {
    ErrorBody::new(INVOCATION_FAILED, message.to_string())
}

impl IntoErrorBody for ErrorBody {
    fn into_error_body(self) -> ErrorBody {
        self
    }
}

impl IntoErrorBody for Error {
    fn into_error_body(self) -> ErrorBody {
        match self {
            Error::Remote(body) => body,
            other => failed(other),
        }
    }
}

impl IntoErrorBody for String {
    fn into_error_body(self) -> ErrorBody {
        ErrorBody::new(INVOCATION_FAILED, self)
    }
}

impl IntoErrorBody for &str {
    fn into_error_body(self) -> ErrorBody {
        failed(self)
    }
}

impl IntoErrorBody for serde_json::Error {
    fn into_error_body(self) -> ErrorBody {
        failed(self)
    }
}

impl IntoErrorBody for std::io::Error {
    fn into_error_body(self) -> ErrorBody {
        failed(self)
    }
}

impl IntoErrorBody for Box<dyn std::error::Error + Send + Sync> {
    fn into_error_body(self) -> ErrorBody {
        failed(self)
    }
}

impl IntoErrorBody for Box<dyn std::error::Error + Send> {
    fn into_error_body(self) -> ErrorBody {
        failed(self)
    }
}

impl IntoErrorBody for Box<dyn std::error::Error> {
    fn into_error_body(self) -> ErrorBody {
        failed(self)
    }
}

/// The message is the error with its chain of causes (`{:#}`: "outer: inner").
impl IntoErrorBody for anyhow::Error {
    fn into_error_body(self) -> ErrorBody {
        failed(format_args!("{self:#}"))
    }
}

impl IntoErrorBody for std::convert::Infallible {
    fn into_error_body(self) -> ErrorBody {
        match self {}
    }
}
