//! The iii documentation's Rust API, as a thin facade over [`crate::worker`].
//!
//! Code written for the published `iii_sdk` crate as the documentation shows it (`III`,
//! `IIIError::Handler`, `RegisterFunctionMessage`, `TriggerRequest`,
//! `ChannelReader::new(iii.address(), &ref)`, ...) compiles against
//! `iii_tokio::sdk` (or `iii_smol::sdk`) with only the crate path replaced; the
//! adapters alias these generic types to their runtime. Everything here forwards to the
//! native [`Iii`] API, which stays zero-copy ([`III::worker`] gives
//! it for anything the facade does not cover).

mod channels;
mod published;
mod types;

use std::time::Duration;

pub use serde_json::Value;

pub use channels::{Channel, ChannelReader, ChannelWriter};
pub use published::{
    is_channel_ref, Built, Closure, IntoRegisterFunction, RegisterFunction, RegisterTriggerInput,
    Trigger,
};
pub use types::{IIIError, InitOptions, RegisterFunctionMessage, TriggerAction, TriggerRequest};

pub use crate::worker::{
    extract_channel_refs, ChannelItem, ChannelRef as StreamChannelRef, FunctionInfo,
};
/// Which end of a channel a ref opens (`Read` or `Write`).
pub type ChannelDirection = crate::worker::Direction;

use crate::runtime::Runtime;
use crate::worker::{CallOptions, Error, Iii, WorkerOptions};

/// The engine address of a client, as [`III::address`] gives it: it reads as the URL
/// (`&str` through `Deref`, `Display`) and also carries the worker, so that
/// [`ChannelReader::new`] / [`ChannelWriter::new`] drive their end on it.
pub struct Address<R: Runtime> {
    url: String,
    worker: Result<Iii<R>, Error>,
}

impl<R: Runtime> std::ops::Deref for Address<R> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.url
    }
}

impl<R: Runtime> std::fmt::Display for Address<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl<R: Runtime> std::fmt::Debug for Address<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Address").field(&self.url).finish()
    }
}

impl<R: Runtime> AsRef<str> for Address<R> {
    fn as_ref(&self) -> &str {
        &self.url
    }
}

/// The published 0.23 name of the client ([`III`]).
pub type IIIClient<R> = III<R>;

/// A worker client, as `register_worker` returns it. Cheap to clone.
pub struct III<R: Runtime> {
    address: std::sync::Arc<Address<R>>,
}

impl<R: Runtime> Clone for III<R> {
    fn clone(&self) -> Self {
        Self {
            address: self.address.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for III<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("III")
            .field("address", &self.address.url)
            .finish_non_exhaustive()
    }
}

/// Connects a worker to the engine at `address` on `rt`, like the published
/// `register_worker`: it returns the client at once and connects in the background.
/// If the worker cannot start (an invalid URL or option, or no runtime), every
/// operation of the client fails with that error, also given by [`III::fatal_error`].
pub fn register_worker<R: Runtime>(rt: R, address: &str, options: InitOptions) -> III<R> {
    let InitOptions {
        headers,
        namespace,
        worker_name,
        invocation_timeout_ms,
    } = options;
    let mut options = WorkerOptions {
        url: Some(address.to_owned()),
        name: worker_name,
        headers: headers.into_iter().flatten().collect(),
        ..WorkerOptions::default()
    };
    options.core.identity.namespace = namespace;
    if let Some(ms) = invocation_timeout_ms {
        options.invocation_timeout = Duration::from_millis(ms);
    }
    let worker = Iii::connect(rt, options);
    if let Err(error) = &worker {
        tracing::error!(%error, %address, "the worker could not start");
    }
    III {
        address: std::sync::Arc::new(Address {
            url: address.trim().to_owned(),
            worker,
        }),
    }
}

impl<R: Runtime> III<R> {
    /// The engine address; pass it to [`ChannelReader::new`] / [`ChannelWriter::new`].
    pub fn address(&self) -> &Address<R> {
        &self.address
    }

    /// The native worker (every feature of [`crate::worker::Iii`]).
    pub fn worker(&self) -> Result<&Iii<R>, IIIError> {
        self.address.worker.as_ref().map_err(|e| e.clone().into())
    }

    /// Why the worker could not start, or stopped (fatal rejection), if it did.
    pub fn fatal_error(&self) -> Option<IIIError> {
        match &self.address.worker {
            Err(error) => Some(error.clone().into()),
            Ok(iii) if iii.is_stopped() => Some(Error::Closed.into()),
            Ok(_) => None,
        }
    }

    /// Serves a function. Both documented forms compile:
    /// `register_function("math::add", RegisterFunction::new_async(handler))` (the
    /// published 0.23 documentation) and
    /// `register_function(RegisterFunctionMessage { .. }, |input: Value| async move { .. })`.
    /// Returns the function's handle; a refused registration (empty or duplicate id,
    /// stopped worker) is kept in [`FunctionRef::error`] (and logged); one the engine
    /// refuses later is reported by [`III::wait_registered`].
    pub fn register_function<M>(
        &self,
        function: impl Into<RegisterFunctionMessage>,
        handler: impl IntoRegisterFunction<R, M>,
    ) -> FunctionRef<R> {
        let message = function.into();
        let id = message.id.clone();
        let registration = handler.into_register_function();
        let result = self
            .worker()
            .and_then(|iii| Ok(registration.register(iii, message)?));
        if let Err(error) = &result {
            tracing::error!(%error, function_id = %id, "register_function refused");
        }
        FunctionRef { id, inner: result }
    }

    /// Calls a function: `Ok(result)`, or `Ok(Value::Null)` at once for
    /// [`TriggerAction::Void`]; [`TriggerAction::Enqueue`] answers with the receipt.
    pub async fn trigger(&self, request: impl Into<TriggerRequest>) -> Result<Value, IIIError> {
        let TriggerRequest {
            function_id,
            payload,
            action,
            timeout_ms,
        } = request.into();
        let iii = self.worker()?;
        let mut options = CallOptions {
            timeout: timeout_ms.map(Duration::from_millis),
            ..CallOptions::default()
        };
        match action {
            Some(TriggerAction::Void) => {
                iii.trigger_void_with(&function_id, payload, options)?;
                return Ok(Value::Null);
            }
            Some(TriggerAction::Enqueue { queue }) => options.queue = Some(queue),
            None => {}
        }
        Ok(iii
            .trigger_with(&function_id, payload, options)
            .await?
            .value)
    }

    /// Creates a channel (`buffer_size` in messages; `None` for the engine's default).
    pub async fn create_channel(&self, buffer_size: Option<usize>) -> Result<Channel<R>, IIIError> {
        let channel = self.worker()?.create_channel(buffer_size).await?;
        Ok(Channel::from_native(channel))
    }

    /// Asks the worker to stop, without waiting.
    pub fn shutdown(&self) {
        if let Ok(iii) = self.worker() {
            iii.shutdown_now();
        }
    }

    /// Stops the worker and waits until its connections are closed.
    pub async fn shutdown_async(&self) {
        if let Ok(iii) = self.worker() {
            iii.shutdown().await;
        }
    }
}

/// A registered function (or the reason it was refused).
pub struct FunctionRef<R: Runtime> {
    id: String,
    inner: Result<crate::worker::FunctionRef<R>, IIIError>,
}

impl<R: Runtime> std::fmt::Debug for FunctionRef<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FunctionRef")
            .field("id", &self.id)
            .field("error", &self.inner.as_ref().err())
            .finish()
    }
}

impl<R: Runtime> FunctionRef<R> {
    /// The function id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Why the registration was refused, if it was.
    pub fn error(&self) -> Option<&IIIError> {
        self.inner.as_ref().err()
    }

    /// Removes the function from the engine.
    pub fn unregister(&self) -> Result<(), IIIError> {
        match &self.inner {
            Ok(function) => Ok(function.unregister()?),
            Err(error) => Err(error.clone()),
        }
    }
}
