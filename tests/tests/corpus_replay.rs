//! Replays every committed fuzz input (`fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/`) through the same drivers the cargo-fuzz targets call,
//! on stable, so `cargo test --workspace` keeps every input that ever found a bug.
//! See FUZZING.md.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

type Driver = fn(&[u8]);

fn correlator(data: &[u8]) {
    iii_fuzz_drivers::correlator(data, Instant::now());
}

fn engine_inputs(data: &[u8]) {
    iii_fuzz_drivers::engine_inputs(data, Instant::now());
}

fn worker_inputs(data: &[u8]) {
    iii_fuzz_drivers::worker_inputs(data, Instant::now());
}

/// Every fuzz target and its driver; a target missing here fails `every_target_is_replayed`.
const TARGETS: [(&str, Driver); 8] = [
    ("control_decode", iii_fuzz_drivers::control_decode),
    ("upgrade_target", iii_fuzz_drivers::upgrade_target),
    ("chunker", iii_fuzz_drivers::chunker),
    ("credit", iii_fuzz_drivers::credit),
    ("correlator", correlator),
    ("engine_inputs", engine_inputs),
    ("worker_inputs", worker_inputs),
    ("sim_ops", iii_tests::fuzzing::sim_ops),
];

/// Targets whose driver is reachable only from inside its crate (`cfg(fuzzing)` outside
/// it), so that crate's unit tests replay their inputs: `upgrade_framing` by iii-driver's
/// `memory::tests::upgrade_framing_corpus_and_regressions_pass`.
const REPLAYED_ELSEWHERE: [&str; 1] = ["upgrade_framing"];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `driver` on every file of `<kind>/<target>/`; returns the failures.
fn replay(kind: &str, target: &str, driver: Driver) -> (usize, Vec<String>) {
    let files = files(&fuzz_dir().join(kind).join(target));
    let mut failures = Vec::new();
    for path in &files {
        let data = std::fs::read(path).expect("readable corpus file");
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| driver(&data))) {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    (files.len(), failures)
}

#[test]
fn corpus_and_regressions_pass() {
    let mut failures = Vec::new();
    for (target, driver) in TARGETS {
        let (corpus, mut failed) = replay("corpus", target, driver);
        assert!(corpus > 0, "fuzz/corpus/{target}/ has no seed inputs");
        failures.append(&mut failed);
        let (_, mut failed) = replay("regressions", target, driver);
        failures.append(&mut failed);
    }
    assert!(
        failures.is_empty(),
        "failing fuzz inputs:\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_target_is_replayed() {
    let targets = files(&fuzz_dir().join("fuzz_targets"));
    assert!(!targets.is_empty());
    for path in targets {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        assert!(
            TARGETS.iter().any(|(target, _)| *target == name) || REPLAYED_ELSEWHERE.contains(&name),
            "fuzz target {name} is not replayed by corpus_replay"
        );
    }
}

/// Finding 1 in FUZZING.md (fixed): `upgrade::parse_target` kept the channel id of the
/// path as it was, while `channel::channel_url` percent-encodes it, so an id outside
/// `A-Z a-z 0-9 - _ . ~` did not survive the round trip. It now percent-decodes the id.
#[test]
fn channel_id_round_trips_through_channel_url() {
    iii_fuzz_drivers::upgrade_target(b"/ws/channels/a%20b?key=k&dir=read");
    iii_fuzz_drivers::upgrade_target(b"/ws/channels/a b?key=k&dir=read");
}
