//! The iii documentation's Rust API on smol (see `iii_driver::sdk`): code written for the
//! published `iii-sdk` crate compiles with `iii_sdk` replaced by `iii_smol::sdk`. It
//! tracks **iii-sdk 0.23** (crates.io) for the names below, and keeps the older names
//! the seeds' documentation uses (`III`, `IIIError`, `RegisterFunctionMessage`).
//! Published features outside the iii protocol (OpenTelemetry, HTTP-invoked
//! functions, typed trigger types, streams helpers) are not provided.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iii_smol::sdk::IIIError> {
//! use iii_smol::sdk::{
//!     is_channel_ref, register_worker, IIIClient, InitOptions, RegisterFunction,
//!     RegisterTriggerInput, TriggerRequest, Value,
//! };
//! use serde_json::json;
//!
//! #[derive(serde::Deserialize)]
//! struct Add {
//!     a: i64,
//!     b: i64,
//! }
//!
//! let iii: IIIClient = register_worker("ws://127.0.0.1:49134", InitOptions::default());
//! let add = iii.register_function(
//!     "math::add",
//!     RegisterFunction::new_async(|input: Add| async move {
//!         Ok::<_, iii_smol::sdk::IIIError>(json!({"c": input.a + input.b}))
//!     })
//!     .description("adds two numbers"),
//! );
//! assert!(add.error().is_none());
//! iii.register_function(
//!     "math::double",
//!     RegisterFunction::new(|n: i64| Ok::<_, iii_smol::sdk::IIIError>(n * 2)),
//! );
//! let trigger = iii.register_trigger(RegisterTriggerInput::new(
//!     "http",
//!     "math::add",
//!     json!({"api_path": "/add", "http_method": "POST"}),
//! ))?;
//! let sum: Value = iii.trigger(TriggerRequest::new("math::add", json!({"a": 1, "b": 2}))).await?;
//! let functions = iii.list_functions().await?;
//! assert!(!is_channel_ref(&sum) && !functions.is_empty());
//! trigger.unregister();
//! # Ok(()) }
//! ```
//!
//! Channel ends implement `futures::io`'s `AsyncRead`/`AsyncWrite`, so
//! `futures::io::copy(&mut file, &mut writer)` works on them directly.

pub use iii_driver::sdk::{
    extract_channel_refs, is_channel_ref, Built, ChannelDirection, ChannelItem, Closure,
    FunctionInfo, IIIError, InitOptions, IntoRegisterFunction, RegisterFunctionMessage,
    RegisterTriggerInput, StreamChannelRef, TriggerAction, TriggerRequest, Value,
};

use crate::runtime::Smol;

/// The client `register_worker` returns.
pub type III = iii_driver::sdk::III<Smol>;
/// The client, by its published 0.23 name.
pub type IIIClient = III;
/// A function registration: its handler and listing fields.
pub type RegisterFunction = iii_driver::sdk::RegisterFunction<Smol>;
/// A trigger binding made by [`III::register_trigger`].
pub type Trigger = iii_driver::sdk::Trigger<Smol>;
/// The native worker behind a client ([`III::worker`]).
pub type Worker = crate::worker::Iii;
/// The engine address of a client (reads as a `&str`).
pub type Address = iii_driver::sdk::Address<Smol>;
/// A new channel: both ends and their refs.
pub type Channel = iii_driver::sdk::Channel<Smol>;
/// The writing end of a channel.
pub type ChannelWriter = iii_driver::sdk::ChannelWriter<Smol>;
/// The reading end of a channel.
pub type ChannelReader = iii_driver::sdk::ChannelReader<Smol>;
/// A registered function.
pub type FunctionRef = iii_driver::sdk::FunctionRef<Smol>;

/// Connects a worker to the engine at `address` and returns the client at once (it
/// connects in the background). A worker that cannot start (bad URL, no runtime)
/// reports it from every operation and from [`III::fatal_error`].
pub fn register_worker(address: &str, options: InitOptions) -> III {
    iii_driver::sdk::register_worker(Smol, address, options)
}
