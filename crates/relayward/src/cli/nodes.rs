//! `relayward node`: the cluster's nodes as the shared database saw them (each notes itself
//! every 2 seconds), and forgetting one that will not run again.

use anyhow::Result;
use relayward_config::Config;

use super::{open, operator};

#[derive(clap::Subcommand)]
pub enum NodeCmd {
    /// Every node seen in the last day: running (noted in the last 10 seconds) or not seen
    /// since, with the seconds since it was.
    List {
        /// One JSON object per node.
        #[arg(long)]
        json: bool,
    },
    /// Forget a node that will not run again (its spool adopted by a running node, or retired
    /// empty): looks at the queue and `relayward_cluster_nodes_not_seen` stop naming it. A
    /// node still running is refused.
    Forget {
        /// The node's name, as `relayward node list` shows it.
        name: String,
    },
}

pub async fn run(config: &Config, cmd: NodeCmd) -> Result<()> {
    let control = open(config).await?;
    match cmd {
        NodeCmd::List { json } => {
            let nodes = control.cluster_nodes().await?;
            if nodes.is_empty() && !json {
                outln!("no node seen (one node without a shared database keeps no list)");
            }
            for n in nodes {
                if json {
                    outln!("{}", serde_json::to_string(&n)?);
                } else if n.running {
                    outln!("{:<32} running (seen {} s ago)", n.node, n.seen_secs_ago);
                } else {
                    outln!(
                        "{:<32} not seen for {} s (stopped, or cut off from the database)",
                        n.node,
                        n.seen_secs_ago
                    );
                }
            }
        }
        NodeCmd::Forget { name } => {
            control.forget_node(&name, &operator()).await?;
            outln!("node {name} forgotten");
        }
    }
    Ok(())
}
