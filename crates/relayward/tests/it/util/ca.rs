//! A certificate authority made at run time, and the certificates it issues: client
//! certificates for connectors, server certificates for the peers whose certificates the relay
//! must trust (MTA-STS).

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub struct TestCa {
    /// Its certificate, as a CA bundle holds it.
    pub pem: String,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("CA");
        TestCa {
            pem: cert.pem(),
            cert,
            key,
        }
    }

    /// A certificate for `names` (the first is also its common name), for `usage`, and its key.
    fn make(
        &self,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (rcgen::Certificate, rcgen::KeyPair) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signed");
        (cert, key)
    }

    /// A certificate for `names` (the first is also its common name), for `usage`, with its key.
    pub fn issue(
        &self,
        names: &[&str],
        usage: rcgen::ExtendedKeyUsagePurpose,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (cert, key) = self.make(names, usage);
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
    }

    /// A server's TLS configuration with a certificate for `names`, sent with the CA's own
    /// certificate after it (as a server whose TLSA records name its CA sends it); and the
    /// server certificate's public key (its SubjectPublicKeyInfo) and the CA's certificate,
    /// for the TLSA records that name them.
    pub fn server_tls_for_dane(
        &self,
        names: &[&str],
    ) -> (Arc<rustls::ServerConfig>, Vec<u8>, Vec<u8>) {
        let (cert, key) = self.make(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        let chain = vec![cert.der().clone(), self.cert.der().clone()];
        let config = server_config(chain, PrivateKeyDer::Pkcs8(key.serialize_der().into()));
        (config, key.public_key_der(), self.cert.der().to_vec())
    }

    /// The CA's public key (its SubjectPublicKeyInfo), for a TLSA record that gives it in full.
    pub fn spki(&self) -> Vec<u8> {
        self.key.public_key_der()
    }

    /// A server's TLS configuration with a certificate for `names`, sent alone.
    pub fn server_tls(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (chain, key) = self.issue(names, rcgen::ExtendedKeyUsagePurpose::ServerAuth);
        server_config(chain, key)
    }
}

/// A server's TLS configuration presenting `chain`.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<rustls::ServerConfig> {
    Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server config"),
    )
}
