//! [`WorkerOptions`]: how to reach the engine and who this worker is.

use std::time::Duration;

use super::WorkerConfig;

/// How to reach the engine and who this worker is. Every limit of the worker is here or
/// in [`core`](Self::core) ([`WorkerConfig`]: timeouts, keepalive, windows, backoff).
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The engine URL (`ws://host:port`, or `wss://` with the `tls` feature). `None`:
    /// the `III_URL` environment variable when it is set and not blank, else
    /// [`DEFAULT_URL`](super::DEFAULT_URL).
    pub url: Option<String>,
    /// The worker name announced to the engine. `None`: `III_WORKER_NAME` when set, else
    /// `iii-rs:<pid>` (with `:<n>` for the second and later worker of the process).
    pub name: Option<String>,
    /// The bearer token sent in the upgrade request. `None`: `III_TOKEN` when set and not
    /// blank, else no `Authorization` header.
    pub token: Option<String>,
    /// Extra HTTP headers of every upgrade request (control connection and channel
    /// ends), e.g. for a proxy's authentication. Names and values are checked by
    /// `connect`. Default none.
    pub headers: Vec<(String, String)>,
    /// Deadline of [`Iii::trigger`](super::Iii::trigger) (and of channel creation);
    /// default 30 s. Overrides `core.invocation_timeout`.
    pub invocation_timeout: Duration,
    /// Limits, backoff, keepalive, the unreachable deadline (`connect_timeout`) and the
    /// rest of the identity (namespace, description). The identity's `name`, `runtime`,
    /// `version` and `pid` are set by the SDK.
    pub core: WorkerConfig,
    /// WebSocket read buffer of each connection (control and every channel end), in
    /// bytes: kept for the connection's life and cleared before every read, so it is
    /// what an idle channel end costs. Default 2 KiB (tungstenite's own default, 128 KiB,
    /// cost ~5 % of the CPU of a channel stream).
    pub read_buffer_bytes: usize,
    /// Largest single read from a socket, in bytes. Its buffer exists only while data
    /// arrives (freed whenever the socket has nothing more to read). Default 64 KiB.
    pub socket_read_bytes: usize,
    /// Trusted root certificates (DER) for `wss://`, besides the built-in roots (feature
    /// `tls-native-roots`: the operating system's; `tls-webpki-roots`: the Mozilla set
    /// compiled in). For engines with a certificate from a private CA (a test CA
    /// included): with the `tls` feature alone, these are the only roots trusted. The
    /// engine's certificate must name the host of [`url`](Self::url) (a DNS name or an
    /// IP address). Default none.
    pub tls_root_certificates: Vec<Vec<u8>>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            url: None,
            name: None,
            token: None,
            headers: Vec::new(),
            invocation_timeout: Duration::from_secs(30),
            core: WorkerConfig::default(),
            read_buffer_bytes: 2 * 1024,
            socket_read_bytes: 64 * 1024,
            tls_root_certificates: Vec::new(),
        }
    }
}
