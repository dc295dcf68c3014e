//! Coordinator ↔ worker: the coordinator streams a sentence into one channel in 10-byte
//! chunks; the worker reads it, reports progress per chunk as text messages on a second
//! channel, then a completion message and a binary JSON result. Run with
//! `cargo run -p iii-tokio --example coordinator_worker`.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iii_tokio::worker::{ChannelReader, ChannelRef, ChannelWriter, Error};
use serde_json::{json, Value};

const TEXT: &str = "The quick brown fox jumps over the lazy dog and runs into the dark forest";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let engine = common::engine().await;
    let worker = common::worker(&engine, "example-stream-worker").await;
    let coordinator = common::worker(&engine, "example-coordinator").await;

    let iii = worker.clone();
    worker.register_function("stream.worker", move |input: Value| {
        let iii = iii.clone();
        async move {
            let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
            let writer_ref: ChannelRef = serde_json::from_value(input["writer"].clone())?;
            let mut reader = ChannelReader::new(&iii, &reader_ref);
            let writer = ChannelWriter::new(&iii, &writer_ref);
            let mut received = Vec::new();
            let mut chunks = 0;
            while let Some(chunk) = reader.next_binary().await? {
                received.extend_from_slice(&chunk);
                chunks += 1;
                writer
                    .send_message(&json!({"type": "progress", "chunks_received": chunks}).to_string())
                    .await?;
            }
            let text = String::from_utf8_lossy(&received).into_owned();
            let words: Vec<&str> = text.split_whitespace().collect();
            writer
                .send_message(&json!({"type": "complete", "word_count": words.len(), "byte_count": received.len()}).to_string())
                .await?;
            writer.write(json!({"words": &words[..words.len().min(5)], "total": words.len()}).to_string().as_bytes()).await?;
            writer.close().await?;
            Ok::<_, Error>(json!({"status": "done"}))
        }
    })?;

    // The function is in effect before the first call (some engines apply late).
    worker.wait_registered(Duration::from_secs(10)).await?;
    let input = coordinator.create_channel(None).await?;
    let mut output = coordinator.create_channel(None).await?;
    let messages = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = messages.clone();
    output.reader.on_message(move |text| {
        if let (Ok(value), Ok(mut messages)) = (serde_json::from_str(&text), sink.lock()) {
            messages.push(value);
        }
    });
    for chunk in TEXT.as_bytes().chunks(10) {
        input.writer.write(chunk).await?;
    }
    input.writer.close().await?;
    let status = coordinator
        .trigger(
            "stream.worker",
            json!({"reader": input.reader_ref, "writer": output.writer_ref}),
        )
        .await?;
    let result: Value = serde_json::from_slice(&output.reader.read_all().await?)?;
    let messages = messages.lock().map(|m| m.clone()).unwrap_or_default();
    let progress = messages.iter().filter(|m| m["type"] == "progress").count();
    println!("worker: {status}");
    println!(
        "{progress} progress messages; completion: {}",
        messages.last().cloned().unwrap_or_default()
    );
    println!("result: {result}");
    coordinator.shutdown().await;
    worker.shutdown().await;
    Ok(())
}
