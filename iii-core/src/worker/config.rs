//! Configuration of a [`Worker`](super::Worker): identity, timeouts, backoff and windows.

use std::time::Duration;

use crate::chunk::MAX_CHUNK;

/// The longest reconnect delay [`WorkerConfig::validate`] accepts (one day).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Who this worker is, as announced in `engine::workers::register`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerIdentity {
    /// The worker name; one live worker per (namespace, name) on the real engine.
    /// Default `"iii-rs-worker"`: adapters should set something unique such as
    /// `hostname:pid`.
    pub name: String,
    /// The runtime; default `"rust"`.
    pub runtime: String,
    /// The SDK version; default this crate's version.
    pub version: String,
    /// A description of the operating system; default `"<os> <arch> (<family>)"` from
    /// the compile-time target.
    pub os: String,
    /// The process id; default `None` (the core reads no process state). Without a pid
    /// the worker is invisible in `engine::workers::list`, so adapters should set it.
    pub pid: Option<u32>,
    /// Free text; default `None` (omitted).
    pub description: Option<String>,
    /// The connection namespace; default `None` (omitted, the engine uses `default`).
    /// Also sent as the `namespace` of every `registertrigger`.
    pub namespace: Option<String>,
}

impl Default for WorkerIdentity {
    fn default() -> Self {
        Self {
            name: "iii-rs-worker".to_owned(),
            runtime: "rust".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            os: format!(
                "{} {} ({})",
                std::env::consts::OS,
                std::env::consts::ARCH,
                std::env::consts::FAMILY
            ),
            pid: None,
            description: None,
            namespace: None,
        }
    }
}

/// Everything a [`Worker`](super::Worker) needs to know besides its seed.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// Sent in `engine::workers::register`.
    pub identity: WorkerIdentity,
    /// Deadline of a call made without its own timeout; default 30 s.
    pub invocation_timeout: Duration,
    /// First reconnect delay; default 1 s. It doubles after every failure up to
    /// [`reconnect_max`](Self::reconnect_max) and is reset by a successful open.
    pub reconnect_initial: Duration,
    /// Cap of the reconnect delay before jitter; default 30 s.
    pub reconnect_max: Duration,
    /// Jitter fraction applied after the cap: the delay is multiplied by a factor drawn
    /// uniformly from `[1 - jitter, 1 + jitter)`; default 0.3.
    pub reconnect_jitter: f64,
    /// Largest control message decoded from the engine; default 64 MiB.
    pub max_control_message_bytes: usize,
    /// Messages in flight (transmitted, not yet reported sent) per connection;
    /// default 32.
    pub send_credit: usize,
    /// Bytes of control messages (calls) queued while the control connection is not
    /// open, and waiting for credit while it is; beyond this `invoke` fails with
    /// [`InvokeError::QueueFull`](super::InvokeError::QueueFull). Default 16 MiB.
    pub max_offline_queue_bytes: usize,
    /// Largest binary frame a writer end sends; default 64 KiB.
    pub chunk_size: usize,
    /// Bytes a writer end holds (queued and in flight) before `channel_write` reports
    /// [`WriteError::Blocked`](super::WriteError::Blocked); default 1 MiB.
    pub writer_window_bytes: usize,
    /// Unconsumed bytes at a reader end that pause reading; default 1 MiB.
    pub reader_window_bytes: usize,
    /// Keep the control connection alive: ping it when quiet (`keepalive_interval`) and
    /// replace it when silent (`idle_timeout`). Default true; a simulation on a virtual
    /// clock that runs "until nothing is left to do" turns it off.
    pub keepalive: bool,
    /// A control connection silent for this long gets a JSON `ping`; default 20 s (the
    /// published SDKs' ping interval).
    pub keepalive_interval: Duration,
    /// A control connection silent for this long (no message, not even the `pong`) is
    /// dropped and replaced: a half-open socket is found this way. Default 60 s; must be
    /// longer than `keepalive_interval`.
    pub idle_timeout: Duration,
    /// When the engine has not registered a connection of this worker for this long
    /// (since the worker started or lost its connection), calls waiting to be sent fail
    /// with [`CallOutcome::Unreachable`](super::CallOutcome::Unreachable) and new ones fail
    /// at once, until it is reached again (the worker keeps reconnecting). Default 10 s.
    pub connect_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            identity: WorkerIdentity::default(),
            invocation_timeout: Duration::from_secs(30),
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(30),
            reconnect_jitter: 0.3,
            max_control_message_bytes: 64 * 1024 * 1024,
            send_credit: 32,
            max_offline_queue_bytes: 16 * 1024 * 1024,
            chunk_size: MAX_CHUNK,
            writer_window_bytes: 1024 * 1024,
            reader_window_bytes: 1024 * 1024,
            keepalive: true,
            keepalive_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a [`WorkerConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// `identity.name` is empty or whitespace.
    #[error("the worker name is empty")]
    EmptyName,
    /// `identity.namespace` is set but blank (the engine rejects it).
    #[error("the worker namespace is blank")]
    BlankNamespace,
    /// A duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    ZeroDuration(&'static str),
    /// `reconnect_max` is below `reconnect_initial` or above [`MAX_RECONNECT_DELAY`].
    #[error("`reconnect_max` must lie between `reconnect_initial` and one day")]
    ReconnectMax,
    /// `reconnect_jitter` is not a number in `[0, 1)`.
    #[error("`reconnect_jitter` must lie in [0, 1), got {0}")]
    Jitter(f64),
    /// A size or count that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    ZeroSize(&'static str),
    /// `idle_timeout` is not longer than `keepalive_interval`.
    #[error("`idle_timeout` must be longer than `keepalive_interval`")]
    IdleTimeout,
}

impl WorkerConfig {
    /// Checks that every field is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.identity.name.trim().is_empty() {
            return Err(ConfigError::EmptyName);
        }
        if self
            .identity
            .namespace
            .as_deref()
            .is_some_and(|ns| ns.trim().is_empty())
        {
            return Err(ConfigError::BlankNamespace);
        }
        if self.invocation_timeout.is_zero() {
            return Err(ConfigError::ZeroDuration("invocation_timeout"));
        }
        for (name, duration) in [
            ("keepalive_interval", self.keepalive_interval),
            ("connect_timeout", self.connect_timeout),
        ] {
            if duration.is_zero() {
                return Err(ConfigError::ZeroDuration(name));
            }
        }
        if self.idle_timeout <= self.keepalive_interval {
            return Err(ConfigError::IdleTimeout);
        }
        if self.reconnect_initial.is_zero() {
            return Err(ConfigError::ZeroDuration("reconnect_initial"));
        }
        if self.reconnect_max < self.reconnect_initial || self.reconnect_max > MAX_RECONNECT_DELAY {
            return Err(ConfigError::ReconnectMax);
        }
        if !(0.0..1.0).contains(&self.reconnect_jitter) {
            return Err(ConfigError::Jitter(self.reconnect_jitter));
        }
        let sizes = [
            ("max_control_message_bytes", self.max_control_message_bytes),
            ("send_credit", self.send_credit),
            ("max_offline_queue_bytes", self.max_offline_queue_bytes),
            ("chunk_size", self.chunk_size),
            ("writer_window_bytes", self.writer_window_bytes),
            ("reader_window_bytes", self.reader_window_bytes),
        ];
        for (name, value) in sizes {
            if value == 0 {
                return Err(ConfigError::ZeroSize(name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_bad_values_are_named() {
        assert_eq!(WorkerConfig::default().validate(), Ok(()));
        let config = WorkerConfig {
            reconnect_jitter: f64::NAN,
            ..WorkerConfig::default()
        };
        assert!(matches!(config.validate(), Err(ConfigError::Jitter(_))));
        let config = WorkerConfig {
            chunk_size: 0,
            ..WorkerConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::ZeroSize("chunk_size")));
        let mut config = WorkerConfig::default();
        config.identity.namespace = Some("  ".into());
        assert_eq!(config.validate(), Err(ConfigError::BlankNamespace));
        let config = WorkerConfig {
            idle_timeout: Duration::from_secs(20),
            ..WorkerConfig::default()
        };
        assert_eq!(config.validate(), Err(ConfigError::IdleTimeout));
    }
}
