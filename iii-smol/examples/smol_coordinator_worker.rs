//! Coordinator ↔ worker on smol: a sentence goes to the worker in 10-byte chunks through
//! one channel; progress messages, a completion message and a binary result come back
//! through another. `cargo run -p iii-smol --example smol_coordinator_worker`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use iii_smol::worker::{
    connect, ChannelReader, ChannelRef, ChannelWriter, Error, Iii, WorkerOptions,
};
use serde_json::{json, Value};

const TEXT: &str = "The quick brown fox jumps over the lazy dog and runs into the dark forest";

fn main() -> Result<(), Error> {
    smol::block_on(async {
        let server = iii_smol::bind("127.0.0.1:0", Default::default())
            .await
            .expect("start an in-process engine");
        let url = std::env::var("III_URL").unwrap_or_else(|_| server.url());
        let stream_worker = worker(&url, "example-stream-worker").await?;
        let coordinator = worker(&url, "example-coordinator").await?;

        let iii = stream_worker.clone();
        stream_worker.register_function("stream.worker", move |input: Value| {
            let iii = iii.clone();
            async move {
                let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
                let writer_ref: ChannelRef = serde_json::from_value(input["writer"].clone())?;
                let mut reader = ChannelReader::new(&iii, &reader_ref);
                let writer = ChannelWriter::new(&iii, &writer_ref);
                let (mut received, mut chunks) = (Vec::new(), 0);
                while let Some(chunk) = reader.next_binary().await? {
                    received.extend_from_slice(&chunk);
                    chunks += 1;
                    writer.send_message(&json!({"type": "progress", "chunks_received": chunks}).to_string()).await?;
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
        stream_worker
            .wait_registered(Duration::from_secs(10))
            .await?;
        let input = coordinator.create_channel(None).await?;
        let mut output = coordinator.create_channel(None).await?;
        let messages = Arc::new(Mutex::new(Vec::<Value>::new()));
        let sink = messages.clone();
        output.reader.on_message(move |text| {
            if let (Ok(value), Ok(mut list)) = (serde_json::from_str(&text), sink.lock()) {
                list.push(value);
            }
        });
        for chunk in TEXT.as_bytes().chunks(10) {
            input.writer.write(chunk).await?;
        }
        input.writer.close().await?;
        let call = coordinator.trigger(
            "stream.worker",
            json!({"reader": input.reader_ref, "writer": output.writer_ref}),
        );
        let (status, result) = smol::future::zip(call, output.reader.read_all()).await;
        let result: Value = serde_json::from_slice(&result?)?;
        let progress = messages
            .lock()
            .map(|m| m.iter().filter(|v| v["type"] == "progress").count())
            .unwrap_or(0);
        println!("worker: {}", status?);
        println!("{progress} progress messages; result: {result}");
        coordinator.shutdown().await;
        stream_worker.shutdown().await;
        Ok(())
    })
}

async fn worker(url: &str, name: &str) -> Result<Iii, Error> {
    let iii = connect(WorkerOptions {
        url: Some(url.to_owned()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    })?;
    iii.wait_connected(Duration::from_secs(10)).await?;
    Ok(iii)
}
