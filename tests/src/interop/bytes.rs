//! The deterministic byte stream every peer writes (same spec in Python, Node and Rust).
//!
//! Block `i` (counting from 0) is `SHA-256(le64(seed) || le64(i))`, 32 bytes; the stream
//! is the blocks in order, cut to the requested size.

use sha2::{Digest, Sha256};

/// The first `size` bytes of the stream for `seed`.
pub fn generate(seed: u64, size: usize) -> Vec<u8> {
    let blocks = size.div_ceil(32);
    let mut out = Vec::with_capacity(blocks * 32);
    let mut input = [0u8; 16];
    input[..8].copy_from_slice(&seed.to_le_bytes());
    for i in 0..blocks as u64 {
        input[8..].copy_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&Sha256::digest(input));
    }
    out.truncate(size);
    out
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_counter_mode_sha256() {
        let bytes = generate(7, 40);
        let mut first = [0u8; 16];
        first[..8].copy_from_slice(&7u64.to_le_bytes());
        assert_eq!(&bytes[..32], Sha256::digest(first).as_slice());
        let mut second = first;
        second[8..].copy_from_slice(&1u64.to_le_bytes());
        assert_eq!(&bytes[32..], &Sha256::digest(second)[..8]);
        assert_ne!(generate(8, 40), bytes);
    }
}
