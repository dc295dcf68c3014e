//! Benchmark of a channel writer fed by small writes: `tokio::io::copy` (8 KiB writes)
//! against `tokio::io::copy_buf` with a 256 KiB buffer, 200 MiB each, through an
//! in-process engine on loopback. `cargo run --release -p iii-tokio --example
//! small_writes --no-default-features [ROUNDS]`; results in BENCHMARKS.md.

use std::time::{Duration, Instant};

use iii_tokio::engine::{bind, EngineSettings};
use iii_tokio::worker::{connect, ChannelReader, ChannelRef, Error, Iii, WorkerOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, BufReader};

const TOTAL: u64 = 200 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(Ok(3), |n| n.parse())
        .unwrap_or(3);
    let engine = bind("127.0.0.1:0", EngineSettings::default()).await?;
    let url = engine.url();
    let options = |name: &str| WorkerOptions {
        url: Some(url.clone()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    };
    let sink = connect(options("sink"))?;
    let me = sink.clone();
    sink.register_function("bench::count", move |input: Value| {
        let iii = me.clone();
        async move {
            let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
            let mut reader = ChannelReader::new(&iii, &reader_ref);
            let (mut total, mut frames) = (0u64, 0u64);
            while let Some(chunk) = reader.next_binary().await? {
                total += chunk.len() as u64;
                frames += 1;
            }
            Ok::<_, Error>(json!({"bytes": total, "frames": frames}))
        }
    })?;
    sink.wait_registered(Duration::from_secs(10)).await?;
    let source = connect(options("source"))?;
    source.wait_connected(Duration::from_secs(10)).await?;
    for round in 1..=rounds {
        for pattern in [Pattern::Copy, Pattern::CopyBuf] {
            let (seconds, frames) = transfer(&source, pattern).await?;
            println!(
                "round {round} {:<26} {:>7.1} MiB/s {frames:>6} frames",
                pattern.label(),
                TOTAL as f64 / (1 << 20) as f64 / seconds
            );
        }
    }
    source.shutdown().await;
    sink.shutdown().await;
    engine.shutdown().await;
    Ok(())
}

#[derive(Clone, Copy)]
enum Pattern {
    /// `tokio::io::copy`: 8 KiB writes.
    Copy,
    /// `tokio::io::copy_buf` over a 256 KiB `BufReader`.
    CopyBuf,
}

impl Pattern {
    fn label(self) -> &'static str {
        match self {
            Pattern::Copy => "copy (8 KiB writes)",
            Pattern::CopyBuf => "copy_buf (256 KiB buffer)",
        }
    }
}

/// Seconds and frames (binary messages the reader got) of one 200 MiB transfer.
async fn transfer(iii: &Iii, pattern: Pattern) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let channel = iii.create_channel(None).await?;
    let start = Instant::now();
    let counted = iii.trigger("bench::count", json!({"reader": channel.reader_ref}));
    let mut writer = channel.writer;
    let writing = async move {
        let mut zeros = tokio::io::repeat(7).take(TOTAL);
        match pattern {
            Pattern::Copy => tokio::io::copy(&mut zeros, &mut writer).await?,
            Pattern::CopyBuf => {
                let mut buffered = BufReader::with_capacity(256 << 10, zeros);
                tokio::io::copy_buf(&mut buffered, &mut writer).await?
            }
        };
        writer.close().await?;
        Ok::<_, std::io::Error>(())
    };
    let (count, written) = tokio::join!(counted, writing);
    written?;
    let count = count?;
    assert_eq!(count["bytes"], json!(TOTAL));
    let frames = count["frames"].as_u64().unwrap_or(0);
    Ok((start.elapsed().as_secs_f64(), frames))
}
