//! SPF (RFC 7208) as a domain check needs it: whether a domain's record lets an address send
//! mail for the domain. The mechanisms are evaluated as a receiver would (`all`, `include`,
//! `a`, `mx`, `ip4`, `ip6`, `exists`, and the `redirect` modifier), within the RFC's limits: ten
//! terms that look something up, two that find nothing, ten MX hosts. What a check from here
//! cannot judge (macros, which take the sender's address and the client's name; `ptr`, which
//! takes the client's reverse DNS) is answered as such instead of guessed.
//!
//! Every answer of one check is kept for the rest of it, so the relay's several addresses cost
//! the DNS one look-up each; and the check as a whole asks at most [`MAX_QUERIES`] questions.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use relayward_delivery::dns::{DnsError, Resolver};

/// Questions one check may ask the DNS, however many addresses it judges.
pub const MAX_QUERIES: usize = 60;
/// Terms that look something up (RFC 7208 section 4.6.4).
const MAX_TERMS: u32 = 10;
/// Look-ups that find nothing (section 4.6.4).
const MAX_VOID: u32 = 2;
/// MX hosts of one `mx` term (section 4.6.4).
const MAX_MX: usize = 10;

/// A sending address of the relay and the pool it belongs to (`normal` or `high_risk`).
#[derive(Debug, Clone)]
pub struct SendingAddress {
    pub ip: IpAddr,
    pub pool: &'static str,
}

/// The relay's sending addresses as its configuration names them.
pub fn sending_addresses(config: &relayward_config::Config) -> Vec<SendingAddress> {
    let pool = |addrs: &[relayward_config::PoolAddress], pool| {
        addrs
            .iter()
            .map(move |a| SendingAddress { ip: a.ip, pool })
            .collect::<Vec<_>>()
    };
    let mut all = pool(&config.normal_pool, "normal");
    all.extend(pool(&config.high_risk_pool, "high_risk"));
    all
}

/// What the record says of one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpfResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    /// No SPF record.
    None,
    /// The record is broken, or breaks a limit.
    PermError(String),
    /// The DNS did not answer; try again later.
    TempError(String),
    /// The record depends on what this check cannot know (macros, `ptr`).
    Unknown(String),
}

impl SpfResult {
    pub fn word(&self) -> &'static str {
        match self {
            SpfResult::Pass => "pass",
            SpfResult::Fail => "fail",
            SpfResult::SoftFail => "softfail",
            SpfResult::Neutral => "neutral",
            SpfResult::None => "none",
            SpfResult::PermError(_) => "permerror",
            SpfResult::TempError(_) => "temperror",
            SpfResult::Unknown(_) => "unknown",
        }
    }

    /// Why, for the errors and the unknown.
    pub fn reason(&self) -> Option<&str> {
        match self {
            SpfResult::PermError(r) | SpfResult::TempError(r) | SpfResult::Unknown(r) => Some(r),
            _ => None,
        }
    }
}

/// The DNS answers of one check, and how many questions it has asked.
pub struct Lookups<'r> {
    resolver: &'r dyn Resolver,
    txt: HashMap<String, Result<Vec<String>, DnsError>>,
    mx: HashMap<String, Result<Vec<(u16, String)>, DnsError>>,
    ips: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
    asked: usize,
}

fn copy<T: Clone>(r: &Result<T, DnsError>) -> Result<T, DnsError> {
    match r {
        Ok(v) => Ok(v.clone()),
        Err(DnsError::NotFound(e)) => Err(DnsError::NotFound(e.clone())),
        Err(DnsError::Temporary(e)) => Err(DnsError::Temporary(e.clone())),
    }
}

/// Too many questions for one check: a temporary error, as the DNS's own would be.
fn over_budget() -> DnsError {
    DnsError::Temporary(format!(
        "the check asked the DNS {MAX_QUERIES} questions and stopped"
    ))
}

impl<'r> Lookups<'r> {
    pub fn new(resolver: &'r dyn Resolver) -> Lookups<'r> {
        Lookups {
            resolver,
            txt: HashMap::new(),
            mx: HashMap::new(),
            ips: HashMap::new(),
            asked: 0,
        }
    }

    fn spend(&mut self) -> Result<(), DnsError> {
        if self.asked >= MAX_QUERIES {
            return Err(over_budget());
        }
        self.asked += 1;
        Ok(())
    }

    pub async fn txt(&mut self, name: &str) -> Result<Vec<String>, DnsError> {
        let key = name.to_ascii_lowercase();
        if let Some(r) = self.txt.get(&key) {
            return copy(r);
        }
        self.spend()?;
        let r = self.resolver.txt(&key).await;
        self.txt.insert(key, copy(&r));
        r
    }

    async fn mx(&mut self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let key = name.to_ascii_lowercase();
        if let Some(r) = self.mx.get(&key) {
            return copy(r);
        }
        self.spend()?;
        let r = self.resolver.mx(&key).await;
        self.mx.insert(key, copy(&r));
        r
    }

    async fn ips(&mut self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        let key = name.to_ascii_lowercase();
        if let Some(r) = self.ips.get(&key) {
            return copy(r);
        }
        self.spend()?;
        let r = self.resolver.ips(&key).await;
        self.ips.insert(key, copy(&r));
        r
    }
}

/// The SPF record of `domain`: `Ok(None)` when it has none.
pub async fn record(lookups: &mut Lookups<'_>, domain: &str) -> Result<Option<String>, SpfResult> {
    let found = match lookups.txt(domain).await {
        Ok(found) => found,
        Err(DnsError::NotFound(_)) => return Ok(None),
        Err(DnsError::Temporary(e)) => return Err(SpfResult::TempError(e)),
    };
    let mut spf = found
        .into_iter()
        .filter(|t| is_version(t, "v=spf1", &[' ']));
    match (spf.next(), spf.next()) {
        (None, _) => Ok(None),
        (Some(one), None) => Ok(Some(one)),
        (Some(_), Some(_)) => Err(SpfResult::PermError(format!(
            "{domain} has more than one SPF record; receivers then take none"
        ))),
    }
}

/// Whether a TXT record is one of `version` (`v=spf1`, `v=DMARC1`): the tag in any letter
/// case, then the record's end or one of `next`.
pub(crate) fn is_version(txt: &str, version: &str, next: &[char]) -> bool {
    let t = txt.trim_start();
    t.get(..version.len())
        .is_some_and(|v| v.eq_ignore_ascii_case(version))
        && t[version.len()..]
            .chars()
            .next()
            .is_none_or(|c| next.contains(&c))
}

/// What `domain`'s SPF record says of mail from `ip` (RFC 7208's `check_host`).
pub async fn check(lookups: &mut Lookups<'_>, ip: IpAddr, domain: &str) -> SpfResult {
    let mut limits = Limits { terms: 0, void: 0 };
    check_host(lookups, ip.to_canonical(), domain, &mut limits, 0).await
}

struct Limits {
    terms: u32,
    void: u32,
}

impl Limits {
    fn term(&mut self) -> Result<(), SpfResult> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(SpfResult::PermError(format!(
                "more than {MAX_TERMS} look-ups (include, a, mx, ptr, exists, redirect); receivers stop there"
            )));
        }
        Ok(())
    }

    fn found_nothing(&mut self) -> Result<(), SpfResult> {
        self.void += 1;
        if self.void > MAX_VOID {
            return Err(SpfResult::PermError(format!(
                "more than {MAX_VOID} look-ups that find nothing"
            )));
        }
        Ok(())
    }
}

/// The qualifier of a mechanism that matched.
fn qualified(q: char) -> SpfResult {
    match q {
        '-' => SpfResult::Fail,
        '~' => SpfResult::SoftFail,
        '?' => SpfResult::Neutral,
        _ => SpfResult::Pass,
    }
}

fn check_host<'a, 'r: 'a>(
    lookups: &'a mut Lookups<'r>,
    ip: IpAddr,
    domain: &'a str,
    limits: &'a mut Limits,
    depth: u32,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = SpfResult> + Send + 'a>> {
    Box::pin(async move {
        // Every level spends a term, so the terms limit bounds the depth; this is a second guard.
        if depth > MAX_TERMS {
            return SpfResult::PermError("includes nested too deep".into());
        }
        let text = match record(lookups, domain).await {
            Ok(Some(text)) => text,
            Ok(None) => return SpfResult::None,
            Err(e) => return e,
        };
        match evaluate(lookups, ip, domain, &text, limits, depth).await {
            Ok(r) | Err(r) => r,
        }
    })
}

/// Evaluates a record's terms in order; `Err` carries a result that ends the evaluation.
async fn evaluate(
    lookups: &mut Lookups<'_>,
    ip: IpAddr,
    domain: &str,
    text: &str,
    limits: &mut Limits,
    depth: u32,
) -> Result<SpfResult, SpfResult> {
    let mut redirect: Option<&str> = None;
    let mut has_all = false;
    let terms: Vec<&str> = text.split_whitespace().skip(1).collect();
    // Syntax first: a receiver refuses a record with a bad term wherever it stands.
    for term in &terms {
        let (_, body) = split_qualifier(term);
        match parse_term(body) {
            Term::Redirect(target) => {
                if redirect.replace(target).is_some() {
                    return Err(SpfResult::PermError("more than one redirect=".into()));
                }
            }
            Term::Mechanism("all", _) => has_all = true,
            Term::Mechanism(..) | Term::OtherModifier => {}
            Term::Bad => {
                return Err(SpfResult::PermError(format!(
                    "'{term}' is not an SPF mechanism or modifier"
                )));
            }
        }
    }
    for term in &terms {
        let (q, body) = split_qualifier(term);
        let Term::Mechanism(name, arg) = parse_term(body) else {
            continue;
        };
        if matches(lookups, ip, domain, name, arg, limits, depth).await? {
            return Ok(qualified(q));
        }
    }
    match redirect {
        // A record with `all` never reaches its redirect.
        Some(target) if !has_all => {
            limits.term()?;
            let target = target_domain(Some(target), domain)?;
            Ok(
                match check_host(lookups, ip, &target, limits, depth + 1).await {
                    SpfResult::None => {
                        SpfResult::PermError(format!("redirect={target} finds no SPF record"))
                    }
                    other => other,
                },
            )
        }
        _ => Ok(SpfResult::Neutral),
    }
}

fn split_qualifier(term: &str) -> (char, &str) {
    match term.chars().next() {
        Some(q @ ('+' | '-' | '~' | '?')) => (q, &term[1..]),
        _ => ('+', term),
    }
}

enum Term<'t> {
    /// A mechanism's name (lower case) and what follows it (`:domain/24`, `/24`, or nothing).
    Mechanism(&'static str, &'t str),
    Redirect(&'t str),
    OtherModifier,
    Bad,
}

fn parse_term(body: &str) -> Term<'_> {
    const MECHANISMS: [&str; 8] = ["all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"];
    for m in MECHANISMS {
        // `get`: a record is the domain owner's text, and may hold any character.
        if body
            .get(..m.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(m))
        {
            let rest = &body[m.len()..];
            if rest.is_empty() || rest.starts_with(':') || rest.starts_with('/') {
                return Term::Mechanism(m, rest);
            }
        }
    }
    if let Some((name, value)) = body.split_once('=') {
        let good_name = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if good_name {
            return if name.eq_ignore_ascii_case("redirect") {
                Term::Redirect(value)
            } else {
                Term::OtherModifier
            };
        }
    }
    Term::Bad
}

/// The domain a term names (`include:x`, `a:x`), or the record's own; `Err` for one this check
/// cannot evaluate (a macro) or that is not a domain.
fn target_domain(spec: Option<&str>, own: &str) -> Result<String, SpfResult> {
    let Some(spec) = spec else {
        return Ok(own.to_string());
    };
    if spec.contains('%') {
        return Err(SpfResult::Unknown(format!(
            "'{spec}' uses macros, which take the sender's address and the client: not evaluated here"
        )));
    }
    let d = spec.trim_end_matches('.');
    let labels_ok = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return Err(SpfResult::PermError(format!("'{spec}' is not a domain")));
    }
    Ok(d.to_ascii_lowercase())
}

/// Splits `:domain/cidr4//cidr6` (each part optional) into the domain and the two prefix
/// lengths.
fn domain_and_prefixes(arg: &str) -> Result<(Option<&str>, u8, u8), SpfResult> {
    let bad = || SpfResult::PermError(format!("'{arg}' is not a domain and prefix length"));
    let (rest, v6) = match arg.split_once("//") {
        Some((rest, v6)) => (
            rest,
            v6.parse::<u8>()
                .ok()
                .filter(|l| *l <= 128)
                .ok_or_else(bad)?,
        ),
        None => (arg, 128),
    };
    let (rest, v4) = match rest.rsplit_once('/') {
        Some((rest, v4)) => (
            rest,
            v4.parse::<u8>().ok().filter(|l| *l <= 32).ok_or_else(bad)?,
        ),
        None => (rest, 32),
    };
    let domain = match rest.strip_prefix(':') {
        Some(d) => Some(d),
        None if rest.is_empty() => None,
        None => return Err(bad()),
    };
    Ok((domain, v4, v6))
}

fn within(ip: IpAddr, candidate: IpAddr, v4: u8, v6: u8) -> bool {
    let candidate = candidate.to_canonical();
    let len = match candidate {
        IpAddr::V4(_) => v4,
        IpAddr::V6(_) => v6,
    };
    IpNet::new(candidate, len).is_ok_and(|net| net.contains(&ip))
}

async fn matches(
    lookups: &mut Lookups<'_>,
    ip: IpAddr,
    domain: &str,
    name: &str,
    arg: &str,
    limits: &mut Limits,
    depth: u32,
) -> Result<bool, SpfResult> {
    let temp = |e: String| SpfResult::TempError(e);
    match name {
        "all" => Ok(true),
        "ip4" | "ip6" => {
            let spec = arg
                .strip_prefix(':')
                .ok_or_else(|| SpfResult::PermError(format!("{name} without an address")))?;
            let net = if spec.contains('/') {
                spec.parse::<IpNet>().ok()
            } else {
                spec.parse::<IpAddr>().ok().map(IpNet::from)
            };
            let fits = |n: &IpNet| match n {
                IpNet::V4(_) => name == "ip4",
                IpNet::V6(_) => name == "ip6",
            };
            let net = net
                .filter(fits)
                .ok_or_else(|| SpfResult::PermError(format!("'{name}{arg}' is not an address")))?;
            Ok(net.contains(&ip))
        }
        "include" => {
            limits.term()?;
            let spec = arg
                .strip_prefix(':')
                .ok_or_else(|| SpfResult::PermError("include without a domain".into()))?;
            let target = target_domain(Some(spec), domain)?;
            match check_host(lookups, ip, &target, limits, depth + 1).await {
                SpfResult::Pass => Ok(true),
                SpfResult::Fail | SpfResult::SoftFail | SpfResult::Neutral => Ok(false),
                SpfResult::None => Err(SpfResult::PermError(format!(
                    "include:{target} finds no SPF record"
                ))),
                other => Err(other),
            }
        }
        "a" | "mx" => {
            limits.term()?;
            let (spec, v4, v6) = domain_and_prefixes(arg)?;
            let target = target_domain(spec, domain)?;
            let hosts = if name == "a" {
                vec![target]
            } else {
                match lookups.mx(&target).await {
                    Ok(mx) if mx.len() > MAX_MX => {
                        return Err(SpfResult::PermError(format!(
                            "{target} has more than {MAX_MX} MX hosts"
                        )));
                    }
                    Ok(mx) => mx.into_iter().map(|(_, h)| h).collect(),
                    Err(DnsError::NotFound(_)) => Vec::new(),
                    Err(DnsError::Temporary(e)) => return Err(temp(e)),
                }
            };
            if hosts.is_empty() {
                limits.found_nothing()?;
            }
            for host in hosts {
                match lookups.ips(host.trim_end_matches('.')).await {
                    Ok(found) => {
                        if found.is_empty() {
                            limits.found_nothing()?;
                        }
                        if found.into_iter().any(|c| within(ip, c, v4, v6)) {
                            return Ok(true);
                        }
                    }
                    Err(DnsError::NotFound(_)) => limits.found_nothing()?,
                    Err(DnsError::Temporary(e)) => return Err(temp(e)),
                }
            }
            Ok(false)
        }
        "exists" => {
            limits.term()?;
            let spec = arg
                .strip_prefix(':')
                .ok_or_else(|| SpfResult::PermError("exists without a domain".into()))?;
            let target = target_domain(Some(spec), domain)?;
            match lookups.ips(&target).await {
                Ok(found) => {
                    if found.is_empty() {
                        limits.found_nothing()?;
                    }
                    Ok(found.iter().any(IpAddr::is_ipv4))
                }
                Err(DnsError::NotFound(_)) => {
                    limits.found_nothing()?;
                    Ok(false)
                }
                Err(DnsError::Temporary(e)) => Err(temp(e)),
            }
        }
        // `ptr` asks for the client's reverse DNS, which a check from here does not have.
        _ => {
            limits.term()?;
            Err(SpfResult::Unknown(
                "the record reaches 'ptr', which depends on the client's reverse DNS: not evaluated here".into(),
            ))
        }
    }
}

#[cfg(test)]
mod tests;
