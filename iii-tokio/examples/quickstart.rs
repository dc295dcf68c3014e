//! The README's quick start (kept identical to it): run an engine first
//! (`cargo run --release -p iii-tokio --bin iii-engine`), then
//! `cargo run -p iii-tokio --example quickstart`.

use iii_tokio::worker::{connect, ChannelReader, ChannelRef, Error, WorkerOptions};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    // III_URL, or ws://127.0.0.1:49134; reconnects by itself.
    let iii = connect(WorkerOptions {
        name: Some("quickstart".into()),
        ..Default::default()
    })?;

    // A function other workers (Node, Python, Rust) can call.
    iii.register_function("math.add", |input: Value| async move {
        Ok::<_, Error>(json!(
            input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0)
        ))
    })?;

    // A function that reads a channel whose reader ref arrives in its input.
    let me = iii.clone();
    iii.register_function("files.count", move |input: Value| {
        let iii = me.clone();
        async move {
            let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
            let bytes = ChannelReader::new(&iii, &reader_ref).read_all().await?;
            Ok::<_, Error>(json!({ "bytes": bytes.len() }))
        }
    })?;

    // Call a function; stream to it through a channel.
    let sum = iii.trigger("math.add", json!({"a": 2, "b": 40})).await?;
    let channel = iii.create_channel(None).await?;
    channel.writer.write(b"hello, channel").await?; // waits while the reader is slow
    channel.writer.close().await?; // the reader sees a clean end
    let count = iii
        .trigger("files.count", json!({ "reader": channel.reader_ref }))
        .await?;
    println!("{sum} {count}");
    iii.shutdown().await;
    Ok(())
}
