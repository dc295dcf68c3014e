//! Copies a file through a channel with `tokio::io::copy` at both ends: into the
//! channel's writer on one worker, out of its reader into a new file on another.
//!
//! `cargo run --release -p iii-tokio --example file_copy -- SOURCE [DESTINATION]`
//! (the destination defaults to `SOURCE.copy`). The two files are compared at the end.

mod common;

use std::time::Duration;

use iii_tokio::worker::{ChannelReader, ChannelRef};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

/// A handler's error: any error (sent to the caller as `invocation_failed`).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let source = args.next().ok_or("usage: file_copy SOURCE [DESTINATION]")?;
    let destination = args.next().unwrap_or_else(|| format!("{source}.copy"));
    let engine = common::engine().await;
    let receiver = common::worker(&engine, "example-copy-receiver").await;
    let sender = common::worker(&engine, "example-copy-sender").await;

    // The receiving function: the channel's reader is a tokio AsyncRead.
    let iii = receiver.clone();
    receiver.register_function("files.store", move |input: Value| {
        let iii = iii.clone();
        async move {
            let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
            let path = input["path"].as_str().unwrap_or_default().to_owned();
            let mut reader = ChannelReader::new(&iii, &reader_ref);
            let mut file = tokio::fs::File::create(&path)
                .await
                .map_err(|error| format!("cannot create {path}: {error}"))?;
            // EOF only at a clean end: a writer that vanished is an error here.
            let copied = async {
                let bytes = tokio::io::copy(&mut reader, &mut file).await?;
                file.flush().await?;
                Ok::<_, std::io::Error>(bytes)
            };
            match copied.await {
                Ok(bytes) => Ok::<_, BoxError>(json!({ "bytes": bytes })),
                Err(error) => {
                    // No partial or empty copy is left behind.
                    let _ = tokio::fs::remove_file(&path).await;
                    Err(format!("receiving into {path} failed (removed it): {error}").into())
                }
            }
        }
    })?;
    receiver.wait_registered(Duration::from_secs(10)).await?;

    // The sending side: the channel's writer is a tokio AsyncWrite. The source is opened
    // first, so a missing file fails before anything is created at either end.
    let mut file = tokio::fs::File::open(&source)
        .await
        .map_err(|error| format!("cannot read {source}: {error}"))?;
    let channel = sender.create_channel(None).await?;
    let storing = {
        let sender = sender.clone();
        let input = json!({ "reader": channel.reader_ref, "path": destination });
        tokio::spawn(async move {
            sender
                .trigger_with_timeout("files.store", input, Duration::from_secs(3600))
                .await
        })
    };
    let mut writer = channel.writer;
    let copied = async {
        let sent = tokio::io::copy(&mut file, &mut writer).await?;
        writer.shutdown().await?; // a clean close: the reader's copy ends
        Ok::<_, std::io::Error>(sent)
    };
    let sent = match copied.await {
        Ok(sent) => sent,
        Err(error) => {
            // The receiver's answer says why, when it failed first (its path included).
            let why = match storing.await? {
                Err(receiver) => format!("{receiver}"),
                Ok(_) => format!("{error}"),
            };
            return Err(format!("copying {source} to {destination} failed: {why}").into());
        }
    };
    let stored = storing
        .await?
        .map_err(|error| format!("storing {destination} failed: {error}"))?;
    println!("sent {sent} bytes; the receiver stored {}", stored["bytes"]);
    let same = tokio::fs::read(&source).await? == tokio::fs::read(&destination).await?;
    println!(
        "{destination} {} {source}",
        if same { "equals" } else { "DIFFERS FROM" }
    );
    sender.shutdown().await;
    receiver.shutdown().await;
    if same {
        Ok(())
    } else {
        Err("the copy differs".into())
    }
}
