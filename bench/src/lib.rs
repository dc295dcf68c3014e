//! The iii-rs benchmark harness: end-to-end scenarios against any engine URL (ours
//! in-process by default), the machine's raw WebSocket limit, and a summary table.
//!
//! Every run yields one JSON line (scenario, client, engine, load averages, results) and
//! checks its own results: a wrong byte count or echo is an error. Everything talks to
//! 127.0.0.1 only, starts what it needs and stops by itself.

pub mod calls;
pub mod client;
pub mod hostile;
pub mod idle;
pub mod limit;
pub mod pipeline;
pub mod published;
pub mod raw;
pub mod scenarios;
pub mod shared;
pub mod summary;
pub mod tally;
pub mod target;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use client::Kind;
use target::Target;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub use shared::{CHUNK, ECHO, SINK};

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// `--bytes` through one channel, then through 8 channels at once.
    Throughput,
    /// Sequential call round trips, then calls/s with `--in-flight` outstanding.
    Latency,
    /// Create a channel, hand its reader to a function, write 16 bytes, close, await.
    ChannelRtt,
    /// `--channels` channels open at once (both ends attached, idle); engine RSS.
    Fanin,
    /// `--bytes` written as fast as possible to a reader reading `--read-rate-mib`.
    SlowReader,
    /// The machine's raw WebSocket one-hop and relay limit (no engine).
    Limit,
    /// Control pings/s on one connection alone, then with `--idle-conns` idle
    /// connections open (raw client only).
    IdleConns,
    /// `--soak-calls` checked calls with `--in-flight` outstanding; any lost or
    /// mismatched answer fails the run.
    Soak,
    /// `--hostile-conns` hostile connections (pong floods, partial messages, slow
    /// channel readers, half-sent upgrades) while a bystander calls; engine RSS and the
    /// bystander's latency (raw client, `--spawn-engine` only).
    Hostile,
}

impl Scenario {
    /// The name used in the JSON output.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::ChannelRtt => "channel_rtt",
            Scenario::Fanin => "fanin",
            Scenario::SlowReader => "slow_reader",
            Scenario::Limit => "limit",
            Scenario::IdleConns => "idle_conns",
            Scenario::Soak => "soak",
            Scenario::Hostile => "hostile",
        }
    }

    /// The client a scenario always uses, whatever `--client` says (`limit` and
    /// `idle_conns` speak raw WebSocket only).
    pub fn fixed_client(self) -> Option<Kind> {
        match self {
            Scenario::Limit | Scenario::IdleConns | Scenario::Hostile => Some(Kind::Raw),
            _ => None,
        }
    }
}

/// Options shared by the scenarios.
#[derive(Debug, Clone, Args)]
pub struct Opts {
    /// Engine URL (ws://host:port). Default: start our engine in-process.
    #[arg(long, conflicts_with = "spawn_engine")]
    url: Option<String>,
    /// Pid of the engine at `--url`, to read its RSS from /proc.
    #[arg(long, requires = "url")]
    engine_pid: Option<u32>,
    /// Start the `iii-engine` binary as a child process (needed for RSS figures).
    #[arg(long)]
    spawn_engine: bool,
    /// The `iii-engine` binary for `--spawn-engine` (default: next to this binary).
    #[arg(long)]
    engine_bin: Option<PathBuf>,
    /// An extra argument for the spawned `iii-engine` (repeatable), e.g.
    /// `--engine-arg=--read-ahead-bytes=1048576`.
    #[arg(
        long = "engine-arg",
        allow_hyphen_values = true,
        requires = "spawn_engine"
    )]
    engine_args: Vec<String>,
    /// Which client drives the engine.
    #[arg(long, value_enum, default_value_t = Kind::Ours)]
    pub client: Kind,
    /// The `iii-bench-published` binary for `--client published` (default:
    /// bench/published/target/release/iii-bench-published in this source tree, else next
    /// to this binary).
    #[arg(long)]
    pub published_bin: Option<PathBuf>,
    /// `--client published`: leave the published SDK's OpenTelemetry export on (its
    /// default; spans and metrics go to the engine's `/otel`). Off unless given.
    #[arg(long)]
    pub published_otel: bool,
    /// Runs of the scenario (a fresh engine each run).
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
    /// Tokio worker threads of the bench process.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Bytes streamed by `throughput`, `slow_reader` and `limit` (8-channel runs split it).
    #[arg(long, default_value_t = 1 << 30)]
    pub bytes: u64,
    /// Sequential calls measured by `latency` (plus 10% warm-up).
    #[arg(long, default_value_t = 10_000)]
    pub calls: usize,
    /// Calls made with `--in-flight` outstanding by `latency`.
    #[arg(long, default_value_t = 100_000)]
    pub pipelined_calls: usize,
    /// Outstanding calls (`latency`'s pipelined part, `soak`) or pings (`idle_conns`).
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Calls made by `soak`.
    #[arg(long, default_value_t = 10_000_000)]
    pub soak_calls: u64,
    /// Seconds after which an unanswered call counts as lost (`latency`, `soak`).
    #[arg(long, default_value_t = 30)]
    pub call_timeout_secs: u64,
    /// Idle control connections held open by `idle_conns`.
    #[arg(long, default_value_t = 10_000)]
    pub idle_conns: usize,
    /// Handshakes in progress at once while `idle_conns` opens its connections.
    #[arg(long, default_value_t = 128)]
    pub idle_dial_concurrency: usize,
    /// Seconds of pings per measurement in `idle_conns` (after a fifth of it as warm-up).
    #[arg(long, default_value_t = 3.0)]
    pub ping_secs: f64,
    /// Round trips measured by `channel_rtt` (plus 10% warm-up).
    #[arg(long, default_value_t = 1_000)]
    pub rtt_count: usize,
    /// Channels held open by `fanin`.
    #[arg(long, default_value_t = 1_000)]
    pub channels: usize,
    /// The slow reader's rate in MiB/s.
    #[arg(long, default_value_t = 8.0)]
    pub read_rate_mib: f64,
    /// Hostile connections opened by `hostile`.
    #[arg(long, default_value_t = 1_000)]
    pub hostile_conns: usize,
    /// Seconds `hostile` keeps its attackers going while the bystander calls.
    #[arg(long, default_value_t = 20.0)]
    pub hostile_secs: f64,
    /// MiB of its 63 MiB message each partial-message attacker of `hostile` sends.
    #[arg(long, default_value_t = 60)]
    pub hostile_partial_mib: u64,
    /// `hostile` fails if the engine's peak RSS reaches this many MiB.
    #[arg(long, default_value_t = 1_024)]
    pub rss_ceiling_mib: u64,
    /// Wait (at most `--load-wait` seconds) before each run until the 1-minute load
    /// average is below this.
    #[arg(long, default_value_t = 1.0)]
    max_load: f64,
    /// The longest wait for a quiet machine before running anyway, in seconds.
    #[arg(long, default_value_t = 60)]
    load_wait: u64,
    /// A label recorded in each JSON line (`"label"`) and shown with the engine by
    /// `summarize`, e.g. which engine build a comparison ran against.
    #[arg(long)]
    pub label: Option<String>,
    /// Deadline of one run, in seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

/// The load averages (1, 5, 15 minutes) from /proc/loadavg.
pub fn load() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text
        .split_whitespace()
        .map(|v| v.parse::<f64>().unwrap_or(f64::NAN));
    [
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
        it.next().unwrap_or(f64::NAN),
    ]
}

async fn wait_for_quiet(o: &Opts) {
    let deadline = Instant::now() + Duration::from_secs(o.load_wait);
    while load()[0] >= o.max_load && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn start_target(o: &Opts) -> Result<Target, BoxError> {
    if let Some(url) = &o.url {
        return Ok(Target::External {
            url: url.clone(),
            pid: o.engine_pid,
        });
    }
    if o.spawn_engine {
        let bin = o
            .engine_bin
            .clone()
            .unwrap_or_else(target::default_engine_bin);
        return Target::spawn(&bin, &o.engine_args);
    }
    Target::in_process().await
}

/// Starts the engine (unless `limit`), runs `scenario` once and returns its JSON line.
pub async fn one_run(scenario: Scenario, o: &Opts, run: usize) -> Result<Value, BoxError> {
    wait_for_quiet(o).await;
    let load_before = load();
    let target = if scenario == Scenario::Limit {
        None
    } else {
        Some(start_target(o).await?)
    };
    let started = Instant::now();
    let work = async {
        match (&target, scenario) {
            (_, Scenario::Limit) => limit::limit(o).await,
            (Some(_), Scenario::Soak) if o.client == Kind::Published => {
                Err("soak runs with --client ours or raw".into())
            }
            (Some(t), Scenario::IdleConns) => idle::idle_conns(t, o).await,
            (Some(t), Scenario::Hostile) => hostile::hostile(t, o).await,
            (Some(t), _) if o.client == Kind::Published => published::run(scenario, t, o).await,
            (Some(t), Scenario::Throughput) => scenarios::throughput(t, o).await,
            (Some(t), Scenario::Latency) => calls::latency(t, o).await,
            (Some(t), Scenario::Soak) => calls::soak(t, o).await,
            (Some(t), Scenario::ChannelRtt) => scenarios::channel_rtt(t, o).await,
            (Some(t), Scenario::Fanin) => scenarios::fanin(t, o).await,
            (Some(t), Scenario::SlowReader) => scenarios::slow_reader(t, o).await,
            (None, _) => Err("no engine".into()),
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(o.timeout), work).await;
    let engine = target.as_ref().map_or("none", Target::kind);
    if let Some(t) = target {
        t.stop().await;
    }
    let fields = outcome.map_err(|_| format!("run timed out after {} s", o.timeout))??;
    let mut line = serde_json::Map::new();
    line.insert("scenario".into(), json!(scenario.name()));
    let client = scenario.fixed_client().unwrap_or(o.client);
    line.insert("client".into(), json!(client.name()));
    line.insert("engine".into(), json!(engine));
    if let Some(label) = &o.label {
        line.insert("label".into(), json!(label));
    }
    line.insert("run".into(), json!(run));
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    line.insert("unix_time".into(), json!(unix));
    line.insert(
        "elapsed_s".into(),
        json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0),
    );
    line.extend(fields);
    line.insert("load_before".into(), json!(load_before));
    line.insert("load_after".into(), json!(load()));
    Ok(Value::Object(line))
}
