//! Accounts (admin center and support console) and API tokens from the command line.

use anyhow::{Context, Result};
use relayward_clock::now_ms;
use relayward_config::Config;
use relayward_control::AccountRole;

use super::{open, operator};

/// `--role`: operator, admin or reader.
fn role(s: &str) -> Result<AccountRole, String> {
    AccountRole::parse(s).ok_or_else(|| format!("'{s}' is not operator, admin or reader"))
}

#[derive(clap::Subcommand)]
pub enum OperatorCmd {
    /// Make an operator account and print its one-time setup link (there are no default
    /// passwords): whoever opens it sets the password and enrols an authenticator.
    Create {
        /// The operator's email address, which signs in.
        email: String,
    },
}

#[derive(clap::Subcommand)]
pub enum AccountCmd {
    /// Make an account and print its one-time setup link.
    Create {
        /// The account's email address, which signs in.
        email: String,
        /// operator, admin or reader.
        #[arg(long, value_parser = role)]
        role: AccountRole,
        /// The tenant of an admin or reader.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Accounts with role, tenant, last sign-in and lockout.
    List {
        /// One tenant's accounts only.
        #[arg(long)]
        tenant: Option<String>,
    },
}

fn print_setup(config: &Config, a: &relayward_store::Account, token: &str) {
    let base = config.console_url(config.http_listen);
    outln!(
        "{} account {} created. One-time setup page (valid 24 hours; open it in a browser):\n  {base}/setup/{token}\nFor scripts, the same setup through the API: GET {base}/api/v1/setup/{token} for the authenticator key, then POST it {{\"password\", \"totp\"}}.",
        a.role,
        a.email,
    );
}

#[derive(clap::Subcommand)]
pub enum TokenCmd {
    /// Create a token and print it once (only its hash is kept).
    Create {
        /// A name to recognise it by.
        #[arg(long)]
        name: String,
        /// operator, admin or reader.
        #[arg(long, value_parser = role)]
        role: AccountRole,
        /// The tenant of an admin or reader token.
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime (e.g. 90d); without it the token lasts until revoked.
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// List tokens (never their secrets): role, tenant, created, last used, revoked.
    List {
        /// One tenant's tokens only.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke a token by its id (the part after `rw_`, before the second `_`).
    Revoke {
        /// The token's id.
        id: String,
    },
}

pub async fn account(config: &Config, cmd: AccountCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        AccountCmd::Create {
            email,
            role,
            tenant,
        } => {
            let who = operator();
            let (a, token) = svc
                .create_account(&email, role, tenant.as_deref(), &who)
                .await?;
            print_setup(config, &a, &token);
        }
        AccountCmd::List { tenant } => {
            for a in svc.accounts(tenant.as_deref()).await? {
                let state = if a.setup_token_hash.is_some() {
                    "waiting for setup".to_string()
                } else if a.locked_until.is_some_and(|u| u > now_ms()) {
                    "locked".to_string()
                } else {
                    format!("{} recovery codes left", a.recovery_codes.len())
                };
                outln!(
                    "{:<32} {:<8} {:<16} {state}",
                    a.email,
                    a.role,
                    a.tenant.as_deref().unwrap_or("-")
                );
            }
        }
    }
    Ok(())
}

pub async fn operator_account(config: &Config, cmd: OperatorCmd) -> Result<()> {
    let svc = open(config).await?;
    match cmd {
        OperatorCmd::Create { email } => {
            let who = operator();
            let (a, token) = svc
                .create_account(&email, AccountRole::Operator, None, &who)
                .await?;
            print_setup(config, &a, &token);
        }
    }
    Ok(())
}

pub async fn token(config: &Config, cmd: TokenCmd) -> Result<()> {
    let svc = open(config).await?;
    let actor = operator();
    match cmd {
        TokenCmd::Create {
            name,
            role,
            tenant,
            expires_in,
        } => {
            let valid_for = expires_in
                .as_deref()
                .map(relayward_config::parse_duration)
                .transpose()
                .context("--expires-in")?;
            let (text, _) = svc
                .create_token(role, tenant.as_deref(), &name, valid_for, &actor)
                .await?;
            outln!("{text}");
            eprintln!("this is the only time the token is shown; keep it somewhere safe");
        }
        TokenCmd::List { tenant } => {
            for t in svc.tokens(tenant.as_deref()).await? {
                outln!("{}", serde_json::to_string(&t)?);
            }
        }
        TokenCmd::Revoke { id } => {
            svc.revoke_token(&id, &actor).await?;
            outln!("token {id} revoked");
        }
    }
    Ok(())
}
