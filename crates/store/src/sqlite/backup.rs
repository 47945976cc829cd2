//! A copy of the embedded database taken while the relay runs, and the check of a copy before
//! it is put back. The copy is SQLite's `VACUUM INTO`: one read transaction on the live file,
//! which under WAL neither waits for the relay's writes nor holds them up, written out as a
//! compact database of its own (no `-wal` beside it to lose).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::schema::MIGRATIONS;
use crate::{Result, StoreError};

/// What a database holds, to print after a backup and before a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The schema step the database is at (`PRAGMA user_version`).
    pub version: i64,
    pub tenants: u64,
    pub domains: u64,
    pub users: u64,
    pub dkim_keys: u64,
    pub accounts: u64,
    pub bytes: u64,
}

/// Writes a consistent copy of the database at `db` to `to`, a file that must not exist yet,
/// and checks the copy. SQLite does not sync the copy: the caller does. The live database is not migrated: a newer binary's backup of an older
/// relay's database copies it as it is. (It is opened for reading and writing, though nothing
/// is written: a read-only connection cannot open a WAL database whose shared-memory file is
/// gone, as it is once the relay has stopped.)
pub fn backup(db: &Path, to: &Path) -> Result<Snapshot> {
    let conn = open(db)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let dest = to
        .to_str()
        .ok_or_else(|| StoreError::Invalid(format!("{} is not UTF-8", to.display())))?;
    conn.execute("VACUUM INTO ?1", [dest])?;
    drop(conn);
    inspect(to)
}

/// Checks the database at `path` (SQLite's integrity check) and counts what it holds. A file
/// that is not a database, a damaged one, or one whose schema is newer than this binary knows
/// is an error that says which.
pub fn inspect(path: &Path) -> Result<Snapshot> {
    let conn = open(path)?;
    let check: String = conn
        .query_row("PRAGMA integrity_check(1)", [], |r| r.get(0))
        .map_err(|e| damaged(path, &e.to_string()))?;
    if check != "ok" {
        return Err(damaged(path, &check));
    }
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        return Err(StoreError::Invalid(format!(
            "{} holds no Relayward database",
            path.display()
        )));
    }
    if version > MIGRATIONS.len() as i64 {
        return Err(StoreError::Invalid(format!(
            "{} was written by a newer Relayward (schema step {version}; this one knows {}): restore it with that version",
            path.display(),
            MIGRATIONS.len()
        )));
    }
    let count = |table: &str| -> Result<u64> {
        let n: i64 = conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        Ok(n.max(0) as u64)
    };
    Ok(Snapshot {
        version,
        tenants: count("tenants")?,
        domains: count("domains")?,
        users: count("users")?,
        dkim_keys: count("dkim_keys")?,
        accounts: count("accounts")?,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
    })
}

fn open(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(StoreError::Invalid(format!(
            "there is no database at {}",
            path.display()
        )));
    }
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| StoreError::Open {
        path: path.display().to_string(),
        source,
    })
}

fn damaged(path: &Path, why: &str) -> StoreError {
    StoreError::Invalid(format!(
        "{} is not a sound database ({why})",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SqliteStore, Store, Tenant};

    #[tokio::test]
    async fn a_copy_holds_what_the_live_database_holds_and_a_broken_one_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("relayward.sqlite");
        let store = SqliteStore::open(&db).expect("open");
        store
            .add_tenant(&Tenant::named("contoso"))
            .await
            .expect("tenant");
        // The store stays open (its WAL not checkpointed), as a running relay's does.
        let copy = dir.path().join("copy.sqlite");
        let snap = backup(&db, &copy).expect("backup");
        assert_eq!(snap.tenants, 1);
        assert_eq!(snap.version, MIGRATIONS.len() as i64);
        assert!(
            !dir.path().join("copy.sqlite-wal").exists(),
            "the copy stands alone"
        );
        assert!(
            backup(&db, &copy).is_err(),
            "an existing file is not overwritten"
        );

        let junk = dir.path().join("junk.sqlite");
        std::fs::write(&junk, b"not a database at all, just text").expect("write");
        let err = inspect(&junk).expect_err("junk");
        assert!(err.to_string().contains("junk.sqlite"), "{err}");

        let empty = dir.path().join("empty.sqlite");
        Connection::open(&empty).expect("create");
        let err = inspect(&empty).expect_err("empty");
        assert!(err.to_string().contains("no Relayward database"), "{err}");
        drop(store);
    }
}
