//! Throwaway PostgreSQL databases for tests (the store's own and the relay's cluster tests).
//! Each test gets a database of its own on the server at `RELAYWARD_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the guard goes. Without a
//! server a test is skipped with a loud message, except under `CI=true`, where it fails.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database made for one test; dropped (its connections ended) when this goes.
#[derive(Debug)]
pub struct TestDb {
    admin: String,
    name: String,
    /// The URL a store or a node connects to.
    pub url: String,
}

/// Makes a fresh, empty database. `None` (after a loud message) when no server answers and
/// this is not CI; under `CI=true` a missing server fails the test.
pub async fn create() -> Option<TestDb> {
    static N: AtomicU32 = AtomicU32::new(0);
    let admin =
        std::env::var("RELAYWARD_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
    let (client, conn) = match tokio_postgres::connect(&admin, NoTls).await {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("PostgreSQL at {admin} is needed for this test (CI=true): {e}");
            }
            eprintln!(
                "\n*** SKIPPED: no PostgreSQL at {admin} ({e}); set RELAYWARD_TEST_POSTGRES to run the PostgreSQL half of the store tests ***\n"
            );
            return None;
        }
    };
    let task = tokio::spawn(conn);
    let name = format!(
        "relayward_test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    // Two statements: a batch would run them in one transaction, where CREATE DATABASE cannot.
    for sql in [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!("CREATE DATABASE {name}"),
    ] {
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {}", crate::error::describe(&e)));
    }
    drop(client);
    let _ = task.await;
    let mut config: tokio_postgres::Config = admin
        .parse()
        .unwrap_or_else(|e| panic!("RELAYWARD_TEST_POSTGRES {admin}: {e}"));
    config.dbname(&name);
    Some(TestDb {
        url: url_of(&config),
        admin,
        name,
    })
}

/// A `postgres://` URL for a configuration (user, first host and port, database).
fn url_of(config: &tokio_postgres::Config) -> String {
    let user = config.get_user().unwrap_or("postgres");
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config.get_dbname().unwrap_or("postgres");
    match config.get_password() {
        Some(p) => format!(
            "postgres://{user}:{}@{host}:{port}/{db}",
            String::from_utf8_lossy(p)
        ),
        None => format!("postgres://{user}@{host}:{port}/{db}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any runtime's reach: a thread of its own with a runtime of its own.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, NoTls).await.ok()?;
                tokio::spawn(conn);
                client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("test database {} was not dropped", self.name);
        }
    }
}
