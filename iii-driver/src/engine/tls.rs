//! Serving `wss://`: a listener with [`TlsSettings`] terminates TLS (rustls, `ring`
//! provider, TLS 1.2 and 1.3) before it reads the HTTP upgrade, so every route on it (the
//! control connection, channel ends, `/otel`, `/metrics`, `/healthz`) is served over TLS.
//! Channel ends open at the engine URL their worker was given, so a channel created
//! through a TLS listener is streamed through that listener, over TLS, too.
//!
//! The certificate and key are PEM files read at start (a file that cannot be used is a
//! [`StartError::Tls`](super::StartError::Tls) naming it). They can be replaced while the
//! engine runs:
//!
//! * [`EngineHandle::reload_tls`](super::EngineHandle::reload_tls) reads every TLS
//!   listener's files again at once (what `iii-engine` does on SIGHUP);
//! * every [`EngineSettings::tls_poll_interval`](super::EngineSettings::tls_poll_interval)
//!   (10 s by default) the engine looks at the files' modification time, length and inode
//!   and reloads a listener whose files changed.
//!
//! A reload swaps the certificate for the handshakes that start afterwards; connections
//! already open keep their session. A file that cannot be used (unreadable, no
//! certificate, a key that does not match) leaves the previous certificate in place, is
//! logged at warn and counted in `/metrics` (`iii_tls_reloads_total{outcome="failed"}`),
//! and [`reload_tls`](super::EngineHandle::reload_tls) returns it as a [`TlsError`]. Write
//! the new files next to the old ones and rename them into place (what certificate
//! managers do): a reload that reads a half-written pair fails and is retried at the next
//! change.

use std::io;
use std::path::PathBuf;

use futures_io::{AsyncRead, AsyncWrite};

use crate::transport::Transport;

/// The certificate and key a listener serves `wss://` with: two PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// The certificate chain, leaf first, as PEM `CERTIFICATE` blocks (other blocks in
    /// the file are skipped).
    pub cert_file: PathBuf,
    /// The leaf certificate's private key: the first PEM `PRIVATE KEY` (PKCS#8),
    /// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1) block of the file. RSA,
    /// ECDSA (P-256, P-384) and Ed25519 keys are supported.
    pub key_file: PathBuf,
}

impl TlsSettings {
    /// TLS with the certificate chain in `cert_file` and its key in `key_file`.
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
        }
    }
}

/// Why a listener's certificate could not be loaded (at start or on a reload).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// TLS is configured, but this build has no TLS support.
    #[error("TLS is configured ({path}) but this build has no TLS support (the `tls` feature)")]
    NotBuilt {
        /// The configured certificate file.
        path: PathBuf,
    },
    /// A file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file is not valid PEM.
    #[error("{path}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's contents).
        detail: &'static str,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{path}: no certificate (a PEM CERTIFICATE block)")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key file holds no private key block.
    #[error("{path}: no private key (a PEM PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)")]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The key cannot be used with the certificate: an unsupported kind of key, a key
    /// that does not match the leaf certificate, or a certificate that does not parse.
    #[error("{key_file} cannot serve {cert_file}: {detail}")]
    Unusable {
        /// The certificate file.
        cert_file: PathBuf,
        /// The key file.
        key_file: PathBuf,
        /// rustls' reason.
        detail: String,
    },
}

/// The TLS side of every listener, by listener index (`None` for a plain one).
#[derive(Debug, Default)]
pub(crate) struct ServerTls {
    #[cfg(feature = "tls")]
    listeners: Vec<Option<reload::ListenerTls>>,
    /// Where reloads are counted.
    #[cfg(feature = "tls")]
    counters: std::sync::Arc<crate::metrics::TransportCounters>,
}

impl ServerTls {
    /// Whether listener `listener` serves TLS.
    pub(crate) fn is_tls(&self, listener: usize) -> bool {
        #[cfg(feature = "tls")]
        return matches!(self.listeners.get(listener), Some(Some(_)));
        #[cfg(not(feature = "tls"))]
        {
            let _ = listener;
            false
        }
    }

    /// Opens a connection that arrived on `listener`: the TLS handshake on a TLS
    /// listener, nothing on a plain one.
    pub(crate) async fn accept<S>(&self, listener: usize, stream: S) -> io::Result<Transport<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        #[cfg(feature = "tls")]
        if let Some(Some(tls)) = self.listeners.get(listener) {
            let stream = tls.acceptor.accept(stream).await?;
            return Ok(Transport::Tls(Box::new(stream.into())));
        }
        let _ = listener;
        Ok(Transport::Plain(stream))
    }
}

#[cfg(feature = "tls")]
pub(crate) use reload::watch;

#[cfg(feature = "tls")]
mod reload;

#[cfg(not(feature = "tls"))]
impl ServerTls {
    /// Without TLS support there is nothing to load ([`EngineSettings::validate`]
    /// refuses TLS settings).
    ///
    /// [`EngineSettings::validate`]: super::EngineSettings::validate
    pub(crate) fn load(
        _: &super::EngineSettings,
        _: std::sync::Arc<crate::metrics::TransportCounters>,
    ) -> Result<Self, TlsError> {
        Ok(Self::default())
    }

    /// Nothing to reload.
    pub(crate) fn reload(&self) -> Result<usize, TlsError> {
        Ok(0)
    }
}

#[cfg(all(test, not(feature = "tls")))]
mod tests {
    use super::{TlsError, TlsSettings};
    use crate::engine::{EngineSettings, StartError};

    /// Without the `tls` feature a TLS listener is refused, never served as plain text.
    #[test]
    fn tls_settings_without_the_feature_are_refused() {
        let settings = EngineSettings {
            tls: Some(TlsSettings::new("/etc/iii/cert.pem", "/etc/iii/key.pem")),
            ..EngineSettings::default()
        };
        match settings.validate() {
            Err(StartError::Tls(TlsError::NotBuilt { path })) => {
                assert_eq!(path, std::path::Path::new("/etc/iii/cert.pem"));
            }
            other => panic!("expected NotBuilt: {other:?}"),
        }
    }
}
