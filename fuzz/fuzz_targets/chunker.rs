#![no_main]
//! The chunker: chunks concatenate to the input, none empty, none over the maximum.

libfuzzer_sys::fuzz_target!(|data: &[u8]| iii_fuzz_drivers::chunker(data));
