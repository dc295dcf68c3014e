//! Streams a file through a channel from one worker to another and shows progress.
//!
//! `cargo run --release -p iii-tokio --example file_transfer -- [PATH]`: without a path,
//! 256 MiB of generated data is sent. The receiver checks the SHA-256.

mod common;

use std::time::Instant;

use iii_tokio::worker::{ChannelReader, ChannelRef, Error};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1);
    let engine = common::engine().await;
    let receiver = common::worker(&engine, "example-file-receiver").await;
    let sender = common::worker(&engine, "example-file-sender").await;

    let iii = receiver.clone();
    receiver.register_function("files.receive", move |input: Value| {
        let iii = iii.clone();
        async move {
            let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
            let total = input["size"].as_u64().unwrap_or(0);
            let mut reader = ChannelReader::new(&iii, &reader_ref);
            let bar = ProgressBar::new(total).with_style(
                ProgressStyle::with_template(
                    "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let mut hasher = Sha256::new();
            let mut received = 0u64;
            while let Some(chunk) = reader.next_binary().await? {
                hasher.update(&chunk);
                received += chunk.len() as u64;
                bar.set_position(received);
            }
            bar.finish();
            Ok::<_, Error>(json!({"bytes": received, "sha256": hex(&hasher.finalize())}))
        }
    })?;
    // Registering is asynchronous (the reference engine applies it late): calling before
    // it is in effect would be `function_not_found`.
    receiver
        .wait_registered(std::time::Duration::from_secs(10))
        .await?;

    let (size, mut source): (u64, Box<dyn tokio::io::AsyncRead + Unpin + Send>) = match &path {
        Some(path) => {
            let file = tokio::fs::File::open(path).await?;
            (file.metadata().await?.len(), Box::new(file))
        }
        None => (256 << 20, Box::new(tokio::io::repeat(0x42).take(256 << 20))),
    };
    let channel = sender.create_channel(None).await?;
    let receiving = {
        let sender = sender.clone();
        let reader_ref = channel.reader_ref.clone();
        tokio::spawn(async move {
            sender
                .trigger_with_timeout(
                    "files.receive",
                    json!({"reader": reader_ref, "size": size}),
                    std::time::Duration::from_secs(3600),
                )
                .await
        })
    };
    let start = Instant::now();
    let sending = async move {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = source.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            channel.writer.write(&buf[..n]).await?;
        }
        channel.writer.close().await?;
        Ok::<_, Box<dyn std::error::Error>>(hasher)
    };
    tokio::pin!(sending);
    let mut receiving = receiving;
    // The call and the writing run together: if the call fails (no such function, an
    // engine that never attaches the reader, a receiver that gives up), the writing stops
    // with its error instead of waiting forever for a reader.
    let (result, hasher) = tokio::select! {
        sent = &mut sending => {
            let hasher = sent?;
            (receiving.await??, hasher)
        }
        answer = &mut receiving => match answer? {
            // Answered while our close was still under way: let it finish.
            Ok(result) => (result, sending.await?),
            Err(error) => {
                return Err(format!("files.receive failed before the end of the input: {error}").into());
            }
        },
    };
    let secs = start.elapsed().as_secs_f64();
    let expected = hex(&hasher.finalize());
    println!(
        "sent {size} bytes in {secs:.2} s ({:.0} MiB/s)",
        size as f64 / secs / (1 << 20) as f64
    );
    println!("receiver: {result}");
    assert_eq!(result["sha256"], expected.as_str(), "checksum mismatch");
    println!("checksum ok");
    sender.shutdown().await;
    receiver.shutdown().await;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
