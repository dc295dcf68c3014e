//! Channel ends: writers and readers.

use crate::Instant;

use bytes::Bytes;

use super::*;
use crate::channel::Direction;
use crate::wire::{CloseCode, Message, PeerClose, Text};

#[test]
fn writer_chunks_under_credit_and_window() {
    let config = WorkerConfig {
        send_credit: 2,
        writer_window_bytes: 256 * 1024,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    assert!(drain(&mut worker).is_empty(), "open_channel is lazy");
    let data = Bytes::from(vec![7u8; 200 * 1024]);
    assert_eq!(worker.channel_write(t0, end, data), Ok(200 * 1024));
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [WorkerOutput::Connect { target: ConnectTarget::Channel(r), .. }] if r.direction == Direction::Write
    ));
    let conn = connect_conn(&out);
    // 56 KiB fit the window: a partial write.
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from(vec![1u8; 100 * 1024])),
        Ok(56 * 1024)
    );
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Blocked(end))
    );
    worker.handle_connected(t0, conn);
    let sizes = |out: &[WorkerOutput]| -> Vec<usize> {
        out.iter()
            .filter_map(|o| match o {
                WorkerOutput::Transmit {
                    message: Message::Binary(b),
                    ..
                } => Some(b.len() / 1024),
                _ => None,
            })
            .collect()
    };
    assert_eq!(sizes(&drain(&mut worker)), [64, 64]);
    worker.handle_sent(t0, conn, 1);
    let out = drain(&mut worker);
    assert_eq!(sizes(&out), [64]);
    assert!(matches!(
        events(out).as_slice(),
        [WorkerEvent::ChannelWritable { end: e }] if *e == end
    ));
    worker.handle_sent(t0, conn, 2);
    let out = drain(&mut worker);
    // The first write's 8 KiB tail waited for credit, so the second write's 56 KiB
    // joined it in one frame of the chunk size.
    assert_eq!(sizes(&out), [64]);
    assert!(events(out).is_empty(), "Writable is reported once");
    worker.channel_close(t0, end).expect("closes");
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Close { conn: c, code: None, .. },
            WorkerOutput::Event(WorkerEvent::ChannelEnded { outcome: EndOutcome::Closed, .. })
        ] if *c == conn
    ));
    worker.handle_sent(t0, conn, 2);
    worker.handle_closed(t0, conn, PeerClose::Lost);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Ended(end))
    );
}

#[test]
fn clean_close_waits_for_the_queue() {
    let config = WorkerConfig {
        send_credit: 1,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_send_text(t0, end, Text::from("hello"))
        .expect("queued");
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("queued");
    worker.channel_close(t0, end).expect("closing");
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Closing(end))
    );
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [WorkerOutput::Transmit {
            message: Message::Text(_),
            ..
        }]
    ));
    worker.handle_sent(t0, conn, 1);
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Transmit {
                message: Message::Binary(_),
                ..
            },
            WorkerOutput::Close { code: None, .. },
            WorkerOutput::Event(WorkerEvent::ChannelEnded { .. }),
        ]
    ));
}

#[test]
fn close_of_never_connected_writer_connects_then_closes() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker.channel_close(t0, end).expect("closes");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Close { conn: c, code: None, .. },
            WorkerOutput::Event(WorkerEvent::ChannelEnded { outcome: EndOutcome::Closed, .. })
        ] if *c == conn
    ));
}

#[test]
fn abort_drops_the_queue_and_closes_with_code() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("queued");
    worker
        .channel_abort(t0, end, CloseCode::INTERNAL)
        .expect("aborts");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    assert!(matches!(
        drain(&mut worker).as_slice(),
        [
            WorkerOutput::Close {
                code: Some(CloseCode::INTERNAL),
                ..
            },
            WorkerOutput::Event(WorkerEvent::ChannelEnded {
                outcome: EndOutcome::Closed,
                ..
            })
        ]
    ));
}

#[test]
fn writer_closed_by_engine_is_aborted() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("queued");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    drain(&mut worker);
    worker.handle_closed(
        t0,
        conn,
        PeerClose::Frame {
            code: Some(CloseCode::TOO_BIG),
            reason: "too big".into(),
        },
    );
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::ChannelEnded { outcome: EndOutcome::Aborted { code: Some(CloseCode::TOO_BIG), reason }, .. }]
            if reason == "too big"
    ));
    assert_eq!(
        worker.channel_write(t0, end, Bytes::from_static(b"x")),
        Err(WriteError::Ended(end))
    );
    worker.handle_sent(t0, conn, 1);
    assert!(drain(&mut worker).is_empty());
}

#[test]
fn reader_pauses_and_resumes() {
    let config = WorkerConfig {
        reader_window_bytes: 100,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    assert_eq!(
        worker.channel_write(t0, end, Bytes::new()),
        Err(WriteError::NotWriter(end))
    );
    worker.channel_start_reading(t0, end).expect("starts");
    worker.channel_start_reading(t0, end).expect("idempotent");
    let out = drain(&mut worker);
    assert_eq!(out.len(), 1);
    let conn = connect_conn(&out);
    worker.handle_connected(t0, conn);
    worker.handle_message(t0, conn, Message::Binary(Bytes::from(vec![1; 60])));
    worker.handle_message(t0, conn, Message::Text(Text::from("x".repeat(50))));
    let out = drain(&mut worker);
    assert!(matches!(
        out.as_slice(),
        [
            WorkerOutput::Event(WorkerEvent::ChannelData { data, .. }),
            WorkerOutput::Event(WorkerEvent::ChannelText { text, .. }),
            WorkerOutput::PauseRead { conn: c },
        ] if data.len() == 60 && text.len() == 50 && *c == conn
    ));
    worker.channel_consumed(t0, end, 50).expect("ok");
    assert!(drain(&mut worker).is_empty(), "60 > half of 100");
    worker.channel_consumed(t0, end, 10).expect("ok");
    assert!(matches!(
        drain(&mut worker).as_slice(),
        [WorkerOutput::ResumeRead { conn: c }] if *c == conn
    ));
}

fn reader_outcome(finish: impl FnOnce(&mut Worker, Instant, ConnId)) -> EndOutcome {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_start_reading(t0, end).expect("starts");
    let conn = connect_conn(&drain(&mut worker));
    finish(&mut worker, t0, conn);
    let evs = events(drain(&mut worker));
    let [WorkerEvent::ChannelEnded { end: e, outcome }] = evs.as_slice() else {
        panic!("expected ChannelEnded, got {evs:?}");
    };
    assert_eq!(*e, end);
    assert_eq!(
        worker.channel_start_reading(t0, end),
        Err(ReadError::Ended(end))
    );
    outcome.clone()
}

#[test]
fn reader_outcomes() {
    let closed = |code: Option<CloseCode>| {
        move |w: &mut Worker, t: Instant, c: ConnId| {
            w.handle_connected(t, c);
            w.handle_closed(
                t,
                c,
                PeerClose::Frame {
                    code,
                    reason: "r".into(),
                },
            );
        }
    };
    assert_eq!(reader_outcome(closed(None)), EndOutcome::Clean);
    assert_eq!(
        reader_outcome(closed(Some(CloseCode::NORMAL))),
        EndOutcome::Clean
    );
    assert_eq!(
        reader_outcome(closed(Some(CloseCode::INTERNAL))),
        EndOutcome::Aborted {
            code: Some(CloseCode::INTERNAL),
            reason: "r".into()
        }
    );
    assert_eq!(
        reader_outcome(|w, t, c| {
            w.handle_connected(t, c);
            w.handle_closed(t, c, PeerClose::Lost);
        }),
        EndOutcome::Lost
    );
    assert_eq!(
        reader_outcome(|w, t, c| w.handle_connect_failed(t, c, Some(404))),
        EndOutcome::Refused { status: Some(404) }
    );
}

#[test]
fn unknown_and_released_ends_are_errors() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let ghost = EndId(99);
    assert_eq!(
        worker.channel_write(t0, ghost, Bytes::new()),
        Err(WriteError::UnknownEnd(ghost))
    );
    assert_eq!(
        worker.channel_consumed(t0, ghost, 1),
        Err(ReadError::UnknownEnd(ghost))
    );
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_start_reading(t0, end).expect("starts");
    let conn = connect_conn(&drain(&mut worker));
    worker.channel_release(t0, end);
    assert!(matches!(
        drain(&mut worker).as_slice(),
        [WorkerOutput::Close { conn: c, .. }] if *c == conn
    ));
    worker.handle_connected(t0, conn);
    worker.handle_message(t0, conn, Message::Binary(Bytes::from_static(b"late")));
    worker.handle_closed(t0, conn, PeerClose::Lost);
    assert!(drain(&mut worker).is_empty());
    assert_eq!(
        worker.channel_start_reading(t0, end),
        Err(ReadError::UnknownEnd(end))
    );
}

#[test]
fn reader_data_before_connected_report_is_delivered() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_start_reading(t0, end).expect("starts");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_message(t0, conn, Message::Binary(Bytes::from_static(b"early")));
    worker.handle_connected(t0, conn);
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::ChannelData { data, .. }] if data.as_ref() == b"early"
    ));
}

#[test]
fn ends_that_never_attached_are_dropped_without_a_trace() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    for direction in [Direction::Write, Direction::Read] {
        let end = worker.open_channel(t0, channel_ref(direction));
        assert!(!worker.channel_drop(t0, end), "nothing left to finish");
        assert!(
            drain(&mut worker).is_empty(),
            "no dial, no close: the ref stays usable elsewhere"
        );
        assert_eq!(
            worker.channel_free_window(end),
            0,
            "the end is forgotten ({direction:?})"
        );
        assert_eq!(
            worker.channel_consumed(t0, end, 0),
            Err(ReadError::UnknownEnd(end))
        );
    }
}

#[test]
fn a_dropped_attached_writer_aborts_and_a_closing_one_finishes() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("fits");
    let conn = connect_conn(&drain(&mut worker));
    assert!(
        worker.channel_drop(t0, end),
        "the abort is still to be sent"
    );
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(
        out.iter().any(|o| matches!(o,
            WorkerOutput::Close { conn: c, code: Some(code), .. } if *c == conn && *code == CloseCode::INTERNAL)),
        "{out:?}"
    );

    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    worker
        .channel_write(t0, end, Bytes::from_static(b"abc"))
        .expect("fits");
    worker.channel_close(t0, end).expect("close");
    let conn = connect_conn(&drain(&mut worker));
    assert!(
        worker.channel_drop(t0, end),
        "the clean close is still to be sent"
    );
    worker.handle_connected(t0, conn);
    let out = drain(&mut worker);
    assert!(
        out.iter()
            .any(|o| matches!(o, WorkerOutput::Close { code: None, .. })),
        "a clean close, not an abort: {out:?}"
    );
}

#[test]
fn the_free_window_is_reported_and_growth_is_announced_on_request() {
    let config = WorkerConfig {
        writer_window_bytes: 1000,
        chunk_size: 100,
        ..WorkerConfig::default()
    };
    let (mut worker, t0, _) = connected(config);
    let end = worker.open_channel(t0, channel_ref(Direction::Write));
    assert_eq!(worker.channel_free_window(end), 1000);
    worker
        .channel_write(t0, end, Bytes::from(vec![0u8; 300]))
        .expect("fits");
    assert_eq!(worker.channel_free_window(end), 700);
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_connected(t0, conn);
    drain(&mut worker);
    worker.handle_sent(t0, conn, 1);
    assert!(
        events(drain(&mut worker)).is_empty(),
        "no event unless asked for"
    );
    assert_eq!(worker.channel_free_window(end), 800);
    worker.channel_want_writable(t0, end).expect("a writer");
    worker.handle_sent(t0, conn, 1);
    assert!(matches!(
        events(drain(&mut worker)).as_slice(),
        [WorkerEvent::ChannelWritable { end: e }] if *e == end
    ));
    assert_eq!(worker.channel_free_window(end), 900);
    worker.channel_close(t0, end).expect("close");
    assert_eq!(worker.channel_free_window(end), 0, "closing takes no more");
}

#[test]
fn closing_a_reader_early_tells_the_engine_even_before_it_attached() {
    let (mut worker, t0, _) = connected(WorkerConfig::default());
    let end = worker.open_channel(t0, channel_ref(Direction::Read));
    worker.channel_close_reader(t0, end).expect("a reader");
    let conn = connect_conn(&drain(&mut worker));
    worker.handle_message(t0, conn, Message::Binary(Bytes::from_static(b"moot")));
    let out = drain(&mut worker);
    assert!(
        !out.iter()
            .any(|o| matches!(o, WorkerOutput::Event(WorkerEvent::ChannelData { .. }))),
        "nothing is delivered after close: {out:?}"
    );
    assert!(out.iter().any(|o| matches!(o,
        WorkerOutput::Close { conn: c, code: Some(code), reason: "reader closed" }
            if *c == conn && *code == CloseCode::GOING_AWAY)));
    assert!(out.iter().any(|o| matches!(
        o,
        WorkerOutput::Event(WorkerEvent::ChannelEnded {
            outcome: EndOutcome::Closed,
            ..
        })
    )));
    assert_eq!(
        worker.channel_close_reader(t0, end),
        Ok(()),
        "twice is harmless"
    );
    assert!(drain(&mut worker).is_empty());
}
