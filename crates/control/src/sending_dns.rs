//! The relay's own sending addresses as receivers look them up. Each address's reverse DNS (its
//! PTR record) must name a host whose addresses include it again (forward-confirmed), and that
//! name should be the EHLO name connections from the address use: large mailbox providers refuse
//! mail from an address without a PTR record and distrust one whose names disagree. These are
//! records the operator sets (at whoever holds the address block); this says which, for each
//! pool address, or for the addresses the relay's `hostname` has when no pool is configured.

use std::net::IpAddr;
use std::time::Duration;

use relayward_config::Config;
use relayward_delivery::dns::{DnsError, Resolver};

/// The longest the whole look takes.
pub const LOOK_TIME: Duration = Duration::from_secs(20);
/// PTR names followed per address (an address has one as a rule).
const MAX_NAMES: usize = 4;
/// Addresses of `hostname` looked at when no pool is configured.
const MAX_HOST_ADDRESSES: usize = 8;

/// What receivers find for one sending address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressDns {
    pub ip: IpAddr,
    /// `normal pool`, `high-risk pool`, or `hostname` (no pool: an address the name has).
    pub source: &'static str,
    /// The EHLO name connections from this address use.
    pub ehlo: String,
    /// The names its PTR records give.
    pub ptr: Vec<String>,
    /// `ok`; `no_ptr`; `not_confirmed` (no PTR name resolves back to the address);
    /// `ehlo_differs` (confirmed, but not the EHLO name); `unknown` (the DNS did not answer).
    pub status: &'static str,
    pub advice: String,
}

/// The look as a whole: each address, and what holds for all of them.
#[derive(Debug, Clone, Default)]
pub struct SendingDns {
    pub addresses: Vec<AddressDns>,
    pub notes: Vec<String>,
}

impl SendingDns {
    pub fn fine(&self) -> bool {
        !self.addresses.is_empty() && self.addresses.iter().all(|a| a.status == "ok")
    }
}

/// Looks up every sending address of `config` (see the module's text), within [`LOOK_TIME`].
pub async fn check(config: &Config, resolver: &dyn Resolver) -> SendingDns {
    let mut report = SendingDns::default();
    if let Some(host) = &config.smart_host {
        report.notes.push(format!(
            "every message goes to the smart host {host}: receivers see its addresses, which are not looked at here"
        ));
    }
    let mut wanted: Vec<(IpAddr, &'static str, String)> = Vec::new();
    let high_risk_default = config
        .high_risk_hostname
        .clone()
        .unwrap_or_else(|| config.hostname.clone());
    for a in &config.normal_pool {
        let ehlo = a
            .hostname
            .clone()
            .unwrap_or_else(|| config.hostname.clone());
        wanted.push((a.ip, "normal pool", ehlo));
    }
    for a in &config.high_risk_pool {
        let ehlo = a
            .hostname
            .clone()
            .unwrap_or_else(|| high_risk_default.clone());
        wanted.push((a.ip, "high-risk pool", ehlo));
    }
    let looked = tokio::time::timeout(LOOK_TIME, async {
        if wanted.is_empty() {
            report.notes.push(format!(
                "no pool is configured ([delivery] normal_pool, high_risk_pool): the system picks each connection's source address; the addresses {} has are looked at",
                config.hostname
            ));
            match resolver.ips(&config.hostname).await {
                Ok(ips) if !ips.is_empty() => {
                    for ip in ips.into_iter().take(MAX_HOST_ADDRESSES) {
                        wanted.push((ip, "hostname", config.hostname.clone()));
                    }
                }
                Ok(_) | Err(DnsError::NotFound(_)) => report.notes.push(format!(
                    "{} (the EHLO name, [smtp] hostname) has no address in the DNS: receivers that check the EHLO name refuse or distrust the mail; give it the address the relay sends from",
                    config.hostname
                )),
                Err(DnsError::Temporary(e)) => report
                    .notes
                    .push(format!("the DNS did not answer ({e}); try again")),
            }
        }
        for (ip, source, ehlo) in &wanted {
            report
                .addresses
                .push(one(resolver, *ip, source, ehlo).await);
        }
    })
    .await;
    if looked.is_err() {
        report.notes.push(format!(
            "the DNS took longer than {} s: what was not looked at is not listed; try again",
            LOOK_TIME.as_secs()
        ));
    }
    report
}

/// One name, however written (letter case, a final dot, Unicode or A-labels).
fn same_name(a: &str, b: &str) -> bool {
    relayward_names::domain_key(a) == relayward_names::domain_key(b)
}

async fn one(resolver: &dyn Resolver, ip: IpAddr, source: &'static str, ehlo: &str) -> AddressDns {
    let done = |ptr: Vec<String>, status, advice: String| AddressDns {
        ip,
        source,
        ehlo: ehlo.to_string(),
        ptr,
        status,
        advice,
    };
    let names = match resolver.ptr(ip).await {
        Ok(names) => names,
        Err(DnsError::NotFound(_)) => Vec::new(),
        Err(DnsError::Temporary(e)) => {
            return done(
                Vec::new(),
                "unknown",
                format!("the DNS did not answer ({e}); try again"),
            );
        }
    };
    if names.is_empty() {
        return done(
            names,
            "no_ptr",
            format!(
                "no PTR record: large mailbox providers refuse mail from such an address; ask whoever holds the address block to point its PTR record at {ehlo}"
            ),
        );
    }
    let mut confirmed = Vec::new();
    for name in names.iter().take(MAX_NAMES) {
        match resolver.ips(name).await {
            Ok(ips) if ips.iter().any(|a| a.to_canonical() == ip.to_canonical()) => {
                confirmed.push(name.clone());
            }
            Ok(_) | Err(DnsError::NotFound(_)) => {}
            Err(DnsError::Temporary(e)) => {
                return done(
                    names,
                    "unknown",
                    format!("the DNS did not answer ({e}); try again"),
                );
            }
        }
    }
    if confirmed.is_empty() {
        let advice = format!(
            "its PTR names {}, which does not resolve back to {ip}: give that name the address (or point the PTR record at {ehlo}, with {ehlo} resolving to {ip})",
            names.join(", ")
        );
        return done(names, "not_confirmed", advice);
    }
    if !confirmed.iter().any(|n| same_name(n, ehlo)) {
        let advice = format!(
            "connections from it say EHLO {ehlo}, but its PTR names {}: set `hostname = \"{}\"` on this address in its pool, or point the PTR record at {ehlo}",
            confirmed.join(", "),
            confirmed[0]
        );
        return done(names, "ehlo_differs", advice);
    }
    done(
        names,
        "ok",
        format!("its PTR names {ehlo}, which resolves back to it"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dns::Table;

    fn config(extra: &str) -> Config {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relayward.toml");
        std::fs::write(
            &path,
            format!("[smtp]\nhostname = \"relay.example\"\n{extra}"),
        )
        .expect("write the configuration");
        Config::load(Some(&path)).expect("configuration")
    }

    #[tokio::test]
    async fn each_pool_address_needs_a_ptr_that_resolves_back_to_it_and_names_its_ehlo() {
        let config = config(
            "[delivery]\nnormal_pool = [{ ip = \"192.0.2.10\", hostname = \"mta1.relay.example\" }, \"192.0.2.11\", \"192.0.2.12\"]\nhigh_risk_pool = [\"192.0.2.13\", \"192.0.2.14\"]\nhigh_risk_hostname = \"bulk.relay.example\"\n",
        );
        let mut t = Table::default();
        // .10: its PTR and its EHLO name agree and resolve back.
        t.ptr.insert("192.0.2.10", vec!["mta1.relay.example."]);
        t.a.insert("mta1.relay.example.", vec!["192.0.2.10"]);
        // .11: a PTR that resolves back, but the address says EHLO relay.example.
        t.ptr.insert("192.0.2.11", vec!["mta2.relay.example"]);
        t.a.insert("mta2.relay.example", vec!["192.0.2.11"]);
        // .12: a PTR whose name resolves, but to another address.
        t.ptr.insert("192.0.2.12", vec!["generic-12.isp.example"]);
        t.a.insert("generic-12.isp.example", vec!["203.0.113.9"]);
        // .13: none. .14: the high-risk pool's name, confirmed.
        t.ptr.insert("192.0.2.14", vec!["bulk.relay.example"]);
        t.a.insert("bulk.relay.example", vec!["192.0.2.14"]);
        let report = check(&config, &t).await;
        let found: Vec<(String, &str, &str)> = report
            .addresses
            .iter()
            .map(|a| (a.ip.to_string(), a.source, a.status))
            .collect();
        assert_eq!(
            found,
            [
                ("192.0.2.10".to_string(), "normal pool", "ok"),
                ("192.0.2.11".to_string(), "normal pool", "ehlo_differs"),
                ("192.0.2.12".to_string(), "normal pool", "not_confirmed"),
                ("192.0.2.13".to_string(), "high-risk pool", "no_ptr"),
                ("192.0.2.14".to_string(), "high-risk pool", "ok"),
            ]
        );
        assert!(
            report.addresses[1]
                .advice
                .contains("hostname = \"mta2.relay.example\""),
            "{:?}",
            report.addresses[1]
        );
        assert!(!report.fine());
    }

    #[tokio::test]
    async fn without_pools_the_hostnames_addresses_are_looked_at() {
        let config = config("");
        let mut t = Table::default();
        let report = check(&config, &t).await;
        assert!(report.addresses.is_empty());
        assert!(
            report.notes.iter().any(|n| n.contains("has no address")),
            "{report:?}"
        );
        assert!(!report.fine());
        t.a.insert("relay.example", vec!["198.51.100.5"]);
        t.ptr.insert("198.51.100.5", vec!["relay.example"]);
        let report = check(&config, &t).await;
        assert_eq!(report.addresses.len(), 1, "{report:?}");
        assert_eq!(report.addresses[0].status, "ok", "{report:?}");
        assert_eq!(report.addresses[0].source, "hostname");
        assert!(report.fine());
    }
}
