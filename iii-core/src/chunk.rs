//! Splitting a byte stream into channel frames of at most a configured size.

use bytes::Bytes;

/// The largest binary frame the SDKs send, and the default chunk size: 64 KiB.
pub const MAX_CHUNK: usize = 64 * 1024;

/// Splits `data` into consecutive slices of at most `max` bytes (zero-copy).
///
/// An empty `data` gives no chunks; a `max` of 0 is treated as 1.
pub fn chunks(data: Bytes, max: usize) -> impl Iterator<Item = Bytes> {
    let max = max.max(1);
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let take = rest.len().min(max);
        Some(rest.split_to(take))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn chunks_concatenate_to_input(len in 0usize..300_000, max in 0usize..100_000) {
            let data: Bytes = (0..len).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();
            let parts: Vec<Bytes> = chunks(data.clone(), max).collect();
            prop_assert!(parts.iter().all(|p| !p.is_empty() && p.len() <= max.max(1)));
            let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
            prop_assert_eq!(joined, data.to_vec());
        }
    }
}
