//! A test certificate authority made with rcgen and the server certificates (for
//! `localhost` and 127.0.0.1) it signs. Shared by the workspace's TLS tests and
//! iii-tokio's binary tests (included there by path).

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
