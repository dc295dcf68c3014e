#![no_main]
//! One engine connection from its HTTP upgrade head through the metered WebSocket layer,
//! with the memory budget's accounting checked after every step.

libfuzzer_sys::fuzz_target!(|data: &[u8]| iii_driver::fuzzing::upgrade_framing(data));
