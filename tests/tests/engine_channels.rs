//! The engine's channel endpoint (`/ws/channels/<id>?key=<key>&dir=read|write`) and its
//! relay, driven raw.

use std::time::Duration;

use iii_core::channel::{channel_url, ChannelRef, ChannelRefs};
use iii_core::engine::{ChannelOutcome, EngineConfig, EngineEvent};
use iii_core::upgrade::Rejection;
use iii_core::{CloseCode, ConnId, Message, PeerClose};
use iii_tests::raw::RawEngine;
use serde_json::json;

const ID: &str = "6f1c2a3e-6c9d-4f7a-9b1e-0d2c3b4a5f60";

fn create(raw: &mut RawEngine, data: serde_json::Value) -> (ConnId, ChannelRefs) {
    let (conn, _) = raw.control();
    raw.send(
        conn,
        json!({"type": "invokefunction", "invocation_id": ID,
                          "function_id": "engine::channels::create", "data": data}),
    );
    let answer = raw.take_json(conn).remove(0);
    let refs = serde_json::from_value(answer["result"].clone()).expect("refs");
    (conn, refs)
}

fn path(channel_ref: &ChannelRef) -> String {
    channel_url("", channel_ref)
}

fn open(raw: &mut RawEngine, channel_ref: &ChannelRef) -> ConnId {
    raw.connect(&path(channel_ref)).expect("end accepted").conn
}

fn clean() -> PeerClose {
    PeerClose::Frame {
        code: None,
        reason: String::new(),
    }
}

fn closed_with(raw: &RawEngine, conn: ConnId) -> Option<Option<CloseCode>> {
    raw.inboxes[&conn].closed.as_ref().map(|(code, _)| *code)
}

#[test]
fn refs_share_the_id_but_not_the_key() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({"buffer_size": null}));
    assert_eq!(refs.writer.channel_id, refs.reader.channel_id);
    assert_ne!(refs.writer.access_key, refs.reader.access_key);
    assert!(refs.writer.access_key.len() >= 32, "at least 128 bits");
    let value = serde_json::to_value(&refs).expect("ser");
    assert_eq!(value["writer"]["direction"], "write");
    assert_eq!(value["reader"]["direction"], "read");
}

#[test]
fn wrong_other_direction_reused_and_unknown_refs_never_pair() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({}));
    let mut wrong = refs.reader.clone();
    wrong.access_key = "0".repeat(64);
    assert_eq!(raw.connect(&path(&wrong)).unwrap_err(), Rejection::NotFound);
    let mut swapped = refs.reader.clone();
    swapped.direction = iii_core::channel::Direction::Write;
    assert_eq!(
        raw.connect(&path(&swapped)).unwrap_err(),
        Rejection::NotFound
    );
    let mut garbage = refs.reader.clone();
    garbage.access_key = "zz".into();
    assert_eq!(
        raw.connect(&path(&garbage)).unwrap_err(),
        Rejection::NotFound
    );
    let mut unknown = refs.reader.clone();
    unknown.channel_id = uuid::Uuid::nil().to_string();
    assert_eq!(
        raw.connect(&path(&unknown)).unwrap_err(),
        Rejection::NotFound
    );
    open(&mut raw, &refs.reader);
    assert_eq!(
        raw.connect(&path(&refs.reader)).unwrap_err(),
        Rejection::NotFound,
        "reused"
    );
}

#[test]
fn writer_first_data_and_end_wait_for_a_late_reader_then_refs_are_refused() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({}));
    let writer = open(&mut raw, &refs.writer);
    raw.send_binary(writer, b"hello ".to_vec());
    raw.send_text(writer, r#"{"progress":1}"#);
    raw.send_binary(writer, b"world".to_vec());
    raw.close(writer, clean());
    assert_eq!(raw.engine.stats().channels, 1, "kept for the late reader");
    let reader = open(&mut raw, &refs.reader);
    let inbox = &raw.inboxes[&reader];
    assert_eq!(
        inbox.messages,
        vec![
            Message::Binary("hello ".into()),
            Message::Text(r#"{"progress":1}"#.into()),
            Message::Binary("world".into()),
        ]
    );
    assert_eq!(
        closed_with(&raw, reader),
        Some(None),
        "clean end: Close without a code"
    );
    assert_eq!(
        raw.engine.stats().channels,
        0,
        "removed once both ends are done"
    );
    assert_eq!(
        raw.connect(&path(&refs.reader)).unwrap_err(),
        Rejection::NotFound
    );
    assert_eq!(
        raw.connect(&path(&refs.writer)).unwrap_err(),
        Rejection::NotFound
    );
    assert!(raw.events.iter().any(|e| matches!(e,
        EngineEvent::ChannelRemoved { outcome: ChannelOutcome::Completed, stats, .. } if stats.frames_in == 3)));
}

#[test]
fn reader_first_receives_as_the_writer_sends() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({}));
    let reader = open(&mut raw, &refs.reader);
    assert!(raw.inboxes[&reader].messages.is_empty());
    let writer = open(&mut raw, &refs.writer);
    raw.send_binary(writer, vec![1; 10]);
    assert_eq!(raw.inboxes[&reader].messages.len(), 1);
    raw.close(
        writer,
        PeerClose::Frame {
            code: Some(CloseCode::NORMAL),
            reason: "stream_complete".into(),
        },
    );
    assert_eq!(closed_with(&raw, reader), Some(None));
}

#[test]
fn an_empty_writer_that_closes_ends_the_reader_at_once() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({}));
    let reader = open(&mut raw, &refs.reader);
    let writer = open(&mut raw, &refs.writer);
    raw.close(writer, clean());
    assert!(raw.inboxes[&reader].messages.is_empty());
    assert_eq!(closed_with(&raw, reader), Some(None));
}

#[test]
fn a_lost_or_failing_writer_aborts_the_reader_with_1011() {
    for close in [
        PeerClose::Lost,
        PeerClose::Frame {
            code: Some(CloseCode::INTERNAL),
            reason: "x".into(),
        },
    ] {
        let mut raw = RawEngine::new(EngineConfig::default());
        let (_, refs) = create(&mut raw, json!({}));
        let reader = open(&mut raw, &refs.reader);
        let writer = open(&mut raw, &refs.writer);
        raw.send_binary(writer, vec![1; 10]);
        raw.close(writer, close);
        assert_eq!(closed_with(&raw, reader), Some(Some(CloseCode::INTERNAL)));
        assert_eq!(raw.engine.stats().channels, 0);
    }
    // Before the reader attaches: the abort waits for it, the data does not.
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({}));
    let writer = open(&mut raw, &refs.writer);
    raw.send_binary(writer, vec![1; 1000]);
    raw.close(writer, PeerClose::Lost);
    assert_eq!(raw.engine.stats().channel_buffered_bytes, 0);
    let reader = open(&mut raw, &refs.reader);
    assert!(raw.inboxes[&reader].messages.is_empty());
    assert_eq!(closed_with(&raw, reader), Some(Some(CloseCode::INTERNAL)));
}

#[test]
fn an_oversized_message_closes_the_writer_with_1009_and_the_reader_with_1011() {
    let mut raw = RawEngine::new(EngineConfig {
        max_channel_message_bytes: 1024,
        ..EngineConfig::default()
    });
    let (_, refs) = create(&mut raw, json!({}));
    let reader = open(&mut raw, &refs.reader);
    let writer = open(&mut raw, &refs.writer);
    raw.send_binary(writer, vec![0; 1024]);
    raw.send_binary(writer, vec![0; 1025]);
    assert_eq!(closed_with(&raw, writer), Some(Some(CloseCode::TOO_BIG)));
    assert_eq!(closed_with(&raw, reader), Some(Some(CloseCode::INTERNAL)));
}

#[test]
fn the_reader_leaving_closes_the_writer_with_1001() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (_, refs) = create(&mut raw, json!({}));
    let reader = open(&mut raw, &refs.reader);
    let writer = open(&mut raw, &refs.writer);
    raw.close(reader, PeerClose::Lost);
    assert_eq!(closed_with(&raw, writer), Some(Some(CloseCode::GOING_AWAY)));
    assert_eq!(raw.engine.stats().channels, 0);
}

#[test]
fn channels_whose_ends_never_attach_expire_with_a_non_normal_close() {
    let timeout = Duration::from_secs(30);
    let config = EngineConfig {
        channel_attach_timeout: timeout,
        ..EngineConfig::default()
    };
    // Writer never attaches: the waiting reader gets 1011, never a silent clean end.
    let mut raw = RawEngine::new(config.clone());
    let (_, refs) = create(&mut raw, json!({}));
    let reader = open(&mut raw, &refs.reader);
    raw.advance(timeout - Duration::from_millis(1));
    assert!(raw.inboxes[&reader].closed.is_none());
    raw.advance(Duration::from_millis(1));
    assert_eq!(closed_with(&raw, reader), Some(Some(CloseCode::INTERNAL)));
    assert_eq!(
        raw.connect(&path(&refs.writer)).unwrap_err(),
        Rejection::NotFound
    );
    // Reader never attaches: the blocked writer gets 1011.
    let mut raw = RawEngine::new(config.clone());
    let (_, refs) = create(&mut raw, json!({}));
    let writer = open(&mut raw, &refs.writer);
    raw.advance(timeout);
    assert_eq!(closed_with(&raw, writer), Some(Some(CloseCode::INTERNAL)));
    // Nobody attaches: removed, refs refused.
    let mut raw = RawEngine::new(config.clone());
    let (_, refs) = create(&mut raw, json!({}));
    raw.advance(timeout);
    assert_eq!(raw.engine.stats().channels, 0);
    assert_eq!(
        raw.connect(&path(&refs.reader)).unwrap_err(),
        Rejection::NotFound
    );
    // Both attached in time: no expiry.
    let mut raw = RawEngine::new(config);
    let (_, refs) = create(&mut raw, json!({}));
    let reader = open(&mut raw, &refs.reader);
    open(&mut raw, &refs.writer);
    raw.advance(timeout * 3);
    assert!(raw.inboxes[&reader].closed.is_none());
    assert_eq!(raw.engine.poll_timeout(), None);
}

#[test]
fn a_full_buffer_pauses_the_writer_within_byte_and_frame_limits() {
    let config = EngineConfig {
        channel_buffer_bytes: 256 * 1024,
        max_channel_message_bytes: 64 * 1024,
        read_ahead_bytes: 64 * 1024,
        send_credit: 4,
        ..EngineConfig::default()
    };
    let mut raw = RawEngine::new(config.clone());
    raw.auto_sent = false;
    let (_, refs) = create(&mut raw, json!({"buffer_size": 1000}));
    let reader = open(&mut raw, &refs.reader);
    let writer = open(&mut raw, &refs.writer);
    // What may still arrive after a pause: the adapter's read-ahead and one message.
    let room = config.read_ahead_bytes + config.max_channel_message_bytes;
    let mut sent = 0;
    while !raw.inboxes[&writer].paused {
        raw.send_binary(writer, vec![7; 64 * 1024]);
        sent += 1;
        assert!(raw.engine.stats().channel_buffered_bytes + room <= config.channel_buffer_bytes);
        assert!(sent < 100, "never paused");
    }
    // 256 KiB - (64 KiB read-ahead + 2 × 64 KiB) = 64 KiB: the second message pauses.
    assert_eq!(sent, 2);
    assert_eq!(
        raw.inboxes[&reader].messages.len(),
        2,
        "both are in flight (credit 4)"
    );
    // The reader flushes: the writer resumes once the buffer is half drained.
    for _ in 0..2 {
        raw.flush(reader);
    }
    assert!(!raw.inboxes[&writer].paused);
    assert_eq!(raw.inboxes[&reader].messages.len(), sent);
    // Frame limit: a tiny buffer_size pauses on message count.
    let mut raw = RawEngine::new(config);
    raw.auto_sent = false;
    let (_, refs) = create(&mut raw, json!({"buffer_size": 2}));
    let writer = open(&mut raw, &refs.writer);
    raw.send_text(writer, "a");
    assert!(!raw.inboxes[&writer].paused);
    raw.send_text(writer, "b");
    assert!(raw.inboxes[&writer].paused);
}

#[test]
fn buffer_size_is_clamped_and_the_owner_recorded() {
    let mut raw = RawEngine::new(EngineConfig::default());
    let (conn, _) = raw.control();
    let mut sizes = Vec::new();
    for data in [
        json!({"buffer_size": 0}),
        json!({"buffer_size": 5000}),
        json!({}),
        json!(null),
    ] {
        raw.send(
            conn,
            json!({"type": "invokefunction", "invocation_id": ID,
                              "function_id": "engine::channels::create", "data": data}),
        );
    }
    raw.send(conn, json!({"type": "invokefunction", "invocation_id": ID,
                          "function_id": "engine::channels::create", "data": {"buffer_size": "big"}}));
    let answers = raw.take_json(conn);
    assert_eq!(answers[4]["error"]["code"], "deserialization_error");
    for channel in raw.engine.channels() {
        sizes.push(channel.buffer_size);
        assert!(channel.owner_worker_id.is_some());
    }
    sizes.sort_unstable();
    assert_eq!(sizes, [1, 64, 64, 1024]);
}
