//! A tenant's domain as receivers will read its DNS: whether each DKIM key the relay signs (or
//! will sign) with is published, whether the domain's SPF record lets the relay's sending
//! addresses send for it, and what its DMARC record asks. Mail that fails these is put in spam
//! or refused by the large mailbox providers, and the tenant's admins are the ones who can
//! change their DNS: this says what to change.
//!
//! A read, for a tenant's readers too: nothing is changed or audited. Bounded, since anyone who
//! may read a tenant can ask for it: at most [`crate::spf::MAX_QUERIES`] DNS questions and
//! [`CHECK_TIME`] a check, [`CHECKS_AT_ONCE`] checks at a time on a node, and one at a time per
//! tenant.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use relayward_delivery::dns::{DnsError, Resolver};
use relayward_store::DkimKeyState;
use serde::Serialize;

use crate::spf::{self, Lookups, SendingAddress, SpfResult};
use crate::{Control, Result};

/// The longest one check takes, its wait for a turn included; past it, it is answered as far
/// as it got (an HTTP client waits no longer than that).
pub const CHECK_TIME: Duration = Duration::from_secs(8);
/// Checks running at once on a node; more wait their turn (within their time).
pub const CHECKS_AT_ONCE: usize = 4;

static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CHECKS_AT_ONCE);

/// Tenants with a check running on this node: one at a time each, so that one tenant's
/// script cannot hold every turn.
static CHECKING: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

/// A tenant's turn to check, given back when dropped.
struct Checking(String);

impl Checking {
    fn start(tenant: &str) -> Option<Checking> {
        let mut running = CHECKING.lock().unwrap_or_else(|p| p.into_inner());
        running
            .insert(tenant.to_string())
            .then(|| Checking(tenant.to_string()))
    }
}

impl Drop for Checking {
    fn drop(&mut self) {
        CHECKING
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// What a domain's DNS says to receivers of the relay's mail.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DomainChecks {
    pub domain: String,
    pub verified: bool,
    /// Every key that must be published: the active ones, the pending ones of a rotation and
    /// the retiring ones.
    pub dkim: Vec<DkimRecordCheck>,
    pub spf: SpfCheck,
    pub dmarc: DmarcCheck,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DkimRecordCheck {
    pub selector: String,
    /// `pending`, `active` or `retiring`.
    pub state: String,
    /// Where the record goes.
    pub name: String,
    /// The record to publish there.
    pub expected: String,
    /// `published`; `missing` (no record there); `different` (a record that is not this key);
    /// `unknown` (the DNS did not answer).
    pub status: String,
    /// The TXT records found there.
    pub found: Vec<String>,
    /// What to do, when something is to be done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SpfCheck {
    /// The domain's SPF record, when it has one.
    pub record: Option<String>,
    /// `ok` (every sending address passes); `not_authorised` (one or more does not);
    /// `missing` (no record); `error` (a record receivers cannot use); `unknown` (the DNS did
    /// not answer, or the record depends on what a check cannot know); `addresses_unknown` (the
    /// relay's configuration names no sending addresses to judge); `smart_host` (the relay hands
    /// its mail to a smart host, whose addresses receivers see).
    pub status: String,
    /// Each sending address of the relay ([delivery] normal_pool and high_risk_pool) and what
    /// the record says of it.
    pub addresses: Vec<SpfAddress>,
    /// Why no record could be read (more than one, or no answer from the DNS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub advice: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SpfAddress {
    pub ip: String,
    /// `normal` or `high_risk`: the pool it sends from.
    pub pool: String,
    /// `pass`, `fail`, `softfail`, `neutral`, `none`, `permerror`, `temperror` or `unknown`.
    pub result: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DmarcCheck {
    /// The DMARC record that applies, when there is one.
    pub record: Option<String>,
    /// Where it was found: `_dmarc.<domain>`, or a parent domain's (whose `sp=`, or else `p=`,
    /// then applies).
    pub name: Option<String>,
    /// `none`, `quarantine` or `reject`.
    pub policy: Option<String>,
    /// `ok`, `monitoring` (`p=none`), `missing`, `error` or `unknown` (the DNS did not answer).
    pub status: String,
    pub advice: String,
}

impl Control {
    /// Looks at `domain`'s DNS as receivers will (see the module's text).
    pub async fn check_domain(
        &self,
        tenant: &str,
        domain: &str,
        resolver: &dyn Resolver,
    ) -> Result<DomainChecks> {
        let d = self.own_domain(tenant, domain).await?;
        let keys = self.store.dkim_keys(Some(&d.name)).await?;
        let Some(_mine) = Checking::start(&d.tenant) else {
            return Err(crate::ControlError::Conflict(
                "a check of this tenant's domains is running on this node; try again when it ends"
                    .into(),
            ));
        };
        // One deadline for the wait for a turn and the look itself.
        let deadline = tokio::time::Instant::now() + CHECK_TIME;
        let Ok(Ok(_turn)) = tokio::time::timeout_at(deadline, RUNNING.acquire()).await else {
            return Err(crate::ControlError::Conflict(format!(
                "{CHECKS_AT_ONCE} domain checks are running on this node already; try again in a minute"
            )));
        };
        let keys: Vec<_> = keys
            .into_iter()
            .filter(|k| k.state != DkimKeyState::Retired)
            .collect();
        let mut report = DomainChecks {
            domain: d.name.clone(),
            verified: d.verified,
            // Each key as not looked at yet, in case the time runs out before it is.
            dkim: keys.iter().map(not_looked_at).collect(),
            spf: SpfCheck {
                record: None,
                status: "unknown".into(),
                addresses: Vec::new(),
                reason: None,
                advice: "the check ran out of time before it reached SPF; try again".into(),
            },
            dmarc: DmarcCheck {
                record: None,
                name: None,
                policy: None,
                status: "unknown".into(),
                advice: "the check ran out of time before it reached DMARC; try again".into(),
            },
        };
        let mut lookups = Lookups::new(resolver);
        // Past its time the check answers with what it found so far.
        let _ =
            tokio::time::timeout_at(deadline, self.look(&mut report, &keys, &mut lookups)).await;
        Ok(report)
    }

    async fn look(
        &self,
        report: &mut DomainChecks,
        keys: &[relayward_store::DkimKey],
        lookups: &mut Lookups<'_>,
    ) {
        for (i, k) in keys.iter().enumerate() {
            report.dkim[i] = dkim_record(lookups, k).await;
        }
        report.spf = self.spf(lookups, &report.domain).await;
        report.dmarc = dmarc(lookups, &report.domain).await;
    }

    async fn spf(&self, lookups: &mut Lookups<'_>, domain: &str) -> SpfCheck {
        let list = |addrs: &[SendingAddress]| {
            addrs
                .iter()
                .map(|a| a.ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let record = match spf::record(lookups, domain).await {
            Ok(r) => r,
            Err(e) => {
                let (status, advice) = match &e {
                    SpfResult::PermError(why) => (
                        "error",
                        format!("{why}; keep one TXT record starting v=spf1"),
                    ),
                    other => (
                        "unknown",
                        format!(
                            "the DNS did not answer ({}); try again",
                            other.reason().unwrap_or("no reason given")
                        ),
                    ),
                };
                return SpfCheck {
                    record: None,
                    status: status.into(),
                    addresses: Vec::new(),
                    reason: e.reason().map(str::to_string),
                    advice,
                };
            }
        };
        let Some(text) = record else {
            let advice = if self.sending_addresses.is_empty() {
                format!(
                    "publish an SPF record for {domain} that names the addresses the relay sends from (ask the service for them, or the include: it offers)"
                )
            } else {
                format!(
                    "publish an SPF record for {domain} that names the relay's addresses, for example \"v=spf1 {} ~all\" (with your own servers' addresses beside them)",
                    self.sending_addresses
                        .iter()
                        .map(|a| match a.ip {
                            IpAddr::V4(v4) => format!("ip4:{v4}"),
                            IpAddr::V6(v6) => format!("ip6:{v6}"),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            };
            return SpfCheck {
                record: None,
                status: "missing".into(),
                addresses: Vec::new(),
                reason: None,
                advice,
            };
        };
        if let Some(host) = &self.smart_host {
            return SpfCheck {
                record: Some(text),
                status: "smart_host".into(),
                addresses: Vec::new(),
                reason: None,
                advice: format!(
                    "the relay hands every message to the smart host {host}: receivers see that host's addresses, which this check does not know; the record must let them send"
                ),
            };
        }
        if self.sending_addresses.is_empty() {
            return SpfCheck {
                record: Some(text),
                status: "addresses_unknown".into(),
                addresses: Vec::new(),
                reason: None,
                advice: "the relay's configuration names no sending addresses ([delivery] normal_pool, high_risk_pool), so whether this record lets it send cannot be told here".into(),
            };
        }
        let mut addresses = Vec::new();
        for a in &self.sending_addresses {
            let result = spf::check(lookups, a.ip, domain).await;
            addresses.push(SpfAddress {
                ip: a.ip.to_string(),
                pool: a.pool.into(),
                result: result.word().into(),
                reason: result.reason().map(str::to_string),
            });
        }
        let failing: Vec<SendingAddress> = self
            .sending_addresses
            .iter()
            .zip(&addresses)
            .filter(|(_, r)| r.result != "pass")
            .map(|(a, _)| a.clone())
            .collect();
        let has = |word: &str| addresses.iter().any(|r| r.result == word);
        let (status, advice) = if failing.is_empty() {
            (
                "ok",
                "every address the relay sends from passes".to_string(),
            )
        } else if has("permerror") {
            (
                "error",
                "receivers cannot use this record (see each address's reason); fix it".to_string(),
            )
        } else if has("temperror") || has("unknown") {
            (
                "unknown",
                "not every address could be judged (see each address's reason)".to_string(),
            )
        } else {
            (
                "not_authorised",
                format!(
                    "the record does not let {} send for {domain}: add {} to the record, or receivers may refuse the mail or put it in spam",
                    list(&failing),
                    if failing.len() == 1 { "it" } else { "them" }
                ),
            )
        };
        SpfCheck {
            record: Some(text),
            status: status.into(),
            addresses,
            reason: None,
            advice,
        }
    }
}

fn not_looked_at(k: &relayward_store::DkimKey) -> DkimRecordCheck {
    let (name, expected) = crate::dkim_keys::record(k);
    DkimRecordCheck {
        selector: k.selector.clone(),
        state: k.state.as_str().into(),
        name,
        expected,
        status: "unknown".into(),
        found: Vec::new(),
        advice: Some("the check ran out of time before it reached this record; try again".into()),
    }
}

async fn dkim_record(lookups: &mut Lookups<'_>, k: &relayward_store::DkimKey) -> DkimRecordCheck {
    let (name, expected) = crate::dkim_keys::record(k);
    let want = relayward_dkim::canon::no_space(&expected);
    let (found, answered) = match lookups.txt(&name).await {
        Ok(found) => (found, true),
        Err(DnsError::NotFound(_)) => (Vec::new(), true),
        Err(DnsError::Temporary(_)) => (Vec::new(), false),
    };
    let status = if !answered {
        "unknown"
    } else if found
        .iter()
        .any(|f| relayward_dkim::canon::no_space(f) == want)
    {
        "published"
    } else if found.iter().any(|f| f.contains("p=")) {
        "different"
    } else {
        "missing"
    };
    let advice = match (status, k.state) {
        ("published", _) => None,
        ("unknown", _) => Some("the DNS did not answer; try again".to_string()),
        (_, DkimKeyState::Active) => Some(format!(
            "the relay signs with this key now, and receivers cannot check its signatures: publish the record at {name}"
        )),
        (_, DkimKeyState::Pending) => Some(format!(
            "publish the record at {name}, then activate the new keys"
        )),
        _ => Some(format!(
            "mail signed before the rotation may still be checked: keep the record at {name} until the keys are retired"
        )),
    };
    DkimRecordCheck {
        selector: k.selector.clone(),
        state: k.state.as_str().into(),
        name,
        expected,
        status: status.into(),
        found,
        advice,
    }
}

/// The DMARC record of `domain`, or of the nearest parent domain that has one (its `sp=`
/// applies to the domains under it); top-level names are not asked.
async fn dmarc(lookups: &mut Lookups<'_>, domain: &str) -> DmarcCheck {
    let mut at = domain;
    loop {
        let name = format!("_dmarc.{at}");
        let found = match lookups.txt(&name).await {
            Ok(found) => found,
            Err(DnsError::NotFound(_)) => Vec::new(),
            Err(DnsError::Temporary(e)) => {
                return DmarcCheck {
                    record: None,
                    name: None,
                    policy: None,
                    status: "unknown".into(),
                    advice: format!("the DNS did not answer ({e}); try again"),
                };
            }
        };
        let records: Vec<String> = found
            .into_iter()
            .filter(|t| spf::is_version(t, "v=DMARC1", &[';', ' ']))
            .collect();
        if records.len() > 1 {
            return DmarcCheck {
                record: None,
                name: Some(name),
                policy: None,
                status: "error".into(),
                advice: "more than one DMARC record: receivers then take none; keep one".into(),
            };
        }
        if let Some(record) = records.into_iter().next() {
            return read_dmarc(record, name, at != domain, domain);
        }
        match at.split_once('.') {
            Some((_, parent)) if parent.contains('.') => at = parent,
            _ => break,
        }
    }
    DmarcCheck {
        record: None,
        name: None,
        policy: None,
        status: "missing".into(),
        advice: format!(
            "publish a DMARC record at _dmarc.{domain}; to start, \"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain}\" asks for reports and changes nothing. Large mailbox providers expect one of bulk senders"
        ),
    }
}

fn read_dmarc(record: String, name: String, inherited: bool, domain: &str) -> DmarcCheck {
    let tags = relayward_dkim::canon::tags(&record);
    let tag = |t| relayward_dkim::canon::tag(&tags, t).map(str::to_ascii_lowercase);
    let policy = if inherited {
        tag("sp").or_else(|| tag("p"))
    } else {
        tag("p")
    };
    let (status, advice) = match policy.as_deref() {
        Some("none") => (
            "monitoring",
            format!(
                "receivers only report mail from {domain} that fails; once the reports show your own mail passing (the relay's signs with d={domain}), ask for quarantine or reject"
            ),
        ),
        Some("quarantine" | "reject") => (
            "ok",
            format!(
                "receivers act on mail from {domain} that fails; the relay's mail passes by its DKIM signature (d={domain})"
            ),
        ),
        _ => (
            "error",
            "the record has no valid p= (none, quarantine or reject): receivers ignore it".into(),
        ),
    };
    DmarcCheck {
        record: Some(record),
        name: Some(name),
        policy: policy.filter(|p| ["none", "quarantine", "reject"].contains(&p.as_str())),
        status: status.into(),
        advice,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relayward_delivery::dns::DnsFuture;
    use relayward_guard::Role;

    /// A DNS that takes its time and knows nothing.
    struct Slow;

    impl Resolver for Slow {
        fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>> {
            Box::pin(async move { Err(DnsError::NotFound(domain.to_string())) })
        }
        fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
            Box::pin(async move { Err(DnsError::NotFound(host.to_string())) })
        }
        fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(DnsError::NotFound(name.to_string()))
            })
        }
    }

    /// A DNS that never answers.
    struct Silent;

    impl Resolver for Silent {
        fn mx<'a>(&'a self, _: &'a str) -> DnsFuture<'a, Vec<(u16, String)>> {
            Box::pin(std::future::pending())
        }
        fn ips<'a>(&'a self, _: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
            Box::pin(std::future::pending())
        }
        fn txt<'a>(&'a self, _: &'a str) -> DnsFuture<'a, Vec<String>> {
            Box::pin(std::future::pending())
        }
    }

    async fn control_with(domains: &[(&str, &str, bool)]) -> (tempfile::TempDir, Control) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            relayward_store::SqliteStore::open(&dir.path().join("store.sqlite")).expect("store");
        let config = relayward_config::Config::load(None).expect("defaults");
        let control = Control::new(&config, std::sync::Arc::new(store));
        let actor = crate::Actor::command_line("test".into(), Role::Operator);
        for (tenant, domain, verified) in domains {
            control
                .create_tenant(
                    crate::directory::NewTenant {
                        name: tenant.to_string(),
                        language: None,
                        subscription_ends: None,
                        admins: Vec::new(),
                    },
                    &actor,
                )
                .await
                .expect("tenant");
            control
                .add_domain(
                    tenant,
                    domain,
                    relayward_store::DomainKind::Authoritative,
                    false,
                    *verified,
                    &actor,
                )
                .await
                .expect("domain");
        }
        (dir, control)
    }

    /// A DNS that never answers holds a check for its time, no longer: it answers with every
    /// finding unknown, the keys it did not reach among them.
    #[tokio::test]
    async fn a_check_answers_in_its_time_when_the_dns_does_not() {
        // (A tenant of its own: the tests of this module share the node's turns.)
        let (_dir, control) = control_with(&[("woodgrove", "woodgrove.example", true)]).await;
        let started = std::time::Instant::now();
        let report = control
            .check_domain("woodgrove", "woodgrove.example", &Silent)
            .await
            .expect("a report");
        let took = started.elapsed();
        assert!(
            took >= CHECK_TIME && took < CHECK_TIME + Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(report.dkim.len(), 2, "{report:?}");
        assert!(
            report.dkim.iter().all(|k| k.status == "unknown"),
            "{report:?}"
        );
        assert_eq!(report.spf.status, "unknown");
        assert_eq!(report.dmarc.status, "unknown");
    }

    /// Behind a smart host, the pools' addresses are not what receivers see: the record is
    /// shown, not judged against them.
    #[tokio::test]
    async fn behind_a_smart_host_the_record_is_not_judged_against_the_pools() {
        let (_dir, control) = control_with(&[("litware", "litware.example", false)]).await;
        let mut dns = crate::test_dns::Table::default();
        dns.txt
            .insert("litware.example", vec!["v=spf1 ip4:192.0.2.10 -all"]);
        let pooled = Control {
            sending_addresses: vec![SendingAddress {
                ip: "192.0.2.11".parse().expect("address"),
                pool: "normal",
            }],
            ..control
        };
        let report = pooled
            .check_domain("litware", "litware.example", &dns)
            .await
            .expect("a report");
        assert_eq!(report.spf.status, "not_authorised", "{report:?}");
        let behind = Control {
            smart_host: Some("smtp.provider.example:25".into()),
            ..pooled
        };
        let report = behind
            .check_domain("litware", "litware.example", &dns)
            .await
            .expect("a report");
        assert_eq!(report.spf.status, "smart_host", "{report:?}");
        assert!(report.spf.addresses.is_empty(), "{report:?}");
        assert!(
            report.spf.advice.contains("smtp.provider.example:25"),
            "{report:?}"
        );
    }

    /// One check at a time per tenant: a second one while the first runs is refused, another
    /// tenant's goes on, and the turn comes back when the first ends.
    #[tokio::test]
    async fn a_tenant_checks_one_domain_at_a_time() {
        let (_dir, control) = control_with(&[
            ("contoso", "contoso.example", false),
            ("fabrikam", "fabrikam.example", false),
        ])
        .await;
        let check = |t: &'static str, d: &'static str| control.check_domain(t, d, &Slow);
        let (first, second, other) = tokio::join!(
            check("contoso", "contoso.example"),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                check("contoso", "contoso.example").await
            },
            check("fabrikam", "fabrikam.example"),
        );
        let first = first.expect("the first check");
        assert_eq!(first.spf.status, "missing");
        assert_eq!(first.dmarc.status, "missing");
        assert!(
            matches!(second, Err(crate::ControlError::Conflict(_))),
            "{second:?}"
        );
        other.expect("another tenant's check");
        check("contoso", "contoso.example")
            .await
            .expect("a check once the first has ended");
        // Another tenant's domain, or one that is nobody's, is not found.
        assert!(matches!(
            check("contoso", "fabrikam.example").await,
            Err(crate::ControlError::NotFound(_))
        ));
    }
}
