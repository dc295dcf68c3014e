//! Test PKI for the `wss://` tests: certificate authorities made with rcgen, server
//! certificates for `localhost` and 127.0.0.1 they sign, and the PEM files an engine
//! reads them from (replaced the way certificate managers do: written aside, renamed
//! into place).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate authority.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate chain and its key, as PEM.
pub(crate) struct Issued {
    /// The leaf certificate, then the CA's.
    pub(crate) cert_pem: String,
    /// The leaf's private key (PKCS#8).
    pub(crate) key_pem: String,
}

impl Ca {
    /// A new CA named `name`.
    pub(crate) fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("a CA certificate");
        Self { cert, key }
    }

    /// The CA certificate (DER), what a worker trusts.
    pub(crate) fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A certificate for `localhost` and 127.0.0.1, signed by this CA.
    pub(crate) fn issue(&self) -> Issued {
        let key = KeyPair::generate().expect("a server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a server certificate");
        Issued {
            cert_pem: format!("{}{}", cert.pem(), self.cert.pem()),
            key_pem: key.serialize_pem(),
        }
    }
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A directory holding `cert.pem` and `key.pem`, removed when dropped.
pub(crate) struct Files(PathBuf);

impl Files {
    /// A new directory with `issued` in it.
    pub(crate) fn new(issued: &Issued) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "iii-tls-test-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let files = Self(dir);
        files.install(issued);
        files
    }

    /// The certificate file.
    pub(crate) fn cert(&self) -> PathBuf {
        self.0.join("cert.pem")
    }

    /// The key file.
    pub(crate) fn key(&self) -> PathBuf {
        self.0.join("key.pem")
    }

    /// The engine's settings for these files.
    pub(crate) fn settings(&self) -> iii_driver::engine::TlsSettings {
        iii_driver::engine::TlsSettings::new(self.cert(), self.key())
    }

    /// Replaces both files with `issued`.
    pub(crate) fn install(&self, issued: &Issued) {
        self.write(&self.cert(), &issued.cert_pem);
        self.write(&self.key(), &issued.key_pem);
    }

    /// Writes `text` aside and renames it over `path`.
    pub(crate) fn write(&self, path: &Path, text: &str) {
        let aside = self.0.join("aside.tmp");
        std::fs::write(&aside, text).expect("write a file");
        std::fs::rename(&aside, path).expect("rename it into place");
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
