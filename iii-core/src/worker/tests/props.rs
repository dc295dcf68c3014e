//! Property test: arbitrary engine bytes and adapter reports never panic the worker,
//! never break its output invariants, and never leave a deadline in the past.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::channel::Direction;
use crate::wire::control::null_payload;
use crate::wire::{CloseCode, Message, PeerClose, Text};

#[derive(Debug, Clone)]
enum Op {
    Bytes(usize, Vec<u8>, bool),
    Json(usize, u8),
    Connected(usize),
    ConnectFailed(usize, Option<u16>),
    Sent(usize, usize),
    Closed(usize, Option<u16>, bool),
    Timeout(u64),
    Invoke(u64),
    Complete(u8),
    OpenChannel(bool),
    Write(usize, usize),
    Text(usize, usize),
    Close(usize),
    Abort(usize),
    StartReading(usize),
    Consumed(usize, usize),
    Release(usize),
    Shutdown,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(c, b, t)| Op::Bytes(c, b, t)),
        4 => (any::<usize>(), any::<u8>()).prop_map(|(c, k)| Op::Json(c, k)),
        3 => any::<usize>().prop_map(Op::Connected),
        1 => (any::<usize>(), any::<Option<u16>>()).prop_map(|(c, s)| Op::ConnectFailed(c, s)),
        3 => (any::<usize>(), 0usize..5).prop_map(|(c, n)| Op::Sent(c, n)),
        1 => (any::<usize>(), any::<Option<u16>>(), any::<bool>())
            .prop_map(|(c, code, lost)| Op::Closed(c, code, lost)),
        2 => (0u64..40_000).prop_map(Op::Timeout),
        2 => (0u64..40_000).prop_map(Op::Invoke),
        1 => any::<u8>().prop_map(Op::Complete),
        2 => any::<bool>().prop_map(Op::OpenChannel),
        2 => (any::<usize>(), 0usize..200_000).prop_map(|(e, n)| Op::Write(e, n)),
        1 => (any::<usize>(), 0usize..100).prop_map(|(e, n)| Op::Text(e, n)),
        1 => any::<usize>().prop_map(Op::Close),
        1 => any::<usize>().prop_map(Op::Abort),
        1 => any::<usize>().prop_map(Op::StartReading),
        1 => (any::<usize>(), 0usize..300_000).prop_map(|(e, n)| Op::Consumed(e, n)),
        1 => any::<usize>().prop_map(Op::Release),
        1 => Just(Op::Shutdown),
    ]
}

fn pick<T: Copy>(items: &[T], index: usize) -> Option<T> {
    if items.is_empty() {
        None
    } else {
        items.get(index % items.len()).copied()
    }
}

/// Engine messages that reach deep paths, built around what the worker has done.
fn json_message(kind: u8, calls: &[InvocationId]) -> String {
    let call = pick(calls, usize::from(kind)).map(|id| id.to_string());
    let call = call.unwrap_or_else(|| "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60".to_owned());
    match kind % 9 {
        0 => format!(r#"{{"type":"invocationresult","invocation_id":"{call}","function_id":"f","result":1}}"#),
        1 => format!(r#"{{"type":"invocationresult","invocation_id":"{call}","function_id":"f","error":{{"code":"x","message":"y"}}}}"#),
        2 => r#"{"type":"invokefunction","invocation_id":"7f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f61","function_id":"local","data":{}}"#.to_owned(),
        3 => r#"{"type":"invokefunction","function_id":"local"}"#.to_owned(),
        4 => r#"{"type":"workerregistered","worker_id":"w","reattach_token":"t"}"#.to_owned(),
        5 => r#"{"type":"ping"}"#.to_owned(),
        6 => r#"{"type":"registertrigger","id":"b","trigger_type":"tt","function_id":"f","config":null}"#.to_owned(),
        7 => r#"{"type":"registrationrejected","code":"FUNCTION_NAMESPACE_CONFLICT","namespace":"d","owner_worker_id":""}"#.to_owned(),
        _ => r#"{"type":"registrationrejected","code":"WORKER_NAMESPACE_CONFLICT","namespace":"d","owner_worker_id":""}"#.to_owned(),
    }
}

/// What the adapter knows, to check the worker's outputs against.
#[derive(Default)]
struct Model {
    conns: Vec<ConnId>,
    dead: BTreeSet<ConnId>,
    in_flight: BTreeMap<ConnId, usize>,
    calls: Vec<InvocationId>,
    completed: BTreeSet<InvocationId>,
    invoked: Vec<InvocationId>,
    ends: Vec<EndId>,
}

impl Model {
    fn absorb(&mut self, worker: &mut Worker, credit: usize) -> Result<(), TestCaseError> {
        while let Some(output) = worker.poll_output() {
            match output {
                WorkerOutput::Connect { conn, .. } => {
                    prop_assert!(!self.conns.contains(&conn), "conn ids are never reused");
                    self.conns.push(conn);
                }
                WorkerOutput::Transmit { conn, message } => {
                    prop_assert!(!self.dead.contains(&conn), "transmit on dead {conn}");
                    if let Message::Binary(bytes) = &message {
                        prop_assert!(bytes.len() <= 16 * 1024, "oversized frame");
                    }
                    let n = self.in_flight.entry(conn).or_default();
                    *n += 1;
                    prop_assert!(*n <= credit, "credit exceeded on {conn}");
                }
                WorkerOutput::Close { conn, .. } => {
                    prop_assert!(!self.dead.contains(&conn), "double close of {conn}");
                    self.dead.insert(conn);
                }
                WorkerOutput::PauseRead { conn } | WorkerOutput::ResumeRead { conn } => {
                    prop_assert!(!self.dead.contains(&conn), "read control on dead {conn}");
                }
                WorkerOutput::Event(WorkerEvent::CallCompleted { invocation_id, .. }) => {
                    prop_assert!(self.completed.insert(invocation_id), "completed twice");
                }
                WorkerOutput::Event(WorkerEvent::Invoked { invocation_id, .. }) => {
                    self.invoked.push(invocation_id);
                }
                WorkerOutput::Event(_) => {}
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_inputs_never_panic(ops in proptest::collection::vec(op(), 1..80)) {
        let credit = 4;
        let config = WorkerConfig {
            send_credit: credit,
            chunk_size: 16 * 1024,
            writer_window_bytes: 150_000,
            reader_window_bytes: 1_000,
            max_offline_queue_bytes: 4_096,
            ..WorkerConfig::default()
        };
        let t0 = base();
        let mut now = t0;
        let mut worker = Worker::new(config, SEED, t0).expect("valid config");
        worker.register_function(t0, function("local")).expect("registers");
        let tt = TriggerTypeSpec {
            id: "tt".into(),
            description: String::new(),
            trigger_request_format: None,
            call_request_format: None,
        };
        worker.register_trigger_type(t0, tt).expect("registers");
        let mut model = Model::default();
        model.absorb(&mut worker, credit)?;
        for op in ops {
            match op {
                Op::Bytes(c, bytes, text) => {
                    if let Some(conn) = pick(&model.conns, c) {
                        let message = match String::from_utf8(bytes.clone()) {
                            Ok(s) if text => Message::Text(Text::from(s)),
                            _ => Message::Binary(Bytes::from(bytes)),
                        };
                        worker.handle_message(now, conn, message);
                    }
                }
                Op::Json(c, kind) => {
                    if let Some(conn) = pick(&model.conns, c) {
                        let text = Text::from(json_message(kind, &model.calls));
                        worker.handle_message(now, conn, Message::Text(text));
                    }
                }
                Op::Connected(c) => {
                    if let Some(conn) = pick(&model.conns, c) {
                        worker.handle_connected(now, conn);
                    }
                }
                Op::ConnectFailed(c, status) => {
                    if let Some(conn) = pick(&model.conns, c) {
                        model.dead.insert(conn);
                        worker.handle_connect_failed(now, conn, status);
                    }
                }
                Op::Sent(c, n) => {
                    if let Some(conn) = pick(&model.conns, c) {
                        let flight = model.in_flight.entry(conn).or_default();
                        let returned = n.min(*flight);
                        *flight -= returned;
                        worker.handle_sent(now, conn, returned);
                    }
                }
                Op::Closed(c, code, lost) => {
                    if let Some(conn) = pick(&model.conns, c) {
                        let close = if lost {
                            PeerClose::Lost
                        } else {
                            PeerClose::Frame { code: code.map(CloseCode), reason: String::new() }
                        };
                        model.dead.insert(conn);
                        worker.handle_closed(now, conn, close);
                    }
                }
                Op::Timeout(ms) => {
                    now += Duration::from_millis(ms);
                    worker.handle_timeout(now);
                    model.absorb(&mut worker, credit)?;
                    if let Some(next) = worker.poll_timeout() {
                        prop_assert!(next > now, "deadline {next:?} not after {now:?}");
                    }
                }
                Op::Invoke(ms) => {
                    if let Ok(id) =
                        worker.invoke(now, "f", null_payload(), Some(Duration::from_millis(ms)))
                    {
                        model.calls.push(id);
                    }
                }
                Op::Complete(k) => {
                    if let Some(id) = pick(&model.invoked, usize::from(k)) {
                        let _ = worker.complete(now, id, Ok(None));
                    }
                    let _ = worker.trigger_registration_result(now, "b", Ok(()));
                }
                Op::OpenChannel(write) => {
                    let direction = if write { Direction::Write } else { Direction::Read };
                    model.ends.push(worker.open_channel(now, channel_ref(direction)));
                }
                Op::Write(e, n) => {
                    if let Some(end) = pick(&model.ends, e) {
                        let _ = worker.channel_write(now, end, Bytes::from(vec![0u8; n]));
                    }
                }
                Op::Text(e, n) => {
                    if let Some(end) = pick(&model.ends, e) {
                        let _ = worker.channel_send_text(now, end, Text::from("t".repeat(n)));
                    }
                }
                Op::Close(e) => {
                    if let Some(end) = pick(&model.ends, e) {
                        let _ = worker.channel_close(now, end);
                    }
                }
                Op::Abort(e) => {
                    if let Some(end) = pick(&model.ends, e) {
                        let _ = worker.channel_abort(now, end, CloseCode::INTERNAL);
                    }
                }
                Op::StartReading(e) => {
                    if let Some(end) = pick(&model.ends, e) {
                        let _ = worker.channel_start_reading(now, end);
                    }
                }
                Op::Consumed(e, n) => {
                    if let Some(end) = pick(&model.ends, e) {
                        let _ = worker.channel_consumed(now, end, n);
                    }
                }
                Op::Release(e) => {
                    if let Some(end) = pick(&model.ends, e) {
                        worker.channel_release(now, end);
                    }
                }
                Op::Shutdown => worker.shutdown(now),
            }
            model.absorb(&mut worker, credit)?;
            if let Some(next) = worker.poll_timeout() {
                prop_assert!(next >= now, "deadline {next:?} before {now:?}");
            }
        }
    }
}
