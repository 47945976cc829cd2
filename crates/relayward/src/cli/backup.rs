//! `relayward backup` and `relayward restore`: the embedded store copied while the relay runs,
//! and put back while it is stopped (`relayward_control::backup`). Each leaves an audit entry:
//! a backup in the live database, a restore in the restored one.

use std::path::PathBuf;

use anyhow::Result;
use relayward_config::Config;
use relayward_control::backup::{self, Snapshot};
use serde_json::json;

use super::{open, operator};

#[derive(clap::Args)]
pub struct BackupArgs {
    /// A new (or empty) directory to write the backup into.
    pub dir: PathBuf,
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    /// A directory written by `relayward backup`.
    pub dir: PathBuf,
}

pub async fn backup(config: &Config, args: &BackupArgs) -> Result<()> {
    let done = backup::backup(config, &args.dir)?;
    open(config)
        .await?
        .audit(
            &operator(),
            None,
            "store.backup",
            json!({ "to": args.dir.display().to_string(), "tenants": done.database.tenants }),
        )
        .await?;
    outln!(
        "backed up {} to {}",
        config.data_dir.display(),
        args.dir.display()
    );
    print_copied(&done.database, &done.files);
    if config.srs_secret.is_some() {
        outln!(
            "the SRS key is set in the configuration file ([forwarding] srs_secret): keep that file with the backup"
        );
    }
    outln!(
        "not in a backup: the spool (mail not yet delivered stays with the relay that holds it)"
    );
    Ok(())
}

pub async fn restore(config: &Config, args: &RestoreArgs) -> Result<()> {
    let done = backup::restore(config, &args.dir)?;
    let aside = done
        .aside
        .as_ref()
        .map(|(dir, _)| dir.display().to_string());
    open(config)
        .await?
        .audit(
            &operator(),
            None,
            "store.restore",
            json!({ "from": args.dir.display().to_string(), "moved_aside_to": aside }),
        )
        .await?;
    outln!(
        "restored {} into {}",
        args.dir.display(),
        config.data_dir.display()
    );
    print_copied(&done.database, &done.files);
    match &done.aside {
        Some((dir, names)) => outln!(
            "what was there is in {}: {}",
            dir.display(),
            names.join(", ")
        ),
        None => outln!("nothing was there before"),
    }
    outln!("the spool was left as it was: its mail is delivered when the relay starts");
    Ok(())
}

/// What was copied: the database's summary, then each other file.
fn print_copied(s: &Snapshot, files: &[String]) {
    outln!(
        "  relayward.sqlite: schema step {}, {} tenant(s), {} domain(s), {} user(s), {} DKIM key(s), {} account(s), {} bytes",
        s.version,
        s.tenants,
        s.domains,
        s.users,
        s.dkim_keys,
        s.accounts,
        s.bytes
    );
    for f in files {
        outln!("  {f}");
    }
}
