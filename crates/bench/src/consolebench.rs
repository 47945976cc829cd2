//! How fast the console's pages render with a large store: 100,000 tenants (each with a
//! domain), 1,000 of them restricted and one release request waiting, in the embedded SQLite.
//! The pages are served by the console's own router on loopback and fetched one at a time; each
//! figure is the median and 95th percentile of the time from sending the request to the last
//! byte of the page.
//!
//!     cargo run --release -p relayward-bench --bin consolebench -- --tenants 100000

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use relayward_guard::{Cause, CounterValue, Key, Kind, Reason, Restriction};
use relayward_store::{Account, Domain, DomainKind, Session, SqliteStore, Store, Tenant};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    tenants: usize,
    /// Requests per page (after 5 to warm up).
    #[arg(long, default_value_t = 50)]
    requests: usize,
}

fn restriction(tenant: &str, n: usize, now: i64) -> Restriction {
    Restriction::start(
        format!("r{n:06}"),
        Key::tenant(tenant, Kind::TenantUnregistered),
        Reason::UnregisteredAllowance,
        Cause {
            counters: vec![CounterValue {
                name: "unregistered_messages_24h".into(),
                value: 501,
                threshold: 500,
            }],
            top_sender_domains: vec![
                ("fabrikam.example".into(), 400),
                ("woodgrove.example".into(), 101),
            ],
            top_connectors: vec![("on-prem".into(), 501)],
            ..Cause::default()
        },
        now,
    )
}

fn account(id: &str, email: &str, role: &str, tenant: Option<&str>) -> Account {
    Account {
        id: id.into(),
        email: email.into(),
        role: role.into(),
        tenant: tenant.map(str::to_string),
        password_hash: Some("unused".into()),
        totp_secret: Some("JBSWY3DPEHPK3PXP".into()),
        recovery_codes: vec![],
        setup_token_hash: None,
        setup_expires_at: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 0,
        last_login_at: None,
        language: None,
    }
}

fn get(addr: SocketAddr, path: &str, cookie: &str) -> (Duration, usize, u16) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\nCookie: rw_session={cookie}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read");
    let took = start.elapsed();
    let status = String::from_utf8_lossy(&out[..out.len().min(12)])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (took, out.len(), status)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(&dir.path().join("relayward.db"))?);
    let now = relayward_clock::now_ms();
    let started = Instant::now();
    let width = 6;
    let name = |i: usize| format!("tenant-{i:0width$}");
    for i in 0..args.tenants {
        store.add_tenant(&Tenant::named(name(i))).await?;
        store
            .add_domain(&Domain {
                tenant: name(i),
                name: format!("{}.example", name(i)),
                kind: DomainKind::Authoritative,
                match_subdomains: false,
                verified: true,
                verification_token: "x".into(),
            })
            .await?;
    }
    let restricted = 1_000.min(args.tenants);
    let step = (args.tenants / restricted.max(1)).max(1);
    let mut ids = Vec::new();
    for k in 0..restricted {
        let r = restriction(&name(k * step), k, now);
        ids.push(r.id.clone());
        store
            .save_restriction(&relayward_control::restrictions::restriction_row(&r))
            .await?;
    }
    // The measured tenant: restricted, with a release request waiting.
    let mid = name((restricted / 2) * step);
    let mut waiting = restriction(&mid, 999_999, now);
    let _ = waiting.request_release("it@mid.example", vec![], "fixed", now);
    store
        .save_restriction(&relayward_control::restrictions::restriction_row(&waiting))
        .await?;
    for (acc, cookie) in [
        (
            account("acc_op", "op@relay.example", "operator", None),
            "rws_operator",
        ),
        (
            account("acc_admin", "it@mid.example", "admin", Some(&mid)),
            "rws_admin",
        ),
    ] {
        store.add_account(&acc).await?;
        store
            .add_session(&Session {
                id_hash: relayward_control::sha256_hex(cookie),
                account_id: acc.id.clone(),
                csrf: "csrf".into(),
                mfa: true,
                client: "127.0.0.1".into(),
                created_at: now,
                expires_at: now + 3_600_000,
            })
            .await?;
    }
    println!(
        "store: {} tenants with a domain each, {} restricted, 1 release request: filled in {:.1} s",
        args.tenants,
        restricted + 1,
        started.elapsed().as_secs_f64()
    );

    let cfg_path = dir.path().join("relayward.toml");
    std::fs::write(
        &cfg_path,
        format!("[storage]\ndata_dir = \"{}\"\n", dir.path().display()),
    )?;
    let config = relayward_config::Config::load(Some(&cfg_path))?;
    let control = Arc::new(relayward_control::Control::new(&config, store.clone()));
    let resolver: Arc<dyn relayward_delivery::dns::Resolver> = Arc::new(
        relayward_delivery::dns::HickoryResolver::new(Some("127.0.0.1:9".parse()?))
            .map_err(anyhow::Error::msg)?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = relayward_console::router(relayward_console::ConsoleState {
        control,
        resolver,
        logins: Arc::default(),
        base_url: format!("http://{addr}"),
        queue: None,
    });
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });

    let pages = [
        (
            "tenants list (first page of 50)",
            "/support".to_string(),
            "rws_operator",
        ),
        (
            "tenants list, restricted filter",
            "/support?filter=restricted".to_string(),
            "rws_operator",
        ),
        (
            "tenants list, name search",
            format!("/support?q={}", &mid[..11]),
            "rws_operator",
        ),
        (
            "a tenant's page (operator)",
            format!("/t/{mid}"),
            "rws_operator",
        ),
        ("home page (tenant admin)", format!("/t/{mid}"), "rws_admin"),
        (
            "restriction with checklist",
            format!("/t/{mid}/restrictions/{}", waiting.id),
            "rws_admin",
        ),
        (
            "release requests",
            "/support/releases".to_string(),
            "rws_operator",
        ),
    ];
    println!("| page | median ms | p95 ms | bytes |");
    println!("|---|---:|---:|---:|");
    for (label, path, cookie) in pages {
        let path2 = path.clone();
        let n = args.requests;
        let times = tokio::task::spawn_blocking(move || {
            let mut times = Vec::new();
            let mut size = 0;
            for i in 0..n + 5 {
                let (t, bytes, status) = get(addr, &path2, cookie);
                assert_eq!(status, 200, "{path2}");
                size = bytes;
                if i >= 5 {
                    times.push(t);
                }
            }
            times.sort();
            (times, size)
        })
        .await?;
        let (times, size) = times;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = times[times.len() / 2];
        let p95 = times[(times.len() * 95 / 100).min(times.len() - 1)];
        println!("| {label} | {:.2} | {:.2} | {size} |", ms(median), ms(p95));
    }
    Ok(())
}
