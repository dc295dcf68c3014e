//! Engine settings. Every limit the engine enforces is one of these fields.

use std::time::Duration;

/// Limits and timeouts of an [`super::Engine`]. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Largest control message accepted from a worker. Default 64 MiB (the reference's
    /// WebSocket limit); a larger message closes the connection with 1009.
    pub max_control_message_bytes: usize,
    /// Control messages waiting for send credit on one connection, in bytes. A worker
    /// that does not read its socket past this is closed with 1008. Default 64 MiB.
    pub max_control_queue_bytes: usize,
    /// Messages handed to the adapter and not yet reported sent, per connection.
    /// Default 32.
    pub send_credit: usize,
    /// Channel buffer in messages when `engine::channels::create` gives no
    /// `buffer_size`. Default 64 (the reference's default).
    pub default_channel_buffer: usize,
    /// Largest `buffer_size` a channel may ask for; larger requests are clamped.
    /// Default 1024 (the reference's clamp).
    pub max_channel_buffer: usize,
    /// Bytes one channel may hold (queued plus in flight to the reader). The writer's
    /// socket is paused before the buffer could exceed it. Default 4 MiB.
    pub channel_buffer_bytes: usize,
    /// Largest single message on a channel. A larger one closes the writer with 1009
    /// and the reader with 1011. Must not exceed `channel_buffer_bytes`. Default 1 MiB
    /// (the SDKs send binary chunks of 64 KiB; Python readers refuse messages over 1 MiB).
    pub max_channel_message_bytes: usize,
    /// A channel whose end has not attached this long after creation expires: the
    /// attached end is closed with 1011 and later attempts get 404. Default 300 s.
    pub channel_attach_timeout: Duration,
    /// Channels that may exist at once; `engine::channels::create` fails beyond it.
    /// Default 100 000.
    pub max_channels: usize,
    /// Connections of any kind that may exist at once; upgrades get 503 beyond it.
    /// Default 100 000.
    pub max_connections: usize,
    /// When set, control and telemetry upgrades must carry
    /// `Authorization: Bearer <token>` (401 otherwise). Channel ends are authorized by
    /// their key alone. Default none.
    pub auth_token: Option<String>,
    /// Delay between a change of the registered functions and the
    /// `engine::functions-available` notification, so a burst of registrations gives one
    /// notification. Default 500 ms.
    pub functions_available_delay: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_control_message_bytes: 64 << 20,
            max_control_queue_bytes: 64 << 20,
            send_credit: 32,
            default_channel_buffer: 64,
            max_channel_buffer: 1024,
            channel_buffer_bytes: 4 << 20,
            max_channel_message_bytes: 1 << 20,
            channel_attach_timeout: Duration::from_secs(300),
            max_channels: 100_000,
            max_connections: 100_000,
            auth_token: None,
            functions_available_delay: Duration::from_millis(500),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A limit that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// `max_channel_message_bytes` exceeds `channel_buffer_bytes`: such a message could
    /// never be buffered.
    #[error("max_channel_message_bytes ({message}) exceeds channel_buffer_bytes ({buffer})")]
    MessageLargerThanBuffer {
        /// The message limit.
        message: usize,
        /// The buffer limit.
        buffer: usize,
    },
    /// The auth token is empty or has whitespace.
    #[error("auth_token must be non-empty and contain no whitespace")]
    BadToken,
}

impl EngineConfig {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_control_message_bytes", self.max_control_message_bytes),
            ("max_control_queue_bytes", self.max_control_queue_bytes),
            ("send_credit", self.send_credit),
            ("default_channel_buffer", self.default_channel_buffer),
            ("max_channel_buffer", self.max_channel_buffer),
            ("channel_buffer_bytes", self.channel_buffer_bytes),
            ("max_channel_message_bytes", self.max_channel_message_bytes),
            ("max_channels", self.max_channels),
            ("max_connections", self.max_connections),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero(name));
        }
        if self.max_channel_message_bytes > self.channel_buffer_bytes {
            return Err(ConfigError::MessageLargerThanBuffer {
                message: self.max_channel_message_bytes,
                buffer: self.channel_buffer_bytes,
            });
        }
        if let Some(token) = &self.auth_token {
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(ConfigError::BadToken);
            }
        }
        Ok(())
    }
}
