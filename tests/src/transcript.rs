//! A running hash of everything fed to and emitted by the machines in a simulation,
//! so that two runs can be compared for determinism.

use sha2::{Digest, Sha256};

/// The hash of a simulation's inputs and outputs, plus a short tail for debugging.
#[derive(Default)]
pub struct Transcript {
    hasher: Sha256,
    lines: u64,
    tail: std::collections::VecDeque<String>,
}

impl Transcript {
    /// Records one line.
    pub fn record(&mut self, line: String) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        if self.tail.len() == 64 {
            self.tail.pop_front();
        }
        self.tail.push_back(line);
    }

    /// Lines recorded so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// The hash so far, as hex.
    pub fn digest(&self) -> String {
        let hash = self.hasher.clone().finalize();
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The most recent lines.
    pub fn tail(&self) -> Vec<String> {
        self.tail.iter().cloned().collect()
    }
}
