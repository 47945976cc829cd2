//! Claims a tenant makes on names the relay shares between tenants: the source addresses of its
//! connectors, the certificate names they answer to, the domains it adds and the addresses its
//! users, aliases and admins use. A claim that touches another tenant's is refused unless an
//! operator allows it explicitly (recorded in the audit log with who and why): attribution must
//! never move a host or an address from one tenant to another silently.
//!
//! Pure decisions over what the store holds; the control plane (API and command line) and the
//! configuration check call them. They never read the store themselves.

use ipnet::IpNet;
use relayward_store::{Connector, Domain};

/// The widest source range a connector may claim without an operator's explicit allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Widest {
    pub v4: u8,
    pub v6: u8,
}

impl Default for Widest {
    fn default() -> Self {
        Widest { v4: 24, v6: 48 }
    }
}

/// Whether two ranges share at least one address.
pub fn overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The first of `ranges` wider than allowed, with the prefix length it may have at most.
pub fn too_wide(ranges: &[IpNet], widest: Widest) -> Option<(IpNet, u8)> {
    ranges.iter().find_map(|n| {
        let limit = match n {
            IpNet::V4(_) => widest.v4,
            IpNet::V6(_) => widest.v6,
        };
        (n.prefix_len() < limit).then_some((*n, limit))
    })
}

/// The most addresses and ranges one connector lists: each is checked against every other
/// tenant's claims (an index read for each of its enclosing networks), so a request's cost stays
/// bounded; a tenant with more servers makes more connectors.
pub const MOST_RANGES: usize = 100;

/// Another tenant's connector whose ranges overlap one of `ranges`: (our range, its range, it).
pub fn overlapping<'a>(
    tenant: &str,
    ranges: &[IpNet],
    existing: &'a [Connector],
) -> Option<(IpNet, IpNet, &'a Connector)> {
    existing
        .iter()
        .filter(|c| c.tenant != tenant)
        .find_map(|c| {
            c.ips
                .iter()
                .filter_map(|ip| crate::parse_net(ip))
                .find_map(|theirs| {
                    ranges
                        .iter()
                        .find(|ours| overlap(ours, &theirs))
                        .map(|ours| (*ours, theirs, c))
                })
        })
}

/// The most aliases one user may have (Exchange Online's own limit on a mailbox's addresses is
/// of this order). Each is a claim and an entry of the directory every node holds, so without a
/// bound one tenant's admin could grow every node's memory with a few large requests.
pub const MAX_ALIASES_PER_USER: usize = 100;

/// The most domains a tenant's `listed` forwarding control names: part of the tenant's row in
/// every node's directory, bounded like a user's aliases.
pub const MAX_FORWARDING_DOMAINS: usize = 1000;

/// Whether `d` (as `domain_key` gives it) can name a forwarding target's domain: a dot, and no
/// `@`, space or `/`.
pub fn forwarding_domain(d: &str) -> bool {
    d.contains('.') && !d.contains(['@', ' ', '/'])
}

/// Whether `name` is `domain` or one of its subdomains (both lower case, no trailing dot).
pub fn within(name: &str, domain: &str) -> bool {
    name == domain
        || name
            .strip_suffix(domain)
            .is_some_and(|head| head.ends_with('.'))
}

/// Whether a certificate name (`mail.contoso.example`, `*.contoso.example`) lies within one of
/// the tenant's verified accepted domains.
pub fn cert_name_allowed(cert_name: &str, own: &[Domain]) -> bool {
    let n = cert_name.trim().trim_end_matches('.').to_ascii_lowercase();
    let n = n.strip_prefix("*.").unwrap_or(&n);
    !n.is_empty() && !n.contains('*') && own.iter().any(|d| d.verified && within(n, &d.name))
}

/// Whether an address's domain is one of the tenant's own verified accepted domains (or under
/// one that matches subdomains): the addresses its users may have and send as.
pub fn address_allowed(address: &str, own: &[Domain]) -> bool {
    let domain = crate::domain_of(address).to_ascii_lowercase();
    own.iter().any(|d| {
        d.verified && (d.name == domain || (d.match_subdomains && within(&domain, &d.name)))
    })
}

/// Another tenant's verified domain that `name` would sit under or over.
pub fn domain_clash<'a>(tenant: &str, name: &str, related: &'a [Domain]) -> Option<&'a Domain> {
    related.iter().find(|d| {
        d.tenant != tenant && d.verified && (within(name, &d.name) || within(&d.name, name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        crate::parse_net(s).expect("net")
    }

    fn connector(tenant: &str, ips: &[&str]) -> Connector {
        Connector {
            tenant: tenant.into(),
            name: "c".into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            cert_name: None,
            require_tls: false,
            relay_unregistered: false,
            created_by: "t".into(),
            created_at: 0,
            reviewed: false,
        }
    }

    fn domain(tenant: &str, name: &str, verified: bool, subs: bool) -> Domain {
        Domain {
            tenant: tenant.into(),
            name: name.into(),
            kind: relayward_store::DomainKind::InternalRelay,
            match_subdomains: subs,
            verified,
            verification_token: String::new(),
        }
    }

    #[test]
    fn ipv4_written_as_ipv6_is_the_ipv4_range_it_names() {
        assert_eq!(net("::ffff:10.1.0.5"), net("10.1.0.5/32"));
        assert_eq!(net("::ffff:10.1.0.0/120"), net("10.1.0.0/24"));
        assert_eq!(net("::ffff:0.0.0.0/96"), net("0.0.0.0/0"));
        // Not inside ::ffff:0:0/96: left as IPv6.
        for v6 in ["::ffff:0:0/95", "::10.1.0.5", "2001:db8::1"] {
            assert!(matches!(net(v6), IpNet::V6(_)), "{v6}");
        }
        let theirs = [connector("contoso", &["10.1.0.0/24"])];
        assert!(overlapping("fabrikam", &[net("::ffff:10.1.0.5/128")], &theirs).is_some());
        let mapped = [connector("contoso", &["::ffff:10.1.0.0/120"])];
        assert!(overlapping("fabrikam", &[net("10.1.0.5")], &mapped).is_some());
        assert!(too_wide(&[net("::ffff:10.0.0.0/104")], Widest::default()).is_some());
    }

    #[test]
    fn ranges_overlap_whichever_is_wider() {
        assert!(overlap(&net("127.0.0.0/24"), &net("127.0.0.1/32")));
        assert!(overlap(&net("127.0.0.1/32"), &net("127.0.0.0/8")));
        assert!(overlap(&net("0.0.0.0/0"), &net("192.0.2.7")));
        assert!(!overlap(&net("127.0.0.0/24"), &net("127.0.1.0/24")));
        assert!(!overlap(&net("::1/128"), &net("127.0.0.1/32")));
        let theirs = [connector("contoso", &["127.0.0.0/24"])];
        assert!(overlapping("fabrikam", &[net("127.0.0.1")], &theirs).is_some());
        assert!(
            overlapping("contoso", &[net("127.0.0.1")], &theirs).is_none(),
            "a tenant's own ranges are its own business"
        );
    }

    #[test]
    fn wide_ranges_are_named_with_the_limit() {
        let w = Widest::default();
        assert_eq!(too_wide(&[net("10.0.0.0/24")], w), None);
        assert_eq!(
            too_wide(&[net("10.0.0.0/16")], w),
            Some((net("10.0.0.0/16"), 24))
        );
        assert_eq!(
            too_wide(&[net("2001:db8::/32")], w),
            Some((net("2001:db8::/32"), 48))
        );
        assert_eq!(too_wide(&[net("2001:db8::/48")], w), None);
    }

    #[test]
    fn names_must_lie_in_the_tenants_verified_domains() {
        let own = [
            domain("c", "contoso.example", true, false),
            domain("c", "pending.example", false, false),
            domain("c", "corp.example", true, true),
        ];
        assert!(cert_name_allowed("mail.contoso.example", &own));
        assert!(cert_name_allowed("*.contoso.example", &own));
        assert!(!cert_name_allowed("mail.fabrikam.example", &own));
        assert!(!cert_name_allowed("evilcontoso.example", &own));
        assert!(!cert_name_allowed("mail.pending.example", &own));
        assert!(!cert_name_allowed("*", &own));
        assert!(address_allowed("ana@contoso.example", &own));
        assert!(!address_allowed("ana@sub.contoso.example", &own));
        assert!(address_allowed("ana@sub.corp.example", &own));
        assert!(!address_allowed("ana@pending.example", &own));
        assert!(!address_allowed("director@fabrikam.example", &own));
    }

    #[test]
    fn domains_clash_above_and_below() {
        let theirs = [domain("contoso", "contoso.example", true, false)];
        assert!(domain_clash("fabrikam", "sales.contoso.example", &theirs).is_some());
        assert!(domain_clash("fabrikam", "contoso.example", &theirs).is_some());
        assert!(domain_clash("contoso", "sales.contoso.example", &theirs).is_none());
        assert!(domain_clash("fabrikam", "notcontoso.example", &theirs).is_none());
        let unverified = [domain("contoso", "contoso.example", false, false)];
        assert!(domain_clash("fabrikam", "sales.contoso.example", &unverified).is_none());
    }
}
