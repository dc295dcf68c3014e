//! The iii documentation's Rust snippets that do not name tokio (the "Data Channels"
//! page's sender/processor, the channels how-to's write, pass the ref, read), with only
//! `iii_sdk` replaced by `iii_smol::sdk`, compiled and run on smol. `seeds.rs` holds the
//! same snippets for tokio.

// The snippets import names they do not all use.
#![allow(unused_imports)]

use std::time::Duration;

use iii_smol::sdk::{register_worker, IIIError, InitOptions, RegisterFunctionMessage, III};
use serde_json::{json, Value};

#[rustfmt::skip]
fn seed_001_sender_processor(iii: &III) {
// docs:data-channels:sender-processor begin
use iii_smol::sdk::{III, IIIError, ChannelReader, extract_channel_refs, ChannelDirection, RegisterFunctionMessage, TriggerRequest};
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
async fn seed_003_write_and_pass(iii: &III) -> Result<Value, IIIError> {
// docs:channels-how-to:write begin
let channel = iii.create_channel(None).await?;
channel.writer.write(b"file contents").await?;
channel.writer.close().await?;
// docs:channels-how-to:write end
// docs:channels-how-to:pass-ref begin
use iii_smol::sdk::TriggerRequest;
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
use iii_smol::sdk::{ChannelDirection, ChannelReader, IIIError};
use serde_json::json;
let refs = iii_smol::sdk::extract_channel_refs(&input);
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

#[test]
fn the_documented_snippets_run_on_smol() {
    smol::block_on(async {
        let engine = iii_smol::bind("127.0.0.1:0", Default::default())
            .await
            .expect("engine");
        let iii = register_worker(&engine.url(), InitOptions::default());
        seed_001_sender_processor(&iii);
        seed_003_read(&iii);
        iii.worker()
            .expect("a running worker")
            .wait_registered(Duration::from_secs(30))
            .await
            .expect("registrations in effect");
        let records = json!([{"value": 1}, {"value": 2}, {"value": 3}]);
        let stats = iii
            .trigger(iii_smol::sdk::TriggerRequest::new(
                "data.sender",
                json!({"records": records}),
            ))
            .await
            .expect("data.sender");
        assert_eq!(
            stats["messages"][1],
            json!({"type": "stat", "key": "sum", "value": 6.0})
        );
        let processed = seed_003_write_and_pass(&iii).await.expect("files::process");
        assert_eq!(processed, json!({"bytes": 13}));
        iii.shutdown_async().await;
        engine.shutdown().await;
    });
}
