//! Sender → processor: the sender writes a batch of records into a channel, closes it,
//! and hands the reader ref to a processor function, which streams it and returns
//! statistics. Run with `cargo run -p iii-tokio --example sender_processor` (uses
//! `III_URL` if set, otherwise starts an engine in-process).

mod common;

use std::time::Duration;

use iii_tokio::worker::{extract_channel_refs, ChannelReader, Direction, Error, ErrorBody};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let engine = common::engine().await;
    let processor = common::worker(&engine, "example-processor").await;
    let sender = common::worker(&engine, "example-sender").await;

    let iii = processor.clone();
    processor.register_function("data.processor", move |input: Value| {
        let iii = iii.clone();
        async move {
            let (_, reader_ref) = extract_channel_refs(&input)
                .into_iter()
                .find(|(path, r)| path == "reader" && r.direction == Direction::Read)
                .ok_or_else(|| Error::Remote(ErrorBody::new("invalid_input", "missing reader channel ref")))?;
            let mut reader = ChannelReader::new(&iii, &reader_ref);
            let raw = reader.read_all().await?;
            let records: Vec<Value> = serde_json::from_slice(&raw)?;
            let values: Vec<f64> = records.iter().filter_map(|r| r["value"].as_f64()).collect();
            let sum: f64 = values.iter().sum();
            let count = values.len();
            Ok::<_, Error>(json!({
                "label": input["label"],
                "messages": [
                    {"type": "stat", "key": "count", "value": count},
                    {"type": "stat", "key": "sum", "value": sum},
                    {"type": "stat", "key": "average", "value": sum / count.max(1) as f64},
                    {"type": "stat", "key": "min", "value": values.iter().copied().fold(f64::INFINITY, f64::min)},
                    {"type": "stat", "key": "max", "value": values.iter().copied().fold(f64::NEG_INFINITY, f64::max)},
                ],
            }))
        }
    })?;

    let iii = sender.clone();
    sender.register_function("data.sender", move |input: Value| {
        let iii = iii.clone();
        async move {
            let channel = iii.create_channel(None).await?;
            let payload = serde_json::to_vec(&input["records"])?;
            // Write and close first: the engine keeps the data until the reader comes.
            channel.writer.write(&payload).await?;
            channel.writer.close().await?;
            iii.trigger(
                "data.processor",
                json!({"label": "metrics-batch", "reader": channel.reader_ref}),
            )
            .await
        }
    })?;

    // Both functions in effect before the first call (some engines apply late).
    processor.wait_registered(Duration::from_secs(10)).await?;
    sender.wait_registered(Duration::from_secs(10)).await?;
    let records = json!([
        {"name": "a", "value": 12}, {"name": "b", "value": 100}, {"name": "c", "value": 250},
        {"name": "d", "value": 157}, {"name": "e", "value": 2048}
    ]);
    let result = sender
        .trigger("data.sender", json!({ "records": records }))
        .await?;
    println!("{}", serde_json::to_string_pretty(&result)?);
    sender.shutdown().await;
    processor.shutdown().await;
    Ok(())
}
