#![no_main]
//! Control-message decoding: never panics; what decodes re-encodes to a fixed point.

use iii_core::wire::{decode, Decoded};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Decoded::Message(message)) = decode(data, 1 << 20) {
        let encoded = message.encode();
        match decode(encoded.as_bytes(), usize::MAX) {
            Ok(Decoded::Message(again)) => assert_eq!(again.encode(), encoded),
            other => panic!("re-encoded message did not decode: {other:?}"),
        }
    }
});
