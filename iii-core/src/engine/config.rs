//! Engine settings. Every limit the engine enforces is one of these fields.

use std::time::Duration;

/// The longest duration any timeout setting may have (one year). Longer values would
/// only serve to overflow `now + timeout`; they are refused when the engine starts.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Limits and timeouts of an [`super::Engine`]. `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Largest control message accepted from a worker. Default 64 MiB (the reference's
    /// WebSocket limit); a larger message closes the connection with 1009.
    pub max_control_message_bytes: usize,
    /// Control messages waiting to be written to one connection, in bytes: those waiting
    /// for send credit plus those handed to the adapter and not yet flushed. A worker that
    /// does not read its socket past this is dropped as a slow consumer (1008). A single
    /// message larger than this still goes out when nothing else is pending. Default
    /// 64 MiB.
    pub max_control_queue_bytes: usize,
    /// Control messages waiting to be written to all connections together, in bytes
    /// (the engine-wide sum of what `max_control_queue_bytes` bounds per connection). A
    /// connection whose next message would take the sum past this is dropped as a slow
    /// consumer (1008), unless nothing is pending for it (one message may always go).
    /// Default 1 GiB.
    pub max_total_control_queue_bytes: usize,
    /// Largest message accepted on a telemetry (`/otel`) connection, whose content the
    /// engine discards. Default 4 MiB; a larger message closes the connection with 1009.
    pub max_telemetry_message_bytes: usize,
    /// Messages handed to the adapter and not yet reported sent, per connection.
    /// Default 32.
    pub send_credit: usize,
    /// Channel buffer in messages when `engine::channels::create` gives no
    /// `buffer_size`. Default 64 (the reference's default).
    pub default_channel_buffer: usize,
    /// Largest `buffer_size` a channel may ask for; larger requests are clamped.
    /// Default 1024 (the reference's clamp).
    pub max_channel_buffer: usize,
    /// Bytes the engine may hold for one channel: its buffer (queued plus in flight to
    /// the reader) and the adapter's read-ahead on the writer's socket. The writer is
    /// paused early enough that the sum never exceeds it, so a reader that stops reading
    /// costs at most this. Must exceed `read_ahead_bytes + 2 × max_channel_message_bytes`.
    /// Default 4 MiB.
    pub channel_buffer_bytes: usize,
    /// Largest single message on a channel. A larger one closes the writer with 1009
    /// and the reader with 1011. Default 1 MiB (the SDKs send binary chunks of 64 KiB;
    /// Python readers refuse messages over 1 MiB).
    pub max_channel_message_bytes: usize,
    /// Bytes an adapter may read ahead of the core on one connection: it starts reading
    /// a new message only while less than this has been read and not yet consumed, so
    /// at most `read_ahead_bytes` plus one message are in transit. The core reserves room
    /// for it in every channel's and the engine's byte budgets. Default 256 KiB.
    pub read_ahead_bytes: usize,
    /// Bytes all channels together may hold (the engine-wide budget), counting every
    /// channel's buffer and the read-ahead a paused writer's connection may still hold
    /// (`read_ahead_bytes` + one message). A writer whose message brings that within
    /// one writer's reserve of the budget is paused until it has fallen by an eighth; a
    /// writer that is not paused may have its read-ahead in transit on top. Default
    /// 256 MiB.
    pub max_buffered_channel_bytes: usize,
    /// A channel whose end has not attached this long after creation expires: the
    /// attached end is closed with 1011 and later attempts get 404. Default 300 s.
    pub channel_attach_timeout: Duration,
    /// When the worker that created a channel disconnects, a channel with an end that
    /// never attached expires after at most this (instead of `channel_attach_timeout`),
    /// so a departed worker's unused channels do not linger. Default 30 s.
    pub orphan_channel_timeout: Duration,
    /// Channels that may exist at once; `engine::channels::create` fails beyond it.
    /// Default 100 000.
    pub max_channels: usize,
    /// Connections of any kind that may exist at once; upgrades get 503 beyond it.
    /// Default 100 000.
    pub max_connections: usize,
    /// Upgrades that may wait for an RBAC listener's authentication function at once,
    /// over every listener (503 beyond; see also
    /// [`ListenerPolicy::max_pending_admissions`](super::ListenerPolicy) for one
    /// listener's share, and `max_connections_per_ip`, which counts waiting upgrades
    /// too). Default 256.
    pub max_pending_admissions: usize,
    /// When set, control and telemetry upgrades must carry
    /// `Authorization: Bearer <token>` (401 otherwise). Channel ends are authorized by
    /// their key alone. Default none.
    pub auth_token: Option<String>,
    /// Origins (`scheme://host[:port]`, compared case-insensitively) whose pages may open
    /// connections. A pattern may use `*` for the port (`http://127.0.0.1:*`, any port)
    /// or as the first label of the host (`https://*.example.com`, any subdomain, not the
    /// domain itself). An upgrade that carries an `Origin` header matching none is
    /// refused with 403, so a web page cannot drive the engine through the visitor's
    /// browser. Requests without `Origin` (every non-browser SDK) are not affected.
    /// Default empty: no browser origin is allowed.
    pub allowed_origins: Vec<String>,
    /// Delay between a change of the registered functions and the
    /// `engine::functions-available` notification, so a burst of registrations gives one
    /// notification. Default 500 ms.
    pub functions_available_delay: Duration,
    /// When set, an invocation routed to a worker that has not answered within this
    /// time is answered by the engine with a `timeout` error (the worker's late answer
    /// is dropped). Default none, as in the reference: the caller's SDK times out.
    pub invocation_timeout: Option<Duration>,
    /// Deepest nesting of arrays and objects accepted in a payload (`data`, `result`,
    /// `metadata`, `config`, formats). Deeper payloads are refused with a typed error,
    /// so they cannot reach workers whose JSON parsers stop at 128 levels. Default 100.
    pub max_payload_depth: usize,
    /// Largest answer of a listing built-in (`engine::functions::list`, ...), in bytes.
    /// A longer listing is cut at an entry boundary and says where to continue
    /// (`next_offset`). Default 1 MiB (Python workers refuse larger messages).
    pub max_list_bytes: usize,
    /// Lines one worker may log through `engine::log::*` per second; the lines beyond
    /// are dropped (and counted in its next line). Default 100.
    pub worker_log_lines_per_second: usize,
    /// Lines all the workers of one client address (IPv6 by /64, over every listener)
    /// may log through `engine::log::*` per second together; the lines beyond are
    /// dropped and counted (in the next line, the metrics and a summary event a second).
    /// Default 200.
    pub worker_log_lines_per_second_per_ip: usize,
    /// Lines all workers together may log through `engine::log::*` per second; the
    /// lines beyond are dropped and counted as above. Default 1 000.
    pub worker_log_lines_per_second_total: usize,
    /// Calls of the engine's own functions that all the workers of untrusted (RBAC)
    /// listeners may make together, a token bucket shared by every guest session
    /// (`rate_limited` beyond, naming this bound). Trusted workers do not draw on it.
    /// Default 2 000 a second after a burst of 2 000.
    pub guest_builtin_calls: super::RateLimit,
    /// Longest line (message and data) a worker may log through `engine::log::*`, in
    /// bytes; longer ones are cut. Default 4 KiB.
    pub max_worker_log_bytes: usize,
    /// Functions that get their own `function` label in the per-function call metrics
    /// (the first ones called); the calls of any other function are counted under
    /// `other`, so no worker can grow the metrics without bound. 0 counts every call
    /// under `other`. Default 100.
    pub metrics_function_labels: usize,
    /// What one worker connection may hold (on the main listener).
    pub quotas: WorkerQuotas,
    /// Listeners beyond the main one (listener 0): listener `i` is `listeners[i - 1]`,
    /// each with its own policy, for example role-based access control for untrusted
    /// workers. Default none.
    pub listeners: Vec<super::rbac::ListenerPolicy>,
}

/// What one worker connection may hold at once. Every refusal is typed: an error answer
/// where the protocol has one, and always an [`super::EngineEvent::Refused`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerQuotas {
    /// Registered functions. Default 10 000.
    pub functions: usize,
    /// Registered trigger types. Default 1 000.
    pub trigger_types: usize,
    /// Trigger bindings. Default 10 000.
    pub bindings: usize,
    /// Bindings on the engine's own trigger types (`engine::functions-available`,
    /// `engine::workers-available`): each one turns every connect or registration of
    /// any worker into a call, so they are few. Default 16.
    pub engine_bindings: usize,
    /// Invocations the worker has started and that are not answered yet: its calls
    /// (void ones included) and the fires of its bindings. Default 65 536.
    pub pending_invocations: usize,
    /// Live channels the worker created. Default 1 000.
    pub channels: usize,
    /// Bytes of one registration's payloads: a function's description, metadata and
    /// formats; a trigger type's formats; a binding's config and metadata. Default
    /// 256 KiB.
    pub registration_bytes: usize,
    /// Bytes of all the worker's registrations together. Default 32 MiB.
    pub total_registration_bytes: usize,
    /// Calls of the engine's own functions (`engine::…`, answered by the engine task)
    /// a second, sustained: a token bucket refilled at this rate. Beyond it a call is
    /// refused with `rate_limited`. Default 1 000.
    pub builtin_calls_per_sec: usize,
    /// Calls of the engine's own functions the worker may make at once before
    /// `builtin_calls_per_sec` applies (the bucket's size). Default 1 000.
    pub builtin_call_burst: usize,
}

impl WorkerQuotas {
    /// The stricter defaults of listeners for untrusted workers: 100 functions, 10
    /// trigger types, 100 bindings, 1 engine binding, 1 024 pending invocations, 64
    /// channels, 64 KiB per registration, 1 MiB in all, 20 built-in calls a second
    /// after a burst of 50.
    pub fn untrusted() -> Self {
        Self {
            functions: 100,
            trigger_types: 10,
            bindings: 100,
            engine_bindings: 1,
            pending_invocations: 1024,
            channels: 64,
            registration_bytes: 64 << 10,
            total_registration_bytes: 1 << 20,
            builtin_calls_per_sec: 20,
            builtin_call_burst: 50,
        }
    }
}

impl Default for WorkerQuotas {
    fn default() -> Self {
        Self {
            functions: 10_000,
            trigger_types: 1_000,
            bindings: 10_000,
            engine_bindings: 16,
            pending_invocations: 65_536,
            channels: 1_000,
            registration_bytes: 256 << 10,
            total_registration_bytes: 32 << 20,
            builtin_calls_per_sec: 1_000,
            builtin_call_burst: 1_000,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            max_control_message_bytes: 64 << 20,
            max_control_queue_bytes: 64 << 20,
            max_total_control_queue_bytes: 1 << 30,
            max_telemetry_message_bytes: 4 << 20,
            send_credit: 32,
            default_channel_buffer: 64,
            max_channel_buffer: 1024,
            channel_buffer_bytes: 4 << 20,
            max_channel_message_bytes: 1 << 20,
            read_ahead_bytes: 256 << 10,
            max_buffered_channel_bytes: 256 << 20,
            channel_attach_timeout: Duration::from_secs(300),
            orphan_channel_timeout: Duration::from_secs(30),
            max_channels: 100_000,
            max_connections: 100_000,
            max_pending_admissions: 256,
            auth_token: None,
            allowed_origins: Vec::new(),
            functions_available_delay: Duration::from_millis(500),
            invocation_timeout: None,
            max_payload_depth: 100,
            max_list_bytes: 1 << 20,
            worker_log_lines_per_second: 100,
            max_worker_log_bytes: 4 << 10,
            worker_log_lines_per_second_per_ip: 200,
            worker_log_lines_per_second_total: 1_000,
            guest_builtin_calls: super::RateLimit::new(2_000, 2_000),
            metrics_function_labels: 100,
            quotas: WorkerQuotas::default(),
            listeners: Vec::new(),
        }
    }
}

/// A setting that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A limit that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// A channel could never hold the messages it must accept before pausing its writer.
    #[error(
        "channel_buffer_bytes ({buffer}) must exceed read_ahead_bytes + 2 × max_channel_message_bytes ({needed})"
    )]
    ChannelBufferTooSmall {
        /// The buffer limit.
        buffer: usize,
        /// The smallest workable value minus one.
        needed: usize,
    },
    /// The engine-wide channel budget is smaller than one channel's.
    #[error(
        "max_buffered_channel_bytes ({total}) is smaller than channel_buffer_bytes ({buffer})"
    )]
    BudgetBelowChannel {
        /// The engine-wide budget.
        total: usize,
        /// One channel's limit.
        buffer: usize,
    },
    /// A timeout is longer than [`MAX_TIMEOUT`].
    #[error("`{0}` is longer than one year")]
    TimeoutTooLong(&'static str),
    /// The auth token is empty or has whitespace.
    #[error("auth_token must be non-empty and contain no whitespace")]
    BadToken,
    /// An allowed origin is not of the form `scheme://host[:port]`.
    #[error("allowed origin {0:?} is not of the form scheme://host[:port]")]
    BadOrigin(String),
}

impl EngineConfig {
    /// Checks that the settings can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let q = &self.quotas;
        let positive = [
            ("max_control_message_bytes", self.max_control_message_bytes),
            ("max_control_queue_bytes", self.max_control_queue_bytes),
            (
                "max_total_control_queue_bytes",
                self.max_total_control_queue_bytes,
            ),
            (
                "max_telemetry_message_bytes",
                self.max_telemetry_message_bytes,
            ),
            ("send_credit", self.send_credit),
            ("default_channel_buffer", self.default_channel_buffer),
            ("max_channel_buffer", self.max_channel_buffer),
            ("channel_buffer_bytes", self.channel_buffer_bytes),
            ("max_channel_message_bytes", self.max_channel_message_bytes),
            ("read_ahead_bytes", self.read_ahead_bytes),
            (
                "max_buffered_channel_bytes",
                self.max_buffered_channel_bytes,
            ),
            ("max_channels", self.max_channels),
            ("max_connections", self.max_connections),
            ("max_pending_admissions", self.max_pending_admissions),
            ("max_payload_depth", self.max_payload_depth),
            ("max_list_bytes", self.max_list_bytes),
            (
                "worker_log_lines_per_second",
                self.worker_log_lines_per_second,
            ),
            ("max_worker_log_bytes", self.max_worker_log_bytes),
            (
                "worker_log_lines_per_second_per_ip",
                self.worker_log_lines_per_second_per_ip,
            ),
            (
                "worker_log_lines_per_second_total",
                self.worker_log_lines_per_second_total,
            ),
            (
                "guest_builtin_calls.per_second",
                self.guest_builtin_calls.per_second,
            ),
            ("guest_builtin_calls.burst", self.guest_builtin_calls.burst),
            ("quotas.functions", q.functions),
            ("quotas.trigger_types", q.trigger_types),
            ("quotas.bindings", q.bindings),
            ("quotas.engine_bindings", q.engine_bindings),
            ("quotas.pending_invocations", q.pending_invocations),
            ("quotas.channels", q.channels),
            ("quotas.registration_bytes", q.registration_bytes),
            (
                "quotas.total_registration_bytes",
                q.total_registration_bytes,
            ),
            ("quotas.builtin_calls_per_sec", q.builtin_calls_per_sec),
            ("quotas.builtin_call_burst", q.builtin_call_burst),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err(ConfigError::Zero(name));
        }
        let needed = self
            .read_ahead_bytes
            .saturating_add(self.max_channel_message_bytes.saturating_mul(2));
        if self.channel_buffer_bytes <= needed {
            return Err(ConfigError::ChannelBufferTooSmall {
                buffer: self.channel_buffer_bytes,
                needed,
            });
        }
        if self.max_buffered_channel_bytes < self.channel_buffer_bytes {
            return Err(ConfigError::BudgetBelowChannel {
                total: self.max_buffered_channel_bytes,
                buffer: self.channel_buffer_bytes,
            });
        }
        let timeouts = [
            ("channel_attach_timeout", Some(self.channel_attach_timeout)),
            ("orphan_channel_timeout", Some(self.orphan_channel_timeout)),
            (
                "functions_available_delay",
                Some(self.functions_available_delay),
            ),
            ("invocation_timeout", self.invocation_timeout),
        ];
        for (name, timeout) in timeouts {
            if timeout.is_some_and(|t| t > MAX_TIMEOUT) {
                return Err(ConfigError::TimeoutTooLong(name));
            }
        }
        for listener in &self.listeners {
            let per_listener = [
                (
                    "listeners.max_connections_per_ip",
                    listener.max_connections_per_ip,
                ),
                (
                    "listeners.max_pending_admissions",
                    listener.max_pending_admissions,
                ),
                (
                    "listeners.builtin_calls_per_ip.per_second",
                    listener.builtin_calls_per_ip.map(|r| r.per_second),
                ),
                (
                    "listeners.builtin_calls_per_ip.burst",
                    listener.builtin_calls_per_ip.map(|r| r.burst),
                ),
            ];
            if let Some((name, _)) = per_listener.iter().find(|(_, value)| *value == Some(0)) {
                return Err(ConfigError::Zero(name));
            }
        }
        if let Some(token) = &self.auth_token {
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(ConfigError::BadToken);
            }
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(ConfigError::BadOrigin(bad.clone()));
        }
        Ok(())
    }

    /// True when a request carrying `Origin: origin` may connect.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim().to_ascii_lowercase();
        self.allowed_origins
            .iter()
            .any(|allowed| origin_matches(&allowed.to_ascii_lowercase(), &origin))
    }
}

/// `scheme`, `host` and `port` of `scheme://host[:port]` (port `None` when absent).
fn origin_parts(text: &str) -> Option<(&str, &str, Option<&str>)> {
    let (scheme, rest) = text.split_once("://")?;
    // IPv6 hosts are bracketed; the port follows the bracket.
    let (host, port) = match rest.rfind(':') {
        Some(at) if !rest[at..].contains(']') => (&rest[..at], Some(&rest[at + 1..])),
        _ => (rest, None),
    };
    Some((scheme, host, port))
}

/// True when `origin` matches the allowed origin or pattern `allowed` (both lowercase).
fn origin_matches(allowed: &str, origin: &str) -> bool {
    let (Some((a_scheme, a_host, a_port)), Some((scheme, host, port))) =
        (origin_parts(allowed), origin_parts(origin))
    else {
        return false;
    };
    let host_ok = match a_host.strip_prefix("*.") {
        Some(domain) => host
            .strip_suffix(domain)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => a_host == host,
    };
    let port_ok = a_port == Some("*") || a_port == port;
    a_scheme == scheme && host_ok && port_ok
}

/// `scheme://host[:port]` (or a pattern of one) with no path, query or whitespace.
fn is_origin(text: &str) -> bool {
    let Some((scheme, host, port)) = origin_parts(text) else {
        return false;
    };
    let host = host.strip_prefix("*.").unwrap_or(host);
    !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !host.is_empty()
        && !host.contains(['/', '?', '#', '*', '@'])
        && !text.chars().any(char::is_whitespace)
        && port.is_none_or(|p| p == "*" || (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        assert_eq!(EngineConfig::default().validate(), Ok(()));
        let long = EngineConfig {
            channel_attach_timeout: Duration::from_secs(u64::MAX),
            ..EngineConfig::default()
        };
        assert_eq!(
            long.validate(),
            Err(ConfigError::TimeoutTooLong("channel_attach_timeout"))
        );
        let small = EngineConfig {
            channel_buffer_bytes: 2 << 20,
            ..EngineConfig::default()
        };
        assert!(matches!(
            small.validate(),
            Err(ConfigError::ChannelBufferTooSmall { .. })
        ));
        let blank = EngineConfig {
            auth_token: Some(" ".into()),
            ..EngineConfig::default()
        };
        assert_eq!(blank.validate(), Err(ConfigError::BadToken));
        let mut quota = EngineConfig::default();
        quota.quotas.channels = 0;
        assert_eq!(quota.validate(), Err(ConfigError::Zero("quotas.channels")));
    }

    #[test]
    fn origins_are_exact_and_validated() {
        let config = EngineConfig {
            allowed_origins: vec!["https://app.example".into(), "http://127.0.0.1:8080".into()],
            ..EngineConfig::default()
        };
        assert_eq!(config.validate(), Ok(()));
        assert!(config.origin_allowed("https://APP.example"));
        assert!(config.origin_allowed("http://127.0.0.1:8080"));
        assert!(!config.origin_allowed("http://127.0.0.1:8081"));
        assert!(!config.origin_allowed("https://app.example.evil"));
        assert!(!config.origin_allowed("http://127.0.0.1"));
        let patterns = EngineConfig {
            allowed_origins: vec!["http://127.0.0.1:*".into(), "https://*.example.com".into()],
            ..EngineConfig::default()
        };
        assert_eq!(patterns.validate(), Ok(()));
        assert!(patterns.origin_allowed("http://127.0.0.1:5173"));
        assert!(!patterns.origin_allowed("https://127.0.0.1:5173"));
        assert!(!patterns.origin_allowed("http://127.0.0.2:5173"));
        assert!(patterns.origin_allowed("https://app.example.com"));
        assert!(patterns.origin_allowed("https://a.b.example.com"));
        assert!(!patterns.origin_allowed("https://example.com"));
        assert!(!patterns.origin_allowed("https://evilexample.com"));
        assert!(!patterns.origin_allowed("https://app.example.com:8443"));
        for bad in [
            "app.example",
            "https://a/b",
            "https://",
            "https://a b",
            "https://*",
            "https://a*.b",
            "http://h:8x",
        ] {
            let config = EngineConfig {
                allowed_origins: vec![bad.into()],
                ..EngineConfig::default()
            };
            assert!(config.validate().is_err(), "{bad}");
        }
    }
}
