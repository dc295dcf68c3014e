//! A worker killed with SIGKILL while writing a channel: the reader must see an abort
//! (Close 1011 from our engine), not a clean end. The reader is a raw WebSocket so the
//! check is at the protocol level (our SDK's reader is not ready yet).

use iii_tests::interop::{checks, harness, peer};

fn killed(name: &str) {
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
