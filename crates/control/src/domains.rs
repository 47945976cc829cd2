//! Accepted domains: adding one (a claim checked against every other tenant's), the DNS proof
//! of ownership, and the tenant's forwarding policy.

use relayward_guard::Role;

use relayward_tenancy::claims::{MAX_FORWARDING_DOMAINS, forwarding_domain};

use crate::{Actor, Control, DomainVerification, NotFound, Result, random_hex};

impl Control {
    /// Domain ownership proof: looks for the TXT record `relayward-verification=<token>` on the
    /// domain through `resolver` and marks the domain verified when it is there. Until then the
    /// domain counts as unregistered. Answers what was found, so an admin can fix the record.
    pub async fn verify_domain(
        &self,
        tenant: &str,
        domain: &str,
        resolver: &dyn relayward_delivery::dns::Resolver,
        actor: &Actor,
    ) -> Result<DomainVerification> {
        let d = self.store.domain(domain).await?;
        if d.tenant != tenant {
            // Another tenant's domain answers like a missing one: no probing across tenants.
            return Err(NotFound(format!("tenant {tenant} has no domain {domain}")));
        }
        if d.verified {
            return Ok(DomainVerification::AlreadyVerified);
        }
        let expected = format!("relayward-verification={}", d.verification_token);
        let found = match resolver.txt(&d.name).await {
            Ok(found) => found,
            // The name does not exist (yet): no record, the same answer as an empty one.
            Err(relayward_delivery::dns::DnsError::NotFound(_)) => Vec::new(),
            Err(relayward_delivery::dns::DnsError::Temporary(e)) => {
                invalid!(
                    "cannot check {} now ({e}); nothing changed, try again",
                    d.name
                )
            }
        };
        if !found.iter().any(|t| t.trim() == expected) {
            return Ok(DomainVerification::NotFound { expected, found });
        }
        // Proof of the name does not settle a clash with a domain an operator has vouched for
        // (or another tenant proved) since this one was added, above or below it: two tenants
        // would each hold the names between them. An operator decides which keeps it.
        self.unclaimed(tenant, &d.name, actor).await?;
        // Its DKIM keys are made now that it proves to be the tenant's (a name anyone may type
        // costs no key), and before it counts as verified: a verified domain always has keys.
        self.ensure_dkim_keys(&d.name).await?;
        self.store
            .set_domain_verified(tenant, &d.name, true)
            .await?;
        self.audit(
            actor,
            Some(tenant),
            "domain.verify",
            serde_json::json!({ "domain": d.name, "before": {"verified": false}, "after": {"verified": true}, "proof": expected }),
        )
        .await?;
        Ok(DomainVerification::Verified)
    }

    /// Refused (`Forbidden`) when `name` lies at, within or above a domain another tenant has
    /// verified: an operator is told whose, anyone else only that it is taken.
    async fn unclaimed(&self, tenant: &str, name: &str, actor: &Actor) -> Result<()> {
        let related = self.store.related_domains(name).await?;
        if let Some(theirs) = relayward_tenancy::claims::domain_clash(tenant, name, &related) {
            let whose = if actor.role == Role::Operator {
                format!("{} of tenant '{}'", theirs.name, theirs.tenant)
            } else {
                "a domain another tenant has verified".to_string()
            };
            return Err(crate::Forbidden(format!(
                "{name} lies within or above {whose}; a domain belongs to one tenant"
            )));
        }
        Ok(())
    }

    /// Adds an accepted domain to a tenant. Unless an operator vouches for it (`verified`, the
    /// command line only), it counts as registered once its TXT proof is found
    /// (`verify_domain`); the answer carries the record to publish.
    pub async fn add_domain(
        &self,
        tenant: &str,
        name: &str,
        kind: relayward_store::DomainKind,
        match_subdomains: bool,
        verified: bool,
        actor: &Actor,
    ) -> Result<relayward_store::Domain> {
        use relayward_store::DomainKind;
        if match_subdomains && kind != DomainKind::InternalRelay {
            invalid!("match_subdomains is for internal_relay domains only");
        }
        if verified && actor.role != Role::Operator {
            invalid!("only an operator can vouch for a domain; others publish the TXT record");
        }
        // A name written in Unicode is kept as its A-labels, the form DNS and DKIM use.
        let given = name.trim();
        let name = relayward_tenancy::domain_key(given).into_owned();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.contains('.')
            && name.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !valid {
            invalid!("'{given}' is not a domain name");
        }
        let have = self.store.tenant_data(tenant).await?;
        self.room_for(actor, "domains", have.map_or(0, |d| d.domains.len()))?;
        // A domain another tenant has proven is its own, or one above or below it, is not
        // for this tenant to claim (the exact name is refused by the store as a duplicate).
        self.unclaimed(tenant, &name, actor).await?;
        let d = relayward_store::Domain {
            tenant: tenant.to_string(),
            name: name.clone(),
            kind,
            match_subdomains,
            verified,
            verification_token: random_hex(16),
        };
        self.store.add_domain(&d).await?;
        // A domain an operator vouches for gets its DKIM keys at once; another gets them when
        // its TXT proof is found (`verify_domain`): a name anyone may type costs no key.
        if verified {
            self.ensure_dkim_keys(&name).await?;
        }
        self.audit(
            actor,
            Some(tenant),
            "domain.add",
            serde_json::json!({ "after": { "domain": name, "kind": kind.as_str(), "match_subdomains": match_subdomains, "verified": verified } }),
        )
        .await?;
        Ok(d)
    }

    /// Sets a tenant's automatic forwarding control: `on`, `off`, or `listed` with the domains
    /// its users may forward to.
    pub async fn set_forwarding(
        &self,
        tenant: &str,
        mode: &str,
        domains: &[String],
        actor: &Actor,
    ) -> Result<()> {
        let Some(mode) = relayward_store::Forwarding::parse(mode) else {
            invalid!("forwarding must be on, off or listed");
        };
        let domains: Vec<String> = domains
            .iter()
            .map(|d| relayward_tenancy::domain_key(d.trim()).into_owned())
            .filter(|d| !d.is_empty())
            .collect();
        if mode == relayward_store::Forwarding::Listed && domains.is_empty() {
            invalid!("listed forwarding needs at least one domain");
        }
        if domains.len() > MAX_FORWARDING_DOMAINS {
            invalid!(
                "at most {MAX_FORWARDING_DOMAINS} forwarding domains ({} given)",
                domains.len()
            );
        }
        if let Some(bad) = domains.iter().find(|d| !forwarding_domain(d)) {
            invalid!("'{bad}' is not a domain name");
        }
        let Some(before) = self.store.tenant(tenant).await? else {
            return Err(NotFound(format!("no tenant {tenant}")));
        };
        self.store.set_forwarding(tenant, mode, &domains).await?;
        self.audit(
            actor,
            Some(tenant),
            "tenant.forwarding",
            serde_json::json!({
                "before": { "forwarding": before.forwarding.as_str(), "domains": before.forwarding_domains },
                "after": { "forwarding": mode.as_str(), "domains": domains },
            }),
        )
        .await
    }
}
