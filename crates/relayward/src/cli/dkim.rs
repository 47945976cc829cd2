//! DKIM keys of accepted domains from the command line: the records to publish, and rotation.

use anyhow::{Result, anyhow};
use relayward_config::Config;
use relayward_delivery::dns::HickoryResolver;

use super::{ActorArgs, open};

#[derive(clap::Subcommand)]
pub enum DkimCmd {
    /// The DNS records to publish and each key's state.
    Show {
        /// The tenant.
        tenant: String,
        /// The accepted domain.
        domain: String,
    },
    /// Start a rotation: new keys to publish (mail is still signed with the current ones).
    Rotate {
        /// The tenant.
        tenant: String,
        /// The accepted domain.
        domain: String,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// Sign with the new keys once their records are published (checked in DNS unless --force);
    /// the old keys keep their records for a week.
    Activate {
        /// The tenant.
        tenant: String,
        /// The accepted domain.
        domain: String,
        /// Activate without finding the new records in DNS (verifiers that cannot find a
        /// key fail the signature).
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        who: ActorArgs,
    },
    /// End the overlap: the old keys' records may be removed.
    Retire {
        /// The tenant.
        tenant: String,
        /// The accepted domain.
        domain: String,
        #[command(flatten)]
        who: ActorArgs,
    },
}

fn print_dkim(keys: &[relayward_store::DkimKey]) {
    for k in keys {
        let (name, record) = relayward_control::dkim_keys::record(k);
        let advice = match k.state {
            relayward_store::DkimKeyState::Pending => "publish, then `relayward dkim activate`",
            relayward_store::DkimKeyState::Active => "signing; keep published",
            relayward_store::DkimKeyState::Retiring => {
                "no longer signing; keep published until `relayward dkim retire` (a week)"
            }
            relayward_store::DkimKeyState::Retired => "may be removed from DNS",
        };
        outln!(
            "{:<9} {:<15} {name} TXT \"{record}\"\n          ({advice})",
            k.state.as_str(),
            k.algorithm
        );
    }
}

pub async fn dkim(config: &Config, cmd: DkimCmd) -> Result<()> {
    let svc = open(config).await?;
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
            let resolver = HickoryResolver::new(config.dns_resolver).map_err(|e| anyhow!(e))?;
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
        outln!("no DKIM keys yet (a running relay makes them for configured domains at start)");
    }
    print_dkim(&keys);
    Ok(())
}
