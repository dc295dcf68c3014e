//! The two examples of the channels documentation, as simulator scripts.

use iii_core::channel::ChannelRef;
use iii_core::worker::EndOutcome;
use iii_tests::sim::apps::Piece;
use iii_tests::Sim;
use serde_json::{json, Value};

fn reader_ref(input: &Value, key: &str) -> ChannelRef {
    serde_json::from_value(input[key].clone()).expect("a channel ref in the input")
}

/// sender → processor: the sender writes a JSON batch and closes the writer *before*
/// triggering the processor; the processor reads it all and returns statistics.
#[test]
fn sender_to_processor_with_statistics() {
    let mut sim = Sim::with_seed(21);
    let [client, sender, processor] = sim.connected_workers(3)[..] else {
        unreachable!()
    };
    sim.register(sender, "data.sender");
    sim.register(processor, "data.processor");

    let records = json!([
        {"name": "a", "value": 12}, {"name": "b", "value": 100}, {"name": "c", "value": 250},
        {"name": "d", "value": 157}, {"name": "e", "value": 2048}
    ]);
    let outer = sim.invoke(client, "data.sender", json!({ "records": records }));

    // The sender: create a channel, write the batch, close, then trigger the processor.
    let call = sim.next_invocation(sender, "data.sender");
    let channel = sim.create_channel(sender, None);
    let writer = sim.open_end(sender, channel.writer);
    let payload = serde_json::to_vec(&call.data["records"]).expect("json");
    sim.write_all(sender, writer, &payload);
    sim.close_end(sender, writer);
    let inner = sim.invoke(
        sender,
        "data.processor",
        json!({"label": "metrics-batch", "reader": channel.reader}),
    );

    // The processor: read to the end, parse, compute.
    let job = sim.next_invocation(processor, "data.processor");
    let reader = sim.open_end(processor, reader_ref(&job.data, "reader"));
    assert_eq!(sim.read_to_end(processor, reader), EndOutcome::Clean);
    let parsed: Vec<Value> =
        serde_json::from_slice(&sim.sink(processor, reader).bytes).expect("batch");
    let values: Vec<f64> = parsed.iter().filter_map(|r| r["value"].as_f64()).collect();
    let sum: f64 = values.iter().sum();
    let stats = json!({
        "label": job.data["label"],
        "messages": [
            {"type": "stat", "key": "count", "value": values.len()},
            {"type": "stat", "key": "sum", "value": sum},
            {"type": "stat", "key": "average", "value": sum / values.len() as f64},
            {"type": "stat", "key": "min", "value": values.iter().cloned().fold(f64::INFINITY, f64::min)},
            {"type": "stat", "key": "max", "value": values.iter().cloned().fold(f64::NEG_INFINITY, f64::max)},
        ]
    });
    sim.complete(processor, job.id, Ok(stats));
    let result = sim.result(sender, inner);
    sim.complete(sender, call.id, Ok(result));

    let result = sim.result(client, outer);
    assert_eq!(result["label"], "metrics-batch");
    let stat = |key: &str| {
        result["messages"]
            .as_array()
            .expect("messages")
            .iter()
            .find(|m| m["key"] == key)
            .map(|m| m["value"].as_f64().unwrap_or(f64::NAN))
    };
    assert_eq!(result["messages"].as_array().map(Vec::len), Some(5));
    assert_eq!(stat("count"), Some(5.0));
    assert_eq!(stat("sum"), Some(2567.0));
    assert_eq!(stat("average"), Some(513.4));
    assert_eq!(stat("min"), Some(12.0));
    assert_eq!(stat("max"), Some(2048.0));
    sim.run_until_idle(10_000);
    assert_eq!(sim.engine.stats().channels, 0);
}

/// coordinator ↔ worker: the coordinator streams a sentence in 10-byte chunks into one
/// channel; the worker reports progress per chunk as text on a second channel, then a
/// completion message and a binary result, and closes.
#[test]
fn coordinator_and_worker_with_progress_messages() {
    let mut sim = Sim::with_seed(22);
    let [coordinator, worker] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.register(worker, "stream.worker");
    let text = "The quick brown fox jumps over the lazy dog and runs into the dark forest";

    let input = sim.create_channel(coordinator, None);
    let output = sim.create_channel(coordinator, None);
    let out_reader = sim.open_end(coordinator, output.reader);
    let in_writer = sim.open_end(coordinator, input.writer);
    for chunk in text.as_bytes().chunks(10) {
        sim.write_all(coordinator, in_writer, chunk);
    }
    sim.close_end(coordinator, in_writer);
    let call = sim.invoke(
        coordinator,
        "stream.worker",
        json!({"reader": input.reader, "writer": output.writer}),
    );

    // The worker: a progress message per chunk as it arrives, then the summary.
    let job = sim.next_invocation(worker, "stream.worker");
    let reader = sim.open_end(worker, reader_ref(&job.data, "reader"));
    let writer = sim.open_end(worker, reader_ref(&job.data, "writer"));
    let mut chunks = 0;
    loop {
        let seen = sim.sink(worker, reader).pieces.len();
        sim.run_until("a chunk or the end", 100_000, |sim| {
            let sink = sim.sink(worker, reader);
            sink.pieces.len() > seen || sink.ended.is_some()
        });
        let sink = sim.sink(worker, reader);
        let now_chunks = sink.pieces.len();
        let ended = sink.ended.clone();
        for _ in seen..now_chunks {
            chunks += 1;
            sim.send_text(
                worker,
                writer,
                &json!({"type": "progress", "chunks_received": chunks}).to_string(),
            );
        }
        if let Some(outcome) = ended {
            assert_eq!(outcome, EndOutcome::Clean);
            break;
        }
    }
    let received = String::from_utf8(sim.sink(worker, reader).bytes.clone()).expect("utf-8");
    let words: Vec<&str> = received.split_whitespace().collect();
    sim.send_text(
        worker,
        writer,
        &json!({"type": "complete", "word_count": words.len(),
        "byte_count": received.len()})
        .to_string(),
    );
    let summary = json!({"words": &words[..5], "total": words.len()});
    sim.write_all(worker, writer, summary.to_string().as_bytes());
    sim.close_end(worker, writer);
    sim.complete(worker, job.id, Ok(json!({"status": "done"})));

    // The coordinator reads the output to the end.
    assert_eq!(sim.read_to_end(coordinator, out_reader), EndOutcome::Clean);
    assert_eq!(sim.result(coordinator, call)["status"], "done");
    let sink = sim.sink(coordinator, out_reader);
    let messages: Vec<Value> = sink
        .texts()
        .iter()
        .map(|t| serde_json::from_str(t).expect("json"))
        .collect();
    let progress = messages.iter().filter(|m| m["type"] == "progress").count();
    assert!(progress >= 1);
    let complete = messages
        .iter()
        .find(|m| m["type"] == "complete")
        .expect("complete message");
    assert_eq!(complete["word_count"], 15);
    assert_eq!(complete["byte_count"], text.len());
    assert!(
        matches!(sink.pieces.last(), Some(Piece::Bytes(_))),
        "text arrives before the binary result"
    );
    let result: Value = serde_json::from_slice(&sink.bytes).expect("binary JSON result");
    assert_eq!(result["total"], 15);
    assert_eq!(
        result["words"],
        json!(["The", "quick", "brown", "fox", "jumps"])
    );
}
