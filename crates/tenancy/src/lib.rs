//! Who is who: an in-memory directory of tenants, accepted domains, connectors, users and
//! routes, built from the store and swapped whole when the store changes. Lookups here run per
//! SMTP command, so they are map lookups, never queries.
//!
//! The directory answers questions; it decides nothing about whether mail may pass (that is the
//! relay policy's and the guard's job).

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use relayward_store::{Connector, DirectoryData, Domain, DomainKind, Route, Tenant, User};

pub mod password;

/// A connector with its ranges parsed.
#[derive(Debug, Clone)]
pub struct ConnectorEntry {
    pub connector: Connector,
    pub nets: Vec<IpNet>,
}

#[derive(Debug, Default)]
pub struct Directory {
    tenants: HashMap<String, Tenant>,
    domains: HashMap<String, Domain>,
    connectors: Vec<ConnectorEntry>,
    users: HashMap<String, usize>,
    user_list: Vec<User>,
    routes: HashMap<String, Route>,
}

/// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address (one host).
pub fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

impl Directory {
    pub fn build(data: DirectoryData) -> Directory {
        let mut d = Directory::default();
        for t in data.tenants {
            d.tenants.insert(t.name.clone(), t);
        }
        for dom in data.domains {
            d.domains.insert(dom.name.to_ascii_lowercase(), dom);
        }
        for c in data.connectors {
            let nets = c
                .ips
                .iter()
                .filter_map(|s| {
                    let n = parse_net(s);
                    if n.is_none() {
                        tracing::warn!(connector = %c.name, tenant = %c.tenant, range = %s, "connector range ignored: not an address or CIDR range");
                    }
                    n
                })
                .collect();
            d.connectors.push(ConnectorEntry { connector: c, nets });
        }
        for (i, u) in data.users.into_iter().enumerate() {
            d.users.insert(u.address.to_ascii_lowercase(), i);
            for a in &u.aliases {
                d.users.insert(a.to_ascii_lowercase(), i);
            }
            d.user_list.push(u);
        }
        for r in data.routes {
            d.routes.insert(r.domain.to_ascii_lowercase(), r);
        }
        d
    }

    pub fn tenant(&self, name: &str) -> Option<&Tenant> {
        self.tenants.get(name)
    }

    /// Tenants whose subscription has an end date.
    pub fn tenants_with_subscription_end(&self) -> impl Iterator<Item = &Tenant> {
        self.tenants
            .values()
            .filter(|t| t.subscription_ends.is_some())
    }

    /// A tenant's connector by name.
    pub fn connector(&self, tenant: &str, name: &str) -> Option<&ConnectorEntry> {
        self.connectors
            .iter()
            .find(|c| c.connector.tenant == tenant && c.connector.name == name)
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// The connector whose ranges hold `ip`, the narrowest range winning.
    pub fn connector_for_ip(&self, ip: IpAddr) -> Option<&ConnectorEntry> {
        self.connectors
            .iter()
            .filter_map(|c| {
                c.nets
                    .iter()
                    .filter(|n| n.contains(&ip))
                    .map(|n| n.prefix_len())
                    .max()
                    .map(|p| (p, c))
            })
            .max_by_key(|(p, _)| *p)
            .map(|(_, c)| c)
    }

    /// The connector whose certificate name matches one of `names` (verified certificate names).
    pub fn connector_for_cert(&self, names: &[String]) -> Option<&ConnectorEntry> {
        self.connectors.iter().find(|c| {
            c.connector
                .cert_name
                .as_deref()
                .is_some_and(|pattern| names.iter().any(|n| name_matches(pattern, n)))
        })
    }

    /// The verified accepted domain that covers `domain` (itself, or a parent with "match
    /// subdomains"). Unverified domains do not count.
    pub fn accepted_domain(&self, domain: &str) -> Option<&Domain> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(d) = self.domains.get(&domain).filter(|d| d.verified) {
            return Some(d);
        }
        let mut rest = domain.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(d) = self
                .domains
                .get(parent)
                .filter(|d| d.verified && d.match_subdomains && d.kind == DomainKind::InternalRelay)
            {
                return Some(d);
            }
            rest = parent;
        }
        None
    }

    /// Whether `domain` is an accepted, verified domain of `tenant`.
    pub fn is_accepted_by(&self, tenant: &str, domain: &str) -> bool {
        self.accepted_domain(domain)
            .is_some_and(|d| d.tenant == tenant)
    }

    /// The user with this primary address or alias.
    pub fn user(&self, address: &str) -> Option<&User> {
        self.users
            .get(&address.to_ascii_lowercase())
            .and_then(|&i| self.user_list.get(i))
    }

    /// The tenant's own server for this recipient domain, if it has one.
    pub fn route(&self, domain: &str) -> Option<&Route> {
        let domain = domain.to_ascii_lowercase();
        if let Some(r) = self.routes.get(&domain) {
            return Some(r);
        }
        // A subdomain of a "match subdomains" domain goes where its parent goes.
        let accepted = self.accepted_domain(&domain)?;
        self.routes.get(&accepted.name)
    }
}

/// Certificate name matching: exact, or a `*.` wildcard standing for exactly one label.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

/// The domain of an address, lower-cased (empty when there is none).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> DirectoryData {
        let domain = |name: &str, kind, sub, verified| Domain {
            tenant: "contoso".into(),
            name: name.into(),
            kind,
            match_subdomains: sub,
            verified,
            verification_token: String::new(),
        };
        let connector = |name: &str, ips: &[&str]| Connector {
            tenant: "contoso".into(),
            name: name.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            cert_name: Some("*.mail.contoso.example".into()),
            require_tls: false,
            relay_unregistered: false,
            created_by: "test".into(),
            created_at: 0,
            reviewed: false,
        };
        DirectoryData {
            domains: vec![
                domain("contoso.example", DomainKind::Authoritative, false, true),
                domain(
                    "relay.contoso.example",
                    DomainKind::InternalRelay,
                    true,
                    true,
                ),
                domain("pending.example", DomainKind::Authoritative, false, false),
            ],
            connectors: vec![
                connector("wide", &["10.0.0.0/8"]),
                connector("narrow", &["10.1.2.0/24", "not-an-ip"]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn domains_need_verification_and_subdomains_need_the_flag() {
        let d = Directory::build(data());
        assert!(d.accepted_domain("CONTOSO.example").is_some());
        assert!(d.accepted_domain("sub.contoso.example").is_none());
        assert!(d.accepted_domain("a.b.relay.contoso.example").is_some());
        assert!(d.accepted_domain("pending.example").is_none());
        assert!(d.accepted_domain("example").is_none());
    }

    #[test]
    fn narrowest_connector_range_wins() {
        let d = Directory::build(data());
        let c = |ip: &str| {
            d.connector_for_ip(ip.parse().expect("ip"))
                .map(|c| c.connector.name.clone())
        };
        assert_eq!(c("10.1.2.3").as_deref(), Some("narrow"));
        assert_eq!(c("10.9.9.9").as_deref(), Some("wide"));
        assert_eq!(c("192.0.2.1"), None);
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches(
            "*.mail.contoso.example",
            "mx1.mail.contoso.example"
        ));
        assert!(!name_matches(
            "*.mail.contoso.example",
            "a.mx1.mail.contoso.example"
        ));
        assert!(!name_matches(
            "*.mail.contoso.example",
            "mail.contoso.example"
        ));
        assert!(name_matches(
            "Relay.Contoso.example",
            "relay.contoso.EXAMPLE"
        ));
    }
}
