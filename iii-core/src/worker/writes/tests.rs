//! The write queue against a real `Worker`: order, partial acceptance, blocking, close
//! and end.

use bytes::Bytes;

use super::{WriteFailure, WriteOp, WriteQueue};
use crate::channel::Direction;
use crate::wire::{CloseCode, Message, PeerClose, Text};
use crate::worker::tests::{channel_ref, connect_conn, connected, drain};
use crate::worker::{EndOutcome, WorkerConfig, WorkerOutput, WriteError};

fn binary_sizes(outputs: &[WorkerOutput]) -> Vec<usize> {
    outputs
        .iter()
        .filter_map(|output| match output {
            WorkerOutput::Transmit {
                message: Message::Binary(bytes),
                ..
            } => Some(bytes.len()),
            _ => None,
        })
        .collect()
}

#[test]
fn write_all_waits_for_window_space_and_keeps_order_with_text() {
    let config = WorkerConfig {
        writer_window_bytes: 100,
        chunk_size: 40,
        send_credit: 8,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    let mut queue = WriteQueue::new();
    queue.push(
        WriteOp::Bytes {
            data: Bytes::from(vec![1u8; 250]),
            all: true,
        },
        "bytes",
    );
    queue.push(WriteOp::Text(Text::from("after".to_owned())), "text");
    assert!(
        queue.pump(&mut worker, t0, end).is_empty(),
        "100 of 250 fit"
    );
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    assert_eq!(binary_sizes(&drain(&mut worker)), [40, 40, 20]);
    worker.handle_sent(t0, conn, 3);
    drain(&mut worker);
    assert!(queue.pump(&mut worker, t0, end).is_empty(), "200 of 250");
    worker.handle_sent(t0, conn, 3);
    drain(&mut worker);
    let done = queue.pump(&mut worker, t0, end);
    assert_eq!(done, [("bytes", Ok(250)), ("text", Ok(0))]);
    let out = drain(&mut worker);
    assert_eq!(binary_sizes(&out), [40, 10]);
    assert!(matches!(
        out.last(),
        Some(WorkerOutput::Transmit { message: Message::Text(t), .. }) if t.as_str() == "after"
    ));
    assert!(queue.is_empty());
}

#[test]
fn a_partial_write_finishes_with_what_was_accepted() {
    let config = WorkerConfig {
        writer_window_bytes: 10,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    let mut queue = WriteQueue::new();
    let data = Bytes::from(vec![0u8; 25]);
    queue.push(WriteOp::Bytes { data, all: false }, 1);
    assert_eq!(queue.pump(&mut worker, t0, end), [(1, Ok(10))]);
    // The window is full: the next partial write waits instead of finishing with 0.
    queue.push(
        WriteOp::Bytes {
            data: Bytes::from_static(b"x"),
            all: false,
        },
        2,
    );
    assert!(queue.pump(&mut worker, t0, end).is_empty());
    assert_eq!(queue.len(), 1);
}

#[test]
fn close_finishes_when_the_end_is_over_and_later_requests_fail() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    let mut queue = WriteQueue::new();
    queue.push(WriteOp::Close, "close");
    queue.push(WriteOp::Text(Text::from("late".to_owned())), "late");
    assert!(queue.has_close());
    assert!(queue.pump(&mut worker, t0, end).is_empty());
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(out
        .iter()
        .any(|o| matches!(o, WorkerOutput::Close { code: None, .. })));
    queue.end(EndOutcome::Closed);
    assert_eq!(
        queue.pump(&mut worker, t0, end),
        [
            ("close", Ok(0)),
            ("late", Err(WriteFailure::Ended(EndOutcome::Closed)))
        ]
    );
}

#[test]
fn an_aborted_end_fails_every_waiting_request_with_its_outcome() {
    let config = WorkerConfig {
        writer_window_bytes: 4,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    let mut queue = WriteQueue::new();
    let data = Bytes::from(vec![0u8; 8]);
    queue.push(WriteOp::Bytes { data, all: true }, 1);
    queue.push(WriteOp::Close, 2);
    assert!(queue.pump(&mut worker, t0, end).is_empty());
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    let close = PeerClose::Frame {
        code: Some(CloseCode::INTERNAL),
        reason: "gone".into(),
    };
    worker.handle_closed(t0, conn, close);
    drain(&mut worker);
    let outcome = EndOutcome::Aborted {
        code: Some(CloseCode::INTERNAL),
        reason: "gone".into(),
    };
    queue.end(outcome.clone());
    let failed = Err(WriteFailure::Ended(outcome));
    assert_eq!(
        queue.pump(&mut worker, t0, end),
        [(1, failed.clone()), (2, failed)]
    );
}

#[test]
fn a_reader_end_is_refused_and_fail_all_answers_everything() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    let mut queue = WriteQueue::new();
    queue.push(WriteOp::Text(Text::from("x".to_owned())), 1);
    assert_eq!(
        queue.pump(&mut worker, t0, end),
        [(1, Err(WriteFailure::Refused(WriteError::NotWriter(end))))]
    );
    queue.push(WriteOp::Close, 2);
    queue.push(WriteOp::Close, 3);
    let closed = WriteFailure::Refused(WriteError::Stopped);
    assert_eq!(
        queue.fail_all(closed.clone()),
        [(2, Err(closed.clone())), (3, Err(closed))]
    );
    assert!(queue.is_empty());
}
