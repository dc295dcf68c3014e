//! What the interop and browser tests need beyond cargo, and whether this machine has
//! it. `cargo test --workspace` must pass on a developer machine without root or Debian
//! (say macOS): a test whose toolchain is missing prints one `skipped: …` line naming
//! the install step and passes. CI sets `III_REQUIRE_ALL=1` (`.ci/run` exports it), and
//! then nothing is skipped: a missing toolchain fails the test as it always did.

use std::path::Path;
use std::process::{Command, Stdio};

/// The environment variable that turns every skip into a run (CI sets it to `1`).
pub const REQUIRE_ALL: &str = "III_REQUIRE_ALL";

/// True when `III_REQUIRE_ALL=1`: no test may skip.
pub fn required() -> bool {
    std::env::var(REQUIRE_ALL).is_ok_and(|value| value == "1")
}

/// True when `tool` is an executable file in one of `PATH`'s directories.
pub fn on_path(tool: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        let candidate = dir.join(tool);
        candidate.is_file() && is_executable(&candidate)
    })
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(_: &Path) -> bool {
    true
}

/// Whether a test runs: `Ok` to run it; `Err(why)` when its toolchain is missing.
/// Prints the skip line and returns false when it must skip (never under
/// `III_REQUIRE_ALL=1`, where the test runs and fails on what is missing).
pub fn run_or_skip(test: &str, ready: Result<(), String>) -> bool {
    match ready {
        Ok(()) => true,
        Err(_) if required() => true,
        Err(why) => {
            eprintln!("skipped: {test}: {why} ({REQUIRE_ALL}=1 makes this a failure)");
            false
        }
    }
}

/// The published SDKs' toolchain: `python3` (the harness makes a venv and installs
/// `iii-sdk` from PyPI), `node` and `npm` (npm's `iii-sdk`). The crates.io SDK needs
/// only cargo.
pub fn published_sdks() -> Result<(), String> {
    let missing: Vec<&str> = ["python3", "node", "npm"]
        .into_iter()
        .filter(|tool| !on_path(tool))
        .collect();
    match missing.as_slice() {
        [] => Ok(()),
        missing => Err(format!(
            "the published SDKs need {} on PATH (the tests install iii-sdk from PyPI and \
             npm into .cache/interop/ themselves)",
            missing.join(", ")
        )),
    }
}

/// The browser toolchain: what `iii-browser/build.sh --check` looks for (Debian's
/// rustc-web, cargo-web, rust-web-src, lld and chromium, node, npm, the pinned
/// wasm-bindgen CLI). When it is missing but this is root on a machine with apt-get,
/// `build.sh` installs it, so the test runs.
pub fn browser(repo: &Path) -> Result<(), String> {
    let check = Command::new("bash")
        .arg(repo.join("iii-browser/build.sh"))
        .arg("--check")
        .env("III_BROWSER_NO_INSTALL", "1")
        .stdout(Stdio::null())
        .output();
    let why = match check {
        Ok(output) if output.status.success() => return Ok(()),
        Ok(output) => String::from_utf8_lossy(&output.stderr)
            .lines()
            .last()
            .unwrap_or("iii-browser/build.sh --check failed")
            .to_owned(),
        Err(error) => format!("cannot run bash: {error}"),
    };
    if is_root() && on_path("apt-get") {
        return Ok(());
    }
    Err(format!(
        "run iii-browser/build.sh (as root on Debian; it installs the browser toolchain): {why}"
    ))
}

/// True when this process runs as root.
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_named_and_a_present_one_is_found() {
        assert!(on_path("sh"), "every Unix has sh on PATH");
        assert!(!on_path("no-such-tool-iii-7f3a"));
    }
}
