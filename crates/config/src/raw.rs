//! The configuration file as written: every section and key of SPEC section 11, with unknown
//! keys refused so a typo is an error, not a silent default. `Config::load` checks these and
//! turns them into the [`Config`](crate::Config) the relay runs on.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub smtp: RawSmtp,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub delivery: RawDelivery,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub guard: RawGuard,
    #[serde(default)]
    pub scan: RawScan,
    #[serde(default)]
    pub forwarding: RawForwarding,
    #[serde(default)]
    pub webhooks: RawWebhooks,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
}

/// Tenants' webhooks (alerts and restriction changes).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    /// Waits between attempts; past the end a delivery is given up.
    pub retry_schedule: Option<Vec<String>>,
    pub timeout: Option<String>,
    /// Let webhook URLs reach loopback and private addresses (off: tenants cannot probe the
    /// operator's network through us).
    pub allow_private_addresses: Option<bool>,
    /// CAs trusted for https:// webhooks (PEM).
    pub ca_file: Option<PathBuf>,
}

/// Forwarding (SPEC section 5).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawForwarding {
    /// The key of the SRS hash. Unset: one is generated into `data_dir/srs.key` at first start.
    /// Every node of a cluster needs the same one.
    pub srs_secret: Option<String>,
    /// How long a rewritten sender stays valid for bounces (default `21d`).
    pub srs_max_age: Option<String>,
    /// What one message's forwarded copies may add up to (default `512MB`).
    pub max_bytes_per_message: Option<String>,
}

/// Content scanning (SPEC section 6).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScan {
    /// Content that reaches more than this many external recipients in 24 h is bulk.
    pub bulk_recipients: Option<u32>,
    /// Rspamd's normal worker, `host:port` (e.g. `127.0.0.1:11333`); unset: built-in only.
    pub rspamd: Option<String>,
    pub rspamd_timeout: Option<String>,
    /// When Rspamd cannot answer: `accept` (default: the built-in verdict stands, and the trace
    /// and metrics say so) or `tempfail` (the client is told 451 and tries again later).
    pub rspamd_failure: Option<String>,
}

/// What to do with a message when the external scanner cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanFailure {
    Accept,
    Tempfail,
}

/// Outbound protection settings that are not limits.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuard {
    /// Approve complete, low-risk tenant release requests without an operator.
    pub auto_approve_releases: Option<bool>,
    /// Header From of alert mail (default `postmaster@<smtp.hostname>`).
    pub alert_sender: Option<String>,
    /// SPEC section 9's "messages delayed" alert: this many of a tenant's messages waiting in
    /// the queue longer than `delayed_alert_after` (default 2000 and 1h).
    pub delayed_alert_messages: Option<u64>,
    pub delayed_alert_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub relay_listen: Option<String>,
    pub submission_listen: Option<String>,
    /// Submission over implicit TLS (RFC 8314, port 465 in production); off unless given.
    pub submissions_listen: Option<String>,
    pub hostname: Option<String>,
    /// PEM files; without them a self-signed certificate is made and kept in the data directory.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// PEM bundle of CAs whose client certificates identify certificate connectors.
    pub client_ca: Option<PathBuf>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub command_timeout: Option<String>,
    /// The wait for a command while three quarters of a listener's connections are taken.
    pub busy_command_timeout: Option<String>,
    pub data_timeout: Option<String>,
    pub max_errors: Option<u32>,
    /// NOOP, RSET, VRFY, EXPN, HELP, EHLO and HELO before each further one is an error.
    pub max_junk_commands: Option<u32>,
    /// Disconnect a client that sends before the greeting or before the reply to EHLO, HELO
    /// or DATA (default on).
    pub forbid_improper_pipelining: Option<bool>,
    /// Clients (addresses or ranges) spared that check: devices that cannot be fixed.
    pub improper_pipelining_allowed_from: Option<Vec<String>>,
    /// How long the greeting waits for a client that talks first to show itself.
    pub greet_pause: Option<String>,
    /// Recipients refused to clients no connector claims and no user authenticated, per
    /// client address (an IPv6 /64) within `refused_recipients_window`, before that address
    /// gets 421 for every recipient until the window moves on.
    pub refused_recipients_per_address: Option<u32>,
    pub refused_recipients_window: Option<String>,
    /// Memory that messages being received may hold together past their first 256 KiB each.
    pub max_data_memory: Option<String>,
    /// The longest header section a message may have.
    pub max_header_size: Option<String>,
    /// The whole DATA or BDAT phase of one message may take this long, however slowly the
    /// bytes trickle in (`data_timeout` is the wait for the next bytes).
    pub data_total_timeout: Option<String>,
    /// Failed SMTP AUTH attempts for one account (known or not), across connections, before it
    /// is locked for `auth_lockout`.
    pub auth_failures_per_account: Option<u32>,
    pub auth_lockout: Option<String>,
    /// Failed SMTP AUTH attempts from one client address (an IPv6 /64) within
    /// `auth_address_window` before it gets no more tries until the window moves on.
    pub auth_failures_per_address: Option<u32>,
    pub auth_address_window: Option<String>,
    /// The widest source ranges a connector may claim without an operator's allowance.
    pub widest_connector_ipv4: Option<u8>,
    pub widest_connector_ipv6: Option<u8>,
    /// Where mail to `postmaster` and postmaster@`hostname` is delivered (default: that
    /// address itself, through the smart host or its MX).
    pub postmaster: Option<String>,
    /// Load balancers (addresses or ranges) whose connections open with a PROXY protocol header.
    pub proxy_protocol_from: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    /// Serve the console and the API over TLS with this certificate chain (PEM) and key.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Connections at once, and from one client address (an IPv6 /64); beyond them a new
    /// connection gets 503 and is closed.
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    /// Reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Option<Vec<String>>,
    /// The address people reach the console at, for the links the relay writes.
    pub public_url: Option<String>,
    /// Changes a tenant's own admins may make per hour, through the API and the console.
    pub tenant_changes_per_hour: Option<usize>,
    /// How many domains, connectors, users, routes or console accounts of each kind (and
    /// webhooks) a tenant may have for its own admins to add another.
    pub tenant_objects_max: Option<usize>,
    pub tenant_webhooks_max: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    /// This node's name in a cluster (default: machine name and relay address).
    pub node_name: Option<String>,
    pub max_spool_size: Option<String>,
    /// Message trace rows older than this are deleted (default `90d`).
    pub trace_retention: Option<String>,
    /// Audit entries, alerts and webhook delivery records older than this (default `400d`).
    pub audit_retention: Option<String>,
}

/// A source address of a pool: `"192.0.2.10"`, or `{ ip = "192.0.2.10", hostname =
/// "mta1.example.net" }` to say EHLO with the name its reverse DNS gives.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawPoolAddress {
    Ip(String),
    Named(RawNamedPoolAddress),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNamedPoolAddress {
    pub ip: String,
    pub hostname: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDelivery {
    pub smart_host: Option<String>,
    pub dns_resolver: Option<String>,
    pub normal_pool: Option<Vec<RawPoolAddress>>,
    pub high_risk_pool: Option<Vec<RawPoolAddress>>,
    pub high_risk_hostname: Option<String>,
    pub retry_schedule: Option<Vec<String>>,
    pub expire_after: Option<String>,
    /// Tell the sender once when a message is still undelivered after this long; "0": never.
    pub delay_notice_after: Option<String>,
    pub remote_port: Option<u16>,
    /// Networks off the public internet that tenants' routes and domains' MX records may lead to.
    pub private_destinations: Option<Vec<String>>,
    pub max_per_destination: Option<usize>,
    /// Recipients per transaction at most, when a message has more of one destination.
    pub recipients_per_transaction: Option<usize>,
    pub max_concurrent_messages: Option<usize>,
    /// Bytes of message bodies that delivery rounds may hold together.
    pub max_body_memory: Option<String>,
    pub connect_timeout: Option<String>,
    pub command_timeout: Option<String>,
    pub tls: Option<bool>,
    /// BDAT (RFC 3030) to next hops that offer CHUNKING.
    pub chunking: Option<bool>,
    /// MTA-STS (RFC 8461) for MX delivery.
    pub mta_sts: Option<bool>,
    /// DANE (RFC 7672) for MX delivery, trusting the resolver's AD bit (off by default).
    pub dane: Option<bool>,
    /// The CAs that certificates are checked against where TLS must be trusted (MTA-STS).
    pub tls_ca_file: Option<PathBuf>,
    /// The HTTPS port MTA-STS policies are fetched from (443; tests use their own).
    pub mta_sts_port: Option<u16>,
}

/// Service-wide limits (SPEC sections 3 and 4). The guard (outbound protection) reads the
/// counting ones; the SMTP server enforces the per-message ones.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub unregistered_allowance_per_day: Option<u64>,
    pub unregistered_suspicious_per_day: Option<u64>,
    pub tenant_suspicious_per_day: Option<u64>,
    pub tenant_suspicious_ratio: Option<f64>,
    pub connector_suspicious_per_day: Option<u64>,
    pub connector_suspicious_ratio: Option<f64>,
    pub user_suspicious_per_day: Option<u64>,
    pub user_recipients_per_day: Option<u64>,
    pub user_messages_per_minute: Option<u64>,
    pub recipients_per_message: Option<usize>,
    pub max_message_size: Option<String>,
    pub new_connector_volume_factor: Option<u64>,
    pub outbound_external_per_hour: Option<u64>,
    pub outbound_internal_per_hour: Option<u64>,
    pub outbound_per_day: Option<u64>,
    /// `block_until_tomorrow` (default), `block_until_released` or `alert_only`.
    pub outbound_action: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: String,
    pub language: Option<String>,
    pub subscription_ends: Option<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    #[serde(default)]
    pub domains: Vec<RawDomain>,
    #[serde(default)]
    pub connectors: Vec<RawConnector>,
    #[serde(default)]
    pub users: Vec<RawUser>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
    pub limits: Option<RawLimits>,
    /// Automatic forwarding: `on` (default), `off`, or `listed` (to `forwarding_domains` only).
    pub forwarding: Option<String>,
    #[serde(default)]
    pub forwarding_domains: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDomain {
    pub name: String,
    pub kind: Option<String>,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub match_subdomains: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    pub name: String,
    #[serde(default)]
    pub ips: Vec<String>,
    pub cert_name: Option<String>,
    #[serde(default)]
    pub require_tls: bool,
    pub relay_unregistered: Option<bool>,
    /// The operator allows this connector's ranges to overlap another tenant's.
    #[serde(default)]
    pub allow_overlap: bool,
    /// The operator allows ranges wider than `smtp.widest_connector_ipv4`/`_ipv6`.
    #[serde(default)]
    pub allow_wide: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub address: String,
    pub password: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    pub forward_to: Option<String>,
    /// Forward only, without a copy to the tenant's own server.
    #[serde(default)]
    pub forward_only: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub domain: String,
    pub host: String,
}
