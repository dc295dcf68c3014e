//! `idle_conns`: control throughput on one connection (JSON `ping` -> `pong` with
//! `--in-flight` outstanding, for `--ping-secs`), alone, then with `--idle-conns` idle
//! control connections open, then alone again once they are closed; `slowdown_x` is the
//! mean of the two figures alone over the one with idle connections. With a child
//! engine, its CPU per ping in each phase is recorded too. An engine that
//! scans every connection per input slows down in proportion to the idle ones; one
//! that tracks readiness does not.
//!
//! The idle connections are raw WebSockets of this process that complete the upgrade,
//! wait for `workerregistered` and then only read: tungstenite answers the engine's
//! keep-alive pings while a stream is read, so they survive `iii-engine`'s idle timeout
//! however long the run. One that the engine closes fails the run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::protocol::WebSocketConfig;
use async_tungstenite::tungstenite::Message;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::pipeline::{pipeline, Exchange, Until};
use crate::raw::{self, Ws, STEP};
use crate::scenarios::Fields;
use crate::shared::round;
use crate::target::Target;
use crate::{BoxError, Opts};

/// WebSocket read buffer of each idle connection (tungstenite allocates it eagerly;
/// its 128 KiB default would cost this process 1.3 GB for 10 000 connections).
const IDLE_READ_BUFFER: usize = 4096;

/// Control pings, answered in order by pongs.
struct Pings {
    last_answer: Instant,
}

impl Exchange for Pings {
    fn request(&mut self, _seq: u64, _now: Instant) -> Message {
        Message::text(r#"{"type":"ping"}"#)
    }

    fn answer(&mut self, text: &str, now: Instant) -> Result<u64, BoxError> {
        let message: Value = serde_json::from_str(text)?;
        if message["type"] != "pong" {
            return Ok(0);
        }
        self.last_answer = now;
        Ok(1)
    }

    fn sweep(&mut self, now: Instant) -> Result<u64, BoxError> {
        if now.saturating_duration_since(self.last_answer) > STEP {
            return Err(format!("no pong for {} s", STEP.as_secs()).into());
        }
        Ok(0)
    }
}

/// One measurement: pings per second, and the engine's CPU per ping (child engine).
#[derive(Debug, Clone, Copy)]
struct Rate {
    per_s: f64,
    engine_cpu_us: Option<f64>,
}

/// Pings on `ws` over `duration`, `in_flight` outstanding.
async fn ping_rate(
    ws: &mut Ws,
    target: &Target,
    duration: Duration,
    in_flight: usize,
) -> Result<Rate, BoxError> {
    let mut pings = Pings {
        last_answer: Instant::now(),
    };
    let until = Until::Deadline(Instant::now() + duration);
    let cpu_start = target.cpu();
    let run = pipeline(ws, until, in_flight, &mut pings, &AtomicU64::new(0)).await?;
    let cpu = cpu_start
        .zip(target.cpu())
        .map(|(a, b)| b.saturating_sub(a));
    if run.completed != run.sent {
        return Err(format!("{} pings sent, {} pongs", run.sent, run.completed).into());
    }
    Ok(Rate {
        per_s: run.rate(),
        engine_cpu_us: cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / run.completed.max(1) as f64),
    })
}

/// Opens `n` idle control connections, `concurrency` handshakes at a time; each is read
/// by its own task until the engine closes it, which counts in `closed`.
async fn open_idle(
    url: &str,
    n: usize,
    concurrency: usize,
    closed: &Arc<AtomicU64>,
) -> Result<Vec<JoinHandle<()>>, BoxError> {
    futures_util::stream::iter(0..n)
        .map(|_| async {
            let config = WebSocketConfig::default().read_buffer_size(IDLE_READ_BUFFER);
            let mut ws = raw::registered(raw::dial_with(url, config).await?).await?;
            let closed = closed.clone();
            Ok::<_, BoxError>(tokio::spawn(async move {
                while let Some(Ok(_)) = ws.next().await {}
                closed.fetch_add(1, Ordering::Relaxed);
            }))
        })
        .buffer_unordered(concurrency.max(1))
        .try_collect()
        .await
}

/// The soft open-files limit of this process.
fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(soft, _)| soft)
}

/// `idle_conns`: pings/s alone, with `--idle-conns` idle connections open, alone again.
pub async fn idle_conns(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let limit = open_files_limit();
    // Our ends, plus the engine's when it shares this process; a few dozen spare.
    let needed = match target {
        Target::InProcess(_) => 2 * o.idle_conns as u64,
        _ => o.idle_conns as u64,
    } + 64;
    if limit < needed {
        return Err(format!(
            "{} idle connections need {needed} open files here, the limit is {limit} \
             (raise the hard limit, or use --spawn-engine)",
            o.idle_conns
        )
        .into());
    }
    let url = target.url();
    let secs = Duration::from_secs_f64(o.ping_secs);
    let mut ws = raw::control(&url).await?;
    ping_rate(&mut ws, target, secs / 5, o.in_flight).await?;
    let alone = ping_rate(&mut ws, target, secs, o.in_flight).await?;
    let rss_alone = target.rss();
    let closed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks = match open_idle(&url, o.idle_conns, o.idle_dial_concurrency, &closed).await {
        Ok(tasks) => tasks,
        Err(e) => {
            let _ = ws.close(None).await;
            return Err(format!("opening the idle connections: {e}").into());
        }
    };
    let open_wall = start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_idle = target.rss();
    let measured = ping_rate(&mut ws, target, secs, o.in_flight).await;
    let closed = closed.load(Ordering::Relaxed);
    tasks.iter().for_each(JoinHandle::abort);
    let after = match measured {
        // Alone again once the engine has seen the idle connections go: drift between
        // the first and the last figure is the machine's, not the engine's.
        Ok(_) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            ping_rate(&mut ws, target, secs, o.in_flight).await
        }
        Err(_) => Err("not measured".into()),
    };
    let _ = ws.close(None).await;
    let (with_idle, after) = (measured?, after?);
    if closed > 0 {
        return Err(format!("the engine closed {closed} idle connections during the run").into());
    }
    let kib = |b: Option<u64>| b.map(|b| b / 1024);
    let mut f = Fields::new();
    f.insert("idle_conns".into(), json!(o.idle_conns));
    f.insert(
        "open_wall_ms".into(),
        json!(round(open_wall.as_secs_f64() * 1e3)),
    );
    f.insert("in_flight".into(), json!(o.in_flight));
    f.insert("ping_secs".into(), json!(o.ping_secs));
    for (name, rate) in [("alone", alone), ("idle", with_idle), ("after", after)] {
        f.insert(format!("{name}_pings_per_s"), json!(rate.per_s.round()));
        let cpu = rate.engine_cpu_us.map(|us| (us * 100.0).round() / 100.0);
        f.insert(format!("{name}_engine_cpu_us_per_ping"), json!(cpu));
    }
    let slowdown = (alone.per_s + after.per_s) / 2.0 / with_idle.per_s;
    f.insert(
        "slowdown_x".into(),
        json!((slowdown * 100.0).round() / 100.0),
    );
    // The same in engine CPU per ping: what the idle connections cost each input.
    let cpu_ratio = match (
        alone.engine_cpu_us,
        with_idle.engine_cpu_us,
        after.engine_cpu_us,
    ) {
        (Some(a), Some(i), Some(b)) => json!((i / ((a + b) / 2.0) * 100.0).round() / 100.0),
        _ => Value::Null,
    };
    f.insert("engine_cpu_ratio_x".into(), cpu_ratio);
    f.insert("engine_rss_alone_kib".into(), json!(kib(rss_alone)));
    f.insert("engine_rss_idle_kib".into(), json!(kib(rss_idle)));
    let per = rss_alone
        .zip(rss_idle)
        .map(|(a, i)| i.saturating_sub(a) / o.idle_conns.max(1) as u64);
    f.insert("rss_per_idle_conn_bytes".into(), json!(per));
    f.insert("open_files_limit".into(), json!(limit));
    Ok(f)
}
