//! Persistent state behind one interface: tenants and their domains, connectors, users and
//! routes; the message trace. SQLite is the embedded engine; the trait is written so a
//! PostgreSQL engine can implement it for cluster mode (no SQLite-only types cross it).
//!
//! The store never sits on the per-command SMTP path: the relay reads a directory snapshot built
//! from it, and trace events reach it in batches from a background writer.

mod model;
mod sqlite;

pub use model::*;
pub use sqlite::SqliteStore;

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
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Everything the relay's directory is built from.
    async fn directory(&self) -> Result<DirectoryData>;
    /// Grows by one with every change to directory data; the relay reloads when it moves.
    async fn directory_version(&self) -> Result<i64>;

    async fn add_tenant(&self, tenant: &Tenant) -> Result<()>;
    async fn add_domain(&self, domain: &Domain) -> Result<()>;
    async fn add_connector(&self, connector: &Connector) -> Result<()>;
    async fn add_user(&self, user: &User) -> Result<()>;
    async fn add_route(&self, route: &Route) -> Result<()>;
    /// Replaces a configuration-managed tenant and everything of it in one transaction.
    async fn provision(&self, data: &TenantData) -> Result<()>;

    async fn record_trace(&self, events: Vec<TraceEvent>) -> Result<()>;
    async fn search_trace(&self, query: &TraceQuery) -> Result<Vec<TraceMessage>>;
}
