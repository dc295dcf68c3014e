//! Installing the published clients into `<repo>/.cache/interop/` (git-ignored).
//!
//! [`clients`] runs at most once per test process (a [`OnceLock`]) and, across processes,
//! under an exclusive lock on `.cache/interop/install.lock`, so test binaries that run at
//! the same time never install twice. Installs that are already present at the pinned
//! version are skipped; the Rust peer is always handed to `cargo build`, which is a no-op
//! when nothing changed. A failed install panics with a message naming the registry.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Instant;

/// PyPI pins, one virtual environment each: (directory name, requirement, version as
/// `importlib.metadata` reports it).
pub const PYTHON_PINS: [(&str, &str, &str); 2] = [
    ("py-0.23.0rc4", "iii-sdk==0.23.0rc4", "0.23.0rc4"),
    ("py-0.25.0", "iii-sdk==0.25.0", "0.25.0"),
];

/// The npm pin: (directory name, package spec, version).
pub const NODE_PIN: (&str, &str, &str) = ("node-0.22.1", "iii-sdk@0.22.1", "0.22.1");

/// Where everything the harness installs or builds lives.
#[derive(Debug, Clone)]
pub struct Clients {
    /// The repository root.
    pub repo: PathBuf,
    /// `<repo>/.cache/interop`.
    pub cache: PathBuf,
    /// `python` of the `iii-sdk==0.23.0rc4` venv.
    pub python_023: PathBuf,
    /// `python` of the `iii-sdk==0.25.0` venv.
    pub python_025: PathBuf,
    /// `node_modules` holding `iii-sdk@0.22.1`.
    pub node_modules: PathBuf,
    /// The built crates.io peer binary (`iii-sdk =0.23.0-rc.4`).
    pub rust_peer: PathBuf,
    /// Peer logs go here.
    pub logs: PathBuf,
    /// Seconds this process spent in set-up (0 when another call already did it).
    pub setup_secs: f64,
}

impl Clients {
    /// The peer scripts' directory (`tests/interop`).
    pub fn scripts(&self) -> PathBuf {
        self.repo.join("tests").join("interop")
    }
}

static CLIENTS: OnceLock<Clients> = OnceLock::new();

/// Installs (or finds) every pinned client. Panics with the registry's name on failure.
pub fn clients() -> &'static Clients {
    CLIENTS.get_or_init(install_all)
}

fn install_all() -> Clients {
    let started = Instant::now();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf();
    let cache = repo.join(".cache").join("interop");
    let logs = cache.join("logs");
    fs::create_dir_all(&logs).expect("create .cache/interop/logs");
    let lock = File::create(cache.join("install.lock")).expect("create install.lock");
    lock.lock().expect("lock .cache/interop/install.lock");

    let mut pythons = PYTHON_PINS
        .iter()
        .map(|&(dir, requirement, version)| install_python(&cache.join(dir), requirement, version));
    let python_023 = pythons.next().expect("two pins");
    let python_025 = pythons.next().expect("two pins");
    let node_modules = install_node(&cache.join(NODE_PIN.0));
    let rust_peer = build_rust_peer(&repo, &cache);
    drop(lock);

    Clients {
        repo,
        cache,
        python_023,
        python_025,
        node_modules,
        rust_peer,
        logs,
        setup_secs: started.elapsed().as_secs_f64(),
    }
}

fn run(command: &mut Command, what: &str) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {command:?}: {e}"));
    if !output.status.success() {
        panic!(
            "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    output
}

fn installed_python_version(python: &Path) -> Option<String> {
    let output = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('iii-sdk'))",
        ])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn install_python(venv: &Path, requirement: &str, version: &str) -> PathBuf {
    let python = venv.join("bin").join("python");
    if installed_python_version(&python).as_deref() == Some(version) {
        return python;
    }
    if !python.exists() {
        run(
            Command::new("python3").arg("-m").arg("venv").arg(venv),
            "creating a Python venv (python3 -m venv)",
        );
    }
    // An exact `==` pin of a pre-release selects it without `--pre` (PEP 440), and its
    // own pins (`iii-helpers==0.23.0rc4`) follow.
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            requirement,
        ]),
        &format!("installing {requirement} from PyPI (pip)"),
    );
    let found = installed_python_version(&python);
    assert_eq!(
        found.as_deref(),
        Some(version),
        "PyPI install of {requirement} left the wrong version"
    );
    python
}

fn install_node(prefix: &Path) -> PathBuf {
    let (_, spec, version) = NODE_PIN;
    let modules = prefix.join("node_modules");
    let manifest = modules.join("iii-sdk").join("package.json");
    let present = fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .is_some_and(|json| json["version"] == version);
    if !present {
        run(
            Command::new("npm")
                .arg("install")
                .arg("--prefix")
                .arg(prefix)
                .args(["--no-audit", "--no-fund", "--loglevel=error", spec]),
            &format!("installing {spec} from the npm registry (npm install)"),
        );
    }
    assert!(
        manifest.exists(),
        "npm install of {spec} did not produce {}",
        manifest.display()
    );
    modules
}

fn build_rust_peer(repo: &Path, cache: &Path) -> PathBuf {
    let manifest = repo
        .join("tests")
        .join("interop")
        .join("rust-peer")
        .join("Cargo.toml");
    let target = cache.join("rust-peer-target");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        Command::new(cargo)
            .args([
                "build",
                "--release",
                "--locked",
                "--quiet",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--target-dir")
            .arg(&target)
            // The outer `cargo test` may have set these for its own build.
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS"),
        "building the crates.io iii-sdk =0.23.0-rc.4 peer (cargo build from crates.io)",
    );
    let binary = target.join("release").join("iii-interop-rust-peer");
    assert!(binary.exists(), "no peer binary at {}", binary.display());
    binary
}
