//! Where a message goes: the hosts to try for a domain (a route, the smart host, or its MX
//! records), which of their addresses mail may reach, and the pool it leaves from.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use relayward_spool::{Envelope, RcptState};

use super::{Inner, PoolAddress, pending};
use crate::dns::DnsError;
use crate::mta_sts::Mode;

/// Where one delivery attempt leaves from.
pub(super) struct Pool {
    /// The pool's source addresses (empty: the system chooses).
    pub(super) sources: Vec<PoolAddress>,
    pub(super) helo: String,
    /// Why the high-risk pool; `None` for the normal pool.
    pub(super) high_risk: Option<String>,
}

impl Pool {
    /// The source address of a connection to `to`: one of the pool's of the same family, at
    /// random (a pool may have IPv4 and IPv6 addresses; an IPv4 one cannot reach an IPv6 host);
    /// `Ok(None)` when the pool is empty. `Err` when the pool has none of that family: the
    /// host is not reached from this pool, rather than from an address the operator did not
    /// give it.
    pub(super) fn source_for(&self, to: IpAddr) -> Result<Option<&PoolAddress>, String> {
        if self.sources.is_empty() {
            return Ok(None);
        }
        let v4 = to.to_canonical().is_ipv4();
        let fit: Vec<&PoolAddress> = self
            .sources
            .iter()
            .filter(|s| s.ip.to_canonical().is_ipv4() == v4)
            .collect();
        match fit.choose(&mut rand::thread_rng()) {
            Some(source) => Ok(Some(*source)),
            None => Err(format!(
                "the {} pool has no {} source address",
                if self.high_risk.is_some() {
                    "high-risk"
                } else {
                    "normal"
                },
                if v4 { "IPv4" } else { "IPv6" }
            )),
        }
    }
}

fn no_mx_nor_a(domain: &str) -> String {
    format!("sender domain {domain} has neither MX nor A records")
}

pub(super) struct Hop {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    /// The recipient domain's MTA-STS mode, where it has a policy that asks for something.
    pub(super) sts: Option<Mode>,
    /// What the host's signed TLSA records ask (DANE), where it has them.
    pub(super) dane: Option<crate::dane::HostDane>,
}

/// The recipient domains of `idxs`, for what a delivery says: the first three, in the
/// message's order, and how many more.
pub(super) fn domains_of(env: &Envelope, idxs: &[usize]) -> String {
    if let [only] = idxs {
        return env
            .recipients
            .get(*only)
            .map(|r| r.domain())
            .unwrap_or_default();
    }
    name_domains(
        idxs.iter()
            .filter_map(|&i| env.recipients.get(i))
            .map(|r| r.domain()),
    )
}

fn name_domains(domains: impl Iterator<Item = String>) -> String {
    let mut seen = std::collections::HashSet::new();
    let mut shown = Vec::new();
    for d in domains {
        if shown.len() < 3 && !seen.contains(&d) {
            shown.push(d.clone());
        }
        seen.insert(d);
    }
    let mut out = shown.join(", ");
    if seen.len() > shown.len() {
        out.push_str(&format!(" and {} more", seen.len() - shown.len()));
    }
    out
}

pub(super) fn dns_state(e: DnsError) -> RcptState {
    match e {
        DnsError::NotFound(why) => RcptState::Failed {
            reply: format!("550 5.1.2 Recipient domain not found ({why})"),
            remote: None,
        },
        DnsError::Temporary(why) => pending(&format!("451 4.4.3 DNS lookup failed ({why})")),
    }
}

/// `host:port`, `[v6]:port`, or a bare host with the default port.
fn split_host_port(target: &str, default_port: u16) -> (String, u16) {
    if let Ok(sa) = target.parse::<SocketAddr>() {
        return (sa.ip().to_string(), sa.port());
    }
    match target.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => match p.parse() {
            Ok(port) => (h.to_string(), port),
            Err(_) => (target.to_string(), default_port),
        },
        _ => (target.trim_matches(['[', ']']).to_string(), default_port),
    }
}

impl Inner {
    /// The destination whose slots, health and metrics `domain`'s mail counts under: the next
    /// hop itself, in brackets (`[127.0.0.1:2600]`), when a route or the smart host names one,
    /// so that every domain sent to one host shares its slots and its transactions; else the
    /// domain, whose MX hosts are its own.
    pub(super) fn destination_of(&self, domain: &str) -> String {
        match self
            .router
            .route(domain)
            .or_else(|| self.config.smart_host.clone())
        {
            Some(target) => format!("[{target}]"),
            None => domain.to_string(),
        }
    }

    /// The hosts to try for `domain`, best first, or the final state for every recipient when
    /// there is nowhere to go; `domains` names the recipient domains that go there with it.
    pub(super) async fn hops(&self, domain: &str, domains: &str) -> Result<Vec<Hop>, RcptState> {
        if let Some(target) = self.router.route(domain) {
            let (host, port) = split_host_port(&target, self.config.remote_port);
            let hops = self.addresses(&host, port).await.map_err(dns_state)?;
            // An address the operator wrote in the route is theirs to choose; a name is
            // answered by whoever holds its DNS.
            if host.parse::<IpAddr>().is_ok() {
                return Ok(hops);
            }
            return self.reachable(domains, hops);
        }
        if let Some(target) = &self.config.smart_host {
            let (host, port) = split_host_port(target, self.config.remote_port);
            return self.addresses(&host, port).await.map_err(dns_state);
        }
        let mut mxs = self.resolver.mx(domain).await.map_err(dns_state)?;
        if mxs.len() == 1 && (mxs[0].1.is_empty() || mxs[0].1 == ".") {
            return Err(RcptState::Failed {
                reply: format!("556 5.1.10 The domain {domain} accepts no mail (null MX)"),
                remote: None,
            });
        }
        let implicit = mxs.is_empty();
        if implicit {
            // RFC 5321 5.1: no MX means the domain itself is the mail host.
            mxs.push((0, domain.to_string()));
        }
        mxs.shuffle(&mut rand::thread_rng());
        mxs.sort_by_key(|(pref, _)| *pref);
        let dane = match &self.dane {
            Some(d) if d.mx_signed(domain, implicit).await => Some(d),
            _ => None,
        };
        let sts = self.mta_sts_hosts(domain, &mut mxs, dane.is_some()).await?;
        let mut hops = Vec::new();
        let mut last_err = None;
        for (_, host) in mxs.iter().take(5) {
            match self.addresses(host, self.config.remote_port).await {
                Ok(mut h) => hops.append(&mut h),
                Err(e) => last_err = Some(e),
            }
        }
        if hops.is_empty() {
            return Err(dns_state(last_err.unwrap_or(DnsError::NotFound(format!(
                "no address for any mail host of {domain}"
            )))));
        }
        if let Some(dane) = dane {
            for h in &mut hops {
                h.dane = dane.host(&h.name, h.addr.port()).await;
            }
        }
        if let Some(policy) = &sts {
            self.keep_named(domain, &mut hops, policy)?;
            for h in &mut hops {
                h.sts = Some(policy.mode);
            }
        }
        self.reachable(domains, hops)
    }

    /// The hops mail for `domain` (one or more, named) may go to (`reach.rs`); when none is
    /// left, the recipients fail, and the operator is told which key would allow the address.
    fn reachable(&self, domain: &str, hops: Vec<Hop>) -> Result<Vec<Hop>, RcptState> {
        let allowed = &self.config.private_destinations;
        let (reach, refused): (Vec<Hop>, Vec<Hop>) = hops
            .into_iter()
            .partition(|h| crate::reach::may_reach(h.addr.ip(), allowed));
        match refused.first() {
            Some(h) if reach.is_empty() => {
                let ip = h.addr.ip().to_canonical();
                tracing::warn!(domain, host = %h.name, %ip, "mail not delivered: its destination is not on the public internet (list the network in [delivery] private_destinations to allow it)");
                Err(RcptState::Failed {
                    reply: format!(
                        "550 5.4.4 Mail for {domain} would go to {} [{ip}], which is not on the public internet: this relay does not deliver there",
                        h.name
                    ),
                    remote: None,
                })
            }
            _ => Ok(reach),
        }
    }

    async fn addresses(&self, host: &str, port: u16) -> Result<Vec<Hop>, DnsError> {
        let ips = self.resolver.ips(host).await?;
        if ips.is_empty() {
            return Err(DnsError::NotFound(format!("{host} has no address")));
        }
        Ok(ips
            .into_iter()
            .map(|ip| Hop {
                name: host.to_string(),
                addr: SocketAddr::new(ip, port),
                sts: None,
                dane: None,
            })
            .collect())
    }

    /// The pool a message leaves from, and why: the high-risk pool for reports, for mail the
    /// scanner called bulk or spam, and for mail whose sender domain has neither MX nor A
    /// records (SPEC section 6); the normal pool for the rest.
    pub(super) async fn pool_for(&self, env: &Envelope) -> Pool {
        let reason = if env.is_report {
            Some("a report Relayward wrote".to_string())
        } else if !env.high_risk.is_empty() {
            Some(env.high_risk.clone())
        } else {
            self.sender_domain_unresolvable(&env.mail_from).await
        };
        let (pool, helo, counter) = if reason.is_some() {
            (
                &self.config.high_risk_pool,
                &self.config.high_risk_hostname,
                &self.stats.high_risk_pool_messages,
            )
        } else {
            (
                &self.config.normal_pool,
                &self.config.hostname,
                &self.stats.normal_pool_messages,
            )
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Pool {
            sources: pool.clone(),
            helo: helo.clone(),
            high_risk: reason,
        }
    }

    /// `Some(reason)` when the sender's domain has neither MX nor A/AAAA records. A DNS failure
    /// that may pass is no proof of anything: such mail keeps the normal pool. Answers are
    /// remembered for ten minutes.
    async fn sender_domain_unresolvable(&self, mail_from: &str) -> Option<String> {
        if !self.config.check_sender_dns {
            return None;
        }
        let domain = relayward_names::domain_key(mail_from.rsplit_once('@')?.1).into_owned();
        if domain.is_empty() {
            return None;
        }
        let fresh = Duration::from_secs(600);
        if let Some((bad, at)) = self
            .sender_dns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&domain)
            && at.elapsed() < fresh
        {
            return bad.then(|| no_mx_nor_a(&domain));
        }
        let missing =
            |r: Result<bool, DnsError>| matches!(r, Ok(false) | Err(DnsError::NotFound(_)));
        let has_mx = self.resolver.mx(&domain).await.map(|m| !m.is_empty());
        let bad =
            missing(has_mx) && missing(self.resolver.ips(&domain).await.map(|a| !a.is_empty()));
        let mut cache = self.sender_dns.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(domain.clone(), (bad, Instant::now()));
        bad.then(|| no_mx_nor_a(&domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_names_its_first_three_domains_and_counts_the_rest() {
        let named = |list: &[&str]| name_domains(list.iter().map(|d| d.to_string()));
        assert_eq!(named(&["a.example"]), "a.example");
        assert_eq!(named(&["a.example", "a.example"]), "a.example");
        assert_eq!(
            named(&["a.example", "b.example", "a.example", "c.example"]),
            "a.example, b.example, c.example"
        );
        assert_eq!(
            named(&[
                "a.example",
                "b.example",
                "c.example",
                "d.example",
                "b.example",
                "e.example"
            ]),
            "a.example, b.example, c.example and 2 more"
        );
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            split_host_port("127.0.0.1:2600", 25),
            ("127.0.0.1".into(), 2600)
        );
        assert_eq!(split_host_port("[::1]:2600", 25), ("::1".into(), 2600));
        assert_eq!(split_host_port("mx.example", 25), ("mx.example".into(), 25));
        assert_eq!(
            split_host_port("mx.example:26", 25),
            ("mx.example".into(), 26)
        );
    }
}
