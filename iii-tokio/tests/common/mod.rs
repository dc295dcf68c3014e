//! The `iii-engine` binary as a child process, for the tests that need a real process:
//! exit codes, logs, resident memory, resource limits.

#![allow(dead_code)] // each test file uses part of it

pub(crate) mod pki;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `iii-engine` child, killed when dropped.
pub(crate) struct Engine {
    pub(crate) child: Child,
    /// The URL it printed (`ws://ip:port`, or `wss://ip:port` with TLS).
    pub(crate) url: String,
    /// What it wrote to standard error so far, when started with [`Engine::start_logged`].
    pub(crate) log: Arc<Mutex<String>>,
}

impl Engine {
    /// Starts `iii-engine --addr 127.0.0.1:0 <args>` with `env`, stderr to `stderr`.
    pub(crate) fn start_with(args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        Self::start_on("127.0.0.1:0", args, env, stderr)
    }

    /// Starts `iii-engine --addr <addr> <args>` with `env`, stderr to `stderr`.
    pub(crate) fn start_on(addr: &str, args: &[&str], env: &[(&str, &str)], stderr: Stdio) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_iii-engine"));
        command
            .args(["--addr", addr])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (name, value) in env {
            command.env(name, value);
        }
        Self::wait_for_url(command.spawn().expect("start iii-engine"))
    }

    /// Starts it with default settings and no log.
    pub(crate) fn start() -> Self {
        Self::start_with(&[], &[], Stdio::null())
    }

    /// Reads the URL line of a spawned engine.
    pub(crate) fn wait_for_url(mut child: Child) -> Self {
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("engine prints its URL");
        assert!(
            line.starts_with("ws://") || line.starts_with("wss://"),
            "printed {line:?}"
        );
        Self {
            child,
            url: line.trim().to_owned(),
            log: Arc::default(),
        }
    }

    /// Starts it with standard error collected into [`Engine::log`] by a thread, so
    /// that a chatty log never blocks the engine.
    pub(crate) fn start_logged(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_with(args, env, Stdio::piped()).collecting_log()
    }

    /// Starts `iii-engine <args>` without adding `--addr` (a configuration file gives
    /// the address), with `env` and its log collected.
    pub(crate) fn start_unaddressed(args: &[&str], env: &[(&str, &str)]) -> Self {
        let child = command(args, env).spawn().expect("start iii-engine");
        Self::wait_for_url(child).collecting_log()
    }

    /// Collects standard error (piped) into [`Engine::log`] from now on.
    fn collecting_log(mut self) -> Self {
        let mut stderr = self.child.stderr.take().expect("stderr");
        let log = self.log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = log.lock() {
                    log.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        self
    }

    /// The log collected so far.
    pub(crate) fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stops it at once (SIGKILL).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `host:port` of the engine.
    pub(crate) fn addr(&self) -> &str {
        self.url
            .trim_start_matches("wss://")
            .trim_start_matches("ws://")
    }

    /// Resident memory, from /proc.
    pub(crate) fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// Sends SIGTERM and returns the exit status and the collected log.
    pub(crate) fn stop(mut self) -> (ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = wait(&mut self.child, Duration::from_secs(10)).expect("stopped");
        // Let the log thread read the last lines.
        std::thread::sleep(Duration::from_millis(100));
        (status, self.log_text())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `child` to exit, at most `limit`.
pub(crate) fn wait(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `iii-engine --addr 127.0.0.1:0 <args>` to completion (at most 10 s) and returns
/// its exit status and standard error.
pub(crate) fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let args: Vec<&str> = ["--addr", "127.0.0.1:0"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let (status, _, log) = run(&args, env);
    (status, log)
}

/// Runs `iii-engine <args>` (no `--addr` added) to completion (at most 10 s, printing
/// less than a pipe holds) and returns its exit status, standard output and error.
pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut child = command(args, env).spawn().expect("start iii-engine");
    let status = wait(&mut child, Duration::from_secs(10)).expect("exits by itself");
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    (status, stdout, stderr)
}

/// `iii-engine <args>` with `env`, standard output and error piped.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_iii-engine"));
    command
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}
