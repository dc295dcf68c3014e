//! Core-only benchmarks: the sans-IO engine without sockets.
//!
//! * `relay/*`: a binary message from a channel's writer (`handle_message`) to its
//!   reader (`Transmit` reported with `handle_sent`), per 64 KiB frame and per 16 B frame.
//! * `routing/invoke_result`: an `invokefunction` from one control connection routed to
//!   the owner, its `invocationresult` routed back.

#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use iii_core::channel::{channel_url, ChannelRefs};
use iii_core::engine::{Engine, EngineConfig, EngineOutput};
use iii_core::upgrade::UpgradeRequest;
use iii_core::{ConnId, Message, Text};
use serde_json::Value;

/// Runs the engine's outputs: every transmit is reported sent at once. Returns the
/// number of messages transmitted to `watch`.
fn drain(engine: &mut Engine, now: Instant, watch: ConnId, texts: &mut Vec<String>) -> usize {
    let mut seen = 0;
    loop {
        let mut sent: Vec<ConnId> = Vec::new();
        while let Some(output) = engine.poll_output() {
            if let EngineOutput::Transmit { conn, message } = output {
                if conn == watch {
                    seen += 1;
                    if let Message::Text(t) = &message {
                        texts.push(t.as_str().to_owned());
                    }
                }
                sent.push(conn);
            }
        }
        if sent.is_empty() {
            return seen;
        }
        for conn in sent {
            engine.handle_sent(now, conn, 1);
        }
    }
}

fn control(engine: &mut Engine, now: Instant) -> ConnId {
    let conn = engine
        .accept(now, &UpgradeRequest::to("/"))
        .decided()
        .and_then(Result::ok)
        .expect("control accepted")
        .conn;
    drain(engine, now, conn, &mut Vec::new());
    conn
}

fn channel(engine: &mut Engine, now: Instant) -> (ConnId, ConnId) {
    let ctl = control(engine, now);
    let create = r#"{"type":"invokefunction","invocation_id":"6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60","function_id":"engine::channels::create","data":{}}"#;
    engine.handle_message(now, ctl, Message::Text(Text::from(create)));
    let mut texts = Vec::new();
    drain(engine, now, ctl, &mut texts);
    let answer: Value = serde_json::from_str(&texts[0]).expect("json");
    let refs: ChannelRefs = serde_json::from_value(answer["result"].clone()).expect("refs");
    let writer = engine
        .accept(now, &UpgradeRequest::to(&channel_url("", &refs.writer)))
        .decided()
        .and_then(Result::ok)
        .expect("writer")
        .conn;
    let reader = engine
        .accept(now, &UpgradeRequest::to(&channel_url("", &refs.reader)))
        .decided()
        .and_then(Result::ok)
        .expect("reader")
        .conn;
    drain(engine, now, reader, &mut texts);
    (writer, reader)
}

fn relay(c: &mut Criterion) {
    let mut group = c.benchmark_group("relay");
    for (name, size) in [("64KiB", 64 * 1024), ("16B", 16)] {
        let now = Instant::now();
        let mut engine = Engine::new(EngineConfig::default(), [7; 32], now).expect("engine");
        let (writer, reader) = channel(&mut engine, now);
        let chunk = Bytes::from(vec![0x5a; size]);
        if size > 1024 {
            group.throughput(Throughput::Bytes(size as u64));
        } else {
            group.throughput(Throughput::Elements(1));
        }
        let mut texts = Vec::new();
        group.bench_function(name, |b| {
            b.iter(|| {
                engine.handle_message(now, writer, Message::Binary(chunk.clone()));
                let seen = drain(&mut engine, now, reader, &mut texts);
                assert_eq!(seen, 1, "one frame relayed per message");
                black_box(seen)
            })
        });
    }
    group.finish();
}

fn routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    let now = Instant::now();
    let mut engine = Engine::new(EngineConfig::default(), [7; 32], now).expect("engine");
    let owner = control(&mut engine, now);
    let caller = control(&mut engine, now);
    let register = r#"{"type":"registerfunction","id":"bench::echo"}"#;
    engine.handle_message(now, owner, Message::Text(Text::from(register)));
    drain(&mut engine, now, owner, &mut Vec::new());
    let invoke = r#"{"type":"invokefunction","invocation_id":"6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60","function_id":"bench::echo","data":{"seq":1}}"#;
    let result = r#"{"type":"invocationresult","invocation_id":"6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60","function_id":"bench::echo","result":{"seq":1}}"#;
    let mut texts = Vec::new();
    group.throughput(Throughput::Elements(1));
    group.bench_function("invoke_result", |b| {
        b.iter(|| {
            engine.handle_message(now, caller, Message::Text(Text::from(invoke)));
            let forwarded = drain(&mut engine, now, owner, &mut texts);
            engine.handle_message(now, owner, Message::Text(Text::from(result)));
            let answered = drain(&mut engine, now, caller, &mut texts);
            assert_eq!((forwarded, answered), (1, 1), "one call routed each way");
            texts.clear();
        })
    });
    group.finish();
}

criterion_group!(benches, relay, routing);
criterion_main!(benches);
