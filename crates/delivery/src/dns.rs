//! Name resolution for delivery: MX records (with the implicit MX of RFC 5321 5.1 and null MX
//! of RFC 7505) and host addresses. A trait, so tests and operators can point it at their own
//! resolver.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use hickory_resolver::TokioAsyncResolver;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::error::ResolveErrorKind;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN): a permanent failure.
    NotFound(String),
    /// Timeouts, SERVFAIL and the like: try again later.
    Temporary(String),
}

pub type DnsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DnsError>> + Send + 'a>>;

pub trait Resolver: Send + Sync + 'static {
    /// MX hosts with preferences; an empty list means there are no MX records.
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>>;
    fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>>;
    /// TXT records of `name`, each one's strings joined (domain ownership proofs).
    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            Err(DnsError::Temporary(format!(
                "TXT lookup for {name}: this resolver does not look up TXT records"
            )))
        })
    }
    /// The names an address's reverse DNS (PTR records) gives, without their final dot.
    fn ptr<'a>(&'a self, ip: IpAddr) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            Err(DnsError::Temporary(format!(
                "PTR lookup for {ip}: this resolver does not look up PTR records"
            )))
        })
    }
}

pub struct HickoryResolver {
    inner: TokioAsyncResolver,
}

impl HickoryResolver {
    /// A resolver asking `server` (UDP and TCP), or the system's resolvers when `None`.
    pub fn new(server: Option<SocketAddr>) -> Result<HickoryResolver, String> {
        let mut opts = ResolverOpts::default();
        opts.timeout = std::time::Duration::from_secs(5);
        opts.attempts = 2;
        let inner = match server {
            Some(addr) => {
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                TokioAsyncResolver::tokio(ResolverConfig::from_parts(None, vec![], group), opts)
            }
            None => {
                let (config, _) = hickory_resolver::system_conf::read_system_conf()
                    .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?;
                TokioAsyncResolver::tokio(config, opts)
            }
        };
        Ok(HickoryResolver { inner })
    }
}

fn classify(e: hickory_resolver::error::ResolveError, what: &str) -> Result<(), DnsError> {
    match e.kind() {
        ResolveErrorKind::NoRecordsFound { response_code, .. } => {
            if *response_code == hickory_resolver::proto::op::ResponseCode::NXDomain {
                Err(DnsError::NotFound(format!("{what}: no such domain")))
            } else {
                Ok(())
            }
        }
        _ => Err(DnsError::Temporary(format!("{what}: {e}"))),
    }
}

impl Resolver for HickoryResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<(u16, String)>> {
        Box::pin(async move {
            let fqdn = format!("{}.", domain.trim_end_matches('.'));
            match self.inner.mx_lookup(fqdn).await {
                Ok(found) => Ok(found
                    .iter()
                    .map(|mx| {
                        let host = mx.exchange().to_ascii();
                        (mx.preference(), host.trim_end_matches('.').to_string())
                    })
                    .collect()),
                Err(e) => classify(e, &format!("MX lookup for {domain}")).map(|_| Vec::new()),
            }
        })
    }

    fn txt<'a>(&'a self, name: &'a str) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            let fqdn = format!("{}.", name.trim_end_matches('.'));
            match self.inner.txt_lookup(fqdn).await {
                Ok(found) => Ok(found
                    .iter()
                    .map(|txt| {
                        txt.txt_data()
                            .iter()
                            .map(|part| String::from_utf8_lossy(part).into_owned())
                            .collect::<String>()
                    })
                    .collect()),
                Err(e) => classify(e, &format!("TXT lookup for {name}")).map(|_| Vec::new()),
            }
        })
    }

    fn ptr<'a>(&'a self, ip: IpAddr) -> DnsFuture<'a, Vec<String>> {
        Box::pin(async move {
            match self.inner.reverse_lookup(ip).await {
                Ok(found) => Ok(found
                    .iter()
                    .map(|name| name.to_ascii().trim_end_matches('.').to_string())
                    .collect()),
                Err(e) => classify(e, &format!("PTR lookup for {ip}")).map(|_| Vec::new()),
            }
        })
    }

    fn ips<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        Box::pin(async move {
            if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
                return Ok(vec![ip]);
            }
            let fqdn = format!("{}.", host.trim_end_matches('.'));
            match self.inner.lookup_ip(fqdn).await {
                Ok(found) => Ok(found.iter().collect()),
                Err(e) => classify(e, &format!("address lookup for {host}")).map(|_| Vec::new()),
            }
        })
    }
}
