//! Running an engine on tokio.

use std::io;

pub use iii_core::engine::{
    EngineConfig, EngineStats, FunctionFilter, ListenerPolicy, MetadataMatch, Pattern, RateLimit,
    Rbac, WorkerQuotas, DEFAULT_GUEST_BUILTIN_CALLS_PER_IP,
};
pub use iii_driver::engine::{
    DrainOutcome, EngineExit, EngineHandle, EngineSettings, EngineStopped, ListenerSettings,
    StartError, TlsError, TlsSettings,
};
pub use iii_driver::server::DEFAULT_ADDR;

use crate::runtime::Tokio;

/// An engine serving one TCP listener on tokio (see [`iii_driver::server::EngineServer`]).
pub type EngineServer = iii_driver::server::EngineServer;

/// Binds `addr` (`host:port`; port 0 picks a free port) and starts an engine on the
/// current tokio runtime.
pub async fn bind(addr: &str, settings: EngineSettings) -> io::Result<EngineServer> {
    EngineServer::bind(Tokio, addr, settings).await
}
