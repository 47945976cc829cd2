//! `[smtp] client_ca`: the CAs whose certificates connectors are matched by. An operator adds a
//! CA to the bundle when a tenant's servers get their certificates from another one, and takes
//! out one that is retired: the file is read again when it changes (as the certificates are),
//! and TLS handshakes from then on are served a configuration that trusts the new bundle.
//! A bundle that cannot be used leaves the one before it in service.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use relayward_smtp::TlsConfig;

use super::certificate::{Certificate, Stamp, stamp};
use super::{Reload, Watched};

/// The client CA bundle and the SMTP configuration built on it.
pub struct ClientCa {
    path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    certificate: Arc<Certificate>,
    config: Arc<TlsConfig>,
    /// The file's stamp when last read, loaded or not.
    seen: Mutex<Option<Stamp>>,
    failing: AtomicBool,
}

impl ClientCa {
    /// Reads the bundle and builds the SMTP listeners' configuration on it and `certificate`;
    /// an error here stops the start.
    pub(super) fn load(
        path: &Path,
        certificate: Arc<Certificate>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<ClientCa>> {
        let seen = stamp(path);
        let config = build(path, &certificate, &provider)?;
        Ok(Arc::new(ClientCa {
            path: path.to_path_buf(),
            provider,
            certificate,
            config: TlsConfig::new(config),
            seen: Mutex::new(seen),
            failing: AtomicBool::new(false),
        }))
    }

    /// What the SMTP listeners serve.
    pub(super) fn config(&self) -> Arc<TlsConfig> {
        self.config.clone()
    }

    /// Whether the file on disk was last found unusable.
    pub fn failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }
}

impl Watched for ClientCa {
    fn reload(&self, force: bool) -> Reload {
        let now = stamp(&self.path);
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Reload::Unchanged;
            };
            if *seen == now && !force {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match build(&self.path, &self.certificate, &self.provider) {
            Ok(config) => {
                self.config.replace(config);
                self.failing.store(false, Ordering::Relaxed);
                tracing::info!(
                    client_ca = %self.path.display(),
                    "client CA bundle loaded; STARTTLS handshakes from now on match connector certificates against it"
                );
                Reload::Loaded
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                let why = format!("{e:#}");
                tracing::error!(
                    client_ca = %self.path.display(),
                    error = %why,
                    "the client CA bundle changed but cannot be used; still trusting the bundle loaded before, and trying again when the file changes"
                );
                Reload::Failed(why)
            }
        }
    }
}

/// The roots in a PEM bundle: at least one, each a CA certificate rustls can use.
pub(super) fn roots(path: &Path) -> Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    for c in super::read_certs(path)? {
        roots
            .add(c)
            .with_context(|| format!("CA certificate in {}", path.display()))?;
    }
    Ok(roots)
}

/// The SMTP listeners' configuration: `certificate` served, client certificates asked for and
/// checked against the bundle at `path` (a client without one is still served: it may be
/// matched by its address or log in).
fn build(
    path: &Path,
    certificate: &Arc<Certificate>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<rustls::ServerConfig>> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(path)?),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .context("client certificate verifier")?;
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(certificate.clone());
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CA certificate as PEM.
    fn ca(name: &str) -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key_pair = rcgen::KeyPair::generate().expect("key");
        params.self_signed(&key_pair).expect("self-signed").pem()
    }

    /// (Whether the trust of the listeners itself changes is the integration test's part:
    /// `tls::connectors_are_matched_by_client_certificate...`.)
    #[test]
    fn a_changed_bundle_replaces_what_new_sessions_are_served_and_a_broken_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let made =
            rcgen::generate_simple_self_signed(vec!["relay.test".to_string()]).expect("cert");
        std::fs::write(&cert, made.cert.pem()).expect("write");
        std::fs::write(&key, made.key_pair.serialize_pem()).expect("write");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certificate = Certificate::load("smtp", &cert, &key, provider.clone()).expect("pair");

        let bundle = dir.path().join("ca.pem");
        let first = ca("First CA");
        std::fs::write(&bundle, &first).expect("write");
        let client_ca = ClientCa::load(&bundle, certificate, provider.clone()).expect("loads");
        let served = client_ca.config();
        let at_start = served.current();
        assert_eq!(client_ca.reload(false), Reload::Unchanged);
        assert!(Arc::ptr_eq(&at_start, &served.current()));

        // A second CA added to the bundle.
        std::fs::write(&bundle, format!("{first}{}", ca("Second CA"))).expect("write");
        assert_eq!(client_ca.reload(false), Reload::Loaded);
        let both = served.current();
        assert!(!Arc::ptr_eq(&at_start, &both));
        assert!(!client_ca.failing());

        // Half written: what was served stays served.
        std::fs::write(&bundle, "-----BEGIN CERTIFICATE-----\nMIIB").expect("write");
        assert!(matches!(client_ca.reload(false), Reload::Failed(_)));
        assert!(Arc::ptr_eq(&both, &served.current()));
        assert!(client_ca.failing());
        // A file with no certificate at all is no bundle either.
        std::fs::write(&bundle, "").expect("write");
        assert!(matches!(client_ca.reload(true), Reload::Failed(_)));

        // Mended.
        std::fs::write(&bundle, &first).expect("write");
        assert_eq!(client_ca.reload(true), Reload::Loaded);
        assert!(!client_ca.failing());

        // At start, a broken bundle stops the start.
        std::fs::write(&bundle, "not PEM").expect("write");
        let certificate = Certificate::load("smtp", &cert, &key, provider.clone()).expect("pair");
        assert!(ClientCa::load(&bundle, certificate, provider).is_err());
    }
}
