//! What the application plugs in: function handlers (untyped and typed) and trigger
//! type providers.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures_util::FutureExt;
use iii_core::wire::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::error::{IntoErrorBody, INVOCATION_FAILED};
use super::Invocation;
use crate::runtime::BoxFuture;

/// The code sent when a typed handler's input does not deserialize.
pub const DESERIALIZATION_ERROR: &str = iii_core::wire::codes::DESERIALIZATION_ERROR;
/// The code sent when a typed handler's output does not serialize.
pub const SERIALIZATION_ERROR: &str = iii_core::wire::codes::SERIALIZATION_ERROR;

/// A type-erased function handler, as the worker task stores it.
pub(crate) type Handler =
    Arc<dyn Fn(Value, Invocation) -> BoxFuture<'static, Result<Value, ErrorBody>> + Send + Sync>;

/// Erases an untyped handler.
pub(crate) fn erase<F, Fut, E>(handler: F) -> Handler
where
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, E>> + Send + 'static,
    E: IntoErrorBody,
{
    Arc::new(move |input, _| {
        let future = handler(input);
        Box::pin(async move { future.await.map_err(IntoErrorBody::into_error_body) })
    })
}

/// Erases a handler that takes the invocation too.
pub(crate) fn erase_with_context<F, Fut, E>(handler: F) -> Handler
where
    F: Fn(Value, Invocation) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, E>> + Send + 'static,
    E: IntoErrorBody,
{
    Arc::new(move |input, invocation| {
        let future = handler(input, invocation);
        Box::pin(async move { future.await.map_err(IntoErrorBody::into_error_body) })
    })
}

/// Erases a typed handler: the input is deserialized into `I` (a failure answers the
/// caller with [`DESERIALIZATION_ERROR`]) and the output serialized from `O`.
pub(crate) fn erase_typed<I, O, F, Fut, E>(handler: F) -> Handler
where
    I: DeserializeOwned + Send + 'static,
    O: Serialize + Send + 'static,
    F: Fn(I) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<O, E>> + Send + 'static,
    E: IntoErrorBody,
{
    Arc::new(move |input, _| {
        let future = serde_json::from_value::<I>(input)
            .map(&handler)
            .map_err(|e| ErrorBody::new(DESERIALIZATION_ERROR, e.to_string()));
        Box::pin(async move {
            let output = future?.await.map_err(IntoErrorBody::into_error_body)?;
            serde_json::to_value(output)
                .map_err(|e| ErrorBody::new(SERIALIZATION_ERROR, e.to_string()))
        })
    })
}

/// Runs a handler on one input; a panic becomes an `invocation_failed` error carrying
/// the panic's message.
pub(crate) async fn run_handler(
    handler: Handler,
    input: Value,
    invocation: Invocation,
) -> Result<Value, ErrorBody> {
    let function_id = invocation.function_id.clone();
    let future = match std::panic::catch_unwind(AssertUnwindSafe(|| handler(input, invocation))) {
        Ok(future) => future,
        Err(panic) => return Err(panicked(&function_id, panic.as_ref())),
    };
    match AssertUnwindSafe(future).catch_unwind().await {
        Ok(result) => result,
        Err(panic) => Err(panicked(&function_id, panic.as_ref())),
    }
}

/// The error a panicking handler answers with: the panic's message when it has one
/// (`panic!("...")` with a literal or a formatted message).
fn panicked(function_id: &str, panic: &(dyn std::any::Any + Send)) -> ErrorBody {
    let message = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str));
    let text = match message {
        Some(message) => format!("the handler of `{function_id}` panicked: {message}"),
        None => format!("the handler of `{function_id}` panicked"),
    };
    ErrorBody::new(INVOCATION_FAILED, text)
}

/// A trigger binding the engine asks this worker to serve (as the provider of its
/// trigger type), or to drop.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRequest {
    /// The binding id.
    pub id: String,
    /// The trigger type.
    pub trigger_type: String,
    /// The function the trigger fires (empty when the engine did not say, on removal of
    /// a binding this worker never saw).
    pub function_id: String,
    /// The type-specific configuration (`null` when unknown).
    pub config: Value,
    /// Metadata to deliver with every fire.
    pub metadata: Option<Value>,
}

/// The provider of a trigger type: it binds and unbinds triggers of that type.
///
/// The methods return boxed futures so the trait stays object-safe; write them as
/// `Box::pin(async move { .. })`.
pub trait TriggerHandler: Send + Sync + 'static {
    /// Binds a trigger; `Ok(())` accepts it, `Err` refuses it (the originator sees the
    /// error).
    fn register(&self, request: TriggerRequest) -> BoxFuture<'static, Result<(), ErrorBody>>;

    /// Drops a binding. The result is only logged: the engine expects no answer.
    fn unregister(&self, request: TriggerRequest) -> BoxFuture<'static, Result<(), ErrorBody>>;
}
