//! Interop peer built on **our** worker SDK (`iii-driver`), on tokio or smol
//! (`INTEROP_RUNTIME=tokio|smol`). The same contract as the peers of the published SDKs
//! (INTEROP.md): `III_URL`, `INTEROP_NAME`, functions `interop.<name>.*`, `READY` on
//! stdout once registered, exit when stdin reaches EOF.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use iii_driver::worker::{
    ChannelItem, ChannelReader, ChannelRef, ChannelWriter, Error, ErrorBody, Iii, TriggerHandler,
    TriggerRequest, WorkerOptions,
};
use iii_driver::{BoxFuture, Runtime};
use iii_tests::interop::bytes::generate;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn main() {
    let name = std::env::var("INTEROP_NAME").expect("INTEROP_NAME");
    let url = std::env::var("III_URL").expect("III_URL");
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        std::process::exit(0);
    });
    match std::env::var("INTEROP_RUNTIME").as_deref() {
        Ok("smol") => smol::block_on(run(iii_smol::Smol, url, name)),
        _ => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(run(iii_tokio::Tokio, url, name)),
    }
}

fn err(message: impl Into<String>) -> Error {
    Error::Remote(ErrorBody::new("invocation_failed", message))
}

fn channel_ref(input: &Value, key: &str) -> Result<ChannelRef, Error> {
    serde_json::from_value(input[key].clone()).map_err(|_| err(format!("no {key} ref")))
}

fn register<R, F, Fut>(iii: &Iii<R>, id: String, f: F)
where
    R: Runtime,
    F: Fn(Iii<R>, Value) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, Error>> + Send + 'static,
{
    let client = iii.clone();
    iii.register_function(&id, move |input| f(client.clone(), input))
        .expect("register");
}

async fn write<R: Runtime>(iii: Iii<R>, input: Value) -> Result<Value, Error> {
    let writer = ChannelWriter::new(&iii, &channel_ref(&input, "writer")?);
    let seed = input["seed"].as_u64().ok_or_else(|| err("seed"))?;
    let size = input["size"].as_u64().ok_or_else(|| err("size"))? as usize;
    let pattern: Vec<usize> = input["pattern"]
        .as_array()
        .ok_or_else(|| err("pattern"))?
        .iter()
        .map(|n| n.as_u64().unwrap_or(1).max(1) as usize)
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
    let payload = generate(seed, size);
    let (mut pos, mut mi, mut wi) = (0usize, 0usize, 0usize);
    loop {
        while mi < messages.len() && messages[mi].0 == pos {
            writer.send_message(&messages[mi].1).await?;
            mi += 1;
        }
        if stall_after.is_some_and(|s| pos >= s) {
            futures_util::future::pending::<()>().await;
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

async fn read<R: Runtime>(iii: Iii<R>, input: Value) -> Result<Value, Error> {
    let mut reader = ChannelReader::new(&iii, &channel_ref(&input, "reader")?);
    let mut digest = Sha256::new();
    let mut bytes = 0usize;
    let mut messages = Vec::new();
    while let Some(item) = reader.next_item().await? {
        match item {
            ChannelItem::Binary(chunk) => {
                digest.update(&chunk);
                bytes += chunk.len();
            }
            ChannelItem::Text(text) => messages.push(json!({ "at": bytes, "text": text })),
        }
    }
    let hex: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(json!({ "sha256": hex, "bytes": bytes, "messages": messages }))
}

async fn data_processor<R: Runtime>(iii: Iii<R>, input: Value) -> Result<Value, Error> {
    let raw = ChannelReader::new(&iii, &channel_ref(&input, "reader")?)
        .read_all()
        .await?;
    let records: Vec<Value> = serde_json::from_slice(&raw)?;
    let values: Vec<f64> = records.iter().filter_map(|r| r["value"].as_f64()).collect();
    let sum: f64 = values.iter().sum();
    let count = values.len();
    Ok(json!({
        "label": input["label"],
        "messages": [
            {"type": "stat", "key": "count", "value": count},
            {"type": "stat", "key": "sum", "value": sum},
            {"type": "stat", "key": "average", "value": sum / count as f64},
            {"type": "stat", "key": "min", "value": values.iter().copied().fold(f64::INFINITY, f64::min)},
            {"type": "stat", "key": "max", "value": values.iter().copied().fold(f64::NEG_INFINITY, f64::max)},
        ],
    }))
}

async fn data_sender<R: Runtime>(
    iii: Iii<R>,
    prefix: String,
    input: Value,
) -> Result<Value, Error> {
    let channel = iii.create_channel(None).await?;
    channel
        .writer
        .write(&serde_json::to_vec(&input["records"])?)
        .await?;
    // The writer is closed before the processor is even triggered.
    channel.writer.close().await?;
    let payload = json!({ "label": "metrics-batch", "reader": channel.reader_ref });
    iii.trigger_with_timeout(
        &format!("{prefix}.data.processor"),
        payload,
        Duration::from_secs(20),
    )
    .await
}

async fn stream_worker<R: Runtime>(iii: Iii<R>, input: Value) -> Result<Value, Error> {
    let mut reader = ChannelReader::new(&iii, &channel_ref(&input, "reader")?);
    let writer = ChannelWriter::new(&iii, &channel_ref(&input, "writer")?);
    let (mut full, mut chunks) = (Vec::new(), 0);
    while let Some(chunk) = reader.next_binary().await? {
        full.extend_from_slice(&chunk);
        chunks += 1;
        writer
            .send_message(&json!({ "type": "progress", "chunks_received": chunks }).to_string())
            .await?;
    }
    let text = String::from_utf8_lossy(&full).into_owned();
    let words: Vec<&str> = text.split_whitespace().collect();
    let complete =
        json!({ "type": "complete", "word_count": words.len(), "byte_count": full.len() });
    writer.send_message(&complete.to_string()).await?;
    let result = json!({ "words": &words[..5.min(words.len())], "total": words.len() });
    writer.write(&serde_json::to_vec(&result)?).await?;
    writer.close().await?;
    Ok(json!({ "status": "done" }))
}

async fn stream_coordinator<R: Runtime>(
    iii: Iii<R>,
    prefix: String,
    input: Value,
) -> Result<Value, Error> {
    let text = input["text"].as_str().unwrap_or_default().to_owned();
    let chunk_size = input["chunkSize"].as_u64().unwrap_or(10).max(1) as usize;
    let input_channel = iii.create_channel(None).await?;
    let mut output_channel = iii.create_channel(None).await?;
    let messages = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = messages.clone();
    output_channel.reader.on_message(move |msg| {
        if let (Ok(parsed), Ok(mut list)) = (serde_json::from_str::<Value>(&msg), sink.lock()) {
            list.push(parsed);
        }
    });
    let writing = async {
        for chunk in text.as_bytes().chunks(chunk_size) {
            input_channel.writer.write(chunk).await?;
        }
        input_channel.writer.close().await
    };
    let payload =
        json!({ "reader": input_channel.reader_ref, "writer": output_channel.writer_ref });
    let worker_id = format!("{prefix}.stream.worker");
    let calling = iii.trigger_with_timeout(&worker_id, payload, Duration::from_secs(20));
    let (written, worker_result, result_data) =
        futures_util::join!(writing, calling, output_channel.reader.read_all());
    written?;
    let binary_result: Value = serde_json::from_slice(&result_data?)?;
    let collected = messages.lock().map(|m| m.clone()).unwrap_or_default();
    Ok(
        json!({ "messages": collected, "binaryResult": binary_result, "workerResult": worker_result? }),
    )
}

struct Provider<R: Runtime> {
    name: String,
    iii: Iii<R>,
    registrations: Arc<Mutex<Vec<Value>>>,
}

impl<R: Runtime> TriggerHandler for Provider<R> {
    fn register(&self, request: TriggerRequest) -> BoxFuture<'static, Result<(), ErrorBody>> {
        if let Ok(mut list) = self.registrations.lock() {
            list.push(json!({ "id": request.id, "function_id": request.function_id, "config": request.config }));
        }
        let payload =
            json!({ "provider": self.name, "trigger_id": request.id, "config": request.config });
        let fired = self.iii.trigger_void(&request.function_id, payload);
        Box::pin(async move {
            fired.map_err(|e| ErrorBody::new("trigger_registration_failed", e.to_string()))
        })
    }

    fn unregister(&self, _request: TriggerRequest) -> BoxFuture<'static, Result<(), ErrorBody>> {
        Box::pin(async { Ok(()) })
    }
}

async fn run<R: Runtime>(rt: R, url: String, name: String) {
    let prefix = format!("interop.{name}");
    let iii = Iii::connect(
        rt,
        WorkerOptions {
            url: Some(url),
            name: Some(format!("interop-{name}")),
            ..WorkerOptions::default()
        },
    )
    .expect("worker options");
    let registrations = Arc::new(Mutex::new(Vec::<Value>::new()));
    let fired = Arc::new(Mutex::new(Vec::<Value>::new()));
    iii.register_trigger_type(
        &format!("{prefix}.tt"),
        &format!("interop trigger type of {name}"),
        Provider {
            name: name.clone(),
            iii: iii.clone(),
            registrations: registrations.clone(),
        },
    )
    .expect("trigger type");

    let n = name.clone();
    register(&iii, format!("{prefix}.echo"), move |_, input| {
        let n = n.clone();
        async move { Ok(json!({ "sdk": n, "value": input["value"] })) }
    });
    let n = name.clone();
    register(&iii, format!("{prefix}.fail"), move |_, input| {
        let n = n.clone();
        async move {
            Err(err(format!(
                "boom from {n}: {}",
                input["msg"].as_str().unwrap_or("")
            )))
        }
    });
    register(&iii, format!("{prefix}.call"), |iii, input| async move {
        let function_id = input["function_id"].as_str().unwrap_or_default().to_owned();
        let payload = input.get("payload").cloned().unwrap_or(Value::Null);
        Ok(
            match iii
                .trigger_with_timeout(&function_id, payload, Duration::from_secs(20))
                .await
            {
                Ok(result) => json!({ "ok": result }),
                Err(Error::Remote(body)) => {
                    json!({ "error": { "code": body.code, "message": body.message } })
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
        let list = registrations.lock().map(|l| l.clone()).unwrap_or_default();
        async move { Ok(json!({ "registrations": list })) }
    });
    register(&iii, format!("{prefix}.bind"), |iii, input| async move {
        iii.register_trigger(
            input["trigger_type"].as_str().unwrap_or_default(),
            input["function_id"].as_str().unwrap_or_default(),
            input["config"].clone(),
        )
        .await?;
        Ok(json!({ "bound": true }))
    });
    let f = fired.clone();
    register(&iii, format!("{prefix}.on_fire"), move |_, input| {
        if let Ok(mut list) = f.lock() {
            list.push(input);
        }
        async move { Ok(json!({ "ok": true })) }
    });
    register(&iii, format!("{prefix}.fired"), move |_, _| {
        let list = fired.lock().map(|l| l.clone()).unwrap_or_default();
        async move { Ok(json!({ "fired": list })) }
    });
    println!("READY");
    futures_util::future::pending::<()>().await;
}
