//! `relayward`: the relay (`serve`) and the operator's command line. Each command group lives
//! in its own file under `cli/`, and every change goes through the control plane.

/// `println!` for the command line: a closed reader (`| head`) ends the command quietly.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::write_line(format_args!($($arg)*))
    };
}

mod cli;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use relayward_config::Config;

use cli::{accounts, backup, directory, dkim, nodes, queue, restrictions, trace};

#[derive(Parser)]
#[command(
    name = "relayward",
    version,
    about = "Multi-tenant outbound mail relay"
)]
struct Cli {
    /// Configuration file (TOML); without it the embedded defaults are used.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the relay.
    Serve,
    /// Check the configuration file and print what it resolves to.
    CheckConfig,
    /// Look up the relay's sending addresses as receivers will: each pool address's reverse DNS
    /// (PTR) must name a host that resolves back to it, and that name should be its EHLO name.
    /// Exits 1 while something is to be done.
    CheckDns,
    /// Tenants.
    #[command(subcommand)]
    Tenant(directory::TenantCmd),
    /// Accepted domains.
    #[command(subcommand)]
    Domain(directory::DomainCmd),
    /// Connectors (how a tenant's own servers are recognised).
    #[command(subcommand)]
    Connector(directory::ConnectorCmd),
    /// Users (mailboxes, SMTP AUTH credentials).
    #[command(subcommand)]
    User(directory::UserCmd),
    /// Inbound routes to a tenant's own servers.
    #[command(subcommand)]
    Route(directory::RouteCmd),
    /// The running relay's mail queue: list, show, retry, hold, release, bounce, purge.
    #[command(subcommand)]
    Queue(queue::QueueCmd),
    /// The cluster's nodes: list them, forget one that will not run again.
    #[command(subcommand)]
    Node(nodes::NodeCmd),
    /// Search the message trace.
    Trace(trace::TraceArgs),
    /// List restrictions (open ones unless --all).
    Restrictions(restrictions::RestrictionsArgs),
    /// Act on one restriction.
    Restriction {
        #[command(subcommand)]
        cmd: restrictions::RestrictionCmd,
        #[command(flatten)]
        who: cli::ActorArgs,
    },
    /// Alerts, newest first.
    Alerts(restrictions::AlertsArgs),
    /// Every counter of a tenant beside its threshold.
    Counters(restrictions::CountersArgs),
    /// The audit log as JSON lines, newest first.
    Audit(restrictions::AuditArgs),
    /// API tokens for scripts (the management API under /api/v1).
    #[command(subcommand)]
    Token(accounts::TokenCmd),
    /// Operator accounts for the support console.
    #[command(subcommand)]
    Operator(accounts::OperatorCmd),
    /// Accounts of every role (admin center and support console).
    #[command(subcommand)]
    Account(accounts::AccountCmd),
    /// DKIM keys of an accepted domain: the records to publish, and rotation.
    Dkim {
        #[command(subcommand)]
        cmd: dkim::DkimCmd,
    },
    /// Copy the embedded store (database, SRS key, the TLS certificate the relay made) into a
    /// new directory while the relay runs. Not the spool.
    Backup(backup::BackupArgs),
    /// Put a backup in place while the relay is stopped; what was there is moved aside. The
    /// spool is left as it is.
    Restore(backup::RestoreArgs),
}

/// Logs go to stderr: colored for a person at a terminal, plain for journald and files, one
/// JSON object per line with `RELAYWARD_LOG_FORMAT=json` (for log shippers).
fn init_logs() {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("RELAYWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("RELAYWARD_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        logs.json().with_current_span(false).init();
    } else {
        logs.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logs();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relayward: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("relayward: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let config = &config;
    match cli.command {
        Command::Serve => relayward_node::run(config.clone()).await,
        Command::CheckConfig => cli::check_config(config),
        Command::CheckDns => cli::check_dns(config).await,
        Command::Tenant(cmd) => directory::tenant(config, cmd).await,
        Command::Domain(cmd) => directory::domain(config, cmd).await,
        Command::Connector(cmd) => directory::connector(config, cmd).await,
        Command::User(cmd) => directory::user(config, cmd).await,
        Command::Route(cmd) => directory::route(config, cmd).await,
        Command::Queue(cmd) => queue::run(config, cmd).await,
        Command::Node(cmd) => nodes::run(config, cmd).await,
        Command::Trace(args) => trace::trace(config, args).await,
        Command::Restrictions(args) => restrictions::restrictions(config, args).await,
        Command::Restriction { cmd, who } => restrictions::restriction(config, cmd, &who).await,
        Command::Alerts(args) => restrictions::alerts(config, args).await,
        Command::Counters(args) => restrictions::counters(config, args).await,
        Command::Audit(args) => restrictions::audit(config, args).await,
        Command::Token(cmd) => accounts::token(config, cmd).await,
        Command::Operator(cmd) => accounts::operator_account(config, cmd).await,
        Command::Account(cmd) => accounts::account(config, cmd).await,
        Command::Dkim { cmd } => dkim::dkim(config, cmd).await,
        Command::Backup(args) => backup::backup(config, &args).await,
        Command::Restore(args) => backup::restore(config, &args).await,
    }
}
