//! The names of the published `iii-sdk` 0.23 documentation that the facade's first
//! version lacked: `RegisterFunction` (a handler with its listing fields, registered as
//! `register_function(id, RegisterFunction::new_async(..))`), `RegisterTriggerInput` /
//! `register_trigger`, `is_channel_ref`, and `AsyncRead`/`AsyncWrite` on the channel
//! ends.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use futures_io::{AsyncRead, AsyncWrite};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{ChannelReader, ChannelWriter, IIIError, RegisterFunctionMessage, III};
use crate::runtime::Runtime;
use crate::worker::{self, ChannelRef, Error, FunctionDef, Iii, IntoErrorBody};

/// True when `value` is a channel ref (an object with `channel_id`, `access_key` and a
/// `direction` of `read` or `write`; other keys allowed).
pub fn is_channel_ref(value: &Value) -> bool {
    ChannelRef::from_value(value).is_some()
}

type Register<R> =
    Box<dyn FnOnce(&Iii<R>, FunctionDef) -> Result<worker::FunctionRef<R>, Error> + Send>;

/// A function's handler and what listings show of it, as the published documentation
/// registers it: `iii.register_function("math::add", RegisterFunction::new_async(handler))`.
pub struct RegisterFunction<R: Runtime> {
    message: RegisterFunctionMessage,
    register: Register<R>,
}

impl<R: Runtime> std::fmt::Debug for RegisterFunction<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterFunction")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> RegisterFunction<R> {
    /// An async handler with a typed input `I` (deserialized from the call's data; a bad
    /// input answers `deserialization_error`) and output `O`.
    pub fn new_async<I, O, F, Fut, E>(handler: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: IntoErrorBody + 'static,
    {
        Self {
            message: RegisterFunctionMessage::default(),
            register: Box::new(move |iii, def| iii.register_typed(def, handler)),
        }
    }

    /// A synchronous handler with a typed input and output.
    pub fn new<I, O, F, E>(handler: F) -> Self
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Result<O, E> + Send + Sync + 'static,
        E: IntoErrorBody + Send + 'static,
    {
        let handler = Arc::new(handler);
        Self::new_async(move |input: I| std::future::ready(handler(input)))
    }

    /// With a description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.message.description = Some(description.into());
        self
    }

    /// With metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.message.metadata = Some(metadata);
        self
    }

    /// With the input's schema.
    pub fn request_format(mut self, schema: Value) -> Self {
        self.message.request_format = Some(schema);
        self
    }

    /// With the output's schema.
    pub fn response_format(mut self, schema: Value) -> Self {
        self.message.response_format = Some(schema);
        self
    }

    /// An untyped handler, as the seeds' documentation writes them.
    fn untyped<F, Fut>(handler: F) -> Self
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, IIIError>> + Send + 'static,
    {
        Self {
            message: RegisterFunctionMessage::default(),
            register: Box::new(move |iii, def| iii.register_function(def, handler)),
        }
    }

    /// Registers on `iii` under `message`'s id; the fields set on this registration win
    /// over `message`'s.
    pub(super) fn register(
        self,
        iii: &Iii<R>,
        message: RegisterFunctionMessage,
    ) -> Result<worker::FunctionRef<R>, Error> {
        let own = self.message;
        let message = RegisterFunctionMessage {
            id: message.id,
            description: own.description.or(message.description),
            request_format: own.request_format.or(message.request_format),
            response_format: own.response_format.or(message.response_format),
            metadata: own.metadata.or(message.metadata),
        };
        (self.register)(iii, message.into_def())
    }
}

/// What [`III::register_function`] takes as its handler: a [`RegisterFunction`] (the
/// published documentation's form) or an async closure of `Value` (the seeds' form).
/// `Marker` only tells the two implementations apart.
pub trait IntoRegisterFunction<R: Runtime, Marker> {
    /// The registration.
    fn into_register_function(self) -> RegisterFunction<R>;
}

/// Marks [`RegisterFunction`]'s own implementation of [`IntoRegisterFunction`].
#[derive(Debug)]
pub enum Built {}

/// Marks the closures' implementation of [`IntoRegisterFunction`].
#[derive(Debug)]
pub enum Closure {}

impl<R: Runtime> IntoRegisterFunction<R, Built> for RegisterFunction<R> {
    fn into_register_function(self) -> RegisterFunction<R> {
        self
    }
}

impl<R, F, Fut> IntoRegisterFunction<R, Closure> for F
where
    R: Runtime,
    F: Fn(Value) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Value, IIIError>> + Send + 'static,
{
    fn into_register_function(self) -> RegisterFunction<R> {
        RegisterFunction::untyped(self)
    }
}

impl From<&str> for RegisterFunctionMessage {
    fn from(id: &str) -> Self {
        Self::with_id(id.to_owned())
    }
}

impl From<String> for RegisterFunctionMessage {
    fn from(id: String) -> Self {
        Self::with_id(id)
    }
}

impl<R: Runtime> RegisterFunction<R> {}

/// A trigger binding to make: its type, the function it fires, its configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterTriggerInput {
    /// The trigger type (e.g. `http`, `cron`, or one a worker provides).
    pub trigger_type: String,
    /// The function the trigger fires.
    pub function_id: String,
    /// The type-specific configuration.
    pub config: Value,
}

impl RegisterTriggerInput {
    /// A binding of `function_id` to a trigger of `trigger_type`.
    pub fn new(
        trigger_type: impl Into<String>,
        function_id: impl Into<String>,
        config: Value,
    ) -> Self {
        Self {
            trigger_type: trigger_type.into(),
            function_id: function_id.into(),
            config,
        }
    }
}

/// Where a binding made by [`III::register_trigger`] stands.
enum Binding<R: Runtime> {
    /// The worker task has not minted its id yet.
    Pending,
    /// Bound.
    Bound(worker::Trigger<R>),
    /// Unregistered (before or after it was bound), or refused.
    Over(Option<IIIError>),
}

/// A trigger binding (`unregister()`).
pub struct Trigger<R: Runtime> {
    state: Arc<Mutex<Binding<R>>>,
}

impl<R: Runtime> std::fmt::Debug for Trigger<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Trigger<R> {
    /// The binding id, once the worker has made it.
    pub fn id(&self) -> Option<String> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            Binding::Bound(trigger) => Some(trigger.id().to_owned()),
            _ => None,
        }
    }

    /// Why the binding could not be made, if it could not.
    pub fn error(&self) -> Option<IIIError> {
        match &*self.state.lock().unwrap_or_else(PoisonError::into_inner) {
            Binding::Over(error) => error.clone(),
            _ => None,
        }
    }

    /// Removes the binding (at once, or as soon as it is made).
    pub fn unregister(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Binding::Bound(trigger) = &*state {
            if let Err(error) = trigger.unregister() {
                tracing::debug!(%error, "trigger already gone");
            }
        }
        if !matches!(&*state, Binding::Over(Some(_))) {
            *state = Binding::Over(None);
        }
    }
}

impl<R: Runtime> III<R> {
    /// Binds a function to a trigger, like the published `register_trigger`: returns at
    /// once (the worker makes the binding in the background and replays it on every
    /// reconnect); a refusal is kept in [`Trigger::error`].
    pub fn register_trigger(&self, input: RegisterTriggerInput) -> Result<Trigger<R>, IIIError> {
        let iii = self.worker()?.clone();
        let state = Arc::new(Mutex::new(Binding::Pending));
        let shared = state.clone();
        let rt = iii.runtime().clone();
        rt.spawn(Box::pin(async move {
            let RegisterTriggerInput {
                trigger_type,
                function_id,
                config,
            } = input;
            let result = iii
                .register_trigger(&trigger_type, &function_id, config)
                .await;
            let mut state = shared.lock().unwrap_or_else(PoisonError::into_inner);
            match (result, &*state) {
                (Ok(trigger), Binding::Pending) => *state = Binding::Bound(trigger),
                // Unregistered while it was being made.
                (Ok(trigger), _) => {
                    let _ = trigger.unregister();
                }
                (Err(error), _) => {
                    tracing::warn!(%error, %trigger_type, %function_id, "register_trigger refused");
                    *state = Binding::Over(Some(error.into()));
                }
            }
        }));
        Ok(Trigger { state })
    }

    /// Every function registered at the engine.
    pub async fn list_functions(&self) -> Result<Vec<worker::FunctionInfo>, IIIError> {
        Ok(self.worker()?.list_functions().await?)
    }

    /// Waits until the engine has applied every registration made so far; a refused
    /// function (e.g. its id is served by another worker) is reported here.
    pub async fn wait_registered(&self, timeout: std::time::Duration) -> Result<(), IIIError> {
        Ok(self.worker()?.wait_registered(timeout).await?)
    }
}

/// A reader in a `RegisterFunction` handler's typed input opens the end the caller's
/// ref names (see the native `ChannelReader`'s `Deserialize`).
impl<'de, R: Runtime> serde::Deserialize<'de> for ChannelReader<R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let native = worker::ChannelReader::<R>::deserialize(deserializer)?;
        Ok(Self {
            inner: Ok(futures_util::lock::Mutex::new(native)),
        })
    }
}

/// A writer in a `RegisterFunction` handler's typed input opens the end the caller's
/// ref names.
impl<'de, R: Runtime> serde::Deserialize<'de> for ChannelWriter<R> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let native = worker::ChannelWriter::<R>::deserialize(deserializer)?;
        Ok(Self { inner: Ok(native) })
    }
}

fn unusable(error: &IIIError) -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, error.to_string())
}

impl<R: Runtime> AsyncWrite for ChannelWriter<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Ok(end) => Pin::new(end).poll_write(cx, buf),
            Err(error) => Poll::Ready(Err(unusable(error))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Ok(end) => Pin::new(end).poll_flush(cx),
            Err(error) => Poll::Ready(Err(unusable(error))),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Ok(end) => Pin::new(end).poll_close(cx),
            Err(error) => Poll::Ready(Err(unusable(error))),
        }
    }
}

impl<R: Runtime> AsyncRead for ChannelReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Ok(end) => Pin::new(end.get_mut()).poll_read(cx, buf),
            Err(error) => Poll::Ready(Err(unusable(error))),
        }
    }
}

#[cfg(feature = "tokio")]
crate::worker::tokio_io::tokio_write_by_futures_io!(ChannelWriter);

#[cfg(feature = "tokio")]
impl<R: Runtime> tokio::io::AsyncRead for ChannelReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Ok(end) => tokio::io::AsyncRead::poll_read(Pin::new(end.get_mut()), cx, buf),
            Err(error) => Poll::Ready(Err(unusable(error))),
        }
    }
}
