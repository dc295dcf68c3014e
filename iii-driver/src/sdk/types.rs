//! The documentation's value types: the error, the options, registration and call
//! requests.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::worker::{Error, ErrorBody, FunctionDef, IntoErrorBody, INVOCATION_FAILED};

/// Errors of the documented API. `Handler` is what function handlers return for their
/// own failures; the native error is kept whole in `Sdk`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IIIError {
    /// A handler's own failure (sent to the caller as `invocation_failed`).
    #[error("handler error: {0}")]
    Handler(String),
    /// The called function (or the engine) answered with an error.
    #[error("remote error ({code}): {message}")]
    Remote {
        /// The error code, e.g. `function_not_found`.
        code: String,
        /// The message.
        message: String,
        /// The remote stack trace, if any.
        stacktrace: Option<String>,
    },
    /// No result within the deadline.
    #[error("invocation timed out")]
    Timeout,
    /// An I/O error of the application's (e.g. a file read in a handler), kept as its
    /// kind and message (the type is `Clone`).
    #[error("I/O error: {message}")]
    Io {
        /// The error's kind.
        kind: std::io::ErrorKind,
        /// Its message.
        message: String,
    },
    /// Anything else, as the native API reports it.
    #[error(transparent)]
    Sdk(Error),
}

impl From<std::io::Error> for IIIError {
    fn from(error: std::io::Error) -> Self {
        IIIError::Io {
            kind: error.kind(),
            message: error.to_string(),
        }
    }
}

impl From<IIIError> for std::io::Error {
    fn from(error: IIIError) -> Self {
        match error {
            IIIError::Io { kind, message } => std::io::Error::new(kind, message),
            IIIError::Sdk(error) => error.into(),
            IIIError::Timeout => std::io::Error::new(std::io::ErrorKind::TimedOut, error),
            other => std::io::Error::other(other),
        }
    }
}

impl From<Error> for IIIError {
    fn from(error: Error) -> Self {
        match error {
            Error::Remote(body) => IIIError::Remote {
                code: body.code,
                message: body.message,
                stacktrace: body.stacktrace,
            },
            // The published type's unit variant (the native error names the function).
            Error::Timeout | Error::CallTimeout { .. } => IIIError::Timeout,
            other => IIIError::Sdk(other),
        }
    }
}

impl From<serde_json::Error> for IIIError {
    fn from(error: serde_json::Error) -> Self {
        IIIError::Sdk(error.into())
    }
}

impl From<String> for IIIError {
    fn from(message: String) -> Self {
        IIIError::Handler(message)
    }
}

impl From<&str> for IIIError {
    fn from(message: &str) -> Self {
        IIIError::Handler(message.to_owned())
    }
}

impl IntoErrorBody for IIIError {
    fn into_error_body(self) -> ErrorBody {
        match self {
            IIIError::Handler(message) => ErrorBody::new(INVOCATION_FAILED, message),
            IIIError::Remote {
                code,
                message,
                stacktrace,
            } => ErrorBody {
                code,
                message,
                stacktrace,
            },
            IIIError::Timeout => ErrorBody::new(INVOCATION_FAILED, "invocation timed out"),
            IIIError::Io { message, .. } => ErrorBody::new(INVOCATION_FAILED, message),
            IIIError::Sdk(error) => error.into_error_body(),
        }
    }
}

/// Options of `register_worker`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// Extra HTTP headers of the upgrade requests.
    pub headers: Option<BTreeMap<String, String>>,
    /// The worker's namespace (`None`: the engine's default).
    pub namespace: Option<String>,
    /// The worker name (`None`: `III_WORKER_NAME`, else `iii-rs:<pid>`).
    pub worker_name: Option<String>,
    /// Default deadline of `trigger`, in milliseconds (`None`: 30 000).
    pub invocation_timeout_ms: Option<u64>,
}

/// A function to register: its id and what listings show of it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RegisterFunctionMessage {
    /// The function id (`::` for namespacing, e.g. `files::process`).
    pub id: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Schema of the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_format: Option<Value>,
    /// Schema of the output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    /// Free metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl RegisterFunctionMessage {
    /// A function with only an id.
    pub fn with_id(id: String) -> Self {
        Self {
            id,
            ..Self::default()
        }
    }

    /// With a description.
    pub fn with_description(mut self, description: String) -> Self {
        self.description = Some(description);
        self
    }

    pub(crate) fn into_def(self) -> FunctionDef {
        FunctionDef {
            id: self.id,
            description: self.description,
            metadata: self.metadata,
            request_format: self.request_format,
            response_format: self.response_format,
        }
    }
}

/// How a call is routed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TriggerAction {
    /// Through a named queue (the engine answers with a receipt).
    Enqueue {
        /// The queue.
        queue: String,
    },
    /// Fire and forget: no result.
    Void,
}

/// A call: the function, its input, and how to route it.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRequest {
    /// The function to call.
    pub function_id: String,
    /// Its input.
    pub payload: Value,
    /// `None` for request/response.
    pub action: Option<TriggerAction>,
    /// Deadline in milliseconds (`None`: the worker's default).
    pub timeout_ms: Option<u64>,
}

impl TriggerRequest {
    /// A request/response call of `function_id` with `payload`.
    pub fn new(function_id: impl Into<String>, payload: Value) -> Self {
        Self {
            function_id: function_id.into(),
            payload,
            action: None,
            timeout_ms: None,
        }
    }
}
