//! Test PKI for the `wss://` tests: certificate authorities made with rcgen, server
//! certificates for `localhost` and 127.0.0.1 they sign, and the PEM files an engine
//! reads them from (replaced the way certificate managers do: written aside, renamed
//! into place).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

mod ca;

pub(crate) use ca::{Ca, Issued};

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
