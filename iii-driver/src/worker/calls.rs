//! Calling functions: plain, typed, with options (timeout, metadata, trace context,
//! queue), and fire-and-forget.

use std::time::Duration;

use futures_channel::oneshot;
use iii_core::wire::control::to_payload;
use iii_core::wire::Payload;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::task::Command;
use super::{Error, Iii, Invocation, TraceContext};
use crate::runtime::Runtime;

/// How to make a call, besides its function and input.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Deadline of the call; `None`: the worker's `invocation_timeout`.
    pub timeout: Option<Duration>,
    /// Per-call metadata for the handler (it reads it from its [`Invocation`]).
    pub metadata: Option<Value>,
    /// W3C trace context to send. Empty fields are filled from the invocation being
    /// handled, when the call is made from inside a function handler.
    pub trace: TraceContext,
    /// Put the call on this named queue (the engine answers with a receipt) instead of
    /// calling the function directly. Needs a queue provider at the engine.
    pub queue: Option<String>,
}

/// A call's result with the trace context that came back with it.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The result; `null` when the function returned none.
    pub value: Value,
    /// The trace context of the result.
    pub trace: TraceContext,
}

impl CallOptions {
    /// The core's options: metadata encoded, missing trace fields from the current
    /// invocation.
    fn into_core(self) -> iii_core::worker::CallOptions {
        let mut trace = self.trace;
        if trace.traceparent.is_none() || trace.baggage.is_none() {
            let current = Invocation::current_trace();
            trace.traceparent = trace.traceparent.or(current.traceparent);
            trace.baggage = trace.baggage.or(current.baggage);
        }
        iii_core::worker::CallOptions {
            timeout: self.timeout,
            metadata: self.metadata.as_ref().map(to_payload),
            trace,
            queue: self.queue,
        }
    }
}

impl<R: Runtime> Iii<R> {
    /// Calls `function_id` with `payload` and waits for its result, at most the default
    /// invocation timeout. `null` or no result reads as `Value::Null`. Cancel safe: a
    /// dropped call is forgotten (its late result is ignored), though it may have run.
    pub async fn trigger(&self, function_id: &str, payload: Value) -> Result<Value, Error> {
        let result = self
            .call(function_id, to_payload(&payload), CallOptions::default())
            .await?;
        parse_result(result.0.as_deref())
    }

    /// [`Iii::trigger`] with its own deadline.
    pub async fn trigger_with_timeout(
        &self,
        function_id: &str,
        payload: Value,
        timeout: Duration,
    ) -> Result<Value, Error> {
        let options = CallOptions {
            timeout: Some(timeout),
            ..CallOptions::default()
        };
        let result = self
            .call(function_id, to_payload(&payload), options)
            .await?;
        parse_result(result.0.as_deref())
    }

    /// [`Iii::trigger`] with options (timeout, metadata, trace context, queue); the
    /// reply carries the result's trace context.
    pub async fn trigger_with(
        &self,
        function_id: &str,
        payload: Value,
        options: CallOptions,
    ) -> Result<Reply, Error> {
        let (result, trace) = self
            .call(function_id, to_payload(&payload), options)
            .await?;
        Ok(Reply {
            value: parse_result(result.as_deref())?,
            trace,
        })
    }

    /// [`Iii::trigger`] with a typed input and output.
    pub async fn trigger_typed<I, O>(&self, function_id: &str, input: &I) -> Result<O, Error>
    where
        I: Serialize + ?Sized,
        O: DeserializeOwned,
    {
        let payload = serde_json::value::to_raw_value(input)?;
        let result = self
            .call(function_id, payload, CallOptions::default())
            .await?;
        parse_result(result.0.as_deref())
    }

    async fn call(
        &self,
        function_id: &str,
        data: Payload,
        options: CallOptions,
    ) -> Result<(Option<Payload>, TraceContext), Error> {
        let mut options = options.into_core();
        let timeout = options.timeout.unwrap_or(self.invocation_timeout);
        options.timeout = Some(timeout);
        let (reply, answer) = oneshot::channel();
        self.send(Command::Invoke {
            function_id: function_id.to_owned(),
            data,
            options,
            reply,
        })?;
        answer
            .await
            .unwrap_or(Err(Error::Closed))
            .map_err(|error| match error {
                Error::Timeout => Error::CallTimeout {
                    function_id: function_id.to_owned(),
                    timeout,
                },
                other => other,
            })
    }

    /// Calls `function_id` fire-and-forget (no result, no error from the function).
    /// Queued while disconnected.
    pub fn trigger_void(&self, function_id: &str, payload: Value) -> Result<(), Error> {
        self.trigger_void_with(function_id, payload, CallOptions::default())
    }

    /// [`Iii::trigger_void`] with metadata and trace context (timeout and queue do not
    /// apply).
    pub fn trigger_void_with(
        &self,
        function_id: &str,
        payload: Value,
        options: CallOptions,
    ) -> Result<(), Error> {
        self.check_running()?;
        if function_id.is_empty() {
            return Err(iii_core::worker::InvokeError::EmptyFunctionId.into());
        }
        self.send(Command::InvokeVoid {
            function_id: function_id.to_owned(),
            data: to_payload(&payload),
            options: options.into_core(),
        })
    }

    pub(crate) fn check_running(&self) -> Result<(), Error> {
        if self.is_stopped() {
            return Err(iii_core::worker::RegisterError::Stopped.into());
        }
        Ok(())
    }
}

/// Parses a call's raw result; no result reads as JSON `null`.
pub(crate) fn parse_result<T: DeserializeOwned>(
    result: Option<&serde_json::value::RawValue>,
) -> Result<T, Error> {
    let text = result.map_or("null", |raw| raw.get());
    Ok(serde_json::from_str(text)?)
}
