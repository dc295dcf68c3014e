//! Unit tests: a `Worker` driven directly with a fixed seed and a base instant,
//! decoding what it transmits.

mod calls;
mod channels;
mod liveness;
mod props;
mod session;

use std::time::Duration;

use crate::Instant;

use serde_json::Value;

use super::*;
use crate::channel::{ChannelRef, Direction};
use crate::wire::{Message, Text};

pub(super) const SEED: [u8; 32] = [9; 32];

/// The only clock reading in these tests: a base every other instant is offset from.
#[allow(clippy::disallowed_methods)]
pub(super) fn base() -> Instant {
    Instant::now()
}

pub(super) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub(super) fn drain(worker: &mut Worker) -> Vec<WorkerOutput> {
    std::iter::from_fn(|| worker.poll_output()).collect()
}

pub(super) fn json_of(message: &Message) -> Value {
    let Message::Text(text) = message else {
        panic!("expected text, got {message:?}");
    };
    serde_json::from_str(text.as_str()).expect("worker sends JSON")
}

/// The JSON of every control message transmitted on `conn`.
pub(super) fn sent_json(outputs: &[WorkerOutput], conn: ConnId) -> Vec<Value> {
    outputs
        .iter()
        .filter_map(|output| match output {
            WorkerOutput::Transmit { conn: c, message } if *c == conn => Some(json_of(message)),
            _ => None,
        })
        .collect()
}

pub(super) fn events(outputs: Vec<WorkerOutput>) -> Vec<WorkerEvent> {
    outputs
        .into_iter()
        .filter_map(|output| match output {
            WorkerOutput::Event(event) => Some(event),
            _ => None,
        })
        .collect()
}

pub(super) fn connect_conn(outputs: &[WorkerOutput]) -> ConnId {
    outputs
        .iter()
        .find_map(|output| match output {
            WorkerOutput::Connect { conn, .. } => Some(*conn),
            _ => None,
        })
        .expect("a Connect output")
}

pub(super) fn engine(worker: &mut Worker, now: Instant, conn: ConnId, value: Value) {
    worker.handle_message(now, conn, Message::Text(Text::from(value.to_string())));
}

pub(super) fn function(id: &str) -> FunctionSpec {
    FunctionSpec {
        id: id.into(),
        description: None,
        request_format: None,
        response_format: None,
        metadata: None,
    }
}

/// A worker whose control connection is open, with its outputs drained.
pub(super) fn connected(config: WorkerConfig) -> (Worker, Instant, ConnId) {
    let t0 = base();
    let mut worker = Worker::new(config, SEED, t0).expect("valid config");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    drain(&mut worker);
    (worker, t0, conn)
}

pub(super) fn channel_ref(direction: Direction) -> ChannelRef {
    ChannelRef {
        channel_id: "c1".into(),
        access_key: "k".into(),
        direction,
    }
}
