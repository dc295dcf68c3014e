//! Registering functions, trigger types and triggers, and the handles that unregister
//! them.

use std::any::Any;
use std::future::Future;
use std::sync::Arc;

use futures_channel::oneshot;
use iii_core::wire::control::to_payload;
use iii_core::worker::{FunctionSpec, RegisterError, TriggerSpec, TriggerTypeSpec};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::handlers::{self, TriggerHandler};
use super::task::Command;
use super::{Error, Iii, IntoErrorBody, Invocation};
use crate::runtime::Runtime;

/// What a function is: its id and what listings and other workers see of it. A plain
/// id (`&str` or `String`) converts into one with nothing else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunctionDef {
    /// The function id, e.g. `math::add`; must not be empty.
    pub id: String,
    /// Free text, shown in `engine::functions::list`.
    pub description: Option<String>,
    /// Free metadata (`{"internal": true}` hides the function from listings).
    pub metadata: Option<Value>,
    /// A JSON-Schema-like description of the input.
    pub request_format: Option<Value>,
    /// A JSON-Schema-like description of the output.
    pub response_format: Option<Value>,
}

impl FunctionDef {
    /// A function with only an id.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ..Self::default()
        }
    }

    /// With a description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// With metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// With a request format.
    pub fn request_format(mut self, format: Value) -> Self {
        self.request_format = Some(format);
        self
    }

    /// With a response format.
    pub fn response_format(mut self, format: Value) -> Self {
        self.response_format = Some(format);
        self
    }

    fn spec(&self) -> FunctionSpec {
        FunctionSpec {
            id: self.id.clone(),
            description: self.description.clone(),
            request_format: self.request_format.as_ref().map(to_payload),
            response_format: self.response_format.as_ref().map(to_payload),
            metadata: self.metadata.as_ref().map(to_payload),
        }
    }
}

impl From<&str> for FunctionDef {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl From<String> for FunctionDef {
    fn from(id: String) -> Self {
        Self::new(id)
    }
}

impl From<&String> for FunctionDef {
    fn from(id: &String) -> Self {
        Self::new(id.clone())
    }
}

/// A registered function; [`unregister`](Self::unregister) removes it. Dropping the
/// handle keeps the function registered.
pub struct FunctionRef<R: Runtime> {
    id: String,
    iii: Iii<R>,
}

impl<R: Runtime> FunctionRef<R> {
    /// The function id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Stops serving the function (the engine forgets it).
    pub fn unregister(&self) -> Result<(), Error> {
        self.iii.unregister_function(&self.id)
    }
}

/// A trigger type this worker provides; [`unregister`](Self::unregister) removes it.
pub struct TriggerTypeRef<R: Runtime> {
    id: String,
    iii: Iii<R>,
}

impl<R: Runtime> TriggerTypeRef<R> {
    /// The trigger type id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Binds `function_id` to a trigger of this type.
    pub async fn register_trigger(
        &self,
        function_id: &str,
        config: Value,
    ) -> Result<Trigger<R>, Error> {
        self.iii
            .register_trigger(&self.id, function_id, config)
            .await
    }

    /// Stops providing the trigger type.
    pub fn unregister(&self) -> Result<(), Error> {
        self.iii.unregister_trigger_type(&self.id)
    }
}

/// A trigger binding made by this worker; [`unregister`](Self::unregister) removes it.
pub struct Trigger<R: Runtime> {
    id: String,
    iii: Iii<R>,
}

impl<R: Runtime> Trigger<R> {
    /// The binding id (a UUID).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Removes the binding.
    pub fn unregister(&self) -> Result<(), Error> {
        self.iii.unregister_trigger(&self.id)
    }
}

impl<R: Runtime> Iii<R> {
    /// Serves a function with `handler`: it receives the call's input and its `Ok`
    /// becomes the result, its `Err` an error for the caller ([`IntoErrorBody`]; a plain
    /// message is sent as `invocation_failed`). A panic is reported as
    /// `invocation_failed`. `function` is an id or a [`FunctionDef`] (description,
    /// metadata, formats). Inside the handler, [`Invocation::current`] gives the call's
    /// metadata and trace context.
    pub fn register_function<F, Fut, E>(
        &self,
        function: impl Into<FunctionDef>,
        handler: F,
    ) -> Result<FunctionRef<R>, Error>
    where
        F: Fn(Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        self.register_erased(function.into(), handlers::erase(handler))
    }

    /// [`Iii::register_function`] with a handler that also receives the [`Invocation`]
    /// (id, per-call metadata, trace context).
    pub fn register_function_with_context<F, Fut, E>(
        &self,
        function: impl Into<FunctionDef>,
        handler: F,
    ) -> Result<FunctionRef<R>, Error>
    where
        F: Fn(Value, Invocation) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        self.register_erased(function.into(), handlers::erase_with_context(handler))
    }

    /// [`Iii::register_function`] with a handler that also receives this worker's
    /// handle (one clone per call), to call functions or open channels from inside the
    /// handler without cloning the handle into the closure and again into every call's
    /// future. The registration keeps the worker running like a handle captured by a
    /// handler does (until [`Iii::shutdown`] or the function is unregistered).
    pub fn register_function_with_worker<F, Fut, E>(
        &self,
        function: impl Into<FunctionDef>,
        handler: F,
    ) -> Result<FunctionRef<R>, Error>
    where
        F: Fn(Value, Iii<R>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        let iii = self.clone();
        let handler = move |input: Value| handler(input, iii.clone());
        self.register_erased(function.into(), handlers::erase(handler))
    }

    /// Serves a function with a typed handler: the input is deserialized into `I` (a bad
    /// input answers the caller with `deserialization_error`) and the output serialized.
    /// Fields of type [`ChannelReader`](super::ChannelReader) /
    /// [`ChannelWriter`](super::ChannelWriter) in `I` open the end the caller's ref names
    /// on this worker; for that the registration keeps the worker running (until
    /// [`Iii::shutdown`] or the function is unregistered).
    pub fn register_typed<I, O, F, Fut, E>(
        &self,
        function: impl Into<FunctionDef>,
        handler: F,
    ) -> Result<FunctionRef<R>, Error>
    where
        I: DeserializeOwned + Send + 'static,
        O: Serialize + Send + 'static,
        F: Fn(I) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<O, E>> + Send + 'static,
        E: IntoErrorBody,
    {
        let typed = handlers::erase_typed(handler);
        let worker: Arc<dyn Any + Send + Sync> = Arc::new(self.clone());
        let handler: handlers::Handler = Arc::new(move |input, invocation| {
            super::extract::with_worker(&worker, || typed(input, invocation))
        });
        self.register_erased(function.into(), handler)
    }

    fn register_erased(
        &self,
        function: FunctionDef,
        handler: handlers::Handler,
    ) -> Result<FunctionRef<R>, Error> {
        self.check_running()?;
        if function.id.is_empty() {
            return Err(RegisterError::EmptyField("id").into());
        }
        let mut mirror = self.shared.mirror();
        if mirror.functions.contains(&function.id) {
            return Err(RegisterError::Duplicate(function.id).into());
        }
        mirror.functions.insert(function.id.clone());
        self.send(Command::RegisterFunction(function.spec(), handler))?;
        Ok(FunctionRef {
            id: function.id,
            iii: self.clone(),
        })
    }

    /// Stops serving `id`.
    pub fn unregister_function(&self, id: &str) -> Result<(), Error> {
        self.check_running()?;
        let mut mirror = self.shared.mirror();
        if !mirror.functions.remove(id) {
            return Err(RegisterError::NotFound(id.to_owned()).into());
        }
        self.send(Command::UnregisterFunction(id.to_owned()))
    }

    /// Provides trigger type `id`: the engine sends it the bindings of that type, which
    /// `handler` accepts or refuses.
    pub fn register_trigger_type<H: TriggerHandler>(
        &self,
        id: &str,
        description: &str,
        handler: H,
    ) -> Result<TriggerTypeRef<R>, Error> {
        self.check_running()?;
        if id.is_empty() {
            return Err(RegisterError::EmptyField("id").into());
        }
        let mut mirror = self.shared.mirror();
        if mirror.trigger_types.contains(id) {
            return Err(RegisterError::Duplicate(id.to_owned()).into());
        }
        mirror.trigger_types.insert(id.to_owned());
        let spec = TriggerTypeSpec {
            id: id.to_owned(),
            description: description.to_owned(),
            trigger_request_format: None,
            call_request_format: None,
        };
        self.send(Command::RegisterTriggerType(spec, Arc::new(handler)))?;
        Ok(TriggerTypeRef {
            id: id.to_owned(),
            iii: self.clone(),
        })
    }

    /// Stops providing trigger type `id`.
    pub fn unregister_trigger_type(&self, id: &str) -> Result<(), Error> {
        self.check_running()?;
        let mut mirror = self.shared.mirror();
        if !mirror.trigger_types.remove(id) {
            return Err(RegisterError::NotFound(id.to_owned()).into());
        }
        self.send(Command::UnregisterTriggerType(id.to_owned()))
    }

    /// Binds `function_id` to a trigger of `trigger_type` with `config`. The binding is
    /// replayed on every reconnect. Asynchronous because the worker task mints the id;
    /// a refusal by the provider is logged (`tracing`).
    pub async fn register_trigger(
        &self,
        trigger_type: &str,
        function_id: &str,
        config: Value,
    ) -> Result<Trigger<R>, Error> {
        let spec = TriggerSpec {
            trigger_type: trigger_type.to_owned(),
            function_id: function_id.to_owned(),
            config: to_payload(&config),
            metadata: None,
        };
        let (reply, answer) = oneshot::channel();
        self.send(Command::RegisterTrigger(spec, reply))?;
        let id = answer.await.unwrap_or(Err(Error::Closed))?;
        Ok(Trigger {
            id,
            iii: self.clone(),
        })
    }

    /// Removes a binding made with [`Iii::register_trigger`].
    pub fn unregister_trigger(&self, id: &str) -> Result<(), Error> {
        self.check_running()?;
        let mut mirror = self.shared.mirror();
        if !mirror.triggers.remove(id) {
            return Err(RegisterError::NotFound(id.to_owned()).into());
        }
        self.send(Command::UnregisterTrigger(id.to_owned()))
    }
}

impl<R: Runtime> Clone for FunctionRef<R> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            iii: self.iii.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for FunctionRef<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRef")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Clone for TriggerTypeRef<R> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            iii: self.iii.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for TriggerTypeRef<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerTypeRef")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> Clone for Trigger<R> {
    fn clone(&self) -> Self {
        Self {
            id: self.id.clone(),
            iii: self.iii.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Trigger<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trigger")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
