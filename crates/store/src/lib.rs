//! Persistent state behind one interface: tenants and their domains, connectors, users and
//! routes; the message trace. SQLite is the embedded engine; the trait is written so a
//! PostgreSQL engine can implement it for cluster mode (no SQLite-only types cross it).
//!
//! The store never sits on the per-command SMTP path: the relay reads a directory snapshot built
//! from it, and trace events reach it in batches from a background writer.

mod error;
mod model;
mod postgres;
pub mod spans;
mod sqlite;
pub mod testdb;
mod trace_batch;

pub use model::*;
pub use postgres::{CHANGES_CHANNEL, PgStore, statements_run};
pub use spans::Span;
pub use sqlite::SqliteStore;
pub use sqlite::backup as sqlite_backup;

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("database file {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("{what} '{name}' does not exist")]
    NotFound { what: &'static str, name: String },
    #[error("{what} '{name}' already exists")]
    Exists { what: &'static str, name: String },
    #[error("tenant '{0}' is managed by the configuration file; change it there")]
    ManagedByConfig(String),
    #[error("invalid value: {0}")]
    Invalid(String),
    #[error("store task failed: {0}")]
    Task(String),
    #[error("database error: {}", error::describe(.0))]
    Postgres(tokio_postgres::Error),
    /// The shared database cannot be reached (cluster mode): the relay keeps relaying on what
    /// it knows; changes wait for the database.
    #[error("the database is unreachable ({0}); changes are refused until it is back")]
    Unavailable(String),
}

impl StoreError {
    /// The database's disk is full (nothing wrong with the request itself).
    pub fn is_disk_full(&self) -> bool {
        if let StoreError::Postgres(e) = self {
            return e.code() == Some(&tokio_postgres::error::SqlState::DISK_FULL);
        }
        let e = match self {
            StoreError::Db(e) | StoreError::Open { source: e, .. } => e,
            _ => return false,
        };
        matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DiskFull))
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How long counted attempts are kept, whatever their key: the longest window `count_attempt`
/// serves (a day, for alerts claimed once a day), with a margin.
pub const ATTEMPTS_KEPT_MS: i64 = 2 * 86_400_000;

/// How long an operator's queue order is kept for the other nodes (they act on the new ones,
/// and a node that was away for longer has queued new mail since).
pub const QUEUE_ORDERS_KEPT_MS: i64 = 86_400_000;

/// How long an operator's look at the queue, and the nodes' answers to it, are kept (the node
/// asked waits seconds for them).
pub const QUEUE_READS_KEPT_MS: i64 = 600_000;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Change notices from other nodes (cluster mode): a payload names what changed
    /// (`directory` or `restrictions`). `None` where there is no one else to hear from (the
    /// embedded store); the relay polls the versions either way.
    fn change_feed(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }

    /// Everything the relay's directory is built from.
    async fn directory(&self) -> Result<DirectoryData>;
    /// Grows by one with every change to directory data; the relay reloads when it moves.
    async fn directory_version(&self) -> Result<i64>;
    /// One tenant's own row, if it exists (cheap: no domains, users or connectors).
    async fn tenant(&self, name: &str) -> Result<Option<Tenant>>;
    /// One tenant and its objects (unverified domains included), if it exists.
    async fn tenant_data(&self, tenant: &str) -> Result<Option<TenantData>>;
    /// Tenants by name after `after`, at most `limit` (paging).
    async fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>>;
    /// Tenants whose last subscription day (`YYYY-MM-DD`) is before `today`, by name after
    /// `after`, at most `limit`.
    async fn lapsed_tenants(
        &self,
        today: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tenant>>;

    async fn add_tenant(&self, tenant: &Tenant) -> Result<()>;
    async fn add_domain(&self, domain: &Domain) -> Result<()>;
    async fn add_connector(&self, connector: &Connector) -> Result<()>;
    async fn add_user(&self, user: &User) -> Result<()>;
    async fn add_route(&self, route: &Route) -> Result<()>;
    /// Replaces a configuration-managed tenant and everything of it in one transaction.
    async fn provision(&self, data: &TenantData) -> Result<()>;

    /// Writes a tenant's own fields (language, subscription, admins, forwarding) back.
    async fn update_tenant(&self, tenant: &Tenant) -> Result<()>;
    async fn delete_connector(&self, tenant: &str, name: &str) -> Result<()>;
    /// Writes a user back (aliases, password, forwarding), found by tenant and address.
    async fn update_user(&self, user: &User) -> Result<()>;
    async fn delete_user(&self, tenant: &str, address: &str) -> Result<()>;
    /// A tenant's limit overrides set through the API (JSON object, `{}` for none).
    async fn set_tenant_limits(&self, tenant: &str, overrides: &str) -> Result<()>;
    /// Every tenant with overrides set through the API: (tenant, JSON object).
    async fn tenant_limits(&self) -> Result<Vec<(String, String)>>;
    /// Sets a tenant's automatic forwarding control (and its allowed domains for `Listed`).
    async fn set_forwarding(
        &self,
        tenant: &str,
        forwarding: Forwarding,
        domains: &[String],
    ) -> Result<()>;
    /// One accepted domain by name (any tenant's).
    async fn domain(&self, name: &str) -> Result<Domain>;
    /// Every tenant's domains that are `name`, one of its parents or one of its subdomains:
    /// what a new domain would clash with.
    async fn related_domains(&self, name: &str) -> Result<Vec<Domain>>;
    /// Every tenant's connectors: the claims on source addresses and certificate names.
    async fn all_connectors(&self) -> Result<Vec<Connector>>;
    /// The connectors, any tenant's, with a range that overlaps one of `spans`: what a new
    /// connector's ranges would clash with, read from the claim index (every connector's
    /// ranges as spans) instead of every connector.
    async fn connectors_touching(&self, spans: &[Span]) -> Result<Vec<Connector>>;
    /// Marks a tenant's domain verified (ownership proven) or not.
    async fn set_domain_verified(&self, tenant: &str, name: &str, verified: bool) -> Result<()>;
    async fn set_connector_reviewed(&self, tenant: &str, name: &str, reviewed: bool) -> Result<()>;

    /// Inserts or updates a restriction; grows `restrictions_version`. A new restriction of a
    /// subject (tenant, kind, name) that already has one open (not lifted) is not stored:
    /// `false`, and the caller takes the stored one (in a cluster, two nodes can start one at
    /// the same moment; the first stored is the one).
    async fn save_restriction(&self, r: &RestrictionRow) -> Result<bool>;
    /// Newest first; `open_only` leaves out lifted ones.
    async fn restrictions(
        &self,
        tenant: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<RestrictionRow>>;
    async fn restriction(&self, id: &str) -> Result<RestrictionRow>;
    /// Grows with every saved restriction; nodes reload when it moves.
    async fn restrictions_version(&self) -> Result<i64>;

    async fn add_alerts(&self, alerts: Vec<AlertRow>) -> Result<()>;
    /// Newest first.
    async fn alerts(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AlertRow>>;
    /// Records (or renews) an SMTP AUTH lockout of a known account.
    async fn record_auth_lockout(&self, lockout: &AuthLockout) -> Result<()>;
    /// A tenant's SMTP AUTH lockouts that ended at `since` (Unix ms) or later, newest first.
    async fn auth_lockouts(&self, tenant: &str, since: i64) -> Result<Vec<AuthLockout>>;

    /// How many attempts `count_attempt` counted under `key` at `since` (Unix ms) or later, and
    /// when the oldest of them was made; nothing is counted.
    async fn attempts_since(&self, key: &str, since: i64) -> Result<(usize, Option<i64>)>;
    /// `attempts_since`'s counts for several keys in one look at the store (one round trip to
    /// PostgreSQL), in the order asked.
    async fn attempts_counted(&self, asked: &[(&str, i64)]) -> Result<Vec<usize>> {
        let mut counted = Vec::with_capacity(asked.len());
        for (key, since) in asked {
            counted.push(self.attempts_since(key, *since).await?.0);
        }
        Ok(counted)
    }
    /// Counts one attempt under `key` at `now` unless `limit` attempts were counted in the
    /// `window_ms` before: `None` when counted, else `Some(oldest)`, when the oldest of those
    /// was made (the caller says how long to wait). One at a time per key, on every node: the
    /// sign-in limits per client address hold across a cluster. Windows are at most
    /// `ATTEMPTS_KEPT_MS`: every call also deletes any key's attempts older than that, so keys
    /// made by clients without credentials (one per address) cannot pile up.
    async fn count_attempt(
        &self,
        key: &str,
        window_ms: i64,
        limit: usize,
        now: i64,
    ) -> Result<Option<i64>>;

    /// This node's counts of bulk fingerprint bands, (band, first, recipients), replacing what
    /// it saved before (cluster mode), at `at` (Unix ms; PostgreSQL stamps its own clock).
    async fn save_bulk_bands(&self, node: &str, bands: Vec<(i64, i64, i64)>, at: i64)
    -> Result<()>;
    /// Bulk band counts saved at `since` (the store's clock) or later, by any node.
    async fn bulk_bands_since(&self, since: i64) -> Result<Vec<BulkBandRow>>;

    /// This node's guard counters per tenant, serialised (tenant, body), replacing what the
    /// node saved before: a save repeated after a failure counts nothing twice.
    async fn save_counters(&self, node: &str, rows: Vec<(String, String)>, at: i64) -> Result<()>;
    /// Every node's saved counters of one tenant, or of all.
    async fn counters(&self, tenant: Option<&str>) -> Result<Vec<CounterRow>>;
    /// Counters saved at `since` (Unix ms, by the store's clock) or later, by any node.
    async fn counters_since(&self, since: i64) -> Result<Vec<CounterRow>>;

    /// Stores an operator's action on a selection for the other nodes (in cluster mode they
    /// are told at once, `queue` on the change feed); returns its id. Orders older than a day
    /// are dropped as a new one is stored.
    async fn add_queue_order(&self, order: &QueueOrder) -> Result<i64>;
    /// The orders stored after order `after`, oldest first, at most `n`.
    async fn queue_orders_after(&self, after: i64, n: usize) -> Result<Vec<QueueOrder>>;
    /// The id of the last order stored (0 when there is none).
    async fn last_queue_order(&self) -> Result<i64>;

    /// Cluster mode: notes that `node` is running at `at` (Unix ms; PostgreSQL stamps its own
    /// clock) and returns every node noted in the last day, by name, with how long ago (ms) it
    /// was last noted (`node` itself: 0). Nodes not noted for a day are forgotten.
    async fn nodes_seen(&self, node: &str, at: i64) -> Result<Vec<(String, i64)>>;
    /// The nodes noted in the last day, by name, with how long ago (ms) each was last noted, at
    /// `at` (Unix ms; PostgreSQL reads its own clock). Notes nothing.
    async fn cluster_nodes(&self, at: i64) -> Result<Vec<(String, i64)>>;
    /// Forgets a node (one that will not run again); whether it was known.
    async fn forget_node(&self, node: &str) -> Result<bool>;
    /// Stores an operator's look at the queue for the other nodes to answer (they are told at
    /// once, `queue` on the change feed); returns its id. Reads and their answers older than
    /// `QUEUE_READS_KEPT_MS` are dropped as a new one is stored.
    async fn add_queue_read(&self, read: &QueueRead) -> Result<i64>;
    /// The reads stored after read `after`, oldest first, at most `n`.
    async fn queue_reads_after(&self, after: i64, n: usize) -> Result<Vec<QueueRead>>;
    /// The id of the last read stored (0 when there is none).
    async fn last_queue_read(&self) -> Result<i64>;
    /// Stores `node`'s answer to read `read` (a serialised body); a second answer replaces it.
    async fn answer_queue_read(&self, read: i64, node: &str, body: &str) -> Result<()>;
    /// The answers to read `read` so far: (node, body).
    async fn queue_read_answers(&self, read: i64) -> Result<Vec<(String, String)>>;

    /// A recipient domain's MTA-STS policy still within its age at `now`, if one was kept.
    async fn mta_sts_policy(&self, domain: &str, now: i64) -> Result<Option<MtaStsRow>>;
    /// Keeps a fetched policy (replacing the domain's last); policies past their age go.
    async fn save_mta_sts_policy(&self, row: &MtaStsRow, now: i64) -> Result<()>;

    /// Cluster mode: replaces this node's counts of long-waiting messages, one serialised body
    /// per tenant (tenant, body), with `rows` (a tenant left out has none waiting here), at
    /// `at` (Unix ms; PostgreSQL stamps its own clock); returns every node's rows saved in the
    /// last `fresh_ms`, this node's included. Rows of a node that stopped saving fall out of
    /// the answer after `fresh_ms` and out of the table after a day.
    async fn share_delayed(
        &self,
        node: &str,
        rows: Vec<(String, String)>,
        fresh_ms: i64,
        at: i64,
    ) -> Result<Vec<CounterRow>>;

    async fn audit(&self, entry: &AuditEntry) -> Result<()>;
    /// Newest first.
    async fn audit_log(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>>;

    /// A domain seen in restricted traffic that an admin says is not the tenant's.
    async fn dismiss_domain(&self, tenant: &str, domain: &str, actor: &str, at: i64) -> Result<()>;
    async fn dismissed_domains(&self, tenant: &str) -> Result<Vec<String>>;
    /// An admin attests that the on-premises servers are locked down (checklist item 5).
    async fn attest(&self, restriction_id: &str, actor: &str, at: i64) -> Result<()>;
    async fn attestation(&self, restriction_id: &str) -> Result<Option<(String, i64)>>;

    /// API tokens (the secret only as its hash).
    async fn add_token(&self, token: &ApiToken) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<ApiToken>>;
    /// Tokens of one tenant, or all (`None`), newest first.
    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<ApiToken>>;
    async fn touch_token(&self, id: &str, at: i64) -> Result<()>;
    async fn revoke_token(&self, id: &str, at: i64) -> Result<()>;

    /// DKIM keys (any state) of one domain, or of all (`None`), oldest first.
    async fn dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>>;
    async fn add_dkim_keys(&self, keys: &[DkimKey]) -> Result<()>;
    /// Moves keys of `domain` to new states in one transaction: `(selector, state)`.
    async fn set_dkim_states(
        &self,
        domain: &str,
        changes: &[(String, DkimKeyState)],
        at: i64,
    ) -> Result<()>;

    async fn add_webhook(&self, webhook: &Webhook) -> Result<()>;
    /// Webhooks of one tenant, or all (`None`).
    async fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<Webhook>>;
    async fn delete_webhook(&self, id: &str) -> Result<()>;
    /// Queues one delivery per webhook of `tenant` that takes `event`; returns how many.
    async fn queue_webhook_event(
        &self,
        tenant: &str,
        event: &str,
        body: &str,
        at: i64,
    ) -> Result<usize>;
    /// Queues one delivery as given (its `id` is assigned).
    async fn add_webhook_delivery(&self, d: &WebhookDelivery) -> Result<()>;
    /// Claims up to `limit` pending deliveries due at `now`, oldest first: their next attempt
    /// moves to `now + lease_ms`, so no other node takes them while this one tries; if this one
    /// dies, they are due again when the lease ends (at least once, never twice at the same time).
    async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>>;
    async fn update_webhook_delivery(&self, d: &WebhookDelivery) -> Result<()>;
    /// A webhook's deliveries, newest first.
    async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>>;

    async fn add_account(&self, account: &Account) -> Result<()>;
    async fn account(&self, id: &str) -> Result<Option<Account>>;
    /// By e-mail address (any letter case).
    async fn account_by_email(&self, email: &str) -> Result<Option<Account>>;
    /// Accounts of one tenant, or all (`None`).
    async fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>>;
    /// Writes back the mutable parts: password, TOTP, recovery codes, setup, lockout, login.
    async fn update_account(&self, account: &Account) -> Result<()>;
    /// The account whose unfinished setup has this token hash.
    async fn account_by_setup(&self, token_hash: &str) -> Result<Option<Account>>;
    async fn add_session(&self, session: &Session) -> Result<()>;
    async fn session(&self, id_hash: &str) -> Result<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> Result<()>;

    /// Writes a batch of trace events in one transaction. Shared, so a writer that must try
    /// again keeps the batch without copying it.
    async fn record_trace(&self, events: std::sync::Arc<[TraceEvent]>) -> Result<()>;
    /// Deletes at most `limit` rows of each kind older than the cut-offs (Unix ms): messages of
    /// the trace (with their recipients and events) received before `trace_before`; audit
    /// entries, alerts and finished webhook deliveries from before `audit_before`. Small
    /// batches, so the caller can pause between them and nothing waits long on the database.
    async fn prune(&self, trace_before: i64, audit_before: i64, limit: usize) -> Result<Pruned>;
    async fn search_trace(&self, query: &TraceQuery) -> Result<Vec<TraceMessage>>;
    /// A tenant's traced messages per UTC day from `since` (Unix ms), oldest first; days
    /// without mail are left out.
    async fn daily_traffic(&self, tenant: &str, since: i64) -> Result<Vec<DayTraffic>>;
    /// A tenant's traced messages from `since` (Unix ms), oldest first, at most `limit`:
    /// what a what-if replay of new limits reads.
    async fn replay_trace(&self, tenant: &str, since: i64, limit: usize) -> Result<Vec<ReplayRow>>;
}

pub use relayward_names::{address_forms, address_key, domain_key};

/// An address as a tenant's objects and accounts keep it: trimmed, lower case, its domain as
/// `domain_key` gives it (a user, alias, forwarding target or account e-mail written with a
/// Unicode domain is kept with its A-labels, as lookups find it).
pub fn stored_address(address: &str) -> String {
    address_key(&address.trim().to_ascii_lowercase()).into_owned()
}
