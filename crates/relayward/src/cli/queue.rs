//! `relayward queue`: the running relay's mail queue from the command line, through its control
//! socket. `list` reads like `postqueue -p`; `retry`, `hold`, `release`, `bounce` and `purge`
//! act on one message, and `flush` (`postqueue -f`, `-s`) on many, through the control plane,
//! audited like the API's queue actions.

use std::time::Duration;

use anyhow::{Result, bail};
use relayward_config::Config;
use relayward_delivery::QueuedMessage;
use relayward_node::control_socket::{Reply, Request, ask};

use super::operator;

/// How long the command line waits for the relay's answer.
const WAIT: Duration = Duration::from_secs(30);

#[derive(clap::Subcommand)]
pub enum QueueCmd {
    /// Messages waiting, soonest first (held ones last): id, size of the pending list, arrival,
    /// sender, last temporary answer and each pending recipient.
    List {
        /// Only this tenant's messages.
        #[arg(long)]
        tenant: Option<String>,
        /// Only messages with a pending recipient in this domain.
        #[arg(long)]
        domain: Option<String>,
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// One message.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Try the message again now.
    Retry { id: String },
    /// Keep the message queued without delivery attempts until released.
    Hold { id: String },
    /// Let a held message be delivered again.
    Release { id: String },
    /// Fail its pending recipients now: the sender gets one NDR.
    Bounce { id: String },
    /// Delete it from the queue without an NDR.
    Purge { id: String },
    /// Try every waiting message now (held ones stay held), or those of one tenant and/or with
    /// a pending recipient in one domain; a destination named with --domain (every one, with
    /// no filter) is tried again at once even if it was backed off after failures.
    Flush {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        domain: Option<String>,
    },
    /// Take every unfinished message of another node's spool directory (a cluster node that
    /// will not come back, its disk copied here) into this running node, which delivers them.
    /// The other spool must not be in use.
    Adopt { dir: std::path::PathBuf },
}

pub async fn run(config: &Config, cmd: QueueCmd) -> Result<()> {
    let (request, json) = match cmd {
        QueueCmd::List {
            tenant,
            domain,
            limit,
            json,
        } => (
            Request::List {
                tenant,
                domain,
                limit,
            },
            json,
        ),
        QueueCmd::Show { id, json } => (Request::Show { id }, json),
        QueueCmd::Retry { id } => (act(id, "retry"), false),
        QueueCmd::Hold { id } => (act(id, "hold"), false),
        QueueCmd::Release { id } => (act(id, "release"), false),
        QueueCmd::Bounce { id } => (act(id, "bounce"), false),
        QueueCmd::Purge { id } => (act(id, "purge"), false),
        QueueCmd::Flush { tenant, domain } => (
            Request::Flush {
                tenant,
                domain,
                actor: operator().name,
            },
            false,
        ),
        QueueCmd::Adopt { dir } => {
            // The relay resolves paths from its own working directory: send an absolute one.
            let dir = std::path::absolute(&dir)?;
            (
                Request::Adopt {
                    dir,
                    actor: operator().name,
                },
                false,
            )
        }
    };
    let listing = matches!(request, Request::List { .. });
    // Adopting a spool copies every message it holds: wait longer for it.
    let wait = if matches!(request, Request::Adopt { .. }) {
        WAIT * 20
    } else {
        WAIT
    };
    match ask(&config.data_dir, &request, wait).await? {
        Reply::Messages(list) if json => {
            for m in &list {
                outln!("{}", serde_json::to_string(m)?);
            }
        }
        Reply::Messages(list) => {
            if list.is_empty() {
                outln!("Mail queue is empty");
                return Ok(());
            }
            outln!(
                "{:<20} {:>4} {:<24} {:<10} Sender/Recipient",
                "-Queue ID-",
                "Try",
                "-Arrival Time-",
                "-Tenant-"
            );
            for m in &list {
                print_message(m);
            }
            if listing {
                let recipients: usize = list.iter().map(|m| m.pending.len()).sum();
                outln!(
                    "-- {} messages, {recipients} recipients pending",
                    list.len()
                );
            }
        }
        Reply::Done { message, action } if action == "adopt" => outln!("adopted {message}"),
        Reply::Done { message, action } if action == "flush" => outln!("{message} due now"),
        Reply::Done { message, action } => outln!("{message}: {action} done"),
        Reply::Error(e) => bail!("{e}"),
    }
    Ok(())
}

fn act(id: String, action: &str) -> Request {
    Request::Act {
        id,
        action: action.to_string(),
        actor: operator().name,
    }
}

/// One message as `postqueue -p` lays it out: the id (with `!` when held), tries, arrival and
/// sender on the first line, the last temporary answer in parentheses, then each recipient.
fn print_message(m: &QueuedMessage) {
    let held = if m.held { "!" } else { "" };
    outln!(
        "{:<20} {:>4} {:<24} {:<10} {}",
        format!("{}{held}", m.id),
        m.attempts,
        arrival(m.received_at),
        m.tenant.as_deref().unwrap_or("-"),
        if m.mail_from.is_empty() {
            "<>".into()
        } else {
            relayward_control::shown_address(&m.mail_from)
        }
    );
    if let Some(reply) = &m.last_reply {
        outln!("{:<61}({reply})", "");
    }
    for r in &m.pending {
        outln!("{:<61}{}", "", relayward_control::shown_address(r));
    }
    outln!("");
}

/// `Mon Nov 30 01:32:11`, as `postqueue -p` shows arrival times (UTC here).
fn arrival(secs: i64) -> String {
    let date = relayward_dsn::rfc5322_date(secs);
    let p: Vec<&str> = date.split_whitespace().collect();
    match p.as_slice() {
        [weekday, day, month, _year, time, ..] => {
            format!("{} {month} {day:>2} {time}", weekday.trim_end_matches(','))
        }
        _ => date,
    }
}
