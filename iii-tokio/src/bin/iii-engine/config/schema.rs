//! What an `iii-worker-manager` entry's `config:` may hold: the reference's `host`,
//! `port`, `handshake_timeout_ms`, `rbac` and `middleware_function_id`, every
//! `iii-engine` flag under its own name in snake_case, in the flag's unit (`…_secs`,
//! `…_ms`, `…_bytes`), and the per-listener `max_connections_per_ip`,
//! `builtin_calls_per_sec_per_ip` and `builtin_call_burst_per_ip`. Any other key is an error that
//! names it. The main listener's entry takes every setting; the other entries describe
//! further listeners and take only what is per listener (see [`super::listeners`]).

use std::num::NonZeroUsize;
use std::path::PathBuf;

use serde::Deserialize;

/// A setting's values as the command line would spell them.
pub(crate) trait ArgValues {
    /// One string per value (several for a list).
    fn arg_values(&self) -> Vec<String>;
}

macro_rules! impl_arg_values_display {
    ($($ty:ty),*) => {$(
        impl ArgValues for $ty {
            fn arg_values(&self) -> Vec<String> {
                vec![self.to_string()]
            }
        }
    )*};
}
impl_arg_values_display!(usize, u64, NonZeroUsize, String);

impl ArgValues for PathBuf {
    fn arg_values(&self) -> Vec<String> {
        // Read from YAML text, so always UTF-8.
        vec![self.to_string_lossy().into_owned()]
    }
}

impl ArgValues for Vec<String> {
    fn arg_values(&self) -> Vec<String> {
        self.clone()
    }
}

/// Declares the settings of our entry that are `iii-engine` flags: the struct field, the
/// list of keys and the conversion to command-line values come from one list.
macro_rules! manager_config {
    ($($(#[$doc:meta])* $name:ident: $ty:ty,)*) => {
        /// The `config:` mapping of an `iii-worker-manager` entry. Every key may be left
        /// out (the flag's default applies); `null` is the same as leaving it out.
        #[derive(Debug, Default, Clone, PartialEq, Deserialize)]
        #[serde(deny_unknown_fields, rename = "iii-worker-manager config")]
        pub(crate) struct ManagerConfig {
            /// Address to listen on (reference key). Default `127.0.0.1` (the
            /// reference's default is `0.0.0.0`).
            pub(crate) host: Option<String>,
            /// Port to listen on (reference key). Default 49134.
            pub(crate) port: Option<u16>,
            /// Reference key: every call from a worker of this listener goes to this
            /// function instead, which decides what is invoked (listeners with `rbac`).
            pub(crate) middleware_function_id: Option<String>,
            /// Reference key: role-based access control; the listener's workers are
            /// untrusted (see [`super::rbac::RbacEntry`]).
            pub(crate) rbac: Option<super::rbac::RbacEntry>,
            /// Control connections one client address may hold on this listener
            /// (listeners other than the main one; default 16 with `rbac`, none
            /// without).
            pub(crate) max_connections_per_ip: Option<usize>,
            /// Calls of the engine's own functions the workers of one client address
            /// may make on this listener a second, together (listeners other than the
            /// main one; default 100 with `rbac`, no per-address bound without).
            pub(crate) builtin_calls_per_sec_per_ip: Option<usize>,
            /// Of those, how many at once before the rate applies (default 200 with
            /// `rbac`; without, the rate's value).
            pub(crate) builtin_call_burst_per_ip: Option<usize>,
            $($(#[$doc])* pub(crate) $name: Option<$ty>,)*
        }

        /// The keys of [`ManagerConfig`] that are `iii-engine` flags (their clap ids).
        #[cfg(test)]
        pub(crate) const SETTING_KEYS: &[&str] = &[$(stringify!($name)),*];

        impl ManagerConfig {
            /// The flags this entry sets, with their values as the command line would
            /// spell them, in declaration order.
            pub(crate) fn settings(&self) -> Vec<(&'static str, Vec<String>)> {
                let mut settings = Vec::new();
                $(
                    if let Some(value) = &self.$name {
                        settings.push((stringify!($name), value.arg_values()));
                    }
                )*
                settings
            }
        }
    };
}

manager_config! {
    /// `--token` (better: `token_file`, or `${VAR}` substitution).
    token: String,
    /// `--token-file`.
    token_file: PathBuf,
    /// `--allowed-origin`, as a list.
    allowed_origins: Vec<String>,
    /// `--tls-cert-file`: serve `wss://` on this listener (with `tls_key_file`).
    tls_cert_file: PathBuf,
    /// `--tls-key-file`.
    tls_key_file: PathBuf,
    /// `--max-control-message-bytes`.
    max_control_message_bytes: usize,
    /// `--max-control-queue-bytes`.
    max_control_queue_bytes: usize,
    /// `--max-total-control-queue-bytes`.
    max_total_control_queue_bytes: usize,
    /// `--max-telemetry-message-bytes`.
    max_telemetry_message_bytes: usize,
    /// `--send-credit`.
    send_credit: usize,
    /// `--default-channel-buffer`.
    default_channel_buffer: usize,
    /// `--max-channel-buffer`.
    max_channel_buffer: usize,
    /// `--channel-buffer-bytes`.
    channel_buffer_bytes: usize,
    /// `--max-channel-message-bytes`.
    max_channel_message_bytes: usize,
    /// `--read-ahead-bytes`.
    read_ahead_bytes: usize,
    /// `--max-buffered-channel-bytes`.
    max_buffered_channel_bytes: usize,
    /// `--channel-attach-timeout-secs`.
    channel_attach_timeout_secs: u64,
    /// `--orphan-channel-timeout-secs`.
    orphan_channel_timeout_secs: u64,
    /// `--max-channels`.
    max_channels: usize,
    /// `--max-connections`.
    max_connections: usize,
    /// `--max-pending-admissions` (on a further listener: its own share).
    max_pending_admissions: usize,
    /// `--functions-available-delay-ms`.
    functions_available_delay_ms: u64,
    /// `--invocation-timeout-ms` (`null`: none).
    invocation_timeout_ms: u64,
    /// `--max-payload-depth`.
    max_payload_depth: usize,
    /// `--max-list-bytes`.
    max_list_bytes: usize,
    /// `--worker-log-lines-per-second`.
    worker_log_lines_per_second: usize,
    /// `--worker-log-lines-per-second-per-ip`.
    worker_log_lines_per_second_per_ip: usize,
    /// `--worker-log-lines-per-second-total`.
    worker_log_lines_per_second_total: usize,
    /// `--guest-builtin-calls-per-sec`.
    guest_builtin_calls_per_sec: usize,
    /// `--guest-builtin-call-burst`.
    guest_builtin_call_burst: usize,
    /// `--max-worker-log-bytes`.
    max_worker_log_bytes: usize,
    /// `--metrics-function-labels`.
    metrics_function_labels: usize,
    /// `--max-functions-per-worker`.
    max_functions_per_worker: usize,
    /// `--max-trigger-types-per-worker`.
    max_trigger_types_per_worker: usize,
    /// `--max-bindings-per-worker`.
    max_bindings_per_worker: usize,
    /// `--max-engine-bindings-per-worker`.
    max_engine_bindings_per_worker: usize,
    /// `--max-pending-invocations-per-worker`.
    max_pending_invocations_per_worker: usize,
    /// `--max-channels-per-worker`.
    max_channels_per_worker: usize,
    /// `--builtin-calls-per-sec-per-worker`.
    builtin_calls_per_sec_per_worker: usize,
    /// `--builtin-call-burst-per-worker`.
    builtin_call_burst_per_worker: usize,
    /// `--max-registration-bytes`.
    max_registration_bytes: usize,
    /// `--max-registration-bytes-per-worker`.
    max_registration_bytes_per_worker: usize,
    /// `--handshake-timeout-ms` (also a reference key).
    handshake_timeout_ms: u64,
    /// `--max-handshakes` (on a further listener: its own share).
    max_handshakes: usize,
    /// `--reserved-handshakes`.
    reserved_handshakes: usize,
    /// `--max-handshakes-per-ip`.
    max_handshakes_per_ip: usize,
    /// `--max-request-head-bytes`.
    max_request_head_bytes: usize,
    /// `--write-timeout-secs`.
    write_timeout_secs: u64,
    /// `--ping-interval-secs`.
    ping_interval_secs: u64,
    /// `--idle-timeout-secs`.
    idle_timeout_secs: u64,
    /// `--tcp-keepalive-secs` (0: off).
    tcp_keepalive_secs: u64,
    /// `--read-buffer-bytes`.
    read_buffer_bytes: usize,
    /// `--socket-read-bytes`.
    socket_read_bytes: usize,
    /// `--write-buffer-bytes`.
    write_buffer_bytes: usize,
    /// `--memory-budget-bytes`.
    memory_budget_bytes: usize,
    /// `--memory-small-holding-bytes`.
    memory_small_holding_bytes: usize,
    /// `--memory-reserve-fraction`.
    memory_reserve_fraction: usize,
    /// `--pong-room-bytes`.
    pong_room_bytes: usize,
    /// `--metrics-token` (better: `metrics_token_file`).
    metrics_token: String,
    /// `--metrics-token-file`.
    metrics_token_file: PathBuf,
    /// `--drain-timeout-secs`.
    drain_timeout_secs: u64,
    /// `--close-wait-secs`.
    close_wait_secs: u64,
    /// `--tls-poll-secs` (0: off).
    tls_poll_secs: u64,
    /// `--log-lines-per-reason`.
    log_lines_per_reason: usize,
    /// `--log-window-ms`.
    log_window_ms: u64,
    /// `--log-format` (`text` or `json`).
    log_format: String,
    /// `--threads` (`null`: one per core).
    threads: NonZeroUsize,
}
