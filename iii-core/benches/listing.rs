//! What one `engine::functions::list` costs the engine task with 80 000 functions held
//! by 8 trusted workers: the core alone, no IO, no criterion (a plain timing loop, so
//! that it builds with the core's own dependencies only).
//!
//! `cargo bench -p iii-core --bench listing` prints, per case, the median and the
//! slowest of the timed calls:
//!
//! * `guest_sees_none`: a session of an RBAC listener exposing `api::*` (none of which
//!   exist) and `engine::functions::list` (so that it may list);
//! * `guest_sees_100`: the same guest once 100 `api::*` functions exist;
//! * `trusted_page_100`: a trusted worker's first page of 100;
//! * `trusted_far_page_100`: a trusted worker's page of 100 at offset 40 000;
//! * `trusted_full`: a trusted worker's unpaged listing (cut at `max_list_bytes`).

#![allow(missing_docs)]
// A benchmark reads the clock: that is what it measures (the core itself never does).
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use iii_core::engine::{
    Engine, EngineConfig, EngineOutput, FunctionFilter, ListenerPolicy, Pattern, Rbac,
};
use iii_core::upgrade::UpgradeRequest;
use iii_core::{ConnId, Message, Text};

const WORKERS: usize = 8;
const PER_WORKER: usize = 10_000;

/// Runs the engine's outputs (every transmit reported sent at once); returns the bytes
/// of the text messages sent to `watch`.
fn drain(engine: &mut Engine, now: Instant, watch: ConnId) -> usize {
    let mut bytes = 0;
    loop {
        let mut sent: Vec<ConnId> = Vec::new();
        while let Some(output) = engine.poll_output() {
            if let EngineOutput::Transmit { conn, message } = output {
                if conn == watch {
                    if let Message::Text(t) = &message {
                        bytes += t.as_str().len();
                    }
                }
                sent.push(conn);
            }
        }
        if sent.is_empty() {
            return bytes;
        }
        for conn in sent {
            engine.handle_sent(now, conn, 1);
        }
    }
}

fn connect(engine: &mut Engine, now: Instant, listener: usize) -> ConnId {
    let request = UpgradeRequest::to("/").on_listener(listener, None, &[]);
    let conn = engine
        .accept(now, &request)
        .decided()
        .and_then(Result::ok)
        .expect("control accepted")
        .conn;
    drain(engine, now, conn);
    conn
}

fn send(engine: &mut Engine, now: Instant, conn: ConnId, text: &str) -> usize {
    engine.handle_message(now, conn, Message::Text(Text::from(text.to_owned())));
    drain(engine, now, conn)
}

fn list_call(data: &str) -> String {
    format!(
        r#"{{"type":"invokefunction","invocation_id":"6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60","function_id":"engine::functions::list","data":{data}}}"#
    )
}

/// Times `calls` listings of `viewer`, each at its own instant one second after the
/// last (so that no rate limit refuses them); prints the median and the slowest.
fn time(engine: &mut Engine, now: &mut Instant, name: &str, viewer: ConnId, call: &str) {
    let calls = 30;
    let mut times: Vec<Duration> = Vec::with_capacity(calls);
    let mut bytes = 0;
    for _ in 0..calls {
        *now += Duration::from_secs(1);
        let start = Instant::now();
        bytes = black_box(send(engine, *now, viewer, call));
        times.push(start.elapsed());
    }
    times.sort();
    println!(
        "{name:<22} median {:>10.1} µs   max {:>10.1} µs   answer {bytes} B",
        times[calls / 2].as_secs_f64() * 1e6,
        times[calls - 1].as_secs_f64() * 1e6,
    );
}

fn main() {
    let mut now = Instant::now();
    let config = EngineConfig {
        listeners: vec![ListenerPolicy::untrusted(
            "guests",
            Rbac {
                expose_functions: vec![
                    FunctionFilter::Id(Pattern::new("api::*")),
                    FunctionFilter::Id(Pattern::new("engine::functions::list")),
                ],
                ..Rbac::default()
            },
        )],
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, [7; 32], now).expect("engine");
    for w in 0..WORKERS {
        let owner = connect(&mut engine, now, 0);
        for f in 0..PER_WORKER {
            let register = format!(
                r#"{{"type":"registerfunction","id":"svc{w}::fn{f:05}","description":"function {f} of worker {w}","metadata":{{"tier":"internal-{w}"}}}}"#
            );
            send(&mut engine, now, owner, &register);
        }
    }
    let guest = connect(&mut engine, now, 1);
    let trusted = connect(&mut engine, now, 0);
    let all = list_call("{}");
    println!(
        "{} functions of {WORKERS} trusted workers",
        WORKERS * PER_WORKER
    );
    time(&mut engine, &mut now, "guest_sees_none", guest, &all);
    let page = list_call(r#"{"limit":100}"#);
    time(&mut engine, &mut now, "trusted_page_100", trusted, &page);
    let far = list_call(r#"{"limit":100,"offset":40000}"#);
    time(&mut engine, &mut now, "trusted_far_page_100", trusted, &far);
    time(&mut engine, &mut now, "trusted_full", trusted, &all);
    let owner = connect(&mut engine, now, 0);
    for f in 0..100 {
        let register = format!(r#"{{"type":"registerfunction","id":"api::fn{f:03}"}}"#);
        send(&mut engine, now, owner, &register);
    }
    time(&mut engine, &mut now, "guest_sees_100", guest, &all);
}
