//! A test PKI for the `wss://` tests: certificate authorities made with rcgen and the
//! server certificates (for `localhost` and 127.0.0.1) they sign, as PEM files in a
//! temporary directory, replaced the way certificate managers do (written aside, then
//! renamed into place).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "../../../tests/tests/tls/ca.rs"]
mod ca;

pub(crate) use ca::Ca;

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
        let issued = ca.issue();
        self.write(&format!("{stem}.pem"), &issued.cert_pem);
        self.write(&format!("{stem}.key"), &issued.key_pem);
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
