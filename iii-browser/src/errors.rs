//! What a failed promise carries. Every rejection of the JavaScript API is an `Error`
//! named `IIIError` with a `kind` (one of [`ErrorKind`]'s names) and, where they apply,
//! the remote error's `code`, a channel's WebSocket `closeCode` and `reason`. This
//! module builds that description from the core's outcomes; the wasm side turns it into
//! the JavaScript object.

use iii_core::wire::ErrorBody;
use iii_core::worker::{
    CallOutcome, EndOutcome, InvokeError, ReadError, RegisterError, WriteError, WriteFailure,
};

use crate::discovery::DiscoveryError;
use crate::options::OptionsError;
use crate::requests::RequestError;

/// The `kind` of an `IIIError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `"timeout"`: no result before the deadline.
    Timeout,
    /// `"remote"`: the function (or the engine) answered with an error; see `code`.
    Remote,
    /// `"disconnected"`: the connection to the engine was lost after the call was sent.
    Disconnected,
    /// `"rejected"`: the engine refused this worker (e.g. its name is taken); it stopped.
    Rejected,
    /// `"unreachable"`: the engine could not be reached within the connect timeout; the
    /// call was not sent (the worker keeps trying to connect).
    Unreachable,
    /// `"channel"`: a channel end failed (aborted by the other side, lost, refused).
    Channel,
    /// `"closed"`: the worker was shut down, or the channel end was closed here.
    Closed,
    /// `"invalid"`: a bad argument (or a duplicate or unknown registration).
    Invalid,
}

impl ErrorKind {
    /// The JavaScript name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Remote => "remote",
            ErrorKind::Disconnected => "disconnected",
            ErrorKind::Rejected => "rejected",
            ErrorKind::Unreachable => "unreachable",
            ErrorKind::Channel => "channel",
            ErrorKind::Closed => "closed",
            ErrorKind::Invalid => "invalid",
        }
    }
}

/// Everything an `IIIError` carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorInfo {
    /// Its kind.
    pub kind: ErrorKind,
    /// The `message`.
    pub message: String,
    /// A remote error's code (e.g. `function_not_found`, `invocation_failed`).
    pub code: Option<String>,
    /// A remote error's stack trace, when the failing side sent one.
    pub stacktrace: Option<String>,
    /// The WebSocket close code that ended a channel end.
    pub close_code: Option<u16>,
    /// The close reason that came with it.
    pub reason: Option<String>,
}

impl ErrorInfo {
    /// An error of `kind` with `message` and nothing else.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            stacktrace: None,
            close_code: None,
            reason: None,
        }
    }

    /// A remote error.
    pub fn remote(body: ErrorBody) -> Self {
        Self {
            code: Some(body.code.clone()),
            stacktrace: body.stacktrace.clone(),
            ..Self::new(
                ErrorKind::Remote,
                format!("remote error `{}`: {}", body.code, body.message),
            )
        }
    }

    /// How a call failed; `None` for success.
    pub fn from_call(outcome: &CallOutcome) -> Option<Self> {
        Some(match outcome {
            CallOutcome::Ok(_) => return None,
            CallOutcome::Error(body) => Self::remote(body.clone()),
            CallOutcome::TimedOut => Self::new(ErrorKind::Timeout, "no result before the timeout"),
            CallOutcome::Disconnected => Self::new(
                ErrorKind::Disconnected,
                "the connection to the engine was lost before the call completed",
            ),
            CallOutcome::Rejected => {
                Self::new(ErrorKind::Rejected, "the engine rejected this worker")
            }
            CallOutcome::Unreachable => Self::new(
                ErrorKind::Unreachable,
                "the engine could not be reached within the connect timeout",
            ),
        })
    }

    /// How a channel end failed; `None` for a clean end of stream.
    pub fn from_end(outcome: &EndOutcome) -> Option<Self> {
        Some(match outcome {
            EndOutcome::Clean => return None,
            EndOutcome::Aborted { code, reason } => Self {
                close_code: code.map(|code| code.0),
                reason: Some(reason.clone()),
                ..Self::new(
                    ErrorKind::Channel,
                    match code {
                        Some(code) => format!("channel aborted with code {} ({reason:?})", code.0),
                        None => format!("channel aborted ({reason:?})"),
                    },
                )
            },
            EndOutcome::Lost => Self::new(
                ErrorKind::Channel,
                "channel connection lost without a close",
            ),
            EndOutcome::Refused { status } => Self::new(
                ErrorKind::Channel,
                match status {
                    Some(status) => format!("channel refused with HTTP {status}"),
                    // The browser hides the status of a refused upgrade.
                    None => "channel connection refused (an unknown, used or expired ref)".into(),
                },
            ),
            EndOutcome::Closed => Self::new(
                ErrorKind::Closed,
                "the channel end was closed here (or the worker shut down)",
            ),
        })
    }

    /// How a writer request failed.
    pub fn from_write(failure: &WriteFailure) -> Self {
        match failure {
            WriteFailure::Ended(outcome) => Self::from_end(outcome)
                .unwrap_or_else(|| Self::new(ErrorKind::Closed, "the channel end is over")),
            WriteFailure::Refused(WriteError::Stopped) => {
                Self::new(ErrorKind::Closed, "the worker has stopped")
            }
            WriteFailure::Refused(error) => Self::new(ErrorKind::Invalid, error.to_string()),
        }
    }

    /// A refused registration.
    pub fn from_register(error: &RegisterError) -> Self {
        let kind = match error {
            RegisterError::Stopped => ErrorKind::Closed,
            _ => ErrorKind::Invalid,
        };
        Self::new(kind, error.to_string())
    }

    /// A call that could not be made.
    pub fn from_invoke(error: &InvokeError) -> Self {
        let kind = match error {
            InvokeError::Stopped => ErrorKind::Closed,
            _ => ErrorKind::Invalid,
        };
        Self::new(kind, error.to_string())
    }

    /// A reader that could not start.
    pub fn from_read(error: &ReadError) -> Self {
        let kind = match error {
            ReadError::Stopped => ErrorKind::Closed,
            _ => ErrorKind::Invalid,
        };
        Self::new(kind, error.to_string())
    }
}

impl From<OptionsError> for ErrorInfo {
    fn from(error: OptionsError) -> Self {
        Self::new(ErrorKind::Invalid, error.to_string())
    }
}

impl From<DiscoveryError> for ErrorInfo {
    fn from(error: DiscoveryError) -> Self {
        Self::new(ErrorKind::Remote, error.to_string())
    }
}

impl From<RequestError> for ErrorInfo {
    fn from(error: RequestError) -> Self {
        Self::new(ErrorKind::Invalid, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iii_core::CloseCode;

    #[test]
    fn only_a_clean_end_and_a_result_are_successes() {
        assert_eq!(ErrorInfo::from_end(&EndOutcome::Clean), None);
        assert_eq!(ErrorInfo::from_call(&CallOutcome::Ok(None)), None);
        let aborted = EndOutcome::Aborted {
            code: Some(CloseCode::INTERNAL),
            reason: "writer lost".into(),
        };
        let error = ErrorInfo::from_end(&aborted).expect("an error");
        assert_eq!(error.kind, ErrorKind::Channel);
        assert_eq!(error.close_code, Some(1011));
        assert_eq!(error.reason.as_deref(), Some("writer lost"));
        let lost = ErrorInfo::from_end(&EndOutcome::Lost).expect("an error");
        assert_eq!(lost.kind.as_str(), "channel");
    }

    #[test]
    fn remote_errors_keep_their_code() {
        let body = ErrorBody::new("function_not_found", "Function not found");
        let error = ErrorInfo::from_call(&CallOutcome::Error(body)).expect("an error");
        assert_eq!(error.kind, ErrorKind::Remote);
        assert_eq!(error.code.as_deref(), Some("function_not_found"));
        let timeout = ErrorInfo::from_call(&CallOutcome::TimedOut).expect("an error");
        assert_eq!(timeout.kind.as_str(), "timeout");
    }

    #[test]
    fn write_failures_name_the_outcome() {
        let closed = ErrorInfo::from_write(&WriteFailure::Refused(WriteError::Stopped));
        assert_eq!(closed.kind, ErrorKind::Closed);
        let refused = EndOutcome::Refused { status: None };
        let error = ErrorInfo::from_write(&WriteFailure::Ended(refused));
        assert_eq!(error.kind, ErrorKind::Channel);
    }
}
