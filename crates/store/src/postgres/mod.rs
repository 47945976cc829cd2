//! Cluster mode's engine: PostgreSQL, shared by every node. Calls take a connection from a
//! small pool and run prepared statements (each connection keeps its own cache of them); what
//! must change together runs in one transaction. A change to the directory or to restrictions
//! grows its version and sends a notification on the same commit, so other nodes hear of it
//! at once (`relayward_changes`); a node that missed one still sees the version move.

mod claims;
mod engine;
mod schema;

use std::time::Duration;

use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

use crate::error::describe;
use crate::{Result, StoreError};

/// The notification channel that carries "something changed" between nodes; its payload names
/// what (`directory`, `restrictions`, `dkim` or `queue`).
pub const CHANGES_CHANNEL: &str = "relayward_changes";

/// Connections per node: the relay's own writers (trace, counters, webhooks) and the API's
/// requests; PostgreSQL's default of 100 connections serves a dozen nodes.
const POOL_SIZE: usize = 8;

/// How long a call waits for a connection (a new one, or a free one) before the database counts
/// as unreachable.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    config: tokio_postgres::Config,
    /// The change feed, started by the first `listen`: one listening connection per process.
    feed: std::sync::Arc<std::sync::OnceLock<tokio::sync::broadcast::Sender<String>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`), creating and
    /// migrating the schema as needed. Several nodes may start at once: migrations run under a
    /// lock of their own.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Invalid(format!("storage.database_url: {e}")))?;
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            return Err(StoreError::Invalid(
                "storage.database_url asks for sslmode=require, and this version connects to PostgreSQL without TLS; use a local or tunnelled connection"
                    .into(),
            ));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_WAIT))
            .create_timeout(Some(CONNECT_WAIT))
            .recycle_timeout(Some(CONNECT_WAIT))
            .build()
            .map_err(|e| StoreError::Invalid(format!("database pool: {e}")))?;
        let store = PgStore {
            pool,
            config,
            feed: Default::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// The connection settings (a node opens its own listening connection with them).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => StoreError::Unavailable(other.to_string()),
        })
    }

    async fn migrate(&self) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // One node migrates at a time; the others wait here and then find nothing to do.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('relayward:migrate'))",
            &[],
        )
        .await?;
        let fresh: Option<String> = tx
            .query_one("SELECT to_regclass('relayward_schema')::text", &[])
            .await?
            .try_get(0)?;
        if fresh.is_none() {
            tx.batch_execute(
                "CREATE TABLE relayward_schema (version BIGINT NOT NULL);
                 INSERT INTO relayward_schema VALUES (0);",
            )
            .await?;
        }
        let version: i64 = tx
            .query_one("SELECT version FROM relayward_schema", &[])
            .await?
            .try_get(0)?;
        if version > schema::MIGRATIONS.len() as i64 {
            return Err(StoreError::Invalid(format!(
                "the database's schema is version {version}, newer than this node's ({}); upgrade this node",
                schema::MIGRATIONS.len()
            )));
        }
        for (i, sql) in schema::MIGRATIONS
            .iter()
            .enumerate()
            .skip(version.max(0) as usize)
        {
            tx.batch_execute(sql).await?;
            if i + 1 == claims::CLAIM_INDEXES {
                claims::index_claims(&tx).await?;
            }
            tx.execute(
                "UPDATE relayward_schema SET version = $1",
                &[&((i + 1) as i64)],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // A closed connection or a socket error: the database is away, not the request wrong.
        let io = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
        if e.is_closed() || io {
            StoreError::Unavailable(describe(&e))
        } else {
            StoreError::Postgres(e)
        }
    }
}

/// Maps a unique-key clash to `Exists` and a missing tenant (foreign key) to `NotFound`.
fn unique(e: tokio_postgres::Error, what: &'static str, name: &str) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Exists {
            what,
            name: name.to_string(),
        },
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => StoreError::NotFound {
            what: "tenant",
            name: name.to_string(),
        },
        _ => e.into(),
    }
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Statements this process has run on PostgreSQL (a metric: cost per message in a cluster).
static STATEMENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn counted() {
    STATEMENTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Statements run on PostgreSQL by this process so far (0 on the embedded store).
pub fn statements_run() -> u64 {
    STATEMENTS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Runs one prepared statement; the number of rows it touched.
async fn exec(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<u64> {
    let st = c.prepare_cached(sql).await?;
    counted();
    Ok(c.execute(&st, params).await?)
}

async fn rows(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
    let st = c.prepare_cached(sql).await?;
    counted();
    Ok(c.query(&st, params).await?)
}

async fn row(c: &impl GenericClient, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
    let st = c.prepare_cached(sql).await?;
    counted();
    Ok(c.query_opt(&st, params).await?)
}

/// The condition that picks one tenant's rows (`column = $1`) or every row (`$1::text IS NULL`,
/// with `$1` bound to NULL). Written as `$1 IS NULL OR column = $1`, one statement served both,
/// and after five runs PostgreSQL may keep its generic plan, a scan of the whole table, for as
/// long as the table's statistics stand: a statement first run on a small table went on
/// scanning after the table grew to 600,000 rows, until the next ANALYZE (checked with
/// `EXPLAIN EXECUTE` in session 34).
fn one_or_all(column: &str, one: bool) -> String {
    if one {
        format!("{column} = $1")
    } else {
        "$1::text IS NULL".to_string()
    }
}

/// Maps every row; the first error stops.
fn each<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(f).collect()
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

/// A count or size the model keeps unsigned.
fn unsigned<T: TryFrom<i64> + Default>(v: i64) -> T {
    T::try_from(v.max(0)).unwrap_or_default()
}

fn limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Every notification on `relayward_changes` (its payload: `directory`, `restrictions`, `queue` or
    /// `dkim`), from one connection of its own per process that reconnects when it drops; after
    /// a reconnection it sends every payload, since notifications in between are lost.
    pub fn listen(&self) -> tokio::sync::broadcast::Receiver<String> {
        let tx = self.feed.get_or_init(|| {
            let (tx, _) = tokio::sync::broadcast::channel(64);
            let config = self.config.clone();
            let sender = tx.clone();
            tokio::spawn(async move {
                let mut first = true;
                loop {
                    match listen_once(&config, &sender, first).await {
                        Ok(()) => {
                            tracing::warn!("the change feed's connection closed; reconnecting")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "the change feed cannot listen; retrying")
                        }
                    }
                    first = false;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            });
            tx
        });
        tx.subscribe()
    }
}

async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &tokio::sync::broadcast::Sender<String>,
    first: bool,
) -> std::result::Result<(), String> {
    use tokio_postgres::AsyncMessage;
    let (client, mut conn) = tokio::time::timeout(CONNECT_WAIT, config.connect(NoTls))
        .await
        .map_err(|_| "connecting timed out".to_string())?
        .map_err(|e| describe(&e))?;
    let (msgs_tx, mut msgs) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        while let Some(m) = std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            if msgs_tx.send(m).is_err() {
                break;
            }
        }
    });
    let listening = client
        .batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
        .await;
    if let Err(e) = listening {
        driver.abort();
        return Err(describe(&e));
    }
    if !first {
        for what in ["directory", "restrictions", "dkim", "queue"] {
            let _ = tx.send(what.to_string());
        }
    }
    let result = loop {
        match msgs.recv().await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                let _ = tx.send(n.payload().to_string());
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break Err(describe(&e)),
            None => break Ok(()),
        }
    };
    drop(client);
    driver.abort();
    result
}
