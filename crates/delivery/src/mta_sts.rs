//! MTA-STS (RFC 8461): a recipient domain that publishes a policy in `enforce` mode gets its
//! mail only from MX hosts its policy names, over TLS with a certificate that a trusted CA
//! issued for the host's name. Opportunistic TLS (`starttls.rs`) falls back to clear text when
//! TLS breaks; under such a policy the mail waits instead, and the trace says why. In `testing`
//! mode mail goes as it would without a policy, and what would have failed is logged and
//! counted.
//!
//! The policy is found through the TXT record `_mta-sts.<domain>` (its `id` tells when the
//! policy changed) and fetched from `https://mta-sts.<domain>/.well-known/mta-sts.txt`
//! (`mta_sts/fetch.rs`). It is cached for its `max_age`; the TXT record is looked at again at
//! most once a minute per domain. A domain whose policy cannot be had gets its mail as if it
//! had none, unless a policy fetched before is still within its age (RFC 8461 section 5.1).
//! Only MX delivery is concerned: a tenant's route and the smart host are the operator's.

mod fetch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dns::{DnsError, Resolver};

/// How often a domain's TXT record is looked at again while its policy is cached.
const RECHECK: Duration = Duration::from_secs(60);
/// The longest a policy may be kept (RFC 8461 section 3.2).
const MAX_AGE: u64 = 31_557_600;
/// Domains whose policy (or lack of one) is remembered at most.
const MAX_DOMAINS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Testing,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Host name patterns: a name, or `*.` and a name (one label more, any).
    pub mx: Vec<String>,
    pub max_age: u64,
}

impl Policy {
    /// Reads a policy file (RFC 8461 section 3.2): `key: value` lines; unknown keys are left.
    pub fn parse(text: &str) -> Result<Policy, String> {
        let (mut version, mut mode, mut max_age, mut mx) = (None, None, None, Vec::new());
        for line in text.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                "version" => version = Some(value.to_string()),
                "mode" => {
                    mode = Some(match value {
                        "enforce" => Mode::Enforce,
                        "testing" => Mode::Testing,
                        "none" => Mode::None,
                        other => return Err(format!("unknown mode {other:?}")),
                    })
                }
                "max_age" => {
                    let age: u64 = value
                        .parse()
                        .map_err(|_| format!("max_age {value:?} is not a number of seconds"))?;
                    max_age = Some(age.min(MAX_AGE));
                }
                "mx" => mx.push(value.trim_end_matches('.').to_ascii_lowercase()),
                _ => {}
            }
        }
        if version.as_deref() != Some("STSv1") {
            return Err("no \"version: STSv1\" line".into());
        }
        let mode = mode.ok_or("no mode")?;
        let max_age = max_age.ok_or("no max_age")?;
        if mode != Mode::None && mx.is_empty() {
            return Err("no mx patterns".into());
        }
        Ok(Policy { mode, mx, max_age })
    }

    /// Whether the MX host `host` is one the policy names.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(parent) => host
                .split_once('.')
                .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
            None => *p == host,
        })
    }
}

/// The `id` of a domain's `_mta-sts` TXT record, when it has exactly one valid record.
fn txt_id(records: &[String]) -> Option<String> {
    let mut sts = records.iter().filter(|r| r.starts_with("v=STSv1;"));
    let record = sts.next()?;
    if sts.next().is_some() {
        return None;
    }
    record
        .split(';')
        .filter_map(|f| f.trim().split_once('='))
        .find(|(k, _)| k.trim() == "id")
        .map(|(_, v)| v.trim().to_string())
        .filter(|id| {
            !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

struct Cached {
    /// The TXT record's id the policy was fetched under.
    id: String,
    policy: Option<Arc<Policy>>,
    /// When the policy's age runs out.
    until: Instant,
    /// When the TXT record was last looked at.
    checked: Instant,
}

/// The operator's settings.
#[derive(Debug, Clone)]
pub struct MtaStsConfig {
    /// The CAs (PEM) that policy hosts' and MX hosts' certificates are checked against.
    pub ca_file: std::path::PathBuf,
    /// The policy host's HTTPS port.
    pub port: u16,
    /// The longest a policy fetch may take.
    pub timeout: Duration,
}

impl Default for MtaStsConfig {
    fn default() -> MtaStsConfig {
        MtaStsConfig {
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            port: 443,
            timeout: Duration::from_secs(10),
        }
    }
}

/// Where and how policies are fetched.
#[derive(Clone)]
pub struct Settings {
    /// Verifies the policy host's certificate, and an MX host's where a policy is enforced
    /// (at the handshake) or tested (after it).
    pub tls: crate::client::Verifying,
    /// The policy host's HTTPS port (443; tests point it at their own server).
    pub port: u16,
    /// Networks off the public internet that a policy host found in DNS may still be in.
    pub private_destinations: Vec<ipnet::IpNet>,
    pub timeout: Duration,
}

/// Policies as fetched, per recipient domain.
pub struct MtaSts {
    settings: Settings,
    resolver: Arc<dyn Resolver>,
    cache: std::sync::Mutex<HashMap<String, Cached>>,
    /// One fetch at a time per domain: deliveries to a domain at once wait for one answer.
    fetching: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Where fetched policies are kept across restarts (the relay's store).
    keeper: std::sync::OnceLock<Arc<dyn relayward_store::Store>>,
}

impl MtaSts {
    pub fn new(settings: Settings, resolver: Arc<dyn Resolver>) -> MtaSts {
        MtaSts {
            settings,
            resolver,
            cache: Default::default(),
            fetching: Default::default(),
            keeper: Default::default(),
        }
    }

    /// Keeps fetched policies in `store`, and reads them from it for domains not seen since
    /// the start: an attacker who blocks the policy host after a restart does not make a
    /// policy fetched before it lapse (RFC 8461 section 10.2).
    pub fn keep_in(&self, store: Arc<dyn relayward_store::Store>) {
        let _ = self.keeper.set(store);
    }

    pub fn tls(&self) -> &crate::client::Verifying {
        &self.settings.tls
    }

    /// The policy in force for `domain`, if any (`None` also for a domain whose policy cannot
    /// be had and was never fetched).
    pub async fn policy(&self, domain: &str) -> Option<Arc<Policy>> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(p) = self.fresh(&domain) {
            return p;
        }
        let lock = {
            let mut f = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            if f.len() > MAX_DOMAINS {
                f.retain(|_, l| Arc::strong_count(l) > 1);
            }
            f.entry(domain.clone()).or_default().clone()
        };
        let _one = lock.lock().await;
        // Another delivery may have looked while this one waited.
        if let Some(p) = self.fresh(&domain) {
            return p;
        }
        let now = Instant::now();
        self.read_kept(&domain, now).await;
        let kept = self.kept(&domain, now);
        let records = match self.resolver.txt(&format!("_mta-sts.{domain}")).await {
            Ok(r) => r,
            Err(DnsError::NotFound(_)) => Vec::new(),
            Err(DnsError::Temporary(why)) => {
                tracing::debug!(
                    domain,
                    why,
                    "MTA-STS record not looked up; the cached policy holds"
                );
                self.touch(&domain, now);
                return kept.and_then(|(_, p)| p);
            }
        };
        let Some(id) = txt_id(&records) else {
            self.touch(&domain, now);
            return kept.and_then(|(_, p)| p);
        };
        if let Some((kept_id, policy)) = &kept
            && *kept_id == id
        {
            self.touch(&domain, now);
            return policy.clone();
        }
        match fetch::policy(&self.settings, self.resolver.as_ref(), &domain).await {
            Ok((policy, text)) => {
                tracing::info!(domain, id, mode = ?policy.mode, mx = ?policy.mx, max_age = policy.max_age, "MTA-STS policy fetched");
                let policy = Arc::new(policy);
                self.write_kept(&domain, &id, text, policy.max_age).await;
                self.store(
                    &domain,
                    Cached {
                        id,
                        // Kept at least until the TXT record is looked at again: a policy
                        // with a max_age of 0 still holds for the deliveries of that minute.
                        until: now + Duration::from_secs(policy.max_age).max(RECHECK),
                        policy: Some(policy.clone()),
                        checked: now,
                    },
                );
                Some(policy)
            }
            Err(why) => {
                tracing::warn!(
                    domain,
                    why,
                    "MTA-STS policy announced but not fetched; delivering as without one unless a policy fetched before still holds"
                );
                match kept {
                    Some((_, policy)) => {
                        self.touch(&domain, now);
                        policy
                    }
                    None => {
                        // Asked again in a minute, not at every delivery.
                        self.store(
                            &domain,
                            Cached {
                                id: String::new(),
                                policy: None,
                                until: now,
                                checked: now,
                            },
                        );
                        None
                    }
                }
            }
        }
    }

    /// A domain without a policy in memory (not seen since the start, or without one when last
    /// looked at): its policy from the store, if one is kept there within its age, fetched by
    /// this node before a restart or by another node (its TXT record is then looked at as for a
    /// policy fetched here).
    async fn read_kept(&self, domain: &str, now: Instant) {
        let Some(store) = self.keeper.get() else {
            return;
        };
        if self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .is_some_and(|c| c.policy.is_some() && c.until > now)
        {
            return;
        }
        let now_ms = relayward_clock::now_ms();
        let row = match store.mta_sts_policy(domain, now_ms).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(domain, error = %e, "cannot read the MTA-STS policy kept for this domain");
                return;
            }
        };
        match Policy::parse(&row.policy) {
            Ok(policy) => self.store(
                domain,
                Cached {
                    id: row.id,
                    policy: Some(Arc::new(policy)),
                    until: now + Duration::from_millis((row.expires_at - now_ms).max(0) as u64),
                    checked: now.checked_sub(RECHECK).unwrap_or(now),
                },
            ),
            Err(why) => tracing::warn!(
                domain,
                why,
                "the MTA-STS policy kept for this domain cannot be read; left"
            ),
        }
    }

    async fn write_kept(&self, domain: &str, id: &str, text: String, max_age: u64) {
        let Some(store) = self.keeper.get() else {
            return;
        };
        let now_ms = relayward_clock::now_ms();
        let row = relayward_store::MtaStsRow {
            domain: domain.to_string(),
            id: id.to_string(),
            policy: text,
            fetched_at: now_ms,
            expires_at: now_ms.saturating_add((max_age as i64).saturating_mul(1000)),
        };
        if let Err(e) = store.save_mta_sts_policy(&row, now_ms).await {
            tracing::warn!(domain, error = %e, "cannot keep the MTA-STS policy fetched; it holds in memory until the relay stops");
        }
    }

    /// The cached answer when its TXT record was looked at within the last minute.
    fn fresh(&self, domain: &str) -> Option<Option<Arc<Policy>>> {
        let now = Instant::now();
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let c = cache.get(domain)?;
        (now.duration_since(c.checked) < RECHECK)
            .then(|| (c.until > now).then(|| c.policy.clone()).flatten())
    }

    /// The cached id and policy while the policy's age lasts.
    fn kept(&self, domain: &str, now: Instant) -> Option<(String, Option<Arc<Policy>>)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache
            .get(domain)
            .filter(|c| c.until > now)
            .map(|c| (c.id.clone(), c.policy.clone()))
    }

    fn touch(&self, domain: &str, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get_mut(domain) {
            Some(c) => c.checked = now,
            None => {
                drop(cache);
                self.store(
                    domain,
                    Cached {
                        id: String::new(),
                        policy: None,
                        until: now,
                        checked: now,
                    },
                );
            }
        }
    }

    fn store(&self, domain: &str, c: Cached) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_DOMAINS && !cache.contains_key(domain) {
            let now = Instant::now();
            cache.retain(|_, c| c.until > now || now.duration_since(c.checked) < RECHECK);
            if cache.len() >= MAX_DOMAINS {
                return;
            }
        }
        cache.insert(domain.to_string(), c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_file_is_read_as_rfc_8461_writes_it() {
        let p = Policy::parse(
            "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.Example.NET.\r\nmax_age: 86400\r\nextension: ignored\r\n",
        )
        .expect("policy");
        assert_eq!(p.mode, Mode::Enforce);
        assert_eq!(p.max_age, 86_400);
        assert!(p.allows("mail.example.com"));
        assert!(p.allows("MAIL.example.com."));
        // A wildcard stands for exactly one label.
        assert!(p.allows("mx1.example.net"));
        assert!(!p.allows("example.net"));
        assert!(!p.allows("a.b.example.net"));
        assert!(!p.allows("mail.example.org"));
        // Bare line feeds, and an age past a year is a year.
        let p = Policy::parse("version: STSv1\nmode: testing\nmx: mx.test\nmax_age: 99999999999\n")
            .expect("policy");
        assert_eq!((p.mode, p.max_age), (Mode::Testing, MAX_AGE));
        // What is not a policy.
        for bad in [
            "mode: enforce\nmx: a.test\nmax_age: 1",
            "version: STSv2\nmode: enforce\nmx: a.test\nmax_age: 1",
            "version: STSv1\nmode: strict\nmx: a.test\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmax_age: 1",
            "version: STSv1\nmode: enforce\nmx: a.test",
            "<html>not found</html>",
        ] {
            assert!(Policy::parse(bad).is_err(), "{bad}");
        }
        assert!(Policy::parse("version: STSv1\nmode: none\nmax_age: 1").is_ok());
    }

    #[test]
    fn the_txt_record_names_one_policy_id() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            txt_id(&r(&["v=spf1 -all", "v=STSv1; id=20160831085700Z;"])).as_deref(),
            Some("20160831085700Z")
        );
        assert_eq!(txt_id(&r(&["v=STSv1;id=abc"])).as_deref(), Some("abc"));
        // Two records, none, a bad id: no policy.
        assert_eq!(txt_id(&r(&["v=STSv1; id=a;", "v=STSv1; id=b;"])), None);
        assert_eq!(txt_id(&r(&["v=spf1 -all"])), None);
        assert_eq!(txt_id(&r(&["v=STSv1; id=not-alnum;"])), None);
        assert_eq!(txt_id(&r(&["v=STSv1; ID=x;"])), None);
    }
}
