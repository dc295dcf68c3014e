//! The iii documentation's Rust API on smol (see `iii_driver::sdk`): code written
//! for `iii_sdk` as the documentation shows it compiles with `iii_sdk` replaced by
//! `iii_smol::sdk`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iii_smol::sdk::IIIError> {
//! use iii_smol::sdk::{register_worker, InitOptions, TriggerRequest};
//! use serde_json::json;
//!
//! let iii = register_worker("ws://127.0.0.1:49134", InitOptions::default());
//! let result = iii.trigger(TriggerRequest::new("math::add", json!({"a": 1, "b": 2}))).await?;
//! # Ok(()) }
//! ```

pub use iii_driver::sdk::{
    extract_channel_refs, ChannelDirection, IIIError, InitOptions, RegisterFunctionMessage,
    StreamChannelRef, TriggerAction, TriggerRequest,
};

use crate::runtime::Smol;

/// The client `register_worker` returns.
pub type III = iii_driver::sdk::III<Smol>;
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
