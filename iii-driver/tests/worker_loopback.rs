//! The worker SDK against a loopback engine (`iii_core::engine::Engine` behind a small
//! async-tungstenite server, see `support`), over real WebSockets on smol.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{AsyncReadExt, AsyncWriteExt, StreamExt};
use iii_core::engine::EngineConfig;
use iii_core::worker::{EndOutcome, WorkerConfig};
use iii_driver::worker::{
    extract_channel_refs, ChannelItem, ChannelReader, ChannelRef, ChannelWriter, Direction, Error,
    Iii, WorkerOptions,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use support::{Smol, TestEngine};

const WAIT: Duration = Duration::from_secs(10);

fn options(engine: &TestEngine, name: &str) -> WorkerOptions {
    WorkerOptions {
        url: Some(engine.url.clone()),
        name: Some(name.to_owned()),
        ..WorkerOptions::default()
    }
}

async fn worker(engine: &TestEngine, name: &str) -> Iii<Smol> {
    let iii = Iii::connect(Smol, options(engine, name)).unwrap();
    iii.wait_connected(WAIT).await.unwrap();
    iii
}

/// A deterministic, non-repeating-per-chunk byte pattern.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7919) as u8).collect()
}

fn run<F: std::future::Future<Output = ()>>(test: F) {
    smol::block_on(async {
        let timed = async {
            smol::Timer::after(Duration::from_secs(60)).await;
            panic!("test timed out");
        };
        futures_util::future::select(std::pin::pin!(test), std::pin::pin!(timed)).await;
    });
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Sum {
    sum: i64,
}

#[test]
fn invoke_round_trip_between_two_workers() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let server = worker(&engine, "server").await;
        server
            .register_function("test::double", |input: Value| async move {
                let n = input["n"].as_i64().ok_or("`n` must be an integer")?;
                Ok::<_, &str>(json!({ "n": n * 2 }))
            })
            .unwrap();
        server
            .register_typed("test::add", |add: Add| async move {
                Ok::<_, String>(Sum { sum: add.a + add.b })
            })
            .unwrap();
        assert!(matches!(
            server.register_function("test::double", |v: Value| async move { Ok::<_, String>(v) }),
            Err(Error::Register(_))
        ));
        // The server's own call is ordered after its registrations on its connection.
        let own = server
            .trigger("test::double", json!({"n": 1}))
            .await
            .unwrap();
        assert_eq!(own, json!({"n": 2}));

        let client = worker(&engine, "client").await;
        let doubled = client
            .trigger("test::double", json!({"n": 21}))
            .await
            .unwrap();
        assert_eq!(doubled, json!({"n": 42}));
        let sum: Sum = client
            .trigger_typed("test::add", &Add { a: 2, b: 3 })
            .await
            .unwrap();
        assert_eq!(sum, Sum { sum: 5 });

        match client.trigger("test::double", json!({"n": "x"})).await {
            Err(Error::Remote(body)) => {
                assert_eq!(body.code, "invocation_failed");
                assert!(body.message.contains("integer"), "{body:?}");
            }
            other => panic!("expected a remote error, got {other:?}"),
        }
        match client.trigger("test::add", json!({"a": "x"})).await {
            Err(Error::Remote(body)) => assert_eq!(body.code, "deserialization_error"),
            other => panic!("expected deserialization_error, got {other:?}"),
        }
        match client.trigger("test::missing", json!({})).await {
            Err(Error::Remote(body)) => assert_eq!(body.code, "function_not_found"),
            other => panic!("expected function_not_found, got {other:?}"),
        }
        server
            .trigger_void("test::double", json!({"n": 1}))
            .unwrap();

        client.shutdown().await;
        assert!(client.is_stopped());
        assert!(client
            .trigger("test::double", json!({"n": 1}))
            .await
            .is_err());
        server.shutdown().await;
    });
}

#[test]
fn a_slow_function_times_out() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let iii = worker(&engine, "slow").await;
        iii.register_function("test::slow", |_input: Value| async move {
            smol::Timer::after(Duration::from_secs(5)).await;
            Ok::<_, String>(Value::Null)
        })
        .unwrap();
        let result = iii
            .trigger_with_timeout("test::slow", Value::Null, Duration::from_millis(200))
            .await;
        let error = result.expect_err("too slow");
        assert!(error.is_timeout(), "{error:?}");
        assert_eq!(
            error.to_string(),
            "`test::slow` did not answer within 200ms"
        );
        iii.shutdown().await;
    });
}

#[test]
fn wait_connected_reports_a_refused_connection_at_once() {
    run(async {
        // Bind then drop a listener to get a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let options = WorkerOptions {
            url: Some(format!("ws://127.0.0.1:{port}")),
            ..WorkerOptions::default()
        };
        let iii = Iii::connect(Smol, options).unwrap();
        // Nothing listens: reported as unreachable without waiting for a deadline.
        let result = iii.wait_connected(Duration::from_secs(60)).await;
        assert!(
            matches!(&result, Err(Error::Unreachable { detail, .. }) if detail.contains("refused")),
            "{result:?}"
        );
        iii.shutdown().await;
    });
}

#[test]
fn one_mebibyte_through_a_channel_between_workers() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let consumer = worker(&engine, "consumer").await;
        let handle = consumer.clone();
        consumer
            .register_function("test::consume", move |input: Value| {
                let iii = handle.clone();
                async move {
                    let refs = extract_channel_refs(&input);
                    let (_, reader_ref) = refs
                        .iter()
                        .find(|(path, r)| path == "reader" && r.direction == Direction::Read)
                        .ok_or(Error::InvalidOption("missing reader ref".into()))?;
                    let mut reader = ChannelReader::new(&iii, reader_ref);
                    let texts = Arc::new(Mutex::new(Vec::new()));
                    let seen = texts.clone();
                    reader.on_message(move |text| seen.lock().unwrap().push(text));
                    let data = reader.read_all().await?;
                    let texts = texts.lock().unwrap().clone();
                    Ok::<_, Error>(json!({ "len": data.len(), "ok": data == pattern(1 << 20),
                        "texts": texts }))
                }
            })
            .unwrap();
        // Ordered after the registration on the consumer's own connection.
        consumer.wait_connected(WAIT).await.unwrap();
        let _ = consumer.trigger("test::missing", Value::Null).await;

        let producer = worker(&engine, "producer").await;
        let channel = producer.create_channel(None).await.unwrap();
        assert_eq!(channel.reader_ref.direction, Direction::Read);
        let writer = channel.writer;
        let writing = async move {
            writer.send_message("start").await.unwrap();
            writer.write(&pattern(1 << 20)).await.unwrap();
            writer.send_message("end").await.unwrap();
            writer.close().await.unwrap();
        };
        let call = producer.trigger(
            "test::consume",
            json!({ "label": "x", "reader": channel.reader_ref }),
        );
        let (result, ()) = futures_util::future::join(call, writing).await;
        let result = result.unwrap();
        assert_eq!(
            result,
            json!({"len": 1 << 20, "ok": true, "texts": ["start", "end"]})
        );
        producer.shutdown().await;
        consumer.shutdown().await;
    });
}

#[test]
fn small_windows_apply_backpressure_and_keep_order() {
    run(async {
        let config = EngineConfig {
            channel_buffer_bytes: 64 * 1024,
            max_channel_message_bytes: 16 * 1024,
            read_ahead_bytes: 16 * 1024,
            ..EngineConfig::default()
        };
        let engine = TestEngine::start(config).await;
        let mut opts = options(&engine, "small");
        opts.core = WorkerConfig {
            chunk_size: 16 * 1024,
            writer_window_bytes: 32 * 1024,
            reader_window_bytes: 32 * 1024,
            send_credit: 2,
            ..WorkerConfig::default()
        };
        let iii = Iii::connect(Smol, opts).unwrap();
        iii.wait_connected(WAIT).await.unwrap();
        let channel = iii.create_channel(Some(4)).await.unwrap();
        let data = pattern(2 << 20);
        let expected = data.clone();
        let mut writer = channel.writer;
        let writing = async move {
            // Through AsyncWrite: partial writes under the window.
            writer.write_all(&data).await.unwrap();
            writer.send_message("done").await.unwrap();
            AsyncWriteExt::close(&mut writer).await.unwrap();
        };
        let mut reader = channel.reader;
        let reading = async move {
            let mut items = Vec::new();
            let mut bytes = Vec::new();
            while let Some(item) = reader.next_item().await.unwrap() {
                match item {
                    ChannelItem::Binary(chunk) => {
                        assert!(chunk.len() <= 16 * 1024);
                        bytes.extend_from_slice(&chunk);
                        // A slow reader.
                        if bytes.len() % (256 * 1024) < chunk.len() {
                            smol::Timer::after(Duration::from_millis(5)).await;
                        }
                    }
                    ChannelItem::Text(text) => items.push((bytes.len(), text)),
                }
            }
            (bytes, items)
        };
        let ((bytes, items), ()) = futures_util::future::join(reading, writing).await;
        assert_eq!(bytes.len(), expected.len());
        assert!(bytes == expected);
        assert_eq!(items, vec![(2 << 20, "done".to_owned())]);
        iii.shutdown().await;
    });
}

#[test]
fn async_read_and_stream_views() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let iii = worker(&engine, "views").await;

        let channel = iii.create_channel(None).await.unwrap();
        channel.writer.write(b"hello ").await.unwrap();
        channel.writer.write(b"world").await.unwrap();
        channel.writer.close().await.unwrap();
        let mut reader = channel.reader;
        let mut text = String::new();
        reader.read_to_string(&mut text).await.unwrap();
        assert_eq!(text, "hello world");

        let channel = iii.create_channel(None).await.unwrap();
        channel.writer.write(b"a").await.unwrap();
        channel.writer.close().await.unwrap();
        let chunks: Vec<_> = channel.reader.collect().await;
        assert_eq!(chunks.len(), 1);
        assert_eq!(&chunks[0].as_ref().unwrap()[..], b"a");
        iii.shutdown().await;
    });
}

#[test]
fn dropping_a_writer_without_close_is_an_error_for_the_reader() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let iii = worker(&engine, "dropper").await;
        let channel = iii.create_channel(None).await.unwrap();
        channel.writer.write(&pattern(100_000)).await.unwrap();
        drop(channel.writer);
        let mut reader = channel.reader;
        let result = reader.read_all().await;
        assert!(
            matches!(result, Err(Error::Channel(EndOutcome::Aborted { .. }))),
            "{result:?}"
        );
        // Sticky.
        assert!(reader.next_binary().await.is_err());
        iii.shutdown().await;
    });
}

#[test]
fn a_writer_closed_without_writing_ends_the_reader_cleanly() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let iii = worker(&engine, "empty").await;
        let channel = iii.create_channel(None).await.unwrap();
        channel.writer.close().await.unwrap();
        // Closing twice is harmless; writing after close is refused.
        channel.writer.close().await.unwrap();
        assert!(matches!(
            channel.writer.write(b"x").await,
            Err(Error::Closed)
        ));
        let mut reader = channel.reader;
        assert_eq!(reader.read_all().await.unwrap(), Vec::<u8>::new());
        assert_eq!(reader.next_binary().await.unwrap(), None);
        iii.shutdown().await;
    });
}

#[test]
fn refs_open_once_and_unknown_refs_are_refused() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let iii = worker(&engine, "refs").await;
        let bogus = ChannelRef {
            channel_id: "00000000-0000-0000-0000-000000000000".into(),
            access_key: "0".repeat(64),
            direction: Direction::Read,
        };
        let mut reader = ChannelReader::new(&iii, &bogus);
        let result = reader.next_binary().await;
        assert!(
            matches!(
                result,
                Err(Error::Channel(EndOutcome::Refused { status: Some(404) }))
            ),
            "{result:?}"
        );

        // A writer opened from the ref, in place of the local writer.
        let channel = iii.create_channel(None).await.unwrap();
        let remote_writer = ChannelWriter::new(&iii, &channel.writer_ref);
        remote_writer.write(b"via ref").await.unwrap();
        remote_writer.close().await.unwrap();
        let mut reader = channel.reader;
        assert_eq!(reader.read_all().await.unwrap(), b"via ref");
        // The local writer was never used: its ref is spent, so it is refused. The write
        // is only accepted into the window; the close reports the refusal.
        channel.writer.write(b"late").await.unwrap();
        let spent = channel.writer.close().await;
        assert!(
            matches!(spent, Err(Error::Channel(EndOutcome::Refused { .. }))),
            "{spent:?}"
        );
        iii.shutdown().await;
    });
}

#[test]
fn dropped_ends_release_the_channel() {
    run(async {
        let engine = TestEngine::start(EngineConfig::default()).await;
        let iii = worker(&engine, "release").await;
        let channel = iii.create_channel(None).await.unwrap();
        channel.writer.write(b"data").await.unwrap();
        let mut reader = channel.reader;
        assert_eq!(reader.next_binary().await.unwrap().unwrap(), &b"data"[..]);
        drop(reader);
        channel.writer.close().await.ok();
        drop(channel.writer);
        for _ in 0..200 {
            if engine.channels().await == 0 {
                break;
            }
            smol::Timer::after(Duration::from_millis(10)).await;
        }
        assert_eq!(engine.channels().await, 0);
        iii.shutdown().await;
    });
}
