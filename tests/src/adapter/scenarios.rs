//! The scenarios of the adapter suite (the behaviours the tokio issue lists).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use iii_driver::worker::{ChannelReader, ChannelRef, ChannelWriter, Error, ErrorBody, Iii};
use iii_driver::Runtime;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{worker, WAIT};

fn remote_code(result: Result<Value, Error>) -> String {
    match result {
        Err(Error::Remote(body)) => body.code,
        other => panic!("expected a remote error, got {other:?}"),
    }
}

/// A call round-trips through the engine; a handler error comes back; an unknown
/// function fails with `function_not_found`.
pub async fn invoke_round_trip<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "suite-owner").await;
    let caller = worker(rt, url, "suite-caller").await;
    owner
        .register_function("math.add", |input: Value| async move {
            let sum = input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0);
            Ok::<_, Error>(json!({ "sum": sum }))
        })
        .expect("register");
    owner
        .register_function(
            "math.fail",
            |_: Value| async move { Err::<Value, _>("boom") },
        )
        .expect("register");
    wait_registered(&caller, "math.add").await;
    let result = caller
        .trigger("math.add", json!({"a": 2, "b": 40}))
        .await
        .expect("call");
    assert_eq!(result, json!({"sum": 42}));
    assert_eq!(
        remote_code(caller.trigger("math.fail", json!({})).await),
        "invocation_failed"
    );
    assert_eq!(
        remote_code(caller.trigger("no.such.function", json!({})).await),
        "function_not_found"
    );
    caller.shutdown().await;
    owner.shutdown().await;
}

/// A void call runs the function and returns nothing to the caller.
pub async fn void_call<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "suite-void-owner").await;
    let caller = worker(rt, url, "suite-void-caller").await;
    let (seen_tx, seen) = futures_channel::oneshot::channel::<Value>();
    let seen_tx = Arc::new(Mutex::new(Some(seen_tx)));
    owner
        .register_function("log.line", move |input: Value| {
            let seen_tx = seen_tx.clone();
            async move {
                if let Some(tx) = seen_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(input);
                }
                Ok::<_, Error>(Value::Null)
            }
        })
        .expect("register");
    wait_registered(&caller, "log.line").await;
    caller
        .trigger_void("log.line", json!({"line": "hello"}))
        .expect("void call");
    let input = with_timeout(seen).await.expect("handler ran");
    assert!(input["warmup"] == true || input["line"] == "hello");
    caller.shutdown().await;
    owner.shutdown().await;
}

/// The target worker disconnecting mid-call stops the call with `invocation_stopped`.
pub async fn invocation_stopped_when_the_target_leaves<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "suite-leaving-owner").await;
    let caller = worker(rt, url, "suite-stopped-caller").await;
    let (started_tx, started) = futures_channel::mpsc::unbounded::<()>();
    owner
        .register_function("slow.op", move |_: Value| {
            let started_tx = started_tx.clone();
            async move {
                let _ = started_tx.unbounded_send(());
                futures_util::future::pending::<()>().await;
                Ok::<_, Error>(Value::Null)
            }
        })
        .expect("register");
    wait_registered(&caller, "slow.op").await;
    let call = caller.trigger("slow.op", json!({}));
    let mut started = started;
    let (result, ()) = futures_util::join!(call, async {
        started.next().await;
        owner.shutdown().await;
    });
    assert_eq!(remote_code(result), "invocation_stopped");
    caller.shutdown().await;
}

/// Waits until `function_id` is listed by the engine (registration is asynchronous).
async fn wait_registered<R: Runtime>(caller: &Iii<R>, function_id: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let listed = caller
            .trigger("engine::functions::list", json!({}))
            .await
            .expect("list functions");
        let found = listed["functions"]
            .as_array()
            .is_some_and(|list| list.iter().any(|f| f["function_id"] == function_id));
        if found {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{function_id} never registered"
        );
        pause(Duration::from_millis(10)).await;
    }
}

/// A call to a handler that never answers times out at its deadline.
pub async fn trigger_timeout<R: Runtime>(rt: R, url: &str) {
    let owner = worker(rt.clone(), url, "suite-timeout-owner").await;
    let caller = worker(rt, url, "suite-timeout-caller").await;
    owner
        .register_function("never.answers", |_: Value| async move {
            futures_util::future::pending::<()>().await;
            Ok::<_, Error>(Value::Null)
        })
        .expect("register");
    wait_registered(&caller, "never.answers").await;
    let start = std::time::Instant::now();
    let result = caller
        .trigger_with_timeout("never.answers", json!({}), Duration::from_millis(300))
        .await;
    assert!(
        matches!(&result, Err(Error::CallTimeout { function_id, timeout })
            if function_id == "never.answers" && *timeout == Duration::from_millis(300)),
        "{result:?}"
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    caller.shutdown().await;
    owner.shutdown().await;
}

/// `size` bytes from a writer on `writer_rt` to a reader on `reader_rt`, in uneven writes
/// with text messages between them; the reader checks the SHA-256 and the message order.
pub async fn transfer<RW: Runtime, RR: Runtime>(
    writer_rt: RW,
    reader_rt: RR,
    url: &str,
    size: usize,
) {
    let sender = worker(writer_rt, url, "suite-sender").await;
    let receiver = worker(reader_rt, url, "suite-receiver").await;
    let channel = sender.create_channel(None).await.expect("create channel");
    let reader_ref = channel.reader_ref.clone();
    let receiving = async {
        let mut reader = ChannelReader::new(&receiver, &reader_ref);
        let texts = Arc::new(Mutex::new(Vec::new()));
        let received = Arc::new(Mutex::new(0usize));
        let mut hasher = Sha256::new();
        let mut total = 0usize;
        loop {
            match reader.next_item().await.expect("read") {
                Some(iii_driver::worker::ChannelItem::Binary(chunk)) => {
                    hasher.update(&chunk);
                    total += chunk.len();
                }
                Some(iii_driver::worker::ChannelItem::Text(text)) => {
                    texts.lock().expect("lock").push((total, text));
                }
                None => break,
            }
        }
        *received.lock().expect("lock") = total;
        let texts = texts.lock().expect("lock").clone();
        (total, hex(&hasher.finalize()), texts)
    };
    let sending = async {
        let mut hasher = Sha256::new();
        let mut offset = 0usize;
        let mut sizes = [1usize, 65_536, 70_001, 3, 200_000, 9_999].iter().cycle();
        let mut marks = Vec::new();
        while offset < size {
            let len = (*sizes.next().unwrap_or(&1)).min(size - offset);
            let chunk: Vec<u8> = (offset..offset + len)
                .map(|i| (i * 31 % 251) as u8)
                .collect();
            hasher.update(&chunk);
            channel.writer.write(&chunk).await.expect("write");
            offset += len;
            if marks.len() < 8 && offset >= marks.len() * size / 8 {
                let text = format!("mark {}", marks.len());
                channel.writer.send_message(&text).await.expect("text");
                marks.push((offset, text));
            }
        }
        channel.writer.close().await.expect("close");
        (hex(&hasher.finalize()), marks)
    };
    let ((total, digest, texts), (expected, marks)) = futures_util::join!(receiving, sending);
    assert_eq!(total, size);
    assert_eq!(digest, expected, "SHA-256 of what arrived");
    assert_eq!(texts, marks, "text messages at the same stream offsets");
    sender.shutdown().await;
    receiver.shutdown().await;
}

/// A writer dropped mid-stream without closing makes the reader fail, not end cleanly.
pub async fn dropped_writer_fails_the_reader<R: Runtime>(rt: R, url: &str) {
    let sender = worker(rt.clone(), url, "suite-dropping-sender").await;
    let receiver = worker(rt, url, "suite-failing-receiver").await;
    let channel = sender.create_channel(None).await.expect("create");
    let mut reader = ChannelReader::new(&receiver, &channel.reader_ref);
    channel.writer.write(&[1u8; 100_000]).await.expect("write");
    drop(channel.writer);
    let mut received = 0;
    let outcome = loop {
        match with_timeout(reader.next_binary()).await {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break Ok(received),
            Err(error) => break Err(error),
        }
    };
    assert!(
        outcome.is_err(),
        "a vanished writer must not look like a clean end ({outcome:?})"
    );
    sender.shutdown().await;
    receiver.shutdown().await;
}

/// A ref with a wrong key, and a ref used a second time, are refused.
pub async fn wrong_key_and_reused_ref_are_refused<R: Runtime>(rt: R, url: &str) {
    let iii = worker(rt, url, "suite-refusals").await;
    let channel = iii.create_channel(None).await.expect("create");
    let mut wrong: ChannelRef = channel.reader_ref.clone();
    wrong.access_key = channel.writer_ref.access_key.clone();
    let mut refused = ChannelReader::new(&iii, &wrong);
    assert!(
        with_timeout(refused.next_binary()).await.is_err(),
        "wrong key refused"
    );
    let mut first = ChannelReader::new(&iii, &channel.reader_ref);
    let mut second = ChannelReader::new(&iii, &channel.reader_ref);
    let writer = ChannelWriter::new(&iii, &channel.writer_ref);
    writer.write(b"hello").await.expect("write");
    writer.close().await.expect("close");
    assert_eq!(
        with_timeout(first.read_all()).await.expect("first reader"),
        b"hello"
    );
    assert!(
        with_timeout(second.read_all()).await.is_err(),
        "reused ref refused"
    );
    iii.shutdown().await;
}

/// Awaits `future`, failing the test after [`WAIT`].
pub(super) async fn with_timeout<F: std::future::Future>(future: F) -> F::Output {
    let timer = timer(WAIT);
    futures_util::pin_mut!(future);
    match futures_util::future::select(future, timer).await {
        futures_util::future::Either::Left((output, _)) => output,
        futures_util::future::Either::Right(_) => panic!("timed out after {WAIT:?}"),
    }
}

/// A runtime-independent timer: a thread that sleeps, then completes a oneshot.
pub(super) fn timer(after: Duration) -> futures_channel::oneshot::Receiver<()> {
    let (tx, rx) = futures_channel::oneshot::channel();
    std::thread::spawn(move || {
        std::thread::sleep(after);
        let _ = tx.send(());
    });
    rx
}

/// Sleeps without needing any particular runtime's timer.
pub(super) async fn pause(duration: Duration) {
    let _ = timer(duration).await;
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The documentation's sender → processor example: the writer closes before the reader
/// is triggered; the processor returns statistics.
pub async fn sender_to_processor<R: Runtime>(rt: R, url: &str) {
    let processor = worker(rt.clone(), url, "suite-processor").await;
    let sender = worker(rt, url, "suite-batch-sender").await;
    let iii = processor.clone();
    processor
        .register_function("data.processor", move |input: Value| {
            let iii = iii.clone();
            async move {
                let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
                let raw = ChannelReader::new(&iii, &reader_ref).read_all().await?;
                let records: Vec<Value> = serde_json::from_slice(&raw)?;
                let values: Vec<f64> = records.iter().filter_map(|r| r["value"].as_f64()).collect();
                let sum: f64 = values.iter().sum();
                Ok::<_, Error>(json!({
                    "label": input["label"], "count": values.len(), "sum": sum,
                    "average": sum / values.len() as f64,
                    "min": values.iter().copied().fold(f64::INFINITY, f64::min),
                    "max": values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                }))
            }
        })
        .expect("register");
    wait_registered(&sender, "data.processor").await;
    let channel = sender.create_channel(None).await.expect("create");
    let records =
        json!([{"value": 12}, {"value": 100}, {"value": 250}, {"value": 157}, {"value": 2048}]);
    channel
        .writer
        .write(&serde_json::to_vec(&records).expect("json"))
        .await
        .expect("write");
    channel.writer.close().await.expect("close");
    let stats = sender
        .trigger(
            "data.processor",
            json!({"label": "metrics-batch", "reader": channel.reader_ref}),
        )
        .await
        .expect("processor");
    assert_eq!(
        stats,
        json!({"label": "metrics-batch", "count": 5, "sum": 2567.0,
        "average": 513.4, "min": 12.0, "max": 2048.0})
    );
    sender.shutdown().await;
    processor.shutdown().await;
}

/// The documentation's coordinator ↔ worker example: progress messages per chunk on a
/// second channel, then a completion message and a binary result.
pub async fn coordinator_and_worker<R: Runtime>(rt: R, url: &str) {
    const TEXT: &str = "The quick brown fox jumps over the lazy dog and runs into the dark forest";
    let stream_worker = worker(rt.clone(), url, "suite-stream-worker").await;
    let coordinator = worker(rt, url, "suite-coordinator").await;
    let iii = stream_worker.clone();
    stream_worker
        .register_function("stream.worker", move |input: Value| {
            let iii = iii.clone();
            async move {
                let reader_ref: ChannelRef = serde_json::from_value(input["reader"].clone())?;
                let writer_ref: ChannelRef = serde_json::from_value(input["writer"].clone())?;
                let mut reader = ChannelReader::new(&iii, &reader_ref);
                let writer = ChannelWriter::new(&iii, &writer_ref);
                let (mut received, mut chunks) = (Vec::new(), 0);
                while let Some(chunk) = reader.next_binary().await? {
                    received.extend_from_slice(&chunk);
                    chunks += 1;
                    let progress = json!({"type": "progress", "chunks_received": chunks});
                    writer.send_message(&progress.to_string()).await?;
                }
                let text = String::from_utf8_lossy(&received).into_owned();
                let words: Vec<&str> = text.split_whitespace().collect();
                let complete = json!({"type": "complete", "word_count": words.len(), "byte_count": received.len()});
                writer.send_message(&complete.to_string()).await?;
                let result = json!({"words": &words[..5], "total": words.len()});
                writer.write(result.to_string().as_bytes()).await?;
                writer.close().await?;
                Ok::<_, Error>(json!({"status": "done"}))
            }
        })
        .expect("register");
    wait_registered(&coordinator, "stream.worker").await;
    let input = coordinator
        .create_channel(None)
        .await
        .expect("input channel");
    let output = coordinator
        .create_channel(None)
        .await
        .expect("output channel");
    let mut out_reader = output.reader;
    let messages = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = messages.clone();
    out_reader.on_message(move |text| {
        if let (Ok(value), Ok(mut list)) = (serde_json::from_str(&text), sink.lock()) {
            list.push(value);
        }
    });
    for chunk in TEXT.as_bytes().chunks(10) {
        input.writer.write(chunk).await.expect("write");
    }
    input.writer.close().await.expect("close");
    let call = coordinator.trigger(
        "stream.worker",
        json!({"reader": input.reader_ref, "writer": output.writer_ref}),
    );
    let (status, binary) = futures_util::join!(call, out_reader.read_all());
    assert_eq!(status.expect("worker")["status"], "done");
    let result: Value = serde_json::from_slice(&binary.expect("read output")).expect("binary json");
    assert_eq!(result["total"], 15);
    assert_eq!(
        result["words"],
        json!(["The", "quick", "brown", "fox", "jumps"])
    );
    let messages = messages.lock().expect("lock").clone();
    assert!(messages.iter().any(|m| m["type"] == "progress"));
    let complete = messages
        .iter()
        .find(|m| m["type"] == "complete")
        .expect("complete message");
    assert_eq!(complete["word_count"], 15);
    coordinator.shutdown().await;
    stream_worker.shutdown().await;
}

/// A trigger type provided by one worker and a trigger bound to it from another: the
/// provider is asked to bind (with the consumer's config), fires the bound function, and
/// hears about the unbinding.
pub async fn trigger_type_and_binding<R: Runtime>(rt: R, url: &str) {
    use iii_driver::worker::{TriggerHandler, TriggerRequest};
    use iii_driver::BoxFuture;

    struct Provider(futures_channel::mpsc::UnboundedSender<(bool, TriggerRequest)>);
    impl TriggerHandler for Provider {
        fn register(&self, request: TriggerRequest) -> BoxFuture<'static, Result<(), ErrorBody>> {
            let _ = self.0.unbounded_send((true, request));
            Box::pin(async { Ok(()) })
        }
        fn unregister(&self, request: TriggerRequest) -> BoxFuture<'static, Result<(), ErrorBody>> {
            let _ = self.0.unbounded_send((false, request));
            Box::pin(async { Ok(()) })
        }
    }

    let provider = worker(rt.clone(), url, "suite-trigger-provider").await;
    let consumer = worker(rt, url, "suite-trigger-consumer").await;
    let (tx, mut requests) = futures_channel::mpsc::unbounded();
    provider
        .register_trigger_type("suite.tick", "a test timer", Provider(tx))
        .expect("trigger type");
    let (fired_tx, mut fired) = futures_channel::mpsc::unbounded::<Value>();
    consumer
        .register_function("on.tick", move |input: Value| {
            let fired_tx = fired_tx.clone();
            async move {
                let _ = fired_tx.unbounded_send(input);
                Ok::<_, Error>(json!("handled"))
            }
        })
        .expect("function");
    wait_registered(&consumer, "on.tick").await;
    let binding = consumer
        .register_trigger("suite.tick", "on.tick", json!({"every_ms": 100}))
        .await
        .expect("bind");
    let (registering, request) = with_timeout(requests.next()).await.expect("bind request");
    assert!(registering);
    assert_eq!(request.id, binding.id());
    assert_eq!(request.function_id, "on.tick");
    assert_eq!(request.config, json!({"every_ms": 100}));
    // The provider fires: an ordinary call of the bound function.
    let answer = provider
        .trigger("on.tick", json!({"tick": 1}))
        .await
        .expect("fire");
    assert_eq!(answer, json!("handled"));
    assert_eq!(with_timeout(fired.next()).await.expect("fired")["tick"], 1);
    binding.unregister().expect("unbind");
    let (registering, request) = with_timeout(requests.next()).await.expect("unbind request");
    assert!(!registering);
    assert_eq!(request.id, binding.id());
    consumer.shutdown().await;
    provider.shutdown().await;
}
