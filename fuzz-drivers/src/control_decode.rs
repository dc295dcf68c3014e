//! The `control_decode` target.

use iii_core::wire::{decode, Decoded};

/// `control_decode`: decoding never panics, and a decoded message re-encodes to a fixed
/// point (encode, decode, encode gives the same text and the same message type).
pub fn control_decode(data: &[u8]) {
    let Ok(Decoded::Message(message)) = decode(data, 1 << 20) else {
        return;
    };
    let encoded = message.encode();
    match decode(encoded.as_bytes(), usize::MAX) {
        Ok(Decoded::Message(again)) => {
            assert_eq!(again.kind(), message.kind(), "type changed: {encoded:?}");
            assert_eq!(again.encode(), encoded, "re-encoding is not a fixed point");
        }
        other => panic!("re-encoded message {encoded:?} did not decode: {other:?}"),
    }
}
