//! A worker to try `iii send` and `iii recv` against (and to measure them with):
//!
//! * `demo.count` reads the channel whose reader ref is in its input (any field) and
//!   answers `{"bytes": N}`, plus `"sha256"` when the input has `"sha256": true`;
//! * `demo.generate` writes `"bytes"` bytes (default 1 GiB) into the channel whose writer
//!   ref is in its input, with a text message every 256 MiB, and answers `{"bytes": N}`.
//!
//! ```sh
//! cargo run --release -p iii-tokio --bin iii-engine &
//! cargo run --release -p iii-cli --example cli_backend &
//! head -c 1G /dev/zero | iii send demo.count
//! iii recv demo.generate --payload '{"bytes": 1073741824}' > /dev/null
//! ```

use std::time::Duration;

use iii_tokio::worker::{
    connect, extract_channel_refs, ChannelReader, ChannelRef, ChannelWriter, Direction, ErrorBody,
    Iii, WorkerOptions,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Message interval of `demo.generate`.
const MESSAGE_EVERY: u64 = 256 << 20;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // III_URL, or ws://127.0.0.1:49134.
    let iii = connect(WorkerOptions {
        name: Some("cli-backend".into()),
        ..WorkerOptions::default()
    })?;
    iii.wait_connected(Duration::from_secs(10)).await?;
    let me = iii.clone();
    iii.register_function("demo.count", move |input: Value| count(me.clone(), input))?;
    let me = iii.clone();
    iii.register_function("demo.generate", move |input: Value| {
        generate(me.clone(), input)
    })?;
    eprintln!("serving demo.count and demo.generate at {}", iii.address());
    tokio::signal::ctrl_c().await?;
    iii.shutdown().await;
    Ok(())
}

fn find_ref(input: &Value, direction: Direction) -> Result<ChannelRef, ErrorBody> {
    extract_channel_refs(input)
        .into_iter()
        .map(|(_, channel_ref)| channel_ref)
        .find(|channel_ref| channel_ref.direction == direction)
        .ok_or_else(|| ErrorBody::new("bad_input", "no channel ref in the input"))
}

fn failed(error: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new("channel_failed", error.to_string())
}

async fn count(iii: Iii, input: Value) -> Result<Value, ErrorBody> {
    let mut reader = ChannelReader::new(&iii, &find_ref(&input, Direction::Read)?);
    let mut hasher = input["sha256"].as_bool().unwrap_or(false).then(Sha256::new);
    let mut bytes = 0u64;
    while let Some(chunk) = reader.next_binary().await.map_err(failed)? {
        bytes += chunk.len() as u64;
        if let Some(hasher) = hasher.as_mut() {
            hasher.update(&chunk);
        }
    }
    let mut answer = json!({ "bytes": bytes });
    if let Some(hasher) = hasher {
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        answer["sha256"] = json!(digest);
    }
    Ok(answer)
}

async fn generate(iii: Iii, input: Value) -> Result<Value, ErrorBody> {
    let writer = ChannelWriter::new(&iii, &find_ref(&input, Direction::Write)?);
    let total = input["bytes"].as_u64().unwrap_or(1 << 30);
    let block = bytes::Bytes::from(vec![0x5a; 64 * 1024]);
    let mut written = 0u64;
    while written < total {
        let n = (block.len() as u64).min(total - written) as usize;
        writer.write_bytes(block.slice(..n)).await.map_err(failed)?;
        let before = written;
        written += n as u64;
        if written / MESSAGE_EVERY > before / MESSAGE_EVERY {
            let message = format!("{} MiB written", written >> 20);
            writer.send_message(&message).await.map_err(failed)?;
        }
    }
    writer.close().await.map_err(failed)?;
    Ok(json!({ "bytes": written }))
}
