//! Loading listeners' certificates, swapping them on a reload, and the task that polls
//! their files (with the `tls` feature).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use futures_channel::oneshot;
use futures_rustls::rustls::crypto::{ring, CryptoProvider};
use futures_rustls::rustls::pki_types::pem::{self, PemObject};
use futures_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use futures_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use futures_rustls::rustls::sign::CertifiedKey;
use futures_rustls::rustls::ServerConfig;
use futures_rustls::TlsAcceptor;
use futures_util::future::{self, Either, Shared};

use super::{ServerTls, TlsError, TlsSettings};
use crate::engine::{EngineExit, EngineSettings};
use crate::metrics::TransportCounters;
use crate::runtime::{now, Runtime};

/// One TLS listener: its files, the certificate in use and the acceptor that serves it.
pub(crate) struct ListenerTls {
    /// `main`, or the listener policy's name (for logs).
    name: String,
    files: TlsSettings,
    current: Arc<Current>,
    pub(super) acceptor: TlsAcceptor,
    provider: Arc<CryptoProvider>,
    /// The files as they were when last read.
    seen: Mutex<Stamp>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("name", &self.name)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The certificate new handshakes get: swapped whole by a reload, so a handshake sees
/// the old pair or the new one, never a mix.
struct Current(RwLock<Arc<CertifiedKey>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current(..)")
    }
}

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.0
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        )
    }
}

/// What a file looked like: modification time, length and (on Unix) inode, so that an
/// edit in place and a file renamed over the old one are both seen. `None`: missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

/// The stamps of a listener's certificate file and key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp([Option<FileStamp>; 2]);

impl Stamp {
    fn of(files: &TlsSettings) -> Self {
        Self([stamp(&files.cert_file), stamp(&files.key_file)])
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

impl ServerTls {
    /// Loads the certificate of every TLS listener in `settings` (the main one, then
    /// `settings.listeners` in order).
    pub(crate) fn load(
        settings: &EngineSettings,
        counters: Arc<TransportCounters>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let listeners = (0..=settings.listeners.len())
            .map(|i| {
                let Some(files) = settings.listener_tls(i) else {
                    return Ok(None);
                };
                let name = settings
                    .listener_policy(i)
                    .map_or("main", |policy| policy.name.as_str());
                ListenerTls::load(name, files, &provider).map(Some)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            listeners,
            counters,
        })
    }

    /// Whether any listener serves TLS.
    pub(crate) fn any(&self) -> bool {
        self.listeners.iter().any(Option::is_some)
    }

    /// Reads every TLS listener's files again and serves what they hold from the next
    /// handshake on. A listener whose files cannot be used keeps its certificate; the
    /// others are reloaded all the same. The number reloaded, or the first error.
    pub(crate) fn reload(&self) -> Result<usize, TlsError> {
        let mut reloaded = 0;
        let mut failed = None;
        for tls in self.listeners.iter().flatten() {
            *tls.seen.lock().unwrap_or_else(PoisonError::into_inner) = Stamp::of(&tls.files);
            match self.reload_one(tls, "reload requested") {
                Ok(()) => reloaded += 1,
                Err(error) => {
                    failed.get_or_insert(error);
                }
            }
        }
        failed.map_or(Ok(reloaded), Err)
    }

    /// Reloads the listeners whose files changed since they were last read.
    fn reload_changed(&self) {
        for tls in self.listeners.iter().flatten() {
            let stamp = Stamp::of(&tls.files);
            {
                let mut seen = tls.seen.lock().unwrap_or_else(PoisonError::into_inner);
                if *seen == stamp {
                    continue;
                }
                *seen = stamp;
            }
            // Logged and counted there.
            let _ = self.reload_one(tls, "files changed");
        }
    }

    fn reload_one(&self, tls: &ListenerTls, why: &str) -> Result<(), TlsError> {
        let loaded = certified_key(&tls.files, &tls.provider);
        self.counters.tls_reloaded(loaded.is_ok());
        match loaded {
            Ok(key) => {
                *tls.current
                    .0
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
                tracing::info!(listener = %tls.name, why, cert_file = %tls.files.cert_file.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::warn!(listener = %tls.name, why, %error, "TLS certificate not reloaded: the previous one stays in use");
                Err(error)
            }
        }
    }
}

impl ListenerTls {
    fn load(
        name: &str,
        files: &TlsSettings,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let seen = Stamp::of(files);
        let current = Arc::new(Current(RwLock::new(Arc::new(certified_key(
            files, provider,
        )?))));
        let config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| unusable(files, e))?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        tracing::info!(listener = name, cert_file = %files.cert_file.display(), "TLS certificate loaded");
        Ok(Self {
            name: name.to_owned(),
            files: files.clone(),
            current,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            provider: provider.clone(),
            seen: Mutex::new(seen),
        })
    }
}

fn unusable(files: &TlsSettings, error: impl std::fmt::Display) -> TlsError {
    TlsError::Unusable {
        cert_file: files.cert_file.clone(),
        key_file: files.key_file.clone(),
        detail: error.to_string(),
    }
}

/// The certificate chain and key in `files`, checked to belong together.
fn certified_key(files: &TlsSettings, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let pem = read(&files.cert_file)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.cert_file, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: files.cert_file.clone(),
        });
    }
    let pem = read(&files.key_file)?;
    let key = match PrivateKeyDer::from_pem_slice(&pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                path: files.key_file.clone(),
            })
        }
        Err(e) => return Err(pem_error(&files.key_file, &e)),
    };
    CertifiedKey::from_der(chain, key, provider).map_err(|e| unusable(files, e))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

/// What is wrong with a PEM file, in words that never quote it (it may hold a key).
fn pem_error(path: &Path, error: &pem::Error) -> TlsError {
    let detail = match error {
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line",
        pem::Error::IllegalSectionStart { .. } => "a malformed PEM BEGIN line",
        pem::Error::Base64Decode(_) => "a PEM block is not valid base64",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "not valid PEM",
    };
    TlsError::Pem {
        path: path.to_owned(),
        detail,
    }
}

/// Every `every`, reloads the TLS listeners whose files changed, until the engine stops.
pub(crate) async fn watch<R: Runtime>(
    rt: R,
    tls: Arc<ServerTls>,
    every: Duration,
    mut exit: Shared<oneshot::Receiver<EngineExit>>,
) {
    while let Some(wake) = now().checked_add(every) {
        if let Either::Right(_) = future::select(rt.sleep_until(wake), &mut exit).await {
            return;
        }
        tls.reload_changed();
    }
}
