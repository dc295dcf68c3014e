//! Channel scenarios through the simulator: real worker ends on both sides.

use iii_core::worker::EndOutcome;
use iii_core::CloseCode;
use iii_tests::sim::apps::{Piece, Sink, Source};
use iii_tests::Sim;

#[test]
fn a_stream_with_interleaved_messages_arrives_whole_and_in_order() {
    let mut sim = Sim::with_seed(11);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let mut source = Source::new(7, 1_000_000, 10_000);
    source.texts = vec![
        (0, "start".into()),
        (300_000, "third".into()),
        (1_000_000, "done".into()),
    ];
    let reader = sim.open_reader(b, refs.reader, Sink::new(7));
    sim.open_writer(a, refs.writer, source);
    assert_eq!(sim.read_to_end(b, reader), EndOutcome::Clean);
    let sink = sim.sink(b, reader);
    assert_eq!(sink.received, 1_000_000);
    assert_eq!(sink.mismatch, None);
    assert_eq!(
        sink.pieces,
        vec![
            Piece::Text("start".into()),
            Piece::Bytes(300_000),
            Piece::Text("third".into()),
            Piece::Bytes(700_000),
            Piece::Text("done".into()),
        ]
    );
    sim.run_until_idle(100_000);
    assert_eq!(sim.engine.stats().channels, 0);
    assert_eq!(
        sim.engine.stats().connections,
        2,
        "only the control connections remain"
    );
}

#[test]
fn the_writer_may_finish_before_the_reader_exists() {
    let mut sim = Sim::with_seed(12);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let writer = sim.open_writer(a, refs.writer, Source::new(3, 100_000, 65_536));
    sim.run_until("writer done", 100_000, |sim| {
        sim.source(a, writer).ended.is_some()
    });
    sim.advance(std::time::Duration::from_secs(1));
    assert_eq!(
        sim.engine.stats().channels,
        1,
        "data and end wait for the reader"
    );
    let reader = sim.open_reader(b, refs.reader, Sink::new(3));
    assert_eq!(sim.read_to_end(b, reader), EndOutcome::Clean);
    assert_eq!(sim.sink(b, reader).received, 100_000);
}

#[test]
fn an_empty_writer_that_closes_ends_its_reader_promptly() {
    let mut sim = Sim::with_seed(13);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let reader = sim.open_reader(b, refs.reader, Sink::new(1));
    sim.open_writer(a, refs.writer, Source::new(1, 0, 1));
    let start = sim.now;
    assert_eq!(sim.read_to_end(b, reader), EndOutcome::Clean);
    assert!(sim.now - start < std::time::Duration::from_millis(5));
    assert_eq!(sim.sink(b, reader).received, 0);
}

#[test]
fn a_killed_writer_makes_the_reader_fail_not_end() {
    let mut sim = Sim::with_seed(14);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let reader = sim.open_reader(b, refs.reader, Sink::new(5));
    let mut source = Source::new(5, 10_000_000, 65_536);
    source.close_at_end = false;
    sim.open_writer(a, refs.writer, source);
    sim.run_until("some data", 100_000, |sim| {
        sim.sink(b, reader).received > 100_000
    });
    sim.kill_worker(a);
    match sim.read_to_end(b, reader) {
        EndOutcome::Aborted { code, .. } => assert_eq!(code, Some(CloseCode::INTERNAL)),
        other => panic!("expected an abort, got {other:?}"),
    }
    assert!(sim.sink(b, reader).received < 10_000_000);
    assert_eq!(sim.sink(b, reader).mismatch, None);
}

#[test]
fn a_wrong_key_and_a_reused_ref_are_refused() {
    let mut sim = Sim::with_seed(15);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let mut wrong = refs.reader.clone();
    wrong.access_key = refs.writer.access_key.clone();
    let refused = sim.open_reader(b, wrong, Sink::new(1));
    assert_eq!(
        sim.read_to_end(b, refused),
        EndOutcome::Refused { status: Some(404) }
    );
    let first = sim.open_reader(b, refs.reader.clone(), Sink::new(1));
    let second = sim.open_reader(b, refs.reader, Sink::new(1));
    assert_eq!(
        sim.read_to_end(b, second),
        EndOutcome::Refused { status: Some(404) }
    );
    sim.open_writer(a, refs.writer, Source::new(1, 10, 10));
    assert_eq!(sim.read_to_end(b, first), EndOutcome::Clean);
}

#[test]
fn a_slow_reader_holds_the_writer_back_within_the_buffer_limit() {
    let mut sim = Sim::with_seed(16);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    sim.workers[b].shape.1.rate = Some(1 << 20); // the reader's link carries 1 MiB/s
    let refs = sim.create_channel(a, None);
    let reader = sim.open_reader(b, refs.reader, Sink::new(9));
    let writer = sim.open_writer(a, refs.writer, Source::new(9, 8 << 20, 65_536));
    sim.run_until("a second passed", 1_000_000, |sim| {
        sim.elapsed().as_secs() >= 2
    });
    let written = sim.source(a, writer).written;
    assert!(
        written < 8 << 20,
        "the writer was held back ({written} bytes accepted)"
    );
    assert_eq!(sim.read_to_end(b, reader), EndOutcome::Clean);
    assert_eq!(sim.sink(b, reader).received, 8 << 20);
    assert!(sim.peak_channel_bytes <= sim.engine.config().channel_buffer_bytes);
    assert!(sim.peak_channel_bytes > 0);
}

#[test]
fn a_reader_that_stops_consuming_pauses_its_socket_and_the_chain_behind_it() {
    let mut sim = Sim::with_seed(17);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let mut sink = Sink::new(4);
    sink.rate = Some(64 * 1024); // consumes 64 KiB/s
    let reader = sim.open_reader(b, refs.reader, sink);
    sim.open_writer(a, refs.writer, Source::new(4, 2 << 20, 65_536));
    sim.run_until("ten seconds", 10_000_000, |sim| {
        sim.elapsed().as_secs() >= 10
    });
    let sink = sim.sink(b, reader);
    assert!(sink.unconsumed <= sim.engine.config().channel_buffer_bytes as u64 * 2);
    assert_eq!(sim.read_to_end(b, reader), EndOutcome::Clean);
    assert_eq!(sim.sink(b, reader).received, 2 << 20);
}

#[test]
fn a_channel_whose_writer_never_comes_expires_with_an_error() {
    let mut config = iii_tests::SimConfig {
        seed: 18,
        ..Default::default()
    };
    config.engine.channel_attach_timeout = std::time::Duration::from_secs(5);
    let mut sim = Sim::new(config);
    let [a, b] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    let refs = sim.create_channel(a, None);
    let reader = sim.open_reader(b, refs.reader, Sink::new(1));
    match sim.read_to_end(b, reader) {
        EndOutcome::Aborted { code, .. } => assert_eq!(code, Some(CloseCode::INTERNAL)),
        other => panic!("{other:?}"),
    }
    assert!(sim.elapsed() >= std::time::Duration::from_secs(5));
    let late = sim.open_writer(a, refs.writer, Source::new(1, 1, 1));
    sim.run_until("writer refused", 10_000, |sim| {
        sim.source(a, late).ended.is_some()
    });
    assert_eq!(
        sim.source(a, late).ended,
        Some(EndOutcome::Refused { status: Some(404) })
    );
}
