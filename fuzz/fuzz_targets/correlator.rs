#![no_main]
//! The worker's call correlation: every call completes exactly once.

use std::sync::OnceLock;
use std::time::Instant;

// The core owns no clock: one base instant for the whole run.
static START: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iii_fuzz_drivers::correlator(data, *START.get_or_init(Instant::now));
});
