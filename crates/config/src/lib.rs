//! Configuration in two steps: the TOML file as written ([`RawConfig`], unknown keys refused so a
//! typo is an error, not a silent default) and the validated [`Config`] the relay runs on, with
//! every default in one place (`Config::default` via an empty file). SPEC section 11 is the
//! contract for the key names.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

mod claims;
mod nets;
mod raw;
mod tenant;
mod units;

pub use raw::*;
use tenant::tenant_config;
pub use tenant::{ConnectorConfig, DomainConfig, TenantConfig, UserConfig};
pub use units::{parse_duration, parse_size};

/// Limits after defaults are applied: the guard's own type, whose `Default` holds every
/// default in one place.
pub use relayward_guard::Limits;

/// A tenant's limits from overrides given as a JSON object of `[limits]` keys (the API's
/// form). The per-message limits are service-wide and refused here.
pub fn limits_from_overrides(base: &Limits, json: &str) -> Result<Limits> {
    let raw: RawLimits = serde_json::from_str(json).map_err(|e| anyhow!("limits: {e}"))?;
    if raw.recipients_per_message.is_some() || raw.max_message_size.is_some() {
        bail!(
            "recipients_per_message and max_message_size are service-wide ([limits] in the configuration file)"
        );
    }
    Limits::apply(base, &raw, "limits")
}

trait ApplyRaw: Sized {
    fn apply(base: &Self, raw: &RawLimits, at: &str) -> Result<Self>;
}

impl ApplyRaw for Limits {
    /// `base` with the values `raw` sets.
    fn apply(base: &Limits, raw: &RawLimits, at: &str) -> Result<Limits> {
        let mut l = base.clone();
        macro_rules! take {
            ($($f:ident),*) => { $( if let Some(v) = raw.$f { l.$f = v; } )* };
        }
        take!(
            unregistered_allowance_per_day,
            unregistered_suspicious_per_day,
            tenant_suspicious_per_day,
            tenant_suspicious_ratio,
            connector_suspicious_per_day,
            connector_suspicious_ratio,
            user_suspicious_per_day,
            user_recipients_per_day,
            user_messages_per_minute,
            recipients_per_message,
            new_connector_volume_factor
        );
        for (v, f) in [
            (
                &raw.outbound_external_per_hour,
                &mut l.outbound_external_per_hour,
            ),
            (
                &raw.outbound_internal_per_hour,
                &mut l.outbound_internal_per_hour,
            ),
            (&raw.outbound_per_day, &mut l.outbound_per_day),
        ] {
            if v.is_some() {
                *f = *v;
            }
        }
        if let Some(a) = &raw.outbound_action {
            l.outbound_action = relayward_guard::OutboundAction::parse(a).ok_or_else(|| {
                anyhow!("{at}.outbound_action must be block_until_tomorrow, block_until_released or alert_only (got \"{a}\")")
            })?;
        }
        if let Some(s) = &raw.max_message_size {
            l.max_message_size = parse_size(s).with_context(|| format!("{at}.max_message_size"))?;
        }
        if !(1..=1000).contains(&l.recipients_per_message) {
            bail!(
                "{at}.recipients_per_message must be between 1 and 1000 (got {})",
                l.recipients_per_message
            );
        }
        for (name, r) in [
            ("tenant_suspicious_ratio", l.tenant_suspicious_ratio),
            ("connector_suspicious_ratio", l.connector_suspicious_ratio),
        ] {
            if !(0.0..=1.0).contains(&r) {
                bail!("{at}.{name} must be between 0 and 1 (got {r})");
            }
        }
        Ok(l)
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub relay_listen: SocketAddr,
    pub submission_listen: SocketAddr,
    /// `[smtp] submissions_listen`: submission over implicit TLS (port 465), when given.
    pub submissions_listen: Option<SocketAddr>,
    pub hostname: String,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub client_ca: Option<PathBuf>,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub command_timeout: Duration,
    /// `[smtp] busy_command_timeout`: the wait for a command while a listener is busy.
    pub busy_command_timeout: Duration,
    pub data_timeout: Duration,
    pub max_errors: u32,
    /// `[smtp] max_junk_commands`: commands that move no mail before each is an error.
    pub max_junk_commands: u32,
    /// `[smtp] forbid_improper_pipelining`: a client that sends before a reply it must wait
    /// for is answered 554 and disconnected.
    pub forbid_improper_pipelining: bool,
    /// `[smtp] improper_pipelining_allowed_from`: clients spared that check (text behind a
    /// refused DATA still ends their session).
    pub improper_pipelining_allowed_from: Vec<ipnet::IpNet>,
    /// `[smtp] greet_pause`: how long the greeting waits for a client that talks first.
    pub greet_pause: Duration,
    /// `[smtp] refused_recipients_per_address` within `refused_recipients_window`: recipients
    /// refused to an address nobody vouches for before it gets 421 for every recipient.
    pub refused_recipients_per_address: u32,
    pub refused_recipients_window: Duration,
    /// `[smtp] max_data_memory`: what messages being received may hold in memory together,
    /// past their first 256 KiB each.
    pub max_data_memory: usize,
    /// `[smtp] max_header_size`: the longest header section a message may have.
    pub max_header_size: usize,
    pub data_total_timeout: Duration,
    pub auth: AuthLimits,
    pub widest_connector: relayward_tenancy::claims::Widest,
    pub postmaster: Option<String>,
    /// `[smtp] proxy_protocol_from`: load balancers whose connections open with a PROXY
    /// protocol header naming the client.
    pub proxy_protocol_from: Vec<ipnet::IpNet>,
    pub http_listen: SocketAddr,
    /// `[http] tls_cert` and `tls_key`: the HTTP listener speaks TLS only.
    pub http_tls: Option<(PathBuf, PathBuf)>,
    /// `[http] max_connections` and `max_connections_per_ip` (an IPv6 client is its /64).
    pub http_max_connections: usize,
    pub http_max_connections_per_ip: usize,
    /// `[http] trusted_proxies`: reverse proxies whose `X-Forwarded-For` names the client.
    pub http_trusted_proxies: Vec<ipnet::IpNet>,
    /// `[http] public_url`: where people reach the console (links in mail and the command
    /// line's output), without a trailing `/`.
    pub http_public_url: Option<String>,
    /// `[http] tenant_changes_per_hour`: changes one tenant's own admins may make in an hour,
    /// through the API and the console together (0: no limit); operators and the command
    /// line are not counted.
    pub http_tenant_changes_per_hour: usize,
    /// `[http] tenant_objects_max` and `tenant_webhooks_max`: a tenant's own admins may add an
    /// object (domain, connector, user, route, console account; webhook) while the tenant has
    /// fewer than this many of its kind (0: no limit); operators and the command line may add
    /// more.
    pub http_tenant_objects_max: usize,
    pub http_tenant_webhooks_max: usize,
    pub data_dir: PathBuf,
    /// `[storage] database_url`: cluster mode, on the PostgreSQL every node shares.
    pub database_url: Option<String>,
    /// This node's name in a cluster (`[storage] node_name`; by default the machine's name and
    /// the relay address, like `mx1/10.0.0.5:25`).
    pub node_name: String,
    pub max_spool_size: Option<u64>,
    pub trace_retention: Duration,
    pub audit_retention: Duration,
    pub smart_host: Option<String>,
    pub dns_resolver: Option<SocketAddr>,
    pub normal_pool: Vec<PoolAddress>,
    pub high_risk_pool: Vec<PoolAddress>,
    /// `[delivery] private_destinations`: networks off the public internet that tenants' routes
    /// and domains' MX records may lead to.
    pub private_destinations: Vec<ipnet::IpNet>,
    pub high_risk_hostname: Option<String>,
    pub retry_schedule: Vec<Duration>,
    pub expire_after: Duration,
    pub delay_notice_after: Option<Duration>,
    pub remote_port: u16,
    pub max_per_destination: usize,
    /// `[delivery] recipients_per_transaction`: recipients of one destination in one SMTP
    /// transaction at most (100, what RFC 5321 says every server takes).
    pub recipients_per_transaction: usize,
    pub max_concurrent_messages: usize,
    /// `[delivery] max_body_memory`: what the bodies of messages being delivered may hold
    /// together, past the small ones.
    pub max_body_memory: usize,
    pub connect_timeout: Duration,
    pub delivery_command_timeout: Duration,
    pub delivery_tls: bool,
    /// `[delivery] chunking`: BDAT to next hops that offer CHUNKING.
    pub delivery_chunking: bool,
    /// `[delivery] dane`: DANE for MX delivery, through `dns_resolver` (or the system's),
    /// whose AD bit is trusted.
    pub dane: bool,
    /// `[delivery] mta_sts`, `tls_ca_file` and `mta_sts_port`; `None`: MTA-STS off.
    pub mta_sts: Option<MtaSts>,
    pub limits: Limits,
    pub auto_approve_releases: bool,
    pub alert_sender: String,
    /// The "messages delayed" alert: at least this many of a tenant's messages queued for
    /// longer than `delayed_alert_after`.
    pub delayed_alert_messages: u64,
    pub delayed_alert_after: Duration,
    pub bulk_recipients: u32,
    pub rspamd: Option<SocketAddr>,
    pub rspamd_timeout: Duration,
    pub rspamd_failure: ScanFailure,
    pub srs_secret: Option<String>,
    pub srs_max_age: Duration,
    /// `[forwarding] max_bytes_per_message`: what one message's forwarded copies may add up to.
    pub forwarded_bytes_per_message: usize,
    pub webhooks: WebhookConfig,
    pub tenants: Vec<TenantConfig>,
}

/// A source address of a delivery pool, and the EHLO name connections from it use (the pool's
/// `hostname` or `high_risk_hostname` when it has none of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAddress {
    pub ip: IpAddr,
    pub hostname: Option<String>,
}

/// A name fit to follow EHLO: letters, digits and hyphens in dot-separated labels.
fn host_name(s: &str, key: &str) -> Result<String> {
    let fits = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if s.len() > 253 || !s.split('.').all(fits) {
        bail!("{key}: \"{s}\" is not a host name");
    }
    Ok(s.to_ascii_lowercase())
}

/// MTA-STS for MX delivery (`[delivery] mta_sts`, on by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaSts {
    /// `[delivery] tls_ca_file`: the CAs policy hosts' and MX hosts' certificates are checked
    /// against (the system's bundle by default).
    pub ca_file: PathBuf,
    /// `[delivery] mta_sts_port`: where policies are fetched (443).
    pub port: u16,
}

/// How tenants' webhooks are sent.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Waits between attempts; past its end the delivery is given up (`failed`).
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    /// Whether URLs may point at loopback, private and link-local addresses (off by default:
    /// tenants must not reach the operator's internal network through us).
    pub allow_private: bool,
    /// PEM bundle of the CAs trusted for `https://` webhooks.
    pub ca_file: std::path::PathBuf,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            retry_schedule: [10, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 43_200]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            timeout: Duration::from_secs(10),
            allow_private: false,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// Failed SMTP AUTH attempts allowed across connections (password guessing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    pub per_account: u32,
    pub lockout: Duration,
    pub per_address: u32,
    pub address_window: Duration,
}

impl Config {
    /// Reads and validates a configuration file; `None` gives the embedded defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let raw = match path {
            None => RawConfig::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read configuration file {}", p.display()))?;
                toml::from_str(&text)
                    .map_err(|e| anyhow!("configuration file {}: {e}", p.display()))?
            }
        };
        Config::from_raw(raw)
    }

    /// The embedded store or the shared one.
    pub fn clustered(&self) -> bool {
        self.database_url.is_some()
    }

    /// Where people reach the console and the API: `[http] public_url`, or else the listener's
    /// own address (`http_addr`, the one it is bound to) with the scheme it speaks.
    pub fn console_url(&self, http_addr: SocketAddr) -> String {
        match &self.http_public_url {
            Some(url) => url.clone(),
            None if self.http_tls.is_some() => format!("https://{http_addr}"),
            None => format!("http://{http_addr}"),
        }
    }

    pub fn from_raw(raw: RawConfig) -> Result<Config> {
        let addr = |v: &Option<String>, default: &str, key: &str| -> Result<SocketAddr> {
            let s = v.as_deref().unwrap_or(default);
            s.parse().map_err(|_| {
                anyhow!("{key} = \"{s}\" is not an address:port (like 127.0.0.1:2525)")
            })
        };
        let dur = |v: &Option<String>, default: &str, key: &str| -> Result<Duration> {
            parse_duration(v.as_deref().unwrap_or(default)).with_context(|| key.to_string())
        };
        if let Some(url) = &raw.storage.database_url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            bail!(
                "storage.database_url = \"{url}\" is not a PostgreSQL URL (postgres://user@host:port/database)"
            );
        }
        let relay_listen = addr(
            &raw.smtp.relay_listen,
            "127.0.0.1:2525",
            "smtp.relay_listen",
        )?;
        let node_name = match &raw.storage.node_name {
            Some(n) if n.trim().is_empty() || n.len() > 100 => {
                bail!("storage.node_name must have 1 to 100 characters")
            }
            Some(n) => n.trim().to_string(),
            None => format!("{}/{relay_listen}", machine_name()),
        };
        let limits = Limits::apply(&Limits::default(), &raw.limits, "limits")?;
        let hostname = raw
            .smtp
            .hostname
            .clone()
            .unwrap_or_else(|| DEFAULT_HOSTNAME.into());
        let pool = |v: &Option<Vec<RawPoolAddress>>, key: &str| -> Result<Vec<PoolAddress>> {
            v.iter()
                .flatten()
                .map(|a| {
                    let (ip, hostname) = match a {
                        RawPoolAddress::Ip(ip) => (ip, None),
                        RawPoolAddress::Named(n) => (&n.ip, Some(host_name(&n.hostname, key)?)),
                    };
                    let ip = ip
                        .parse()
                        .map_err(|_| anyhow!("{key}: \"{ip}\" is not an IP address"))?;
                    Ok(PoolAddress { ip, hostname })
                })
                .collect()
        };
        let retry_schedule = match &raw.delivery.retry_schedule {
            None => ["1m", "5m", "15m", "30m", "1h", "2h", "4h"]
                .iter()
                .map(|s| parse_duration(s))
                .collect::<Result<Vec<_>>>()?,
            Some(v) if v.is_empty() => bail!("delivery.retry_schedule needs at least one step"),
            Some(v) => v
                .iter()
                .map(|s| parse_duration(s).context("delivery.retry_schedule"))
                .collect::<Result<Vec<_>>>()?,
        };
        let dns_resolver = match &raw.delivery.dns_resolver {
            None => None,
            Some(s) => Some(
                s.parse::<SocketAddr>()
                    .or_else(|_| s.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                    .map_err(|_| anyhow!("delivery.dns_resolver = \"{s}\" is not an address (like 127.0.0.1:5353)"))?,
            ),
        };
        let mut tenants = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for t in raw.tenants {
            if t.name.trim().is_empty() {
                bail!("a [[tenants]] entry has an empty name");
            }
            if !seen.insert(t.name.clone()) {
                bail!("tenant '{}' is declared twice", t.name);
            }
            tenants.push(tenant_config(t, &limits)?);
        }
        let widest_connector = relayward_tenancy::claims::Widest {
            v4: raw.smtp.widest_connector_ipv4.unwrap_or(24),
            v6: raw.smtp.widest_connector_ipv6.unwrap_or(48),
        };
        if widest_connector.v4 > 32 || widest_connector.v6 > 128 {
            bail!(
                "smtp.widest_connector_ipv4 is at most 32 and smtp.widest_connector_ipv6 at most 128"
            );
        }
        claims::check(&tenants, widest_connector)?;
        for (key, v) in [
            ("storage.trace_retention", &raw.storage.trace_retention),
            ("storage.audit_retention", &raw.storage.audit_retention),
        ] {
            if let Some(v) = v
                && parse_duration(v).is_ok_and(|d| d < Duration::from_secs(1))
            {
                bail!("{key} = \"{v}\" would delete rows as they are written; give at least 1s");
            }
        }
        if let Some(v) = &raw.smtp.busy_command_timeout
            && parse_duration(v).is_ok_and(|d| d < Duration::from_secs(1))
        {
            bail!(
                "smtp.busy_command_timeout = \"{v}\" would close sessions between their commands; give at least 1s"
            );
        }
        Ok(Config {
            relay_listen,
            database_url: raw.storage.database_url.clone(),
            node_name,
            submission_listen: addr(
                &raw.smtp.submission_listen,
                "127.0.0.1:2587",
                "smtp.submission_listen",
            )?,
            submissions_listen: match &raw.smtp.submissions_listen {
                None => None,
                Some(_) => Some(addr(
                    &raw.smtp.submissions_listen,
                    "",
                    "smtp.submissions_listen",
                )?),
            },
            hostname: hostname.clone(),
            tls_cert: raw.smtp.tls_cert,
            tls_key: raw.smtp.tls_key,
            client_ca: raw.smtp.client_ca,
            max_connections: raw.smtp.max_connections.unwrap_or(20_000),
            max_connections_per_ip: raw.smtp.max_connections_per_ip.unwrap_or(500),
            command_timeout: dur(&raw.smtp.command_timeout, "5m", "smtp.command_timeout")?,
            busy_command_timeout: dur(
                &raw.smtp.busy_command_timeout,
                "10s",
                "smtp.busy_command_timeout",
            )?,
            data_timeout: dur(&raw.smtp.data_timeout, "3m", "smtp.data_timeout")?,
            max_errors: raw.smtp.max_errors.unwrap_or(10),
            max_junk_commands: raw.smtp.max_junk_commands.unwrap_or(100),
            forbid_improper_pipelining: raw.smtp.forbid_improper_pipelining.unwrap_or(true),
            improper_pipelining_allowed_from: nets::list(
                &raw.smtp.improper_pipelining_allowed_from,
                "smtp.improper_pipelining_allowed_from",
            )?,
            greet_pause: match dur(&raw.smtp.greet_pause, "0s", "smtp.greet_pause")? {
                d if d > Duration::from_secs(30) => bail!(
                    "smtp.greet_pause = \"{}\" is longer than 30s: clients give up on a greeting that slow, and every connection holds its place meanwhile",
                    raw.smtp.greet_pause.as_deref().unwrap_or_default()
                ),
                d => d,
            },
            refused_recipients_per_address: raw
                .smtp
                .refused_recipients_per_address
                .unwrap_or(100)
                .max(1),
            refused_recipients_window: match dur(
                &raw.smtp.refused_recipients_window,
                "10m",
                "smtp.refused_recipients_window",
            )? {
                d if d < Duration::from_secs(1) => {
                    bail!("smtp.refused_recipients_window must be at least 1s")
                }
                d => d,
            },
            max_data_memory: match &raw.smtp.max_data_memory {
                Some(s) => parse_size(s).with_context(|| "smtp.max_data_memory")?,
                None => 1024 * 1024 * 1024,
            },
            max_header_size: match &raw.smtp.max_header_size {
                Some(s) => match parse_size(s).with_context(|| "smtp.max_header_size")? {
                    n if n < 1024 => bail!("smtp.max_header_size: {s} is below 1KB"),
                    n => n,
                },
                None => 1024 * 1024,
            },
            data_total_timeout: dur(
                &raw.smtp.data_total_timeout,
                "10m",
                "smtp.data_total_timeout",
            )?,
            auth: AuthLimits {
                per_account: raw.smtp.auth_failures_per_account.unwrap_or(5).max(1),
                lockout: dur(&raw.smtp.auth_lockout, "15m", "smtp.auth_lockout")?,
                per_address: raw.smtp.auth_failures_per_address.unwrap_or(20).max(1),
                address_window: dur(
                    &raw.smtp.auth_address_window,
                    "10m",
                    "smtp.auth_address_window",
                )?,
            },
            widest_connector,
            postmaster: match raw.smtp.postmaster.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(a) if a.contains('@') && !a.contains(['<', '>', ' ']) => {
                    Some(a.to_ascii_lowercase())
                }
                Some(a) => bail!("smtp.postmaster = \"{a}\" is not an e-mail address"),
            },
            proxy_protocol_from: nets::balancers(
                &raw.smtp.proxy_protocol_from,
                "smtp.proxy_protocol_from",
            )?,
            http_listen: addr(&raw.http.listen, "127.0.0.1:8025", "http.listen")?,
            http_tls: match (raw.http.tls_cert, raw.http.tls_key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => bail!("http.tls_cert and http.tls_key must be given together"),
            },
            http_max_connections: raw.http.max_connections.unwrap_or(1024),
            http_max_connections_per_ip: raw.http.max_connections_per_ip.unwrap_or(64),
            http_trusted_proxies: nets::balancers(
                &raw.http.trusted_proxies,
                "http.trusted_proxies",
            )?,
            http_tenant_changes_per_hour: raw.http.tenant_changes_per_hour.unwrap_or(600),
            http_tenant_objects_max: raw.http.tenant_objects_max.unwrap_or(10_000),
            http_tenant_webhooks_max: raw.http.tenant_webhooks_max.unwrap_or(20),
            http_public_url: match raw.http.public_url.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(u)
                    if (u.starts_with("https://") || u.starts_with("http://"))
                        && !u.contains(char::is_whitespace) =>
                {
                    Some(u.trim_end_matches('/').to_string())
                }
                Some(u) => bail!("http.public_url = \"{u}\" is not an http:// or https:// URL"),
            },
            data_dir: raw
                .storage
                .data_dir
                .unwrap_or_else(|| PathBuf::from("./relayward-data")),
            max_spool_size: raw
                .storage
                .max_spool_size
                .as_deref()
                .map(|s| {
                    parse_size(s)
                        .map(|n| n as u64)
                        .context("storage.max_spool_size")
                })
                .transpose()?,
            trace_retention: dur(
                &raw.storage.trace_retention,
                "90d",
                "storage.trace_retention",
            )?,
            audit_retention: dur(
                &raw.storage.audit_retention,
                "400d",
                "storage.audit_retention",
            )?,
            smart_host: raw.delivery.smart_host,
            dns_resolver,
            normal_pool: pool(&raw.delivery.normal_pool, "delivery.normal_pool")?,
            high_risk_pool: pool(&raw.delivery.high_risk_pool, "delivery.high_risk_pool")?,
            private_destinations: nets::list(
                &raw.delivery.private_destinations,
                "delivery.private_destinations",
            )?,
            high_risk_hostname: raw.delivery.high_risk_hostname,
            retry_schedule,
            expire_after: dur(&raw.delivery.expire_after, "48h", "delivery.expire_after")?,
            delay_notice_after: Some(dur(
                &raw.delivery.delay_notice_after,
                "4h",
                "delivery.delay_notice_after",
            )?)
            .filter(|d| !d.is_zero()),
            remote_port: raw.delivery.remote_port.unwrap_or(25),
            max_per_destination: raw.delivery.max_per_destination.unwrap_or(20),
            recipients_per_transaction: match raw.delivery.recipients_per_transaction {
                None => 100,
                Some(n @ 1..=1000) => n,
                Some(n) => bail!(
                    "delivery.recipients_per_transaction must be between 1 and 1000 (got {n})"
                ),
            },
            max_concurrent_messages: raw.delivery.max_concurrent_messages.unwrap_or(512),
            max_body_memory: match &raw.delivery.max_body_memory {
                Some(s) => match parse_size(s).with_context(|| "delivery.max_body_memory")? {
                    n if n < 1024 * 1024 => bail!("delivery.max_body_memory: {s} is below 1MB"),
                    n => n,
                },
                None => 1024 * 1024 * 1024,
            },
            connect_timeout: dur(
                &raw.delivery.connect_timeout,
                "30s",
                "delivery.connect_timeout",
            )?,
            delivery_command_timeout: dur(
                &raw.delivery.command_timeout,
                "5m",
                "delivery.command_timeout",
            )?,
            delivery_tls: raw.delivery.tls.unwrap_or(true),
            delivery_chunking: raw.delivery.chunking.unwrap_or(true),
            dane: raw.delivery.dane.unwrap_or(false),
            mta_sts: raw.delivery.mta_sts.unwrap_or(true).then(|| MtaSts {
                ca_file: raw
                    .delivery
                    .tls_ca_file
                    .clone()
                    .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into()),
                port: raw.delivery.mta_sts_port.unwrap_or(443),
            }),
            limits,
            auto_approve_releases: raw.guard.auto_approve_releases.unwrap_or(false),
            alert_sender: raw
                .guard
                .alert_sender
                .clone()
                .unwrap_or_else(|| format!("postmaster@{hostname}")),
            delayed_alert_messages: match raw.guard.delayed_alert_messages {
                Some(0) => bail!("guard.delayed_alert_messages must be at least 1"),
                n => n.unwrap_or(2000),
            },
            delayed_alert_after: dur(
                &raw.guard.delayed_alert_after,
                "1h",
                "guard.delayed_alert_after",
            )?,
            bulk_recipients: raw.scan.bulk_recipients.unwrap_or(20),
            rspamd: raw
                .scan
                .rspamd
                .as_ref()
                .map(|s| {
                    s.parse().map_err(|_| {
                        anyhow!(
                            "scan.rspamd = \"{s}\" is not an address:port (like 127.0.0.1:11333)"
                        )
                    })
                })
                .transpose()?,
            rspamd_timeout: dur(&raw.scan.rspamd_timeout, "5s", "scan.rspamd_timeout")?,
            webhooks: {
                let mut w = WebhookConfig::default();
                if let Some(list) = &raw.webhooks.retry_schedule {
                    w.retry_schedule = list
                        .iter()
                        .map(|s| parse_duration(s).with_context(|| "webhooks.retry_schedule"))
                        .collect::<Result<_>>()?;
                }
                w.timeout = dur(&raw.webhooks.timeout, "10s", "webhooks.timeout")?;
                w.allow_private = raw.webhooks.allow_private_addresses.unwrap_or(false);
                if let Some(f) = &raw.webhooks.ca_file {
                    w.ca_file = f.clone();
                }
                w
            },
            srs_secret: raw.forwarding.srs_secret.clone(),
            srs_max_age: dur(&raw.forwarding.srs_max_age, "21d", "forwarding.srs_max_age")?,
            forwarded_bytes_per_message: match &raw.forwarding.max_bytes_per_message {
                Some(s) => parse_size(s).with_context(|| "forwarding.max_bytes_per_message")?,
                None => 512 * 1024 * 1024,
            },
            rspamd_failure: match raw.scan.rspamd_failure.as_deref() {
                None | Some("accept") => ScanFailure::Accept,
                Some("tempfail") => ScanFailure::Tempfail,
                Some(other) => bail!(
                    "scan.rspamd_failure must be \"accept\" or \"tempfail\" (got \"{other}\")"
                ),
            },
            tenants,
        })
    }
}

/// `[smtp] hostname` when the file gives none: a placeholder, which two relays may share.
pub const DEFAULT_HOSTNAME: &str = "relay.example.net";

/// The machine's own name (the kernel's), else "relayward".
fn machine_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "relayward".into())
}

#[cfg(test)]
mod tests;
