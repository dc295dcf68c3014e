//! The same seed gives the same transcript; a different seed gives different ids.

use iii_tests::sim::apps::{Sink, Source};
use iii_tests::Sim;
use serde_json::json;

fn scenario(seed: u64) -> (String, u64, u64) {
    let mut sim = Sim::with_seed(seed);
    let [a, b, c] = sim.connected_workers(3)[..] else {
        unreachable!()
    };
    sim.serve(b, "echo", Ok);
    let calls: Vec<_> = (0..20)
        .map(|i| sim.invoke(a, "echo", json!({"i": i})))
        .collect();
    let refs = sim.create_channel(a, Some(4));
    let mut source = Source::new(seed, 3_000_000, 40_000);
    source.texts = vec![(1_000_000, "mid".into())];
    let reader = sim.open_reader(c, refs.reader, Sink::new(seed));
    sim.open_writer(a, refs.writer, source);
    sim.read_to_end(c, reader);
    for call in calls {
        sim.outcome(a, call);
    }
    sim.run_until_idle(100_000);
    let received = sim.sink(c, reader).received;
    (sim.transcript.digest(), sim.transcript.lines(), received)
}

#[test]
fn the_same_seed_gives_the_same_transcript() {
    let first = scenario(42);
    let second = scenario(42);
    assert_eq!(first, second);
    assert!(first.1 > 500, "a meaningful transcript ({} lines)", first.1);
    assert_eq!(first.2, 3_000_000);
}

#[test]
fn a_different_seed_gives_a_different_transcript_but_the_same_outcome() {
    let (digest_a, _, received_a) = scenario(1);
    let (digest_b, _, received_b) = scenario(2);
    assert_ne!(digest_a, digest_b, "ids and keys come from the seed");
    assert_eq!(received_a, received_b);
}
