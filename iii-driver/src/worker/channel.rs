//! A new channel's two local ends and their refs, and the items a reader yields.

use bytes::Bytes;
use iii_core::channel::ChannelRef;

use super::{ChannelReader, ChannelWriter};
use crate::runtime::Runtime;

/// Both ends of a new channel and the refs that open them elsewhere.
///
/// Hand a ref to another function and drop the local end it replaces (or just let it
/// go out of scope): an end that was never used has no effect when dropped. The fields
/// can be moved out one by one (`let reader = channel.reader;`).
#[derive(Debug)]
pub struct Channel<R: Runtime> {
    /// The local writing end.
    pub writer: ChannelWriter<R>,
    /// The local reading end.
    pub reader: ChannelReader<R>,
    /// The ref that opens the writing end (pass it to another worker instead of using
    /// `writer`).
    pub writer_ref: ChannelRef,
    /// The ref that opens the reading end (pass it to another worker instead of using
    /// `reader`).
    pub reader_ref: ChannelRef,
}

/// One message read from a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelItem {
    /// A binary chunk.
    Binary(Bytes),
    /// A text message.
    Text(String),
}
