//! The iii documentation's Rust snippets (the "Data Channels" page's sender/processor and
//! coordinator/worker, the channels how-to's write, pass the ref, read), with only
//! `iii_sdk` replaced by `iii_tokio::sdk`, compiled here and run against our engine. Each
//! snippet sits between `// docs:<page>:<name> begin/end` markers, copied verbatim from
//! the documentation (rustfmt skips these functions).

// The snippets import names they do not all use, and unwrap as the documentation does.
#![allow(unused_imports, clippy::unwrap_used)]

use std::time::Duration;

use iii_tests::adapter::Flavor;

use iii_tokio::sdk::{register_worker, IIIError, InitOptions, RegisterFunctionMessage, III};
use serde_json::{json, Value};

#[rustfmt::skip]
fn seed_001_sender_processor(iii: &III) {
// docs:data-channels:sender-processor begin
use iii_tokio::sdk::{III, IIIError, ChannelReader, extract_channel_refs, ChannelDirection, RegisterFunctionMessage, TriggerRequest};
use serde_json::{json, Value};

let iii_for_processor = iii.clone();
iii.register_function(RegisterFunctionMessage { id: "data.processor".into(), ..Default::default() }, move |input: Value| {
    let iii = iii_for_processor.clone();
    async move {
        let label = input["label"].as_str().unwrap_or_default().to_string();

        let refs = extract_channel_refs(&input);
        let reader_ref = refs.iter()
            .find(|(k, r)| k == "reader" && matches!(r.direction, ChannelDirection::Read))
            .map(|(_, r)| r.clone())
            .expect("missing reader channel ref");

        let reader = ChannelReader::new(iii.address(), &reader_ref);
        let raw = reader.read_all().await
            .map_err(|e| IIIError::Handler(e.to_string()))?;
        let records: Vec<Value> = serde_json::from_slice(&raw)
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        let values: Vec<f64> = records.iter()
            .filter_map(|r| r["value"].as_f64())
            .collect();

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
});

let iii_for_sender = iii.clone();
iii.register_function(RegisterFunctionMessage { id: "data.sender".into(), ..Default::default() }, move |input: Value| {
    let iii = iii_for_sender.clone();
    async move {
        let records = input["records"].clone();
        let channel = iii.create_channel(None).await
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        let payload = serde_json::to_vec(&records)
            .map_err(|e| IIIError::Handler(e.to_string()))?;
        channel.writer.write(&payload).await
            .map_err(|e| IIIError::Handler(e.to_string()))?;
        channel.writer.close().await
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        let result = iii.trigger(TriggerRequest::new("data.processor", json!({
            "label": "metrics-batch",
            "reader": channel.reader_ref,
        }))).await.map_err(|e| IIIError::Handler(e.to_string()))?;

        Ok(result)
    }
});
// docs:data-channels:sender-processor end
}

#[rustfmt::skip]
fn seed_001_coordinator_worker(iii: &III) {
// docs:data-channels:coordinator-worker begin
use std::sync::Arc;
use tokio::sync::Mutex;
use iii_tokio::sdk::{III, IIIError, ChannelReader, ChannelWriter, extract_channel_refs, ChannelDirection, RegisterFunctionMessage, TriggerRequest};
use serde_json::{json, Value};

let iii_for_worker = iii.clone();
iii.register_function(RegisterFunctionMessage { id: "stream.worker".into(), ..Default::default() }, move |input: Value| {
    let iii = iii_for_worker.clone();
    async move {
        let refs = extract_channel_refs(&input);

        let reader_ref = refs.iter()
            .find(|(k, r)| k == "reader" && matches!(r.direction, ChannelDirection::Read))
            .map(|(_, r)| r.clone()).expect("missing reader");
        let writer_ref = refs.iter()
            .find(|(k, r)| k == "writer" && matches!(r.direction, ChannelDirection::Write))
            .map(|(_, r)| r.clone()).expect("missing writer");

        let reader = ChannelReader::new(iii.address(), &reader_ref);
        let writer = ChannelWriter::new(iii.address(), &writer_ref);

        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut chunk_count = 0;

        while let Some(chunk) = reader.next_binary().await
            .map_err(|e| IIIError::Handler(e.to_string()))? {
            chunks.push(chunk);
            chunk_count += 1;
            writer.send_message(&serde_json::to_string(&json!({
                "type": "progress", "chunks_received": chunk_count,
            })).unwrap()).await.map_err(|e| IIIError::Handler(e.to_string()))?;
        }

        let full_data: Vec<u8> = chunks.iter().flatten().copied().collect();
        let text = String::from_utf8_lossy(&full_data);
        let words: Vec<&str> = text.split_whitespace().collect();

        writer.send_message(&serde_json::to_string(&json!({
            "type": "complete",
            "word_count": words.len(),
            "byte_count": full_data.len(),
        })).unwrap()).await.map_err(|e| IIIError::Handler(e.to_string()))?;

        let result_json = serde_json::to_vec(&json!({
            "words": &words[..5.min(words.len())],
            "total": words.len(),
        })).map_err(|e| IIIError::Handler(e.to_string()))?;
        writer.write(&result_json).await.map_err(|e| IIIError::Handler(e.to_string()))?;
        writer.close().await.map_err(|e| IIIError::Handler(e.to_string()))?;

        Ok(json!({"status": "done"}))
    }
});

let iii_for_coord = iii.clone();
iii.register_function(RegisterFunctionMessage { id: "stream.coordinator".into(), ..Default::default() }, move |input: Value| {
    let iii = iii_for_coord.clone();
    async move {
        let text = input["text"].as_str().unwrap_or_default().to_string();
        let chunk_size = input["chunkSize"].as_u64().unwrap_or(10) as usize;

        let input_channel = iii.create_channel(None).await
            .map_err(|e| IIIError::Handler(e.to_string()))?;
        let output_channel = iii.create_channel(None).await
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        let messages: Arc<Mutex<Vec<Value>>> = Arc::new(Mutex::new(Vec::new()));
        let msgs_clone = messages.clone();
        output_channel.reader.on_message(move |msg| {
            if let Ok(parsed) = serde_json::from_str::<Value>(&msg) {
                let msgs = msgs_clone.clone();
                tokio::spawn(async move { msgs.lock().await.push(parsed); });
            }
        }).await;

        let text_bytes = text.as_bytes().to_vec();
        let writer = input_channel.writer;
        let write_handle = tokio::spawn(async move {
            let mut offset = 0;
            while offset < text_bytes.len() {
                let end = (offset + chunk_size).min(text_bytes.len());
                writer.write(&text_bytes[offset..end]).await.expect("channel write");
                offset = end;
            }
            writer.close().await.expect("channel close");
        });

        let trigger_handle = {
            let iii = iii.clone();
            let reader_ref = input_channel.reader_ref.clone();
            let writer_ref = output_channel.writer_ref.clone();
            tokio::spawn(async move {
                iii.trigger(TriggerRequest::new("stream.worker", json!({
                    "reader": reader_ref,
                    "writer": writer_ref,
                }))).await
            })
        };

        let result_data = output_channel.reader.read_all().await
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        write_handle.await.map_err(|e| IIIError::Handler(e.to_string()))?;
        let worker_result = trigger_handle.await
            .map_err(|e| IIIError::Handler(e.to_string()))?
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        let binary_result: Value = serde_json::from_slice(&result_data)
            .map_err(|e| IIIError::Handler(e.to_string()))?;

        let collected = messages.lock().await.clone();

        Ok(json!({
            "messages": collected,
            "binaryResult": binary_result,
            "workerResult": worker_result,
        }))
    }
});
// docs:data-channels:coordinator-worker end
}

#[rustfmt::skip]
async fn seed_003_write_and_pass(iii: &III) -> Result<Value, IIIError> {
// docs:channels-how-to:write begin
let channel = iii.create_channel(None).await?;
channel.writer.write(b"file contents").await?;
channel.writer.close().await?;
// docs:channels-how-to:write end
// docs:channels-how-to:pass-ref begin
use iii_tokio::sdk::TriggerRequest;
use serde_json::json;
let result = iii
.trigger(TriggerRequest {
function_id: "files::process".to_string(),
payload: json!({
"filename": "report.csv",
"reader": channel.reader_ref,
}),
action: None,
timeout_ms: None,
})
.await?;
// docs:channels-how-to:pass-ref end
Ok(result)
}

#[rustfmt::skip]
fn seed_003_read(iii: &III) {
    let iii_handler = iii.clone();
    iii.register_function(RegisterFunctionMessage { id: "files::process".into(), ..Default::default() }, move |input: Value| {
        let iii = iii_handler.clone();
        async move {
// docs:channels-how-to:read begin
use iii_tokio::sdk::{ChannelDirection, ChannelReader, IIIError};
use serde_json::json;
let refs = iii_tokio::sdk::extract_channel_refs(&input);
let reader_ref = refs
.iter()
.find(|(key, ref_)| key == "reader" && matches!(ref_.direction, ChannelDirection::Read))
.map(|(_, ref_)| ref_.clone())
.ok_or_else(|| IIIError::Handler("missing reader channel ref".to_string()))?;
let reader = ChannelReader::new(iii.address(), &reader_ref);
let mut bytes = 0;
while let Some(chunk) = reader.next_binary().await? {
bytes += chunk.len();
}
Ok(json!({ "bytes": bytes }))
// docs:channels-how-to:read end
        }
    });
}

const SENTENCE: &str = "The quick brown fox jumps over the lazy dog and runs into the dark forest";

#[test]
fn the_documented_snippets_run_against_our_engine() {
    iii_tests::adapter::TokioFlavor::block_on(async {
        let engine = iii_tokio::bind("127.0.0.1:0", Default::default())
            .await
            .expect("engine");
        let iii = register_worker(&engine.url(), InitOptions::default());
        assert!(iii.fatal_error().is_none());
        seed_001_sender_processor(&iii);
        seed_001_coordinator_worker(&iii);
        seed_003_read(&iii);
        let worker = iii.worker().expect("a running worker");
        worker
            .wait_registered(Duration::from_secs(30))
            .await
            .expect("registrations in effect");

        let records = json!([{"name": "a", "value": 12}, {"name": "b", "value": 100},
            {"name": "c", "value": 250}, {"name": "d", "value": 157}, {"name": "e", "value": 2048}]);
        let stats = iii
            .trigger(iii_tokio::sdk::TriggerRequest::new(
                "data.sender",
                json!({"records": records}),
            ))
            .await
            .expect("data.sender");
        assert_eq!(stats["label"], "metrics-batch");
        let stat = |key: &str| {
            stats["messages"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["key"] == key))
                .map(|m| m["value"].clone())
                .unwrap_or(Value::Null)
        };
        assert_eq!(stat("count"), json!(5));
        assert_eq!(stat("sum"), json!(2567.0));
        assert_eq!(stat("average"), json!(513.4));
        assert_eq!(stat("min"), json!(12.0));
        assert_eq!(stat("max"), json!(2048.0));

        let out = iii
            .trigger(iii_tokio::sdk::TriggerRequest::new(
                "stream.coordinator",
                json!({"text": SENTENCE, "chunkSize": 10}),
            ))
            .await
            .expect("stream.coordinator");
        assert_eq!(out["workerResult"]["status"], "done");
        assert_eq!(out["binaryResult"]["total"], 15);
        assert_eq!(
            out["binaryResult"]["words"],
            json!(["The", "quick", "brown", "fox", "jumps"])
        );
        let messages = out["messages"].as_array().cloned().unwrap_or_default();
        assert!(messages.iter().any(|m| m["type"] == "progress"), "{out}");

        let processed = seed_003_write_and_pass(&iii).await.expect("files::process");
        assert_eq!(processed, json!({"bytes": "file contents".len()}));
        iii.shutdown_async().await;
        engine.shutdown().await;
    });
}
