//! Restrictions and their release workflow (SPEC section 8): list, show, release, the
//! remediation checklist, release requests, approval and refusal, attestation, and the facts
//! the checklist reads (connector and user flags, counters, lockouts).

use std::collections::HashMap;

use relayward_clock::now_ms;
use relayward_guard::checklist::{
    ChecklistInput, ChecklistItem, ConnectorFacts, checklist, open_items,
};
use relayward_guard::note::Note;
use relayward_guard::{CounterView, Kind, Restriction, Role, State, TenantCounters};
use relayward_store::RestrictionRow;

use crate::{Actor, Control, DAY, Result, Via, require_mfa};

impl Control {
    pub async fn restriction(&self, id: &str) -> Result<Restriction> {
        let row = self.store.restriction(id).await?;
        restriction_from_row(&row).ok_or_else(|| {
            crate::Internal(format!(
                "restriction {id} is stored in a form this version cannot read"
            ))
        })
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
        if !self.store.save_restriction(&restriction_row(after)).await? {
            return Err(crate::Conflict(format!(
                "{} is already restricted",
                after.key
            )));
        }
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

    /// Moves a restriction through the state machine with `step`, stores it and audits it.
    async fn transition<E: std::fmt::Display>(
        &self,
        before: Restriction,
        actor: &Actor,
        action: &str,
        step: impl FnOnce(&mut Restriction) -> std::result::Result<(), E>,
    ) -> Result<Restriction> {
        let mut after = before.clone();
        step(&mut after).map_err(|e| crate::Conflict(e.to_string()))?;
        self.save(&before, &after, actor, action).await?;
        Ok(after)
    }

    pub async fn release(&self, id: &str, actor: &Actor, note: &str) -> Result<Restriction> {
        note_fits(note)?;
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

    /// An operator restricts a tenant (`TenantThreshold`: all its mail, 5.7.705;
    /// `TenantUnregistered`: its mail from unregistered domains, 5.7.750), one of its
    /// connectors (5.7.711) or users (5.1.8) by hand. The running relay enforces it within a
    /// second or two, like any stored restriction.
    pub async fn restrict(
        &self,
        tenant: &str,
        kind: Kind,
        name: &str,
        note: &str,
        actor: &Actor,
    ) -> Result<Restriction> {
        if actor.role != Role::Operator {
            return Err(crate::Forbidden("only operators restrict by hand".into()));
        }
        note_fits(note)?;
        if note.trim().is_empty() {
            invalid!("say why (the tenant's admins read it)");
        }
        let Some(data) = self.store.tenant_data(tenant).await? else {
            return Err(crate::NotFound(format!("no tenant {tenant}")));
        };
        let name = match kind {
            Kind::TenantThreshold | Kind::TenantUnregistered => String::new(),
            Kind::Connector => match data.connectors.iter().find(|c| c.name == name.trim()) {
                Some(c) => c.name.clone(),
                None => invalid!("tenant {tenant} has no connector '{}'", name.trim()),
            },
            Kind::User => match data
                .users
                .iter()
                .find(|u| u.address.eq_ignore_ascii_case(name.trim()))
            {
                Some(u) => u.address.to_ascii_lowercase(),
                None => invalid!("tenant {tenant} has no user '{}'", name.trim()),
            },
        };
        let key = relayward_guard::Key {
            tenant: tenant.to_string(),
            kind,
            name,
        };
        if self
            .restrictions(Some(tenant), false)
            .await?
            .iter()
            .any(|r| r.key == key && r.blocks())
        {
            return Err(crate::Conflict(format!("{key} is already restricted")));
        }
        let now = now_ms();
        let mut r = Restriction::start(
            format!("Rop{now:x}{}", crate::random_hex(2)),
            key,
            relayward_guard::Reason::Operator,
            relayward_guard::Cause::default(),
            now,
        );
        if let Some(first) = r.history.first_mut() {
            first.actor = actor.name.clone();
            first.role = Role::Operator;
            first.note = note.trim().to_string();
        }
        if !self.store.save_restriction(&restriction_row(&r)).await? {
            return Err(crate::Conflict(format!("{} is already restricted", r.key)));
        }
        crate::webhooks::emit(
            self.store.as_ref(),
            tenant,
            "restriction",
            serde_json::to_value(&r).unwrap_or_default(),
        )
        .await;
        self.audit(
            actor,
            Some(tenant),
            "restriction.start",
            serde_json::json!({ "restriction": r.id, "subject": r.key.to_string(), "after": "restricted", "note": note.trim() }),
        )
        .await?;
        Ok(r)
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
            .filter(|a| crate::AccountRole::parse(&a.role) == Some(crate::AccountRole::Admin))
            .map(|a| {
                let mfa = a.totp_secret.is_some() && a.setup_token_hash.is_none();
                (a.email, mfa)
            })
            .collect();
        // This tenant's objects only: a directory of one tenant answers the same questions
        // about it as the whole one, without loading a million tenants.
        let data = self.store.tenant_data(tenant).await?.unwrap_or_default();
        let dir = crate::reads::one_tenant_directory(&data);
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
                let unusual = connector_flags(c, now, &carried)
                    .iter()
                    .map(Note::english)
                    .collect();
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
            item.set_evidence(vec![Note::new("traffic_wait", &[])]);
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
        note_fits(note)?;
        let before = self.restriction(id).await?;
        if !before.key.kind.is_tenant() {
            invalid!(
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
            invalid!("{e}");
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
                    via: Via::System,
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
        note_fits(note)?;
        require_mfa(actor, "approving the release of")?;
        let before = self.restriction(id).await?;
        self.transition(before, actor, "restriction.approve", |r| {
            r.approve(&actor.name, actor.role, note, now_ms())
        })
        .await
    }

    pub async fn refuse(&self, id: &str, actor: &Actor, reason: &str) -> Result<Restriction> {
        if reason.trim().is_empty() {
            invalid!("a refusal needs a reason the tenant's admins can act on");
        }
        note_fits(reason)?;
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
            .await?;
        self.audit(actor, Some(tenant), "connector.review", serde_json::json!({ "connector": name, "before": {"reviewed": false}, "after": {"reviewed": true} })).await
    }

    /// Each connector's unusual flags, for listings (the connectors carrying the traffic of the
    /// tenant's open restrictions count as such).
    pub async fn connector_flags(
        &self,
        connectors: &[relayward_store::Connector],
        tenant: &str,
    ) -> Result<HashMap<String, Vec<Note>>> {
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
    pub async fn user_flags(&self, tenant: &str) -> Result<HashMap<String, Vec<Note>>> {
        let now = now_ms();
        let mut flags: HashMap<String, Vec<Note>> = HashMap::new();
        for r in self.restrictions(Some(tenant), false).await? {
            if r.key.kind == Kind::User {
                flags
                    .entry(r.key.name.to_ascii_lowercase())
                    .or_default()
                    .push(Note::new(
                        "flag_restricted",
                        &[
                            ("state", r.state.as_str().to_string()),
                            ("id", r.id.clone()),
                        ],
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
                    .push(Note::new("flag_compromised", &[]));
            }
        }
        Ok(flags)
    }

    /// A tenant's counters as the relay last saved them (about twice a second): in a cluster,
    /// the sum of every node's.
    async fn stored_counters(&self, tenant: &str) -> Result<Option<TenantCounters>> {
        Ok(
            crate::saved_counters::combined(self.store.counters(Some(tenant)).await?)
                .into_iter()
                .next()
                .map(|(_, c)| c),
        )
    }

    /// Every counter of a tenant beside its threshold, as last saved by the relay (about once
    /// a second).
    /// The tenant's SMTP AUTH lockouts that are in force or ended in the last 24 hours.
    pub async fn auth_lockouts(&self, tenant: &str) -> Result<Vec<relayward_store::AuthLockout>> {
        Ok(self.store.auth_lockouts(tenant, now_ms() - DAY).await?)
    }

    /// A tenant's traffic for charts: the last 24 hours by hour (from the counters the relay
    /// last saved), the last 30 days by day (from the message trace), and its limits.
    pub async fn traffic(&self, tenant: &str) -> Result<Traffic> {
        let now = now_ms();
        let hours = self
            .stored_counters(tenant)
            .await?
            .map(|c| c.tenant.day.series(now, 24))
            .unwrap_or_else(|| relayward_guard::Window::day().series(now, 24));
        let today = now.div_euclid(DAY) * DAY;
        let first = today - 29 * DAY;
        let found = self.store.daily_traffic(tenant, first).await?;
        let days = (0..30)
            .map(|k| {
                let day_start = first + k * DAY;
                found
                    .iter()
                    .find(|d| d.day_start == day_start)
                    .copied()
                    .unwrap_or(relayward_store::DayTraffic {
                        day_start,
                        messages: 0,
                        recipients: 0,
                        suspicious: 0,
                    })
            })
            .collect();
        Ok(Traffic {
            hours,
            days,
            limits: self.limits(tenant).await?,
        })
    }

    pub async fn counters(&self, tenant: &str) -> Result<Vec<CounterView>> {
        let counters = self.stored_counters(tenant).await?;
        let limits = self.limits(tenant).await?;
        Ok(relayward_guard::view(counters.as_ref(), &limits, now_ms()))
    }
}

/// What the traffic charts draw.
pub struct Traffic {
    /// 24 points, one an hour, oldest first: (start, counts).
    pub hours: Vec<(i64, relayward_guard::Counts)>,
    /// 30 points, one a UTC day, oldest first.
    pub days: Vec<relayward_store::DayTraffic>,
    pub limits: relayward_guard::Limits,
}

/// Why a connector looks unusual (SPEC section 8, checklist item 3): new, accepting a very wide
/// range, or named in a restriction's cause as carrying the restricted traffic.
pub fn connector_flags(c: &relayward_store::Connector, now: i64, carried: &[&String]) -> Vec<Note> {
    let mut unusual = Vec::new();
    if now - c.created_at * 1000 < 7 * DAY {
        unusual.push(Note::new("flag_new", &[]));
    }
    for ip in &c.ips {
        if let Some(net) = relayward_tenancy::parse_net(ip) {
            let wide = match net {
                ipnet::IpNet::V4(n) => n.prefix_len() < 24,
                ipnet::IpNet::V6(n) => n.prefix_len() < 48,
            };
            if wide {
                unusual.push(Note::new("flag_wide", &[("range", ip.clone())]));
            }
        }
    }
    if carried.contains(&&c.name) {
        unusual.push(Note::new("flag_carried", &[]));
    }
    if c.relay_unregistered && c.cert_name.is_none() {
        unusual.push(Note::new("flag_ip_only", &[]));
    }
    unusual
}

/// A restriction as the store keeps it: its key fields for queries and the whole of it as JSON.
pub fn restriction_row(r: &Restriction) -> RestrictionRow {
    RestrictionRow {
        id: r.id.clone(),
        tenant: r.key.tenant.clone(),
        kind: r.key.kind.as_str().to_string(),
        name: r.key.name.clone(),
        state: r.state.as_str().to_string(),
        started_at: r.started_at,
        updated_at: r.updated_at(),
        body: serde_json::to_string(r).unwrap_or_default(),
    }
}

/// The restriction kept in a row; `None` when this version cannot read it.
pub fn restriction_from_row(row: &RestrictionRow) -> Option<Restriction> {
    serde_json::from_str(&row.body).ok()
}

/// The longest note a restriction's history keeps, in characters. Every transition's note stays
/// with the restriction (read by the guard, the console and the audit log), so it is bounded
/// as everything a tenant's admin writes is.
const MAX_NOTE_CHARS: usize = 2000;

fn note_fits(note: &str) -> Result<()> {
    let n = note.trim().chars().count();
    if n > MAX_NOTE_CHARS {
        invalid!("a note has at most {MAX_NOTE_CHARS} characters ({n} given)");
    }
    Ok(())
}
