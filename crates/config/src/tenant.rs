//! A tenant as the file declares it, defaults applied.

use anyhow::{Result, anyhow, bail};
use relayward_guard::Limits;
use relayward_tenancy::stored_address;

use crate::{ApplyRaw, RawTenant};

#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: String,
    pub language: String,
    pub subscription_ends: Option<String>,
    pub admins: Vec<String>,
    pub domains: Vec<DomainConfig>,
    pub connectors: Vec<ConnectorConfig>,
    pub users: Vec<UserConfig>,
    pub routes: Vec<(String, String)>,
    pub limits: Limits,
    pub forwarding: relayward_store::Forwarding,
    pub forwarding_domains: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DomainConfig {
    pub name: String,
    pub kind: relayward_store::DomainKind,
    pub verified: bool,
    pub match_subdomains: bool,
}

#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    pub name: String,
    pub ips: Vec<String>,
    pub cert_name: Option<String>,
    pub require_tls: bool,
    pub relay_unregistered: bool,
    pub allow_overlap: bool,
    pub allow_wide: bool,
}

#[derive(Debug, Clone)]
pub struct UserConfig {
    pub address: String,
    pub password: Option<String>,
    pub aliases: Vec<String>,
    pub forward_to: Option<String>,
    pub forward_only: bool,
}

pub(crate) fn tenant_config(t: RawTenant, base: &Limits) -> Result<TenantConfig> {
    let at = format!("tenant '{}'", t.name);
    let language = t.language.unwrap_or_else(|| "en".into());
    if language != "en" && language != "es" {
        bail!("{at}: language must be \"en\" or \"es\" (got \"{language}\")");
    }
    if let Some(d) = &t.subscription_ends
        && !relayward_clock::is_date(d)
    {
        bail!("{at}: subscription_ends must be a date like 2027-12-31 (got \"{d}\")");
    }
    if let Some(a) = t
        .admins
        .iter()
        .find(|a| !a.contains('@') || !relayward_names::within_mail_lengths(a))
    {
        bail!("{at}: admin \"{a}\" is not an email address of at most 254 characters");
    }
    let mut domains = Vec::new();
    for d in t.domains {
        let kind = match d.kind.as_deref() {
            None => relayward_store::DomainKind::Authoritative,
            Some(k) => relayward_store::DomainKind::parse(k).ok_or_else(|| {
                anyhow!(
                    "{at}: domain {} has kind \"{k}\"; use authoritative or internal_relay",
                    d.name
                )
            })?,
        };
        if d.match_subdomains && kind != relayward_store::DomainKind::InternalRelay {
            bail!(
                "{at}: domain {}: match_subdomains is for internal_relay domains only",
                d.name
            );
        }
        domains.push(DomainConfig {
            name: relayward_tenancy::domain_key(&d.name).into_owned(),
            kind,
            verified: d.verified,
            match_subdomains: d.match_subdomains,
        });
    }
    let mut connectors = Vec::new();
    for c in t.connectors {
        if c.ips.len() > relayward_tenancy::claims::MOST_RANGES {
            bail!(
                "{at}: connector {}: lists {} addresses or ranges, at most {}; make another connector for more",
                c.name,
                c.ips.len(),
                relayward_tenancy::claims::MOST_RANGES
            );
        }
        for ip in &c.ips {
            if relayward_tenancy::parse_net(ip).is_none() {
                bail!(
                    "{at}: connector {}: \"{ip}\" is not an address or CIDR range",
                    c.name
                );
            }
        }
        if c.ips.is_empty() && c.cert_name.is_none() {
            bail!("{at}: connector {} needs ips or a cert_name", c.name);
        }
        // SPEC section 1: by default only certificate connectors whose name is in an accepted
        // domain may relay for other sender domains.
        let default_relay = c.cert_name.as_deref().is_some_and(|n| {
            let n = n.trim_start_matches("*.").to_ascii_lowercase();
            domains
                .iter()
                .any(|d| d.verified && (n == d.name || n.ends_with(&format!(".{}", d.name))))
        });
        connectors.push(ConnectorConfig {
            relay_unregistered: c.relay_unregistered.unwrap_or(default_relay),
            name: c.name,
            ips: c.ips,
            cert_name: c.cert_name,
            require_tls: c.require_tls,
            allow_overlap: c.allow_overlap,
            allow_wide: c.allow_wide,
        });
    }
    let users = t
        .users
        .into_iter()
        .map(|u| {
            if !u.address.contains('@') {
                bail!("{at}: user \"{}\" is not an email address", u.address);
            }
            // RFC 5321's lengths, as the API holds every address to.
            if let Some(long) = std::iter::once(&u.address)
                .chain(&u.aliases)
                .chain(&u.forward_to)
                .find(|a| !relayward_names::within_mail_lengths(a))
            {
                bail!(
                    "{at}: user \"{}\": \"{long}\" is longer than an address may be (a local part of at most 64 characters, 254 in all)",
                    u.address
                );
            }
            let most = relayward_tenancy::claims::MAX_ALIASES_PER_USER;
            if u.aliases.len() > most {
                bail!(
                    "{at}: user \"{}\" has {} aliases; a user has at most {most}",
                    u.address,
                    u.aliases.len()
                );
            }
            Ok(UserConfig {
                address: stored_address(&u.address),
                password: u.password,
                aliases: u.aliases.iter().map(|a| stored_address(a)).collect(),
                forward_only: u.forward_only,
                forward_to: u.forward_to.as_deref().map(stored_address),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let routes: Vec<(String, String)> = t
        .routes
        .into_iter()
        .map(|r| {
            (
                relayward_tenancy::domain_key(&r.domain).into_owned(),
                r.host,
            )
        })
        .collect();
    // A route takes every sender's mail for its domain, so it is followed only for a verified
    // domain of its own tenant; say so here rather than let it lie unused.
    for (domain, _) in &routes {
        if !domains.iter().any(|d| d.verified && d.name == *domain) {
            bail!(
                "{at}: route for {domain}: a route needs one of this tenant's domains, verified (it takes every sender's mail for the domain)"
            );
        }
    }
    let limits = match &t.limits {
        Some(raw) => Limits::apply(base, raw, &format!("{at}.limits"))?,
        None => base.clone(),
    };
    // The same bounds as the API's (`PUT …/forwarding`).
    let most = relayward_tenancy::claims::MAX_FORWARDING_DOMAINS;
    if t.forwarding_domains.len() > most {
        bail!(
            "{at}: forwarding_domains lists {} domains, at most {most}",
            t.forwarding_domains.len()
        );
    }
    let forwarding_domains: Vec<String> = t
        .forwarding_domains
        .iter()
        .map(|d| relayward_tenancy::domain_key(d.trim()).into_owned())
        .collect();
    if let Some(bad) = forwarding_domains
        .iter()
        .find(|d| !relayward_tenancy::claims::forwarding_domain(d))
    {
        bail!("{at}: forwarding_domains: \"{bad}\" is not a domain name");
    }
    let forwarding = match t.forwarding.as_deref() {
        None if !t.forwarding_domains.is_empty() => relayward_store::Forwarding::Listed,
        None => relayward_store::Forwarding::On,
        Some(f) => relayward_store::Forwarding::parse(f).ok_or_else(|| {
            anyhow!("{at}: forwarding must be \"on\", \"off\" or \"listed\" (got \"{f}\")")
        })?,
    };
    if forwarding == relayward_store::Forwarding::Listed && forwarding_domains.is_empty() {
        bail!("{at}: forwarding = \"listed\" needs forwarding_domains");
    }
    Ok(TenantConfig {
        forwarding,
        forwarding_domains,
        name: t.name,
        language,
        subscription_ends: t.subscription_ends,
        admins: t.admins,
        domains,
        connectors,
        users,
        routes,
        limits,
    })
}
