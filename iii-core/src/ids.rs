//! Identifiers, secrets and the seeded generator that mints them.
//!
//! Every random value in the core comes from one [`IdGen`], a ChaCha20 CSPRNG seeded
//! once at construction. Adapters seed it from the operating system; tests pass fixed
//! seeds so that a run is reproducible.

use std::fmt;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use subtle::ConstantTimeEq;
use uuid::Uuid;

/// A connection handle, allocated by the core from a counter and never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// The id of one invocation: a UUID, as every SDK and the reference engine require.
pub type InvocationId = Uuid;

/// A secret of 256 bits, printed as 64 lowercase hex digits.
///
/// Used for channel access keys and reattach tokens. Comparison is constant-time and
/// `Debug` never prints the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret([u8; 32]);

impl Secret {
    /// Parses 64 hex digits (either case); anything else is `None`.
    pub fn parse(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            *slot = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
        }
        Some(Self(out))
    }

    /// Compares with `other` in time independent of where they differ.
    pub fn matches(&self, other: &Secret) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// The hex form sent on the wire.
    pub fn to_hex(&self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(64);
        for byte in self.0 {
            out.push(DIGITS[usize::from(byte >> 4)] as char);
            out.push(DIGITS[usize::from(byte & 0x0f)] as char);
        }
        out
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The seeded CSPRNG behind every id, key, token and jitter value of one machine.
pub struct IdGen {
    rng: ChaCha20Rng,
}

impl fmt::Debug for IdGen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdGen")
    }
}

impl IdGen {
    /// A generator seeded with `seed`. The same seed gives the same sequence.
    pub fn new(seed: [u8; 32]) -> Self {
        Self {
            rng: ChaCha20Rng::from_seed(seed),
        }
    }

    /// A random (version 4) UUID.
    pub fn uuid(&mut self) -> Uuid {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid()
    }

    /// A fresh 256-bit secret.
    pub fn secret(&mut self) -> Secret {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        Secret(bytes)
    }

    /// A uniformly distributed fraction in `[0, 1)`, for jitter.
    pub fn fraction(&mut self) -> f64 {
        // 53 random bits give every representable f64 step in [0, 1).
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hex_round_trips_and_compares() {
        let mut ids = IdGen::new([7; 32]);
        let a = ids.secret();
        let b = ids.secret();
        let parsed = Secret::parse(&a.to_hex()).expect("own hex parses");
        assert!(parsed.matches(&a));
        assert!(!a.matches(&b));
        assert!(Secret::parse(&a.to_hex().to_uppercase()).is_some());
        assert!(Secret::parse("zz").is_none());
        assert!(Secret::parse(&"g".repeat(64)).is_none());
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
    }

    #[test]
    fn same_seed_same_ids() {
        let mut a = IdGen::new([1; 32]);
        let mut b = IdGen::new([1; 32]);
        assert_eq!(a.uuid(), b.uuid());
        assert_eq!(a.uuid().get_version_num(), 4);
        let f = a.fraction();
        assert!((0.0..1.0).contains(&f));
    }
}
