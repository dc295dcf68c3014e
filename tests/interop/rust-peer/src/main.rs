//! Interop peer for the published crates.io `iii-sdk` (0.23.0-rc.4).
//!
//! Environment: `III_URL` (engine), `INTEROP_NAME` (short peer name, e.g. `rs023`). The
//! worker registers as `interop-<name>` and every function id starts with
//! `interop.<name>.`. The peer exits when its stdin reaches EOF (the harness holds the
//! other end). See INTEROP.md for the function contracts and the byte generator.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use iii_sdk::channel::{ChannelReader, ChannelWriter};
use iii_sdk::helpers::{create_channel, extract_channel_refs, ChannelDirection};
use iii_sdk::iii::WorkerMetadata;
use iii_sdk::protocol::{RegisterTriggerInput, TriggerRequest};
use iii_sdk::trigger::{TriggerConfig, TriggerHandler};
use iii_sdk::{
    register_worker, Error, IIIClient, InitOptions, RegisterFunction, RegisterTriggerType,
    TriggerAction,
};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Block i is SHA-256(le64(seed) || le64(i)); the stream is the blocks in order.
fn gen_bytes(seed: u64, size: usize) -> Vec<u8> {
    let blocks = size.div_ceil(32);
    let mut out = Vec::with_capacity(blocks * 32);
    let mut input = [0u8; 16];
    input[..8].copy_from_slice(&seed.to_le_bytes());
    for i in 0..blocks as u64 {
        input[8..].copy_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&Sha256::digest(input));
    }
    out.truncate(size);
    out
}

fn handler_err(e: impl std::fmt::Display) -> Error {
    Error::Handler(e.to_string())
}

fn channel_ref(
    input: &Value,
    key: &str,
    direction: ChannelDirection,
) -> Result<iii_sdk::channel::StreamChannelRef, Error> {
    extract_channel_refs(input)
        .into_iter()
        .find(|(path, r)| {
            path == key
                && std::mem::discriminant(&r.direction) == std::mem::discriminant(&direction)
        })
        .map(|(_, r)| r)
        .ok_or_else(|| handler_err(format!("no {key} channel ref in the input")))
}

async fn call(iii: &IIIClient, function_id: &str, payload: Value) -> Result<Value, Error> {
    iii.trigger(TriggerRequest {
        function_id: function_id.to_owned(),
        payload,
        action: None,
        timeout_ms: Some(20_000),
    })
    .await
}

async fn write(iii: IIIClient, input: Value) -> Result<Value, Error> {
    let writer = ChannelWriter::new(
        iii.address(),
        &channel_ref(&input, "writer", ChannelDirection::Write)?,
    );
    let seed = input["seed"].as_u64().ok_or("seed")?;
    let size = input["size"].as_u64().ok_or("size")? as usize;
    let pattern: Vec<usize> = input["pattern"]
        .as_array()
        .ok_or("pattern")?
        .iter()
        .map(|n| n.as_u64().unwrap_or(1) as usize)
        .collect();
    let messages: Vec<(usize, String)> = input["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            (
                m["at"].as_u64().unwrap_or(0) as usize,
                m["text"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    let stall_after = input["stall_after"].as_u64().map(|n| n as usize);
    let payload = gen_bytes(seed, size);
    let (mut pos, mut mi, mut wi) = (0usize, 0usize, 0usize);
    loop {
        while mi < messages.len() && messages[mi].0 == pos {
            writer.send_message(&messages[mi].1).await?;
            mi += 1;
        }
        if stall_after.is_some_and(|s| pos >= s) {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if pos == size {
            break;
        }
        let mut n = pattern[wi % pattern.len()].min(size - pos);
        wi += 1;
        if mi < messages.len() {
            n = n.min(messages[mi].0 - pos);
        }
        writer.write(&payload[pos..pos + n]).await?;
        pos += n;
    }
    writer.close().await?;
    Ok(json!({ "written": pos }))
}

async fn read(iii: IIIClient, input: Value) -> Result<Value, Error> {
    let reader = ChannelReader::new(
        iii.address(),
        &channel_ref(&input, "reader", ChannelDirection::Read)?,
    );
    let consumed = Arc::new(Mutex::new(0usize));
    let messages = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let consumed = consumed.clone();
        let messages = messages.clone();
        reader
            .on_message(move |text| {
                let at = *consumed.lock().expect("lock");
                messages
                    .lock()
                    .expect("lock")
                    .push(json!({ "at": at, "text": text }));
            })
            .await;
    }
    let mut digest = Sha256::new();
    while let Some(chunk) = reader.next_binary().await? {
        digest.update(&chunk);
        *consumed.lock().expect("lock") += chunk.len();
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bytes = *consumed.lock().expect("lock");
    let messages = messages.lock().expect("lock").clone();
    Ok(json!({ "sha256": hex, "bytes": bytes, "messages": messages }))
}

// --- The seed examples (sender -> processor; coordinator <-> worker), in Rust. ---

async fn data_processor(iii: IIIClient, input: Value) -> Result<Value, Error> {
    let label = input["label"].as_str().unwrap_or_default().to_string();
    let reader = ChannelReader::new(
        iii.address(),
        &channel_ref(&input, "reader", ChannelDirection::Read)?,
    );
    let raw = reader.read_all().await?;
    let records: Vec<Value> = serde_json::from_slice(&raw)?;
    let values: Vec<f64> = records.iter().filter_map(|r| r["value"].as_f64()).collect();
    let sum: f64 = values.iter().sum();
    let count = values.len();
    Ok(json!({
        "label": label,
        "messages": [
            {"type": "stat", "key": "count", "value": count},
            {"type": "stat", "key": "sum", "value": sum},
            {"type": "stat", "key": "average", "value": sum / count as f64},
            {"type": "stat", "key": "min", "value": values.iter().cloned().fold(f64::INFINITY, f64::min)},
            {"type": "stat", "key": "max", "value": values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)},
        ],
    }))
}

async fn data_sender(iii: IIIClient, prefix: String, input: Value) -> Result<Value, Error> {
    let channel = create_channel(&iii, None).await?;
    let payload = serde_json::to_vec(&input["records"])?;
    channel.writer.write(&payload).await?;
    // The writer is closed before the processor is even triggered.
    channel.writer.close().await?;
    call(
        &iii,
        &format!("{prefix}.data.processor"),
        json!({ "label": "metrics-batch", "reader": channel.reader_ref }),
    )
    .await
}

async fn stream_worker(iii: IIIClient, input: Value) -> Result<Value, Error> {
    let reader = ChannelReader::new(
        iii.address(),
        &channel_ref(&input, "reader", ChannelDirection::Read)?,
    );
    let writer = ChannelWriter::new(
        iii.address(),
        &channel_ref(&input, "writer", ChannelDirection::Write)?,
    );
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    while let Some(chunk) = reader.next_binary().await? {
        chunks.push(chunk);
        let progress = json!({ "type": "progress", "chunks_received": chunks.len() });
        writer.send_message(&progress.to_string()).await?;
    }
    let full: Vec<u8> = chunks.concat();
    let text = String::from_utf8_lossy(&full);
    let words: Vec<&str> = text.split_whitespace().collect();
    let complete =
        json!({ "type": "complete", "word_count": words.len(), "byte_count": full.len() });
    writer.send_message(&complete.to_string()).await?;
    let result = json!({ "words": &words[..5.min(words.len())], "total": words.len() });
    writer.write(&serde_json::to_vec(&result)?).await?;
    writer.close().await?;
    Ok(json!({ "status": "done" }))
}

async fn stream_coordinator(iii: IIIClient, prefix: String, input: Value) -> Result<Value, Error> {
    let text = input["text"].as_str().unwrap_or_default().to_string();
    let chunk_size = input["chunkSize"].as_u64().unwrap_or(10) as usize;
    let input_channel = create_channel(&iii, None).await?;
    let output_channel = create_channel(&iii, None).await?;
    let messages = Arc::new(Mutex::new(Vec::<Value>::new()));
    {
        let messages = messages.clone();
        output_channel
            .reader
            .on_message(move |msg| {
                if let Ok(parsed) = serde_json::from_str::<Value>(&msg) {
                    messages.lock().expect("lock").push(parsed);
                }
            })
            .await;
    }
    let writer = input_channel.writer;
    let write_handle = tokio::spawn(async move {
        for chunk in text.as_bytes().chunks(chunk_size) {
            writer.write(chunk).await?;
        }
        writer.close().await
    });
    let trigger_handle = {
        let iii = iii.clone();
        let payload =
            json!({ "reader": input_channel.reader_ref, "writer": output_channel.writer_ref });
        tokio::spawn(async move { call(&iii, &format!("{prefix}.stream.worker"), payload).await })
    };
    let result_data = output_channel.reader.read_all().await?;
    write_handle.await.map_err(handler_err)??;
    let worker_result = trigger_handle.await.map_err(handler_err)??;
    let binary_result: Value = serde_json::from_slice(&result_data)?;
    let collected = messages.lock().expect("lock").clone();
    Ok(
        json!({ "messages": collected, "binaryResult": binary_result, "workerResult": worker_result }),
    )
}

// --- Trigger types: this peer provides `interop.<name>.tt` and can bind to any type. ---

struct Provider {
    name: String,
    iii: IIIClient,
    registrations: Arc<Mutex<Vec<Value>>>,
}

#[async_trait]
impl TriggerHandler for Provider {
    async fn register_trigger(&self, config: TriggerConfig) -> Result<(), Error> {
        self.registrations.lock().expect("lock").push(json!({
            "id": config.id, "function_id": config.function_id, "config": config.config,
        }));
        let iii = self.iii.clone();
        let payload =
            json!({ "provider": self.name, "trigger_id": config.id, "config": config.config });
        tokio::spawn(async move {
            let _ = iii
                .trigger(TriggerRequest {
                    function_id: config.function_id,
                    payload,
                    action: Some(TriggerAction::Void),
                    timeout_ms: None,
                })
                .await;
        });
        Ok(())
    }

    async fn unregister_trigger(&self, _config: TriggerConfig) -> Result<(), Error> {
        Ok(())
    }
}

fn register<F, Fut>(iii: &IIIClient, id: String, f: F)
where
    F: Fn(IIIClient, Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, Error>> + Send + 'static,
{
    let client = iii.clone();
    iii.register_function(
        id,
        RegisterFunction::new_async(move |input: Value| f(client.clone(), input)),
    );
}

fn main() {
    let name = std::env::var("INTEROP_NAME").expect("INTEROP_NAME");
    let url = std::env::var("III_URL").expect("III_URL");
    let prefix = format!("interop.{name}");

    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();

    let metadata = WorkerMetadata {
        name: format!("interop-{name}"),
        ..WorkerMetadata::default()
    };
    let iii = register_worker(
        &url,
        InitOptions {
            metadata: Some(metadata),
            ..InitOptions::default()
        },
    );

    let registrations = Arc::new(Mutex::new(Vec::<Value>::new()));
    let fired = Arc::new(Mutex::new(Vec::<Value>::new()));
    iii.register_trigger_type(RegisterTriggerType::new(
        format!("{prefix}.tt"),
        format!("interop trigger type of {name}"),
        Provider {
            name: name.clone(),
            iii: iii.clone(),
            registrations: registrations.clone(),
        },
    ));

    let n = name.clone();
    register(&iii, format!("{prefix}.echo"), move |_, input| {
        let n = n.clone();
        async move { Ok(json!({ "sdk": n, "value": input["value"] })) }
    });
    let n = name.clone();
    register(&iii, format!("{prefix}.fail"), move |_, input| {
        let n = n.clone();
        async move {
            Err(handler_err(format!(
                "boom from {n}: {}",
                input["msg"].as_str().unwrap_or("")
            )))
        }
    });
    register(&iii, format!("{prefix}.call"), |iii, input| async move {
        let function_id = input["function_id"].as_str().unwrap_or_default().to_owned();
        Ok(
            match call(&iii, &function_id, input["payload"].clone()).await {
                Ok(result) => json!({ "ok": result }),
                Err(Error::Remote { code, message, .. }) => {
                    json!({ "error": { "code": code, "message": message } })
                }
                Err(other) => json!({ "error": { "code": "local", "message": other.to_string() } }),
            },
        )
    });
    register(&iii, format!("{prefix}.write"), write);
    register(&iii, format!("{prefix}.read"), read);
    register(&iii, format!("{prefix}.data.processor"), data_processor);
    let p = prefix.clone();
    register(&iii, format!("{prefix}.data.sender"), move |iii, input| {
        data_sender(iii, p.clone(), input)
    });
    register(&iii, format!("{prefix}.stream.worker"), stream_worker);
    let p = prefix.clone();
    register(
        &iii,
        format!("{prefix}.stream.coordinator"),
        move |iii, input| stream_coordinator(iii, p.clone(), input),
    );
    register(&iii, format!("{prefix}.registrations"), move |_, _| {
        let list = registrations.lock().expect("lock").clone();
        async move { Ok(json!({ "registrations": list })) }
    });
    register(&iii, format!("{prefix}.bind"), |iii, input| async move {
        iii.register_trigger(RegisterTriggerInput::new(
            input["trigger_type"].as_str().unwrap_or_default(),
            input["function_id"].as_str().unwrap_or_default(),
            input["config"].clone(),
        ))?;
        Ok(json!({ "bound": true }))
    });
    let f = fired.clone();
    register(&iii, format!("{prefix}.on_fire"), move |_, input| {
        f.lock().expect("lock").push(input);
        async move { Ok(json!({ "ok": true })) }
    });
    register(&iii, format!("{prefix}.fired"), move |_, _| {
        let list = fired.lock().expect("lock").clone();
        async move { Ok(json!({ "fired": list })) }
    });

    println!("READY");
    runtime.block_on(std::future::pending::<()>());
}
