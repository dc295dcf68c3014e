//! The wire: WebSocket messages, close codes and the JSON control protocol.

pub mod builtins;
pub mod codes;
pub mod control;
pub mod frame;
pub mod json;

pub use control::{decode, ControlMessage, DecodeError, Decoded, ErrorBody, Payload};
pub use frame::{CloseCode, Message, PeerClose, Text};
