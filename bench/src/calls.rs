//! The call scenarios: `latency` (sequential round trips, then a window of calls in
//! flight) and `soak` (millions of calls in flight, engine RSS over time). Every call
//! carries a unique payload and its answer is checked against it ([`Tally`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use iii_tokio::worker::{Error, Iii};
use serde_json::{json, Value};

use crate::client::{Callee, Kind, Side};
use crate::pipeline::{pipeline, Exchange, Until};
use crate::raw::{self, Ws};
use crate::scenarios::{Fields, PeakRss};
use crate::shared::round;
use crate::tally::{payload, Tally};
use crate::target::Target;
use crate::{BoxError, Opts, ECHO};

/// Who makes the checked calls.
pub enum Caller<'a> {
    /// An SDK worker: `in_flight` tasks, each calling `Iii::trigger_with_timeout`.
    Ours(&'a Iii),
    /// A raw control connection of its own, driven by [`pipeline`].
    Raw(&'a mut Ws),
}

/// Makes calls `first..first + calls` of [`ECHO`] (payload [`payload`]`(seq)`) with
/// `in_flight` outstanding; a call unanswered after `timeout` is lost. Every completed
/// call is added to `progress`. Returns the tally and the time taken.
pub async fn checked_calls(
    caller: &mut Caller<'_>,
    first: u64,
    calls: u64,
    in_flight: usize,
    timeout: Duration,
    progress: &Arc<AtomicU64>,
) -> Result<(Tally, Duration), BoxError> {
    match caller {
        Caller::Ours(iii) => {
            let next = Arc::new(AtomicU64::new(first));
            let end = first + calls;
            let start = Instant::now();
            let tasks: Vec<_> = (0..in_flight.max(1))
                .map(|_| {
                    let (iii, next, progress) = ((*iii).clone(), next.clone(), progress.clone());
                    tokio::spawn(async move {
                        let mut tally = Tally::new();
                        loop {
                            let seq = next.fetch_add(1, Ordering::Relaxed);
                            if seq >= end {
                                return tally;
                            }
                            let sent = Instant::now();
                            match iii.trigger_with_timeout(ECHO, payload(seq), timeout).await {
                                Ok(answer) => tally.check(seq, &answer, sent.elapsed()),
                                Err(e @ (Error::CallTimeout { .. } | Error::Disconnected)) => {
                                    tally.lost(seq, &e.to_string())
                                }
                                Err(e) => tally.error(seq, &e.to_string()),
                            }
                            progress.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
                .collect();
            let mut tally = Tally::new();
            for task in tasks {
                tally.merge(task.await?);
            }
            Ok((tally, start.elapsed()))
        }
        Caller::Raw(ws) => {
            let mut exchange = Calls {
                first,
                pending: BTreeMap::new(),
                tally: Tally::new(),
                timeout,
            };
            let run = pipeline(ws, Until::Count(calls), in_flight, &mut exchange, progress).await?;
            Ok((exchange.tally, run.elapsed))
        }
    }
}

/// Echo calls over a raw control connection, matched to their answers by invocation id.
struct Calls {
    first: u64,
    pending: BTreeMap<String, (u64, Instant)>,
    tally: Tally,
    timeout: Duration,
}

impl Exchange for Calls {
    fn request(&mut self, n: u64, now: Instant) -> Message {
        let seq = self.first + n;
        let id = raw::invocation_id();
        let message = raw::invoke(&id, ECHO, &payload(seq));
        self.pending.insert(id, (seq, now));
        Message::text(message.to_string())
    }

    fn answer(&mut self, text: &str, now: Instant) -> Result<u64, BoxError> {
        let message: Value = serde_json::from_str(text)?;
        if message["type"] != "invocationresult" {
            return Ok(0);
        }
        let id = message["invocation_id"].as_str().unwrap_or_default();
        let Some((seq, sent)) = self.pending.remove(id) else {
            self.tally.unexpected(&format!("invocation {id}"));
            return Ok(0);
        };
        match raw::result_of(&message) {
            Ok(result) => self
                .tally
                .check(seq, &result, now.saturating_duration_since(sent)),
            Err(e) => self.tally.error(seq, &e.to_string()),
        }
        Ok(1)
    }

    fn sweep(&mut self, now: Instant) -> Result<u64, BoxError> {
        let timeout = self.timeout;
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, (_, sent))| now.saturating_duration_since(*sent) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        for id in &expired {
            if let Some((seq, _)) = self.pending.remove(id) {
                self.tally.lost(seq, "no answer within --call-timeout-secs");
            }
        }
        Ok(expired.len() as u64)
    }
}

/// The caller worker (for the callee's readiness probe) and, for the raw client, the
/// control connection of its own that makes the measured calls.
async fn connect(o: &Opts, url: &str) -> Result<(Side, Callee, Option<Ws>), BoxError> {
    let caller = Side::connect(o.client, url, "bench-caller").await?;
    let callee = Callee::start(o.client, url, &caller).await?;
    let ws = match o.client {
        Kind::Raw => Some(raw::control(url).await?),
        _ => None,
    };
    Ok((caller, callee, ws))
}

fn caller<'a>(side: &'a Side, ws: &'a mut Option<Ws>) -> Result<Caller<'a>, BoxError> {
    match (side, ws) {
        (Side::Ours(iii), _) => Ok(Caller::Ours(iii)),
        (Side::Raw { .. }, Some(ws)) => Ok(Caller::Raw(ws)),
        (Side::Raw { .. }, None) => Err("the raw caller has no control connection".into()),
    }
}

/// `latency`: `--calls` sequential round trips (after 10 % warm-up), then
/// `--pipelined-calls` with `--in-flight` outstanding: calls/s.
pub async fn latency(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let url = target.url();
    let (side, callee, mut ws) = connect(o, &url).await?;
    let mut c = caller(&side, &mut ws)?;
    let timeout = Duration::from_secs(o.call_timeout_secs);
    let progress = Arc::new(AtomicU64::new(0));
    let (warmup, calls) = (o.calls as u64 / 10, o.calls as u64);
    let (w, _) = checked_calls(&mut c, 0, warmup, 1, timeout, &progress).await?;
    let (seq, _) = checked_calls(&mut c, warmup, calls, 1, timeout, &progress).await?;
    let first = warmup + calls;
    let n = o.pipelined_calls as u64;
    let (piped, elapsed) = checked_calls(&mut c, first, n, o.in_flight, timeout, &progress).await?;
    for tally in [&w, &seq, &piped] {
        tally.result()?;
    }
    if let Some(ws) = ws.as_mut() {
        let _ = ws.close(None).await;
    }
    callee.stop().await;
    side.shutdown().await;
    let mut f = Fields::new();
    f.insert("sequential_calls".into(), json!(seq.ok));
    seq.latency_fields(&mut f, "seq_");
    f.insert("in_flight".into(), json!(o.in_flight));
    f.insert(
        "calls_per_s".into(),
        json!((n as f64 / elapsed.as_secs_f64()).round()),
    );
    piped.latency_fields(&mut f, "pipelined_");
    Ok(f)
}

/// `soak`: `--soak-calls` calls with `--in-flight` outstanding, each answer checked;
/// the engine's RSS sampled every second. Any lost, mismatched, failed or unexpected
/// answer sets the line's `failed` field (the run exits non-zero).
pub async fn soak(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let url = target.url();
    let rss_start = target.rss();
    let (side, callee, mut ws) = connect(o, &url).await?;
    let mut c = caller(&side, &mut ws)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rss = PeakRss::new(target.rss());
    let timeout = Duration::from_secs(o.call_timeout_secs);
    let progress = Arc::new(AtomicU64::new(0));
    let calls = o.soak_calls;
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut deciles: Vec<Option<u64>> = Vec::new();
    let run = checked_calls(&mut c, 0, calls, o.in_flight, timeout, &progress);
    let (tally, elapsed) = {
        tokio::pin!(run);
        loop {
            tokio::select! {
                out = &mut run => break out?,
                _ = tick.tick() => {
                    rss.sample(target);
                    let done = progress.load(Ordering::Relaxed);
                    while deciles.len() < 10 && (deciles.len() as u64 + 1) * calls / 10 <= done {
                        let now = target.rss();
                        deciles.push(now.map(|b| b / 1024));
                        eprintln!(
                            "iii-bench soak: {}0 % ({done} calls, {:.0} calls/s), engine RSS {} KiB",
                            deciles.len(),
                            done as f64 / start.elapsed().as_secs_f64(),
                            now.map_or("?".into(), |b| (b / 1024).to_string()),
                        );
                    }
                }
            }
        }
    };
    let rss_end = target.rss();
    rss.sample(target);
    if deciles.len() < 10 {
        deciles.push(rss_end.map(|b| b / 1024));
    }
    if let Some(ws) = ws.as_mut() {
        let _ = ws.close(None).await;
    }
    callee.stop().await;
    side.shutdown().await;
    let mut f = Fields::new();
    f.insert("calls".into(), json!(calls));
    f.insert("in_flight".into(), json!(o.in_flight));
    f.insert("duration_s".into(), json!(round(elapsed.as_secs_f64())));
    f.insert(
        "calls_per_s".into(),
        json!((calls as f64 / elapsed.as_secs_f64()).round()),
    );
    tally.fields(&mut f, "");
    let kib = |b: Option<u64>| b.map(|b| b / 1024);
    f.insert("engine_rss_start_kib".into(), json!(kib(rss_start)));
    rss.fields(&mut f);
    let warm = deciles.first().copied().flatten();
    f.insert("engine_rss_warm_kib".into(), json!(warm));
    f.insert("engine_rss_end_kib".into(), json!(kib(rss_end)));
    let drift = warm
        .zip(kib(rss_end))
        .map(|(warm, end)| end as i64 - warm as i64);
    f.insert("engine_rss_drift_kib".into(), json!(drift));
    f.insert("engine_rss_deciles_kib".into(), json!(deciles));
    let answered = tally.ok + tally.lost + tally.mismatched + tally.errors;
    if let Err(problem) = tally.result() {
        f.insert("failed".into(), json!(problem));
    } else if answered != calls {
        f.insert(
            "failed".into(),
            json!(format!("{answered} of {calls} calls accounted for")),
        );
    }
    Ok(f)
}
