#![no_main]
//! Per-connection send credit (`Outbox`) against a model.

libfuzzer_sys::fuzz_target!(|data: &[u8]| iii_fuzz_drivers::credit(data));
