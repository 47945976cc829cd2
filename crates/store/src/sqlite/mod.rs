//! The embedded engine: one SQLite file in WAL mode. Calls run on tokio's blocking pool; the
//! connection sits behind a mutex (SQLite serialises writers anyway). Long reads go elsewhere:
//! trace searches and traffic figures to a second, read-only connection, the whole directory
//! to read-only connections opened for each load. Under WAL a reader does not wait for the
//! writer nor the writer for it, so a reload of a large directory or a search of a large trace
//! does not hold up the API's other calls and the trace's writes, nor a reload a search. Here:
//! opening and migrating, and the helpers the engine's statements share (row readers, inserts,
//! the version bump); the `Store` methods are in `engine`, the schema in `schema`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};

use crate::model::*;
use crate::spans::{Span, spans_of};
use crate::{Result, Store, StoreError};

pub mod backup;
mod engine;
mod schema;

use schema::MIGRATIONS;

#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// The connection for long reads; `None` when it could not be opened (they then take
    /// `conn`).
    reader: Option<Arc<Mutex<Connection>>>,
    /// Where the database is, for a second reader while the whole directory loads.
    path: std::path::PathBuf,
}

impl SqliteStore {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(open_err)?;
        // WAL with synchronous=NORMAL: durable at checkpoints, fast commits. Messages do not rely
        // on this database for durability (the spool does); configuration changes are rare.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // Checkpoints of 100 pages instead of SQLite's 1,000. A checkpoint writes the pages into
        // the database file and syncs it; the spool's sync before a 250 waits behind that write
        // on the same disk. Ten times smaller, ten times as often: at 735 messages a second,
        // p99 end of data -> 250 went from 4.7-7.6 ms to 2.0-4.2 with no change in throughput
        // (BENCHMARKS.md, session 52).
        conn.pragma_update(None, "wal_autocheckpoint", 100)
            .map_err(open_err)?;
        // Reads through a memory map: loading a million tenants' directory at start reads the
        // whole file once; with read calls instead, a 1M-tenant load took 10.9 s, mapped 6.6 s.
        conn.pragma_update(None, "mmap_size", 1_i64 << 32)
            .map_err(open_err)?;
        migrate(&mut conn)?;
        let reader = match open_reader(path) {
            Ok(r) => Some(Arc::new(Mutex::new(r))),
            Err(e) => {
                tracing::warn!(error = %e, "no reader connection: long reads share the one connection");
                None
            }
        };
        Ok(SqliteStore {
            conn: Arc::new(Mutex::new(conn)),
            reader,
            path: path.to_path_buf(),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        on(self.conn.clone(), f).await
    }

    /// Runs a long read on the reader connection (on the one connection when there is none).
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.reader.as_ref().unwrap_or(&self.conn);
        on(conn.clone(), f).await
    }
}

/// Runs `f` with `conn` on tokio's blocking pool.
async fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut guard = conn
            .lock()
            .map_err(|_| StoreError::Task("lock poisoned".into()))?;
        f(&mut guard)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?
}

/// A transaction that writes. It takes the file's write lock when it begins, waiting for it as
/// long as the busy timeout allows. A deferred one that read before it wrote could not take it
/// once another connection (the relay and the command line are two) had written since its read
/// began: SQLite then answers "database is locked" at once, without waiting.
fn writing(c: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = writing(conn)?;
        tx.execute_batch(sql)?;
        if i + 1 == schema::CLAIM_INDEXES {
            index_claims(&tx)?;
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

/// Fills the claim indexes for rows written before they existed (schema step 18).
fn index_claims(c: &Connection) -> Result<()> {
    let names: Vec<String> = c
        .prepare("SELECT name FROM domains")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut set = c.prepare("UPDATE domains SET reversed = ?2 WHERE name = ?1")?;
    for n in &names {
        set.execute(params![n, reversed(n)])?;
    }
    let connectors: Vec<(String, String, String)> = c
        .prepare("SELECT tenant, name, ips FROM connectors")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut span = c.prepare(
        "INSERT INTO connector_ranges (tenant, connector, lo, hi) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (tenant, name, ips) in connectors {
        for s in spans_of(&from_json(ips)) {
            span.execute(params![tenant, name, s.lo(), s.hi()])?;
        }
    }
    Ok(())
}

/// The condition that picks one tenant's rows (`column = ?1`) or every row (`?1 IS NULL`,
/// true when there is no tenant): SQLite plans `?1 IS NULL OR column = ?1` as a scan of the
/// whole table whatever `?1` holds, which on a large directory costs every tenant's request
/// tens of milliseconds per table.
fn one_or_all(column: &str, one: bool) -> String {
    if one {
        format!("{column} = ?1")
    } else {
        "?1 IS NULL".to_string()
    }
}

/// A domain name spelled backwards, as `domains.reversed` keeps it: the names below a domain
/// are then one range of that index.
fn reversed(name: &str) -> String {
    name.trim_end_matches('.')
        .to_ascii_lowercase()
        .chars()
        .rev()
        .collect()
}

fn tenant_row(r: &rusqlite::Row) -> rusqlite::Result<Tenant> {
    Ok(Tenant {
        name: r.get(0)?,
        language: r.get(1)?,
        subscription_ends: r.get(2)?,
        admins: from_json(r.get(3)?),
        managed_by_config: r.get(4)?,
        forwarding: Forwarding::parse(&r.get::<_, String>(5)?).unwrap_or_default(),
        forwarding_domains: from_json(r.get(6)?),
    })
}

/// Every object of the directory, or one tenant's (`only`).
fn load(c: &Connection, only: Option<&str>) -> Result<DirectoryData> {
    let mut d = load_all_but_domains(c, only)?;
    d.domains = load_domains(c, only)?;
    Ok(d)
}

fn load_domains(c: &Connection, only: Option<&str>) -> Result<Vec<Domain>> {
    let which = one_or_all("tenant", only.is_some());
    let mut s = c.prepare(&format!(
        "SELECT {DOMAIN_COLUMNS} FROM domains WHERE {which}"
    ))?;
    let domains = s
        .query_map([only], domain_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(domains)
}

/// The whole directory, its largest table (the domains) read on a second connection in a
/// thread of its own while this one reads the rest: a million tenants load in about half the
/// time. Both read the same state: each reads `directory_version` first, in its own read
/// transaction, and a change in between starts the load again (the last try reads alone).
fn load_whole(c: &mut Connection, path: &Path) -> Result<DirectoryData> {
    let mut second = match open_reader(path) {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, "no second reader: the directory loads on one connection");
            return load(c, None);
        }
    };
    for _ in 0..3 {
        let tx = c.transaction()?;
        let version = version_of(&tx)?;
        let second = &mut second;
        let (domains, rest) = std::thread::scope(|scope| {
            let reader = scope.spawn(move || -> Result<Option<Vec<Domain>>> {
                let tx = second.transaction()?;
                if version_of(&tx)? != version {
                    return Ok(None);
                }
                load_domains(&tx, None).map(Some)
            });
            let rest = load_all_but_domains(&tx, None);
            let domains = reader
                .join()
                .map_err(|_| StoreError::Task("the directory's second reader panicked".into()));
            (domains, rest)
        });
        if let Some(domains) = domains?? {
            let mut d = rest?;
            d.domains = domains;
            return Ok(d);
        }
    }
    load(c, None)
}

/// A read-only connection to the database at `path`, reading through a memory map as the
/// writer does.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let c = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "mmap_size", 1_i64 << 32)?;
    Ok(c)
}

fn version_of(c: &Connection) -> Result<i64> {
    Ok(c.query_row(
        "SELECT value FROM meta WHERE key = 'directory_version'",
        [],
        |r| r.get(0),
    )?)
}

/// Connectors of one tenant, or of all with `None`.
fn connectors_of(c: &Connection, only: Option<&str>) -> Result<Vec<Connector>> {
    let which = one_or_all("tenant", only.is_some());
    let mut s = c.prepare(&format!("SELECT tenant, name, ips, cert_name, require_tls, relay_unregistered, created_by, created_at, reviewed FROM connectors WHERE {which}"))?;
    let rows = s
        .query_map([only], connector_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(rows)
}

/// A connector from the columns `tenant, name, ips, cert_name, require_tls,
/// relay_unregistered, created_by, created_at, reviewed`, in that order.
fn connector_row(r: &rusqlite::Row) -> rusqlite::Result<Connector> {
    Ok(Connector {
        tenant: r.get(0)?,
        name: r.get(1)?,
        ips: from_json(r.get(2)?),
        cert_name: r.get(3)?,
        require_tls: r.get(4)?,
        relay_unregistered: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        reviewed: r.get(8)?,
    })
}

fn load_all_but_domains(c: &Connection, only: Option<&str>) -> Result<DirectoryData> {
    let mut d = DirectoryData::default();
    let which = one_or_all("name", only.is_some());
    let mut s = c.prepare(&format!("SELECT name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains FROM tenants WHERE {which}"))?;
    d.tenants = s
        .query_map([only], tenant_row)?
        .collect::<rusqlite::Result<_>>()?;
    d.connectors = connectors_of(c, only)?;
    let which = one_or_all("tenant", only.is_some());
    let mut s = c.prepare(&format!("SELECT address, tenant, aliases, password_hash, forward_to, forward_only FROM users WHERE {which}"))?;
    d.users = s
        .query_map([only], |r| {
            Ok(User {
                address: r.get(0)?,
                tenant: r.get(1)?,
                aliases: from_json(r.get(2)?),
                password_hash: r.get(3)?,
                forward_to: r.get(4)?,
                forward_only: r.get(5)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let which = one_or_all("tenant", only.is_some());
    let mut s = c.prepare(&format!(
        "SELECT domain, tenant, host FROM routes WHERE {which}"
    ))?;
    d.routes = s
        .query_map([only], |r| {
            Ok(Route {
                domain: r.get(0)?,
                tenant: r.get(1)?,
                host: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(d)
}

const TOKEN_COLUMNS: &str =
    "id, name, role, tenant, secret_hash, created_at, expires_at, last_used_at, revoked_at";

fn token_row(r: &rusqlite::Row) -> rusqlite::Result<ApiToken> {
    Ok(ApiToken {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        tenant: r.get(3)?,
        secret_hash: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
        last_used_at: r.get(7)?,
        revoked_at: r.get(8)?,
    })
}

const DOMAIN_COLUMNS: &str = "name, tenant, kind, match_subdomains, verified, verification_token";

/// One `domains` row, selected as `DOMAIN_COLUMNS`.
fn domain_row(r: &rusqlite::Row) -> rusqlite::Result<Domain> {
    // Read in place: a million tenants' domains are millions of rows.
    let kind = r.get_ref(2)?.as_str().unwrap_or("");
    Ok(Domain {
        name: r.get(0)?,
        tenant: r.get(1)?,
        kind: DomainKind::parse(kind).unwrap_or(DomainKind::Authoritative),
        match_subdomains: r.get(3)?,
        verified: r.get(4)?,
        verification_token: r.get(5)?,
    })
}

fn bump(conn: &Connection) -> Result<()> {
    conn.execute(
        "UPDATE meta SET value = value + 1 WHERE key = 'directory_version'",
        [],
    )?;
    Ok(())
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

fn from_json(s: String) -> Vec<String> {
    serde_json::from_str(&s).unwrap_or_default()
}

fn unique(e: rusqlite::Error, what: &'static str, name: &str) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY {
                StoreError::NotFound {
                    what: "tenant",
                    name: name.to_string(),
                }
            } else {
                StoreError::Exists {
                    what,
                    name: name.to_string(),
                }
            }
        }
        other => StoreError::Db(other),
    }
}

fn counter_row(r: &rusqlite::Row) -> rusqlite::Result<CounterRow> {
    Ok(CounterRow {
        node: r.get(0)?,
        tenant: r.get(1)?,
        body: r.get(2)?,
        updated_at: r.get(3)?,
    })
}

fn restriction_row(r: &rusqlite::Row) -> rusqlite::Result<RestrictionRow> {
    Ok(RestrictionRow {
        id: r.get(0)?,
        tenant: r.get(1)?,
        kind: r.get(2)?,
        name: r.get(3)?,
        state: r.get(4)?,
        started_at: r.get(5)?,
        updated_at: r.get(6)?,
        body: r.get(7)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, email, role, tenant, password_hash, totp_secret, recovery_codes, setup_token_hash, setup_expires_at, failed_logins, locked_until, created_at, last_login_at, language";

fn account_row(r: &rusqlite::Row) -> rusqlite::Result<Account> {
    Ok(Account {
        id: r.get(0)?,
        email: r.get(1)?,
        role: r.get(2)?,
        tenant: r.get(3)?,
        password_hash: r.get(4)?,
        totp_secret: r.get(5)?,
        recovery_codes: from_json(r.get(6)?),
        setup_token_hash: r.get(7)?,
        setup_expires_at: r.get(8)?,
        failed_logins: r.get(9)?,
        locked_until: r.get(10)?,
        created_at: r.get(11)?,
        last_login_at: r.get(12)?,
        language: r.get(13)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event, body, attempts, state, last_status, last_error, next_attempt, created_at, updated_at";

fn delivery_row(r: &rusqlite::Row) -> rusqlite::Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        event: r.get(2)?,
        body: r.get(3)?,
        attempts: r.get(4)?,
        state: r.get(5)?,
        last_status: r.get(6)?,
        last_error: r.get(7)?,
        next_attempt: r.get(8)?,
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn insert_tenant(c: &Connection, t: &Tenant) -> Result<()> {
    // One name, whatever its letter case: "Contoso" beside "contoso" is another's name.
    let same: Option<String> = c
        .query_row(
            "SELECT name FROM tenants WHERE lower(name) = lower(?1)",
            [&t.name],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(name) = same {
        return Err(StoreError::Exists {
            what: "tenant",
            name,
        });
    }
    c.execute(
        "INSERT INTO tenants (name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![t.name, t.language, t.subscription_ends, json(&t.admins), t.managed_by_config, t.forwarding.as_str(), json(&t.forwarding_domains)],
    )
    .map_err(|e| unique(e, "tenant", &t.name))?;
    Ok(())
}

fn insert_domain(c: &Connection, d: &Domain) -> Result<()> {
    c.execute(
        "INSERT INTO domains (name, tenant, kind, match_subdomains, verified, verification_token, reversed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![d.name.to_ascii_lowercase(), d.tenant, d.kind.as_str(), d.match_subdomains, d.verified, d.verification_token, reversed(&d.name)],
    )
    .map_err(|e| unique(e, "domain", &d.name))?;
    Ok(())
}

fn insert_connector(c: &Connection, k: &Connector) -> Result<()> {
    c.execute(
        "INSERT INTO connectors (tenant, name, ips, cert_name, require_tls, relay_unregistered, created_by, created_at, reviewed) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![k.tenant, k.name, json(&k.ips), k.cert_name, k.require_tls, k.relay_unregistered, k.created_by, k.created_at, k.reviewed],
    )
    .map_err(|e| unique(e, "connector", &k.name))?;
    let mut span = c.prepare_cached(
        "INSERT INTO connector_ranges (tenant, connector, lo, hi) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for s in spans_of(&k.ips) {
        span.execute(params![k.tenant, k.name, s.lo(), s.hi()])?;
    }
    Ok(())
}

fn insert_user(c: &Connection, u: &User) -> Result<()> {
    c.execute(
        "INSERT INTO users (address, tenant, aliases, password_hash, forward_to, forward_only) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![u.address.to_ascii_lowercase(), u.tenant, json(&u.aliases), u.password_hash, u.forward_to, u.forward_only],
    )
    .map_err(|e| unique(e, "user", &u.address))?;
    Ok(())
}

fn insert_route(c: &Connection, r: &Route) -> Result<()> {
    c.execute(
        "INSERT INTO routes (domain, tenant, host) VALUES (?1, ?2, ?3)",
        params![r.domain.to_ascii_lowercase(), r.tenant, r.host],
    )
    .map_err(|e| unique(e, "route", &r.domain))?;
    Ok(())
}

/// Refuses changes through the CLI/API to tenants that configuration manages.
fn check_unmanaged(c: &Connection, tenant: &str) -> Result<()> {
    let managed: Option<bool> = c
        .query_row(
            "SELECT managed_by_config FROM tenants WHERE name = ?1",
            [tenant],
            |r| r.get(0),
        )
        .optional()?;
    match managed {
        None => Err(StoreError::NotFound {
            what: "tenant",
            name: tenant.to_string(),
        }),
        Some(true) => Err(StoreError::ManagedByConfig(tenant.to_string())),
        Some(false) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The relay and the command line are two writers on one file: a change made from the
    /// command line (a restriction released, say) while the relay writes its trace must wait
    /// its turn, not fail. A transaction that read before it wrote failed at once with
    /// "database is locked" when the other had written in between (SQLite's stale snapshot,
    /// which its busy timeout does not wait out).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_writer_on_the_file_waits_its_turn_instead_of_failing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("two.sqlite");
        let relay = SqliteStore::open(&path).expect("open");
        let cli = SqliteStore::open(&path).expect("open again");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tracing = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let event = TraceEvent {
                        message_id: format!("m{n}"),
                        at: 1,
                        kind: TraceKind::Queued,
                        recipient: None,
                        detail: String::new(),
                        summary: None,
                    };
                    relay.record_trace(vec![event].into()).await.expect("trace");
                }
                n
            }
        });
        let mut failed = Vec::new();
        for i in 0..300 {
            let row = RestrictionRow {
                id: format!("r{i}"),
                tenant: "contoso".into(),
                kind: "user".into(),
                name: format!("u{i}@contoso.example"),
                state: "restricted".into(),
                started_at: 1,
                updated_at: 1,
                body: "{}".into(),
            };
            if let Err(e) = cli.save_restriction(&row).await {
                failed.push(e.to_string());
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let traced = tracing.await.expect("task");
        assert!(traced > 0);
        assert!(
            failed.is_empty(),
            "{} of 300 failed: {:?}",
            failed.len(),
            failed.first()
        );
    }

    /// A long search of a large trace under way is stood in for by holding the reader
    /// connection from another thread: writes, a tenant's own reads and a reload of the
    /// directory go on meanwhile, and another search waits its turn on the reader.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_short_reads_and_reloads_go_on_while_a_search_holds_the_reader() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("r.sqlite")).expect("open");
        store
            .add_tenant(&Tenant::named("contoso"))
            .await
            .expect("add");
        let reader = store.reader.clone().expect("a reader connection");
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (held, holding) = tokio::sync::oneshot::channel();
        let holder = std::thread::spawn(move || {
            let guard = reader.lock().expect("reader");
            let _ = held.send(());
            let _ = released.recv();
            drop(guard);
        });
        holding.await.expect("the reader is held");

        let soon = Duration::from_secs(5);
        tokio::time::timeout(soon, store.add_tenant(&Tenant::named("fabrikam")))
            .await
            .expect("a write does not wait for a long read")
            .expect("add");
        let read = tokio::time::timeout(soon, store.tenant("fabrikam"))
            .await
            .expect("a tenant's read does not wait for a long read")
            .expect("read");
        assert!(read.is_some());

        let d = tokio::time::timeout(soon, store.directory())
            .await
            .expect("a reload does not wait for a long read")
            .expect("directory");
        // It sees what the writer committed before it.
        assert_eq!(d.tenants.len(), 2);
        let search = tokio::spawn({
            let store = store.clone();
            async move { store.search_trace(&TraceQuery::default()).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!search.is_finished());
        release.send(()).expect("release");
        holder.join().expect("holder");
        search.await.expect("task").expect("search");
    }
}
