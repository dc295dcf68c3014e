//! The `chunker` target.

use crate::Input;

use bytes::Bytes;

use iii_core::chunk::chunks;

/// `chunker`: chunks concatenate to the input, each is at most `max` (0 counts as 1)
/// and none is empty; there are exactly `ceil(len / max)` of them.
pub fn chunker(data: &[u8]) {
    let mut input = Input::new(data);
    let max = match input.below(4) {
        0 => input.below(4),
        1 => input.below(64),
        2 => input.below(4096),
        _ => usize::from(input.u16()),
    };
    let payload = Bytes::copy_from_slice(input.rest());
    let parts: Vec<Bytes> = chunks(payload.clone(), max).collect();
    let limit = max.max(1);
    for part in &parts {
        assert!(!part.is_empty(), "empty chunk");
        assert!(part.len() <= limit, "chunk of {} > {limit}", part.len());
    }
    assert_eq!(parts.len(), payload.len().div_ceil(limit), "chunk count");
    let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
    assert_eq!(
        joined,
        payload.to_vec(),
        "chunks do not concatenate to the input"
    );
}
