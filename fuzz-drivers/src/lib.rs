//! Property drivers of `iii-core`'s machines, behind the cargo-fuzz targets in `fuzz/`.
//!
//! A crate of its own, never published, so that `iii-core` carries no fuzzing code or
//! feature: the drivers use only `iii-core`'s public API. `fuzz/` and the `iii-tests`
//! crate depend on it.
//!
//! Every driver is an ordinary function over a byte slice that panics when a property
//! fails. The libFuzzer targets are one-line wrappers around them, and
//! `tests/tests/corpus_replay.rs` replays the committed corpus and regression inputs
//! through the same functions on stable, so `cargo test --workspace` keeps every input
//! that ever found a bug. The drivers of the role machines take their base `Instant`
//! from the caller: the core owns no clock.
//!
//! Inputs are read with [`Input`], which never fails: once the bytes run out every read
//! is zero, so any byte string is a valid (if short) program.

mod chunker;
mod control_decode;
mod credit;
mod engine_inputs;
mod upgrade_target;
mod values;
mod worker_inputs;

pub use chunker::chunker;
pub use control_decode::control_decode;
pub use credit::credit;
pub use engine_inputs::engine_inputs;
pub use upgrade_target::upgrade_target;
pub use worker_inputs::{correlator, worker_inputs};

/// Outputs one input may produce before draining is declared non-terminating.
pub const DRAIN_LIMIT: usize = 100_000;

/// Operations one role-machine input may run (longer inputs are cut).
pub const MAX_OPS: usize = 2_000;

/// A cursor over fuzz input that never fails: past the end every read is zero.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// True once every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// One byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((byte, rest)) => {
                self.data = rest;
                *byte
            }
            None => 0,
        }
    }

    /// One bit of a byte.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// Two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// Four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from(self.u16()) | (u32::from(self.u16()) << 16)
    }

    /// Eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from(self.u32()) | (u64::from(self.u32()) << 32)
    }

    /// A value in `0..n` (0 when `n` is 0), read from as few bytes as fit `n`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let raw = if n <= 1 << 8 {
            usize::from(self.u8())
        } else if n <= 1 << 16 {
            usize::from(self.u16())
        } else {
            self.u32() as usize
        };
        raw % n
    }

    /// Up to `max` raw bytes; the length comes first (one byte, two when `max` > 255).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let want = if max < 256 {
            usize::from(self.u8())
        } else {
            usize::from(self.u16())
        };
        let len = want.min(max).min(self.data.len());
        let (head, rest) = self.data.split_at(len);
        self.data = rest;
        head
    }

    /// Up to `max` bytes as text (invalid UTF-8 replaced).
    pub fn text(&mut self, max: usize) -> String {
        String::from_utf8_lossy(self.bytes(max)).into_owned()
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// One of `items` (`None` when there are none).
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> Option<&'b T> {
        if items.is_empty() {
            None
        } else {
            items.get(self.below(items.len()))
        }
    }
}
