//! The interop scenarios. Each panics with a precise message when the SDKs and our engine
//! disagree. All waits are bounded.

use std::time::{Duration, Instant};

use async_tungstenite::tokio::connect_async;
use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{json, Value};

use super::bytes::{generate, sha256_hex};
use super::control::{CallError, Driver, DRIVER_ECHO};
use super::peer::Peer;
use super::{harness, log_tail};

/// Timeout of an ordinary call.
pub const CALL: Duration = Duration::from_secs(30);
/// Timeout of one 16 MiB matrix transfer (both ends).
pub const TRANSFER: Duration = Duration::from_secs(240);
/// Size of one matrix transfer.
pub const MATRIX_BYTES: usize = 16 << 20;

fn f(peer: &str, function: &str) -> String {
    format!("interop.{peer}.{function}")
}

async fn call_ok(driver: &Driver, function_id: &str, data: Value) -> Value {
    driver
        .call(function_id, data, CALL)
        .await
        .unwrap_or_else(|e| panic!("{function_id} failed: {e}"))
}

/// `peer` registers a function the driver can call.
pub async fn echo(peer: &str) {
    let driver = harness().driver();
    let result = call_ok(driver, &f(peer, "echo"), json!({"value": 42})).await;
    assert_eq!(result, json!({"sdk": peer, "value": 42}), "echo of {peer}");
}

/// `peer` is called by another worker and calls back into it (the driver), including a
/// call without any payload; and a call chain `peer` → `other` → back into `peer` while
/// `peer`'s first handler is still waiting.
pub async fn call_back(peer: &str, other: &str) {
    let driver = harness().driver();
    let result = call_ok(
        driver,
        &f(peer, "call"),
        json!({"function_id": DRIVER_ECHO, "payload": {"value": "cb"}}),
    )
    .await;
    assert_eq!(
        result["ok"]["value"], "cb",
        "{peer} calling the driver back: {result}"
    );
    assert_eq!(result["ok"]["data_present"], true);
    // No payload at all: Python and Node then send `invokefunction` without `data`.
    let result = call_ok(
        driver,
        &f(peer, "call"),
        json!({"function_id": DRIVER_ECHO}),
    )
    .await;
    assert_eq!(
        result["ok"]["sdk"], "driver",
        "{peer} calling with no payload must reach the target: {result}"
    );
    assert_eq!(result["ok"]["value"], Value::Null);
    let nested = json!({"function_id": f(other, "call"),
        "payload": {"function_id": f(peer, "echo"), "payload": {"value": 7}}});
    let result = call_ok(driver, &f(peer, "call"), nested).await;
    assert_eq!(
        result,
        json!({"ok": {"ok": {"sdk": peer, "value": 7}}}),
        "{peer} -> {other} -> {peer}"
    );
}

/// Calling an unknown function gives `function_not_found`, directly and from `peer`.
pub async fn unknown_function(peer: &str) {
    let driver = harness().driver();
    let missing = format!("interop.{peer}.no-such-function");
    let direct = driver.call(&missing, json!({}), CALL).await;
    match direct {
        Err(e @ CallError::Remote(_)) => {
            assert_eq!(e.code(), "function_not_found", "{e}");
        }
        other => panic!("calling {missing} directly: expected function_not_found, got {other:?}"),
    }
    let result = call_ok(driver, &f(peer, "call"), json!({"function_id": missing})).await;
    assert_eq!(
        result["error"]["code"], "function_not_found",
        "{peer} calling {missing}: {result}"
    );
}

/// A handler of `peer` that throws returns its error to the caller, directly and to a
/// caller in another SDK (`other`).
pub async fn handler_error(peer: &str, other: &str) {
    let driver = harness().driver();
    let expected = format!("boom from {peer}: m1");
    match driver
        .call(&f(peer, "fail"), json!({"msg": "m1"}), CALL)
        .await
    {
        Err(e @ CallError::Remote(_)) => {
            assert_eq!(e.code(), "invocation_failed", "{e}");
            assert!(e.message().contains(&expected), "{e}");
        }
        other => panic!("{peer}.fail: expected an invocation_failed error, got {other:?}"),
    }
    let result = call_ok(
        driver,
        &f(other, "call"),
        json!({"function_id": f(peer, "fail"), "payload": {"msg": "m1"}}),
    )
    .await;
    assert_eq!(
        result["error"]["code"], "invocation_failed",
        "{other} calling {peer}.fail: {result}"
    );
    let message = result["error"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(&expected),
        "{other} calling {peer}.fail: {result}"
    );
}

/// The seed's sender → processor, in `peer`'s language: the writer closes before the
/// reader is triggered.
pub async fn seed_sender_processor(peer: &str) {
    let driver = harness().driver();
    let records = json!([
        {"name": "cpu", "value": 12}, {"name": "mem", "value": 100},
        {"name": "disk", "value": 250}, {"name": "net", "value": 157},
        {"name": "gpu", "value": 2048},
    ]);
    let result = call_ok(driver, &f(peer, "data.sender"), json!({"records": records})).await;
    assert_eq!(result["label"], "metrics-batch", "{result}");
    let stats = result["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {result}"));
    assert_eq!(stats.len(), 5, "{result}");
    let stat = |key: &str| -> f64 {
        stats
            .iter()
            .find(|s| s["key"] == key)
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no stat {key} in {result}"))
    };
    assert_eq!(stat("count"), 5.0);
    assert_eq!(stat("sum"), 2567.0);
    assert!((stat("average") - 513.4).abs() < 1e-9, "{result}");
    assert_eq!(stat("min"), 12.0);
    assert_eq!(stat("max"), 2048.0);
}

/// The 15-word, 73-byte sentence the coordinator streams in 10-byte chunks.
pub const SENTENCE: &str =
    "The quick brown fox jumps over the lazy dog while the cat sleeps in sunny";

/// The seed's coordinator ↔ worker with progress messages, in `peer`'s language.
pub async fn seed_coordinator_worker(peer: &str) {
    let driver = harness().driver();
    let result = call_ok(
        driver,
        &f(peer, "stream.coordinator"),
        json!({"text": SENTENCE, "chunkSize": 10}),
    )
    .await;
    let messages = result["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("no messages in {result}"));
    let chunks = SENTENCE.len().div_ceil(10);
    let progress: Vec<&Value> = messages
        .iter()
        .filter(|m| m["type"] == "progress")
        .collect();
    assert!(!progress.is_empty(), "no progress message: {result}");
    // Each 10-byte chunk is one binary message through the engine. Python and Rust
    // readers yield each; a Node `Readable` may hand over several buffered ones at once.
    assert!(progress.len() <= chunks, "{result}");
    for (i, p) in progress.iter().enumerate() {
        assert_eq!(
            p["chunks_received"],
            i + 1,
            "progress out of order: {result}"
        );
    }
    let complete = messages
        .iter()
        .find(|m| m["type"] == "complete")
        .unwrap_or_else(|| panic!("no complete message: {result}"));
    assert_eq!(complete["word_count"], 15, "{result}");
    assert_eq!(complete["byte_count"], SENTENCE.len(), "{result}");
    assert_eq!(
        messages.last(),
        Some(complete),
        "complete comes last: {result}"
    );
    assert_eq!(result["binaryResult"]["total"], 15, "{result}");
    assert_eq!(
        result["binaryResult"]["words"],
        json!(["The", "quick", "brown", "fox", "jumps"]),
        "{result}"
    );
    assert_eq!(result["workerResult"]["status"], "done", "{result}");
}

/// Calls `function_id` until the list under `key` in its answer holds an entry whose
/// `config.tag` is `tag`, and returns that entry; fails at `deadline`.
async fn poll_for_tag(
    driver: &Driver,
    function_id: &str,
    key: &str,
    tag: &str,
    deadline: Instant,
) -> Value {
    loop {
        let list = call_ok(driver, function_id, json!({})).await;
        let found = list[key].as_array().and_then(|l| {
            l.iter()
                .find(|entry| entry["config"]["tag"] == tag)
                .cloned()
        });
        if let Some(found) = found {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{function_id} never listed {tag}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `consumer` binds a trigger of the type `provider` provides; the provider receives the
/// `registertrigger` and fires the consumer's target function.
pub async fn trigger_type(provider: &str, consumer: &str) {
    let driver = harness().driver();
    let tag = format!("{provider}->{consumer}");
    let config = json!({"tag": tag, "nested": {"n": 1}});
    let bound = call_ok(
        driver,
        &f(consumer, "bind"),
        json!({"trigger_type": f(provider, "tt"), "function_id": f(consumer, "on_fire"), "config": config}),
    )
    .await;
    assert_eq!(bound["bound"], true);
    let deadline = Instant::now() + Duration::from_secs(15);
    let registration = poll_for_tag(
        driver,
        &f(provider, "registrations"),
        "registrations",
        &tag,
        deadline,
    )
    .await;
    assert_eq!(registration["function_id"], f(consumer, "on_fire"));
    assert_eq!(registration["config"], config);
    let fire = poll_for_tag(driver, &f(consumer, "fired"), "fired", &tag, deadline).await;
    assert_eq!(fire["provider"], provider, "{fire}");
    assert_eq!(fire["trigger_id"], registration["id"], "{fire}");
}

/// The text messages of a transfer of `size` bytes: at the start, after one byte, on
/// and next to frame boundaries (two at the same offset), a large one (200 KiB: more than
/// one frame, less than Python's 1 MiB inbound limit), non-ASCII text, and at the end.
pub fn transfer_messages(size: usize) -> Vec<(usize, String)> {
    let mut messages = vec![
        (0, "start".to_owned()),
        (1, "after one byte".to_owned()),
        (65_536, "at 64 KiB".to_owned()),
        (65_536, "also at 64 KiB".to_owned()),
        (65_537, r#"{"json": true, "n": 65537}"#.to_owned()),
        (size / 3, "x".repeat(200 * 1024)),
        (size / 2 + 3, "ünïcødé ✓ 中文".to_owned()),
        (size - 1, "one before the end".to_owned()),
        (size, "end".to_owned()),
    ];
    messages.sort_by_key(|m| m.0);
    messages
}

/// The uneven write sizes for cell number `cell`: the same sizes, rotated.
pub fn write_pattern(cell: usize) -> Vec<usize> {
    let mut sizes = vec![
        1, 7, 4_096, 65_535, 65_536, 65_537, 200_000, 1_000_000, 3, 131_072, 12_345,
    ];
    sizes.rotate_left(cell % 11);
    sizes
}

/// One matrix cell: `writer` streams [`MATRIX_BYTES`] through our engine to `reader`.
pub async fn stream_cell(writer: &dyn Peer, reader: &dyn Peer, cell: usize) {
    let driver = harness().driver();
    let (w, r) = (writer.name(), reader.name());
    let seed = 1_000 + cell as u64;
    let size = MATRIX_BYTES;
    let messages = transfer_messages(size);
    let expected_sha = sha256_hex(&generate(seed, size));
    let refs = call_ok(driver, "engine::channels::create", json!({})).await;
    let wire_messages: Vec<Value> = messages
        .iter()
        .map(|(at, text)| json!({"at": at, "text": text}))
        .collect();
    let started = Instant::now();
    let (write_fn, read_fn) = (f(w, "write"), f(r, "read"));
    let write = driver.call(
        &write_fn,
        json!({"writer": refs["writer"], "seed": seed, "size": size,
            "pattern": write_pattern(cell), "messages": wire_messages}),
        TRANSFER,
    );
    let read = driver.call(&read_fn, json!({"reader": refs["reader"]}), TRANSFER);
    let (written, read) = tokio::join!(write, read);
    let label = format!("{} -> {}", writer.label(), reader.label());
    let logs = || harness().peer_logs(&[w, r]);
    let written = written.unwrap_or_else(|e| panic!("{label}: the writer failed: {e}\n{}", logs()));
    let read = read.unwrap_or_else(|e| panic!("{label}: the reader failed: {e}\n{}", logs()));
    eprintln!(
        "{label}: {size} bytes in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let got: Vec<(u64, String)> = read["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("{label}: no messages in {read}"))
        .iter()
        .map(|m| {
            (
                m["at"].as_u64().unwrap_or(u64::MAX),
                m["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let want: Vec<(u64, String)> = messages
        .into_iter()
        .map(|(at, text)| (at as u64, text))
        .collect();
    let brief_got: Vec<(u64, String)> = got
        .iter()
        .map(|(a, t)| (*a, t.chars().take(40).collect()))
        .collect();
    assert_eq!(written["written"], size, "{label}: writer said {written}");
    assert_eq!(
        read["bytes"], size,
        "{label}: reader got {} bytes; messages (offset, text) {brief_got:?}",
        read["bytes"]
    );
    assert_eq!(read["sha256"], expected_sha, "{label}: data differs");
    if got != want {
        let brief = |l: &[(u64, String)]| -> Vec<(u64, String)> {
            l.iter()
                .map(|(a, t)| (*a, t.chars().take(40).collect()))
                .collect()
        };
        panic!(
            "{label}: text messages differ (offset, text):\n  got  {:?}\n  want {:?}",
            brief(&got),
            brief(&want)
        );
    }
}

/// A fresh `peer` instance writes 1 MiB, says "stalled" and waits; it is then killed
/// with SIGKILL. A raw reader must get everything sent before, then Close 1011 (an
/// abort), not a clean end; and the caller of the write gets `invocation_stopped`.
pub async fn killed_writer_aborts_reader(h: &super::Harness, peer: &dyn Peer) {
    let name = format!("{}-killed", peer.name());
    let driver = h.driver();
    let (mut running, log) = h
        .start_async(peer, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let refs = call_ok(driver, "engine::channels::create", json!({})).await;
    let url = format!(
        "{}/ws/channels/{}?key={}&dir=read",
        h.url(),
        refs["reader"]["channel_id"].as_str().unwrap_or(""),
        refs["reader"]["access_key"].as_str().unwrap_or("")
    );
    let (mut reader, _) = tokio::time::timeout(CALL, connect_async(url))
        .await
        .expect("reader connect in time")
        .expect("reader connects");
    let seed = 77;
    let stall = 1 << 20;
    let write = {
        let driver = driver.clone();
        let function = f(&name, "write");
        let data = json!({"writer": refs["writer"], "seed": seed, "size": 8 << 20,
            "pattern": [50_000, 65_536, 1], "stall_after": stall,
            "messages": [{"at": stall, "text": "stalled"}]});
        tokio::spawn(async move { driver.call(&function, data, CALL).await })
    };
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(CALL, reader.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) => received.extend_from_slice(&b),
            Ok(Some(Ok(Message::Text(t)))) if t.as_str() == "stalled" => break,
            Ok(Some(Ok(other))) => panic!("{name}: unexpected {other:?} before the stall"),
            Ok(other) => panic!(
                "{name}: reader ended before the stall: {other:?}\n{}",
                log_tail(&log)
            ),
            Err(_) => panic!(
                "{name}: no stall message within {CALL:?}\n{}",
                log_tail(&log)
            ),
        }
    }
    assert_eq!(received.len(), stall, "{name}: bytes before the stall");
    assert!(
        received == generate(seed, stall),
        "{name}: data before the stall differs"
    );
    running.kill();
    let close = match tokio::time::timeout(Duration::from_secs(15), reader.next()).await {
        Ok(Some(Ok(Message::Close(frame)))) => frame,
        Ok(Some(Ok(other))) => panic!("{name}: unexpected {other:?} after the kill"),
        Ok(other) => panic!("{name}: the reader's socket ended without a Close frame: {other:?}"),
        Err(_) => panic!("{name}: no Close within 15 s of the SIGKILL"),
    };
    let code = close.as_ref().map(|c| u16::from(c.code));
    assert_eq!(
        code,
        Some(1011),
        "{name}: the reader must see an abort (1011), got {close:?}"
    );
    let outcome = tokio::time::timeout(CALL, write)
        .await
        .expect("the write call ends in time")
        .expect("join");
    match outcome {
        Err(e @ CallError::Remote(_)) => assert_eq!(e.code(), "invocation_stopped", "{e}"),
        other => panic!("{name}: the killed writer's caller got {other:?}"),
    }
}

/// As [`killed_writer_aborts_reader`], with **our** SDK's reader (tokio): after the
/// SIGKILL it must return an error, never a short "successful" end.
pub async fn killed_writer_fails_our_reader(h: &super::Harness, peer: &dyn Peer) {
    use iii_tokio::worker::{connect, ChannelItem, ChannelReader, ChannelRef, WorkerOptions};

    let name = format!("{}-killed-ours", peer.name());
    let driver = h.driver();
    let (mut running, log) = h
        .start_async(peer, &name)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ours = connect(WorkerOptions {
        url: Some(h.url()),
        name: Some(format!("interop-reader-{name}")),
        ..WorkerOptions::default()
    })
    .expect("our worker");
    ours.wait_connected(CALL)
        .await
        .expect("our worker connects");
    let refs = call_ok(driver, "engine::channels::create", json!({})).await;
    let reader_ref: ChannelRef = serde_json::from_value(refs["reader"].clone()).expect("ref");
    let mut reader = ChannelReader::new(&ours, &reader_ref);
    let (seed, stall) = (78, 1 << 20);
    let write = {
        let driver = driver.clone();
        let function = f(&name, "write");
        let data = json!({"writer": refs["writer"], "seed": seed, "size": 8 << 20,
            "pattern": [50_000, 65_536, 1], "stall_after": stall,
            "messages": [{"at": stall, "text": "stalled"}]});
        tokio::spawn(async move { driver.call(&function, data, CALL).await })
    };
    let mut received = Vec::new();
    loop {
        match tokio::time::timeout(CALL, reader.next_item()).await {
            Ok(Ok(Some(ChannelItem::Binary(b)))) => received.extend_from_slice(&b),
            Ok(Ok(Some(ChannelItem::Text(t)))) if t == "stalled" => break,
            other => panic!("{name}: before the stall: {other:?}\n{}", log_tail(&log)),
        }
    }
    assert!(
        received == generate(seed, stall),
        "{name}: data before the stall"
    );
    running.kill();
    match tokio::time::timeout(Duration::from_secs(15), reader.next_item()).await {
        Ok(Err(error)) => eprintln!("{name}: our reader reports {error}"),
        other => panic!("{name}: our reader must fail after the SIGKILL, got {other:?}"),
    }
    let _ = tokio::time::timeout(CALL, write).await;
    ours.shutdown().await;
}
