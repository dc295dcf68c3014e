//! The end-to-end scenarios. Each returns the fields of its JSON line and fails on any
//! wrong byte count or echoed payload.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{json, Map, Value};

use crate::client::{Callee, Reader, Side, Writer};
use crate::raw;
use crate::shared::{pattern_byte, PATTERN_CHUNKS};
use crate::target::Target;
use crate::{BoxError, Opts, CHUNK, SINK};

/// Fields of one JSON line.
pub type Fields = Map<String, Value>;

pub use crate::shared::{expected, percentile, round, summary, verify, MIB};

/// The 16 distinct chunks that every stream cycles through (cheap clones).
pub fn pool() -> Vec<Bytes> {
    (0..PATTERN_CHUNKS as u8)
        .map(|k| Bytes::from(vec![pattern_byte(k); CHUNK]))
        .collect()
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn pump(mut writer: Writer, bytes: u64, pool: Vec<Bytes>) -> Result<(), BoxError> {
    let chunks = bytes / CHUNK as u64;
    for i in 0..chunks {
        writer.write(pool[(i % 16) as usize].clone()).await?;
    }
    writer.close().await
}

async fn drain(mut reader: Reader, bytes: u64, rate: Option<f64>) -> Result<u64, BoxError> {
    let start = Instant::now();
    let mut received = 0u64;
    while let Some(chunk) = reader.next().await? {
        verify(received, &chunk)?;
        received += chunk.len() as u64;
        if let Some(rate) = rate {
            let due = start + Duration::from_secs_f64(received as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }
    if received != bytes {
        return Err(format!("reader got {received} bytes, expected {bytes}").into());
    }
    Ok(received)
}

/// Streams `total` bytes split over `n` channels at once; returns MiB/s.
async fn streams(a: &Side, b: &Side, n: usize, total: u64) -> Result<f64, BoxError> {
    let per = (total / n as u64) / CHUNK as u64 * CHUNK as u64;
    let mut ends = Vec::new();
    for _ in 0..n {
        ends.push(a.open_channel(b).await?);
    }
    let pool = pool();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (writer, reader) in ends {
        tasks.push(tokio::spawn(pump(writer, per, pool.clone())));
        tasks.push(tokio::spawn(async move {
            drain(reader, per, None).await.map(|_| ())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(per as f64 * n as f64 / MIB / start.elapsed().as_secs_f64())
}

/// `throughput`: `--bytes` through one channel, then through 8 channels at once.
pub async fn throughput(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let url = target.url();
    let a = Side::connect(o.client, &url, "bench-writer").await?;
    let b = Side::connect(o.client, &url, "bench-reader").await?;
    let cpu_start = target.cpu();
    let one = streams(&a, &b, 1, o.bytes).await?;
    let cpu_one = target.cpu();
    let eight = streams(&a, &b, 8, o.bytes).await?;
    let cpu_eight = target.cpu();
    a.shutdown().await;
    b.shutdown().await;
    let mut f = Fields::new();
    f.insert("bytes".into(), json!(o.bytes));
    f.insert("one_channel_mib_s".into(), json!(round(one)));
    f.insert("eight_channels_mib_s".into(), json!(round(eight)));
    // The engine's CPU per GiB moved (child engine only): less sensitive than MiB/s to
    // what else the machine runs.
    let gib = o.bytes as f64 / (1u64 << 30) as f64;
    for (name, from, to) in [("one", cpu_start, cpu_one), ("eight", cpu_one, cpu_eight)] {
        let per_gib = from
            .zip(to)
            .map(|(from, to)| round(to.saturating_sub(from).as_secs_f64() * 1e3 / gib));
        f.insert(format!("{name}_engine_cpu_ms_per_gib"), json!(per_gib));
    }
    Ok(f)
}

/// `channel_rtt`: create a channel, hand its reader to a function, write 16 bytes,
/// close, await the function's answer.
pub async fn channel_rtt(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let url = target.url();
    let caller = Side::connect(o.client, &url, "bench-caller").await?;
    let callee = Callee::start(o.client, &url, &caller).await?;
    let payload = Bytes::from_static(&[7u8; 16]);
    let warmup = o.rtt_count / 10;
    let mut samples = Vec::with_capacity(o.rtt_count);
    for i in 0..(o.rtt_count + warmup) {
        let t = Instant::now();
        let answer = match &caller {
            Side::Ours(iii) => {
                let channel = iii.create_channel(None).await?;
                let call = iii.trigger(SINK, json!({ "reader": channel.reader_ref }));
                let writer = channel.writer;
                let write = async {
                    writer.write_bytes(payload.clone()).await?;
                    writer.close().await
                };
                let (answer, written) = tokio::join!(call, write);
                written?;
                answer?
            }
            Side::Raw { url, control } => {
                let refs = control.create_channel().await?;
                let call = control.call(SINK, json!({ "reader": refs.reader }));
                let write = async {
                    let mut ws = raw::open_end(url, &refs.writer).await?;
                    raw::write(&mut ws, payload.clone()).await?;
                    raw::close(&mut ws).await
                };
                let (answer, written) = tokio::join!(call, write);
                written?;
                answer?
            }
        };
        let elapsed = t.elapsed();
        if answer["bytes"] != 16 {
            return Err(format!("sink read {answer}, expected 16 bytes").into());
        }
        if i >= warmup {
            samples.push(micros(elapsed));
        }
    }
    callee.stop().await;
    caller.shutdown().await;
    let mut f = Fields::new();
    f.insert("count".into(), json!(samples.len()));
    for (name, v) in summary(&mut samples) {
        f.insert(format!("{name}_us"), json!(v));
    }
    Ok(f)
}

async fn channel_count(side: &Side) -> Result<usize, BoxError> {
    let list = side.call("engine::channels::list", json!({})).await?;
    Ok(list["channels"].as_array().map_or(0, Vec::len))
}

/// `fanin`: `--channels` channels open at once with both ends attached and idle.
pub async fn fanin(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let url = target.url();
    let rss_start = target.rss();
    let a = Side::connect(o.client, &url, "bench-writer").await?;
    let b = Side::connect(o.client, &url, "bench-reader").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = target.rss();
    let start = Instant::now();
    let open: Vec<(Writer, Reader)> = futures_util::stream::iter(0..o.channels)
        .map(|_| {
            let (a, b) = (a.clone(), b.clone());
            async move {
                let (mut writer, mut reader) = a.open_channel(&b).await?;
                writer.write(Bytes::from_static(&[1])).await?;
                match reader.next().await? {
                    Some(chunk) if chunk.len() == 1 => Ok::<_, BoxError>((writer, reader)),
                    other => Err(format!("attach probe read {other:?}").into()),
                }
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let wall = start.elapsed();
    let listed = channel_count(&a).await?;
    if listed < o.channels {
        return Err(format!("engine lists {listed} channels, expected {}", o.channels).into());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = target.rss();
    drop(open);
    a.shutdown().await;
    b.shutdown().await;
    let mut f = Fields::new();
    f.insert("channels".into(), json!(o.channels));
    f.insert(
        "open_wall_ms".into(),
        json!(round(wall.as_secs_f64() * 1e3)),
    );
    fanin_rss(&mut f, o.channels, [rss_start, rss_idle, rss_open]);
    Ok(f)
}

/// Adds `fanin`'s RSS fields from the engine's RSS at start, idle (workers connected) and
/// with `channels` channels open.
pub fn fanin_rss(f: &mut Fields, channels: usize, [start, idle, open]: [Option<u64>; 3]) {
    f.insert(
        "engine_rss_start_kib".into(),
        json!(start.map(|b| b / 1024)),
    );
    f.insert("engine_rss_idle_kib".into(), json!(idle.map(|b| b / 1024)));
    f.insert("engine_rss_open_kib".into(), json!(open.map(|b| b / 1024)));
    let per = match (idle, open) {
        (Some(idle), Some(open)) => json!(open.saturating_sub(idle) / channels as u64),
        _ => Value::Null,
    };
    f.insert("rss_per_channel_bytes".into(), per);
}

/// The engine's peak RSS over a stretch of time, sampled by the caller.
pub struct PeakRss {
    idle: Option<u64>,
    peak: u64,
    samples: u64,
}

impl PeakRss {
    /// Starts from the idle RSS (`None`: the engine's RSS is not readable).
    pub fn new(idle: Option<u64>) -> Self {
        Self {
            idle,
            peak: idle.unwrap_or(0),
            samples: 0,
        }
    }

    /// Takes one sample of `target`'s RSS.
    pub fn sample(&mut self, target: &Target) {
        if let Some(rss) = target.rss() {
            self.peak = self.peak.max(rss);
            self.samples += 1;
        }
    }

    /// Adds `slow_reader`'s RSS fields.
    pub fn fields(&self, f: &mut Fields) {
        f.insert("rss_samples".into(), json!(self.samples));
        f.insert(
            "engine_rss_idle_kib".into(),
            json!(self.idle.map(|b| b / 1024)),
        );
        let peak = self.idle.map(|_| self.peak);
        f.insert("engine_rss_peak_kib".into(), json!(peak.map(|b| b / 1024)));
        f.insert(
            "engine_rss_growth_kib".into(),
            json!(peak.zip(self.idle).map(|(p, i)| p.saturating_sub(i) / 1024)),
        );
    }
}

/// `slow_reader`: `--bytes` written as fast as possible to a reader consuming
/// `--read-rate-mib` MiB/s; samples the engine's RSS.
pub async fn slow_reader(target: &Target, o: &Opts) -> Result<Fields, BoxError> {
    let url = target.url();
    let a = Side::connect(o.client, &url, "bench-writer").await?;
    let b = Side::connect(o.client, &url, "bench-reader").await?;
    let (writer, reader) = a.open_channel(&b).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_idle = target.rss();
    let rate = o.read_rate_mib * MIB;
    let bytes = o.bytes / CHUNK as u64 * CHUNK as u64;
    let start = Instant::now();
    let write_task = tokio::spawn(async move {
        pump(writer, bytes, pool()).await?;
        Ok::<_, BoxError>(start.elapsed())
    });
    let read_task = tokio::spawn(drain(reader, bytes, Some(rate)));
    let mut rss = PeakRss::new(rss_idle);
    while !read_task.is_finished() {
        tokio::time::sleep(Duration::from_millis(50)).await;
        rss.sample(target);
    }
    read_task.await??;
    let write_secs = write_task.await??.as_secs_f64();
    let secs = start.elapsed().as_secs_f64();
    a.shutdown().await;
    b.shutdown().await;
    let mut f = Fields::new();
    f.insert("bytes".into(), json!(bytes));
    f.insert("read_rate_mib_s".into(), json!(o.read_rate_mib));
    f.insert(
        "achieved_mib_s".into(),
        json!(round(bytes as f64 / MIB / secs)),
    );
    f.insert("writer_done_s".into(), json!(round(write_secs)));
    rss.fields(&mut f);
    Ok(f)
}
