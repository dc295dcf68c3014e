#![no_main]
//! The simulator's operation harness (engine + three workers) driven by decoded ops.
//! Run with `-- -max_len=8192 -len_control=0` so inputs are long enough to matter.

libfuzzer_sys::fuzz_target!(|data: &[u8]| iii_tests::fuzzing::sim_ops(data));
