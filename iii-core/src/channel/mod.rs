//! Channel vocabulary shared by both roles: refs, directions and URLs.

pub mod refs;

pub use refs::{channel_url, extract_channel_refs, ChannelRef, ChannelRefs, Direction};
