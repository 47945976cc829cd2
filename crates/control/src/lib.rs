//! The control plane: every change of tenants, accepted domains, DKIM keys, connectors, users,
//! routes, accounts, API tokens, limits, restrictions and releases, queued messages and webhooks,
//! each in its own file as `impl Control` blocks. Every action checks who may do it and the rules
//! shared by all tenants (claims), stores the change (running nodes pick it up within a second or
//! two) and writes the audit log here, in one place. The command line, the management API and the
//! consoles all call these functions; none of them writes to the store directly.
//!
//! Must never: answer HTTP or print (callers do), or hold a lock across an await.

/// Refuses the request as invalid (422), with the words given: `bail!` for the control plane.
macro_rules! invalid {
    ($($arg:tt)*) => {
        return Err($crate::ControlError::Invalid(format!($($arg)*)))
    };
}

pub mod accounts;
pub mod backup;
pub mod directory;
pub mod dkim_keys;
pub mod domain_checks;
mod domains;
mod error;
pub mod passwords;
pub mod private_files;
mod queue;
pub mod queue_reads;
mod reads;
pub mod restrictions;
pub mod saved_counters;
mod secrets;
pub mod sending_dns;
mod sign_in_failures;
pub mod spf;
#[cfg(test)]
mod test_dns;
mod tokens;
pub mod webhooks;
pub mod whatif;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use relayward_clock::now_ms;
use relayward_config::Config;
use relayward_guard::{Limits, Role};
use relayward_store::{AuditEntry, SqliteStore, Store};

pub use error::ControlError::{Conflict, Forbidden, Internal, Invalid, NotFound};
pub use error::{ControlError, Result};
/// How an address is shown to people: a local part that needs them has its quotes, as on the
/// wire (the spool holds it without).
pub use relayward_spool::quoted_address as shown_address;
pub use secrets::{random_hex, sha256_hex};
pub use tokens::TokenError;

/// Where an action comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The relay's own command line: whoever runs it holds the server and its files.
    CommandLine,
    /// An API token (a script); never carries a second factor.
    Token,
    /// A console session signed in with a password and, where `mfa`, a second factor.
    Session,
    /// The relay itself (automatic approval, the guard's own steps).
    System,
}

/// Who acts, in which role, from where, and whether they passed a second factor.
#[derive(Debug, Clone)]
pub struct Actor {
    pub name: String,
    pub role: Role,
    pub via: Via,
    /// The client address (`cli` on the command line), for the audit log.
    pub client: String,
    pub mfa: bool,
}

impl Actor {
    /// Someone at the relay's command line, in `role`.
    pub fn command_line(name: String, role: Role) -> Actor {
        Actor {
            name,
            role,
            via: Via::CommandLine,
            client: "cli".into(),
            mfa: false,
        }
    }

    fn role_str(&self) -> &'static str {
        match self.role {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::System => "system",
        }
    }

    /// Whether this actor counts as having passed a second factor: a console session with
    /// one, the command line on the relay's own host, or the system itself.
    fn second_factor(&self) -> bool {
        self.mfa || matches!(self.via, Via::CommandLine | Via::System) || self.role == Role::System
    }
}

/// The roles of accounts and API tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountRole {
    /// Every tenant, and the service's own settings.
    Operator,
    /// One tenant: reads and changes.
    Admin,
    /// One tenant: reads only.
    Reader,
}

impl AccountRole {
    pub fn parse(s: &str) -> Option<AccountRole> {
        match s {
            "operator" => Some(AccountRole::Operator),
            "admin" => Some(AccountRole::Admin),
            "reader" => Some(AccountRole::Reader),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountRole::Operator => "operator",
            AccountRole::Admin => "admin",
            AccountRole::Reader => "reader",
        }
    }

    /// The role the guard's state machine and the audit log know: readers never change
    /// anything, so they never act.
    pub fn acting(self) -> Role {
        match self {
            AccountRole::Operator => Role::Operator,
            AccountRole::Admin | AccountRole::Reader => Role::Admin,
        }
    }
}

/// What a domain ownership check found.
#[derive(Debug)]
pub enum DomainVerification {
    Verified,
    AlreadyVerified,
    /// The TXT records present (maybe none) and the one that was expected.
    NotFound {
        expected: String,
        found: Vec<String>,
    },
}

/// The control plane over one store, with the configuration's rules.
pub struct Control {
    pub store: Arc<dyn Store>,
    pub defaults: Limits,
    pub tenant_limits: HashMap<String, Limits>,
    pub auto_approve: bool,
    /// The widest connector range a tenant may claim without an operator's allowance.
    pub widest: relayward_tenancy::claims::Widest,
    /// The running relay's bounded password checkers (sign-ins use them as SMTP AUTH does);
    /// `None` on the command line.
    pub passwords: Option<Arc<crate::passwords::Checker>>,
    /// `[http] tenant_changes_per_hour` (0: no limit).
    pub tenant_changes_per_hour: usize,
    /// `[http] tenant_objects_max` (0: no limit).
    pub tenant_objects_max: usize,
    /// `[http] tenant_webhooks_max` (0: no limit).
    pub tenant_webhooks_max: usize,
    /// `[webhooks] allow_private_addresses`: a webhook URL may name an address off the public
    /// internet.
    pub webhooks_to_private: bool,
    /// In cluster mode, this node's name: operators' actions on a selection of the queue are
    /// passed on to the other nodes (`queue.rs`).
    pub cluster_node: Option<String>,
    /// Failed sign-ins counted on this node while the store is away (`sign_in_failures.rs`).
    pub sign_in_failures: passwords::SignInFailures,
    /// The relay's sending addresses (`[delivery] normal_pool`, `high_risk_pool`), for the
    /// domain check's SPF verdicts.
    pub sending_addresses: Vec<spf::SendingAddress>,
    /// `[delivery] smart_host`: receivers then see that host's addresses, not the pools'.
    pub smart_host: Option<String>,
}

pub(crate) const DAY: i64 = 86_400_000;

/// Opens the configuration's store: the shared PostgreSQL database in cluster mode
/// (`storage.database_url`), else the embedded SQLite database in the data directory (made
/// when missing).
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    if let Some(url) = &config.database_url {
        return Ok(Arc::new(relayward_store::PgStore::connect(url).await?));
    }
    private_files::data_dir(&config.data_dir)?;
    Ok(Arc::new(SqliteStore::open(&store_path(&config.data_dir))?))
}

fn store_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("relayward.sqlite")
}

impl Control {
    /// The control plane with the configuration's rules (limits, overrides, claims), without
    /// the running relay's password checkers (the command line's).
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Control {
        Control {
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
            tenant_changes_per_hour: config.http_tenant_changes_per_hour,
            tenant_objects_max: config.http_tenant_objects_max,
            tenant_webhooks_max: config.http_tenant_webhooks_max,
            webhooks_to_private: config.webhooks.allow_private,
            cluster_node: config.clustered().then(|| config.node_name.clone()),
            sign_in_failures: passwords::SignInFailures::default(),
            sending_addresses: spf::sending_addresses(config),
            smart_host: config.smart_host.clone(),
        }
    }

    /// Refuses a tenant admin's new object of a kind (`domains`, `webhooks`, ...) the tenant
    /// already has `have` of, once that is `[http] tenant_objects_max` (`tenant_webhooks_max`
    /// for webhooks, which each event is sent to). Every object is a claim every tenant's
    /// requests are checked against and a part of the directory every node rebuilds, so the
    /// hourly limit on changes bounds how fast a tenant's script adds them and this bounds how
    /// many. Operators (and the command line) may add more.
    pub(crate) fn room_for(&self, actor: &Actor, kind: &str, have: usize) -> Result<()> {
        let (most, key) = if kind == "webhooks" {
            (self.tenant_webhooks_max, "tenant_webhooks_max")
        } else {
            (self.tenant_objects_max, "tenant_objects_max")
        };
        if actor.role == Role::Operator || most == 0 || have < most {
            return Ok(());
        }
        Err(Forbidden(format!(
            "the tenant has {have} {kind}, the most its admins may add ([http] {key} = {most}); remove one first, or ask the operator"
        )))
    }

    /// Counts a change a tenant's own admin makes through the API or the console: `Err` with
    /// the seconds to wait once the tenant's admins have made `[http] tenant_changes_per_hour`
    /// in the last hour (on every node: the count is the store's). Every change costs the
    /// relay all tenants share (claim checks against every tenant's objects, a rebuild of the
    /// directory), so one tenant's script cannot keep it busy. Operators are not counted.
    pub async fn count_tenant_change(
        &self,
        actor: &Actor,
        tenant: &str,
    ) -> std::result::Result<(), i64> {
        const HOUR: i64 = 3_600_000;
        if actor.role == Role::Operator || self.tenant_changes_per_hour == 0 {
            return Ok(());
        }
        let now = now_ms();
        match self
            .store
            .count_attempt(
                &format!("changes:{tenant}"),
                HOUR,
                self.tenant_changes_per_hour,
                now,
            )
            .await
        {
            Ok(None) => Ok(()),
            Ok(Some(oldest)) => Err((HOUR - (now - oldest)) / 1000 + 1),
            Err(e) => {
                // The change itself goes to the same store and says what is wrong.
                tracing::warn!(error = %e, tenant, "tenant changes cannot be counted");
                Ok(())
            }
        }
    }
}

impl Control {
    /// The tenant's limits: its configuration override, else the overrides set through the
    /// API, else the service-wide defaults.
    pub async fn limits(&self, tenant: &str) -> Result<Limits> {
        if let Some(l) = self.tenant_limits.get(tenant) {
            return Ok(l.clone());
        }
        let stored = self.store.tenant_limits().await?;
        match stored.iter().find(|(t, _)| t == tenant) {
            Some((_, json)) => relayward_config::limits_from_overrides(&self.defaults, json)
                .map_err(|e| Invalid(format!("{e:#}"))),
            None => Ok(self.defaults.clone()),
        }
    }

    /// The overrides set through the API for a tenant (`{}` for none).
    pub async fn limit_overrides(&self, tenant: &str) -> Result<serde_json::Value> {
        let stored = self.store.tenant_limits().await?;
        Ok(stored
            .iter()
            .find(|(t, _)| t == tenant)
            .and_then(|(_, j)| serde_json::from_str(j).ok())
            .unwrap_or_else(|| serde_json::json!({})))
    }

    /// Replaces a tenant's limit overrides (operators): a JSON object of `[limits]` keys;
    /// `{}` goes back to the service-wide defaults. The running relay applies them within a
    /// second or two.
    pub async fn set_limits(
        &self,
        tenant: &str,
        overrides: &serde_json::Value,
        actor: &Actor,
    ) -> Result<Limits> {
        if actor.role != Role::Operator {
            return Err(Forbidden("limits are the operator's to change".into()));
        }
        if self.store.tenant(tenant).await?.is_none() {
            return Err(NotFound(format!("no tenant {tenant}")));
        }
        if self.tenant_limits.contains_key(tenant) {
            return Err(relayward_store::StoreError::ManagedByConfig(tenant.to_string()).into());
        }
        let text = overrides.to_string();
        let effective = relayward_config::limits_from_overrides(&self.defaults, &text)
            .map_err(|e| Invalid(format!("{e:#}")))?;
        let before = self.limit_overrides(tenant).await?;
        self.store.set_tenant_limits(tenant, &text).await?;
        self.audit(
            actor,
            Some(tenant),
            "tenant.limits",
            serde_json::json!({ "before": before, "after": overrides }),
        )
        .await?;
        Ok(effective)
    }

    pub async fn audit(
        &self,
        actor: &Actor,
        tenant: Option<&str>,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.store
            .audit(&AuditEntry {
                at: now_ms(),
                actor: actor.name.clone(),
                role: actor.role_str().to_string(),
                tenant: tenant.map(str::to_string),
                action: action.to_string(),
                client: actor.client.clone(),
                mfa: actor.mfa,
                detail: detail.to_string(),
            })
            .await?;
        Ok(())
    }
}

fn require_mfa(actor: &Actor, what: &'static str) -> Result<()> {
    if actor.second_factor() {
        Ok(())
    } else {
        Err(ControlError::MfaRequired(what))
    }
}
