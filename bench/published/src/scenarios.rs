//! The scenarios, mirroring `bench/src/scenarios.rs` with client `ours` call for call:
//! the same workers (writer, reader, caller, callee), the same sizes, the same checks.
//! Like ours, a published-SDK channel end dials on its first write or read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{StreamExt, TryStreamExt};
use iii_sdk::channel::{ChannelReader, ChannelWriter, StreamChannelRef};
use iii_sdk::helpers::create_channel;
use iii_sdk::{Error, IIIClient, RegisterFunction};
use serde_json::{json, Map, Value};

use crate::shared::{pattern_byte, round, summary, verify, CHUNK, ECHO, MIB, PATTERN_CHUNKS, SINK};
use crate::{call, worker, BoxError, Opts, Steps, STEP};

/// Fields of the result line.
pub type Fields = Map<String, Value>;

/// Runs `o.scenario`.
pub async fn run(o: &Opts, mut steps: Steps) -> Result<Fields, BoxError> {
    match o.scenario.as_str() {
        "throughput" => throughput(o).await,
        "latency" => latency(o).await,
        "channel_rtt" => channel_rtt(o).await,
        "fanin" => fanin(o, &mut steps).await,
        "slow_reader" => slow_reader(o, &mut steps).await,
        other => Err(format!("unknown scenario {other}").into()),
    }
}

type Pool = Arc<Vec<Vec<u8>>>;

/// The 16 distinct chunks every stream cycles through.
fn pool() -> Pool {
    Arc::new(
        (0..PATTERN_CHUNKS as u8)
            .map(|k| vec![pattern_byte(k); CHUNK])
            .collect(),
    )
}

async fn pump(writer: ChannelWriter, bytes: u64, pool: Pool) -> Result<(), BoxError> {
    for i in 0..bytes / CHUNK as u64 {
        writer.write(&pool[(i % PATTERN_CHUNKS) as usize]).await?;
    }
    Ok(writer.close().await?)
}

async fn next(reader: &ChannelReader) -> Result<Option<Vec<u8>>, BoxError> {
    match tokio::time::timeout(STEP, reader.next_binary()).await {
        Ok(chunk) => Ok(chunk?),
        Err(_) => Err("read timed out".into()),
    }
}

async fn drain(reader: ChannelReader, bytes: u64, rate: Option<f64>) -> Result<u64, BoxError> {
    let start = Instant::now();
    let mut received = 0u64;
    while let Some(chunk) = next(&reader).await? {
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

/// A channel created by `a`; its reader is opened with `b`'s engine address.
async fn open_channel(
    a: &IIIClient,
    b: &IIIClient,
) -> Result<(ChannelWriter, ChannelReader), BoxError> {
    let channel = create_channel(a, None).await?;
    let reader = ChannelReader::new(b.address(), &channel.reader_ref);
    Ok((channel.writer, reader))
}

/// Streams `total` bytes split over `n` channels at once; returns MiB/s.
async fn streams(a: &IIIClient, b: &IIIClient, n: usize, total: u64) -> Result<f64, BoxError> {
    let per = (total / n as u64) / CHUNK as u64 * CHUNK as u64;
    let mut ends = Vec::new();
    for _ in 0..n {
        ends.push(open_channel(a, b).await?);
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

async fn throughput(o: &Opts) -> Result<Fields, BoxError> {
    let a = worker(o, "bench-writer").await?;
    let b = worker(o, "bench-reader").await?;
    let one = streams(&a, &b, 1, o.bytes).await?;
    let eight = streams(&a, &b, 8, o.bytes).await?;
    a.shutdown_async().await;
    b.shutdown_async().await;
    let mut f = Fields::new();
    f.insert("bytes".into(), json!(o.bytes));
    f.insert("one_channel_mib_s".into(), json!(round(one)));
    f.insert("eight_channels_mib_s".into(), json!(round(eight)));
    Ok(f)
}

fn handler_error(e: impl std::fmt::Display) -> Error {
    Error::Handler(e.to_string())
}

/// A worker serving [`SINK`] and [`ECHO`], once [`ECHO`] is callable from `caller`.
async fn callee(o: &Opts, caller: &IIIClient) -> Result<IIIClient, BoxError> {
    let iii = worker(o, "bench-callee").await?;
    let address = iii.address().to_owned();
    iii.register_function(
        SINK,
        RegisterFunction::new_async(move |input: Value| {
            let address = address.clone();
            async move {
                let reader_ref: StreamChannelRef =
                    serde_json::from_value(input["reader"].clone()).map_err(handler_error)?;
                let reader = ChannelReader::new(&address, &reader_ref);
                let mut n = 0usize;
                while let Some(chunk) = reader.next_binary().await? {
                    n += chunk.len();
                }
                Ok(json!({ "bytes": n }))
            }
        }),
    );
    iii.register_function(
        ECHO,
        RegisterFunction::new_async(|input: Value| async move { Ok::<_, Error>(input) }),
    );
    // SINK is registered before ECHO on the same connection: ECHO callable means both.
    for attempt in 0.. {
        match call(caller, ECHO, json!({ "probe": attempt })).await {
            Ok(_) => break,
            Err(_) if attempt < 100 => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(format!("echo never became callable: {e}").into()),
        }
    }
    Ok(iii)
}

async fn latency(o: &Opts) -> Result<Fields, BoxError> {
    let caller = worker(o, "bench-caller").await?;
    let callee = callee(o, &caller).await?;
    let mut samples = Vec::with_capacity(o.calls);
    for i in 0..(o.calls + o.calls / 10) {
        let t = Instant::now();
        let out = call(&caller, ECHO, json!({ "seq": i })).await?;
        let elapsed = t.elapsed();
        if out["seq"] != i {
            return Err(format!("echo mismatch: sent {i}, got {out}").into());
        }
        if i >= o.calls / 10 {
            samples.push(elapsed.as_secs_f64() * 1e6);
        }
    }
    let per_task = o.pipelined_calls / o.in_flight;
    let start = Instant::now();
    let tasks: Vec<_> = (0..o.in_flight)
        .map(|t| {
            let caller = caller.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let seq = t * per_task + i;
                    let out = call(&caller, ECHO, json!({ "seq": seq })).await?;
                    if out["seq"] != seq {
                        return Err::<(), BoxError>(format!("echo mismatch: {seq}, {out}").into());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let rate = (per_task * o.in_flight) as f64 / start.elapsed().as_secs_f64();
    callee.shutdown_async().await;
    caller.shutdown_async().await;
    let mut f = Fields::new();
    f.insert("sequential_calls".into(), json!(samples.len()));
    for (name, v) in summary(&mut samples) {
        f.insert(format!("seq_{name}_us"), json!(v));
    }
    f.insert("in_flight".into(), json!(o.in_flight));
    f.insert("calls_per_s".into(), json!(rate.round()));
    Ok(f)
}

async fn channel_rtt(o: &Opts) -> Result<Fields, BoxError> {
    let caller = worker(o, "bench-caller").await?;
    let callee = callee(o, &caller).await?;
    let payload = [7u8; 16];
    let warmup = o.rtt_count / 10;
    let mut samples = Vec::with_capacity(o.rtt_count);
    for i in 0..(o.rtt_count + warmup) {
        let t = Instant::now();
        let channel = create_channel(&caller, None).await?;
        let sink = call(&caller, SINK, json!({ "reader": channel.reader_ref }));
        let writer = channel.writer;
        let write = async {
            writer.write(&payload).await?;
            writer.close().await
        };
        let (answer, written) = tokio::join!(sink, write);
        written?;
        let answer = answer?;
        let elapsed = t.elapsed();
        if answer["bytes"] != 16 {
            return Err(format!("sink read {answer}, expected 16 bytes").into());
        }
        if i >= warmup {
            samples.push(elapsed.as_secs_f64() * 1e6);
        }
    }
    callee.shutdown_async().await;
    caller.shutdown_async().await;
    let mut f = Fields::new();
    f.insert("count".into(), json!(samples.len()));
    for (name, v) in summary(&mut samples) {
        f.insert(format!("{name}_us"), json!(v));
    }
    Ok(f)
}

async fn fanin(o: &Opts, steps: &mut Steps) -> Result<Fields, BoxError> {
    let a = worker(o, "bench-writer").await?;
    let b = worker(o, "bench-reader").await?;
    steps.step("idle").await?;
    let start = Instant::now();
    let open: Vec<(ChannelWriter, ChannelReader)> = futures_util::stream::iter(0..o.channels)
        .map(|_| {
            let (a, b) = (a.clone(), b.clone());
            async move {
                let (writer, reader) = open_channel(&a, &b).await?;
                writer.write(&[1]).await?;
                match next(&reader).await? {
                    Some(chunk) if chunk.len() == 1 => Ok::<_, BoxError>((writer, reader)),
                    other => Err(format!("attach probe read {other:?}").into()),
                }
            }
        })
        .buffer_unordered(64)
        .try_collect()
        .await?;
    let wall = start.elapsed();
    let list = call(&a, "engine::channels::list", json!({})).await?;
    let listed = list["channels"].as_array().map_or(0, Vec::len);
    if listed < o.channels {
        return Err(format!("engine lists {listed} channels, expected {}", o.channels).into());
    }
    steps.step("open").await?;
    drop(open);
    a.shutdown_async().await;
    b.shutdown_async().await;
    let mut f = Fields::new();
    f.insert("channels".into(), json!(o.channels));
    f.insert(
        "open_wall_ms".into(),
        json!(round(wall.as_secs_f64() * 1e3)),
    );
    Ok(f)
}

async fn slow_reader(o: &Opts, steps: &mut Steps) -> Result<Fields, BoxError> {
    let a = worker(o, "bench-writer").await?;
    let b = worker(o, "bench-reader").await?;
    let (writer, reader) = open_channel(&a, &b).await?;
    steps.step("idle").await?;
    let rate = o.read_rate_mib * MIB;
    let bytes = o.bytes / CHUNK as u64 * CHUNK as u64;
    let start = Instant::now();
    let write_task = tokio::spawn(async move {
        pump(writer, bytes, pool()).await?;
        Ok::<_, BoxError>(start.elapsed())
    });
    let read_task = tokio::spawn(drain(reader, bytes, Some(rate)));
    read_task.await??;
    let write_secs = write_task.await??.as_secs_f64();
    let secs = start.elapsed().as_secs_f64();
    a.shutdown_async().await;
    b.shutdown_async().await;
    let mut f = Fields::new();
    f.insert("bytes".into(), json!(bytes));
    f.insert("read_rate_mib_s".into(), json!(o.read_rate_mib));
    f.insert(
        "achieved_mib_s".into(),
        json!(round(bytes as f64 / MIB / secs)),
    );
    f.insert("writer_done_s".into(), json!(round(write_secs)));
    Ok(f)
}
