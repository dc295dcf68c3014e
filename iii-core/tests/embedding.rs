//! Runs the embedding example (`examples/blocking_worker.rs`: the worker machine driven
//! on one thread with `std::net` and `tungstenite`) against the tokio engine, started
//! here on 127.0.0.1.

// Like the example, the test is on the adapter's side: it reads the clock.
#![allow(clippy::disallowed_methods)]

#[path = "../examples/blocking_worker.rs"]
#[allow(dead_code, unreachable_pub)] // the example's `main`; its items are `pub` for readers
mod blocking_worker;

use std::time::{Duration, Instant};

/// A bound on the whole round trip, so a hang fails instead of blocking the suite.
const DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn blocking_worker_echoes_a_channel_through_the_tokio_engine() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = runtime
        .block_on(iii_tokio::bind("127.0.0.1:0", Default::default()))
        .expect("engine bound on 127.0.0.1");
    // Several windows' worth (1 MiB each side by default), not a multiple of a frame.
    let payload = blocking_worker::pattern(3 * 1024 * 1024 + 17);
    let received =
        blocking_worker::echo_round_trip(&server.url(), payload.clone(), Instant::now() + DEADLINE)
            .expect("round trip through example::echo");
    assert_eq!(received.len(), payload.len());
    assert!(received == payload, "the bytes came back changed");
    runtime.block_on(server.shutdown());
}
