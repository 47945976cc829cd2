//! The command line for outbound protection: restrictions (list, show with cause, history and
//! checklist, release, request, approve, refuse, attest), alerts, counters and the audit log.
//! Each action goes through the control plane, as the API's do.

use anyhow::Result;
use relayward_clock::now_ms;
use relayward_config::Config;
use relayward_control::Control;
use relayward_guard::{Restriction, Role};

use super::{ActorArgs, open};

/// `restrictions`: open ones unless `--all`.
#[derive(clap::Args)]
pub struct RestrictionsArgs {
    /// One tenant's only.
    #[arg(long)]
    tenant: Option<String>,
    /// Released and expired ones too.
    #[arg(long)]
    all: bool,
    /// One JSON object per restriction.
    #[arg(long)]
    json: bool,
}

/// `alerts`, newest first.
#[derive(clap::Args)]
pub struct AlertsArgs {
    /// One tenant's only.
    #[arg(long)]
    tenant: Option<String>,
    /// At most this many.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per alert.
    #[arg(long)]
    json: bool,
}

/// `counters`: every counter of a tenant beside its threshold.
#[derive(clap::Args)]
pub struct CountersArgs {
    /// The tenant.
    tenant: String,
    /// The counters as JSON.
    #[arg(long)]
    json: bool,
}

/// `audit`: the audit log as JSON lines, newest first.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// One tenant's entries only.
    #[arg(long)]
    tenant: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

#[derive(clap::Subcommand)]
pub enum RestrictionCmd {
    /// Cause, history and (for tenants) the remediation checklist.
    Show {
        /// The restriction's id (`relayward restrictions` lists them).
        id: String,
        /// The restriction as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Release a user or connector (admins: 3 times per 24 h), or anything as an operator.
    Release {
        /// The restriction's id.
        id: String,
        /// Kept with the release in the restriction's history and the audit log.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Request release of a tenant restriction (refused while the checklist has open items).
    RequestRelease {
        /// The restriction's id.
        id: String,
        /// For the operators who review the request.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Approve a release request (operators): the tenant goes on 24 h probation at half limits.
    Approve {
        /// The restriction's id.
        id: String,
        /// Kept in the restriction's history and the audit log.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Refuse a release request, with a reason the tenant's admins can act on.
    Refuse {
        /// The restriction's id.
        id: String,
        /// What the tenant's admins must do before asking again (they see it).
        #[arg(long)]
        reason: String,
    },
    /// Attest that the tenant's on-premises servers are locked down (checklist item 5).
    Attest {
        /// The restriction's id.
        id: String,
    },
}

fn when(ms: i64) -> String {
    relayward_dsn::rfc5322_date(ms / 1000)
}

pub fn print_summary(r: &Restriction) {
    outln!(
        "{}  {:<17}  {}  since {}  — {}",
        r.id,
        r.state.as_str(),
        r.key,
        when(r.started_at),
        r.reason.describe()
    );
}

pub async fn restriction_cmd(svc: &Control, cmd: RestrictionCmd, who: &ActorArgs) -> Result<()> {
    match cmd {
        RestrictionCmd::Show { id, json } => {
            let r = svc.restriction(&id).await?;
            let items = if r.key.kind.is_tenant() {
                Some(svc.checklist(&r).await?)
            } else {
                None
            };
            if json {
                outln!(
                    "{}",
                    serde_json::json!({ "restriction": r, "checklist": items })
                );
                return Ok(());
            }
            print_summary(&r);
            outln!("  reply: 550 {}", r.key.kind.refusal().text);
            outln!("  cause:");
            for c in &r.cause.counters {
                outln!("    {} = {} (threshold {})", c.name, c.value, c.threshold);
            }
            let list = |name: &str, v: &[(String, u64)]| {
                if !v.is_empty() {
                    let s: Vec<String> = v.iter().map(|(k, n)| format!("{k} ({n})")).collect();
                    outln!("    {name}: {}", s.join(", "));
                }
            };
            list("sender domains", &r.cause.top_sender_domains);
            list("users", &r.cause.top_users);
            list("connectors", &r.cause.top_connectors);
            list("client IPs", &r.cause.top_client_ips);
            if !r.cause.sample_message_ids.is_empty() {
                outln!(
                    "    sample messages: {}",
                    r.cause.sample_message_ids.join(", ")
                );
            }
            outln!("  history:");
            for t in &r.history {
                outln!(
                    "    {}  {} -> {}  by {} ({:?})  {}",
                    when(t.at),
                    t.from.map_or("-", |s| s.as_str()),
                    t.to.as_str(),
                    t.actor,
                    t.role,
                    t.note
                );
            }
            if let Some(items) = items {
                outln!("  remediation checklist:");
                for i in items {
                    let mark = if i.done { "x" } else { " " };
                    outln!("    [{mark}] {}. {}", i.number, i.title);
                    for e in i.evidence {
                        outln!("          {e}");
                    }
                }
            }
        }
        RestrictionCmd::Release { id, note } => {
            let r = svc.release(&id, &who.actor()?, &note).await?;
            outln!(
                "released: {} is on probation at half its limits for 24 h",
                r.key
            );
        }
        RestrictionCmd::RequestRelease { id, note } => {
            let mut actor = who.actor()?;
            actor.role = Role::Admin;
            let r = svc.request_release(&id, &actor, &note).await?;
            match r.state {
                relayward_guard::State::Probation => outln!(
                    "release approved automatically: {} is on probation at half its limits for 24 h",
                    r.key
                ),
                _ => outln!(
                    "release requested for {}; an operator will review it",
                    r.key
                ),
            }
        }
        RestrictionCmd::Approve { id, note } => {
            let r = svc.approve(&id, &who.actor()?, &note).await?;
            outln!(
                "approved: {} is on probation at half its limits for 24 h",
                r.key
            );
        }
        RestrictionCmd::Refuse { id, reason } => {
            let r = svc.refuse(&id, &who.actor()?, &reason).await?;
            outln!("release refused; {} stays restricted", r.key);
        }
        RestrictionCmd::Attest { id } => {
            svc.attest(&id, &who.actor()?).await?;
            outln!("attestation recorded for {id}");
        }
    }
    Ok(())
}

pub async fn restrictions(config: &Config, args: RestrictionsArgs) -> Result<()> {
    let svc = open(config).await?;
    let RestrictionsArgs { tenant, all, json } = args;

    let list = svc.restrictions(tenant.as_deref(), all).await?;
    if list.is_empty() && !json {
        outln!("no restrictions");
    }
    for r in list {
        if json {
            outln!("{}", serde_json::to_string(&r)?);
        } else {
            print_summary(&r);
        }
    }
    Ok(())
}

pub async fn restriction(config: &Config, cmd: RestrictionCmd, who: &ActorArgs) -> Result<()> {
    let svc = open(config).await?;
    restriction_cmd(&svc, cmd, who).await
}

pub async fn alerts(config: &Config, args: AlertsArgs) -> Result<()> {
    let svc = open(config).await?;
    let AlertsArgs {
        tenant,
        limit,
        json,
    } = args;

    let alerts = svc.alerts(tenant.as_deref(), limit).await?;
    if alerts.is_empty() && !json {
        outln!("no alerts");
    }
    for a in alerts {
        if json {
            outln!("{}", serde_json::to_string(&a)?);
        } else {
            outln!(
                "{}  {:<6}  {}  {:<32}  {}",
                relayward_dsn::rfc5322_date(a.at / 1000),
                a.severity,
                a.tenant,
                a.kind,
                a.text
            );
        }
    }
    Ok(())
}

pub async fn counters(config: &Config, args: CountersArgs) -> Result<()> {
    let svc = open(config).await?;
    let CountersArgs { tenant, json } = args;

    for c in svc.counters(&tenant).await? {
        if json {
            outln!("{}", serde_json::to_string(&c)?);
        } else {
            let t = c.threshold.map_or("-".to_string(), |t| t.to_string());
            outln!("{:<40} {:<32} {:>8} / {}", c.subject, c.counter, c.value, t);
        }
    }
    let now = now_ms();
    for l in svc.auth_lockouts(&tenant).await? {
        if json {
            outln!("{}", serde_json::json!({ "auth_lockout": l }));
        } else {
            let state = if l.until > now {
                "LOCKED until"
            } else {
                "was locked until"
            };
            outln!(
                "smtp auth {:<30} {state} {} ({} failures, last from {})",
                l.account,
                relayward_dsn::rfc5322_date(l.until / 1000),
                l.failures,
                l.client
            );
        }
    }
    Ok(())
}

pub async fn audit(config: &Config, args: AuditArgs) -> Result<()> {
    let svc = open(config).await?;
    let AuditArgs { tenant, limit } = args;

    for e in svc.audit_log(tenant.as_deref(), limit).await? {
        outln!("{}", serde_json::to_string(&e)?);
    }
    Ok(())
}
