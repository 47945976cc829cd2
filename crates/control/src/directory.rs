//! Tenants, connectors, users and inbound routes, changed through the management API, the
//! consoles or the command line: checked (every name a tenant adds is a claim, refused when it
//! touches another tenant's), stored, audited with what changed.

use relayward_clock::now_ms;
use relayward_guard::Role;
use relayward_store::{Connector, Route, Span, Tenant, User, UserView};
use relayward_tenancy::{claims, stored_address};
use serde::Deserialize;
use serde_json::json;

use crate::{Actor, Control, Forbidden, NotFound, Result};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub name: String,
    pub language: Option<String>,
    pub subscription_ends: Option<String>,
    #[serde(default)]
    pub admins: Vec<String>,
}

/// Fields to change; absent ones stay. `subscription_ends: null` makes it open-ended.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPatch {
    pub language: Option<String>,
    #[serde(default, with = "double_option")]
    pub subscription_ends: Option<Option<String>>,
    pub admins: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConnector {
    pub name: String,
    #[serde(default)]
    pub ips: Vec<String>,
    pub cert_name: Option<String>,
    #[serde(default)]
    pub require_tls: bool,
    #[serde(default)]
    pub relay_unregistered: bool,
    /// Operators only: allow ranges that overlap another tenant's connector.
    #[serde(default)]
    pub allow_overlap: bool,
    /// Operators only: allow ranges wider than the configured widest prefix.
    #[serde(default)]
    pub allow_wide: bool,
    /// Why the operator allows it (required with either allowance; kept in the audit log).
    pub reason: Option<String>,
}

/// Mail for one of the tenant's accepted domains goes to the tenant's own server `host`
/// (`name` or `name:port`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoute {
    pub domain: String,
    pub host: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub address: String,
    pub password: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub forward_to: Option<String>,
    #[serde(default)]
    pub forward_only: bool,
}

/// Fields to change; `forward_to: null` stops forwarding, `password: null` removes SMTP AUTH.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    #[serde(default, with = "double_option")]
    pub password: Option<Option<String>>,
    pub aliases: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    pub forward_to: Option<Option<String>>,
    pub forward_only: Option<bool>,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// `name`, `name:port`, an IPv4 address with an optional port, or `[v6]:port`.
fn is_host(s: &str) -> bool {
    let (name, port) = match s.rsplit_once(':') {
        Some((n, p)) if !n.contains(':') || n.starts_with('[') => (n, Some(p)),
        _ => (s, None),
    };
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return false;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// An e-mail address as a tenant's objects hold it.
fn is_address(s: &str) -> bool {
    relayward_names::within_mail_lengths(s)
        && s.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && d.contains('.')
                && !s.contains([' ', '<', '>', ',', ';'])
                && !d.contains('@')
        })
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

const MIN_SMTP_PASSWORD: usize = 12;
/// Alert recipients a tenant may list.
const MAX_ADMINS: usize = 50;

async fn hash_password(p: String) -> Result<String> {
    if p.chars().count() < MIN_SMTP_PASSWORD {
        invalid!("SMTP passwords need at least {MIN_SMTP_PASSWORD} characters");
    }
    tokio::task::spawn_blocking(move || relayward_tenancy::password::hash(&p))
        .await
        .map_err(|e| crate::Internal(format!("hashing stopped: {e}")))?
        .map_err(crate::Internal)
}

impl Control {
    async fn tenant_row(&self, name: &str) -> Result<Tenant> {
        self.store
            .tenant(name)
            .await?
            .ok_or_else(|| NotFound(format!("no tenant {name}")))
    }

    pub async fn create_tenant(&self, t: NewTenant, actor: &Actor) -> Result<Tenant> {
        if actor.role != Role::Operator {
            return Err(Forbidden("only operators add tenants".into()));
        }
        if !is_name(&t.name) {
            invalid!("a tenant name is 1 to 64 letters, digits, '.', '-' or '_'");
        }
        let language = t.language.unwrap_or_else(|| "en".into());
        if language != "en" && language != "es" {
            invalid!("language must be en or es");
        }
        if let Some(d) = t
            .subscription_ends
            .as_deref()
            .filter(|d| !relayward_clock::is_date(d))
        {
            invalid!("subscription_ends '{d}' is not a date like 2027-12-31");
        }
        if let Some(a) = t.admins.iter().find(|a| !is_address(a)) {
            invalid!("admin '{a}' is not an e-mail address");
        }
        self.check_admin_addresses(&t.name, &t.admins).await?;
        let tenant = Tenant {
            name: t.name,
            language,
            subscription_ends: t.subscription_ends,
            admins: t.admins,
            managed_by_config: false,
            forwarding: Default::default(),
            forwarding_domains: Vec::new(),
        };
        self.store.add_tenant(&tenant).await?;
        self.audit(
            actor,
            Some(&tenant.name),
            "tenant.create",
            json!({ "after": tenant }),
        )
        .await?;
        Ok(tenant)
    }

    /// Language and admins: the tenant's admins; the subscription date: operators only.
    pub async fn update_tenant(&self, name: &str, p: TenantPatch, actor: &Actor) -> Result<Tenant> {
        let before = self.tenant_row(name).await?;
        let mut after = before.clone();
        if let Some(l) = p.language {
            if l != "en" && l != "es" {
                invalid!("language must be en or es");
            }
            after.language = l;
        }
        if let Some(ends) = p.subscription_ends {
            if actor.role != Role::Operator {
                return Err(Forbidden(
                    "the subscription date is the operator's to change".into(),
                ));
            }
            if let Some(d) = ends.as_deref().filter(|d| !relayward_clock::is_date(d)) {
                invalid!("subscription_ends '{d}' is not a date like 2027-12-31");
            }
            after.subscription_ends = ends;
        }
        if let Some(admins) = p.admins {
            if let Some(a) = admins.iter().find(|a| !is_address(a)) {
                invalid!("admin '{a}' is not an e-mail address");
            }
            self.check_admin_addresses(name, &admins).await?;
            after.admins = admins;
        }
        self.store.update_tenant(&after).await?;
        self.audit(
            actor,
            Some(name),
            "tenant.update",
            json!({ "before": before, "after": after }),
        )
        .await?;
        Ok(after)
    }

    pub async fn add_connector(
        &self,
        tenant: &str,
        c: NewConnector,
        actor: &Actor,
    ) -> Result<Connector> {
        let Some(data) = self.store.tenant_data(tenant).await? else {
            return Err(NotFound(format!("no tenant {tenant}")));
        };
        if !is_name(&c.name) {
            invalid!("a connector name is 1 to 64 letters, digits, '.', '-' or '_'");
        }
        self.room_for(actor, "connectors", data.connectors.len())?;
        if c.ips.len() > claims::MOST_RANGES {
            invalid!(
                "a connector lists at most {} addresses or ranges (this one {}); make another connector for more",
                claims::MOST_RANGES,
                c.ips.len()
            );
        }
        let mut ranges = Vec::with_capacity(c.ips.len());
        for ip in &c.ips {
            match relayward_tenancy::parse_net(ip) {
                Some(n) => ranges.push(n.trunc()),
                None => invalid!("\"{ip}\" is not an address or CIDR range"),
            }
        }
        let cert_name = c
            .cert_name
            .map(|n| n.trim().to_ascii_lowercase())
            .filter(|n| !n.is_empty());
        if ranges.is_empty() && cert_name.is_none() {
            invalid!("a connector needs ips or a cert_name");
        }
        let reason = c.reason.as_deref().map(str::trim).unwrap_or("");
        if c.allow_overlap || c.allow_wide {
            if actor.role != Role::Operator {
                return Err(Forbidden(
                    "only an operator may allow a connector range that overlaps another tenant's or is wider than the limit".into(),
                ));
            }
            if reason.is_empty() {
                invalid!("allow_overlap and allow_wide need a reason (it goes into the audit log)");
            }
        }
        if !c.allow_wide
            && let Some((net, limit)) = claims::too_wide(&ranges, self.widest)
        {
            return Err(Forbidden(format!(
                "{net} is wider than /{limit}, the widest range a connector may claim; list the servers' own addresses (an operator may allow a wider range)"
            )));
        }
        if !c.allow_overlap && !ranges.is_empty() {
            let spans: Vec<Span> = ranges
                .iter()
                .map(|n| Span::of(n.network(), n.prefix_len()))
                .collect();
            let existing = self.store.connectors_touching(&spans).await?;
            if let Some((ours, theirs, other)) = claims::overlapping(tenant, &ranges, &existing) {
                // A tenant admin learns that the range is taken, not by whom.
                let whose = if actor.role == Role::Operator {
                    format!(
                        "connector '{}' of tenant '{}' ({theirs})",
                        other.name, other.tenant
                    )
                } else {
                    "a connector of another tenant".to_string()
                };
                return Err(Forbidden(format!(
                    "{ours} overlaps {whose}: a source address belongs to one tenant; ask the operator if the servers are shared"
                )));
            }
        }
        if let Some(n) = cert_name.as_deref()
            && !claims::cert_name_allowed(n, &data.domains)
        {
            return Err(Forbidden(format!(
                "certificate name {n} is not within one of the tenant's verified accepted domains"
            )));
        }
        let connector = Connector {
            tenant: tenant.to_string(),
            name: c.name,
            ips: c.ips,
            cert_name,
            require_tls: c.require_tls,
            relay_unregistered: c.relay_unregistered,
            created_by: actor.name.clone(),
            created_at: now_ms() / 1000,
            reviewed: false,
        };
        self.store.add_connector(&connector).await?;
        let allowed = (c.allow_overlap || c.allow_wide).then(|| {
            json!({ "overlap": c.allow_overlap, "wide": c.allow_wide, "reason": reason, "by": actor.name })
        });
        self.audit(
            actor,
            Some(tenant),
            "connector.create",
            json!({ "after": connector, "mfa": actor.mfa, "allowed": allowed }),
        )
        .await?;
        Ok(connector)
    }

    pub async fn delete_connector(&self, tenant: &str, name: &str, actor: &Actor) -> Result<()> {
        self.store.delete_connector(tenant, name).await?;
        self.audit(
            actor,
            Some(tenant),
            "connector.delete",
            json!({ "before": { "connector": name } }),
        )
        .await
    }

    /// Admin addresses (alert recipients) may be anywhere but in another tenant's domains: a
    /// tenant must not have its alerts mailed into someone else's organisation.
    async fn check_admin_addresses(&self, tenant: &str, admins: &[String]) -> Result<()> {
        if admins.len() > MAX_ADMINS {
            invalid!("at most {MAX_ADMINS} admin addresses");
        }
        for a in admins {
            // The address's domain and its parents: a few lookups by name, never a scan.
            let domain = relayward_tenancy::domain_of(a).trim().to_ascii_lowercase();
            let mut theirs = false;
            let mut at = Some(domain.as_str());
            while let Some(name) = at.filter(|n| n.contains('.')) {
                match self.store.domain(name).await {
                    Ok(d) if d.tenant != tenant => theirs = true,
                    Ok(_) | Err(relayward_store::StoreError::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                at = name.split_once('.').map(|(_, rest)| rest);
            }
            if theirs {
                return Err(Forbidden(format!(
                    "admin '{a}' is in an accepted domain of another tenant"
                )));
            }
        }
        Ok(())
    }

    async fn user_row(&self, tenant: &str, address: &str) -> Result<User> {
        let data = self.store.tenant_data(tenant).await?;
        data.and_then(|d| {
            d.users
                .into_iter()
                .find(|u| u.address.eq_ignore_ascii_case(address))
        })
        .ok_or_else(|| NotFound(format!("tenant {tenant} has no user {address}")))
    }

    /// Routes mail for one of the tenant's own accepted domains to its server. A route is a
    /// claim on the domain's inbound mail: a domain the tenant has not added is refused, so no
    /// tenant can take another's mail.
    pub async fn add_route(&self, tenant: &str, r: NewRoute, actor: &Actor) -> Result<Route> {
        self.tenant_row(tenant).await?;
        let domain = relayward_tenancy::domain_key(r.domain.trim()).into_owned();
        let host = r.host.trim().to_string();
        if !is_host(&host) {
            invalid!("host '{host}' is not a host name or address with an optional :port");
        }
        let data = self.store.tenant_data(tenant).await?;
        self.room_for(actor, "routes", data.as_ref().map_or(0, |d| d.routes.len()))?;
        // A route takes every tenant's mail for the domain: only its proven owner may set one.
        let own = data.as_ref().and_then(|d| {
            d.domains
                .iter()
                .find(|x| x.name.eq_ignore_ascii_case(&domain))
        });
        match own {
            None => {
                return Err(Forbidden(format!(
                    "{domain} is not an accepted domain of {tenant}: add the domain first"
                )));
            }
            Some(d) if !d.verified => {
                return Err(Forbidden(format!(
                    "{domain} is not verified: a route takes every sender's mail for the domain, so it needs the domain's TXT proof first"
                )));
            }
            Some(_) => {}
        }
        let route = Route {
            tenant: tenant.to_string(),
            domain,
            host,
        };
        self.store.add_route(&route).await?;
        self.audit(
            actor,
            Some(tenant),
            "route.create",
            json!({ "after": route }),
        )
        .await?;
        Ok(route)
    }

    pub async fn add_user(&self, tenant: &str, u: NewUser, actor: &Actor) -> Result<User> {
        let Some(data) = self.store.tenant_data(tenant).await? else {
            return Err(NotFound(format!("no tenant {tenant}")));
        };
        let address = stored_address(&u.address);
        if !is_address(&address) {
            invalid!("'{address}' is not an e-mail address");
        }
        self.room_for(actor, "users", data.users.len())?;
        let domain = relayward_tenancy::domain_of(&address);
        if !data.domains.iter().any(|d| d.name == domain) {
            invalid!("{domain} is not one of the tenant's domains; add it first");
        }
        let aliases: Vec<String> = u.aliases.iter().map(|a| stored_address(a)).collect();
        let others = data.users.iter().map(|u| u.aliases.len()).sum();
        if !aliases.is_empty() {
            check_alias_count(self, actor, &aliases, others)?;
        }
        check_own_addresses(std::iter::once(&address).chain(&aliases), &data.domains)?;
        if let Some(f) = u.forward_to.as_deref().filter(|f| !is_address(f)) {
            invalid!("forward_to '{f}' is not an e-mail address");
        }
        if u.forward_only && u.forward_to.is_none() {
            invalid!("forward_only needs a forward_to address");
        }
        let password_hash = match u.password {
            Some(p) => Some(hash_password(p).await?),
            None => None,
        };
        let user = User {
            tenant: tenant.to_string(),
            address,
            aliases,
            password_hash,
            forward_to: u.forward_to.as_deref().map(stored_address),
            forward_only: u.forward_only,
        };
        self.store.add_user(&user).await?;
        self.audit(
            actor,
            Some(tenant),
            "user.create",
            json!({ "after": UserView::from(&user) }),
        )
        .await?;
        Ok(user)
    }

    pub async fn update_user(
        &self,
        tenant: &str,
        address: &str,
        p: UserPatch,
        actor: &Actor,
    ) -> Result<User> {
        let before = self.user_row(tenant, address).await?;
        let mut after = before.clone();
        if let Some(pw) = p.password {
            after.password_hash = match pw {
                Some(pw) => Some(hash_password(pw).await?),
                None => None,
            };
        }
        if let Some(aliases) = p.aliases {
            let aliases: Vec<String> = aliases.iter().map(|a| stored_address(a)).collect();
            let Some(data) = self.store.tenant_data(tenant).await? else {
                return Err(NotFound(format!("no tenant {tenant}")));
            };
            let others = data
                .users
                .iter()
                .filter(|u| u.address != before.address)
                .map(|u| u.aliases.len())
                .sum();
            if aliases.len() > before.aliases.len() {
                check_alias_count(self, actor, &aliases, others)?;
            }
            check_own_addresses(&aliases, &data.domains)?;
            after.aliases = aliases;
        }
        if let Some(f) = p.forward_to {
            if let Some(bad) = f.as_deref().filter(|f| !is_address(f)) {
                invalid!("forward_to '{bad}' is not an e-mail address");
            }
            after.forward_to = f.as_deref().map(stored_address);
        }
        if let Some(o) = p.forward_only {
            after.forward_only = o;
        }
        if after.forward_only && after.forward_to.is_none() {
            invalid!("forward_only needs a forward_to address");
        }
        self.store.update_user(&after).await?;
        self.audit(
            actor,
            Some(tenant),
            "user.update",
            json!({ "before": UserView::from(&before), "after": UserView::from(&after) }),
        )
        .await?;
        Ok(after)
    }

    pub async fn delete_user(&self, tenant: &str, address: &str, actor: &Actor) -> Result<()> {
        let before = self.user_row(tenant, address).await?;
        self.store.delete_user(tenant, &before.address).await?;
        self.audit(
            actor,
            Some(tenant),
            "user.delete",
            json!({ "before": UserView::from(&before) }),
        )
        .await
    }
}

/// A user's address and aliases must be in the tenant's own verified accepted domains: they are
/// the addresses it may send as.
/// A user's aliases: at most `MAX_ALIASES_PER_USER`, and, when a tenant's admin adds them, the
/// tenant's aliases in all (`others`: those of its other users) within `[http]
/// tenant_objects_max`, as its users are.
fn check_alias_count(c: &Control, actor: &Actor, aliases: &[String], others: usize) -> Result<()> {
    let most = claims::MAX_ALIASES_PER_USER;
    if aliases.len() > most {
        invalid!(
            "a user has at most {most} aliases ({} given)",
            aliases.len()
        );
    }
    let total = others + aliases.len();
    let most = c.tenant_objects_max;
    if actor.role == Role::Operator || most == 0 || total <= most {
        return Ok(());
    }
    Err(Forbidden(format!(
        "the tenant's users would have {total} aliases in all, more than its admins may add ([http] tenant_objects_max = {most}); remove some first, or ask the operator"
    )))
}

fn check_own_addresses<'a>(
    addresses: impl IntoIterator<Item = &'a String>,
    own: &[relayward_store::Domain],
) -> Result<()> {
    for a in addresses {
        if !is_address(a) {
            invalid!("'{a}' is not an e-mail address");
        }
        if !claims::address_allowed(a, own) {
            return Err(Forbidden(format!(
                "{a} is not in one of the tenant's verified accepted domains; add and verify its domain first"
            )));
        }
    }
    Ok(())
}
