//! The engine under test: started in-process, spawned as a child `iii-engine`, or an
//! external URL (optionally with its pid for RSS).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use iii_tokio::engine::{bind, EngineServer, EngineSettings};

use crate::BoxError;

/// Where the engine runs.
pub enum Target {
    /// `iii_tokio::bind` on the bench's own runtime.
    InProcess(EngineServer),
    /// The `iii-engine` binary as a child process.
    Child {
        /// The child.
        child: Child,
        /// Its URL.
        url: String,
    },
    /// Somebody else's engine.
    External {
        /// Its URL.
        url: String,
        /// Its pid, when given (for RSS).
        pid: Option<u32>,
    },
}

impl Target {
    /// Starts an in-process engine.
    pub async fn in_process() -> Result<Self, BoxError> {
        Ok(Self::InProcess(
            bind("127.0.0.1:0", EngineSettings::default()).await?,
        ))
    }

    /// Spawns `bin --addr 127.0.0.1:0 [extra...]` and reads its URL from the first
    /// stdout line.
    pub fn spawn(bin: &PathBuf, extra: &[String]) -> Result<Self, BoxError> {
        let mut child = Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let url = line.trim().to_owned();
        if !url.starts_with("ws://") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("iii-engine printed {url:?} instead of its URL").into());
        }
        Ok(Self::Child { child, url })
    }

    /// The engine's base URL.
    pub fn url(&self) -> String {
        match self {
            Self::InProcess(server) => server.url(),
            Self::Child { url, .. } | Self::External { url, .. } => url.clone(),
        }
    }

    /// A short name for the JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InProcess(_) => "in-process",
            Self::Child { .. } => "child",
            Self::External { .. } => "external",
        }
    }

    /// The engine process's pid when it is not this process.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Self::InProcess(_) => None,
            Self::Child { child, .. } => Some(child.id()),
            Self::External { pid, .. } => *pid,
        }
    }

    /// The engine's resident set in bytes (`VmRSS`), when it runs in its own process.
    pub fn rss(&self) -> Option<u64> {
        self.pid()
            .and_then(|pid| proc_status_kib(pid, "VmRSS:").map(|k| k * 1024))
    }

    /// The engine's peak resident set in bytes (`VmHWM`), when it runs in its own process.
    pub fn peak_rss(&self) -> Option<u64> {
        self.pid()
            .and_then(|pid| proc_status_kib(pid, "VmHWM:").map(|k| k * 1024))
    }

    /// CPU time (user + system, all threads) the engine process has used so far, when
    /// it runs in its own process.
    pub fn cpu(&self) -> Option<Duration> {
        self.pid().and_then(proc_cpu)
    }

    /// Stops the engine (in-process: graceful shutdown; child: kill).
    pub async fn stop(self) {
        match self {
            Self::InProcess(server) => {
                let _ = tokio::time::timeout(Duration::from_secs(10), server.shutdown()).await;
            }
            Self::Child { mut child, .. } => {
                let _ = child.kill();
                let _ = child.wait();
            }
            Self::External { .. } => {}
        }
    }
}

/// A `kB` field of `/proc/<pid>/status`.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
}

/// User + system CPU time of process `pid` from `/proc/<pid>/stat` (fields 14 and 15, in
/// the kernel's `USER_HZ` = 100 ticks per second that `/proc` always reports in).
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((user + system) * 10))
}

/// The default `iii-engine` path: next to this executable.
pub fn default_engine_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("iii-engine")))
        .unwrap_or_else(|| PathBuf::from("iii-engine"))
}
