//! A fast writer and a slow reader (4 MiB/s) through the `iii-engine` binary: the engine's
//! resident memory stays within idle + the channel byte limit + a fixed allowance.
//!
//! The bound checked here is the one documented in the README: peak RSS ≤ idle RSS +
//! `channel_buffer_bytes` (4 MiB by default) + 8 MiB for socket, WebSocket and allocator
//! buffers.

use std::time::{Duration, Instant};

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{json, Value};

const CHANNEL_BUFFER_BYTES: u64 = 4 << 20;
const ALLOWANCE: u64 = 8 << 20;
const READ_RATE: u64 = 4 << 20; // bytes per second
const TOTAL: u64 = 40 << 20;

mod support;

use support::EngineProcess as Engine;

fn rss_bytes(engine: &Engine) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", engine.child.id())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_keeps_the_engines_memory_bounded() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: needs /proc to read the engine's RSS");
        return;
    }
    let engine = Engine::start("127.0.0.1:0");
    let (mut control, _) = connect_async(&engine.url).await.expect("control");
    control.next().await; // workerregistered
    let call = json!({"type": "invokefunction", "invocation_id": "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60",
        "function_id": "engine::channels::create", "data": {}});
    control
        .send(Message::text(call.to_string()))
        .await
        .expect("send");
    let refs: Value = loop {
        if let Some(Ok(Message::Text(text))) = control.next().await {
            break serde_json::from_str::<Value>(&text).expect("json")["result"].clone();
        }
    };
    let url = |r: &Value| {
        format!(
            "{}/ws/channels/{}?key={}&dir={}",
            engine.url,
            r["channel_id"].as_str().unwrap_or(""),
            r["access_key"].as_str().unwrap_or(""),
            r["direction"].as_str().unwrap_or("")
        )
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let idle = rss_bytes(&engine);
    let (mut reader, _) = connect_async(url(&refs["reader"])).await.expect("reader");
    let (mut writer, _) = connect_async(url(&refs["writer"])).await.expect("writer");

    let writing = tokio::spawn(async move {
        let chunk = vec![0x5au8; 64 * 1024];
        let mut sent = 0u64;
        while sent < TOTAL {
            writer
                .send(Message::binary(chunk.clone()))
                .await
                .expect("write");
            sent += chunk.len() as u64;
        }
        writer.close(None).await.expect("close");
    });

    let start = Instant::now();
    let mut received = 0u64;
    let mut peak = idle;
    loop {
        match tokio::time::timeout(Duration::from_secs(30), reader.next())
            .await
            .expect("timely")
        {
            Some(Ok(Message::Binary(bytes))) => received += bytes.len() as u64,
            Some(Ok(Message::Close(frame))) => {
                assert!(frame.is_none(), "clean end");
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
        // Pace the reader to READ_RATE.
        let due = start + Duration::from_secs_f64(received as f64 / READ_RATE as f64);
        tokio::time::sleep_until(due.into()).await;
        peak = peak.max(rss_bytes(&engine));
    }
    writing.await.expect("writer task");
    assert_eq!(received, TOTAL);
    let bound = idle + CHANNEL_BUFFER_BYTES + ALLOWANCE;
    eprintln!(
        "engine RSS: idle {} KiB, peak {} KiB, bound {} KiB, {:.1} s",
        idle / 1024,
        peak / 1024,
        bound / 1024,
        start.elapsed().as_secs_f64()
    );
    assert!(
        peak <= bound,
        "engine RSS peaked at {peak} bytes, over {bound}"
    );
}
