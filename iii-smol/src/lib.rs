//! The iii engine and worker on smol.
//!
//! The same API as `iii-tokio`, over smol's sockets, timers and executor. Everything that
//! decides anything lives in `iii-core`; the loops that drive it live in `iii-driver`.

#![forbid(unsafe_code)]

pub mod engine;
pub mod runtime;
pub mod sdk;
pub mod worker;

pub use engine::{bind, EngineServer, EngineSettings};
pub use runtime::Smol;
