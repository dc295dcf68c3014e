//! What an engine server is configured with: [`EngineSettings`] (the core's limits plus
//! the transport's), its extra listeners, and why it may refuse to start.

use std::time::Duration;

use iii_core::engine::{Accepted, ConfigError, EngineConfig, ListenerPolicy};

use super::tls::{TlsError, TlsSettings};
use crate::conn::{ConnOptions, Liveness};
use crate::memory::BudgetPolicy;

/// The largest `write_buffer_bytes` accepted.
const MAX_BUFFER_BYTES: usize = 1 << 30;

/// The smallest `memory_budget_bytes` accepted.
const MIN_MEMORY_BUDGET: usize = 1 << 20;

/// Settings of an engine server: the core's limits plus the transport's.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The core's limits and timeouts (see [`EngineConfig`]).
    pub core: EngineConfig,
    /// A new TCP connection must complete its TLS handshake (on a TLS listener) and send
    /// its whole upgrade request within this time, or it is dropped. Default 10 s (the
    /// reference's `handshake_timeout_ms`).
    pub handshake_timeout: Duration,
    /// TCP connections that may be in their HTTP upgrade (TLS handshake included) at
    /// once; more are answered 503 at once (dropped at once on a TLS listener, where a
    /// plain answer would mean nothing to the client), so silent connections cannot
    /// exhaust file descriptors. Default 1024. Deferred admissions (an RBAC listener's
    /// authentication function deciding) give their slot back when the engine defers
    /// them: the core bounds those (`core.max_pending_admissions`).
    pub max_handshakes: usize,
    /// Of `max_handshakes`, how many the main listener keeps for itself: the other
    /// listeners together never hold more than `max_handshakes - reserved_handshakes`.
    /// Keep it above `max_handshakes_per_ip`, so that no single address can take it
    /// either. Default 384.
    pub reserved_handshakes: usize,
    /// Connections one client address may have in their upgrade at once, over every
    /// listener (503 beyond, closed at once on TLS). Default 256.
    pub max_handshakes_per_ip: usize,
    /// Largest HTTP request head accepted (431 beyond). Default 16 KiB.
    pub max_request_head: usize,
    /// Read buffer of each WebSocket, in bytes: kept for the connection's life, so it is
    /// what an idle connection costs; it grows while a larger message is assembled.
    /// Default 2 KiB.
    pub read_buffer_bytes: usize,
    /// Largest read from a socket, in bytes. The buffer for it exists only while bytes
    /// arrive (it is freed whenever the socket has nothing more to read), so a streaming
    /// connection needs one system call per 64 KiB frame while an idle one holds only
    /// its `read_buffer_bytes`. Default 64 KiB.
    pub socket_read_bytes: usize,
    /// Write buffer of each WebSocket before it writes to the socket (messages are also
    /// flushed explicitly). Default 64 KiB.
    pub write_buffer_bytes: usize,
    /// A peer that accepts no bytes for this long while the engine writes to it is
    /// dropped and its slot freed. Default 30 s.
    pub write_timeout: Duration,
    /// When the engine stops (after a drain, or at once), how long it waits for its
    /// connections to write their Close and hear the reply before it reports the stop
    /// done, so that a process exiting next leaves peers with a Close, not a reset.
    /// Default 5 s.
    pub close_wait: Duration,
    /// The engine sends a WebSocket Ping to a connection it has heard nothing from for
    /// this long. Default 20 s (the published SDKs ping every 20 s themselves).
    pub ping_interval: Duration,
    /// A connection the engine has heard nothing from (not even a Pong) for this long is
    /// dropped, and a worker's functions are unregistered. Must exceed `ping_interval`.
    /// Connections the engine is not reading (a paused channel writer) are exempt while
    /// paused. Default 60 s.
    pub idle_timeout: Duration,
    /// TCP keepalive on accepted sockets: probes start after this much silence. `None`
    /// turns keepalive off. Default 60 s.
    pub tcp_keepalive: Option<Duration>,
    /// Bearer token of `GET /metrics` and `GET /healthz`. Unset, they take the workers'
    /// token (`core.auth_token`) when there is one, and are open otherwise. Default none.
    pub metrics_token: Option<String>,
    /// Worker listeners beyond the main one, each with its own address and policy (for
    /// example an RBAC listener for untrusted workers): the core's listener `i` is
    /// `listeners[i - 1]`, and `core.listeners` is filled from here (leave it empty).
    /// [`crate::server::EngineServer::bind`] binds them all. Default none.
    pub listeners: Vec<ListenerSettings>,
    /// `wss://` on the main listener: its certificate and key files (see
    /// [`crate::engine::tls`]). Default none (`ws://`). Needs the `tls` feature: without
    /// it, a TLS setting is refused at start ([`TlsError::NotBuilt`]), never served as
    /// plain text.
    pub tls: Option<TlsSettings>,
    /// How often the engine looks at the TLS listeners' files (modification time, length,
    /// inode) and reloads those that changed; `None` turns the polling off, leaving
    /// [`EngineHandle::reload_tls`](super::EngineHandle::reload_tls) (SIGHUP in
    /// `iii-engine`). Unused without a TLS listener. Default 10 s.
    pub tls_poll_interval: Option<Duration>,
    /// Log lines of each reason a peer can provoke (a refused request, by its code and
    /// quota; a refused upgrade, by its reason; a failed admission; an invocation timing
    /// out; a worker connecting, announcing itself or leaving; a slow consumer) per
    /// `log_window`. The rest are counted and summarised
    /// in one `log lines suppressed` line per window; metrics still count them all.
    /// Default 10.
    pub log_lines_per_reason: usize,
    /// The window of `log_lines_per_reason`. Default 1 s.
    pub log_window: Duration,
    /// Engine-wide byte budget of what connections hold outside the core's own limits:
    /// the message each is still receiving (frames read, message not yet whole) and the
    /// output its socket has not taken yet (pongs included), over every connection kind.
    /// When a connection's growth does not fit, the largest holder is cut (1008), by fair
    /// shares: the listener holding the most, within it the peer address holding the
    /// most, within it the connection holding the most (the one asking, counted with its
    /// growth, is cut if that is itself). The last `1 / memory_reserve_fraction` is kept
    /// for connections holding at most `memory_small_holding_bytes`, so huge partial
    /// messages cannot starve small ones. Each connection's unsent output is also capped
    /// (at twice the larger of `core.max_control_queue_bytes` and its message limit, plus
    /// `write_buffer_bytes`), beyond which, or when it sends more than `pong_room_bytes`
    /// of pings while reading nothing, it is cut as a slow consumer. Default 512 MiB; at
    /// least 1 MiB.
    pub memory_budget_bytes: usize,
    /// A connection holding at most this many bytes may use the whole memory budget,
    /// reserve included (see `memory_budget_bytes`). Default 256 KiB; at most the budget.
    pub memory_small_holding_bytes: usize,
    /// The memory budget's reserve for connections holding at most
    /// `memory_small_holding_bytes`: one part in this many (see `memory_budget_bytes`).
    /// Default 8 (an eighth); at least 2.
    pub memory_reserve_fraction: usize,
    /// Bytes of pings a peer may send while the engine cannot write to it (each ping
    /// queues a pong the peer is not reading) before it is cut as a slow consumer.
    /// Default 16 KiB.
    pub pong_room_bytes: usize,
}

/// A worker listener beyond the main one.
#[derive(Debug, Clone)]
pub struct ListenerSettings {
    /// Where it listens (`host:port`; port 0 picks a free port).
    pub addr: String,
    /// How it treats the workers that connect to it.
    pub policy: ListenerPolicy,
    /// `wss://` on this listener: its certificate and key files. Default none (`ws://`).
    pub tls: Option<TlsSettings>,
    /// Connections that may be in their upgrade on this listener at once (503 beyond,
    /// closed at once on TLS). Default none: all the other listeners may hold, that is
    /// [`EngineSettings::max_handshakes`] less
    /// [`EngineSettings::reserved_handshakes`] (never more than that).
    pub max_handshakes: Option<usize>,
}

impl ListenerSettings {
    /// A plain (`ws://`) listener on `addr` with `policy`.
    pub fn new(addr: impl Into<String>, policy: ListenerPolicy) -> Self {
        Self {
            addr: addr.into(),
            policy,
            tls: None,
            max_handshakes: None,
        }
    }

    /// This listener, serving `wss://` with `tls`.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            core: EngineConfig::default(),
            handshake_timeout: Duration::from_secs(10),
            max_handshakes: 1024,
            reserved_handshakes: 384,
            max_handshakes_per_ip: 256,
            max_request_head: 16 * 1024,
            read_buffer_bytes: 2 * 1024,
            socket_read_bytes: 64 * 1024,
            write_buffer_bytes: 64 * 1024,
            write_timeout: Duration::from_secs(30),
            close_wait: Duration::from_secs(5),
            ping_interval: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            tcp_keepalive: Some(Duration::from_secs(60)),
            metrics_token: None,
            listeners: Vec::new(),
            tls: None,
            tls_poll_interval: Some(Duration::from_secs(10)),
            log_lines_per_reason: 10,
            log_window: Duration::from_secs(1),
            memory_budget_bytes: 512 << 20,
            memory_small_holding_bytes: 256 * 1024,
            memory_reserve_fraction: 8,
            pong_room_bytes: 16 * 1024,
        }
    }
}

/// Why an engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting cannot work.
    #[error("invalid settings: {0}")]
    Config(#[from] ConfigError),
    /// A transport setting cannot work.
    #[error("invalid settings: {0}")]
    Transport(String),
    /// The operating system's random number generator failed: no key the engine could
    /// mint would be secret, so it does not start.
    #[error("the operating system's random number generator failed: {0}")]
    Randomness(String),
    /// A listener's certificate or key cannot be used (the error names the file), or TLS
    /// is configured in a build without it.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

impl EngineSettings {
    /// Checks that the settings can work together (the core's and the transport's).
    pub fn validate(&self) -> Result<(), StartError> {
        if !self.core.listeners.is_empty() {
            return Err(StartError::Transport(
                "set extra listeners through `listeners` (with their addresses), not `core.listeners`"
                    .to_owned(),
            ));
        }
        self.core_config().validate()?;
        #[cfg(not(feature = "tls"))]
        if let Some(tls) = (0..=self.listeners.len()).find_map(|i| self.listener_tls(i)) {
            return Err(TlsError::NotBuilt {
                path: tls.cert_file.clone(),
            }
            .into());
        }
        let poll = self
            .tls_poll_interval
            .map(|every| ("tls_poll_interval", every));
        let positive = [
            ("handshake_timeout", self.handshake_timeout),
            ("write_timeout", self.write_timeout),
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
        ];
        for (name, value) in positive.into_iter().chain(poll) {
            if value.is_zero() {
                return Err(StartError::Transport(format!(
                    "`{name}` must be greater than zero"
                )));
            }
            if value > iii_core::engine::MAX_TIMEOUT {
                return Err(StartError::Transport(format!(
                    "`{name}` is longer than one year"
                )));
            }
        }
        if self.log_window.is_zero() || self.log_window > iii_core::engine::MAX_TIMEOUT {
            return Err(StartError::Transport(
                "`log_window` must be greater than zero and at most one year".to_owned(),
            ));
        }
        if self.close_wait > iii_core::engine::MAX_TIMEOUT {
            return Err(StartError::Transport(
                "`close_wait` is longer than one year".to_owned(),
            ));
        }
        if self.idle_timeout <= self.ping_interval {
            return Err(StartError::Transport(
                "`idle_timeout` must exceed `ping_interval`".to_owned(),
            ));
        }
        let sizes = [
            ("max_handshakes", self.max_handshakes),
            ("reserved_handshakes", self.reserved_handshakes),
            ("max_handshakes_per_ip", self.max_handshakes_per_ip),
            ("max_request_head", self.max_request_head),
            ("read_buffer_bytes", self.read_buffer_bytes),
            ("socket_read_bytes", self.socket_read_bytes),
            ("write_buffer_bytes", self.write_buffer_bytes),
            ("log_lines_per_reason", self.log_lines_per_reason),
            ("memory_budget_bytes", self.memory_budget_bytes),
            (
                "memory_small_holding_bytes",
                self.memory_small_holding_bytes,
            ),
            ("pong_room_bytes", self.pong_room_bytes),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, value)| *value == 0) {
            return Err(StartError::Transport(format!(
                "`{name}` must be greater than zero"
            )));
        }
        self.validate_slots()?;
        if self.write_buffer_bytes > MAX_BUFFER_BYTES {
            return Err(StartError::Transport(
                "`write_buffer_bytes` is over 1 GiB".to_owned(),
            ));
        }
        if self.memory_budget_bytes < MIN_MEMORY_BUDGET {
            return Err(StartError::Transport(
                "`memory_budget_bytes` is under 1 MiB".to_owned(),
            ));
        }
        if self.memory_small_holding_bytes > self.memory_budget_bytes {
            return Err(StartError::Transport(
                "`memory_small_holding_bytes` is over `memory_budget_bytes`".to_owned(),
            ));
        }
        if self.memory_reserve_fraction < 2 {
            return Err(StartError::Transport(
                "`memory_reserve_fraction` must be at least 2 (a reserve of at most half the \
                 budget)"
                    .to_owned(),
            ));
        }
        if let Some(token) = &self.metrics_token {
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(StartError::Transport(
                    "`metrics_token` must be non-empty and contain no whitespace".to_owned(),
                ));
            }
        }
        Ok(())
    }

    /// The pre-upgrade slots: the other listeners must get some, and none a share of 0.
    fn validate_slots(&self) -> Result<(), StartError> {
        if !self.listeners.is_empty() && self.reserved_handshakes >= self.max_handshakes {
            return Err(StartError::Transport(
                "`reserved_handshakes` must be below `max_handshakes`: the other listeners \
                 would get no slot"
                    .to_owned(),
            ));
        }
        if let Some(listener) = self.listeners.iter().find(|l| l.max_handshakes == Some(0)) {
            return Err(StartError::Transport(format!(
                "listener `{}`: `max_handshakes` must be greater than zero",
                listener.policy.name
            )));
        }
        Ok(())
    }

    /// The core's configuration, with the listeners' policies.
    pub(super) fn core_config(&self) -> EngineConfig {
        let mut core = self.core.clone();
        core.listeners = self.listeners.iter().map(|l| l.policy.clone()).collect();
        core
    }

    /// The policy of listener `listener` (0 is the main one, always trusted).
    pub(crate) fn listener_policy(&self, listener: usize) -> Option<&ListenerPolicy> {
        listener
            .checked_sub(1)
            .and_then(|i| self.listeners.get(i))
            .map(|l| &l.policy)
    }

    /// The TLS settings of listener `listener` (0 is the main one), if it serves TLS.
    pub(crate) fn listener_tls(&self, listener: usize) -> Option<&TlsSettings> {
        match listener.checked_sub(1) {
            None => self.tls.as_ref(),
            Some(i) => self.listeners.get(i).and_then(|l| l.tls.as_ref()),
        }
    }

    /// The token `/metrics` and `/healthz` require, if any.
    pub(super) fn endpoint_token(&self) -> Option<&str> {
        self.metrics_token
            .as_deref()
            .or(self.core.auth_token.as_deref())
    }

    /// How the memory budget is shared out.
    pub(crate) fn memory_policy(&self) -> BudgetPolicy {
        BudgetPolicy {
            limit: self.memory_budget_bytes,
            small_holding: self.memory_small_holding_bytes,
            reserve_fraction: self.memory_reserve_fraction,
            pong_room: self.pong_room_bytes,
        }
    }

    /// The most unsent output a connection whose messages are limited to
    /// `max_message_bytes` may hold before it is cut as a slow consumer (see
    /// [`EngineSettings::memory_budget_bytes`]).
    pub(crate) fn unsent_cap(&self, max_message_bytes: usize) -> usize {
        self.core
            .max_control_queue_bytes
            .max(max_message_bytes)
            .saturating_mul(2)
            .saturating_add(self.write_buffer_bytes)
    }

    pub(super) fn conn_options(&self, accepted: &Accepted) -> ConnOptions {
        ConnOptions {
            read_ahead_bytes: accepted.read_ahead_bytes,
            liveness: Liveness {
                ping_after: Some(self.ping_interval),
                idle_timeout: Some(self.idle_timeout),
            },
        }
    }
}
