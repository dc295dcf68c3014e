//! The runtime-agnostic half of the iii adapters.
//!
//! [`iii_core`] decides everything; this crate moves WebSocket messages between sockets
//! and a core machine that one task owns, for both roles:
//!
//! * [`engine`]: accepts TCP connections, answers the HTTP upgrade (refusing bad channel
//!   URLs with 400/404 and missing tokens with 401 **before** upgrading), and runs the
//!   engine task that feeds the core and executes its outputs.
//! * [`worker`]: the worker SDK: connect, reconnect, functions as async closures,
//!   `trigger`, and channel readers/writers with flow control.
//!
//! The runtime adapters (`iii-tokio`, `iii-smol`) implement [`Runtime`] (spawn, timer,
//! TCP) and re-export this API with the runtime's own I/O traits.

#![forbid(unsafe_code)]

mod conn;
pub mod engine;
mod handshake;
mod log_limit;
pub mod memory;
mod metrics;
mod process_metrics;
mod read_batch;
pub mod runtime;
pub mod sdk;
pub mod server;
mod slots;
mod transport;
pub mod worker;
mod write_deadline;

pub use runtime::{BoxFuture, Runtime};

/// Fuzz drivers, only in `cargo fuzz` builds (`--cfg fuzzing`); see FUZZING.md.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::memory::fuzz::upgrade_framing;
}
