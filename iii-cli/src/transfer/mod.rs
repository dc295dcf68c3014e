//! `iii send` and `iii recv`: a channel between a local file or standard stream and a
//! function, with what both share: the call that runs beside the stream, how a failed
//! stream and the function's answer combine into one outcome, and the channel's setup.

mod local;
mod messages;
mod progress;
pub(crate) mod recv;
pub(crate) mod send;

use std::future::Future;
use std::time::Duration;

use iii_tokio::worker::{builtins, Channel, Error, Iii};
use serde_json::{Map, Value};

use crate::exit::Failure;
use crate::session::DEFAULT_TIMEOUT;

/// The deadline of a `send`/`recv` call without `--timeout`: none in practice (the call
/// lasts as long as the stream; Ctrl-C ends it).
const NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Creates the channel (`buffer_size` messages at the engine; `None` for its default).
async fn create_channel(iii: &Iii, buffer_size: Option<usize>) -> Result<Channel, Failure> {
    iii.create_channel(buffer_size)
        .await
        .map_err(|error| Failure::call(builtins::CHANNELS_CREATE, DEFAULT_TIMEOUT, error))
}

/// `payload` with the ref added under `field` (checked free by `payload::ref_payload`).
fn payload_with(mut payload: Map<String, Value>, field: &str, channel_ref: Value) -> Value {
    payload.insert(field.to_owned(), channel_ref);
    Value::Object(payload)
}

/// Calls `function` with `payload` until `timeout` (none by default), its errors as
/// [`Failure`]s.
fn call<'a>(
    iii: &'a Iii,
    function: &'a str,
    payload: Value,
    timeout: Option<Duration>,
) -> impl Future<Output = Result<Value, Failure>> + 'a {
    let timeout = timeout.unwrap_or(NO_TIMEOUT);
    async move {
        iii.trigger_with_timeout(function, payload, timeout)
            .await
            .map_err(|error| Failure::call(function, timeout, error))
    }
}

/// The outcome of a channel that failed after `bytes` bytes with `error`: the function's
/// own error if it comes within `grace` (it usually says why, and the channel's failure
/// is added to it), the channel's failure otherwise.
async fn stream_failed<F>(call: F, bytes: u64, error: Error, grace: Duration) -> Failure
where
    F: Future<Output = Result<Value, Failure>>,
{
    match tokio::time::timeout(grace, call).await {
        Ok(Err(Failure::Function { function, body, .. })) => Failure::Function {
            function,
            body,
            stream: Some(error.to_string()),
        },
        _ => Failure::Stream {
            bytes,
            error: Box::new(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use iii_tokio::worker::ErrorBody;

    use super::*;

    fn channel_error() -> Error {
        Error::Closed
    }

    #[tokio::test]
    async fn the_functions_error_explains_a_failed_stream() {
        let call = async {
            Err(Failure::Function {
                function: "f".into(),
                body: ErrorBody::new("invocation_failed", "bad input"),
                stream: None,
            })
        };
        let failure = stream_failed(call, 10, channel_error(), Duration::from_secs(1)).await;
        let text = failure.to_string();
        assert!(text.contains("bad input"), "{text}");
        assert!(text.contains("the channel failed too"), "{text}");
    }

    #[tokio::test]
    async fn without_an_error_in_time_the_stream_failure_stands() {
        let silent = std::future::pending::<Result<Value, Failure>>();
        let failure = stream_failed(silent, 10, channel_error(), Duration::from_millis(10)).await;
        assert!(matches!(failure, Failure::Stream { bytes: 10, .. }));
        let succeeded = async { Ok(Value::Null) };
        let failure = stream_failed(succeeded, 3, channel_error(), Duration::from_secs(1)).await;
        assert!(matches!(failure, Failure::Stream { bytes: 3, .. }));
    }
}
