//! Signing in the delivery path: outbound mail from accepted domains gets one DKIM signature
//! per active key of its domain (the keys are the control plane's, `relayward_control::dkim_keys`),
//! and forwarded copies get an ARC set, as they leave.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use relayward_delivery::Outgoing;
use relayward_dkim::{Algorithm, SigningKey};
use relayward_spool::Envelope;
use relayward_store::{DkimKeyState, Store};
use relayward_tenancy::{Directory, domain_of};

use crate::policy::PolicyStats;

mod pool;

/// How long the signer trusts what it loaded before asking the store again.
const CACHE_FOR: Duration = Duration::from_secs(30);
/// How much lower than the relay's other threads the quiet signing thread runs, as a `nice`
/// value (see `lone_client`).
const QUIET_NICE: i32 = 5;
/// How many of a lone client's signatures may wait on the quiet thread before the next goes to
/// the pool (see `lone_client`).
const QUIET_QUEUE: usize = 16;
struct Loaded {
    selector: String,
    key: SigningKey,
}

/// Active keys per domain, with when they were loaded.
type KeyCache = HashMap<String, (Instant, Arc<Vec<Loaded>>)>;

/// Signs outbound mail from accepted domains, and seals forwarded copies, as they leave.
pub struct DkimSigner {
    pub store: Arc<dyn Store>,
    pub directory: Arc<RwLock<Arc<Directory>>>,
    cache: Mutex<KeyCache>,
    /// Where signatures are made: a thread per core.
    pool: pool::SignPool,
    /// One thread at a lower priority, for a relay serving one client (see `quiet`).
    quiet: pool::SignPool,
    /// Signatures being made now, on either pool.
    signing: AtomicUsize,
    /// The SMTP sessions open now, from the policy's figures.
    stats: Arc<PolicyStats>,
}

/// One signature in `DkimSigner::signing` while it is made.
struct Signing<'a>(&'a AtomicUsize);

impl Drop for Signing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl DkimSigner {
    pub fn new(
        store: Arc<dyn Store>,
        directory: Arc<RwLock<Arc<Directory>>>,
        stats: Arc<PolicyStats>,
    ) -> DkimSigner {
        DkimSigner {
            store,
            directory,
            cache: Mutex::default(),
            pool: pool::SignPool::start(
                std::thread::available_parallelism().map_or(1, |n| n.get()),
                "dkim-signer",
                0,
            ),
            quiet: pool::SignPool::start(1, "dkim-signer-bg", QUIET_NICE),
            signing: AtomicUsize::new(0),
            stats,
        }
    }

    /// Whether a signature goes to the quiet thread instead of the pool (see `lone_client`).
    fn quiet(&self, others: usize) -> bool {
        lone_client(others, self.stats.open_sessions.load(Ordering::Relaxed))
    }

    /// Forgets the keys loaded so far (another node changed DKIM keys): the next message of
    /// each domain loads them again.
    pub fn forget_keys(&self) {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The active keys of a domain, from the cache or the store. While the store cannot be
    /// read (the cluster's database away), keys loaded before keep signing.
    async fn keys(&self, domain: &str) -> Arc<Vec<Loaded>> {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .cloned();
        if let Some((at, keys)) = &cached
            && at.elapsed() < CACHE_FOR
        {
            return keys.clone();
        }
        let rows = match self.store.dkim_keys(Some(domain)).await {
            Ok(r) => r,
            Err(e) => {
                if let Some((_, keys)) = cached {
                    tracing::warn!(domain, error = %e, "cannot reload DKIM keys; signing with the ones loaded before");
                    return keys;
                }
                tracing::warn!(domain, error = %e, "cannot load DKIM keys; sending unsigned");
                return Arc::new(Vec::new());
            }
        };
        let loaded: Vec<Loaded> = rows
            .iter()
            .filter(|k| k.state == DkimKeyState::Active)
            .filter_map(|k| {
                let alg = Algorithm::parse(&k.algorithm)?;
                let der = B64.decode(&k.private_key).ok()?;
                match SigningKey::from_pkcs8(alg, &der) {
                    Ok(key) => Some(Loaded {
                        selector: k.selector.clone(),
                        key,
                    }),
                    Err(e) => {
                        tracing::error!(domain, selector = %k.selector, error = %e, "unusable DKIM key");
                        None
                    }
                }
            })
            .collect();
        let loaded = Arc::new(loaded);
        if loaded.is_empty() {
            // Not remembered: keys made a moment later (a domain just added) sign at once.
            return loaded;
        }
        self.cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.to_string(), (Instant::now(), loaded.clone()));
        loaded
    }

    /// The accepted domain of the message's tenant to sign as: the header From's, else the
    /// envelope sender's (a forwarded copy's SRS sender is in the forwarding user's domain).
    /// None for a message without a From field: a DKIM signature must cover From (RFC 6376
    /// 5.4), and verifiers fail one that does not, so such a message leaves unsigned.
    fn signing_domain(&self, tenant: &str, message: &[u8], mail_from: &str) -> Option<String> {
        let from = from_field(message)?;
        let dir = self
            .directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        let accepted = |domain: &str| {
            dir.accepted_domain(domain)
                .filter(|d| d.tenant == tenant)
                .map(|d| d.name.to_string())
        };
        address_domain(&from)
            .and_then(|d| accepted(&d))
            .or_else(|| {
                (!mail_from.is_empty())
                    .then(|| domain_of(mail_from))
                    .and_then(|d| accepted(&d))
            })
    }
}

/// Whether a signature, with `others` being made or waiting, goes to the quiet thread: when at
/// most one SMTP session is open, and fewer than `QUIET_QUEUE` signatures are ahead of it.
///
/// A relay serving one client spends a message's time waking threads for each step of the
/// dialogue; at the usual priority a signature (a quarter of a millisecond and more) holds the
/// core the next step, or the client on the same machine, wakes to. At a lower priority it
/// gives way at once and is made in the gaps (session 16: one session, 1,052-1,095 ->
/// 1,087-1,242 msg/s against signing in place on the async thread). A lone client's
/// signatures also wait for each other on that one thread rather than overflow to the pool at
/// the usual priority as soon as one is under way: on a machine whose RSA-2048 signature takes
/// 0.42 ms, one session, a connection per message, 10,000 messages end to end, 1 KB
/// 1,064-1,196 -> 1,450-1,505 msg/s and 20 KB 887-906 -> 1,007-1,123 (BENCHMARKS.md, issue 20,
/// session 21). The queue is bounded so that a client the quiet thread cannot keep up with
/// still gets the pool (each waiting signature is a delivery holding its message). With more
/// sessions the relay's cores are busy and signatures that always gave way fell behind: the
/// whole pool at `nice` 19 cost 50 sessions a quarter of their messages a second; so they go
/// to the pool.
fn lone_client(others: usize, open_sessions: u64) -> bool {
    open_sessions <= 1 && others < QUIET_QUEUE
}

/// The value of the message's From header field, if it has one.
fn from_field(message: &[u8]) -> Option<String> {
    let end = relayward_dsn::find_headers_end(message);
    let (fields, _) = relayward_dkim::canon::split(&message[..end]);
    Some(fields.iter().find(|f| f.is("From"))?.value())
}

/// The domain of the first address in a From field's value.
fn address_domain(from: &str) -> Option<String> {
    let address = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from,
    };
    let domain = address.rsplit_once('@')?.1.trim();
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

impl relayward_delivery::Signer for DkimSigner {
    fn sign<'a>(
        &'a self,
        env: &'a Envelope,
        shared: Arc<Vec<u8>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Outgoing>> + Send + 'a>> {
        Box::pin(async move {
            let message = &shared[..];
            let forwarded = env.origin.starts_with("forward:");
            // A forwarded copy that cannot be sealed leaves without the results field it got
            // at receipt: a complete ARC set or none.
            let unsealed = || {
                forwarded.then(|| {
                    let (head, from) = unsealed_header(message);
                    Outgoing {
                        head,
                        message: shared.clone(),
                        from,
                    }
                })
            };
            let Some(tenant) = env.tenant.as_deref() else {
                return unsealed();
            };
            let Some(domain) = self.signing_domain(tenant, message, &env.mail_from) else {
                return unsealed();
            };
            let keys = self.keys(&domain).await;
            if keys.is_empty() {
                return unsealed();
            }
            let id = env.id.clone();
            let others = self.signing.fetch_add(1, Ordering::AcqRel);
            let _signing = Signing(&self.signing);
            let pool = if self.quiet(others) {
                &self.quiet
            } else {
                &self.pool
            };
            let body = shared.clone();
            match pool
                .run(move || sign_blocking(&keys, &domain, &body, forwarded, &id))
                .await
            {
                Some((head, from)) => Some(Outgoing {
                    head,
                    message: shared.clone(),
                    from,
                }),
                None => unsealed(),
            }
        })
    }
}

/// The header section of `message` without the results fields of an ARC set that has no seal,
/// and where the body starts: what a forwarded copy that cannot be sealed leaves with.
fn unsealed_header(message: &[u8]) -> (Vec<u8>, usize) {
    let end = relayward_dsn::find_headers_end(message);
    (
        relayward_dkim::arc::without_unsealed_results(&message[..end]),
        end,
    )
}

/// What goes on top of the message, and from where the spooled message follows it (0: all of
/// it; past its header section when the section itself changed). On top: one DKIM signature per
/// key, and for a forwarded copy the ARC seal (the DKIM signatures do not name the ARC fields,
/// so neither depends on the other's place). Only header sections are copied, never the body.
fn sign_blocking(
    keys: &[Loaded],
    domain: &str,
    message: &[u8],
    forwarded: bool,
    id: &str,
) -> (Vec<u8>, usize) {
    let now = relayward_clock::now_secs();
    // One body hash for every signature: the seal's message signature and each key's.
    let bh = relayward_dkim::BodyHash::of(message);
    let mut top = String::new();
    // A forwarded copy carries the results we saw at receipt; its seal is made now.
    if forwarded
        && let Some(rsa) = keys
            .iter()
            .find(|k| k.key.algorithm() == Algorithm::RsaSha256)
    {
        let signer = relayward_dkim::Signer {
            domain,
            selector: &rsa.selector,
            key: &rsa.key,
        };
        match relayward_dkim::arc::seal_with(message, &bh, &signer, now) {
            Ok(seal) => top = seal,
            Err(e) => tracing::warn!(id, error = %e, "forwarded copy not sealed"),
        }
    }
    let (under, from) = if forwarded && top.is_empty() {
        unsealed_header(message)
    } else {
        (Vec::new(), 0)
    };
    let header = if from > 0 {
        &under[..]
    } else {
        &message[..relayward_dsn::find_headers_end(message)]
    };
    // The DKIM signatures cover the seal's fields too when there are any; with the body hash
    // made, a signature needs only the header section.
    let signed: std::borrow::Cow<[u8]> = if top.is_empty() {
        header.into()
    } else {
        [top.as_bytes(), header].concat().into()
    };
    let mut signatures = String::new();
    for k in keys {
        let signer = relayward_dkim::Signer {
            domain,
            selector: &k.selector,
            key: &k.key,
        };
        match relayward_dkim::sign_with(&signed, &bh, &signer, now) {
            Ok(sig) => signatures.push_str(&sig),
            Err(e) => tracing::error!(id, domain, error = %e, "DKIM signing failed"),
        }
    }
    let mut head = Vec::with_capacity(signatures.len() + top.len() + under.len());
    head.extend_from_slice(signatures.as_bytes());
    head.extend_from_slice(top.as_bytes());
    head.extend_from_slice(&under);
    (head, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_clients_signatures_queue_on_the_quiet_thread_up_to_a_bound() {
        // One session: the quiet thread, even behind signatures under way...
        assert!(lone_client(0, 1));
        assert!(lone_client(QUIET_QUEUE - 1, 1));
        // ...until the queue is full, and never with more sessions.
        assert!(!lone_client(QUIET_QUEUE, 1));
        assert!(!lone_client(0, 2));
        // No session (a retry from the queue, an NDR): the quiet thread as well.
        assert!(lone_client(0, 0));
    }

    #[test]
    fn the_from_domain_is_found_in_display_forms() {
        for (m, d) in [
            (
                &b"From: Ana <Ana@Contoso.example>\r\n\r\nx"[..],
                Some("contoso.example"),
            ),
            (
                b"Subject: x\r\nfrom: ana@b.example\r\n\r\n",
                Some("b.example"),
            ),
            (
                b"From: \"a@x.example\" <ana@c.example>\r\n\r\n",
                Some("c.example"),
            ),
            (b"Subject: none\r\n\r\nFrom: a@d.example\r\n", None),
        ] {
            let domain = from_field(m).and_then(|f| address_domain(&f));
            assert_eq!(domain.as_deref(), d);
        }
    }
}
