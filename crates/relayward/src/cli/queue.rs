//! `relayward queue`: the running relay's mail queue from the command line, through its control
//! socket. `list` reads like `postqueue -p` and `shape` like `qshape`; `retry`, `hold`, `release`, `bounce` and `purge`
//! act on one message, `flush` (`postqueue -f`, `-s`) on many, and `hold`, `release`, `bounce`
//! and `purge` on every message a selection picks (`postsuper -h`, `-H`, `-d` on a list),
//! through the control plane, audited like the API's queue actions.

use std::time::Duration;

use anyhow::{Result, bail};
use relayward_config::Config;
use relayward_control::queue_reads::Nodes;
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
        #[command(flatten)]
        filter: Filter,
        /// At most this many messages.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// One JSON object per message.
        #[arg(long)]
        json: bool,
    },
    /// Where the queue waits, as Postfix's `qshape` draws it: waiting messages by recipient
    /// domain (or sender domain) and by minutes since they arrived, the busiest domains first.
    Shape {
        #[command(flatten)]
        filter: Filter,
        /// Rows by the sender's domain instead of the recipients'.
        #[arg(long)]
        by_sender: bool,
        /// At most this many domains.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// The shape as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// One message.
    Show {
        /// The message's queue id (`relayward queue list` shows it).
        id: String,
        /// The message as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Try the message again now.
    Retry {
        /// The message's queue id.
        id: String,
    },
    /// Keep the message queued without delivery attempts until released; or every message a
    /// selection picks.
    Hold(Target),
    /// Let a held message be delivered again; or every held message a selection picks.
    Release(Target),
    /// Fail its pending recipients now: the sender gets one NDR; or every message a selection
    /// picks, an NDR each.
    Bounce(Target),
    /// Delete it from the queue without an NDR; or every message a selection picks.
    Purge(Target),
    /// Try every waiting message now (held ones stay held), or those of one tenant and/or with
    /// a pending recipient in one domain; a destination named with --domain (every one, with
    /// no filter) is tried again at once even if it was backed off after failures.
    Flush {
        #[command(flatten)]
        filter: Filter,
    },
    /// Take every unfinished message of another node's spool directory (a cluster node that
    /// will not come back, its disk copied here) into this running node, which delivers them.
    /// The other spool must not be in use.
    Adopt {
        /// The other node's spool directory.
        dir: std::path::PathBuf,
    },
}

/// Which waiting messages a listing, a shape or a flush takes; all when nothing is named.
#[derive(clap::Args)]
pub struct Filter {
    /// Only this tenant's messages.
    #[arg(long)]
    tenant: Option<String>,
    /// Only messages with a pending recipient in this domain.
    #[arg(long)]
    domain: Option<String>,
    /// Only messages from this sender (`<>` for the relay's own reports).
    #[arg(long)]
    sender: Option<String>,
}

/// One message by its id, or every waiting message a selection picks.
#[derive(clap::Args)]
#[group(id = "target", required = true, multiple = true)]
pub struct Target {
    /// The message's queue id.
    #[arg(group = "target", conflicts_with_all = ["tenant", "domain", "sender", "all"])]
    id: Option<String>,
    /// Every waiting message of this tenant (with --domain and --sender: those of all three).
    #[arg(long, group = "target")]
    tenant: Option<String>,
    /// Every waiting message with a pending recipient in this domain.
    #[arg(long, group = "target")]
    domain: Option<String>,
    /// Every waiting message from this sender (`<>` for the relay's own reports).
    #[arg(long, group = "target")]
    sender: Option<String>,
    /// Every waiting message.
    #[arg(long, group = "target", conflicts_with_all = ["tenant", "domain", "sender"])]
    all: bool,
}

pub async fn run(config: &Config, cmd: QueueCmd) -> Result<()> {
    let (request, json) = match cmd {
        QueueCmd::List {
            filter,
            limit,
            json,
        } => (
            Request::List {
                tenant: filter.tenant,
                domain: filter.domain,
                sender: filter.sender,
                limit,
            },
            json,
        ),
        QueueCmd::Shape {
            filter,
            by_sender,
            limit,
            json,
        } => (
            Request::Shape {
                tenant: filter.tenant,
                domain: filter.domain,
                sender: filter.sender,
                by_sender,
                limit,
            },
            json,
        ),
        QueueCmd::Show { id, json } => (Request::Show { id }, json),
        QueueCmd::Retry { id } => (act(id, "retry"), false),
        QueueCmd::Hold(target) => (act_on(target, "hold"), false),
        QueueCmd::Release(target) => (act_on(target, "release"), false),
        QueueCmd::Bounce(target) => (act_on(target, "bounce"), false),
        QueueCmd::Purge(target) => (act_on(target, "purge"), false),
        QueueCmd::Flush { filter } => (
            Request::Flush {
                tenant: filter.tenant,
                domain: filter.domain,
                sender: filter.sender,
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
    // Adopting a spool copies every message it holds, and an action on a selection may
    // touch the whole queue: wait longer for them.
    let wait = if matches!(request, Request::Adopt { .. } | Request::ActSelected { .. }) {
        WAIT * 20
    } else {
        WAIT
    };
    // A relay of an earlier version (a command line upgraded before it restarts) answers
    // without the cluster's nodes.
    let reply = match ask(&config.data_dir, &request, wait).await? {
        Reply::Messages(messages) => Reply::Listed {
            messages,
            nodes: Nodes::default(),
        },
        Reply::Shape(shape) => Reply::Shaped {
            shape,
            nodes: Nodes::default(),
        },
        reply => reply,
    };
    match reply {
        Reply::Listed { messages, nodes } if json => {
            for m in &messages {
                outln!("{}", serde_json::to_string(m)?);
            }
            print_silent(&nodes);
        }
        Reply::Listed { messages, nodes } => {
            if messages.is_empty() {
                outln!("Mail queue is empty");
            } else {
                outln!(
                    "{:<20} {:>4} {:<24} {:<10} Sender/Recipient",
                    "-Queue ID-",
                    "Try",
                    "-Arrival Time-",
                    "-Tenant-"
                );
                for m in &messages {
                    print_message(m);
                }
            }
            if listing && !messages.is_empty() {
                let recipients: usize = messages.iter().map(|m| m.pending.len()).sum();
                outln!(
                    "-- {} messages, {recipients} recipients pending",
                    messages.len()
                );
            }
            print_nodes(&nodes);
        }
        Reply::Shaped { shape, nodes } if json => {
            // As the API answers: the shape, and in a cluster each node's part.
            let mut out = serde_json::to_value(&shape)?;
            if let (Some(out), serde_json::Value::Object(nodes)) =
                (out.as_object_mut(), serde_json::to_value(&nodes)?)
            {
                out.extend(nodes);
            }
            outln!("{out}");
            print_silent(&nodes);
        }
        Reply::Shaped { shape, nodes } => {
            print_shape(&shape);
            print_nodes(&nodes);
        }
        Reply::Done { message, action } if action == "adopt" => outln!("adopted {message}"),
        Reply::Done { message, action } if action == "flush" || action == "passed-on" => {
            outln!("{message}")
        }
        Reply::Done { message, action } => outln!("{message}: {action} done"),
        Reply::Selected {
            action,
            messages,
            in_flight,
            other_nodes,
        } => {
            let mut said = format!("{action} done for {messages} message(s)");
            if in_flight > 0 {
                said.push_str(&format!("; {in_flight} in a delivery round at that moment: done to each as its round ends, if it is still queued then"));
            }
            if other_nodes {
                said.push_str(&format!(
                    " (on this node); {}",
                    relayward_node::control_socket::OTHER_NODES
                ));
            }
            outln!("{said}")
        }
        Reply::Error(e) => bail!("{e}"),
        // Read as `Listed` and `Shaped` above.
        Reply::Messages(_) | Reply::Shape(_) => bail!("an answer of an earlier relay not read"),
    }
    Ok(())
}

/// One message's action, or the selection's.
fn act_on(target: Target, action: &str) -> Request {
    match target.id {
        Some(id) => act(id, action),
        None => Request::ActSelected {
            tenant: target.tenant,
            domain: target.domain,
            sender: target.sender,
            all: target.all,
            action: action.to_string(),
            actor: operator().name,
        },
    }
}

fn act(id: String, action: &str) -> Request {
    Request::Act {
        id,
        action: action.to_string(),
        actor: operator().name,
    }
}

/// In a cluster, which nodes' queues a look took in: each node's count of the messages the
/// selection picks, and those that did not answer.
fn print_nodes(nodes: &Nodes) {
    if nodes.nodes.is_empty() && nodes.not_asked.is_none() {
        return;
    }
    let each: Vec<String> = nodes
        .nodes
        .iter()
        .map(|n| match (n.answered, n.not_seen_for) {
            (true, _) => format!("{} {}", n.node, n.messages),
            (false, Some(secs)) => format!("{} not seen for {secs} s", n.node),
            (false, None) => format!("{} did not answer", n.node),
        })
        .collect();
    if !each.is_empty() {
        outln!("-- queued on each node: {}", each.join(", "));
    }
    print_silent(nodes);
}

/// A warning (on standard error, so that JSON output stays clean) when a look at the cluster's
/// queue left nodes out.
fn print_silent(nodes: &Nodes) {
    let silent: Vec<&str> = nodes.silent().collect();
    if !silent.is_empty() {
        eprintln!(
            "warning: not shown: the queue of {} (no answer within {} s)",
            silent.join(", "),
            relayward_control::queue_reads::ANSWER_WAIT.as_secs()
        );
    }
    for (node, secs) in nodes.unseen() {
        eprintln!(
            "warning: not shown: the queue of {node}, not seen for {secs} s (stopped, or cut off from the database; its spool keeps the mail it acknowledged)"
        );
    }
    if let Some(why) = &nodes.not_asked {
        eprintln!("warning: {why}");
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
    if let Some(node) = &m.node {
        outln!("{:<61}(queued on {node})", "");
    }
    outln!("");
}

/// The shape as `qshape` lays it out: a row per domain under the total, a column for all (`T`)
/// and one per age bound in minutes, and the held ones at the end.
fn print_shape(shape: &relayward_delivery::Shape) {
    let width = shape
        .rows
        .iter()
        .map(|r| r.domain.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(5, 40);
    let mut head = format!("{:>width$} {:>6}", "", "T");
    for m in &shape.minutes {
        head.push_str(&format!(" {m:>5}"));
    }
    if let Some(last) = shape.minutes.last() {
        head.push_str(&format!(" {:>5}", format!("{last}+")));
    }
    head.push_str(&format!(" {:>5}", "held"));
    outln!("{head}");
    for r in std::iter::once(&shape.total).chain(&shape.rows) {
        let mut line = format!("{:>width$} {:>6}", r.domain, r.messages);
        for n in &r.by_age {
            line.push_str(&format!(" {n:>5}"));
        }
        line.push_str(&format!(" {:>5}", r.held));
        outln!("{line}");
    }
    if shape.more > 0 {
        outln!("-- {} more domain(s) not shown (--limit)", shape.more);
    }
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
