//! Tenants, accepted domains, connectors, users and routes from the command line.

use anyhow::{Result, anyhow};
use relayward_config::Config;
use relayward_control::DomainVerification;
use relayward_control::directory::{
    NewConnector, NewRoute, NewTenant, NewUser, TenantPatch, UserPatch,
};
use relayward_control::domain_checks::DomainChecks;
use relayward_delivery::dns::HickoryResolver;
use relayward_store::DomainKind;

use super::{ActorArgs, open, operator};

#[derive(clap::Subcommand)]
pub enum TenantCmd {
    /// Add a tenant (an organisation relaying through the service).
    Add {
        /// The tenant's name, as the API, the console and the other commands name it.
        name: String,
        /// The language of its NDRs and console: en or es.
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
        /// The tenant.
        name: String,
        /// on, off or listed.
        #[arg(long)]
        mode: String,
        /// With --mode listed: a domain users may forward to (repeatable).
        #[arg(long)]
        domain: Vec<String>,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Set or clear the subscription end date (a renewal applies within a second).
    Subscription {
        /// The tenant.
        name: String,
        /// Last day, YYYY-MM-DD; omit to make the subscription open-ended.
        #[arg(long)]
        ends: Option<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum DomainCmd {
    /// Add an accepted domain to a tenant: refused when it is another tenant's, or above or
    /// below another tenant's verified domain. Until verified (the DNS proof, or --verified)
    /// it counts as unregistered.
    Add {
        /// The tenant.
        tenant: String,
        /// The domain name.
        domain: String,
        /// authoritative or internal_relay.
        #[arg(long, default_value = "authoritative")]
        kind: String,
        /// Its subdomains count as accepted too.
        #[arg(long)]
        match_subdomains: bool,
        /// The operator vouches for ownership without the DNS proof.
        #[arg(long)]
        verified: bool,
    },
    /// Check the domain's ownership TXT record through the configured resolver and mark it
    /// verified when it is there (until then it counts as unregistered).
    Verify {
        /// The tenant.
        tenant: String,
        /// The domain name.
        domain: String,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Look at the domain's DNS as receivers of the relay's mail will: each DKIM key's record,
    /// whether the SPF record lets the relay's sending addresses send for it, and its DMARC
    /// record; with what to change. Changes nothing. Exits 1 when something is to be done.
    Check {
        /// The tenant.
        tenant: String,
        /// The domain name.
        domain: String,
        /// The whole report as JSON (the API's answer).
        #[arg(long)]
        json: bool,
    },
    /// Dismiss a domain seen in restricted traffic as not the tenant's (checklist item 1).
    Dismiss {
        /// The tenant.
        tenant: String,
        /// The domain name, as the restriction's checklist shows it.
        domain: String,
        #[command(flatten)]
        who: ActorArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum ConnectorCmd {
    /// Add a connector: the source addresses (or the client certificate name) by which the
    /// tenant's own servers are recognised. A range that touches another tenant's is refused
    /// unless --allow-overlap.
    Add {
        /// The tenant.
        tenant: String,
        /// The connector's name within the tenant.
        name: String,
        /// Source address or CIDR range (repeatable).
        #[arg(long)]
        ip: Vec<String>,
        /// Name on the client certificate (wildcards allowed).
        #[arg(long)]
        cert_name: Option<String>,
        /// Refuse mail from these servers unless they start TLS first.
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
    /// Remove a connector (a server that should not relay any more, or was never the
    /// tenant's): sessions it recognised are closed at their next MAIL FROM (421 4.7.0).
    Remove {
        /// The tenant.
        tenant: String,
        /// The connector's name.
        name: String,
    },
    /// Mark a connector reviewed (checklist item 3).
    Review {
        /// The tenant.
        tenant: String,
        /// The connector's name.
        name: String,
        #[command(flatten)]
        who: ActorArgs,
    },
}

#[derive(clap::Subcommand)]
pub enum UserCmd {
    /// Add a user: a mailbox address in one of the tenant's verified domains, with an SMTP
    /// AUTH password for submission if one is given.
    Add {
        /// The tenant.
        tenant: String,
        /// The user's address, in one of the tenant's verified domains.
        address: String,
        /// SMTP AUTH password (stored as an Argon2id hash). On the command line it shows in
        /// the process list and the shell's history: prefer --password-stdin.
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the SMTP AUTH password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Another address of the same user, in one of the tenant's verified domains
        /// (repeatable).
        #[arg(long)]
        alias: Vec<String>,
        /// Forward the user's mail to this address as well (subject to the tenant's
        /// forwarding setting).
        #[arg(long)]
        forward_to: Option<String>,
        /// With --forward-to: forward only, without a copy to the tenant's own server.
        #[arg(long, requires = "forward_to")]
        forward_only: bool,
    },
    /// Set a user's SMTP AUTH password anew (a device's that leaked, say), or remove it so that
    /// the user can no longer sign in. Sessions signed in with the old one are closed at their
    /// next MAIL FROM (421 4.7.0).
    #[command(group(
        clap::ArgGroup::new("how")
            .required(true)
            .args(["password", "password_stdin", "remove"])
    ))]
    Password {
        /// The tenant.
        tenant: String,
        /// The user's address.
        address: String,
        /// The new password. On the command line it shows in the process list and the shell's
        /// history: prefer --password-stdin.
        #[arg(long)]
        password: Option<String>,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Remove the password: SMTP AUTH refuses the user from now on.
        #[arg(long)]
        remove: bool,
    },
    /// Remove a user: its address, aliases, password and forwarding. Its sessions signed in
    /// now are closed at their next MAIL FROM.
    Remove {
        /// The tenant.
        tenant: String,
        /// The user's address.
        address: String,
    },
}

#[derive(clap::Subcommand)]
pub enum RouteCmd {
    /// Route inbound mail for one of the tenant's domains to its own server.
    Add {
        /// The tenant.
        tenant: String,
        /// The accepted domain whose mail takes the route.
        domain: String,
        /// The tenant's server: a host name or address, with :port (25 when left out).
        host: String,
    },
}

pub async fn tenant(config: &Config, cmd: TenantCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        TenantCmd::Add {
            name,
            language,
            subscription_ends,
            admin,
        } => {
            // Through the service layer: the same checks as the API (admin addresses are
            // claims too) and an audit entry.
            let t = NewTenant {
                name: name.clone(),
                language: Some(language),
                subscription_ends,
                admins: admin,
            };
            svc.create_tenant(t, &operator()).await?;
            outln!("tenant {name} added");
        }
        TenantCmd::List => {
            let d = svc.directory().await?;
            for t in &d.tenants {
                let managed = if t.managed_by_config {
                    " (managed by configuration)"
                } else {
                    ""
                };
                outln!("{} [{}]{}", t.name, t.language, managed);
                for x in d.domains.iter().filter(|x| x.tenant == t.name) {
                    let v = if x.verified {
                        "verified"
                    } else {
                        "NOT verified"
                    };
                    outln!("  domain    {} {} {}", x.name, x.kind.as_str(), v);
                }
                for x in d.connectors.iter().filter(|x| x.tenant == t.name) {
                    outln!(
                        "  connector {} ips={:?} cert={:?} relay_unregistered={}",
                        x.name,
                        x.ips,
                        x.cert_name,
                        x.relay_unregistered
                    );
                }
                for x in d.users.iter().filter(|x| x.tenant == t.name) {
                    outln!(
                        "  user      {} aliases={:?} auth={}",
                        x.address,
                        x.aliases,
                        x.password_hash.is_some()
                    );
                }
                for x in d.routes.iter().filter(|x| x.tenant == t.name) {
                    outln!("  route     {} -> {}", x.domain, x.host);
                }
            }
        }
        TenantCmd::Forwarding {
            name,
            mode,
            domain,
            who,
        } => {
            svc.set_forwarding(&name, &mode, &domain, &who.actor()?)
                .await?;
            outln!("tenant {name}: forwarding {mode} {}", domain.join(" "));
        }
        TenantCmd::Subscription { name, ends } => {
            let patch = TenantPatch {
                subscription_ends: Some(ends.clone()),
                ..TenantPatch::default()
            };
            svc.update_tenant(&name, patch, &operator()).await?;
            match ends {
                Some(d) => outln!("tenant {name}: subscription ends after {d}"),
                None => outln!("tenant {name}: subscription has no end date"),
            }
        }
    }
    Ok(())
}

pub async fn domain(config: &Config, cmd: DomainCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        DomainCmd::Add {
            tenant,
            domain,
            kind,
            match_subdomains,
            verified,
        } => {
            let kind = DomainKind::parse(&kind)
                .ok_or_else(|| anyhow!("--kind must be authoritative or internal_relay"))?;
            let actor = operator();
            let d = svc
                .add_domain(&tenant, &domain, kind, match_subdomains, verified, &actor)
                .await?;
            if verified {
                outln!(
                    "domain {} added and verified (vouched for by the operator)",
                    d.name
                );
            } else {
                outln!(
                    "domain {} added, not verified yet: it does not count as registered.",
                    d.name
                );
                outln!("publish this TXT record to prove ownership:");
                outln!(
                    "  {}. IN TXT \"relayward-verification={}\"",
                    d.name,
                    d.verification_token
                );
            }
        }
        DomainCmd::Verify {
            tenant,
            domain,
            who,
        } => {
            let resolver = HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?;
            match svc
                .verify_domain(&tenant, &domain, &resolver, &who.actor()?)
                .await?
            {
                DomainVerification::Verified => {
                    outln!("{domain} verified: it now counts as a registered domain of {tenant}")
                }
                DomainVerification::AlreadyVerified => {
                    outln!("{domain} was already verified")
                }
                DomainVerification::NotFound { expected, found } => {
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
        DomainCmd::Check {
            tenant,
            domain,
            json,
        } => {
            let resolver = HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?;
            let report = svc.check_domain(&tenant, &domain, &resolver).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_domain_checks(&report);
            }
            if !domain_checks_fine(&report) {
                return Err(anyhow!(
                    "{}: its DNS needs the changes above",
                    report.domain
                ));
            }
        }
        DomainCmd::Dismiss {
            tenant,
            domain,
            who,
        } => {
            svc.dismiss_domain(&tenant, &domain, &who.actor()?).await?;
            outln!("{domain} dismissed as not belonging to {tenant}");
        }
    }
    Ok(())
}

/// Nothing to be done: every record published, SPF lets every sending address send (or there
/// are none to judge here), and a DMARC record that receivers act on or report by.
fn domain_checks_fine(r: &DomainChecks) -> bool {
    r.dkim.iter().all(|k| k.status == "published")
        && ["ok", "addresses_unknown", "smart_host"].contains(&r.spf.status.as_str())
        && ["ok", "monitoring"].contains(&r.dmarc.status.as_str())
}

fn print_domain_checks(r: &DomainChecks) {
    let verified = if r.verified {
        "verified"
    } else {
        "not verified"
    };
    outln!("{} ({verified})", r.domain);
    if r.dkim.is_empty() {
        outln!("  DKIM   no keys yet: they are made when the domain is verified");
    }
    for k in &r.dkim {
        outln!("  DKIM   {} ({}): {}", k.name, k.state, k.status);
        if let Some(advice) = &k.advice {
            outln!("         {advice}");
            outln!("         {}. IN TXT \"{}\"", k.name, k.expected);
        }
    }
    let record = r.spf.record.as_deref().unwrap_or("no record");
    outln!("  SPF    {record}: {}", r.spf.status);
    if let Some(why) = &r.spf.reason {
        outln!("         {why}");
    }
    for a in &r.spf.addresses {
        let why = a
            .reason
            .as_deref()
            .map(|w| format!(" ({w})"))
            .unwrap_or_default();
        outln!("         {} ({} pool): {}{why}", a.ip, a.pool, a.result);
    }
    outln!("         {}", r.spf.advice);
    let record = r.dmarc.record.as_deref().unwrap_or("no record");
    let at = r
        .dmarc
        .name
        .as_deref()
        .map(|n| format!(" at {n}"))
        .unwrap_or_default();
    outln!("  DMARC  {record}{at}: {}", r.dmarc.status);
    outln!("         {}", r.dmarc.advice);
}

pub async fn connector(config: &Config, cmd: ConnectorCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        ConnectorCmd::Add {
            tenant,
            name,
            ip,
            cert_name,
            require_tls,
            relay_unregistered,
            allow_overlap,
            allow_wide,
            reason,
        } => {
            let c = NewConnector {
                name: name.clone(),
                ips: ip,
                cert_name,
                require_tls,
                relay_unregistered,
                allow_overlap,
                allow_wide,
                reason,
            };
            svc.add_connector(&tenant, c, &operator()).await?;
            outln!("connector {name} added");
        }
        ConnectorCmd::Remove { tenant, name } => {
            svc.delete_connector(&tenant, &name, &operator()).await?;
            outln!("connector {name} of {tenant} removed");
        }
        ConnectorCmd::Review { tenant, name, who } => {
            svc.review_connector(&tenant, &name, &who.actor()?).await?;
            outln!("connector {name} of {tenant} marked reviewed");
        }
    }
    Ok(())
}

pub async fn user(config: &Config, cmd: UserCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        UserCmd::Add {
            tenant,
            address,
            password,
            password_stdin,
            alias,
            forward_to,
            forward_only,
        } => {
            let password = if password_stdin {
                Some(password_from(std::io::stdin().lock())?)
            } else {
                password
            };
            let u = NewUser {
                address: address.clone(),
                password,
                aliases: alias,
                forward_to,
                forward_only,
            };
            svc.add_user(&tenant, u, &operator()).await?;
            outln!("user {address} added");
        }
        UserCmd::Password {
            tenant,
            address,
            password,
            password_stdin,
            remove: _,
        } => {
            // One of the three, as the argument group asks: neither password means --remove.
            let password = if password_stdin {
                Some(password_from(std::io::stdin().lock())?)
            } else {
                password
            };
            let removed = password.is_none();
            let patch = UserPatch {
                password: Some(password),
                ..UserPatch::default()
            };
            let u = svc
                .update_user(&tenant, &address, patch, &operator())
                .await?;
            if removed {
                outln!(
                    "password of {} removed: SMTP AUTH refuses the user from now on",
                    u.address
                );
            } else {
                outln!("password of {} changed", u.address);
            }
        }
        UserCmd::Remove { tenant, address } => {
            svc.delete_user(&tenant, &address, &operator()).await?;
            outln!("user {address} removed");
        }
    }
    Ok(())
}

/// The password on the first line of `input`, without its line ending; an empty one is refused
/// (a script that piped nothing).
fn password_from(mut input: impl std::io::BufRead) -> Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .map_err(|e| anyhow!("cannot read the password from standard input: {e}"))?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(anyhow!(
            "no password on standard input (--password-stdin reads its first line)"
        ));
    }
    Ok(password.to_string())
}

pub async fn route(config: &Config, cmd: RouteCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        RouteCmd::Add {
            tenant,
            domain,
            host,
        } => {
            let r = NewRoute { domain, host };
            let r = svc.add_route(&tenant, r, &operator()).await?;
            outln!("route for {} -> {} added", r.domain, r.host);
        }
    }
    Ok(())
}
