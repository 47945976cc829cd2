//! The command line for outbound protection: restrictions (list, show with cause, history and
//! checklist, release, request, approve, refuse, attest), alerts, counters and the audit log.
//! Each action goes through the service layer, as the API will.

use std::sync::Arc;

use anyhow::{Result, anyhow};
use relayward_guard::{Restriction, Role};
use relayward_store::Store;

use crate::config::Config;
use crate::service::{Actor, Service};

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
    /// The operator at the command line (no --actor given).
    pub fn operator() -> ActorArgs {
        ActorArgs {
            actor: None,
            role: "operator".into(),
        }
    }

    pub fn actor(&self) -> Result<Actor> {
        let role = match self.role.as_str() {
            "admin" => Role::Admin,
            "operator" => Role::Operator,
            other => return Err(anyhow!("--as must be admin or operator (got {other})")),
        };
        Ok(Actor {
            name: self
                .actor
                .clone()
                .unwrap_or_else(|| format!("cli:{}", crate::whoami())),
            role,
            client: "cli".into(),
            mfa: false,
        })
    }
}

#[derive(clap::Subcommand)]
pub enum RestrictionCmd {
    /// Cause, history and (for tenants) the remediation checklist.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Release a user or connector (admins: 3 times per 24 h), or anything as an operator.
    Release {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Request release of a tenant restriction (refused while the checklist has open items).
    RequestRelease {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Approve a release request (operators): the tenant goes on 24 h probation at half limits.
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Refuse a release request, with a reason the tenant's admins can act on.
    Refuse {
        id: String,
        #[arg(long)]
        reason: String,
    },
    /// Attest that the tenant's on-premises servers are locked down (checklist item 5).
    Attest { id: String },
}

pub fn service(config: &Config, store: Arc<dyn Store>) -> Service {
    Service {
        store,
        defaults: config.limits.clone(),
        tenant_limits: config
            .tenants
            .iter()
            .map(|t| (t.name.clone(), t.limits.clone()))
            .collect(),
        auto_approve: config.auto_approve_releases,
        widest: config.widest_connector,
        passwords: None,
    }
}

fn when(ms: i64) -> String {
    relayward_dsn::rfc5322_date(ms / 1000)
}

pub fn print_summary(r: &Restriction) {
    println!(
        "{}  {:<17}  {}  since {}  — {}",
        r.id,
        r.state.as_str(),
        r.key,
        when(r.started_at),
        r.reason.describe()
    );
}

pub async fn restriction_cmd(svc: &Service, cmd: RestrictionCmd, who: &ActorArgs) -> Result<()> {
    match cmd {
        RestrictionCmd::Show { id, json } => {
            let r = svc.restriction(&id).await?;
            let items = if r.key.kind.is_tenant() {
                Some(svc.checklist(&r).await?)
            } else {
                None
            };
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "restriction": r, "checklist": items })
                );
                return Ok(());
            }
            print_summary(&r);
            println!("  reply: 550 {}", r.key.kind.refusal().text);
            println!("  cause:");
            for c in &r.cause.counters {
                println!("    {} = {} (threshold {})", c.name, c.value, c.threshold);
            }
            let list = |name: &str, v: &[(String, u64)]| {
                if !v.is_empty() {
                    let s: Vec<String> = v.iter().map(|(k, n)| format!("{k} ({n})")).collect();
                    println!("    {name}: {}", s.join(", "));
                }
            };
            list("sender domains", &r.cause.top_sender_domains);
            list("users", &r.cause.top_users);
            list("connectors", &r.cause.top_connectors);
            list("client IPs", &r.cause.top_client_ips);
            if !r.cause.sample_message_ids.is_empty() {
                println!(
                    "    sample messages: {}",
                    r.cause.sample_message_ids.join(", ")
                );
            }
            println!("  history:");
            for t in &r.history {
                println!(
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
                println!("  remediation checklist:");
                for i in items {
                    let mark = if i.done { "x" } else { " " };
                    println!("    [{mark}] {}. {}", i.number, i.title);
                    for e in i.evidence {
                        println!("          {e}");
                    }
                }
            }
        }
        RestrictionCmd::Release { id, note } => {
            let r = svc.release(&id, &who.actor()?, &note).await?;
            println!(
                "released: {} is on probation at half its limits for 24 h",
                r.key
            );
        }
        RestrictionCmd::RequestRelease { id, note } => {
            let mut actor = who.actor()?;
            actor.role = Role::Admin;
            let r = svc.request_release(&id, &actor, &note).await?;
            match r.state {
                relayward_guard::State::Probation => println!(
                    "release approved automatically: {} is on probation at half its limits for 24 h",
                    r.key
                ),
                _ => println!(
                    "release requested for {}; an operator will review it",
                    r.key
                ),
            }
        }
        RestrictionCmd::Approve { id, note } => {
            let r = svc.approve(&id, &who.actor()?, &note).await?;
            println!(
                "approved: {} is on probation at half its limits for 24 h",
                r.key
            );
        }
        RestrictionCmd::Refuse { id, reason } => {
            let r = svc.refuse(&id, &who.actor()?, &reason).await?;
            println!("release refused; {} stays restricted", r.key);
        }
        RestrictionCmd::Attest { id } => {
            svc.attest(&id, &who.actor()?).await?;
            println!("attestation recorded for {id}");
        }
    }
    Ok(())
}
