//! Sender → processor on smol: the sender writes a batch of records into a channel,
//! closes it, and hands the reader ref to a processor, which returns statistics.
//! `cargo run -p iii-smol --example smol_sender_processor` (uses `III_URL` if set, otherwise
//! starts an engine in-process).

use std::time::Duration;

use iii_smol::worker::{connect, ChannelReader, ChannelRef, Error, Iii, WorkerOptions};
use serde_json::{json, Value};

fn main() -> Result<(), Error> {
    smol::block_on(async {
        let (_server, url) = match std::env::var("III_URL") {
            Ok(url) if !url.trim().is_empty() => (None, url),
            _ => {
                let server = iii_smol::bind("127.0.0.1:0", Default::default())
                    .await
                    .expect("start an in-process engine");
                let url = server.url();
                (Some(server), url)
            }
        };
        let processor = worker(&url, "example-processor").await?;
        let sender = worker(&url, "example-sender").await?;

        let iii = processor.clone();
        processor.register_function("data.processor", move |input: Value| {
            let iii = iii.clone();
            async move {
                let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
                let raw = ChannelReader::new(&iii, &reader_ref).read_all().await?;
                let records: Vec<Value> = serde_json::from_slice(&raw)?;
                let values: Vec<f64> = records.iter().filter_map(|r| r["value"].as_f64()).collect();
                let sum: f64 = values.iter().sum();
                Ok::<_, Error>(json!({
                    "label": input["label"], "count": values.len(), "sum": sum,
                    "average": sum / values.len().max(1) as f64,
                    "min": values.iter().copied().fold(f64::INFINITY, f64::min),
                    "max": values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                }))
            }
        })?;

        // The function is in effect before the first call (some engines apply late).
        processor.wait_registered(Duration::from_secs(10)).await?;
        let channel = sender.create_channel(None).await?;
        let records =
            json!([{"value": 12}, {"value": 100}, {"value": 250}, {"value": 157}, {"value": 2048}]);
        channel.writer.write(&serde_json::to_vec(&records)?).await?;
        channel.writer.close().await?;
        let stats = sender
            .trigger(
                "data.processor",
                json!({"label": "metrics-batch", "reader": channel.reader_ref}),
            )
            .await?;
        println!("{stats}");
        sender.shutdown().await;
        processor.shutdown().await;
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
