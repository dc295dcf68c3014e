//! Arbitrary interleavings of invocations, channel operations, faults and time,
//! with the invariants of `iii_tests::ops` checked after every operation.

use iii_tests::ops::{Harness, KeyChoice, Op};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    let key = prop_oneof![
        6 => Just(KeyChoice::Right),
        1 => Just(KeyChoice::Wrong),
        1 => Just(KeyChoice::OtherDirection),
    ];
    prop_oneof![
        3 => (any::<u8>(), any::<u8>(), any::<u16>())
            .prop_map(|(from, target, timeout_ms)| Op::Invoke { from, target, timeout_ms }),
        3 => (any::<u8>(), any::<u8>(), any::<bool>())
            .prop_map(|(worker, index, ok)| Op::Complete { worker, index, ok }),
        2 => (any::<u8>(), proptest::option::of(0u8..8))
            .prop_map(|(by, buffer)| Op::CreateChannel { by, buffer }),
        3 => (any::<u8>(), any::<u8>(), any::<u8>())
            .prop_map(|(by, writer, reader)| Op::OpenPair { by, writer, reader }),
        3 => (any::<u8>(), any::<u8>(), any::<bool>(), key)
            .prop_map(|(worker, channel, read, key)| Op::Attach { worker, channel, read, key }),
        6 => (any::<u8>(), 1u16..20_000).prop_map(|(end, len)| Op::Write { end, len }),
        2 => any::<u8>().prop_map(|end| Op::SendText { end }),
        1 => any::<u8>().prop_map(|end| Op::ReadSlowly { end }),
        2 => any::<u8>().prop_map(|end| Op::Close { end }),
        1 => any::<u8>().prop_map(|end| Op::Abort { end }),
        1 => (any::<u8>(), any::<u8>()).prop_map(|(worker, which)| Op::Disconnect { worker, which }),
        2 => (0u16..2000).prop_map(|ms| Op::Advance { ms }),
        4 => (1u8..40).prop_map(|n| Op::Steps { n }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_under_arbitrary_interleavings(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 10..120),
    ) {
        let mut harness = Harness::new(seed);
        for op in &ops {
            harness.apply(op);
        }
        harness.finish();
    }
}
