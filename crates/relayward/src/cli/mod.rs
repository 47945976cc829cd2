//! The operator's command line, one file per command group. Every change goes through the
//! control plane (`relayward_control`), so the command line applies the API's rules and leaves
//! the same audit entries, with the command-line actor (`cli:<user>`).

pub mod accounts;
pub mod backup;
pub mod directory;
pub mod dkim;
pub mod nodes;
pub mod queue;
pub mod restrictions;
pub mod trace;

use std::io::Write;

use anyhow::{Result, anyhow};
use relayward_config::Config;
use relayward_control::{Actor, Control};
use relayward_guard::Role;

/// One line on stdout. When the reader has gone away (`relayward ... | head -3`), the command
/// ends quietly, as command-line tools do; any other failure to write ends it with a message.
pub fn write_line(args: std::fmt::Arguments) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("relayward: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// The control plane over the configuration's store: every command's only way to it.
pub async fn open(config: &Config) -> Result<Control> {
    Ok(Control::new(
        config,
        relayward_control::open_store(config).await?,
    ))
}

/// The operator at the relay's own command line.
pub fn operator() -> Actor {
    Actor::command_line(format!("cli:{}", whoami()), Role::Operator)
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

/// `--actor` and `--as` of the commands that act on restrictions and keys.
#[derive(clap::Args, Clone)]
pub struct ActorArgs {
    /// Who acts (recorded in the restriction's history and the audit log).
    #[arg(long, global = true)]
    pub actor: Option<String>,
    /// Act as a tenant `admin` or as an `operator` (the default: this is the operator's shell).
    #[arg(long = "as", global = true, default_value = "operator")]
    pub role: String,
}

impl ActorArgs {
    pub fn actor(&self) -> Result<Actor> {
        let role = match self.role.as_str() {
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            other => return Err(anyhow!("--as must be admin or operator (got {other})")),
        };
        let name = self
            .actor
            .clone()
            .unwrap_or_else(|| format!("cli:{}", whoami()));
        Ok(Actor::command_line(name, role))
    }
}

/// `relayward check-dns`: the sending addresses' reverse DNS, as `sending_dns` finds it.
pub async fn check_dns(config: &Config) -> Result<()> {
    let resolver = relayward_delivery::dns::HickoryResolver::new(config.dns_resolver)
        .map_err(|e| anyhow::anyhow!(e))?;
    let report = relayward_control::sending_dns::check(config, &resolver).await;
    outln!("sending addresses as receivers look them up:");
    for a in &report.addresses {
        outln!(
            "  {} ({}, EHLO {}): {}: {}",
            a.ip,
            a.source,
            a.ehlo,
            a.status,
            a.advice
        );
    }
    for note in &report.notes {
        outln!("  note: {note}");
    }
    if !report.fine() {
        anyhow::bail!("the sending addresses' DNS needs the changes above");
    }
    Ok(())
}

/// `check-config`: what the configuration file resolves to, its TLS files loaded as the relay
/// would load them.
pub fn check_config(config: &Config) -> Result<()> {
    let tls = relayward_node::check_tls(config)?;
    outln!("configuration is valid");
    outln!("  relay:      {}", config.relay_listen);
    outln!("  submission: {}", config.submission_listen);
    if let Some(a) = config.submissions_listen {
        outln!("  submissions (implicit TLS): {a}");
    }
    outln!("  http:       {}", config.http_listen);
    for c in &tls.certificates {
        outln!(
            "  {} certificate: {} (valid until {})",
            c.listener,
            c.cert.display(),
            c.not_after
                .map(relayward_clock::iso_date)
                .unwrap_or_else(|| "unknown".into())
        );
    }
    if let (Some(path), Some(n)) = (&config.client_ca, tls.client_cas) {
        outln!(
            "  client CA bundle: {} ({n} CA{})",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
    }
    match &config.smart_host {
        Some(h) => outln!("  delivery:   everything to the smart host {h}"),
        None => outln!("  delivery:   to each domain's MX hosts (tenants' routes first)"),
    }
    for (name, pool, default) in [
        ("normal pool:", &config.normal_pool, &config.hostname),
        (
            "high-risk pool:",
            &config.high_risk_pool,
            config
                .high_risk_hostname
                .as_ref()
                .unwrap_or(&config.hostname),
        ),
    ] {
        if pool.is_empty() {
            continue;
        }
        let addresses: Vec<String> = pool
            .iter()
            .map(|a| {
                let helo = a.hostname.as_ref().unwrap_or(default);
                format!("{} (EHLO {helo})", a.ip)
            })
            .collect();
        outln!("  {name} {}", addresses.join(", "));
    }
    match (&config.smart_host, &config.mta_sts) {
        (Some(_), _) => outln!("  MTA-STS:    not applied (everything goes to the smart host)"),
        (None, None) => outln!("  MTA-STS:    off"),
        (None, Some(m)) => match relayward_delivery::client::ca_bundle(&m.ca_file) {
            Ok(roots) => outln!(
                "  MTA-STS:    on; certificates checked against {} ({} CA{})",
                m.ca_file.display(),
                roots.len(),
                if roots.len() == 1 { "" } else { "s" }
            ),
            Err(e) => outln!(
                "  MTA-STS:    OFF: the CA bundle cannot be used ({e}); set [delivery] tls_ca_file, or mta_sts = false"
            ),
        },
    }
    match (&config.smart_host, config.dane, config.dns_resolver) {
        (_, false, _) => outln!("  DANE:       off"),
        (Some(_), true, _) => {
            outln!("  DANE:       not applied (everything goes to the smart host)")
        }
        (None, true, Some(r)) => {
            outln!("  DANE:       on; the AD bit of {r} is trusted (it must validate DNSSEC)")
        }
        (None, true, None) => outln!(
            "  DANE:       on; the AD bit of the system's resolver is trusted (it must validate DNSSEC)"
        ),
    }
    if !config.proxy_protocol_from.is_empty() {
        outln!(
            "  PROXY protocol from: {}",
            nets(&config.proxy_protocol_from)
        );
    }
    if !config.http_trusted_proxies.is_empty() {
        outln!(
            "  HTTP trusted proxies: {}",
            nets(&config.http_trusted_proxies)
        );
    }
    if let Some(url) = &config.http_public_url {
        outln!("  console at: {url}");
    }
    outln!("  data dir:   {}", config.data_dir.display());
    outln!("  tenants:    {}", config.tenants.len());
    for t in &config.tenants {
        outln!(
            "    {} [{}]: {} domains, {} connectors, {} users; unregistered allowance {}/day, {} recipients/message",
            t.name,
            t.language,
            t.domains.len(),
            t.connectors.len(),
            t.users.len(),
            t.limits.unregistered_allowance_per_day,
            t.limits.recipients_per_message
        );
    }
    Ok(())
}

/// Networks as a comma-separated list.
fn nets<T: std::fmt::Display>(list: &[T]) -> String {
    list.iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
