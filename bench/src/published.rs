//! `--client published`: the published crates.io `iii-sdk` (=0.23.0-rc.4) as the client.
//!
//! That SDK's large dependency tree stays out of this workspace: its client half is the
//! standalone crate `bench/published` (binary `iii-bench-published`, own `[workspace]`
//! and lock file), run here as a child process against the engine this harness started
//! or was given. The child prints JSON lines: `{"step":"idle"}` / `{"step":"open"}` when
//! the engine's RSS should be sampled (answered with a line on its stdin once sampled),
//! then `{"result":{...}}` with the scenario's fields, which it has already checked. RSS
//! sampling stays here, exactly as for the other clients. The child is killed if the run
//! fails or times out, and exits by itself when its stdin closes.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdout, Command};

use crate::scenarios::{fanin_rss, Fields, PeakRss};
use crate::target::Target;
use crate::{BoxError, Opts, Scenario};

/// The binary's name.
pub const BIN: &str = "iii-bench-published";

/// How to build the binary (from the repository root) where [`default_bin`] finds it.
pub const BUILD: &str = "cargo build --release --locked \
     --manifest-path bench/published/Cargo.toml --target-dir bench/published/target";

/// The binary used without `--published-bin`: `bench/published/target/release/` in the
/// source tree this harness was built from, else next to this executable.
pub fn default_bin() -> Result<PathBuf, BoxError> {
    let in_tree = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("published/target/release")
        .join(BIN);
    let next_to_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(BIN)));
    [Some(in_tree.clone()), next_to_exe]
        .into_iter()
        .flatten()
        .find(|path| path.is_file())
        .ok_or_else(|| {
            format!(
                "{} not found; build it with `{BUILD}` or pass --published-bin",
                in_tree.display()
            )
            .into()
        })
}

fn args(scenario: Scenario, url: String, o: &Opts) -> Vec<String> {
    let mut args = vec![scenario.name().to_owned()];
    for (flag, value) in [
        ("--url", url),
        ("--threads", o.threads.to_string()),
        ("--bytes", o.bytes.to_string()),
        ("--calls", o.calls.to_string()),
        ("--pipelined-calls", o.pipelined_calls.to_string()),
        ("--in-flight", o.in_flight.to_string()),
        ("--rtt-count", o.rtt_count.to_string()),
        ("--channels", o.channels.to_string()),
        ("--read-rate-mib", o.read_rate_mib.to_string()),
    ] {
        args.extend([flag.to_owned(), value]);
    }
    if o.published_otel {
        args.push("--otel".to_owned());
    }
    args
}

/// The child's next line, sampling `target`'s RSS into `rss` every 50 ms meanwhile.
async fn next_sampling(
    lines: &mut Lines<BufReader<ChildStdout>>,
    rss: &mut PeakRss,
    target: &Target,
) -> std::io::Result<Option<String>> {
    let next = lines.next_line();
    tokio::pin!(next);
    loop {
        tokio::select! {
            line = &mut next => return line,
            () = tokio::time::sleep(Duration::from_millis(50)) => rss.sample(target),
        }
    }
}

/// Runs `scenario` once with `iii-bench-published` against `target`; returns the fields
/// of the JSON line (the child's results plus the engine RSS figures sampled here).
pub async fn run(scenario: Scenario, target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let bin = match &o.published_bin {
        Some(bin) => bin.clone(),
        None => default_bin()?,
    };
    let rss_start = target.rss();
    let mut child = Command::new(&bin)
        .args(args(scenario, target.url(), o))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let mut lines = BufReader::new(child.stdout.take().ok_or("no stdout")?).lines();
    let (mut rss_idle, mut rss_open, mut peak) = (None, None, None::<PeakRss>);
    let result = loop {
        let line = match peak.as_mut() {
            Some(rss) => next_sampling(&mut lines, rss, target).await?,
            None => lines.next_line().await?,
        };
        let Some(line) = line else { break None };
        let mut msg: Value =
            serde_json::from_str(&line).map_err(|e| format!("{BIN} printed {line:?} ({e})"))?;
        match msg.get("step").and_then(Value::as_str) {
            Some("idle") => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                rss_idle = target.rss();
                if scenario == Scenario::SlowReader {
                    peak = Some(PeakRss::new(rss_idle));
                }
            }
            Some("open") => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                rss_open = target.rss();
            }
            Some(other) => return Err(format!("{BIN} announced unknown step {other}").into()),
            None => break Some(msg["result"].take()),
        }
        stdin.write_all(b"go\n").await?;
        stdin.flush().await?;
    };
    let status = match tokio::time::timeout(Duration::from_secs(30), child.wait()).await {
        Ok(status) => status?,
        Err(_) => return Err(format!("{BIN} did not exit after its result").into()),
    };
    drop(stdin);
    if !status.success() {
        return Err(format!("{BIN} failed ({status}); its stderr is above").into());
    }
    let Some(Value::Object(mut f)) = result else {
        return Err(format!("{BIN} exited without a result").into());
    };
    match scenario {
        Scenario::Fanin => fanin_rss(&mut f, o.channels, [rss_start, rss_idle, rss_open]),
        Scenario::SlowReader => peak
            .unwrap_or_else(|| PeakRss::new(rss_idle))
            .fields(&mut f),
        _ => {}
    }
    f.insert("published_otel".into(), json!(o.published_otel));
    Ok(f)
}
