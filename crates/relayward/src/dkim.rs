//! DKIM keys of accepted domains and signing in the delivery path.
//!
//! Every accepted domain gets two keys when it is added: RSA-2048 and Ed25519, each under its
//! own selector, both active, and mail is signed with both (receivers that know Ed25519 use it,
//! the rest RSA). Rotation with overlap: `rotate` makes a pending pair to publish; `activate`
//! (after the records are in DNS) signs with it and keeps the old pair "retiring", still to be
//! left published for a week so mail already on its way verifies; `retire` ends it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use relayward_dkim::{Algorithm, SigningKey};
use relayward_spool::Envelope;
use relayward_store::{DkimKey, DkimKeyState, Store};
use relayward_tenancy::{Directory, domain_of};

use crate::guard::now_ms;
use crate::service::{Actor, NotFound, Service};

/// How long the signer trusts what it loaded before asking the store again.
const CACHE_FOR: Duration = Duration::from_secs(30);

/// A new key pair for `domain` (RSA and Ed25519) in `state`, with fresh selectors.
pub fn new_pair(domain: &str, state: DkimKeyState) -> Result<Vec<DkimKey>> {
    let now = now_ms();
    let date = civil_date(now / 1000);
    let tag = crate::service::random_hex(2);
    [
        (Algorithm::RsaSha256, "rsa"),
        (Algorithm::Ed25519Sha256, "ed"),
    ]
    .into_iter()
    .map(|(alg, suffix)| {
        let g = relayward_dkim::generate(alg)?;
        Ok(DkimKey {
            domain: domain.to_ascii_lowercase(),
            selector: format!("rw{date}{tag}-{suffix}"),
            algorithm: alg.as_str().to_string(),
            private_key: B64.encode(&g.private_pkcs8),
            public_key: B64.encode(&g.public),
            created_at: now,
            state,
            state_since: now,
        })
    })
    .collect()
}

/// `YYYYMMDD` of a Unix time (Howard Hinnant's days-to-civil algorithm).
fn civil_date(secs: i64) -> String {
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// The TXT record to publish for a key, at `<selector>._domainkey.<domain>`.
pub fn record(k: &DkimKey) -> (String, String) {
    let alg = Algorithm::parse(&k.algorithm).unwrap_or(Algorithm::RsaSha256);
    let public = B64.decode(&k.public_key).unwrap_or_default();
    (
        format!("{}._domainkey.{}", k.selector, k.domain),
        relayward_dkim::dns_record(alg, &public),
    )
}

/// `new_pair` on the blocking pool (RSA generation takes a good part of a second).
async fn generate_pair(domain: &str, state: DkimKeyState) -> Result<Vec<DkimKey>> {
    let d = domain.to_string();
    tokio::task::spawn_blocking(move || new_pair(&d, state))
        .await
        .map_err(|e| anyhow!("key generation stopped: {e}"))?
}

impl Service {
    /// Keys for a domain that has none yet (a domain just added, or one from the configuration
    /// file at first start); the keys it has otherwise. Generating takes a fraction of a second.
    pub async fn ensure_dkim_keys(&self, domain: &str) -> Result<Vec<DkimKey>> {
        let existing = self.store.dkim_keys(Some(domain)).await?;
        if !existing.is_empty() {
            return Ok(existing);
        }
        let keys = generate_pair(domain, DkimKeyState::Active).await?;
        self.store.add_dkim_keys(&keys).await?;
        Ok(keys)
    }

    /// A domain's keys, after checking the domain is the tenant's (another tenant's is 404).
    pub async fn dkim_keys(&self, tenant: &str, domain: &str) -> Result<Vec<DkimKey>> {
        self.own_domain(tenant, domain).await?;
        Ok(self.store.dkim_keys(Some(domain)).await?)
    }

    async fn own_domain(&self, tenant: &str, domain: &str) -> Result<String> {
        match self.store.domain(domain).await {
            Ok(d) if d.tenant == tenant => Ok(d.name),
            _ => Err(NotFound(format!("tenant {tenant} has no domain {domain}")).into()),
        }
    }

    /// Starts a rotation: a new pending pair whose records the tenant publishes.
    pub async fn rotate_dkim(
        &self,
        tenant: &str,
        domain: &str,
        actor: &Actor,
    ) -> Result<Vec<DkimKey>> {
        let name = self.own_domain(tenant, domain).await?;
        let before = self.store.dkim_keys(Some(&name)).await?;
        if before.iter().any(|k| k.state == DkimKeyState::Pending) {
            bail!("{name} already has new keys waiting to be published and activated");
        }
        let keys = generate_pair(&name, DkimKeyState::Pending).await?;
        self.store.add_dkim_keys(&keys).await?;
        self.audit(
            actor,
            Some(tenant),
            "dkim.rotate",
            serde_json::json!({ "domain": name, "new_selectors": keys.iter().map(|k| &k.selector).collect::<Vec<_>>() }),
        )
        .await?;
        Ok(keys)
    }

    /// Signs with the pending pair from now on; the active pair becomes retiring. Unless
    /// `force`, each pending record must be found in DNS first.
    pub async fn activate_dkim(
        &self,
        tenant: &str,
        domain: &str,
        resolver: &dyn relayward_delivery::dns::Resolver,
        force: bool,
        actor: &Actor,
    ) -> Result<Vec<DkimKey>> {
        let name = self.own_domain(tenant, domain).await?;
        let keys = self.store.dkim_keys(Some(&name)).await?;
        let pending: Vec<&DkimKey> = keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Pending)
            .collect();
        if pending.is_empty() {
            bail!("{name} has no new keys to activate (start with a rotation)");
        }
        if !force {
            for k in &pending {
                let (at, expected) = record(k);
                let found = resolver.txt(&at).await.unwrap_or_default();
                let want = relayward_dkim::canon::no_space(&expected);
                if !found
                    .iter()
                    .any(|f| relayward_dkim::canon::no_space(f) == want)
                {
                    bail!(
                        "the record for {at} is not published yet (found {} TXT record(s)); publish \"{expected}\" there and try again",
                        found.len()
                    );
                }
            }
        }
        let mut changes: Vec<(String, DkimKeyState)> = keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Active)
            .map(|k| (k.selector.clone(), DkimKeyState::Retiring))
            .collect();
        changes.extend(
            pending
                .iter()
                .map(|k| (k.selector.clone(), DkimKeyState::Active)),
        );
        self.store
            .set_dkim_states(&name, &changes, now_ms())
            .await?;
        self.audit(
            actor,
            Some(tenant),
            "dkim.activate",
            serde_json::json!({ "domain": name, "changes": changes.iter().map(|(s, st)| (s.clone(), st.as_str())).collect::<HashMap<_, _>>(), "dns_checked": !force }),
        )
        .await?;
        Ok(self.store.dkim_keys(Some(&name)).await?)
    }

    /// Ends the overlap: retiring keys become retired (their records may be removed).
    pub async fn retire_dkim(
        &self,
        tenant: &str,
        domain: &str,
        actor: &Actor,
    ) -> Result<Vec<DkimKey>> {
        let name = self.own_domain(tenant, domain).await?;
        let keys = self.store.dkim_keys(Some(&name)).await?;
        let changes: Vec<(String, DkimKeyState)> = keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Retiring)
            .map(|k| (k.selector.clone(), DkimKeyState::Retired))
            .collect();
        if changes.is_empty() {
            bail!("{name} has no retiring keys");
        }
        self.store
            .set_dkim_states(&name, &changes, now_ms())
            .await?;
        self.audit(
            actor,
            Some(tenant),
            "dkim.retire",
            serde_json::json!({ "domain": name, "selectors": changes.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>() }),
        )
        .await?;
        Ok(self.store.dkim_keys(Some(&name)).await?)
    }
}

/// Keys for every verified domain of the directory that has none (domains from the
/// configuration file); runs in the background at start.
pub async fn generate_missing(store: Arc<dyn Store>, domains: Vec<String>) {
    let have: std::collections::HashSet<String> = match store.dkim_keys(None).await {
        Ok(k) => k.into_iter().map(|k| k.domain).collect(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read DKIM keys");
            return;
        }
    };
    for d in domains.into_iter().filter(|d| !have.contains(d)) {
        let stored = match generate_pair(&d, DkimKeyState::Active).await {
            Ok(keys) => store
                .add_dkim_keys(&keys)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match stored {
            Ok(()) => {
                tracing::info!(domain = %d, "DKIM keys generated; publish their records (relayward dkim show)")
            }
            Err(e) => tracing::error!(domain = %d, error = %e, "cannot make DKIM keys"),
        }
    }
}

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
}

impl DkimSigner {
    pub fn new(store: Arc<dyn Store>, directory: Arc<RwLock<Arc<Directory>>>) -> DkimSigner {
        DkimSigner {
            store,
            directory,
            cache: Mutex::default(),
        }
    }

    /// The active keys of a domain, from the cache or the store.
    async fn keys(&self, domain: &str) -> Arc<Vec<Loaded>> {
        if let Some((at, keys)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            && at.elapsed() < CACHE_FOR
        {
            return keys.clone();
        }
        let rows = match self.store.dkim_keys(Some(domain)).await {
            Ok(r) => r,
            Err(e) => {
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
    fn signing_domain(&self, tenant: &str, message: &[u8], mail_from: &str) -> Option<String> {
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
        header_from_domain(message)
            .and_then(|d| accepted(&d))
            .or_else(|| {
                (!mail_from.is_empty())
                    .then(|| domain_of(mail_from))
                    .and_then(|d| accepted(&d))
            })
    }
}

/// The domain of the first address in the From header field.
fn header_from_domain(message: &[u8]) -> Option<String> {
    let end = relayward_dsn::find_headers_end(message);
    let (fields, _) = relayward_dkim::canon::split(&message[..end]);
    let from = fields.iter().find(|f| f.is("From"))?.value();
    let address = match (from.rfind('<'), from.rfind('>')) {
        (Some(a), Some(b)) if a < b => &from[a + 1..b],
        _ => from.as_str(),
    };
    let domain = address.rsplit_once('@')?.1.trim();
    (!domain.is_empty()).then(|| domain.to_ascii_lowercase())
}

impl relayward_delivery::Signer for DkimSigner {
    fn sign<'a>(
        &'a self,
        env: &'a Envelope,
        message: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Vec<u8>>> + Send + 'a>> {
        Box::pin(async move {
            let forwarded = env.origin.starts_with("forward:");
            // A forwarded copy that cannot be sealed leaves without the results field it got
            // at receipt: a complete ARC set or none.
            let unsealed =
                || forwarded.then(|| relayward_dkim::arc::without_unsealed_results(message));
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
            let owned = message.to_vec();
            // RSA signatures take about a millisecond each: off the async threads.
            match tokio::task::spawn_blocking(move || {
                sign_blocking(&keys, &domain, &owned, forwarded, &id)
            })
            .await
            {
                Ok(signed) => Some(signed),
                Err(_) => unsealed(),
            }
        })
    }
}

/// The header fields to put on top: one DKIM signature per key, and for a forwarded copy the
/// ARC seal (the DKIM signatures do not name the ARC fields, so neither depends on the other's
/// place).
fn sign_blocking(
    keys: &[Loaded],
    domain: &str,
    message: &[u8],
    forwarded: bool,
    id: &str,
) -> Vec<u8> {
    let now = now_ms() / 1000;
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
        match relayward_dkim::arc::seal(message, &signer, now) {
            Ok(seal) => top = seal,
            Err(e) => tracing::warn!(id, error = %e, "forwarded copy not sealed"),
        }
    }
    let unsealed;
    let message = if forwarded && top.is_empty() {
        unsealed = relayward_dkim::arc::without_unsealed_results(message);
        &unsealed[..]
    } else {
        message
    };
    let sealed = [top.as_bytes(), message].concat();
    let mut signatures = String::new();
    for k in keys {
        let signer = relayward_dkim::Signer {
            domain,
            selector: &k.selector,
            key: &k.key,
        };
        match relayward_dkim::sign(&sealed, &signer, now) {
            Ok(sig) => signatures.push_str(&sig),
            Err(e) => tracing::error!(id, domain, error = %e, "DKIM signing failed"),
        }
    }
    signatures.push_str(&top);
    let mut out = signatures.into_bytes();
    out.extend_from_slice(message);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_are_right() {
        assert_eq!(civil_date(0), "19700101");
        assert_eq!(civil_date(1_795_305_600), "20261122");
        assert_eq!(civil_date(951_782_400), "20000229");
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
            assert_eq!(header_from_domain(m).as_deref(), d);
        }
    }

    #[test]
    fn a_new_pair_has_two_selectors_and_publishable_records() {
        let keys = new_pair("Contoso.example", DkimKeyState::Active).expect("keys");
        assert_eq!(keys.len(), 2);
        assert_ne!(keys[0].selector, keys[1].selector);
        let (name, rec) = record(&keys[0]);
        assert!(name.ends_with("._domainkey.contoso.example"), "{name}");
        assert!(rec.starts_with("v=DKIM1; k=rsa; p=MII"), "{rec}");
        let (_, rec) = record(&keys[1]);
        assert!(rec.starts_with("v=DKIM1; k=ed25519; p="), "{rec}");
    }
}
