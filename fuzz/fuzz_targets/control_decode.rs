#![no_main]
//! Control-message decoding: never panics; what decodes re-encodes to a fixed point.

libfuzzer_sys::fuzz_target!(|data: &[u8]| iii_fuzz_drivers::control_decode(data));
