//! `iii-bench-published`: the client half of `iii-bench run <scenario> --client published`,
//! written against the published crates.io `iii-sdk` (=0.23.0-rc.4).
//!
//! Usage: `iii-bench-published <throughput|latency|channel_rtt|fanin|slow_reader>
//! --url ws://127.0.0.1:PORT [--threads N] [--bytes N] [--calls N] [--pipelined-calls N]
//! [--in-flight N] [--rtt-count N] [--channels N] [--read-rate-mib F] [--otel]`.
//!
//! Stdout carries JSON lines only: `{"step":"idle"}` / `{"step":"open"}` when the parent
//! should sample the engine's RSS (it answers with one line on stdin, after which this
//! process goes on), then `{"result":{...}}` with the scenario's fields, checked like the
//! other clients check theirs (byte counts, the per-position byte pattern, echoes). Any
//! mismatch or error goes to stderr and exits non-zero. Stdin reaching EOF (the parent is
//! gone) exits at once, so this process never outlives `iii-bench`.

mod scenarios;
#[path = "../../src/shared.rs"]
mod shared;

use std::io::{BufRead, Write};
use std::time::Duration;

use iii_helpers::observability::OtelConfig;
use iii_sdk::iii::WorkerMetadata;
use iii_sdk::protocol::TriggerRequest;
use iii_sdk::runtime::IIIConnectionState;
use iii_sdk::{register_worker, IIIClient, InitOptions};
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The deadline of one protocol step (a call, a read), like `iii-bench`'s.
pub const STEP: Duration = Duration::from_secs(30);

/// The command line.
pub struct Opts {
    /// The scenario (snake_case, as in the JSON output).
    pub scenario: String,
    /// Engine URL.
    pub url: String,
    /// Tokio worker threads of this process (the SDK adds one thread per connection).
    pub threads: usize,
    /// Bytes streamed by `throughput` and `slow_reader`.
    pub bytes: u64,
    /// Sequential calls measured by `latency`.
    pub calls: usize,
    /// Calls made with `in_flight` outstanding by `latency`.
    pub pipelined_calls: usize,
    /// Outstanding calls in the pipelined part of `latency`.
    pub in_flight: usize,
    /// Round trips measured by `channel_rtt`.
    pub rtt_count: usize,
    /// Channels held open by `fanin`.
    pub channels: usize,
    /// The slow reader's rate in MiB/s.
    pub read_rate_mib: f64,
    /// Leave the SDK's OpenTelemetry export on (its default); off unless given.
    pub otel: bool,
}

impl Opts {
    fn parse() -> Result<Self, BoxError> {
        let mut args = std::env::args().skip(1);
        let mut o = Opts {
            scenario: args.next().ok_or("missing scenario")?,
            url: String::new(),
            threads: 2,
            bytes: 1 << 30,
            calls: 10_000,
            pipelined_calls: 100_000,
            in_flight: 64,
            rtt_count: 1_000,
            channels: 1_000,
            read_rate_mib: 8.0,
            otel: false,
        };
        while let Some(flag) = args.next() {
            if flag == "--otel" {
                o.otel = true;
                continue;
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            match flag.as_str() {
                "--url" => o.url = value,
                "--threads" => o.threads = value.parse()?,
                "--bytes" => o.bytes = value.parse()?,
                "--calls" => o.calls = value.parse()?,
                "--pipelined-calls" => o.pipelined_calls = value.parse()?,
                "--in-flight" => o.in_flight = value.parse()?,
                "--rtt-count" => o.rtt_count = value.parse()?,
                "--channels" => o.channels = value.parse()?,
                "--read-rate-mib" => o.read_rate_mib = value.parse()?,
                _ => return Err(format!("unknown flag {flag}").into()),
            }
        }
        if o.url.is_empty() {
            return Err("missing --url".into());
        }
        if o.in_flight == 0 || o.channels == 0 {
            return Err("--in-flight and --channels must be positive".into());
        }
        Ok(o)
    }
}

/// The parent's side of the RSS handshake: announce a step on stdout, wait for its line.
pub struct Steps {
    go: mpsc::UnboundedReceiver<()>,
}

impl Steps {
    /// Reads stdin on a plain thread (a tokio stdin would keep the runtime from
    /// stopping); EOF ends the process.
    fn start() -> Self {
        let (tx, go) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            let stdin = std::io::stdin();
            for line in stdin.lock().lines() {
                if line.is_err() || tx.send(()).is_err() {
                    break;
                }
            }
            eprintln!("iii-bench-published: stdin closed, exiting");
            std::process::exit(3);
        });
        Self { go }
    }

    /// Prints `{"step": name}` and waits for the parent's answer.
    pub async fn step(&mut self, name: &str) -> Result<(), BoxError> {
        print_line(&json!({ "step": name }))?;
        match tokio::time::timeout(Duration::from_secs(120), self.go.recv()).await {
            Ok(Some(())) => Ok(()),
            _ => Err(format!("no answer to step {name}").into()),
        }
    }
}

fn print_line(value: &Value) -> Result<(), BoxError> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{value}")?;
    out.flush()?;
    Ok(())
}

/// Connects a published-SDK worker named `name` and waits until it is connected.
pub async fn worker(o: &Opts, name: &str) -> Result<IIIClient, BoxError> {
    // `None` keeps the SDK's default (export on, to `<url>/otel`).
    let otel = (!o.otel).then(|| OtelConfig {
        enabled: Some(false),
        ..OtelConfig::default()
    });
    let iii = register_worker(
        &o.url,
        InitOptions {
            metadata: Some(WorkerMetadata {
                name: name.to_owned(),
                ..WorkerMetadata::default()
            }),
            otel,
            ..InitOptions::default()
        },
    );
    let deadline = tokio::time::Instant::now() + STEP;
    while iii.get_connection_state() != IIIConnectionState::Connected {
        if tokio::time::Instant::now() > deadline {
            iii.shutdown_async().await;
            return Err(format!("{name} never connected to {}", o.url).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(iii)
}

/// A synchronous call (`STEP` timeout).
pub async fn call(iii: &IIIClient, function_id: &str, payload: Value) -> Result<Value, BoxError> {
    Ok(iii
        .trigger(TriggerRequest {
            function_id: function_id.to_owned(),
            payload,
            action: None,
            timeout_ms: Some(STEP.as_millis() as u64),
        })
        .await?)
}

fn main() {
    let o = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("iii-bench-published: {e}");
            std::process::exit(2);
        }
    };
    let steps = Steps::start();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(o.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("iii-bench-published: cannot start tokio: {e}");
            std::process::exit(2);
        }
    };
    let outcome = runtime.block_on(scenarios::run(&o, steps));
    let code = match outcome.and_then(|fields| print_line(&json!({ "result": fields }))) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("iii-bench-published: {} failed: {e}", o.scenario);
            1
        }
    };
    // The SDK's connection threads are not joined; exiting ends them.
    std::process::exit(code);
}
