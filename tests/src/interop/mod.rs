//! The interop harness: the published iii SDKs (installed from their registries) talking
//! to our engine, unchanged. See INTEROP.md at the repository root.
//!
//! One [`Harness`] per test process: a tokio runtime of its own, our engine on
//! `127.0.0.1:0` in it, a raw driver connection ([`control::Driver`]) and at most one
//! peer process per SDK, started on first use and shared by every test of the binary.

pub mod bytes;
pub mod checks;
pub mod control;
pub mod peer;
pub mod rbac;
pub mod setup;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use iii_tokio::engine::{EngineServer, EngineSettings};
use serde_json::json;

use control::Driver;
use peer::{Peer, RunningPeer};

/// How long a peer may take from spawn to serving its functions.
pub const PEER_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How starting a shared peer went (its log, or why it failed); set once per peer.
type StartOutcome = Arc<OnceLock<Result<PathBuf, String>>>;

/// Our engine, the driver and the shared peers of one test process.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    engine: EngineServer,
    driver: Driver,
    started: Mutex<BTreeMap<String, StartOutcome>>,
    running: Mutex<Vec<Box<dyn RunningPeer>>>,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();

/// The process's harness (installs the clients and starts the engine on first use).
pub fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let clients = setup::clients();
        eprintln!("interop set-up: {:.1} s", clients.setup_secs);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let (engine, driver) = runtime.block_on(async {
            // The browser peer's page is served on 127.0.0.1 at a free port.
            let mut settings = EngineSettings::default();
            settings.core.allowed_origins = vec!["http://127.0.0.1:*".to_owned()];
            let engine = iii_tokio::bind("127.0.0.1:0", settings)
                .await
                .expect("bind our engine on 127.0.0.1:0");
            let driver = Driver::connect(&engine.url()).await.expect("driver");
            (engine, driver)
        });
        Harness {
            runtime,
            engine,
            driver,
            started: Mutex::default(),
            running: Mutex::default(),
        }
    })
}

impl Harness {
    /// Our engine's URL (`ws://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.engine.url()
    }

    /// The driver connection.
    pub fn driver(&self) -> &Driver {
        &self.driver
    }

    /// Runs `future` on the harness runtime. Not to be called from inside it.
    pub fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Makes sure the shared peers called `names` run and serve their functions.
    /// Panics (naming the peer and its log) when one cannot be started.
    pub fn ensure(&self, names: &[&str]) {
        for name in names {
            let cell = self
                .started
                .lock()
                .expect("started lock")
                .entry((*name).to_owned())
                .or_default()
                .clone();
            let outcome = cell.get_or_init(|| {
                let peer = peer::by_name(name);
                let (running, log) = self.start(peer, name)?;
                self.running.lock().expect("running lock").push(running);
                Ok(log)
            });
            if let Err(e) = outcome {
                panic!("peer {name} is not available: {e}");
            }
        }
    }

    /// The last lines of the logs of the shared peers called `names` (those started),
    /// for failure messages.
    pub fn peer_logs(&self, names: &[&str]) -> String {
        let started = self.started.lock().expect("started lock");
        let mut text = String::new();
        let names: std::collections::BTreeSet<&str> = names.iter().copied().collect();
        for name in names {
            if let Some(Ok(log)) = started.get(name).and_then(|outcome| outcome.get()) {
                text.push_str(&format!("--- log {}\n{}\n", log.display(), log_tail(log)));
            }
        }
        text
    }

    /// Starts a dedicated instance of `peer` called `name` (for tests that kill it) and
    /// waits until it serves its functions. Not to be called from inside the runtime.
    pub fn start(
        &self,
        peer: &dyn Peer,
        name: &str,
    ) -> Result<(Box<dyn RunningPeer>, PathBuf), String> {
        self.block_on(self.start_async(peer, name))
    }

    /// [`Self::start`] from inside the runtime.
    pub async fn start_async(
        &self,
        peer: &dyn Peer,
        name: &str,
    ) -> Result<(Box<dyn RunningPeer>, PathBuf), String> {
        let started = Instant::now();
        let running = peer
            .start(&self.url(), name)
            .map_err(|e| format!("could not start {} ({name}): {e}", peer.label()))?;
        let log = running.log().unwrap_or_default();
        match wait_ready(&self.driver, name).await {
            Ok(()) => {
                eprintln!(
                    "peer {name} ({}) ready in {:.1} s",
                    peer.label(),
                    started.elapsed().as_secs_f64()
                );
                Ok((running, log))
            }
            Err(e) => Err(format!(
                "{} ({name}) did not come up: {e}\n--- log {}\n{}",
                peer.label(),
                log.display(),
                log_tail(&log)
            )),
        }
    }
}

/// One cell of the channel matrix: `writer` streams to `reader` through our engine
/// ([`checks::stream_cell`]); the peers are started on first use.
pub fn matrix_cell(writer: &str, reader: &str, number: usize) {
    let test = format!("matrix cell {writer} => {reader}");
    if !crate::toolchain::run_or_skip(&test, crate::toolchain::published_sdks()) {
        return;
    }
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser = [writer, reader].contains(&"browser");
    if browser && !crate::toolchain::run_or_skip(&test, crate::toolchain::browser(&repo)) {
        return;
    }
    let h = harness();
    h.ensure(&[writer, reader]);
    h.block_on(checks::stream_cell(
        peer::by_name(writer),
        peer::by_name(reader),
        number,
    ));
}

/// Declares one `#[test]` per matrix cell, `name: "writer" => "reader", number;`, each
/// running [`matrix_cell`].
#[macro_export]
macro_rules! matrix_cells {
    ($($name:ident: $writer:literal => $reader:literal, $n:literal;)*) => {
        $(
            #[test]
            fn $name() {
                $crate::interop::matrix_cell($writer, $reader, $n);
            }
        )*
    };
}

/// The last lines of a peer log, for failure messages.
pub fn log_tail(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

async fn wait_ready(driver: &Driver, name: &str) -> Result<(), String> {
    // `fired` is registered last by every peer.
    let function = format!("interop.{name}.fired");
    let deadline = Instant::now() + PEER_READY_TIMEOUT;
    loop {
        let last = match driver
            .call(&function, json!({}), Duration::from_secs(5))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) => e.to_string(),
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "{function} not callable within {PEER_READY_TIMEOUT:?} (last: {last})"
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
