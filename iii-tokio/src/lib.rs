//! The iii engine and worker on tokio.
//!
//! * [`engine::EngineServer`] serves the iii protocol on a TCP listener; the `iii-engine`
//!   binary wraps it with a command line.
//! * [`worker`]: the worker SDK (connect, functions, `trigger`, channels).
//!
//! Everything that decides anything lives in `iii-core`; the loops that drive it live in
//! `iii-driver` and are shared with `iii-smol`. This crate only supplies tokio's sockets,
//! timers and spawning.

#![forbid(unsafe_code)]

pub mod engine;
pub mod runtime;
pub mod sdk;
pub mod worker;

pub use engine::{bind, EngineServer, EngineSettings};
pub use runtime::Tokio;
