//! Admin and operator actions on restrictions (SPEC section 8), in one place: the command line
//! calls it today, the management API and the consoles will call the same functions. Every
//! action checks who may do it, moves the restriction through the guard's state machine, stores
//! it (running nodes pick the change up within a second) and writes the audit log.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use relayward_guard::checklist::{
    ChecklistInput, ChecklistItem, ConnectorFacts, checklist, open_items,
};
use relayward_guard::{CounterView, Kind, Limits, Restriction, Role, State, TenantCounters};
use relayward_store::{AuditEntry, Store};
use relayward_tenancy::Directory;

use crate::guard::{now_ms, restriction_from_row, restriction_row};

/// Who acts, from where, and whether they passed a second factor.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub client: String,
    pub mfa: bool,
}

impl Actor {
    fn role_str(&self) -> &'static str {
        match self.role {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::System => "system",
        }
    }
}

/// Something asked for is not there (or belongs to another tenant): the API answers 404.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The request clashes with the object's state right now (the API answers 409).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Conflict(pub String);

/// What a domain ownership check found.
#[derive(Debug)]
pub enum DomainVerification {
    Verified,
    AlreadyVerified,
    /// The TXT records present (maybe none) and the one that was expected.
    NotFound {
        expected: String,
        found: Vec<String>,
    },
}

pub struct Service {
    pub store: Arc<dyn Store>,
    pub defaults: Limits,
    pub tenant_limits: HashMap<String, Limits>,
    pub auto_approve: bool,
    /// The widest connector range a tenant may claim without an operator's allowance.
    pub widest: crate::claims::Widest,
    /// The running relay's bounded password checkers (sign-ins use them as SMTP AUTH does);
    /// `None` on the command line.
    pub passwords: Option<Arc<crate::passwords::Checker>>,
}

const DAY: i64 = 86_400_000;

impl Service {
    /// The tenant's limits: its configuration override, else the overrides set through the
    /// API, else the service-wide defaults.
    pub async fn limits(&self, tenant: &str) -> Result<Limits> {
        if let Some(l) = self.tenant_limits.get(tenant) {
            return Ok(l.clone());
        }
        let stored = self.store.tenant_limits().await?;
        match stored.iter().find(|(t, _)| t == tenant) {
            Some((_, json)) => crate::config::limits_from_overrides(&self.defaults, json),
            None => Ok(self.defaults.clone()),
        }
    }

    /// The overrides set through the API for a tenant (`{}` for none).
    pub async fn limit_overrides(&self, tenant: &str) -> Result<serde_json::Value> {
        let stored = self.store.tenant_limits().await?;
        Ok(stored
            .iter()
            .find(|(t, _)| t == tenant)
            .and_then(|(_, j)| serde_json::from_str(j).ok())
            .unwrap_or_else(|| serde_json::json!({})))
    }

    /// Replaces a tenant's limit overrides (operators): a JSON object of `[limits]` keys;
    /// `{}` goes back to the service-wide defaults. The running relay applies them within a
    /// second or two.
    pub async fn set_limits(
        &self,
        tenant: &str,
        overrides: &serde_json::Value,
        actor: &Actor,
    ) -> Result<Limits> {
        if actor.role != Role::Operator {
            return Err(crate::directory_admin::Forbidden(
                "limits are the operator's to change".into(),
            )
            .into());
        }
        if self.store.tenant(tenant).await?.is_none() {
            return Err(NotFound(format!("no tenant {tenant}")).into());
        }
        if self.tenant_limits.contains_key(tenant) {
            return Err(relayward_store::StoreError::ManagedByConfig(tenant.to_string()).into());
        }
        let text = overrides.to_string();
        let effective = crate::config::limits_from_overrides(&self.defaults, &text)?;
        let before = self.limit_overrides(tenant).await?;
        self.store.set_tenant_limits(tenant, &text).await?;
        self.audit(
            actor,
            Some(tenant),
            "tenant.limits",
            serde_json::json!({ "before": before, "after": overrides }),
        )
        .await?;
        Ok(effective)
    }

    pub async fn restriction(&self, id: &str) -> Result<Restriction> {
        let row = self.store.restriction(id).await?;
        restriction_from_row(&row)
            .ok_or_else(|| anyhow!("restriction {id} is stored in a form this version cannot read"))
    }

    pub async fn restrictions(&self, tenant: Option<&str>, all: bool) -> Result<Vec<Restriction>> {
        let rows = self.store.restrictions(tenant, !all).await?;
        Ok(rows.iter().filter_map(restriction_from_row).collect())
    }

    async fn save(
        &self,
        before: &Restriction,
        after: &Restriction,
        actor: &Actor,
        action: &str,
    ) -> Result<()> {
        self.store.save_restriction(&restriction_row(after)).await?;
        crate::webhooks::emit(
            self.store.as_ref(),
            &after.key.tenant,
            "restriction",
            serde_json::to_value(after).unwrap_or_default(),
        )
        .await;
        self.audit(
            actor,
            Some(&after.key.tenant),
            action,
            serde_json::json!({
                "restriction": after.id,
                "subject": after.key.to_string(),
                "before": before.state.as_str(),
                "after": after.state.as_str(),
                "note": after.history.last().map(|t| t.note.clone()),
            }),
        )
        .await
    }

    pub async fn audit(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.store
            .audit(&AuditEntry {
                at: now_ms(),
                actor: actor.name.clone(),
                role: actor.role_str().to_string(),
                tenant: tenant.map(str::to_string),
                action: action.to_string(),
                client: actor.client.clone(),
                mfa: actor.mfa,
                detail: detail.to_string(),
            })
            .await?;
        Ok(())
    }

    /// Releases a user or connector (admins: 3 times per subject in 24 h), or, for operators,
    /// any restriction directly.
    /// Moves a restriction through the state machine with `step`, stores it and audits it.
    async fn transition<E: std::fmt::Display>(
        &self,
        before: Restriction,
        actor: &Actor,
        action: &str,
        step: impl FnOnce(&mut Restriction) -> std::result::Result<(), E>,
    ) -> Result<Restriction> {
        let mut after = before.clone();
        step(&mut after).map_err(|e| anyhow!("{e}"))?;
        self.save(&before, &after, actor, action).await?;
        Ok(after)
    }

    pub async fn release(&self, id: &str, actor: &Actor, note: &str) -> Result<Restriction> {
        require_mfa(actor, "releasing")?;
        let before = self.restriction(id).await?;
        let now = now_ms();
        let admin_releases = self
            .restrictions(Some(&before.key.tenant), true)
            .await?
            .iter()
            .filter(|r| r.key == before.key)
            .flat_map(|r| r.history.iter())
            .filter(|t| t.role == Role::Admin && t.to == State::Probation && now - t.at < DAY)
            .count();
        self.transition(before, actor, "restriction.release", |r| {
            r.release(&actor.name, actor.role, admin_releases, note, now)
        })
        .await
    }

    /// The remediation checklist of a tenant restriction, from live data.
    pub async fn checklist(&self, r: &Restriction) -> Result<Vec<ChecklistItem>> {
        let now = now_ms();
        let tenant = &r.key.tenant;
        let limits = self.limits(tenant).await?;
        // Every admin account of the tenant, and whether it signs in with a second factor
        // (an account has TOTP once its setup is finished).
        let admins: Vec<(String, bool)> = self
            .store
            .accounts(Some(tenant))
            .await?
            .into_iter()
            .filter(|a| a.role == "admin")
            .map(|a| {
                let mfa = a.totp_secret.is_some() && a.setup_token_hash.is_none();
                (a.email, mfa)
            })
            .collect();
        // This tenant's objects only: a directory of one tenant answers the same questions
        // about it as the whole one, without loading a million tenants.
        let data = self.store.tenant_data(tenant).await?.unwrap_or_default();
        let dir = Directory::build(relayward_store::DirectoryData {
            tenants: data.tenant.clone().into_iter().collect(),
            domains: data.domains.clone(),
            connectors: data.connectors.clone(),
            users: data.users.clone(),
            routes: data.routes.clone(),
        });
        let counters = self.stored_counters(tenant).await?;
        let dismissed = self.store.dismissed_domains(tenant).await?;
        let mut seen: Vec<String> = r
            .cause
            .top_sender_domains
            .iter()
            .map(|(d, _)| d.clone())
            .collect();
        if let Some(c) = &counters {
            for s in c
                .samples
                .iter()
                .filter(|s| s.at >= r.started_at && s.unregistered)
            {
                if !seen.contains(&s.sender_domain) {
                    seen.push(s.sender_domain.clone());
                }
            }
        }
        let domains = seen
            .into_iter()
            .filter(|d| !d.is_empty())
            .map(|d| {
                let accepted = dir.is_accepted_by(tenant, &d);
                let gone = dismissed.iter().any(|x| x.eq_ignore_ascii_case(&d));
                (d, accepted, gone)
            })
            .collect();
        let carried: Vec<&String> = r.cause.top_connectors.iter().map(|(c, _)| c).collect();
        let connectors = data
            .connectors
            .iter()
            .map(|c| {
                let unusual = connector_flags(c, now, &carried);
                ConnectorFacts {
                    name: c.name.clone(),
                    created_at: c.created_at * 1000,
                    changed_at: c.created_at * 1000,
                    reviewed: c.reviewed,
                    unusual,
                }
            })
            .collect();
        let mut flagged_users: Vec<(String, bool)> = self
            .restrictions(Some(tenant), true)
            .await?
            .into_iter()
            .filter(|u| u.key.kind == Kind::User && now - u.started_at < 30 * DAY)
            .map(|u| (u.key.name.clone(), !u.blocks()))
            .collect();
        // Users the behavioural signals flagged "possibly compromised" count as flagged too;
        // reviewed once the tenant attests its remediation after the flag.
        let attested_at = self.store.attestation(&r.id).await?.map(|(_, at)| at);
        for a in self.store.alerts(Some(tenant), 1000).await? {
            if a.kind == "possibly_compromised"
                && now - a.at < 30 * DAY
                && a.subject.contains('@')
                && !flagged_users.iter().any(|(u, _)| *u == a.subject)
            {
                let reviewed = attested_at.is_some_and(|at| at > a.at);
                flagged_users.push((a.subject.clone(), reviewed));
            }
        }
        let attested = self.store.attestation(&r.id).await?;
        let (mut recent_messages, mut recent_suspicious, mut recent_refused) = (0, 0, 0);
        if let Some(c) = &counters {
            let since = attested.as_ref().map_or(now, |(_, at)| *at);
            let hour = c.tenant.hour.peek(now);
            recent_messages = u64::from(hour.messages);
            for s in c.samples.iter().filter(|s| s.at > since) {
                if s.refused {
                    recent_refused += 1;
                } else if s.suspicious {
                    recent_suspicious += 1;
                }
            }
        }
        let mut items = checklist(&ChecklistInput {
            domains,
            admins,
            connectors,
            flagged_users,
            attested: attested.clone(),
            recent_messages,
            recent_suspicious,
            recent_refused,
            max_suspicious_ratio: limits.tenant_suspicious_ratio,
            now,
        });
        if attested.is_none()
            && let Some(item) = items.iter_mut().find(|i| i.number == 6)
        {
            item.done = false;
            item.evidence =
                vec!["traffic is judged from the attestation (item 5) on; none yet".into()];
        }
        Ok(items)
    }

    /// A tenant admin requests release of a tenant restriction; refused while the checklist
    /// has open items. With automatic approval on, a complete, low-risk request (no other
    /// tenant restriction in 30 days) is approved at once.
    pub async fn request_release(
        &self,
        id: &str,
        actor: &Actor,
        note: &str,
    ) -> Result<Restriction> {
        let before = self.restriction(id).await?;
        if !before.key.kind.is_tenant() {
            bail!(
                "{} is released directly (relayward restriction release {id})",
                before.key
            );
        }
        let items = self.checklist(&before).await?;
        let mut after = before.clone();
        let now = now_ms();
        let result = after.request_release(&actor.name, open_items(&items), note, now);
        if let Err(e) = result {
            self.audit(
                actor,
                Some(&before.key.tenant),
                "restriction.request_release.refused",
                serde_json::json!({ "restriction": id, "reason": e.to_string() }),
            )
            .await?;
            bail!("{e}");
        }
        self.save(&before, &after, actor, "restriction.request_release")
            .await?;
        if self.auto_approve {
            let others = self
                .restrictions(Some(&before.key.tenant), true)
                .await?
                .iter()
                .filter(|r| {
                    r.id != before.id && r.key.kind.is_tenant() && now - r.started_at < 30 * DAY
                })
                .count();
            if others == 0 {
                let system = Actor {
                    name: "relayward (automatic approval)".into(),
                    role: Role::System,
                    client: "relayward".into(),
                    mfa: false,
                };
                return self
                    .approve(
                        id,
                        &system,
                        "complete, low-risk request approved automatically",
                    )
                    .await;
            }
        }
        Ok(after)
    }

    pub async fn approve(&self, id: &str, actor: &Actor, note: &str) -> Result<Restriction> {
        require_mfa(actor, "approving the release of")?;
        let before = self.restriction(id).await?;
        self.transition(before, actor, "restriction.approve", |r| {
            r.approve(&actor.name, actor.role, note, now_ms())
        })
        .await
    }

    pub async fn refuse(&self, id: &str, actor: &Actor, reason: &str) -> Result<Restriction> {
        if reason.trim().is_empty() {
            bail!("a refusal needs a reason the tenant's admins can act on");
        }
        let before = self.restriction(id).await?;
        self.transition(before, actor, "restriction.refuse", |r| {
            r.refuse(&actor.name, actor.role, reason, now_ms())
        })
        .await
    }

    /// Checklist item 5.
    pub async fn attest(&self, id: &str, actor: &Actor) -> Result<()> {
        let r = self.restriction(id).await?;
        self.store.attest(id, &actor.name, now_ms()).await?;
        self.audit(actor, Some(&r.key.tenant), "restriction.attest", serde_json::json!({ "restriction": id, "statement": "the on-premises servers are locked down" })).await
    }

    /// Checklist item 1: a domain seen in restricted traffic that is not the tenant's.
    pub async fn dismiss_domain(&self, tenant: &str, domain: &str, actor: &Actor) -> Result<()> {
        self.store
            .dismiss_domain(tenant, domain, &actor.name, now_ms())
            .await?;
        self.audit(
            actor,
            Some(tenant),
            "domain.dismiss",
            serde_json::json!({ "domain": domain }),
        )
        .await
    }

    /// Checklist item 3.
    pub async fn review_connector(&self, tenant: &str, name: &str, actor: &Actor) -> Result<()> {
        self.store
            .set_connector_reviewed(tenant, name, true)
            .await
            .with_context(|| format!("reviewing connector {name}"))?;
        self.audit(actor, Some(tenant), "connector.review", serde_json::json!({ "connector": name, "before": {"reviewed": false}, "after": {"reviewed": true} })).await
    }

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
            return Err(NotFound(format!("tenant {tenant} has no domain {domain}")).into());
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
                bail!(
                    "cannot check {} now ({e}); nothing changed, try again",
                    d.name
                )
            }
        };
        if !found.iter().any(|t| t.trim() == expected) {
            return Ok(DomainVerification::NotFound { expected, found });
        }
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

    /// Each connector's unusual flags, for listings (the connectors carrying the traffic of the
    /// tenant's open restrictions count as such).
    pub async fn connector_flags(
        &self,
        connectors: &[relayward_store::Connector],
        tenant: &str,
    ) -> Result<HashMap<String, Vec<String>>> {
        let open = self.restrictions(Some(tenant), false).await?;
        let carried: Vec<&String> = open
            .iter()
            .flat_map(|r| r.cause.top_connectors.iter().map(|(c, _)| c))
            .collect();
        let now = now_ms();
        Ok(connectors
            .iter()
            .map(|c| (c.name.clone(), connector_flags(c, now, &carried)))
            .collect())
    }

    /// Each flagged user's flags: an open restriction, a "possibly compromised" alert in the
    /// last 24 hours.
    pub async fn user_flags(&self, tenant: &str) -> Result<HashMap<String, Vec<String>>> {
        let now = now_ms();
        let mut flags: HashMap<String, Vec<String>> = HashMap::new();
        for r in self.restrictions(Some(tenant), false).await? {
            if r.key.kind == Kind::User {
                flags
                    .entry(r.key.name.to_ascii_lowercase())
                    .or_default()
                    .push(format!(
                        "restricted ({}, restriction {})",
                        r.state.as_str(),
                        r.id
                    ));
            }
        }
        for a in self.store.alerts(Some(tenant), 1000).await? {
            if a.kind == "possibly_compromised" && now - a.at < DAY {
                let user = a
                    .subject
                    .strip_prefix("user ")
                    .unwrap_or(&a.subject)
                    .to_ascii_lowercase();
                flags
                    .entry(user)
                    .or_default()
                    .push("possibly compromised (behaviour signals in the last 24 h)".into());
            }
        }
        Ok(flags)
    }

    /// A tenant's counters as the relay last saved them (about twice a second).
    async fn stored_counters(&self, tenant: &str) -> Result<Option<TenantCounters>> {
        Ok(self
            .store
            .counters(Some(tenant))
            .await?
            .into_iter()
            .next()
            .and_then(|(_, body)| serde_json::from_str(&body).ok()))
    }

    /// Every counter of a tenant beside its threshold, as last saved by the relay (about once
    /// a second).
    /// The tenant's SMTP AUTH lockouts that are in force or ended in the last 24 hours.
    pub async fn auth_lockouts(&self, tenant: &str) -> Result<Vec<relayward_store::AuthLockout>> {
        Ok(self.store.auth_lockouts(tenant, now_ms() - DAY).await?)
    }

    pub async fn counters(&self, tenant: &str) -> Result<Vec<CounterView>> {
        let counters = self.stored_counters(tenant).await?;
        let limits = self.limits(tenant).await?;
        Ok(relayward_guard::view(counters.as_ref(), &limits, now_ms()))
    }
}

/// A random hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Why a connector looks unusual (SPEC section 8, checklist item 3): new, accepting a very wide
/// range, or named in a restriction's cause as carrying the restricted traffic.
pub fn connector_flags(
    c: &relayward_store::Connector,
    now: i64,
    carried: &[&String],
) -> Vec<String> {
    let mut unusual = Vec::new();
    if now - c.created_at * 1000 < 7 * DAY {
        unusual.push("created in the last 7 days".to_string());
    }
    for ip in &c.ips {
        if let Some(net) = relayward_tenancy::parse_net(ip) {
            let wide = match net {
                ipnet::IpNet::V4(n) => n.prefix_len() < 24,
                ipnet::IpNet::V6(n) => n.prefix_len() < 48,
            };
            if wide {
                unusual.push(format!("accepts a very wide range ({ip})"));
            }
        }
    }
    if carried.contains(&&c.name) {
        unusual.push("carried the restricted traffic".to_string());
    }
    if c.relay_unregistered && c.cert_name.is_none() {
        unusual.push("may relay for unregistered sender domains by IP address alone".to_string());
    }
    unusual
}

/// Lifting a restriction needs a person who passed a second factor (SPEC section 8): a console
/// session. The command line on the relay's own host (whoever runs it holds the server) and the
/// system's automatic approval are the exceptions; API tokens are not.
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} a restriction needs a sign-in with a second factor (a console session with TOTP); API tokens cannot do it"
)]
pub struct MfaRequired(&'static str);

fn require_mfa(actor: &Actor, what: &'static str) -> Result<()> {
    if actor.mfa || actor.client == "cli" || actor.role == Role::System {
        Ok(())
    } else {
        Err(MfaRequired(what).into())
    }
}

pub fn sha256_hex(s: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Why an API token was not accepted (all answer 401; the words go to the caller).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no API token (send Authorization: Bearer rw_...)")]
    Missing,
    #[error("the API token is not valid")]
    Invalid,
    #[error("the API token was revoked")]
    Revoked,
    #[error("the API token has expired")]
    Expired,
    #[error("{0}")]
    Store(String),
}

impl Service {
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
            bail!("match_subdomains is for internal_relay domains only");
        }
        if verified && actor.role != Role::Operator {
            bail!("only an operator can vouch for a domain; others publish the TXT record");
        }
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
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
            bail!("'{name}' is not a domain name");
        }
        // A domain another tenant has proven is its own, or one above or below it, is not
        // for this tenant to claim (the exact name is refused by the store as a duplicate).
        let related = self.store.related_domains(&name).await?;
        if let Some(theirs) = crate::claims::domain_clash(tenant, &name, &related) {
            let whose = if actor.role == Role::Operator {
                format!("{} of tenant '{}'", theirs.name, theirs.tenant)
            } else {
                "a domain another tenant has verified".to_string()
            };
            return Err(crate::directory_admin::Forbidden(format!(
                "{name} lies within or above {whose}; a domain belongs to one tenant"
            ))
            .into());
        }
        let d = relayward_store::Domain {
            tenant: tenant.to_string(),
            name: name.clone(),
            kind,
            match_subdomains,
            verified,
            verification_token: random_hex(16),
        };
        self.store.add_domain(&d).await?;
        // Its DKIM keys come with it, so the records to publish are there at once.
        self.ensure_dkim_keys(&name).await?;
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
            bail!("forwarding must be on, off or listed");
        };
        let domains: Vec<String> = domains
            .iter()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
            .collect();
        if mode == relayward_store::Forwarding::Listed && domains.is_empty() {
            bail!("listed forwarding needs at least one domain");
        }
        if let Some(bad) = domains
            .iter()
            .find(|d| !d.contains('.') || d.contains(['@', ' ', '/']))
        {
            bail!("'{bad}' is not a domain name");
        }
        let Some(before) = self.store.tenant(tenant).await? else {
            return Err(NotFound(format!("no tenant {tenant}")).into());
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

    /// An operator's action on a queued message (retry, hold, release, bounce, purge), audited
    /// with what the message was.
    pub async fn queue_action(
        &self,
        queue: &relayward_delivery::Queue,
        id: &str,
        action: relayward_delivery::QueueAction,
        actor: &Actor,
    ) -> Result<relayward_spool::Envelope> {
        use relayward_delivery::QueueActionError;
        if actor.role != Role::Operator {
            bail!("queue actions are the operator's");
        }
        let before = queue.act(id, action).await.map_err(|e| match e {
            QueueActionError::NotFound(_) => anyhow::Error::new(NotFound(e.to_string())),
            QueueActionError::InFlight(_) => anyhow::Error::new(Conflict(e.to_string())),
        })?;
        self.audit(
            actor,
            before.tenant.as_deref(),
            &format!("queue.{}", action.as_str()),
            serde_json::json!({
                "message": before.id,
                "sender": before.mail_from,
                "pending": before.pending().map(|r| r.address.clone()).collect::<Vec<_>>(),
                "before": { "held": before.held, "attempts": before.attempts, "next_attempt": before.next_attempt },
                "after": action.as_str(),
            }),
        )
        .await?;
        Ok(before)
    }

    /// Creates an API token: `operator`, or `admin`/`reader` of one tenant. Returns the token
    /// text (shown once; only its hash is kept) and what was stored.
    pub async fn create_token(
        &self,
        role: &str,
        tenant: Option<&str>,
        name: &str,
        valid_for: Option<std::time::Duration>,
        actor: &Actor,
    ) -> Result<(String, relayward_store::ApiToken)> {
        if actor.role != Role::Operator {
            bail!("only operators create API tokens from here");
        }
        match (role, tenant) {
            ("operator", None) | ("admin" | "reader", Some(_)) => {}
            ("operator", Some(_)) => bail!("an operator token belongs to no tenant"),
            ("admin" | "reader", None) => bail!("an {role} token needs its tenant"),
            _ => bail!("role must be operator, admin or reader (got {role})"),
        }
        let id = random_hex(6);
        let secret = random_hex(24);
        let now = now_ms();
        let t = relayward_store::ApiToken {
            id: id.clone(),
            name: name.to_string(),
            role: role.to_string(),
            tenant: tenant.map(str::to_string),
            secret_hash: sha256_hex(&secret),
            created_at: now,
            expires_at: valid_for.map(|d| now + d.as_millis() as i64),
            last_used_at: None,
            revoked_at: None,
        };
        self.store.add_token(&t).await?;
        self.audit(
            actor,
            tenant,
            "token.create",
            serde_json::json!({ "after": { "id": id, "name": name, "role": role, "expires_at": t.expires_at } }),
        )
        .await?;
        Ok((format!("rw_{id}_{secret}"), t))
    }

    pub async fn revoke_token(&self, id: &str, actor: &Actor) -> Result<()> {
        let t = self
            .store
            .token(id)
            .await?
            .ok_or_else(|| anyhow!("token '{id}' does not exist"))?;
        self.store.revoke_token(id, now_ms()).await?;
        self.audit(
            actor,
            t.tenant.as_deref(),
            "token.revoke",
            serde_json::json!({ "before": { "id": id, "revoked": t.revoked_at.is_some() }, "after": { "id": id, "revoked": true } }),
        )
        .await
    }

    /// The stored token behind `rw_<id>_<secret>`, when it is valid now; records its use.
    pub async fn authenticate_token(
        &self,
        text: &str,
    ) -> std::result::Result<relayward_store::ApiToken, TokenError> {
        let rest = text.strip_prefix("rw_").ok_or(TokenError::Invalid)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Invalid)?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Invalid);
        }
        let t = self
            .store
            .token(id)
            .await
            .map_err(|e| TokenError::Store(e.to_string()))?
            .ok_or(TokenError::Invalid)?;
        // Both sides are hashes of fixed length: comparing every byte leaks nothing useful.
        let given = sha256_hex(secret);
        if !crate::accounts::same(given.as_bytes(), t.secret_hash.as_bytes()) {
            return Err(TokenError::Invalid);
        }
        let now = now_ms();
        if t.revoked_at.is_some() {
            return Err(TokenError::Revoked);
        }
        if t.expires_at.is_some_and(|e| now >= e) {
            return Err(TokenError::Expired);
        }
        // Last use is bookkeeping: a failed write does not refuse the caller.
        if let Err(e) = self.store.touch_token(id, now).await {
            tracing::warn!(error = %e, "cannot record the token's last use");
        }
        Ok(t)
    }
}
