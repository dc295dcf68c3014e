//! Running an engine on smol.

use std::io;

pub use iii_core::engine::{
    EngineConfig, EngineStats, FunctionFilter, ListenerPolicy, MetadataMatch, Pattern, RateLimit,
    Rbac, WorkerQuotas, DEFAULT_GUEST_BUILTIN_CALLS_PER_IP,
};
pub use iii_driver::engine::{
    DrainOutcome, EngineExit, EngineHandle, EngineSettings, EngineStopped, ListenerSettings,
    StartError, TlsError, TlsSettings,
};
pub use iii_driver::server::{EngineServer, DEFAULT_ADDR};

use crate::runtime::Smol;

/// Binds `addr` (`host:port`; port 0 picks a free port) and starts an engine on smol's
/// global executor.
pub async fn bind(addr: &str, settings: EngineSettings) -> io::Result<EngineServer> {
    EngineServer::bind(Smol, addr, settings).await
}
