//! A worker killed with SIGKILL while writing a channel: the reader must see an abort,
//! not a clean end. Once with a raw WebSocket reader (the protocol level: Close 1011 from
//! our engine), once with our SDK's `ChannelReader` (it returns an error).

use iii_tests::interop::{checks, harness, peer};

/// False (after saying so) when the published SDKs' toolchain is missing.
fn ready(name: &str) -> bool {
    iii_tests::toolchain::run_or_skip(name, iii_tests::toolchain::published_sdks())
}

fn killed(name: &str) {
    if !ready(name) {
        return;
    }
    let h = harness();
    h.block_on(checks::killed_writer_aborts_reader(h, peer::by_name(name)));
}

#[test]
fn python_writer_killed_mid_stream() {
    killed("py025");
}

#[test]
fn node_writer_killed_mid_stream() {
    killed("node");
}

#[test]
fn rust_writer_killed_mid_stream() {
    killed("rs023");
}

fn killed_with_our_reader(name: &str) {
    if !ready(name) {
        return;
    }
    let h = harness();
    h.block_on(checks::killed_writer_fails_our_reader(
        h,
        peer::by_name(name),
    ));
}

#[test]
fn python_writer_killed_mid_stream_our_reader_fails() {
    killed_with_our_reader("py025");
}

#[test]
fn node_writer_killed_mid_stream_our_reader_fails() {
    killed_with_our_reader("node");
}
