#![no_main]
//! One Worker fed arbitrary connects, engine messages, commands, closes and time.

use std::sync::OnceLock;
use std::time::Instant;

// The core owns no clock: one base instant for the whole run.
static START: OnceLock<Instant> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    iii_fuzz_drivers::worker_inputs(data, *START.get_or_init(Instant::now));
});
