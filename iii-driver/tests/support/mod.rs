//! Test support: the real engine server on smol.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use iii_core::engine::EngineConfig;
use iii_driver::engine::EngineSettings;
use iii_driver::server::EngineServer;

pub use iii_smol::Smol;

/// The real engine server on an ephemeral loopback port.
pub struct TestEngine {
    pub url: String,
    server: EngineServer,
}

impl TestEngine {
    /// Starts an engine with `config`.
    pub async fn start(config: EngineConfig) -> TestEngine {
        let settings = EngineSettings {
            core: config,
            ..EngineSettings::default()
        };
        let server = EngineServer::bind(Smol, "127.0.0.1:0", settings)
            .await
            .unwrap();
        TestEngine {
            url: server.url(),
            server,
        }
    }

    /// Live channels at the engine.
    pub async fn channels(&self) -> usize {
        self.server.handle().stats().await.unwrap().channels
    }
}
