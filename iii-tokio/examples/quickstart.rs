//! The README's quick start (kept identical to it):
//! `cargo run -p iii-tokio --example quickstart` (an engine of its own), or
//! `III_URL=ws://127.0.0.1:49134 cargo run -p iii-tokio --example quickstart` against an
//! `iii-engine` you started (`cargo run --release -p iii-tokio --bin iii-engine`).

use std::time::Duration;

use iii_tokio::worker::{connect, ChannelReader, ChannelRef, Error, WorkerOptions};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The engine at III_URL; without one, an engine in this process (as the other
    // examples do; a deployment runs `iii-engine`).
    let (url, _engine) = match std::env::var("III_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let engine = iii_tokio::bind("127.0.0.1:0", Default::default()).await?;
            (engine.url(), Some(engine))
        }
    };
    // Connects in the background and reconnects by itself; with no engine there, calls
    // fail after 10 s (`core.connect_timeout`) with an error naming the URL.
    let iii = connect(WorkerOptions {
        url: Some(url),
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

    // Registering is asynchronous, and some engines (the reference one) apply it only
    // after this worker's announce has run: wait until both functions are in effect.
    iii.wait_registered(Duration::from_secs(10)).await?;

    // Call a function; stream to it through a channel.
    let sum = iii.trigger("math.add", json!({"a": 2, "b": 40})).await?;
    let channel = iii.create_channel(None).await?;
    // No reader is attached yet, and the write still completes: a write waits only once
    // the channel's buffers (the worker's 1 MiB window and the engine's) are full.
    channel.writer.write(b"hello, channel").await?;
    // The reader sees a clean end after the data.
    channel.writer.close().await?;
    // The reader ref goes to files.count; the unused local `channel.reader` is dropped
    // without effect.
    let count = iii
        .trigger("files.count", json!({ "reader": channel.reader_ref }))
        .await?;
    println!("{sum} {count}");
    iii.shutdown().await;
    Ok(())
}
