//! What several integration tests share: the `iii-engine` binary as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The `iii-engine` binary listening on `addr`; killed on drop.
pub(crate) struct EngineProcess {
    pub(crate) child: Child,
    /// The URL it printed (`ws://127.0.0.1:PORT`).
    pub(crate) url: String,
}

impl EngineProcess {
    /// Starts it on `addr` (`127.0.0.1:0` for a free port) and waits for its URL.
    pub(crate) fn start(addr: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_iii-engine"))
            .args(["--addr", addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start iii-engine");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the engine prints its URL");
        assert!(line.starts_with("ws://"), "the engine printed {line:?}");
        Self {
            child,
            url: line.trim().to_owned(),
        }
    }

    /// Stops it at once (SIGKILL).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
