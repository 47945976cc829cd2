//! The message trace from the command line.

use anyhow::Result;
use relayward_clock::now_secs;
use relayward_config::Config;
use relayward_store::TraceQuery;

use super::open;

#[derive(clap::Args)]
pub struct TraceArgs {
    /// One message, by the relay's id for it (the queue id, also in its Received field).
    #[arg(long)]
    id: Option<String>,
    /// Messages from this envelope sender (any case).
    #[arg(long)]
    sender: Option<String>,
    /// Messages to this recipient.
    #[arg(long)]
    recipient: Option<String>,
    /// One tenant's messages only.
    #[arg(long)]
    tenant: Option<String>,
    /// Delivered, Failed, Pending, Deferred, FilteredAsSpam (refused at end of data as spam or
    /// bulk) or Expanded (a forward-only user's mail).
    #[arg(long)]
    status: Option<String>,
    /// Only messages received in this last period (like 1h, 2d).
    #[arg(long)]
    since: Option<String>,
    /// At most this many messages, newest first.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// One JSON object per message.
    #[arg(long)]
    json: bool,
}

pub async fn trace(config: &Config, args: TraceArgs) -> Result<()> {
    let svc = open(config).await?;
    let since = match &args.since {
        Some(s) => {
            Some((now_secs() - relayward_config::parse_duration(s)?.as_secs() as i64) * 1000)
        }
        None => None,
    };
    if let Some(st) = &args.status
        && !relayward_store::TRACE_STATUSES.contains(&st.as_str())
    {
        anyhow::bail!(
            "--status must be one of {}",
            relayward_store::TRACE_STATUSES.join(", ")
        );
    }
    let found = svc
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
        outln!("no messages found");
    }
    for m in found {
        if args.json {
            outln!("{}", serde_json::to_string(&m)?);
            continue;
        }
        outln!(
            "{}  {}  from <{}>  tenant {}  via {}  [{}]  {} bytes",
            m.message_id,
            relayward_dsn::rfc5322_date(m.received_at / 1000),
            relayward_control::shown_address(&m.sender),
            m.tenant.as_deref().unwrap_or("-"),
            m.origin,
            m.client_ip,
            m.size
        );
        for r in &m.recipients {
            outln!(
                "  {:<10} {}",
                r.status,
                relayward_control::shown_address(&r.address)
            );
        }
        for e in &m.events {
            // The recipient and the detail when there are any, without blanks left for them.
            let recipient = e.recipient.as_deref().map(relayward_control::shown_address);
            let rest: Vec<&str> = [recipient.as_deref(), Some(e.detail.as_str())]
                .into_iter()
                .flatten()
                .filter(|s| !s.is_empty())
                .collect();
            let line = format!(
                "    {}  {:<10} {}",
                relayward_dsn::rfc5322_date(e.at / 1000),
                e.kind,
                rest.join(" ")
            );
            outln!("{}", line.trim_end());
        }
    }
    Ok(())
}
