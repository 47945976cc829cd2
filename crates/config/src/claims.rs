//! Claims within the configuration file: what one tenant declares may not touch another's.

use anyhow::{Result, bail};

use relayward_tenancy::claims;

use crate::tenant::{ConnectorConfig, TenantConfig};

/// The claims of SPEC's "tenants share one relay" within the file: a connector range never
/// overlaps another tenant's unless `allow_overlap` says the operator means it, is never wider
/// than the configured prefix unless `allow_wide`; a certificate name lies in one of the
/// tenant's verified domains; no user address, alias or admin sits in another tenant's domain;
/// no domain is another tenant's, nor above or below another tenant's verified domain.
/// Errors name both tenants.
pub fn check(tenants: &[TenantConfig], widest: relayward_tenancy::claims::Widest) -> Result<()> {
    let ranges = |c: &ConnectorConfig| -> Vec<ipnet::IpNet> {
        c.ips
            .iter()
            .filter_map(|ip| relayward_tenancy::parse_net(ip))
            .map(|n| n.trunc())
            .collect()
    };
    let owner = |domain: &str| {
        tenants.iter().find_map(|t| {
            t.domains
                .iter()
                .any(|d| claims::within(domain, &d.name))
                .then_some(t.name.as_str())
        })
    };
    for (i, t) in tenants.iter().enumerate() {
        let at = format!("tenant '{}'", t.name);
        for c in &t.connectors {
            let ours = ranges(c);
            if !c.allow_wide
                && let Some((net, limit)) = claims::too_wide(&ours, widest)
            {
                bail!(
                    "{at}: connector {}: {net} is wider than /{limit}; list the servers' own addresses, or set allow_wide = true on the connector if the operator means it",
                    c.name
                );
            }
            if let Some(n) = &c.cert_name {
                let own: Vec<relayward_store::Domain> = t
                    .domains
                    .iter()
                    .map(|d| relayward_store::Domain {
                        tenant: t.name.clone(),
                        name: d.name.clone(),
                        kind: d.kind,
                        match_subdomains: d.match_subdomains,
                        verified: d.verified,
                        verification_token: String::new(),
                    })
                    .collect();
                if !claims::cert_name_allowed(n, &own) {
                    bail!(
                        "{at}: connector {}: certificate name {n} is not within one of the tenant's verified domains",
                        c.name
                    );
                }
            }
            if c.allow_overlap {
                continue;
            }
            for other in &tenants[i + 1..] {
                for oc in other.connectors.iter().filter(|oc| !oc.allow_overlap) {
                    for theirs in ranges(oc) {
                        if let Some(mine) = ours.iter().find(|o| claims::overlap(o, &theirs)) {
                            bail!(
                                "{at}: connector {} ({mine}) overlaps connector {} ({theirs}) of tenant '{}'; a source address belongs to one tenant (set allow_overlap = true on one of them if the servers are shared on purpose)",
                                c.name,
                                oc.name,
                                other.name
                            );
                        }
                    }
                }
            }
        }
        for (j, d) in t.domains.iter().enumerate() {
            if t.domains[j + 1..].iter().any(|o| o.name == d.name) {
                bail!("{at}: domain {} is listed twice", d.name);
            }
            for other in &tenants[i + 1..] {
                // The same name, or one above or below a verified domain of the other tenant:
                // the rule the API applies to a domain added there (`domain_clash`).
                if let Some(od) = other.domains.iter().find(|od| {
                    od.name == d.name
                        || ((od.verified || d.verified)
                            && (claims::within(&d.name, &od.name)
                                || claims::within(&od.name, &d.name)))
                }) {
                    bail!(
                        "{at}: domain {} {} domain {} of tenant '{}'; a domain belongs to one tenant",
                        d.name,
                        if od.name == d.name {
                            "is also"
                        } else if claims::within(&d.name, &od.name) {
                            "lies within"
                        } else {
                            "lies above"
                        },
                        od.name,
                        other.name
                    );
                }
            }
        }
        let addresses = t
            .users
            .iter()
            .flat_map(|u| std::iter::once(&u.address).chain(&u.aliases))
            .chain(&t.admins);
        for a in addresses {
            let domain = relayward_tenancy::domain_of(a);
            if let Some(o) = owner(&domain).filter(|o| *o != t.name)
                && !t.domains.iter().any(|d| claims::within(&domain, &d.name))
            {
                bail!("{at}: {a} is in a domain of tenant '{o}'");
            }
        }
    }
    Ok(())
}
