//! `relayward`: the relay (`serve`) and the operator's command line (tenants, domains,
//! connectors, users, routes, trace). The only place that knows every part.

mod accounts;
mod api;
mod api_schemas;
mod claims;
mod config;
mod directory_admin;
mod dkim;
mod forward;
mod guard;
mod guard_cli;
mod http;
mod passwords;
mod policy;
mod retention;
mod service;
mod srs;
mod tls;
mod trace;
mod webhooks;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use relayward_delivery::dns::HickoryResolver;
use relayward_delivery::{DeliveryConfig, Queue, Router};
use relayward_smtp::{Listener, ListenerKind, ServerConfig, Shutdown};
use relayward_spool::Spool;
use relayward_store::{
    Connector, Domain, DomainKind, Route, SqliteStore, Store, Tenant, TenantData, TraceQuery, User,
};
use relayward_tenancy::Directory;

use crate::config::Config;
use crate::policy::{PolicyStats, RelayPolicy};
use crate::trace::TraceSink;

#[derive(Parser)]
#[command(
    name = "relayward",
    version,
    about = "Multi-tenant outbound mail relay"
)]
struct Cli {
    /// Configuration file (TOML); without it the embedded defaults are used.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve,
    /// Check the configuration file and print what it resolves to.
    CheckConfig,
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Accepted domains.
    #[command(subcommand)]
    Domain(DomainCmd),
    /// Connectors (how a tenant's own servers are recognised).
    #[command(subcommand)]
    Connector(ConnectorCmd),
    /// Users (mailboxes, SMTP AUTH credentials).
    #[command(subcommand)]
    User(UserCmd),
    /// Inbound routes to a tenant's own servers.
    #[command(subcommand)]
    Route(RouteCmd),
    /// Search the message trace.
    Trace(TraceArgs),
    /// List restrictions (open ones unless --all).
    Restrictions {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Act on one restriction.
    Restriction {
        #[command(subcommand)]
        cmd: guard_cli::RestrictionCmd,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
    /// Alerts, newest first.
    Alerts {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Every counter of a tenant beside its threshold.
    Counters {
        tenant: String,
        #[arg(long)]
        json: bool,
    },
    /// The audit log as JSON lines, newest first.
    Audit {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// API tokens for scripts (the management API under /api/v1).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Operator accounts for the support console.
    #[command(subcommand)]
    Operator(OperatorCmd),
    /// Accounts of every role (admin center and support console).
    #[command(subcommand)]
    Account(AccountCmd),
    /// DKIM keys of an accepted domain: the records to publish, and rotation.
    Dkim {
        #[command(subcommand)]
        cmd: DkimCmd,
    },
}

#[derive(Subcommand)]
enum OperatorCmd {
    /// Make an operator account and print its one-time setup link (there are no default
    /// passwords): whoever opens it sets the password and enrols an authenticator.
    Create { email: String },
}

#[derive(Subcommand)]
enum AccountCmd {
    /// Make an account and print its one-time setup link.
    Create {
        email: String,
        /// operator, admin or reader.
        #[arg(long)]
        role: String,
        /// The tenant of an admin or reader.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Accounts with role, tenant, last sign-in and lockout.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn print_setup(config: &Config, a: &relayward_store::Account, token: &str) {
    println!(
        "{} account {} created. One-time setup link (valid 24 hours):\n  http://{}/api/v1/setup/{token}\nGET it for the authenticator key, then POST it {{\"password\", \"totp\"}}.",
        a.role, a.email, config.http_listen
    );
}

#[derive(Subcommand)]
enum DkimCmd {
    /// The DNS records to publish and each key's state.
    Show { tenant: String, domain: String },
    /// Start a rotation: new keys to publish (mail is still signed with the current ones).
    Rotate {
        tenant: String,
        domain: String,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
    /// Sign with the new keys once their records are published (checked in DNS unless --force);
    /// the old keys keep their records for a week.
    Activate {
        tenant: String,
        domain: String,
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
    /// End the overlap: the old keys' records may be removed.
    Retire {
        tenant: String,
        domain: String,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
}

fn print_dkim(keys: &[relayward_store::DkimKey]) {
    for k in keys {
        let (name, record) = dkim::record(k);
        let advice = match k.state {
            relayward_store::DkimKeyState::Pending => "publish, then `relayward dkim activate`",
            relayward_store::DkimKeyState::Active => "signing; keep published",
            relayward_store::DkimKeyState::Retiring => {
                "no longer signing; keep published until `relayward dkim retire` (a week)"
            }
            relayward_store::DkimKeyState::Retired => "may be removed from DNS",
        };
        println!(
            "{:<9} {:<15} {name} TXT \"{record}\"\n          ({advice})",
            k.state.as_str(),
            k.algorithm
        );
    }
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it once (only its hash is kept).
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// operator, admin or reader.
        #[arg(long)]
        role: String,
        /// The tenant of an admin or reader token.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime (e.g. 90d); without it the token lasts until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List tokens (never their secrets): role, tenant, created, last used, revoked.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by its id (the part after `rw_`, before the second `_`).
    Revoke { id: String },
}

#[derive(Subcommand)]
enum TenantCmd {
    Add {
        name: String,
        #[arg(long, default_value = "en")]
        language: String,
        /// Last day of the subscription, YYYY-MM-DD.
        #[arg(long)]
        subscription_ends: Option<String>,
        /// Admin address for alerts (repeatable).
        #[arg(long)]
        admin: Vec<String>,
    },
    /// List tenants with their domains, connectors and users.
    List,
    /// Automatic forwarding of users' mail to outside addresses: on, off, or listed domains only.
    Forwarding {
        name: String,
        /// on, off or listed.
        #[arg(long)]
        mode: String,
        /// With --mode listed: a domain users may forward to (repeatable).
        #[arg(long)]
        domain: Vec<String>,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
    /// Set or clear the subscription end date (a renewal applies within a second).
    Subscription {
        name: String,
        /// Last day, YYYY-MM-DD; omit to make the subscription open-ended.
        #[arg(long)]
        ends: Option<String>,
    },
}

#[derive(Subcommand)]
enum DomainCmd {
    Add {
        tenant: String,
        domain: String,
        /// authoritative or internal_relay.
        #[arg(long, default_value = "authoritative")]
        kind: String,
        #[arg(long)]
        match_subdomains: bool,
        /// The operator vouches for ownership without the DNS proof.
        #[arg(long)]
        verified: bool,
    },
    /// Check the domain's ownership TXT record through the configured resolver and mark it
    /// verified when it is there (until then it counts as unregistered).
    Verify {
        tenant: String,
        domain: String,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
    /// Dismiss a domain seen in restricted traffic as not the tenant's (checklist item 1).
    Dismiss {
        tenant: String,
        domain: String,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
}

#[derive(Subcommand)]
enum ConnectorCmd {
    Add {
        tenant: String,
        name: String,
        /// Source address or CIDR range (repeatable).
        #[arg(long)]
        ip: Vec<String>,
        /// Name on the client certificate (wildcards allowed).
        #[arg(long)]
        cert_name: Option<String>,
        #[arg(long)]
        require_tls: bool,
        /// May relay for sender domains that are not accepted domains.
        #[arg(long)]
        relay_unregistered: bool,
        /// Allow ranges that overlap another tenant's connector (needs --reason).
        #[arg(long)]
        allow_overlap: bool,
        /// Allow ranges wider than smtp.widest_connector_ipv4/_ipv6 (needs --reason).
        #[arg(long)]
        allow_wide: bool,
        /// Why the overlap or the wide range is allowed (kept in the audit log).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Mark a connector reviewed (checklist item 3).
    Review {
        tenant: String,
        name: String,
        #[command(flatten)]
        who: guard_cli::ActorArgs,
    },
}

#[derive(Subcommand)]
enum UserCmd {
    Add {
        tenant: String,
        address: String,
        /// SMTP AUTH password (stored as an Argon2id hash).
        #[arg(long)]
        password: Option<String>,
        #[arg(long)]
        alias: Vec<String>,
        #[arg(long)]
        forward_to: Option<String>,
        /// With --forward-to: forward only, without a copy to the tenant's own server.
        #[arg(long, requires = "forward_to")]
        forward_only: bool,
    },
}

#[derive(Subcommand)]
enum RouteCmd {
    Add {
        tenant: String,
        domain: String,
        host: String,
    },
}

#[derive(clap::Args)]
struct TraceArgs {
    #[arg(long)]
    id: Option<String>,
    #[arg(long)]
    sender: Option<String>,
    #[arg(long)]
    recipient: Option<String>,
    #[arg(long)]
    tenant: Option<String>,
    /// Delivered, Failed, Pending or Deferred.
    #[arg(long)]
    status: Option<String>,
    /// Only messages received in this last period (like 1h, 2d).
    #[arg(long)]
    since: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per message.
    #[arg(long)]
    json: bool,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RELAYWARD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relayward: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relayward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => serve(config).await,
        Command::CheckConfig => {
            println!("configuration is valid");
            println!("  relay:      {}", config.relay_listen);
            println!("  submission: {}", config.submission_listen);
            println!("  http:       {}", config.http_listen);
            println!("  data dir:   {}", config.data_dir.display());
            println!("  tenants:    {}", config.tenants.len());
            for t in &config.tenants {
                println!(
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
        Command::Trace(args) => trace_cmd(&config, args).await,
        Command::Restrictions { .. }
        | Command::Restriction { .. }
        | Command::Alerts { .. }
        | Command::Counters { .. }
        | Command::Audit { .. } => guard_cmd(&config, cli.command).await,
        Command::Token(cmd) => token_cmd(&config, cmd).await,
        cmd => admin(&config, cmd).await,
    }
}

async fn token_cmd(config: &Config, cmd: TokenCmd) -> Result<()> {
    let store: Arc<dyn Store> = open_store(config)?;
    let svc = guard_cli::service(config, store.clone());
    let actor = cli_operator();
    match cmd {
        TokenCmd::Create {
            name,
            role,
            tenant,
            expires_in,
        } => {
            let valid_for = expires_in
                .as_deref()
                .map(config::parse_duration)
                .transpose()
                .context("--expires-in")?;
            let (text, _) = svc
                .create_token(&role, tenant.as_deref(), &name, valid_for, &actor)
                .await?;
            println!("{text}");
            eprintln!("this is the only time the token is shown; keep it somewhere safe");
        }
        TokenCmd::List { tenant } => {
            for t in store.tokens(tenant.as_deref()).await? {
                println!("{}", serde_json::to_string(&t)?);
            }
        }
        TokenCmd::Revoke { id } => {
            svc.revoke_token(&id, &actor).await?;
            println!("token {id} revoked");
        }
    }
    Ok(())
}

fn open_store(config: &Config) -> Result<Arc<SqliteStore>> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", config.data_dir.display()))?;
    Ok(Arc::new(SqliteStore::open(
        &config.data_dir.join("relayward.sqlite"),
    )?))
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

async fn admin(config: &Config, cmd: Command) -> Result<()> {
    let store = open_store(config)?;
    match cmd {
        Command::Tenant(TenantCmd::Add {
            name,
            language,
            subscription_ends,
            admin,
        }) => {
            // Through the service layer: the same checks as the API (admin addresses are
            // claims too) and an audit entry.
            let svc = guard_cli::service(config, store.clone());
            let t = directory_admin::NewTenant {
                name: name.clone(),
                language: Some(language),
                subscription_ends,
                admins: admin,
            };
            svc.create_tenant(t, &cli_operator()).await?;
            println!("tenant {name} added");
        }
        Command::Tenant(TenantCmd::List) => {
            let d = store.directory().await?;
            for t in &d.tenants {
                let managed = if t.managed_by_config {
                    " (managed by configuration)"
                } else {
                    ""
                };
                println!("{} [{}]{}", t.name, t.language, managed);
                for x in d.domains.iter().filter(|x| x.tenant == t.name) {
                    let v = if x.verified {
                        "verified"
                    } else {
                        "NOT verified"
                    };
                    println!("  domain    {} {} {}", x.name, x.kind.as_str(), v);
                }
                for x in d.connectors.iter().filter(|x| x.tenant == t.name) {
                    println!(
                        "  connector {} ips={:?} cert={:?} relay_unregistered={}",
                        x.name, x.ips, x.cert_name, x.relay_unregistered
                    );
                }
                for x in d.users.iter().filter(|x| x.tenant == t.name) {
                    println!(
                        "  user      {} aliases={:?} auth={}",
                        x.address,
                        x.aliases,
                        x.password_hash.is_some()
                    );
                }
                for x in d.routes.iter().filter(|x| x.tenant == t.name) {
                    println!("  route     {} -> {}", x.domain, x.host);
                }
            }
        }
        Command::Domain(DomainCmd::Add {
            tenant,
            domain,
            kind,
            match_subdomains,
            verified,
        }) => {
            let kind = DomainKind::parse(&kind)
                .ok_or_else(|| anyhow!("--kind must be authoritative or internal_relay"))?;
            let actor = cli_operator();
            let svc = guard_cli::service(config, store.clone());
            let d = svc
                .add_domain(&tenant, &domain, kind, match_subdomains, verified, &actor)
                .await?;
            if verified {
                println!(
                    "domain {} added and verified (vouched for by the operator)",
                    d.name
                );
            } else {
                println!(
                    "domain {} added, not verified yet: it does not count as registered.",
                    d.name
                );
                println!("publish this TXT record to prove ownership:");
                println!(
                    "  {}. IN TXT \"relayward-verification={}\"",
                    d.name, d.verification_token
                );
            }
        }
        Command::Connector(ConnectorCmd::Add {
            tenant,
            name,
            ip,
            cert_name,
            require_tls,
            relay_unregistered,
            allow_overlap,
            allow_wide,
            reason,
        }) => {
            let svc = guard_cli::service(config, store.clone());
            let c = directory_admin::NewConnector {
                name: name.clone(),
                ips: ip,
                cert_name,
                require_tls,
                relay_unregistered,
                allow_overlap,
                allow_wide,
                reason,
            };
            svc.add_connector(&tenant, c, &cli_operator()).await?;
            println!("connector {name} added");
        }
        Command::User(UserCmd::Add {
            tenant,
            address,
            password,
            alias,
            forward_to,
            forward_only,
        }) => {
            let svc = guard_cli::service(config, store.clone());
            let u = directory_admin::NewUser {
                address: address.clone(),
                password,
                aliases: alias,
                forward_to,
                forward_only,
            };
            svc.add_user(&tenant, u, &cli_operator()).await?;
            println!("user {address} added");
        }
        Command::Route(RouteCmd::Add {
            tenant,
            domain,
            host,
        }) => {
            store
                .add_route(&Route {
                    tenant,
                    domain: domain.to_ascii_lowercase(),
                    host: host.clone(),
                })
                .await?;
            println!("route for {domain} -> {host} added");
        }
        Command::Tenant(TenantCmd::Forwarding {
            name,
            mode,
            domain,
            who,
        }) => {
            let svc = guard_cli::service(config, store.clone());
            svc.set_forwarding(&name, &mode, &domain, &who.actor()?)
                .await?;
            println!("tenant {name}: forwarding {mode} {}", domain.join(" "));
        }
        Command::Tenant(TenantCmd::Subscription { name, ends }) => {
            if let Some(d) = &ends
                && guard::subscription_end(d).is_none()
            {
                return Err(anyhow!("--ends must be a date like 2027-12-31"));
            }
            store.set_subscription(&name, ends.as_deref()).await?;
            match ends {
                Some(d) => println!("tenant {name}: subscription ends after {d}"),
                None => println!("tenant {name}: subscription has no end date"),
            }
        }
        Command::Domain(DomainCmd::Verify {
            tenant,
            domain,
            who,
        }) => {
            let svc = guard_cli::service(config, store.clone());
            let resolver = HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?;
            match svc
                .verify_domain(&tenant, &domain, &resolver, &who.actor()?)
                .await?
            {
                service::DomainVerification::Verified => {
                    println!("{domain} verified: it now counts as a registered domain of {tenant}")
                }
                service::DomainVerification::AlreadyVerified => {
                    println!("{domain} was already verified")
                }
                service::DomainVerification::NotFound { expected, found } => {
                    let seen = if found.is_empty() {
                        "no TXT records".to_string()
                    } else {
                        found.join(" | ")
                    };
                    return Err(anyhow!(
                        "{domain} is not verified: expected the TXT record \"{expected}\" on {domain}, found {seen}"
                    ));
                }
            }
        }
        Command::Operator(OperatorCmd::Create { email }) => {
            let svc = guard_cli::service(config, store.clone());
            let who = guard_cli::ActorArgs::operator().actor()?;
            let (a, token) = svc.create_account(&email, "operator", None, &who).await?;
            print_setup(config, &a, &token);
        }
        Command::Account(AccountCmd::Create {
            email,
            role,
            tenant,
        }) => {
            let svc = guard_cli::service(config, store.clone());
            let who = guard_cli::ActorArgs::operator().actor()?;
            let (a, token) = svc
                .create_account(&email, &role, tenant.as_deref(), &who)
                .await?;
            print_setup(config, &a, &token);
        }
        Command::Account(AccountCmd::List { tenant }) => {
            for a in store.accounts(tenant.as_deref()).await? {
                let state = if a.setup_token_hash.is_some() {
                    "waiting for setup".to_string()
                } else if a.locked_until.is_some_and(|u| u > guard::now_ms()) {
                    "locked".to_string()
                } else {
                    format!("{} recovery codes left", a.recovery_codes.len())
                };
                println!(
                    "{:<32} {:<8} {:<16} {state}",
                    a.email,
                    a.role,
                    a.tenant.as_deref().unwrap_or("-")
                );
            }
        }
        Command::Dkim { cmd } => {
            let svc = guard_cli::service(config, store.clone());
            let keys = match cmd {
                DkimCmd::Show { tenant, domain } => svc.dkim_keys(&tenant, &domain).await?,
                DkimCmd::Rotate {
                    tenant,
                    domain,
                    who,
                } => svc.rotate_dkim(&tenant, &domain, &who.actor()?).await?,
                DkimCmd::Activate {
                    tenant,
                    domain,
                    force,
                    who,
                } => {
                    let resolver =
                        HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?;
                    svc.activate_dkim(&tenant, &domain, &resolver, force, &who.actor()?)
                        .await?
                }
                DkimCmd::Retire {
                    tenant,
                    domain,
                    who,
                } => svc.retire_dkim(&tenant, &domain, &who.actor()?).await?,
            };
            if keys.is_empty() {
                println!(
                    "no DKIM keys yet (a running relay makes them for configured domains at start)"
                );
            }
            print_dkim(&keys);
        }
        Command::Domain(DomainCmd::Dismiss {
            tenant,
            domain,
            who,
        }) => {
            let svc = guard_cli::service(config, store.clone());
            svc.dismiss_domain(&tenant, &domain, &who.actor()?).await?;
            println!("{domain} dismissed as not belonging to {tenant}");
        }
        Command::Connector(ConnectorCmd::Review { tenant, name, who }) => {
            let svc = guard_cli::service(config, store.clone());
            svc.review_connector(&tenant, &name, &who.actor()?).await?;
            println!("connector {name} of {tenant} marked reviewed");
        }
        _ => {}
    }
    Ok(())
}

async fn guard_cmd(config: &Config, cmd: Command) -> Result<()> {
    let store: Arc<dyn Store> = open_store(config)?;
    let svc = guard_cli::service(config, store.clone());
    match cmd {
        Command::Restrictions { tenant, all, json } => {
            let list = svc.restrictions(tenant.as_deref(), all).await?;
            if list.is_empty() && !json {
                println!("no restrictions");
            }
            for r in list {
                if json {
                    println!("{}", serde_json::to_string(&r)?);
                } else {
                    guard_cli::print_summary(&r);
                }
            }
        }
        Command::Restriction { cmd, who } => guard_cli::restriction_cmd(&svc, cmd, &who).await?,
        Command::Alerts {
            tenant,
            limit,
            json,
        } => {
            let alerts = store.alerts(tenant.as_deref(), limit).await?;
            if alerts.is_empty() && !json {
                println!("no alerts");
            }
            for a in alerts {
                if json {
                    println!("{}", serde_json::to_string(&a)?);
                } else {
                    println!(
                        "{}  {:<6}  {}  {:<32}  {}",
                        relayward_dsn::rfc5322_date(a.at / 1000),
                        a.severity,
                        a.tenant,
                        a.kind,
                        a.text
                    );
                }
            }
        }
        Command::Counters { tenant, json } => {
            for c in svc.counters(&tenant).await? {
                if json {
                    println!("{}", serde_json::to_string(&c)?);
                } else {
                    let t = c.threshold.map_or("-".to_string(), |t| t.to_string());
                    println!("{:<40} {:<32} {:>8} / {}", c.subject, c.counter, c.value, t);
                }
            }
            let now = now_secs() * 1000;
            for l in svc.auth_lockouts(&tenant).await? {
                if json {
                    println!("{}", serde_json::json!({ "auth_lockout": l }));
                } else {
                    let state = if l.until > now {
                        "LOCKED until"
                    } else {
                        "was locked until"
                    };
                    println!(
                        "smtp auth {:<30} {state} {} ({} failures, last from {})",
                        l.account,
                        relayward_dsn::rfc5322_date(l.until / 1000),
                        l.failures,
                        l.client
                    );
                }
            }
        }
        Command::Audit { tenant, limit } => {
            for e in store.audit_log(tenant.as_deref(), limit).await? {
                println!("{}", serde_json::to_string(&e)?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// The operator at the relay's own command line.
fn cli_operator() -> service::Actor {
    service::Actor {
        name: format!("cli:{}", whoami()),
        role: relayward_guard::Role::Operator,
        client: "cli".into(),
        mfa: false,
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

async fn trace_cmd(config: &Config, args: TraceArgs) -> Result<()> {
    let store = open_store(config)?;
    let since = match &args.since {
        Some(s) => Some((now_secs() - config::parse_duration(s)?.as_secs() as i64) * 1000),
        None => None,
    };
    let found = store
        .search_trace(&TraceQuery {
            message_id: args.id,
            sender: args.sender,
            recipient: args.recipient,
            tenant: args.tenant,
            status: args.status,
            since,
            until: None,
            limit: args.limit,
        })
        .await?;
    if found.is_empty() && !args.json {
        println!("no messages found");
    }
    for m in found {
        if args.json {
            println!("{}", serde_json::to_string(&m)?);
            continue;
        }
        println!(
            "{}  {}  from <{}>  tenant {}  via {}  [{}]  {} bytes",
            m.message_id,
            relayward_dsn::rfc5322_date(m.received_at / 1000),
            m.sender,
            m.tenant.as_deref().unwrap_or("-"),
            m.origin,
            m.client_ip,
            m.size
        );
        for r in &m.recipients {
            println!("  {:<10} {}", r.status, r.address);
        }
        for e in &m.events {
            println!(
                "    {}  {:<10} {} {}",
                relayward_dsn::rfc5322_date(e.at / 1000),
                e.kind,
                e.recipient.as_deref().unwrap_or(""),
                e.detail
            );
        }
    }
    Ok(())
}

/// Writes configuration-declared tenants into the store (marked managed by configuration).
async fn provision(store: &dyn Store, config: &Config) -> Result<()> {
    // Tenants made through the API or the command line keep their connectors: a range in the
    // file may not take a host from one of them (the file's own tenants are checked when it
    // is loaded).
    let in_file: std::collections::HashSet<&str> =
        config.tenants.iter().map(|t| t.name.as_str()).collect();
    let stored: Vec<Connector> = store
        .all_connectors()
        .await?
        .into_iter()
        .filter(|c| !in_file.contains(c.tenant.as_str()))
        .collect();
    for t in &config.tenants {
        for c in t.connectors.iter().filter(|c| !c.allow_overlap) {
            let ranges: Vec<_> = c
                .ips
                .iter()
                .filter_map(|ip| relayward_tenancy::parse_net(ip))
                .collect();
            if let Some((ours, theirs, other)) = claims::overlapping(&t.name, &ranges, &stored) {
                bail!(
                    "tenant '{}': connector {} ({ours}) overlaps connector {} ({theirs}) of tenant '{}'; a source address belongs to one tenant (set allow_overlap = true on the connector if the servers are shared on purpose)",
                    t.name,
                    c.name,
                    other.name,
                    other.tenant
                );
            }
        }
    }
    for t in &config.tenants {
        let mut data = TenantData {
            tenant: Some(Tenant {
                name: t.name.clone(),
                language: t.language.clone(),
                subscription_ends: t.subscription_ends.clone(),
                admins: t.admins.clone(),
                managed_by_config: true,
                forwarding: t.forwarding,
                forwarding_domains: t.forwarding_domains.clone(),
            }),
            ..Default::default()
        };
        for d in &t.domains {
            data.domains.push(Domain {
                tenant: t.name.clone(),
                name: d.name.clone(),
                kind: d.kind,
                match_subdomains: d.match_subdomains,
                verified: d.verified,
                verification_token: service::random_hex(16),
            });
        }
        for c in &t.connectors {
            data.connectors.push(Connector {
                tenant: t.name.clone(),
                name: c.name.clone(),
                ips: c.ips.clone(),
                cert_name: c.cert_name.clone(),
                require_tls: c.require_tls,
                relay_unregistered: c.relay_unregistered,
                created_by: "configuration".into(),
                created_at: now_secs(),
                reviewed: true,
            });
        }
        for u in &t.users {
            let password_hash = match &u.password {
                Some(p) => Some(relayward_tenancy::password::hash(p).map_err(|e| anyhow!(e))?),
                None => None,
            };
            data.users.push(User {
                tenant: t.name.clone(),
                address: u.address.clone(),
                aliases: u.aliases.clone(),
                password_hash,
                forward_to: u.forward_to.clone(),
                forward_only: u.forward_only,
            });
        }
        for (domain, host) in &t.routes {
            data.routes.push(Route {
                tenant: t.name.clone(),
                domain: domain.clone(),
                host: host.clone(),
            });
        }
        store
            .provision(&data)
            .await
            .with_context(|| format!("provisioning tenant '{}' from the configuration", t.name))?;
    }
    Ok(())
}

/// The SRS key: from the configuration, or generated once into the data directory (a new key
/// at every start would break bounces to copies forwarded before it).
fn srs_secret(config: &Config) -> Result<Vec<u8>> {
    if let Some(s) = &config.srs_secret {
        return Ok(s.as_bytes().to_vec());
    }
    let path = config.data_dir.join("srs.key");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().as_bytes().to_vec()),
        Ok(_) => Err(anyhow!(
            "the SRS key file {} is empty; remove it to have a new key generated",
            path.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = service::random_hex(32);
            std::fs::write(&path, format!("{secret}\n"))
                .with_context(|| format!("writing the SRS key to {}", path.display()))?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(anyhow!("reading the SRS key {}: {e}", path.display())),
    }
}

struct DirectoryRouter {
    directory: Arc<RwLock<Arc<Directory>>>,
    guard: Arc<guard::GuardHandle>,
}

impl Router for DirectoryRouter {
    fn route(&self, domain: &str) -> Option<String> {
        let dir = self
            .directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        dir.route(domain).map(|r| r.host.clone())
    }

    fn refusal(&self, env: &relayward_spool::Envelope) -> Option<String> {
        self.guard.refusal_for(env)
    }

    fn language(&self, tenant: Option<&str>) -> String {
        let dir = self
            .directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone());
        tenant
            .and_then(|t| dir.tenant(t))
            .map_or_else(|| "en".to_string(), |t| t.language.to_string())
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for {what} on {addr} (is another server using it?)")
    })
}

async fn serve(config: Config) -> Result<()> {
    let store = open_store(&config)?;
    if let Err(e) = provision(store.as_ref(), &config).await {
        // On a full disk the relay still starts on the tenants as stored at the last start,
        // refuses new mail and delivers what it holds; anything else is a real error.
        let full = e.chain().any(|c| {
            c.downcast_ref::<relayward_store::StoreError>()
                .is_some_and(|s| s.is_disk_full())
        });
        if !full {
            return Err(e);
        }
        tracing::error!(error = %format!("{e:#}"), "the disk is full: starting on the tenants as stored before; the configuration file's changes apply at the next start with room");
    }
    let dyn_store: Arc<dyn Store> = store.clone();
    let directory = Arc::new(RwLock::new(Arc::new(Directory::build(
        store.directory().await?,
    ))));

    let (spool, recovered) = Spool::open(&config.data_dir.join("spool"), config.max_spool_size)
        .context("opening the spool")?;
    let (trace, trace_task) = TraceSink::start(dyn_store.clone());
    let resolver: Arc<dyn relayward_delivery::dns::Resolver> =
        Arc::new(HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?);
    let api_resolver = resolver.clone();
    let mut delivery = DeliveryConfig::new(config.hostname.clone());
    delivery.smart_host = config.smart_host.clone();
    delivery.remote_port = config.remote_port;
    delivery.retry_schedule = config.retry_schedule.clone();
    delivery.expire_after = config.expire_after;
    delivery.delay_notice_after = config.delay_notice_after;
    delivery.normal_pool = config.normal_pool.clone();
    delivery.high_risk_pool = config.high_risk_pool.clone();
    delivery.check_sender_dns = config.smart_host.is_none() || config.dns_resolver.is_some();
    if let Some(h) = &config.high_risk_hostname {
        delivery.high_risk_hostname = h.clone();
    }
    delivery.max_per_destination = config.max_per_destination;
    delivery.max_concurrent_messages = config.max_concurrent_messages;
    delivery.connect_timeout = config.connect_timeout;
    delivery.command_timeout = config.delivery_command_timeout;
    delivery.tls = config.delivery_tls;
    let guard = Arc::new(guard::GuardHandle::new(
        config.limits.clone(),
        config
            .tenants
            .iter()
            .map(|t| (t.name.clone(), t.limits.clone()))
            .collect(),
        directory.clone(),
    ));
    guard::restore(&guard, store.as_ref()).await;
    let queue = Queue::new(
        delivery,
        spool.clone(),
        resolver,
        Arc::new(DirectoryRouter {
            directory: directory.clone(),
            guard: guard.clone(),
        }),
        Arc::new(guard::QueueEvents {
            trace: trace.clone(),
            guard: guard.clone(),
        }),
    );
    queue.set_signer(Arc::new(dkim::DkimSigner::new(
        dyn_store.clone(),
        directory.clone(),
    )));
    tokio::spawn(webhooks::run(dyn_store.clone(), config.webhooks.clone()));
    // Domains from the configuration file get their DKIM keys at first start, before the relay
    // listens: mail accepted in its first seconds must not leave unsigned.
    dkim::generate_missing(
        dyn_store.clone(),
        config
            .tenants
            .iter()
            .flat_map(|t| {
                t.domains
                    .iter()
                    .filter(|d| d.verified)
                    .map(|d| d.name.clone())
            })
            .collect(),
    )
    .await;
    let recovered_count = recovered.len();
    for env in recovered {
        queue.enqueue(env);
    }
    if recovered_count > 0 {
        tracing::info!(
            messages = recovered_count,
            "recovered unfinished messages from the spool"
        );
    }

    let tls = tls::server_config(&config)?;
    let stats = Arc::new(PolicyStats::default());
    let checkers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let passwords = Arc::new(passwords::Checker::start(checkers, 16 * checkers)?);
    let auth_limits = Arc::new(passwords::Limiter::new(config.auth));
    let policy = Arc::new(RelayPolicy {
        directory: directory.clone(),
        spool: spool.clone(),
        queue: queue.clone(),
        trace: trace.clone(),
        hostname: config.hostname.clone(),
        postmaster: config.postmaster.clone(),
        stats: stats.clone(),
        guard: guard.clone(),
        scanner: relayward_scan::Scanner::new(relayward_scan::Config {
            bulk_recipients: config.bulk_recipients,
        }),
        rspamd: config.rspamd.map(|address| relayward_scan::rspamd::Rspamd {
            address,
            timeout: config.rspamd_timeout,
        }),
        rspamd_failure: config.rspamd_failure,
        srs: Arc::new(srs::Srs::new(
            &srs_secret(&config)?,
            (config.srs_max_age.as_secs() / 86_400) as i64,
        )),
        resolver: api_resolver.clone(),
        passwords: passwords.clone(),
        auth_limits: auth_limits.clone(),
        store: dyn_store.clone(),
    });
    let server_config = |kind| {
        let mut c = ServerConfig::new(config.hostname.clone(), kind);
        c.max_message_size = config.limits.max_message_size;
        c.max_recipients = config.limits.recipients_per_message;
        c.command_timeout = config.command_timeout;
        c.data_timeout = config.data_timeout;
        c.data_total_timeout = config.data_total_timeout;
        c.max_errors = config.max_errors;
        c.max_connections = config.max_connections;
        c.max_connections_per_ip = config.max_connections_per_ip;
        c.tls = Some(tls.clone());
        c
    };
    let relay = Listener::new(
        bind(config.relay_listen, "relay SMTP").await?,
        server_config(ListenerKind::Relay),
        policy.clone(),
    );
    let submission = Listener::new(
        bind(config.submission_listen, "submission SMTP").await?,
        server_config(ListenerKind::Submission),
        policy.clone(),
    );
    let http_listener = bind(config.http_listen, "HTTP").await?;
    let relay_addr = relay.local_addr()?;
    let submission_addr = submission.local_addr()?;
    let http_addr = http_listener.local_addr()?;

    let shutdown = Shutdown::default();
    let grace = Duration::from_secs(30);
    let relay_task = tokio::spawn(relay.run(shutdown.clone(), grace));
    let submission_task = tokio::spawn(submission.run(shutdown.clone(), grace));
    let queue_task = {
        let q = queue.clone();
        let stop = shutdown.subscribe();
        tokio::spawn(async move { q.run(stop, Duration::from_secs(10)).await })
    };
    let app = http::router(http::AppState {
        store: dyn_store.clone(),
        spool: spool.clone(),
        queue: queue.clone(),
        policy: stats.clone(),
        passwords: passwords.clone(),
        auth_limits,
        trace: trace.clone(),
        service: Arc::new(service::Service {
            passwords: Some(passwords.clone()),
            ..guard_cli::service(&config, dyn_store.clone())
        }),
        resolver: api_resolver,
        logins: Arc::default(),
        base_url: format!("http://{http_addr}"),
    });
    let http_task = {
        let mut stop = shutdown.subscribe();
        tokio::spawn(async move {
            let _ = axum::serve(
                http_listener,
                app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.changed().await;
            })
            .await;
        })
    };
    let reload_task = tokio::spawn(reload_directory(
        dyn_store.clone(),
        directory.clone(),
        guard.clone(),
        config.clone(),
        stats.clone(),
    ));
    let retention_task = tokio::spawn(retention::run(
        dyn_store.clone(),
        config.trace_retention,
        config.audit_retention,
    ));
    let guard_task = tokio::spawn(guard::run(
        guard.clone(),
        dyn_store.clone(),
        guard::AlertMail {
            spool: spool.clone(),
            queue: queue.clone(),
            hostname: config.hostname.clone(),
            sender: config.alert_sender.clone(),
        },
    ));

    // One line on stdout that scripts and tests wait for.
    println!(
        "relayward ready relay={relay_addr} submission={submission_addr} http={http_addr} data_dir={}",
        config.data_dir.display()
    );
    tracing::info!(%relay_addr, %submission_addr, %http_addr, "relayward is running");

    wait_for_signal().await;
    tracing::info!("shutting down: no new connections; finishing open sessions");
    shutdown.trigger();
    let _ = relay_task.await;
    let _ = submission_task.await;
    let _ = queue_task.await;
    let _ = http_task.await;
    reload_task.abort();
    guard_task.abort();
    retention_task.abort();
    spool.flush().await.context("final spool flush")?;
    drop(policy);
    drop(queue);
    drop(trace);
    let _ = tokio::time::timeout(Duration::from_secs(5), trace_task).await;
    tracing::info!("stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Limit overrides set through the API, put in force in the guard; `applied` holds the tenants
/// that had one, so a removed override gives the tenant the defaults again.
async fn apply_limit_overrides(
    store: &dyn Store,
    guard: &guard::GuardHandle,
    config: &Config,
    applied: &mut std::collections::HashSet<String>,
) {
    let rows = match store.tenant_limits().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read tenant limit overrides");
            return;
        }
    };
    let configured: std::collections::HashSet<&str> =
        config.tenants.iter().map(|t| t.name.as_str()).collect();
    let mut now = std::collections::HashSet::new();
    for (tenant, json) in rows {
        if configured.contains(tenant.as_str()) {
            continue;
        }
        match config::limits_from_overrides(&config.limits, &json) {
            Ok(l) => {
                guard.set_tenant_limits(&tenant, l);
                now.insert(tenant);
            }
            Err(e) => tracing::error!(tenant, error = %e, "tenant limit overrides ignored"),
        }
    }
    for gone in applied.difference(&now) {
        guard.set_tenant_limits(gone, config.limits.clone());
    }
    *applied = now;
}

/// Rebuilds the directory when the store says it changed (CLI, API, another node), and puts
/// limit overrides made through the API in force.
async fn reload_directory(
    store: Arc<dyn Store>,
    directory: Arc<RwLock<Arc<Directory>>>,
    guard: Arc<guard::GuardHandle>,
    config: Config,
    stats: Arc<PolicyStats>,
) {
    let mut seen = store.directory_version().await.unwrap_or(0);
    stats
        .directory_version
        .store(seen, std::sync::atomic::Ordering::Relaxed);
    let mut applied = std::collections::HashSet::new();
    apply_limit_overrides(store.as_ref(), &guard, &config, &mut applied).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        match store.directory_version().await {
            Ok(v) if v != seen => match store.directory().await {
                Ok(data) => {
                    let fresh = Arc::new(Directory::build(data));
                    if let Ok(mut d) = directory.write() {
                        *d = fresh;
                    }
                    seen = v;
                    stats
                        .directory_version
                        .store(v, std::sync::atomic::Ordering::Relaxed);
                    apply_limit_overrides(store.as_ref(), &guard, &config, &mut applied).await;
                    tracing::info!(version = v, "directory reloaded");
                }
                Err(e) => tracing::warn!(error = %e, "cannot reload the directory"),
            },
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the directory version"),
        }
    }
}
