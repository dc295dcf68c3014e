//! 256 MiB through one channel with a reader 100× slower than the writer: the engine's
//! buffered bytes, plus the read-ahead an adapter may still deliver, stay at or under
//! the configured limit at every step.

use iii_core::worker::EndOutcome;
use iii_tests::sim::apps::{Sink, Source};
use iii_tests::Sim;

#[test]
fn a_256_mib_transfer_to_a_slow_reader_stays_within_the_buffer_limit() {
    const TOTAL: u64 = 256 << 20;
    let mut sim = Sim::with_seed(256);
    let [writer_w, reader_w] = sim.connected_workers(2)[..] else {
        unreachable!()
    };
    // Writer's link: 1 GiB/s. Reader's link: 100× slower.
    sim.workers[writer_w].shape.0.rate = Some(1 << 30);
    sim.workers[reader_w].shape.1.rate = Some((1 << 30) / 100);
    let refs = sim.create_channel(writer_w, None);
    let reader = sim.open_reader(reader_w, refs.reader, Sink::new(77));
    sim.open_writer(writer_w, refs.writer, Source::new(77, TOTAL, 256 * 1024));
    let config = sim.engine.config();
    let limit = config.channel_buffer_bytes;
    // A real adapter may still deliver its read-ahead and one message after a pause (the
    // simulator delivers nothing), so the core must always leave that much room.
    let room = config.read_ahead_bytes + config.max_channel_message_bytes;
    let high_water = limit - room - config.max_channel_message_bytes;
    // `Sim::step` asserts the per-channel byte and frame limits after every step; this
    // checks the engine-wide figure too.
    let mut peak_total = 0;
    while sim.sink(reader_w, reader).ended.is_none() {
        assert!(sim.step(), "stalled");
        let buffered = sim.engine.stats().channel_buffered_bytes;
        peak_total = peak_total.max(buffered);
        assert!(
            buffered + room <= limit,
            "engine buffers {buffered} bytes, leaving less than {room} under {limit}"
        );
    }
    let sink = sim.sink(reader_w, reader);
    assert_eq!(sink.ended, Some(EndOutcome::Clean));
    assert_eq!(sink.received, TOTAL);
    assert_eq!(sink.mismatch, None);
    assert!(
        peak_total > high_water,
        "the buffer was actually used ({peak_total} bytes)"
    );
    let secs = sim.elapsed().as_secs_f64();
    // The reader's link carries ~10.7 MB/s: the transfer takes it ~25 virtual seconds.
    assert!((24.0..30.0).contains(&secs), "{secs} virtual seconds");
}
