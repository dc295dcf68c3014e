//! `wss://`: TLS (rustls, with the `ring` provider) under the WebSocket, for the control
//! connection and every channel end. Compiled with the `tls` feature; the trusted roots
//! come from `tls-native-roots` (the operating system's store), `tls-webpki-roots`
//! (Mozilla's set compiled in) and [`WorkerOptions::tls_root_certificates`](super::WorkerOptions).

use futures_io::{AsyncRead, AsyncWrite};

use super::Error;
use crate::transport::Transport;

/// The client TLS settings of a worker (`None` for a `ws://` engine).
#[cfg(feature = "tls")]
pub(crate) type TlsConfig = Option<std::sync::Arc<futures_rustls::rustls::ClientConfig>>;
/// Without the `tls` feature there is nothing to configure.
#[cfg(not(feature = "tls"))]
pub(crate) type TlsConfig = Option<std::convert::Infallible>;

/// The TLS settings for `url`: built only for `wss://`.
#[cfg(feature = "tls")]
pub(crate) fn tls_config(url: &str, extra_roots: &[Vec<u8>]) -> Result<TlsConfig, Error> {
    use futures_rustls::rustls::{self, pki_types::CertificateDer, RootCertStore};
    if !url.trim_start().to_ascii_lowercase().starts_with("wss:") {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    #[cfg(feature = "tls-webpki-roots")]
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    #[cfg(feature = "tls-native-roots")]
    {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "a native root certificate could not be loaded");
        }
        roots.add_parsable_certificates(native.certs);
    }
    for der in extra_roots {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| Error::InvalidOption(format!("a TLS root certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(Error::InvalidOption(
            "wss:// needs trusted roots: enable `tls-native-roots` or `tls-webpki-roots`, \
             or give `tls_root_certificates`"
                .into(),
        ));
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::InvalidOption(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Some(std::sync::Arc::new(config)))
}

/// Without the `tls` feature, `wss://` is refused with the features that enable it.
#[cfg(not(feature = "tls"))]
pub(crate) fn tls_config(url: &str, extra_roots: &[Vec<u8>]) -> Result<TlsConfig, Error> {
    let _ = extra_roots;
    if url.trim_start().to_ascii_lowercase().starts_with("wss:") {
        return Err(Error::InvalidOption(format!(
            "{url:?}: wss:// needs the `tls`, `tls-native-roots` or `tls-webpki-roots` feature"
        )));
    }
    Ok(None)
}

impl<S: AsyncRead + AsyncWrite + Unpin> Transport<S> {
    /// Wraps `tcp`, after a TLS handshake with `host` when `tls` is set.
    pub(crate) async fn start(tcp: S, host: &str, tls: &TlsConfig) -> Result<Self, String> {
        match tls {
            None => Ok(Transport::Plain(tcp)),
            #[cfg(feature = "tls")]
            Some(config) => {
                use futures_rustls::rustls::pki_types::ServerName;
                let name = ServerName::try_from(host.to_owned())
                    .map_err(|e| format!("{host:?} is not a TLS server name: {e}"))?;
                let stream = futures_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {host}: {e}"))?;
                Ok(Transport::Tls(Box::new(stream.into())))
            }
            #[cfg(not(feature = "tls"))]
            Some(never) => {
                let _ = host;
                match *never {}
            }
        }
    }
}
