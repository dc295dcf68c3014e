//! Peers: one long-running worker per SDK, all serving the same functions (INTEROP.md).
//!
//! A [`Peer`] says how to start a worker named `interop-<name>` whose functions are
//! `interop.<name>.*`. Every peer row of the matrix and every per-SDK test goes through
//! [`all`]; adding an SDK is adding one implementation there.

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::setup::{clients, Clients};

/// A running peer. Dropping it stops it.
pub trait RunningPeer: Send {
    /// Stops the peer at once, without letting it close anything (SIGKILL for a
    /// process).
    fn kill(&mut self);
    /// Where its output goes, for failure messages.
    fn log(&self) -> Option<PathBuf>;
}

/// One SDK the harness can run as a peer.
pub trait Peer: Send + Sync {
    /// The default short name (`py023`, `node`, ...): the worker is `interop-<name>`,
    /// its functions `interop.<name>.*`.
    fn name(&self) -> &'static str;
    /// What it is, for reports (`Python iii-sdk 0.25.0`).
    fn label(&self) -> &'static str;
    /// Starts an instance called `name` connected to `url`.
    fn start(&self, url: &str, name: &str) -> std::io::Result<Box<dyn RunningPeer>>;
}

/// A peer process, killed (SIGKILL) and reaped on drop. Its stdin is a pipe the peer
/// watches: when this test process dies for any reason the pipe closes and the peer exits.
pub struct PeerProcess {
    child: Child,
    log: PathBuf,
}

impl RunningPeer for PeerProcess {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn log(&self) -> Option<PathBuf> {
        Some(self.log.clone())
    }
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(
    clients: &Clients,
    command: Command,
    url: &str,
    name: &str,
) -> std::io::Result<Box<dyn RunningPeer>> {
    let (child, log) = spawn_process(clients, command, url, name)?;
    Ok(Box::new(PeerProcess { child, log }))
}

fn spawn_process(
    clients: &Clients,
    mut command: Command,
    url: &str,
    name: &str,
) -> std::io::Result<(Child, PathBuf)> {
    let log = clients
        .logs
        .join(format!("{name}.{}.log", std::process::id()));
    let out = File::create(&log)?;
    let err = out.try_clone()?;
    command
        .env("III_URL", url)
        .env("INTEROP_NAME", name)
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::piped())
        .stdout(out)
        .stderr(err);
    let child = command.spawn()?;
    Ok((child, log))
}

/// A published Python `iii-sdk` run by its own venv's interpreter.
pub struct Python {
    name: &'static str,
    label: &'static str,
    python: fn(&Clients) -> PathBuf,
}

impl Peer for Python {
    fn name(&self) -> &'static str {
        self.name
    }

    fn label(&self) -> &'static str {
        self.label
    }

    fn start(&self, url: &str, name: &str) -> std::io::Result<Box<dyn RunningPeer>> {
        let clients = clients();
        let mut command = Command::new((self.python)(clients));
        command.arg(clients.scripts().join("peer.py"));
        spawn(clients, command, url, name)
    }
}

/// The published npm `iii-sdk`.
pub struct Node;

impl Peer for Node {
    fn name(&self) -> &'static str {
        "node"
    }

    fn label(&self) -> &'static str {
        "Node iii-sdk 0.22.1"
    }

    fn start(&self, url: &str, name: &str) -> std::io::Result<Box<dyn RunningPeer>> {
        let clients = clients();
        let mut command = Command::new("node");
        command
            .arg(clients.scripts().join("peer.mjs"))
            .env("INTEROP_NODE_MODULES", &clients.node_modules);
        spawn(clients, command, url, name)
    }
}

/// The published crates.io `iii-sdk`, built into a peer binary.
pub struct RustSdk;

impl Peer for RustSdk {
    fn name(&self) -> &'static str {
        "rs023"
    }

    fn label(&self) -> &'static str {
        "Rust iii-sdk 0.23.0-rc.4"
    }

    fn start(&self, url: &str, name: &str) -> std::io::Result<Box<dyn RunningPeer>> {
        let clients = clients();
        spawn(clients, Command::new(&clients.rust_peer), url, name)
    }
}

/// Our own worker SDK (`iii-driver`) on tokio or smol: the `interop-peer` binary of this
/// package, which cargo builds before it runs the package's integration tests.
pub struct Ours {
    name: &'static str,
    label: &'static str,
    runtime: &'static str,
}

impl Peer for Ours {
    fn name(&self) -> &'static str {
        self.name
    }

    fn label(&self) -> &'static str {
        self.label
    }

    fn start(&self, url: &str, name: &str) -> std::io::Result<Box<dyn RunningPeer>> {
        // Integration tests run from target/<profile>/deps; the binary is one level up.
        let binary = std::env::current_exe()?
            .parent()
            .and_then(|deps| deps.parent())
            .map(|dir| dir.join("interop-peer"))
            .ok_or_else(|| std::io::Error::other("cannot locate the interop-peer binary"))?;
        let mut command = Command::new(binary);
        command.env("INTEROP_RUNTIME", self.runtime);
        spawn(clients(), command, url, name)
    }
}

/// Our SDK on tokio.
pub static OURS_TOKIO: Ours = Ours {
    name: "tokio",
    label: "iii-rs worker on tokio",
    runtime: "tokio",
};
/// Our SDK on smol.
pub static OURS_SMOL: Ours = Ours {
    name: "smol",
    label: "iii-rs worker on smol",
    runtime: "smol",
};

/// Python `iii-sdk==0.23.0rc4`.
pub static PY023: Python = Python {
    name: "py023",
    label: "Python iii-sdk 0.23.0rc4",
    python: |c| c.python_023.clone(),
};
/// Python `iii-sdk==0.25.0`.
pub static PY025: Python = Python {
    name: "py025",
    label: "Python iii-sdk 0.25.0",
    python: |c| c.python_025.clone(),
};
/// npm `iii-sdk@0.22.1`.
pub static NODE: Node = Node;
/// crates.io `iii-sdk =0.23.0-rc.4`.
pub static RUST023: RustSdk = RustSdk;

/// Every SDK the harness runs, in matrix order: the published ones, then ours.
pub fn all() -> [&'static dyn Peer; 6] {
    [&PY023, &PY025, &NODE, &RUST023, &OURS_TOKIO, &OURS_SMOL]
}

/// The peer called `name` (one of [`all`]'s names, or `browser`). Panics on an unknown
/// name.
pub fn by_name(name: &str) -> &'static dyn Peer {
    all()
        .into_iter()
        .chain([&BROWSER as &dyn Peer])
        .find(|p| p.name() == name)
        .unwrap_or_else(|| panic!("no peer called {name}"))
}

/// Our browser worker (`iii-browser`, compiled to wasm) in headless Chromium:
/// `iii-browser/web/host.mjs` serves `iii-browser/web/interop.html` and opens it. The
/// package is built (and Chromium, playwright-core installed) by `iii-browser/build.sh`,
/// run once per test process. Only the functions the channel cells use are served:
/// `echo`, `fail`, `write`, `read`, `on_fire`, `fired`.
pub struct Browser;

/// The browser peer.
pub static BROWSER: Browser = Browser;

static BROWSER_PACKAGE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

fn browser_package(repo: &std::path::Path) -> std::io::Result<()> {
    let built = BROWSER_PACKAGE.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo.join("iii-browser/build.sh"))
            .output()
            .map_err(|e| format!("cannot run iii-browser/build.sh: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "iii-browser/build.sh failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    built.clone().map_err(std::io::Error::other)
}

/// The browser host process: asked to stop by closing its standard input (it closes
/// Chromium), killed if it has not exited 5 s later.
struct BrowserProcess(PeerProcess);

impl RunningPeer for BrowserProcess {
    fn kill(&mut self) {
        drop(self.0.child.stdin.take());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.0.kill();
    }

    fn log(&self) -> Option<PathBuf> {
        self.0.log()
    }
}

impl Drop for BrowserProcess {
    fn drop(&mut self) {
        RunningPeer::kill(self);
    }
}

impl Peer for Browser {
    fn name(&self) -> &'static str {
        "browser"
    }

    fn label(&self) -> &'static str {
        "iii-rs browser worker (wasm in Chromium)"
    }

    fn start(&self, url: &str, name: &str) -> std::io::Result<Box<dyn RunningPeer>> {
        let clients = clients();
        browser_package(&clients.repo)?;
        let web = clients.repo.join("iii-browser/web");
        let mut command = Command::new("node");
        command
            .arg(web.join("host.mjs"))
            .arg("--root")
            .arg(&web)
            .arg("--open")
            .arg(format!("interop.html?engine={url}&name={name}"));
        let (child, log) = spawn_process(clients, command, url, name)?;
        Ok(Box::new(BrowserProcess(PeerProcess { child, log })))
    }
}
