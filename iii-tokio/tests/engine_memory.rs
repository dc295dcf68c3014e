//! A fast writer and a slow reader (4 MiB/s), then a reader that stops reading, through
//! the `iii-engine` binary: the engine's resident memory stays within idle + the channel
//! byte limit + a fixed allowance.
//!
//! The bound checked here is the one documented in the README: peak RSS ≤ idle RSS +
//! `channel_buffer_bytes` (4 MiB by default) + 8 MiB for socket, WebSocket and allocator
//! buffers.

mod common;

use std::time::{Duration, Instant};

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::Message;
use common::Engine;
use futures_util::StreamExt;
use serde_json::{json, Value};

const CHANNEL_BUFFER_BYTES: u64 = 4 << 20;
const ALLOWANCE: u64 = 8 << 20;
const READ_RATE: u64 = 4 << 20; // bytes per second
const TOTAL: u64 = 40 << 20;

type Ws = async_tungstenite::WebSocketStream<async_tungstenite::tokio::ConnectStream>;

/// Creates a channel, measures the engine's idle RSS, and attaches both ends; returns
/// the idle RSS, the reader, the writer and the control connection (keep it open).
async fn open_channel(engine: &Engine) -> (u64, Ws, Ws, Ws) {
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
    let idle = engine.rss_bytes();
    let (reader, _) = connect_async(url(&refs["reader"])).await.expect("reader");
    let (writer, _) = connect_async(url(&refs["writer"])).await.expect("writer");
    (idle, reader, writer, control)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_stops_reading_costs_at_most_the_channel_limit() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: needs /proc to read the engine's RSS");
        return;
    }
    let engine = Engine::start();
    let (idle, _reader, mut writer, _control) = open_channel(&engine).await;
    // Write until the engine stops reading the writer (its sends stop completing).
    let chunk = vec![0xa5u8; 64 * 1024];
    let mut sent = 0u64;
    loop {
        let send = writer.send(Message::binary(chunk.clone()));
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Ok(result) => {
                result.expect("write");
                sent += chunk.len() as u64;
            }
            Err(_) => break, // paused: the socket buffers are full
        }
        assert!(sent < (1 << 30), "the writer was never paused");
    }
    let peak = engine.rss_bytes();
    let bound = idle + CHANNEL_BUFFER_BYTES + ALLOWANCE;
    eprintln!(
        "stopped reader: idle {} KiB, held {} KiB, {} KiB written before the pause",
        idle / 1024,
        peak / 1024,
        sent / 1024
    );
    assert!(peak <= bound, "engine RSS {peak} bytes, over {bound}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_keeps_the_engines_memory_bounded() {
    if !std::path::Path::new("/proc/self/status").exists() {
        eprintln!("skipped: needs /proc to read the engine's RSS");
        return;
    }
    let engine = Engine::start();
    let (idle, mut reader, mut writer, _control) = open_channel(&engine).await;
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
        peak = peak.max(engine.rss_bytes());
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
