//! The command line of `iii-engine`: every setting is a flag with an `III_ENGINE_*`
//! environment variable, and its default comes from `EngineSettings::default()`.

use std::path::PathBuf;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{ArgMatches, Parser};
use iii_tokio::engine::{
    EngineSettings, ListenerPolicy, ListenerSettings, RateLimit, Rbac, TlsSettings, DEFAULT_ADDR,
    DEFAULT_GUEST_BUILTIN_CALLS_PER_IP,
};

/// An iii engine: workers connect at ws://ADDR/ (wss:// with --tls-cert-file and
/// --tls-key-file), channel ends at ws://ADDR/ws/channels/….
///
/// Every limit below is enforced per connection or per worker so that no peer can take
/// the engine down; refusals are answered with typed errors and logged.
///
/// Every setting can also come from a configuration file in the reference iii engine's
/// format (--config): a flag wins over its III_ENGINE_* variable, which wins over the
/// file, which wins over the default.
#[derive(Debug, Clone, PartialEq, Parser)]
#[command(
    name = "iii-engine",
    version,
    after_help = "Logging: lines go to standard error, coloured only when it is a terminal. \
RUST_LOG chooses what is logged (default `info`; for example `RUST_LOG=debug`, or \
`RUST_LOG=info,iii_driver=debug` for one crate); --log-format chooses text or JSON lines."
)]
pub(crate) struct Args {
    /// Address to listen on (in a configuration file: `host` and `port`).
    #[arg(long, env = "III_ENGINE_ADDR", default_value = DEFAULT_ADDR)]
    pub(crate) addr: String,
    /// Read settings from this YAML file (the reference iii engine's `config.yaml`
    /// format): the `iii-worker-manager` entry's `config:` takes `host`, `port` and every
    /// flag below in snake_case (`max_connections: 1000`, `allowed_origins: [...]`);
    /// `${VAR}` and `${VAR:default}` are replaced by environment variables; entries of
    /// other iii workers are skipped. Flags and III_ENGINE_* variables override it.
    #[arg(long, env = "III_ENGINE_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Print the effective configuration (file, environment and flags applied; secrets
    /// redacted) in the configuration file's format, and exit. Settings that cannot work
    /// are reported instead, with status 2.
    #[arg(long)]
    pub(crate) print_config: bool,
    // Secrets are marked `hide_env_values`: --print-config redacts every such setting.
    /// Require `Authorization: Bearer <TOKEN>` on worker control connections (401
    /// otherwise). Visible to other users in `ps` when given as a flag: prefer
    /// --token-file or III_ENGINE_TOKEN.
    #[arg(
        long,
        env = "III_ENGINE_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub(crate) token: Option<String>,
    /// Read the token from this file (surrounding whitespace is ignored).
    #[arg(long, env = "III_ENGINE_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// An origin (`scheme://host[:port]`) whose web pages may connect; repeatable. Upgrades
    /// that carry any other `Origin` header get 403.
    #[arg(
        long = "allowed-origin",
        env = "III_ENGINE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub(crate) allowed_origins: Vec<String>,
    /// Serve wss:// (TLS) with this certificate chain: a PEM file, leaf certificate
    /// first. Needs --tls-key-file. Read again on SIGHUP and when the file changes
    /// (checked every --tls-poll-secs); a file that cannot be used then keeps the
    /// previous certificate in use.
    #[arg(long, env = "III_ENGINE_TLS_CERT_FILE", value_name = "FILE")]
    pub(crate) tls_cert_file: Option<PathBuf>,
    /// The private key of --tls-cert-file: a PEM file (PKCS#8, PKCS#1 RSA or SEC1 EC).
    #[arg(long, env = "III_ENGINE_TLS_KEY_FILE", value_name = "FILE")]
    pub(crate) tls_key_file: Option<PathBuf>,
    /// Largest control message from a worker, in bytes (1009 beyond).
    #[arg(long, env = "III_ENGINE_MAX_CONTROL_MESSAGE_BYTES", default_value_t = defaults().core.max_control_message_bytes)]
    pub(crate) max_control_message_bytes: usize,
    /// Bytes queued or in flight to one worker before it is dropped as a slow consumer.
    #[arg(long, env = "III_ENGINE_MAX_CONTROL_QUEUE_BYTES", default_value_t = defaults().core.max_control_queue_bytes)]
    pub(crate) max_control_queue_bytes: usize,
    /// Bytes queued or in flight to all workers together; the worker whose message
    /// would pass it is dropped as a slow consumer.
    #[arg(long, env = "III_ENGINE_MAX_TOTAL_CONTROL_QUEUE_BYTES", default_value_t = defaults().core.max_total_control_queue_bytes)]
    pub(crate) max_total_control_queue_bytes: usize,
    /// Largest message on a telemetry (/otel) connection, in bytes (1009 beyond).
    #[arg(long, env = "III_ENGINE_MAX_TELEMETRY_MESSAGE_BYTES", default_value_t = defaults().core.max_telemetry_message_bytes)]
    pub(crate) max_telemetry_message_bytes: usize,
    /// Messages in flight per connection before the engine waits for the socket.
    #[arg(long, env = "III_ENGINE_SEND_CREDIT", default_value_t = defaults().core.send_credit)]
    pub(crate) send_credit: usize,
    /// Channel buffer in messages when a channel is created without `buffer_size`.
    #[arg(long, env = "III_ENGINE_DEFAULT_CHANNEL_BUFFER", default_value_t = defaults().core.default_channel_buffer)]
    pub(crate) default_channel_buffer: usize,
    /// Largest channel `buffer_size` (larger requests are clamped).
    #[arg(long, env = "III_ENGINE_MAX_CHANNEL_BUFFER", default_value_t = defaults().core.max_channel_buffer)]
    pub(crate) max_channel_buffer: usize,
    /// Bytes the engine may hold for one channel, read-ahead included.
    #[arg(long, env = "III_ENGINE_CHANNEL_BUFFER_BYTES", default_value_t = defaults().core.channel_buffer_bytes)]
    pub(crate) channel_buffer_bytes: usize,
    /// Largest single channel message, in bytes (writer 1009, reader 1011 beyond).
    #[arg(long, env = "III_ENGINE_MAX_CHANNEL_MESSAGE_BYTES", default_value_t = defaults().core.max_channel_message_bytes)]
    pub(crate) max_channel_message_bytes: usize,
    /// Bytes read from a socket ahead of the engine, per connection.
    #[arg(long, env = "III_ENGINE_READ_AHEAD_BYTES", default_value_t = defaults().core.read_ahead_bytes)]
    pub(crate) read_ahead_bytes: usize,
    /// Bytes all channels together may hold; writers pause beyond it.
    #[arg(long, env = "III_ENGINE_MAX_BUFFERED_CHANNEL_BYTES", default_value_t = defaults().core.max_buffered_channel_bytes)]
    pub(crate) max_buffered_channel_bytes: usize,
    /// Seconds a channel waits for an end that never attaches before it expires.
    #[arg(long, env = "III_ENGINE_CHANNEL_ATTACH_TIMEOUT_SECS", default_value_t = defaults().core.channel_attach_timeout.as_secs())]
    pub(crate) channel_attach_timeout_secs: u64,
    /// Seconds the half-attached channels of a disconnected worker live on.
    #[arg(long, env = "III_ENGINE_ORPHAN_CHANNEL_TIMEOUT_SECS", default_value_t = defaults().core.orphan_channel_timeout.as_secs())]
    pub(crate) orphan_channel_timeout_secs: u64,
    /// Channels that may exist at once.
    #[arg(long, env = "III_ENGINE_MAX_CHANNELS", default_value_t = defaults().core.max_channels)]
    pub(crate) max_channels: usize,
    /// Connections that may exist at once (503 beyond).
    #[arg(long, env = "III_ENGINE_MAX_CONNECTIONS", default_value_t = defaults().core.max_connections)]
    pub(crate) max_connections: usize,
    /// Upgrades that may wait for an RBAC listener's authentication function at once,
    /// over every listener (503 beyond).
    #[arg(long, env = "III_ENGINE_MAX_PENDING_ADMISSIONS", default_value_t = defaults().core.max_pending_admissions)]
    pub(crate) max_pending_admissions: usize,
    /// Milliseconds between a change of the function set and its notification.
    #[arg(long, env = "III_ENGINE_FUNCTIONS_AVAILABLE_DELAY_MS", default_value_t = defaults().core.functions_available_delay.as_millis() as u64)]
    pub(crate) functions_available_delay_ms: u64,
    /// Answer an invocation the called worker has not answered within this many
    /// milliseconds with an `invocation_timeout` error (default: no engine-side timeout).
    #[arg(long, env = "III_ENGINE_INVOCATION_TIMEOUT_MS")]
    pub(crate) invocation_timeout_ms: Option<u64>,
    /// Deepest nesting of arrays and objects accepted in a payload.
    #[arg(long, env = "III_ENGINE_MAX_PAYLOAD_DEPTH", default_value_t = defaults().core.max_payload_depth)]
    pub(crate) max_payload_depth: usize,
    /// Largest answer of a listing built-in, in bytes (longer ones are paged).
    #[arg(long, env = "III_ENGINE_MAX_LIST_BYTES", default_value_t = defaults().core.max_list_bytes)]
    pub(crate) max_list_bytes: usize,
    /// Lines one worker may log through `engine::log::*` per second (beyond: dropped).
    #[arg(long, env = "III_ENGINE_WORKER_LOG_LINES_PER_SECOND", default_value_t = defaults().core.worker_log_lines_per_second)]
    pub(crate) worker_log_lines_per_second: usize,
    /// Lines all the workers of one client address (IPv6 by /64) may log through
    /// `engine::log::*` per second together (beyond: dropped, counted and summarised).
    #[arg(long, env = "III_ENGINE_WORKER_LOG_LINES_PER_SECOND_PER_IP", default_value_t = defaults().core.worker_log_lines_per_second_per_ip)]
    pub(crate) worker_log_lines_per_second_per_ip: usize,
    /// Lines all workers together may log through `engine::log::*` per second (beyond:
    /// dropped, counted and summarised).
    #[arg(long, env = "III_ENGINE_WORKER_LOG_LINES_PER_SECOND_TOTAL", default_value_t = defaults().core.worker_log_lines_per_second_total)]
    pub(crate) worker_log_lines_per_second_total: usize,
    /// Calls of the engine's own functions all untrusted (RBAC listener) workers
    /// together may make a second, sustained (beyond: `rate_limited`).
    #[arg(long, env = "III_ENGINE_GUEST_BUILTIN_CALLS_PER_SEC", default_value_t = defaults().core.guest_builtin_calls.per_second)]
    pub(crate) guest_builtin_calls_per_sec: usize,
    /// Calls of the engine's own functions all untrusted workers together may make at
    /// once before the per-second rate applies.
    #[arg(long, env = "III_ENGINE_GUEST_BUILTIN_CALL_BURST", default_value_t = defaults().core.guest_builtin_calls.burst)]
    pub(crate) guest_builtin_call_burst: usize,
    /// Longest line a worker may log through `engine::log::*`, in bytes (cut beyond).
    #[arg(long, env = "III_ENGINE_MAX_WORKER_LOG_BYTES", default_value_t = defaults().core.max_worker_log_bytes)]
    pub(crate) max_worker_log_bytes: usize,
    /// Functions that get their own label in the per-function call metrics
    /// (`iii_function_calls_total`, the first ones called); the rest are counted under
    /// `function="other"`.
    #[arg(long, env = "III_ENGINE_METRICS_FUNCTION_LABELS", default_value_t = defaults().core.metrics_function_labels)]
    pub(crate) metrics_function_labels: usize,
    /// Functions one worker may register.
    #[arg(long, env = "III_ENGINE_MAX_FUNCTIONS_PER_WORKER", default_value_t = defaults().core.quotas.functions)]
    pub(crate) max_functions_per_worker: usize,
    /// Trigger types one worker may register.
    #[arg(long, env = "III_ENGINE_MAX_TRIGGER_TYPES_PER_WORKER", default_value_t = defaults().core.quotas.trigger_types)]
    pub(crate) max_trigger_types_per_worker: usize,
    /// Trigger bindings one worker may hold.
    #[arg(long, env = "III_ENGINE_MAX_BINDINGS_PER_WORKER", default_value_t = defaults().core.quotas.bindings)]
    pub(crate) max_bindings_per_worker: usize,
    /// Bindings one worker may hold on the engine's own trigger types.
    #[arg(long, env = "III_ENGINE_MAX_ENGINE_BINDINGS_PER_WORKER", default_value_t = defaults().core.quotas.engine_bindings)]
    pub(crate) max_engine_bindings_per_worker: usize,
    /// Unanswered invocations one worker may have started.
    #[arg(long, env = "III_ENGINE_MAX_PENDING_INVOCATIONS_PER_WORKER", default_value_t = defaults().core.quotas.pending_invocations)]
    pub(crate) max_pending_invocations_per_worker: usize,
    /// Live channels one worker may have created.
    #[arg(long, env = "III_ENGINE_MAX_CHANNELS_PER_WORKER", default_value_t = defaults().core.quotas.channels)]
    pub(crate) max_channels_per_worker: usize,
    /// Calls of the engine's own functions one worker may make a second, sustained
    /// (beyond: `rate_limited`).
    #[arg(long, env = "III_ENGINE_BUILTIN_CALLS_PER_SEC_PER_WORKER", default_value_t = defaults().core.quotas.builtin_calls_per_sec)]
    pub(crate) builtin_calls_per_sec_per_worker: usize,
    /// Calls of the engine's own functions one worker may make at once before the
    /// per-second rate applies.
    #[arg(long, env = "III_ENGINE_BUILTIN_CALL_BURST_PER_WORKER", default_value_t = defaults().core.quotas.builtin_call_burst)]
    pub(crate) builtin_call_burst_per_worker: usize,
    /// Bytes of one registration's payloads (metadata, formats, configs).
    #[arg(long, env = "III_ENGINE_MAX_REGISTRATION_BYTES", default_value_t = defaults().core.quotas.registration_bytes)]
    pub(crate) max_registration_bytes: usize,
    /// Bytes of all of one worker's registrations.
    #[arg(long, env = "III_ENGINE_MAX_REGISTRATION_BYTES_PER_WORKER", default_value_t = defaults().core.quotas.total_registration_bytes)]
    pub(crate) max_registration_bytes_per_worker: usize,
    /// Milliseconds a new TCP connection has to send its upgrade request.
    #[arg(long, env = "III_ENGINE_HANDSHAKE_TIMEOUT_MS", default_value_t = defaults().handshake_timeout.as_millis() as u64)]
    pub(crate) handshake_timeout_ms: u64,
    /// Connections that may be in their HTTP upgrade at once (503 beyond).
    #[arg(long, env = "III_ENGINE_MAX_HANDSHAKES", default_value_t = defaults().max_handshakes)]
    pub(crate) max_handshakes: usize,
    /// Of --max-handshakes, how many the main listener keeps for itself: the other
    /// listeners together never hold more than the rest.
    #[arg(long, env = "III_ENGINE_RESERVED_HANDSHAKES", default_value_t = defaults().reserved_handshakes)]
    pub(crate) reserved_handshakes: usize,
    /// Connections one client address may have in their HTTP upgrade at once, over every
    /// listener (503 beyond).
    #[arg(long, env = "III_ENGINE_MAX_HANDSHAKES_PER_IP", default_value_t = defaults().max_handshakes_per_ip)]
    pub(crate) max_handshakes_per_ip: usize,
    /// Largest HTTP upgrade request head, in bytes (431 beyond).
    #[arg(long, env = "III_ENGINE_MAX_REQUEST_HEAD_BYTES", default_value_t = defaults().max_request_head)]
    pub(crate) max_request_head_bytes: usize,
    /// Seconds a peer may accept no bytes while the engine writes to it.
    #[arg(long, env = "III_ENGINE_WRITE_TIMEOUT_SECS", default_value_t = defaults().write_timeout.as_secs())]
    pub(crate) write_timeout_secs: u64,
    /// Seconds of silence after which the engine pings a connection.
    #[arg(long, env = "III_ENGINE_PING_INTERVAL_SECS", default_value_t = defaults().ping_interval.as_secs())]
    pub(crate) ping_interval_secs: u64,
    /// Seconds of silence (pongs included) after which a connection is dropped.
    #[arg(long, env = "III_ENGINE_IDLE_TIMEOUT_SECS", default_value_t = defaults().idle_timeout.as_secs())]
    pub(crate) idle_timeout_secs: u64,
    /// Seconds of silence before TCP keepalive probes start (0 turns keepalive off).
    #[arg(long, env = "III_ENGINE_TCP_KEEPALIVE_SECS", default_value_t = defaults().tcp_keepalive.map_or(0, |d| d.as_secs()))]
    pub(crate) tcp_keepalive_secs: u64,
    /// WebSocket read buffer per connection, in bytes: what an idle connection keeps.
    #[arg(long, env = "III_ENGINE_READ_BUFFER_BYTES", default_value_t = defaults().read_buffer_bytes)]
    pub(crate) read_buffer_bytes: usize,
    /// Largest single socket read, in bytes (its buffer exists only while data arrives).
    #[arg(long, env = "III_ENGINE_SOCKET_READ_BYTES", default_value_t = defaults().socket_read_bytes)]
    pub(crate) socket_read_bytes: usize,
    /// WebSocket write buffer per connection, in bytes.
    #[arg(long, env = "III_ENGINE_WRITE_BUFFER_BYTES", default_value_t = defaults().write_buffer_bytes)]
    pub(crate) write_buffer_bytes: usize,
    /// Engine-wide bytes of messages being received and output not yet taken by the
    /// sockets (pongs included), over every connection; growth beyond it is cut (1008).
    #[arg(long, env = "III_ENGINE_MEMORY_BUDGET_BYTES", default_value_t = defaults().memory_budget_bytes)]
    pub(crate) memory_budget_bytes: usize,
    /// Connections holding at most this many bytes may use the memory budget's reserve.
    #[arg(long, env = "III_ENGINE_MEMORY_SMALL_HOLDING_BYTES", default_value_t = defaults().memory_small_holding_bytes)]
    pub(crate) memory_small_holding_bytes: usize,
    /// The memory budget's reserve for small holdings: one part in this many (at least 2).
    #[arg(long, env = "III_ENGINE_MEMORY_RESERVE_FRACTION", default_value_t = defaults().memory_reserve_fraction)]
    pub(crate) memory_reserve_fraction: usize,
    /// Bytes of pings a peer may send while reading nothing (each queues a pong) before it
    /// is cut as a slow consumer.
    #[arg(long, env = "III_ENGINE_PONG_ROOM_BYTES", default_value_t = defaults().pong_room_bytes)]
    pub(crate) pong_room_bytes: usize,
    /// Bearer token of GET /metrics and GET /healthz (default: the workers' token, if
    /// any; otherwise they are open).
    #[arg(
        long,
        env = "III_ENGINE_METRICS_TOKEN",
        hide_env_values = true,
        conflicts_with = "metrics_token_file"
    )]
    pub(crate) metrics_token: Option<String>,
    /// Read the metrics token from this file.
    #[arg(long, env = "III_ENGINE_METRICS_TOKEN_FILE")]
    pub(crate) metrics_token_file: Option<PathBuf>,
    /// Seconds a SIGTERM/SIGINT lets in-flight invocations finish and open channels
    /// drain (new workers get 503) before what is left is closed with 1001; a second
    /// signal stops at once.
    #[arg(long, env = "III_ENGINE_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    pub(crate) drain_timeout_secs: u64,
    /// Seconds a stopping engine waits, after closing its connections, for their
    /// closing handshakes (so peers see a Close, not a reset) before it exits; 0 does
    /// not wait.
    #[arg(long, env = "III_ENGINE_CLOSE_WAIT_SECS", default_value_t = defaults().close_wait.as_secs())]
    pub(crate) close_wait_secs: u64,
    /// Seconds between looks at the TLS certificate and key files, reloaded when they
    /// changed (0 turns the polling off; SIGHUP still reloads).
    #[arg(long, env = "III_ENGINE_TLS_POLL_SECS", default_value_t = defaults().tls_poll_interval.map_or(0, |d| d.as_secs()))]
    pub(crate) tls_poll_secs: u64,
    /// Log lines of each reason a peer can provoke (a refused request, by code and
    /// quota; a failed admission; a timed-out invocation; a worker connecting or
    /// leaving; a slow consumer) per --log-window-ms; the rest are counted in one
    /// summary line per window.
    #[arg(long, env = "III_ENGINE_LOG_LINES_PER_REASON", default_value_t = defaults().log_lines_per_reason)]
    pub(crate) log_lines_per_reason: usize,
    /// The window of --log-lines-per-reason, in milliseconds.
    #[arg(long, env = "III_ENGINE_LOG_WINDOW_MS", default_value_t = u64::try_from(defaults().log_window.as_millis()).unwrap_or(u64::MAX))]
    pub(crate) log_window_ms: u64,
    /// How log lines are written to standard error: `text` (for people; coloured only
    /// on a terminal) or `json` (one JSON object per line, for a log collector). What is
    /// logged is chosen by RUST_LOG.
    #[arg(long, env = "III_ENGINE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// Also serve untrusted workers (RBAC) on this address, for example
    /// 127.0.0.1:49135: they may call only what --rbac-expose (or the authentication
    /// function's answer) allows, see only that, and get stricter per-worker limits. For
    /// more listeners, or registration hooks, use --config.
    #[arg(long, env = "III_ENGINE_RBAC_ADDR")]
    pub(crate) rbac_addr: Option<String>,
    /// A function on a trusted worker that admits each untrusted worker: it gets
    /// `{headers, query_params, cookies, ip_address}` and answers an AuthResult (401 on an
    /// error or no answer in time). Without it every connection is admitted.
    #[arg(long, env = "III_ENGINE_RBAC_AUTH_FUNCTION", requires = "rbac_addr")]
    pub(crate) rbac_auth_function: Option<String>,
    /// What untrusted workers may call; repeatable: an id pattern (`api::*`, or
    /// `match("api::*")`) or `metadata.KEY=VALUE` (VALUE as JSON, e.g. `true`).
    #[arg(
        long = "rbac-expose",
        env = "III_ENGINE_RBAC_EXPOSE",
        value_delimiter = ',',
        requires = "rbac_addr"
    )]
    pub(crate) rbac_expose: Vec<String>,
    /// A function every call of an untrusted worker goes to instead, with
    /// `{function_id, payload, context}`; it decides what is invoked.
    #[arg(
        long,
        env = "III_ENGINE_RBAC_MIDDLEWARE_FUNCTION",
        requires = "rbac_addr"
    )]
    pub(crate) rbac_middleware_function: Option<String>,
    /// An origin whose web pages may connect to the untrusted listener; repeatable
    /// (default: the --allowed-origin list).
    #[arg(
        long = "rbac-allowed-origin",
        env = "III_ENGINE_RBAC_ALLOWED_ORIGINS",
        value_delimiter = ',',
        requires = "rbac_addr"
    )]
    pub(crate) rbac_allowed_origins: Vec<String>,
    /// Control connections one client address may hold on the untrusted listener (503
    /// beyond).
    #[arg(
        long,
        env = "III_ENGINE_RBAC_MAX_CONNECTIONS_PER_IP",
        default_value_t = 16
    )]
    pub(crate) rbac_max_connections_per_ip: usize,
    /// Calls of the engine's own functions the workers of one client address may make on
    /// the untrusted listener a second, together (beyond: `rate_limited`).
    #[arg(
        long,
        env = "III_ENGINE_RBAC_BUILTIN_CALLS_PER_SEC_PER_IP",
        default_value_t = DEFAULT_GUEST_BUILTIN_CALLS_PER_IP.per_second
    )]
    pub(crate) rbac_builtin_calls_per_sec_per_ip: usize,
    /// Calls of the engine's own functions the workers of one client address may make on
    /// the untrusted listener at once before the per-second rate applies.
    #[arg(
        long,
        env = "III_ENGINE_RBAC_BUILTIN_CALL_BURST_PER_IP",
        default_value_t = DEFAULT_GUEST_BUILTIN_CALLS_PER_IP.burst
    )]
    pub(crate) rbac_builtin_call_burst_per_ip: usize,
    /// Connections that may be in their HTTP upgrade on the untrusted listener at once
    /// (default: --max-handshakes less --reserved-handshakes).
    #[arg(long, env = "III_ENGINE_RBAC_MAX_HANDSHAKES", requires = "rbac_addr")]
    pub(crate) rbac_max_handshakes: Option<usize>,
    /// Upgrades that may wait for the untrusted listener's authentication function at
    /// once (default: --max-pending-admissions).
    #[arg(
        long,
        env = "III_ENGINE_RBAC_MAX_PENDING_ADMISSIONS",
        requires = "rbac_addr"
    )]
    pub(crate) rbac_max_pending_admissions: Option<usize>,
    /// Milliseconds the authentication function may take.
    #[arg(long, env = "III_ENGINE_RBAC_HOOK_TIMEOUT_MS", default_value_t = 5000)]
    pub(crate) rbac_hook_timeout_ms: u64,
    /// Serve wss:// on the untrusted listener with this certificate chain (PEM, leaf
    /// first); needs --rbac-tls-key-file. Reloaded as --tls-cert-file is.
    #[arg(
        long,
        env = "III_ENGINE_RBAC_TLS_CERT_FILE",
        value_name = "FILE",
        requires = "rbac_addr"
    )]
    pub(crate) rbac_tls_cert_file: Option<PathBuf>,
    /// The private key of --rbac-tls-cert-file (PEM).
    #[arg(
        long,
        env = "III_ENGINE_RBAC_TLS_KEY_FILE",
        value_name = "FILE",
        requires = "rbac_addr"
    )]
    pub(crate) rbac_tls_key_file: Option<PathBuf>,
    /// Runtime threads. 1 runs everything on one thread (lowest call latency: no
    /// cross-thread wake-ups); more spread channel streams over cores. Default: one per
    /// core.
    #[arg(long, env = "III_ENGINE_THREADS")]
    pub(crate) threads: Option<std::num::NonZeroUsize>,
}

/// How the engine writes its log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line of text per event, for people.
    Text,
    /// One JSON object per event and line, for log collectors.
    Json,
}

/// The documented defaults, from the one place that defines them.
fn defaults() -> EngineSettings {
    EngineSettings::default()
}

/// A setting that cannot be used; the binary exits with status 2.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArgsError {
    /// The token is empty or blank.
    #[error("the token is empty: give a non-blank token, or none to run without auth")]
    BlankToken,
    /// An `--rbac-expose` value that is not a filter.
    #[error("--rbac-expose {value:?}: {why}")]
    BadExpose {
        /// The value.
        value: String,
        /// Why.
        why: String,
    },
    /// One of a certificate and key pair without the other.
    #[error("give both --{flags}-cert-file and --{flags}-key-file (TLS), or neither")]
    TlsPair {
        /// `tls` or `rbac-tls`.
        flags: &'static str,
    },
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {error}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

impl Args {
    /// The token, from the flag, the environment or the file; a blank one is an error.
    pub(crate) fn token(&self) -> Result<Option<String>, ArgsError> {
        secret(&self.token, &self.token_file)
    }

    /// The metrics token, from the flag, the environment or the file.
    pub(crate) fn metrics_token(&self) -> Result<Option<String>, ArgsError> {
        secret(&self.metrics_token, &self.metrics_token_file)
    }

    /// The main listener's TLS files, if any (both or neither).
    pub(crate) fn tls(&self) -> Result<Option<TlsSettings>, ArgsError> {
        tls_pair(&self.tls_cert_file, &self.tls_key_file, "tls")
    }
}

/// A certificate and key file pair: both or neither.
fn tls_pair(
    cert: &Option<PathBuf>,
    key: &Option<PathBuf>,
    flags: &'static str,
) -> Result<Option<TlsSettings>, ArgsError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some(TlsSettings::new(cert, key))),
        (None, None) => Ok(None),
        _ => Err(ArgsError::TlsPair { flags }),
    }
}

/// A secret given directly or in a file (surrounding whitespace ignored); a blank one is
/// an error.
fn secret(value: &Option<String>, file: &Option<PathBuf>) -> Result<Option<String>, ArgsError> {
    let token = match (value, file) {
        (Some(token), _) => Some(token.clone()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|error| ArgsError::TokenFile {
                    path: path.clone(),
                    error,
                })?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    match token {
        Some(token) if token.trim().is_empty() => Err(ArgsError::BlankToken),
        other => Ok(other),
    }
}

impl Args {
    /// The settings these flags describe (checked by `EngineSettings::validate`).
    pub(crate) fn settings(&self, token: Option<String>) -> EngineSettings {
        let mut settings = EngineSettings::default();
        let core = &mut settings.core;
        core.max_control_message_bytes = self.max_control_message_bytes;
        core.max_control_queue_bytes = self.max_control_queue_bytes;
        core.max_total_control_queue_bytes = self.max_total_control_queue_bytes;
        core.max_telemetry_message_bytes = self.max_telemetry_message_bytes;
        core.send_credit = self.send_credit;
        core.default_channel_buffer = self.default_channel_buffer;
        core.max_channel_buffer = self.max_channel_buffer;
        core.channel_buffer_bytes = self.channel_buffer_bytes;
        core.max_channel_message_bytes = self.max_channel_message_bytes;
        core.read_ahead_bytes = self.read_ahead_bytes;
        core.max_buffered_channel_bytes = self.max_buffered_channel_bytes;
        core.channel_attach_timeout = Duration::from_secs(self.channel_attach_timeout_secs);
        core.orphan_channel_timeout = Duration::from_secs(self.orphan_channel_timeout_secs);
        core.max_channels = self.max_channels;
        core.max_connections = self.max_connections;
        core.max_pending_admissions = self.max_pending_admissions;
        core.auth_token = token;
        core.allowed_origins = self.allowed_origins.clone();
        core.functions_available_delay = Duration::from_millis(self.functions_available_delay_ms);
        core.invocation_timeout = self.invocation_timeout_ms.map(Duration::from_millis);
        core.max_payload_depth = self.max_payload_depth;
        core.max_list_bytes = self.max_list_bytes;
        core.worker_log_lines_per_second = self.worker_log_lines_per_second;
        core.max_worker_log_bytes = self.max_worker_log_bytes;
        core.worker_log_lines_per_second_per_ip = self.worker_log_lines_per_second_per_ip;
        core.worker_log_lines_per_second_total = self.worker_log_lines_per_second_total;
        core.guest_builtin_calls = RateLimit::new(
            self.guest_builtin_calls_per_sec,
            self.guest_builtin_call_burst,
        );
        core.metrics_function_labels = self.metrics_function_labels;
        let quotas = &mut core.quotas;
        quotas.functions = self.max_functions_per_worker;
        quotas.trigger_types = self.max_trigger_types_per_worker;
        quotas.bindings = self.max_bindings_per_worker;
        quotas.engine_bindings = self.max_engine_bindings_per_worker;
        quotas.pending_invocations = self.max_pending_invocations_per_worker;
        quotas.channels = self.max_channels_per_worker;
        quotas.builtin_calls_per_sec = self.builtin_calls_per_sec_per_worker;
        quotas.builtin_call_burst = self.builtin_call_burst_per_worker;
        quotas.registration_bytes = self.max_registration_bytes;
        quotas.total_registration_bytes = self.max_registration_bytes_per_worker;
        settings.handshake_timeout = Duration::from_millis(self.handshake_timeout_ms);
        settings.max_handshakes = self.max_handshakes;
        settings.reserved_handshakes = self.reserved_handshakes;
        settings.max_handshakes_per_ip = self.max_handshakes_per_ip;
        settings.max_request_head = self.max_request_head_bytes;
        settings.write_timeout = Duration::from_secs(self.write_timeout_secs);
        settings.ping_interval = Duration::from_secs(self.ping_interval_secs);
        settings.idle_timeout = Duration::from_secs(self.idle_timeout_secs);
        settings.tcp_keepalive =
            (self.tcp_keepalive_secs > 0).then(|| Duration::from_secs(self.tcp_keepalive_secs));
        settings.read_buffer_bytes = self.read_buffer_bytes;
        settings.socket_read_bytes = self.socket_read_bytes;
        settings.write_buffer_bytes = self.write_buffer_bytes;
        settings.memory_budget_bytes = self.memory_budget_bytes;
        settings.memory_small_holding_bytes = self.memory_small_holding_bytes;
        settings.memory_reserve_fraction = self.memory_reserve_fraction;
        settings.pong_room_bytes = self.pong_room_bytes;
        settings.close_wait = Duration::from_secs(self.close_wait_secs);
        settings.log_lines_per_reason = self.log_lines_per_reason;
        settings.log_window = Duration::from_millis(self.log_window_ms);
        settings.tls_poll_interval =
            (self.tls_poll_secs > 0).then(|| Duration::from_secs(self.tls_poll_secs));
        settings
    }

    /// The untrusted listener the `--rbac-*` flags describe, if any.
    pub(crate) fn rbac_listener(&self) -> Result<Option<ListenerSettings>, ArgsError> {
        let Some(addr) = &self.rbac_addr else {
            return Ok(None);
        };
        let expose_functions = self
            .rbac_expose
            .iter()
            .map(|value| {
                crate::config::flag_filter(value).map_err(|why| ArgsError::BadExpose {
                    value: value.clone(),
                    why,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rbac = Rbac {
            auth_function_id: self.rbac_auth_function.clone(),
            hook_timeout: Duration::from_millis(self.rbac_hook_timeout_ms),
            expose_functions,
            ..Rbac::default()
        };
        let mut policy = ListenerPolicy::untrusted("rbac", rbac);
        policy.middleware_function_id = self.rbac_middleware_function.clone();
        policy.max_connections_per_ip = Some(self.rbac_max_connections_per_ip);
        policy.builtin_calls_per_ip = Some(RateLimit::new(
            self.rbac_builtin_calls_per_sec_per_ip,
            self.rbac_builtin_call_burst_per_ip,
        ));
        policy.max_pending_admissions = self.rbac_max_pending_admissions;
        if !self.rbac_allowed_origins.is_empty() {
            policy.allowed_origins = Some(self.rbac_allowed_origins.clone());
        }
        let mut listener = ListenerSettings::new(addr.clone(), policy);
        listener.max_handshakes = self.rbac_max_handshakes;
        listener.tls = tls_pair(
            &self.rbac_tls_cert_file,
            &self.rbac_tls_key_file,
            "rbac-tls",
        )?;
        Ok(Some(listener))
    }

    /// How long a first SIGTERM/SIGINT drains.
    pub(crate) fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}

/// True when the token was typed on the command line (and so is visible in `ps`).
pub(crate) fn token_on_command_line(matches: &ArgMatches) -> bool {
    matches.value_source("token") == Some(ValueSource::CommandLine)
}
