//! Application behaviour on the simulated workers: channel sources that write a
//! deterministic byte pattern, and sinks that read and verify it.

use bytes::Bytes;
use iii_core::worker::EndOutcome;

/// The byte at `offset` of the stream of a channel whose pattern key is `key`.
pub fn pattern_byte(key: u64, offset: u64) -> u8 {
    let mut x = key ^ offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 29;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    (x >> 32) as u8
}

/// `len` pattern bytes starting at `offset`.
pub fn pattern(key: u64, offset: u64, len: usize) -> Bytes {
    (0..len as u64)
        .map(|i| pattern_byte(key, offset + i))
        .collect::<Vec<u8>>()
        .into()
}

/// One piece of what a reader received, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A run of binary bytes (consecutive binary messages are merged).
    Bytes(u64),
    /// A text message.
    Text(String),
}

/// A writer end driven by the simulator: writes `total` pattern bytes in writes of
/// `write_size`, sends each text when the stream reaches its offset, then closes.
#[derive(Debug, Clone)]
pub struct Source {
    /// Pattern key of the stream.
    pub key: u64,
    /// Bytes to write in all.
    pub total: u64,
    /// Size of each write call.
    pub write_size: usize,
    /// Text messages and the stream offset at which each is sent.
    pub texts: Vec<(u64, String)>,
    /// Close cleanly once everything is written.
    pub close_at_end: bool,
    /// Bytes accepted by the core so far.
    pub written: u64,
    /// Texts sent so far.
    pub texts_sent: usize,
    /// `channel_close` was called.
    pub closed: bool,
    /// How the end ended, once it did.
    pub ended: Option<EndOutcome>,
}

impl Source {
    /// A source of `total` bytes in writes of `write_size` that closes at the end.
    pub fn new(key: u64, total: u64, write_size: usize) -> Self {
        Self {
            key,
            total,
            write_size: write_size.max(1),
            texts: Vec::new(),
            close_at_end: true,
            written: 0,
            texts_sent: 0,
            closed: false,
            ended: None,
        }
    }
}

/// A reader end driven by the simulator: consumes at `rate` bytes per second (or at
/// once) and checks every byte against the writer's pattern.
#[derive(Debug, Clone)]
pub struct Sink {
    /// Pattern key the bytes must follow.
    pub key: u64,
    /// Consumption rate in bytes per second; `None` consumes at once.
    pub rate: Option<u64>,
    /// Keep the received bytes (for small streams).
    pub keep: bool,
    /// Bytes received.
    pub received: u64,
    /// Bytes received but not yet consumed.
    pub unconsumed: u64,
    /// What arrived, in order.
    pub pieces: Vec<Piece>,
    /// The bytes, when `keep`.
    pub bytes: Vec<u8>,
    /// The first offset whose byte did not match the pattern.
    pub mismatch: Option<u64>,
    /// How the end ended, once it did.
    pub ended: Option<EndOutcome>,
    /// The first text whose claimed offset (`t@N`) disagreed: `(claimed, actual)`.
    pub order_violation: Option<(u64, u64)>,
}

impl Sink {
    /// A sink that checks against pattern `key` and consumes at once.
    pub fn new(key: u64) -> Self {
        Self {
            key,
            rate: None,
            keep: false,
            received: 0,
            unconsumed: 0,
            pieces: Vec::new(),
            bytes: Vec::new(),
            mismatch: None,
            ended: None,
            order_violation: None,
        }
    }

    /// Records binary data.
    pub fn on_data(&mut self, data: &[u8]) {
        for (i, byte) in data.iter().enumerate() {
            let offset = self.received + i as u64;
            if self.mismatch.is_none() && *byte != pattern_byte(self.key, offset) {
                self.mismatch = Some(offset);
            }
        }
        if self.keep {
            self.bytes.extend_from_slice(data);
        }
        self.received += data.len() as u64;
        self.unconsumed += data.len() as u64;
        match self.pieces.last_mut() {
            Some(Piece::Bytes(n)) => *n += data.len() as u64,
            _ => self.pieces.push(Piece::Bytes(data.len() as u64)),
        }
    }

    /// Records a text message. A text of the form `t@N` claims it was sent after `N`
    /// stream bytes; a claim that disagrees with what arrived is an order violation.
    pub fn on_text(&mut self, text: &str) {
        if let Some(offset) = text.strip_prefix("t@").and_then(|n| n.parse::<u64>().ok()) {
            if offset != self.received && self.order_violation.is_none() {
                self.order_violation = Some((offset, self.received));
            }
        }
        self.unconsumed += text.len() as u64;
        self.pieces.push(Piece::Text(text.to_owned()));
    }

    /// The text messages received, in order.
    pub fn texts(&self) -> Vec<String> {
        self.pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => Some(t.clone()),
                Piece::Bytes(_) => None,
            })
            .collect()
    }
}
