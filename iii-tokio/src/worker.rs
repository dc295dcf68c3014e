//! The worker SDK on tokio: connect to an engine, register functions, call functions,
//! and stream through channels.
//!
//! ```no_run
//! # async fn demo() -> Result<(), iii_tokio::worker::Error> {
//! use iii_tokio::worker::{connect, WorkerOptions};
//! use serde_json::{json, Value};
//!
//! let iii = connect(WorkerOptions::default())?; // III_URL or ws://127.0.0.1:49134
//! iii.register_function("math.add", |input: Value| async move {
//!     Ok::<_, iii_tokio::worker::Error>(json!(input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0)))
//! })?;
//! let sum = iii.trigger("math.add", json!({"a": 1, "b": 2})).await?;
//! # Ok(()) }
//! ```
//!
//! Channel ends implement tokio's `AsyncRead`/`AsyncWrite` and `futures::Stream`, with
//! the same flow control as their async methods.

// Everything of the native API (errors, options, the core's settings and outcomes,
// info types); the generic handles are aliased to this runtime below.
pub use iii_driver::worker::*;

use crate::runtime::Tokio;

/// A connected worker (cheap to clone).
pub type Iii = iii_driver::worker::Iii<Tokio>;
/// A channel: both ends and both refs.
pub type Channel = iii_driver::worker::Channel<Tokio>;
/// The writing end of a channel.
pub type ChannelWriter = iii_driver::worker::ChannelWriter<Tokio>;
/// The reading end of a channel.
pub type ChannelReader = iii_driver::worker::ChannelReader<Tokio>;
/// A registered function (`unregister()`).
pub type FunctionRef = iii_driver::worker::FunctionRef<Tokio>;
/// A trigger type this worker provides (`unregister()`).
pub type TriggerTypeRef = iii_driver::worker::TriggerTypeRef<Tokio>;
/// A trigger binding (`unregister()`).
pub type Trigger = iii_driver::worker::Trigger<Tokio>;
/// An `on_functions_available` subscription (`unsubscribe()`).
pub type FunctionsSubscription = iii_driver::worker::FunctionsSubscription<Tokio>;

/// Connects a worker on the current tokio runtime; it reconnects by itself.
pub fn connect(options: WorkerOptions) -> Result<Iii, Error> {
    Iii::connect(Tokio, options)
}

/// Connects a worker to `url` with default options (the documented API's
/// `register_worker` is [`crate::sdk::register_worker`]).
pub fn connect_url(url: &str) -> Result<Iii, Error> {
    connect(WorkerOptions {
        url: Some(url.to_owned()),
        ..WorkerOptions::default()
    })
}
