//! The listeners' TLS configurations: the operator's certificate, or for SMTP without one, a
//! self-signed one made once and kept in the data directory so clients that pin it keep working
//! across restarts. Certificates and the client CA bundle are read again when their files
//! change (`certificate`, `client_ca`).

mod certificate;
mod client_ca;
mod der;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use relayward_config::Config;

pub use certificate::{Certificate, Reload};
pub use client_ca::ClientCa;
use relayward_smtp::TlsConfig;

/// TLS read from files that may change while the relay runs: read again when they do.
pub trait Watched: Send + Sync {
    /// Reads the files again if they changed since last looked at (or always, when `force`).
    /// Blocking file reads: called off the async workers.
    fn reload(&self, force: bool) -> Reload;
}

/// How often the certificate files are looked at (two `stat` calls each).
const LOOK_EVERY: Duration = Duration::from_secs(5);

/// The HTTP listener's TLS (`[http] tls_cert`, `tls_key`): HTTP/1.1 only.
pub fn http_server_config(
    cert: &Path,
    key: &Path,
) -> Result<(Arc<rustls::ServerConfig>, Arc<Certificate>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let served = Certificate::load("http", cert, key, provider.clone())
        .context("[http] tls_cert and tls_key")?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(served.clone());
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(cfg), served))
}

/// One certificate the configuration names, as `check-config` reports it.
pub struct Checked {
    pub listener: &'static str,
    pub cert: std::path::PathBuf,
    /// Its notAfter, Unix seconds.
    pub not_after: Option<i64>,
}

/// What `check` found: the certificates, and how many CAs the client CA bundle holds.
pub struct TlsCheck {
    pub certificates: Vec<Checked>,
    pub client_cas: Option<usize>,
}

/// Loads every certificate, key and CA file the configuration names, as the relay would at
/// start, without serving them (nothing is written: no self-signed certificate is made).
pub fn check(config: &Config) -> Result<TlsCheck> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut out = Vec::new();
    let mut pair = |listener, cert: &Path, key: &Path| -> Result<()> {
        let loaded = Certificate::load(listener, cert, key, provider.clone())
            .with_context(|| format!("[{listener}] tls_cert and tls_key"))?;
        out.push(Checked {
            listener,
            cert: cert.to_path_buf(),
            not_after: loaded.state().0,
        });
        Ok(())
    };
    if let Some((c, k)) = smtp_pair(config)? {
        pair("smtp", c, k)?;
    }
    if let Some((c, k)) = &config.http_tls {
        pair("http", c, k)?;
    }
    let client_cas = match &config.client_ca {
        Some(ca) => Some(client_ca::roots(ca).context("[smtp] client_ca")?.len()),
        None => None,
    };
    Ok(TlsCheck {
        certificates: out,
        client_cas,
    })
}

/// `[smtp] tls_cert` and `tls_key`, when the operator gave them (both or neither).
fn smtp_pair(config: &Config) -> Result<Option<(&Path, &Path)>> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(c), Some(k)) => Ok(Some((c, k))),
        (None, None) => Ok(None),
        _ => Err(anyhow!(
            "smtp.tls_cert and smtp.tls_key must be given together"
        )),
    }
}

/// The SMTP listeners' TLS: what their sessions are served, and the files it comes from.
pub struct SmtpTls {
    pub config: Arc<TlsConfig>,
    pub certificate: Arc<Certificate>,
    /// `[smtp] client_ca`, when connectors may be matched by client certificate.
    pub client_ca: Option<Arc<ClientCa>>,
}

/// The SMTP listeners' TLS (`[smtp] tls_cert`, `tls_key`, `client_ca`).
pub fn smtp(config: &Config) -> Result<SmtpTls> {
    let (cert_path, key_path) = match smtp_pair(config)? {
        Some((c, k)) => (c.to_path_buf(), k.to_path_buf()),
        None => {
            let dir = config.data_dir.join("tls");
            let cert = dir.join("cert.pem");
            let key = dir.join("key.pem");
            if !cert.exists() || !key.exists() {
                generate(&config.hostname, &dir, &cert, &key)?;
            }
            (cert, key)
        }
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certificate = Certificate::load("smtp", &cert_path, &key_path, provider.clone())
        .context("[smtp] tls_cert and tls_key")?;
    if let Some(ca) = &config.client_ca {
        let client_ca =
            ClientCa::load(ca, certificate.clone(), provider).context("[smtp] client_ca")?;
        return Ok(SmtpTls {
            config: client_ca.config(),
            certificate,
            client_ca: Some(client_ca),
        });
    }
    let served = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    Ok(SmtpTls {
        config: TlsConfig::new(Arc::new(served)),
        certificate,
        client_ca: None,
    })
}

/// Looks at the certificates' and CA bundle's files every few seconds, and at once on SIGHUP
/// (which would otherwise end the process: operators and log rotation send it to ask for a
/// reload).
/// SIGHUP is listened for as soon as this is called (from then on it cannot end the
/// process), not when the returned task first runs.
pub fn watch(
    files: Vec<Arc<dyn Watched>>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificates are still looked at every few seconds");
            None
        }
    };
    look(files, hangup)
}

async fn look(files: Vec<Arc<dyn Watched>>, mut hangup: Option<tokio::signal::unix::Signal>) {
    let mut every = tokio::time::interval(LOOK_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let force = match hangup.as_mut() {
            Some(h) => tokio::select! {
                _ = every.tick() => false,
                got = h.recv() => {
                    if got.is_none() {
                        hangup = None;
                    }
                    got.is_some()
                }
            },
            None => {
                every.tick().await;
                false
            }
        };
        if force {
            tracing::info!(
                "SIGHUP: reading the TLS certificates and client CA bundle again (the rest of the configuration is read at start)"
            );
        }
        let files = files.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for f in &files {
                f.reload(force);
            }
        })
        .await;
    }
}

fn generate(hostname: &str, dir: &Path, cert: &Path, key: &Path) -> Result<()> {
    relayward_control::private_files::private_dir(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let made = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .context("generating a self-signed certificate")?;
    std::fs::write(cert, made.cert.pem()).with_context(|| format!("writing {}", cert.display()))?;
    relayward_control::private_files::write_private(key, made.key_pair.serialize_pem().as_bytes())
        .with_context(|| format!("writing {}", key.display()))?;
    tracing::info!(cert = %cert.display(), "generated a self-signed TLS certificate for {hostname}");
    Ok(())
}

pub(crate) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<std::result::Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificates in {}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .with_context(|| format!("parsing the key in {}", path.display()))?
        .ok_or_else(|| anyhow!("no private key found in {}", path.display()))
}
