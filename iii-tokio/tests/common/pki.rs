//! A test PKI for the `wss://` tests: certificate authorities made with rcgen and the
//! server certificates (for `localhost` and 127.0.0.1) they sign, as PEM files in a
//! temporary directory, replaced the way certificate managers do (written aside, then
//! renamed into place).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};

/// A certificate authority.
pub(crate) struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
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

    /// A chain for `localhost` and 127.0.0.1 signed by this CA, and its key (PEM).
    pub(crate) fn issue(&self) -> (String, String) {
        let key = KeyPair::generate().expect("a server key");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server params");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("a server certificate");
        (
            format!("{}{}", cert.pem(), self.cert.pem()),
            key.serialize_pem(),
        )
    }
}

static DIRS: AtomicUsize = AtomicUsize::new(0);

/// A temporary directory for certificate files (and a configuration file), removed
/// when dropped.
pub(crate) struct Dir(pub(crate) PathBuf);

impl Dir {
    /// A new, empty directory.
    pub(crate) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "iii-engine-tls-{}-{}",
            std::process::id(),
            DIRS.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        Self(dir)
    }

    /// The path of `name` in it, as UTF-8 (for command lines and YAML).
    pub(crate) fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("a UTF-8 path").to_owned()
    }

    /// Writes `text` aside and renames it over `name`.
    pub(crate) fn write(&self, name: &str, text: &str) {
        let aside = self.0.join(format!("{name}.tmp"));
        std::fs::write(&aside, text).expect("write a file");
        std::fs::rename(&aside, Path::new(&self.path(name))).expect("rename it into place");
    }

    /// Writes a certificate chain and key issued by `ca` as `<stem>.pem` and `<stem>.key`.
    pub(crate) fn issue(&self, ca: &Ca, stem: &str) {
        let (cert, key) = ca.issue();
        self.write(&format!("{stem}.pem"), &cert);
        self.write(&format!("{stem}.key"), &key);
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
