#![no_main]
//! Upgrade-target parsing: never panics; channel routes survive `channel_url` and back.

libfuzzer_sys::fuzz_target!(|data: &[u8]| iii_fuzz_drivers::upgrade_target(data));
