//! WebSocket messages as the core sees them, and close codes.
//!
//! WebSocket framing, masking, fragmentation and ping/pong stay in the WebSocket
//! library; the core speaks whole messages.

use std::fmt;

use bytes::Bytes;

/// UTF-8 text held in shared bytes, so a relayed text message is never copied.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Text(Bytes);

impl Text {
    /// Wraps bytes after checking that they are UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, std::str::Utf8Error> {
        std::str::from_utf8(&bytes)?;
        Ok(Self(bytes))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // The constructors only admit UTF-8; fall back to "" rather than panic.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The underlying bytes (UTF-8).
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Gives up the underlying bytes (UTF-8).
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Text {
    fn from(value: String) -> Self {
        Self(Bytes::from(value))
    }
}

impl From<&'static str> for Text {
    fn from(value: &'static str) -> Self {
        Self(Bytes::from_static(value.as_bytes()))
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One whole WebSocket data message.
#[derive(Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message: control JSON, or a channel's side message.
    Text(Text),
    /// A binary message: a chunk of a channel's byte stream.
    Binary(Bytes),
}

impl Message {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Message::Text(text) => text.len(),
            Message::Binary(bytes) => bytes.len(),
        }
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Text(text) if text.len() <= 600 => write!(f, "Text({text:?})"),
            Message::Text(text) => write!(f, "Text(<{} bytes>)", text.len()),
            Message::Binary(bytes) => write!(f, "Binary(<{} bytes>)", bytes.len()),
        }
    }
}

/// A WebSocket close status code (RFC 6455 §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the other side of a channel went away.
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1007: a message's data was not consistent with its type (invalid UTF-8 in a text
    /// message).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: the peer broke a policy (for example it could not keep up with its queue).
    pub const POLICY: CloseCode = CloseCode(1008);
    /// 1009: a message exceeded the configured size limit.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1011: the stream failed (writer lost, channel expired, writer aborted).
    pub const INTERNAL: CloseCode = CloseCode(1011);

    /// True for the codes that mean "clean end": none (`None` at the call site) or 1000.
    pub fn is_normal(self) -> bool {
        self == Self::NORMAL
    }
}

/// How a peer's connection ended, as reported to the core by the adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerClose {
    /// The peer sent a Close frame, with this status code if it had one.
    Frame {
        /// The status code, `None` when the Close frame had no payload.
        code: Option<CloseCode>,
        /// The reason text the peer gave (may be empty).
        reason: String,
    },
    /// The connection ended without a Close frame (reset, EOF, transport error, or
    /// a failed WebSocket handshake).
    Lost,
}

impl PeerClose {
    /// True for a Close frame without a code or with 1000.
    pub fn is_clean(&self) -> bool {
        matches!(self, PeerClose::Frame { code, .. } if code.is_none_or(|code| code.is_normal()))
    }
}
