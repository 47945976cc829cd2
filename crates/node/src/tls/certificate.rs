//! A listener's certificate, read again when its files change. Certificates are renewed every
//! few weeks (an ACME client replaces the files and expects the server to notice): each
//! handshake is served the certificate loaded last, the files are looked at every few seconds
//! and at SIGHUP, and new files that do not make a usable pair (half written, a key that does
//! not match, not PEM) leave the certificate before them in service.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use anyhow::{Context, Result};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::Watched;

/// Days before its end from which a certificate being loaded is warned about.
const WARN_DAYS: i64 = 14;

/// What identifies a file's content without reading it: a replaced or rewritten file (or a
/// symbolic link pointed elsewhere) changes one of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

pub(super) fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        inode: m.ino(),
        len: m.len(),
        modified: m.modified().ok(),
    })
}

/// What a look at the files found.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    /// The files are as they were when last looked at.
    Unchanged,
    /// A new certificate is served from now on.
    Loaded,
    /// The files changed but do not make a usable pair; the one before is still served.
    Failed(String),
}

/// A certificate and key loaded from two PEM files, for a rustls server configuration.
#[derive(Debug)]
pub struct Certificate {
    /// Which listener serves it, for logs and metrics: `smtp` or `http`.
    pub listener: &'static str,
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Served>,
    /// The files' stamps when last read, loaded or not.
    seen: Mutex<(Option<Stamp>, Option<Stamp>)>,
}

#[derive(Debug, Clone)]
struct Served {
    key: Arc<CertifiedKey>,
    /// The certificate's notAfter, Unix seconds (`None` when it cannot be read from it).
    not_after: Option<i64>,
    /// Whether the files on disk were last found unusable.
    failing: bool,
}

impl Certificate {
    /// Loads the pair; an error here stops the start, as a wrong path or a broken file should.
    pub fn load(
        listener: &'static str,
        cert_path: &Path,
        key_path: &Path,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Arc<Certificate>> {
        let seen = (stamp(cert_path), stamp(key_path));
        let (key, not_after) = read_pair(cert_path, key_path, &provider)?;
        warn_if_ending(listener, cert_path, not_after);
        Ok(Arc::new(Certificate {
            listener,
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            provider,
            current: RwLock::new(Served {
                key,
                not_after,
                failing: false,
            }),
            seen: Mutex::new(seen),
        }))
    }

    /// The served certificate's notAfter (Unix seconds), and whether the files on disk were
    /// last found unusable.
    pub fn state(&self) -> (Option<i64>, bool) {
        self.current
            .read()
            .map(|c| (c.not_after, c.failing))
            .unwrap_or((None, true))
    }
}

impl Watched for Certificate {
    fn reload(&self, force: bool) -> Reload {
        let now = (stamp(&self.cert_path), stamp(&self.key_path));
        {
            let Ok(mut seen) = self.seen.lock() else {
                return Reload::Unchanged;
            };
            if *seen == now && !force {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match read_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok((key, not_after)) => {
                if let Ok(mut c) = self.current.write() {
                    *c = Served {
                        key,
                        not_after,
                        failing: false,
                    };
                }
                tracing::info!(
                    listener = self.listener,
                    cert = %self.cert_path.display(),
                    not_after = not_after.map(relayward_clock::iso_date).unwrap_or_default(),
                    "TLS certificate loaded; new handshakes are served it"
                );
                warn_if_ending(self.listener, &self.cert_path, not_after);
                Reload::Loaded
            }
            Err(e) => {
                if let Ok(mut c) = self.current.write() {
                    c.failing = true;
                }
                let why = format!("{e:#}");
                tracing::error!(
                    listener = self.listener,
                    error = %why,
                    "the TLS certificate files changed but cannot be used; still serving the certificate loaded before, and trying again when the files change"
                );
                Reload::Failed(why)
            }
        }
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current.read().ok().map(|c| c.key.clone())
    }
}

fn read_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Option<i64>)> {
    let certs = super::read_certs(cert_path)?;
    let key = super::read_key(key_path)?;
    let not_after = super::der::not_after(certs[0].as_ref());
    let pair = CertifiedKey::from_der(certs, key, provider).with_context(|| {
        format!(
            "certificate {} with key {}",
            cert_path.display(),
            key_path.display()
        )
    })?;
    Ok((Arc::new(pair), not_after))
}

fn warn_if_ending(listener: &str, cert_path: &Path, not_after: Option<i64>) {
    let Some(end) = not_after else {
        return;
    };
    let left = end - relayward_clock::now_secs();
    if left < 0 {
        tracing::error!(
            listener,
            cert = %cert_path.display(),
            not_after = %relayward_clock::iso_date(end),
            "the TLS certificate has expired: clients that check it refuse the connection; renew it (the new files are picked up without a restart)"
        );
    } else if left < WARN_DAYS * 86_400 {
        tracing::warn!(
            listener,
            cert = %cert_path.display(),
            days_left = left / 86_400,
            "the TLS certificate ends soon; renew it (the new files are picked up without a restart)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate for `name` and its key, as PEM.
    fn pair(name: &str) -> (String, String) {
        let made = rcgen::generate_simple_self_signed(vec![name.to_string()]).expect("cert");
        (made.cert.pem(), made.key_pair.serialize_pem())
    }

    fn served(c: &Certificate) -> Vec<u8> {
        c.current.read().expect("lock").key.cert[0].to_vec()
    }

    #[test]
    fn new_files_are_served_and_broken_ones_leave_the_last_good_pair_in_service() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let write = |c: &str, k: &str| {
            std::fs::write(&cert, c).expect("write");
            std::fs::write(&key, k).expect("write");
        };
        let (a_cert, a_key) = pair("a.relay.test");
        write(&a_cert, &a_key);
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let c = Certificate::load("smtp", &cert, &key, provider).expect("loads");
        let first = served(&c);
        assert_eq!(c.reload(false), Reload::Unchanged);

        // Renewed: both files replaced (new inodes, as an ACME client's rename gives).
        let (b_cert, b_key) = pair("b.relay.test");
        std::fs::remove_file(&cert).expect("rm");
        std::fs::remove_file(&key).expect("rm");
        write(&b_cert, &b_key);
        assert_eq!(c.reload(false), Reload::Loaded);
        let second = served(&c);
        assert_ne!(first, second);
        assert!(!c.state().1);

        // Half a renewal: the new certificate with the old key.
        let (c_cert, _) = pair("c.relay.test");
        std::fs::remove_file(&cert).expect("rm");
        std::fs::write(&cert, &c_cert).expect("write");
        match c.reload(false) {
            Reload::Failed(why) => assert!(why.contains("certificate"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(served(&c), second);
        assert!(c.state().1);
        // Looked at again without a change: not read again, still failing.
        assert_eq!(c.reload(false), Reload::Unchanged);

        // Not PEM at all.
        std::fs::remove_file(&key).expect("rm");
        std::fs::write(&key, "not a key").expect("write");
        assert!(matches!(c.reload(false), Reload::Failed(_)));
        assert_eq!(served(&c), second);

        // Mended: served, and no longer failing.
        write(&a_cert, &a_key);
        assert_eq!(c.reload(true), Reload::Loaded);
        assert_eq!(served(&c), first);
        assert!(!c.state().1);
    }

    #[test]
    fn a_missing_or_broken_pair_stops_the_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        assert!(Certificate::load("smtp", &cert, &key, provider.clone()).is_err());
        let (a_cert, _) = pair("a.relay.test");
        let (_, b_key) = pair("b.relay.test");
        std::fs::write(&cert, a_cert).expect("write");
        std::fs::write(&key, b_key).expect("write");
        let err = Certificate::load("smtp", &cert, &key, provider).expect_err("keys differ");
        assert!(format!("{err:#}").contains("key"), "{err:#}");
    }
}
