//! Drivers for the fuzz targets that need the simulator; the others live in
//! `iii_fuzz_drivers` (the `fuzz-drivers` crate). Plain functions over bytes, so the corpus
//! replays on stable in `tests/corpus_replay.rs`.

use crate::ops::{Harness, Op};

/// Operations one `sim_ops` input may run.
pub const SIM_MAX_OPS: usize = 256;

/// `sim_ops`: the operation harness of `prop_ops` driven by decoded bytes. The first
/// eight bytes are the seed, the rest are operations ([`Op::decode_all`]); the harness
/// checks its invariants after every operation and the end-state ones in `finish`.
pub fn sim_ops(data: &[u8]) {
    let (seed, rest) = match data.split_first_chunk::<8>() {
        Some((seed, rest)) => (u64::from_le_bytes(*seed), rest),
        None => return,
    };
    let ops = Op::decode_all(rest, SIM_MAX_OPS);
    let mut harness = Harness::new(seed);
    for op in &ops {
        harness.apply(op);
    }
    harness.finish();
}
