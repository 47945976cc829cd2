//! DKIM keys of accepted domains: every accepted domain gets two keys when it is added,
//! RSA-2048 and Ed25519, each under its own selector, both active, and mail is signed with both
//! (receivers that know Ed25519 use it, the rest RSA). Rotation with overlap: `rotate` makes a
//! pending pair to publish; `activate` (after the records are in DNS) signs with it and keeps the
//! old pair "retiring", still to be left published for a week so mail already on its way
//! verifies; `retire` ends it. The running relay's signer (in `relayward_node`) reads them.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use relayward_clock::{civil_date, now_ms};
use relayward_dkim::Algorithm;
use relayward_store::{DkimKey, DkimKeyState, Store};

use crate::{Actor, Control, NotFound, Result};

/// A new key pair for `domain` (RSA and Ed25519) in `state`, with fresh selectors.
pub fn new_pair(domain: &str, state: DkimKeyState) -> Result<Vec<DkimKey>> {
    let now = now_ms();
    let date = civil_date(now / 1000);
    let tag = crate::random_hex(2);
    [
        (Algorithm::RsaSha256, "rsa"),
        (Algorithm::Ed25519Sha256, "ed"),
    ]
    .into_iter()
    .map(|(alg, suffix)| {
        let g = relayward_dkim::generate(alg).map_err(|e| crate::Internal(e.to_string()))?;
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

/// The TXT record to publish for a key, at `<selector>._domainkey.<domain>`.
pub fn record(k: &DkimKey) -> (String, String) {
    let alg = Algorithm::parse(&k.algorithm).unwrap_or(Algorithm::RsaSha256);
    let public = B64.decode(&k.public_key).unwrap_or_default();
    (
        format!("{}._domainkey.{}", k.selector, k.domain),
        relayward_dkim::dns_record(alg, &public),
    )
}

/// `new_pair` on the blocking pool (RSA generation takes a good part of a second), one pair at
/// a time on the whole node: many asked at once (a script adding domains in parallel) wait in
/// line on one core instead of taking every core from the mail.
async fn generate_pair(domain: &str, state: DkimKeyState) -> Result<Vec<DkimKey>> {
    static ONE_AT_A_TIME: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);
    let _turn = ONE_AT_A_TIME
        .acquire()
        .await
        .map_err(|e| crate::Internal(format!("key generation stopped: {e}")))?;
    let d = domain.to_string();
    tokio::task::spawn_blocking(move || new_pair(&d, state))
        .await
        .map_err(|e| crate::Internal(format!("key generation stopped: {e}")))?
}

impl Control {
    /// Keys for a domain that has none yet (a domain just verified or added verified, or one
    /// from the configuration file at first start); the keys it has otherwise. Generating
    /// takes a fraction of a second.
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

    pub(crate) async fn own_domain(
        &self,
        tenant: &str,
        domain: &str,
    ) -> Result<relayward_store::Domain> {
        match self.store.domain(domain).await {
            Ok(d) if d.tenant == tenant => Ok(d),
            _ => Err(NotFound(format!("tenant {tenant} has no domain {domain}"))),
        }
    }

    /// Starts a rotation: a new pending pair whose records the tenant publishes.
    pub async fn rotate_dkim(
        &self,
        tenant: &str,
        domain: &str,
        actor: &Actor,
    ) -> Result<Vec<DkimKey>> {
        let own = self.own_domain(tenant, domain).await?;
        let name = own.name;
        if !own.verified {
            invalid!("{name} is not verified yet; its DKIM keys are made when it is");
        }
        let before = self.store.dkim_keys(Some(&name)).await?;
        if before.iter().any(|k| k.state == DkimKeyState::Pending) {
            invalid!("{name} already has new keys waiting to be published and activated");
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
        let name = self.own_domain(tenant, domain).await?.name;
        let keys = self.store.dkim_keys(Some(&name)).await?;
        let pending: Vec<&DkimKey> = keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Pending)
            .collect();
        if pending.is_empty() {
            invalid!("{name} has no new keys to activate (start with a rotation)");
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
                    invalid!(
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
        let name = self.own_domain(tenant, domain).await?.name;
        let keys = self.store.dkim_keys(Some(&name)).await?;
        let changes: Vec<(String, DkimKeyState)> = keys
            .iter()
            .filter(|k| k.state == DkimKeyState::Retiring)
            .map(|k| (k.selector.clone(), DkimKeyState::Retired))
            .collect();
        if changes.is_empty() {
            invalid!("{name} has no retiring keys");
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
                .map_err(crate::ControlError::from),
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

#[cfg(test)]
mod tests {
    use super::*;

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
