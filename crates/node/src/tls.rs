//! The SMTP server's TLS configuration: the operator's certificate, or a self-signed one made
//! once and kept in the data directory so clients that pin it keep working across restarts.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use relayward_config::Config;

/// The HTTP listener's TLS (`[http] tls_cert`, `tls_key`): HTTP/1.1 only.
pub fn http_server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let certs = read_certs(cert)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .with_context(|| {
            format!(
                "http.tls_cert {} and http.tls_key {}",
                cert.display(),
                key.display()
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

pub fn server_config(config: &Config) -> Result<Arc<rustls::ServerConfig>> {
    let (cert_path, key_path) = match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        (None, None) => {
            let dir = config.data_dir.join("tls");
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                generate(&config.hostname, &dir, &cert, &key)?;
            }
            (cert, key)
        }
        _ => {
            return Err(anyhow!(
                "smtp.tls_cert and smtp.tls_key must be given together"
            ));
        }
    };
    let certs = read_certs(&cert_path)?;
    let key = read_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &config.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .with_context(|| format!("CA certificate in {}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .allow_unauthenticated()
            .build()
            .context("client certificate verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let cfg = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "TLS certificate {} and key {}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok(Arc::new(cfg))
}

fn generate(hostname: &str, dir: &Path, cert: &Path, key: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .context("generating a self-signed certificate")?;
    std::fs::write(cert, made.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    std::fs::write(key, made.key_pair.serialize_pem())
        .with_context(|| format!("writing {}", key.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate for {hostname}");
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .with_context(|| format!("parsing the key in {}", path.display()))?
        .ok_or_else(|| anyhow!("no private key found in {}", path.display()))
}
