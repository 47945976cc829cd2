//! `guardbench`: what one outbound guard decision costs with a large directory loaded, and
//! what that directory costs in memory and load time (figures in BENCHMARKS.md).
//!
//! It generates `--tenants` tenants with `--domains-per-tenant` verified accepted domains, one
//! connector (a /32 or a /24) and one user each, builds the in-memory directory the relay uses,
//! and then makes `--decisions` decisions the way the SMTP policy makes them for one message:
//! attribution (connector by client IP, or the authenticated user), the sender domain's
//! classification, MAIL (`check_mail`), one RCPT (`check_rcpt`) and end of DATA (`record`).
//! Each decision is timed on its own; the median and p99 are printed.
//!
//! With `--sqlite PATH` the same data is written once to a SQLite store (kept for later runs)
//! and the load time is measured the way `relayward serve` loads: read from the store, build.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use relayward_guard::{Guard, Hint, Limits, MessageFacts, Origin};
use relayward_store::{
    Connector, DirectoryData, Domain, DomainKind, SqliteStore, Store, Tenant, TenantData, User,
};
use relayward_tenancy::{Directory, TenantKey, domain_of, domain_part};

#[derive(Parser)]
struct Cli {
    #[arg(long, default_value_t = 1_000_000)]
    tenants: u32,
    #[arg(long, default_value_t = 3)]
    domains_per_tenant: u32,
    #[arg(long, default_value_t = 1_000_000)]
    decisions: u32,
    /// Untimed decisions first, so most senders' counters exist (a relay in its steady state)
    /// rather than each timed decision being a tenant's first message of the day.
    #[arg(long, default_value_t = 0)]
    warmup: u32,
    /// Also time each part of a decision (sender lookups, MAIL, recipient lookup, RCPT, end of
    /// DATA) and print their medians; the clock reads add to the decision's own figure.
    #[arg(long)]
    stages: bool,
    /// Which tenants send: all of them evenly (most counters cold), 1,000 busy ones, or all of
    /// them with a Zipf-like skew (the k-th busiest sends about 1/k as much as the busiest, the
    /// usual shape of a relay's traffic).
    #[arg(long, value_enum, default_value_t = Traffic::Spread)]
    traffic: Traffic,
    /// Also write the data to this SQLite file (once) and time loading from it.
    #[arg(long)]
    sqlite: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Traffic {
    Spread,
    Hot,
    Zipf,
}

/// The system allocator, counting live heap bytes, so the directory's own size is read apart
/// from memory the allocator keeps after the generated input is freed.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Allocations made (`alloc` and `realloc` calls), to count them per decision.
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

#[allow(unsafe_code)]
// SAFETY: every call is passed unchanged to `System`; the counter is only arithmetic.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn live() -> u64 {
    LIVE.load(Ordering::Relaxed) as u64
}

/// Resident memory of this process, bytes (Linux).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn tenant_name(i: u32) -> String {
    format!("tenant{i:07}")
}

fn domain_name(i: u32, k: u32) -> String {
    format!("t{i:07}-d{k}.example")
}

/// The connector's client address for tenant `i`: the first half of the tenants have one host
/// (/32) under 10.0.0.0/8, the rest a /24 from 11.0.0.0 on, so lookups cross two prefix lengths.
fn connector_ip(i: u32, half: u32) -> (Ipv4Addr, u8) {
    if i < half {
        (Ipv4Addr::from(0x0a00_0000 + i), 32)
    } else {
        (Ipv4Addr::from(0x0b00_0000 + ((i - half) << 8)), 24)
    }
}

fn tenant_data(i: u32, domains: u32, half: u32) -> TenantData {
    let name = tenant_name(i);
    let (ip, len) = connector_ip(i, half);
    TenantData {
        tenant: Some(Tenant {
            name: name.clone(),
            language: "en".into(),
            subscription_ends: None,
            admins: vec![format!("admin@{}", domain_name(i, 0))],
            managed_by_config: false,
            forwarding: Default::default(),
            forwarding_domains: Vec::new(),
        }),
        domains: (0..domains)
            .map(|k| Domain {
                tenant: name.clone(),
                name: domain_name(i, k),
                kind: DomainKind::Authoritative,
                match_subdomains: false,
                verified: true,
                verification_token: format!("rw-{i:x}-{k}"),
            })
            .collect(),
        connectors: vec![Connector {
            tenant: name.clone(),
            name: "onprem".into(),
            ips: vec![format!("{ip}/{len}")],
            cert_name: None,
            require_tls: false,
            relay_unregistered: false,
            created_by: "admin".into(),
            created_at: 1_600_000_000,
            reviewed: true,
        }],
        users: vec![User {
            tenant: name,
            address: format!("user@{}", domain_name(i, 0)),
            aliases: Vec::new(),
            password_hash: None,
            forward_to: None,
            forward_only: false,
        }],
        routes: Vec::new(),
    }
}

fn generate(cli: &Cli) -> DirectoryData {
    let half = cli.tenants / 2;
    let mut d = DirectoryData::default();
    for i in 0..cli.tenants {
        let t = tenant_data(i, cli.domains_per_tenant, half);
        d.tenants.extend(t.tenant);
        d.domains.extend(t.domains);
        d.connectors.extend(t.connectors);
        d.users.extend(t.users);
    }
    d
}

/// xorshift64*: a fixed, dependency-free sequence so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Default)]
struct Outcomes {
    stages: Stages,
    accepted: u64,
    refused: std::collections::BTreeMap<String, u64>,
}

impl Outcomes {
    fn refuse(&mut self, code: u16, text: &str) {
        let status = text.split_whitespace().next().unwrap_or("");
        *self.refused.entry(format!("{code} {status}")).or_default() += 1;
    }
}

/// With `--stages`: how long each part of a decision took (each mark reads the clock, which
/// itself adds some tens of nanoseconds to the decision).
#[derive(Default)]
struct Stages {
    on: bool,
    last: Option<Instant>,
    times: [Vec<u64>; STAGES.len()],
}

const STAGES: [&str; 5] = [
    "sender: user and domain lookups, strings copied",
    "MAIL: check_mail",
    "recipient domain lookup",
    "RCPT: check_rcpt",
    "end of DATA: record",
];

impl Stages {
    fn start(&mut self) {
        if self.on {
            self.last = Some(Instant::now());
        }
    }

    fn mark(&mut self, stage: usize) {
        if let Some(last) = self.last {
            let now = Instant::now();
            self.times[stage].push((now - last).as_nanos() as u64);
            self.last = Some(now);
        }
    }
}

/// One message as a client offers it.
#[derive(Clone, Copy)]
struct Attempt<'a> {
    by_user: bool,
    client: IpAddr,
    sender: &'a str,
    rcpt: &'a str,
    id: &'a str,
    now: i64,
}

/// Who the client is, found once per connection: the connector its address belongs to, or the
/// user it authenticated as (`connect` and `authenticate` in `crates/relayward/src/policy.rs`),
/// with the facts the relay keeps for the connection's messages (`SenderFacts::of` in
/// `crates/relayward/src/guard.rs`: the tenant's key, the connector's age, the subscription).
struct Attribution {
    /// The client's address as text and the names, made once per connection and shared with
    /// each transaction, as the relay does.
    client_ip: Arc<str>,
    tenant: Arc<str>,
    connector: Option<Arc<str>>,
    auth_user: Option<Arc<str>>,
    key: Option<TenantKey>,
    connector_created_at: Option<i64>,
    subscription_end: Option<i64>,
}

fn attribute(dir: &Directory, m: &Attempt) -> Option<Attribution> {
    let (tenant, connector, auth_user) = if m.by_user {
        let u = dir.user(m.sender)?;
        (u.tenant, None, Some(u.address))
    } else {
        let c = dir.connector_for_ip(m.client)?;
        (c.tenant, Some(c.name), None)
    };
    let key = dir.tenant_key(tenant);
    let connector_created_at = key.zip(connector).and_then(|(k, c)| {
        dir.connector_by_key(k, c)
            .filter(|c| !c.by_configuration)
            .map(|c| c.created_at * 1000)
    });
    let subscription_end = key
        .and_then(|k| dir.tenant_by_key(k))
        .and_then(|t| t.subscription_ends)
        .map(|_| i64::MAX);
    Some(Attribution {
        client_ip: Arc::from(m.client.to_string()),
        tenant: Arc::from(tenant),
        connector: connector.map(Arc::from),
        auth_user: auth_user.map(Arc::from),
        key,
        connector_created_at,
        subscription_end,
    })
}

/// One message's guard decision, as the SMTP policy makes it per message (`mail`, `rcpt`,
/// `data` in `crates/relayward/src/policy.rs`, `OwnedOrigin::new` in `guard.rs`, including the
/// strings the relay copies into the transaction): who the sender is, whether its domain is
/// registered, MAIL, one RCPT and end of DATA.
fn decide(dir: &Directory, guard: &mut Guard, a: &Attribution, m: &Attempt, out: &mut Outcomes) {
    out.stages.start();
    let hint = a.key.map(|k| Hint {
        generation: dir.generation(),
        index: k.index(),
    });
    // As `mail` in policy.rs: the directory's lookups started, the counters warmed while they
    // are under way, then both lookups made.
    let sender_domain = domain_of(m.sender);
    let probe = a.key.map(|k| {
        let address = a.auth_user.is_none().then_some(m.sender);
        (k, dir.probe_sender(k, &sender_domain, address))
    });
    guard.warm(&a.tenant, hint, a.connector.as_deref());
    let accepted = |domain: &str| a.key.is_some_and(|k| dir.is_accepted_by_key(k, domain));
    let (registered, user) = match &probe {
        Some((k, probe)) => {
            let (registered, found) = dir.sender_of(*k, probe);
            (
                registered,
                a.auth_user.clone().or_else(|| found.map(Arc::from)),
            )
        }
        None => (false, a.auth_user.clone()),
    };
    let client_ip = Arc::clone(&a.client_ip);
    let tenant = Arc::clone(&a.tenant);
    let connector = a.connector.clone();
    let origin = Origin {
        tenant: &tenant,
        connector: connector.as_deref(),
        connector_created_at: a.connector_created_at,
        user: user.as_deref(),
        client_ip: &client_ip,
        registered,
        sender_domain: &sender_domain,
        subscription_end: a.subscription_end,
    };
    let now = m.now;
    out.stages.mark(0);
    let mail = guard.check_mail(&origin, now);
    out.stages.mark(1);
    if let Err(r) = mail {
        return out.refuse(r.code, r.text);
    }
    let external = !accepted(domain_part(m.rcpt));
    out.stages.mark(2);
    let rcpt = guard.check_rcpt(&origin, 0, 0, external, now);
    out.stages.mark(3);
    if let Err(r) = rcpt {
        return out.refuse(r.code, r.text);
    }
    let rcpt_hash = [relayward_guard::signals::key_hash(m.rcpt)];
    let facts = MessageFacts {
        id: m.id,
        recipients: 1,
        external: u32::from(external),
        suspicious: false,
        recipient_hashes: &rcpt_hash,
    };
    let recorded = guard.record(&origin, &facts, now);
    out.stages.mark(4);
    match recorded {
        Ok(()) => out.accepted += 1,
        Err(r) => out.refuse(r.code, r.text),
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn load_from_sqlite(cli: &Cli, path: &std::path::Path) -> Result<(Directory, f64)> {
    let fresh = !path.exists();
    let store = SqliteStore::open(path).context("opening the SQLite store")?;
    if fresh {
        let t = Instant::now();
        let half = cli.tenants / 2;
        for i in 0..cli.tenants {
            store
                .provision(&tenant_data(i, cli.domains_per_tenant, half))
                .await?;
            if i > 0 && i % 100_000 == 0 {
                eprintln!("  written {i} tenants to {}", path.display());
            }
        }
        eprintln!(
            "wrote {} tenants to {} in {:.1} s (once; kept for later runs)",
            cli.tenants,
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let data = store.directory().await?;
    let read = t.elapsed().as_secs_f64();
    let dir = Directory::build(data);
    let all = t.elapsed().as_secs_f64();
    eprintln!(
        "  read from SQLite {read:.2} s, directory built in {:.2} s",
        all - read
    );
    Ok((dir, all))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let before = rss();
    let heap_before = live();

    let (dir, load_s, source) = match &cli.sqlite {
        Some(path) => {
            let (dir, s) = load_from_sqlite(&cli, path).await?;
            (dir, s, "read from SQLite and built")
        }
        None => {
            let data = generate(&cli);
            let t = Instant::now();
            let dir = Directory::build(data);
            (dir, t.elapsed().as_secs_f64(), "built from generated data")
        }
    };
    // The directory frees its input on a thread of its own once it is built: wait until the
    // live heap stops falling, so the figure is the directory's alone (bounded: 30 s).
    let mut heap_loaded = live();
    for _ in 0..150 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        let now = live();
        if now == heap_loaded {
            break;
        }
        heap_loaded = now;
    }
    let loaded = rss();
    if dir.tenant_count() as u32 != cli.tenants {
        anyhow::bail!(
            "the directory holds {} tenants, expected {} (a SQLite file from another run?)",
            dir.tenant_count(),
            cli.tenants
        );
    }
    println!(
        "directory: {} tenants, {} accepted domains, {} connectors, {} users",
        cli.tenants,
        u64::from(cli.tenants) * u64::from(cli.domains_per_tenant),
        cli.tenants,
        cli.tenants
    );
    println!("load: {load_s:.2} s ({source})");
    println!(
        "memory: directory {:.0} MiB of live heap; process {:.0} MiB resident after load ({:.0} MiB before; the rest is the freed input the allocator keeps)",
        mib(heap_loaded - heap_before),
        mib(loaded),
        mib(before)
    );

    let mut guard = Guard::new(Limits::default());
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let half = cli.tenants / 2;
    let busy = cli.tenants.min(1_000);
    let mut times = Vec::with_capacity(cli.decisions as usize);
    let mut attribution_times = Vec::with_capacity(cli.decisions as usize);
    let mut out = Outcomes::default();
    out.stages.on = cli.stages;
    // Simulated time: one message every 2 ms, so a million decisions span about 33 minutes
    // and the minute and hour windows roll while the benchmark runs.
    let start = 1_790_000_000_000_i64;
    let mut allocs_before = 0;
    for n in 0..cli.warmup + cli.decisions {
        let r = rng.next();
        let i = match cli.traffic {
            Traffic::Spread => (r % u64::from(cli.tenants)) as u32,
            Traffic::Hot => (r % u64::from(busy)) as u32,
            Traffic::Zipf => {
                // rank = N^u for u uniform in [0, 1): P(rank <= k) = ln k / ln N, Zipf with
                // s = 1. Ranks map to tenants through a fixed shuffle (7919 is prime to N).
                let n = f64::from(cli.tenants);
                let u = (r >> 11) as f64 / (1u64 << 53) as f64;
                let rank = (n.powf(u) as u64).saturating_sub(1);
                ((rank * 7919 + 13) % u64::from(cli.tenants)) as u32
            }
        };
        let by_user = (r >> 32) % 10 < 3;
        // One in ten connector messages has a sender domain the tenant never registered.
        let sender = if !by_user && (r >> 40).is_multiple_of(10) {
            format!("someone@unregistered{}.example", (r >> 48) % 50)
        } else {
            format!("user@{}", domain_name(i, 0))
        };
        let (net, len) = connector_ip(i, half);
        let client = if len == 32 {
            IpAddr::V4(net)
        } else {
            IpAddr::V4(Ipv4Addr::from(u32::from(net) + 1 + (r as u32 & 0x7f)))
        };
        let rcpt = format!("friend{}@remote{}.example", r % 1000, (r >> 8) % 5000);
        let id = format!("bench{n:08x}");
        let now = start + i64::from(n) * 2;

        let attempt = Attempt {
            by_user,
            client,
            sender: &sender,
            rcpt: &rcpt,
            id: &id,
            now,
        };
        let timed = n >= cli.warmup;
        if n == cli.warmup {
            allocs_before = ALLOCS.load(Ordering::Relaxed);
        }
        let t = Instant::now();
        let Some(a) = attribute(&dir, &attempt) else {
            out.refuse(
                550,
                "5.7.64 (no connector or user: the benchmark's data is wrong)",
            );
            continue;
        };
        let t1 = Instant::now();
        if timed {
            decide(&dir, &mut guard, &a, &attempt, &mut out);
            times.push(t1.elapsed().as_nanos() as u64);
            attribution_times.push((t1 - t).as_nanos() as u64);
        } else {
            decide(&dir, &mut guard, &a, &attempt, &mut Outcomes::default());
        }

        if n % 10_000 == 0 {
            // The relay's background task drains these every half second.
            guard.take_events();
        }
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - allocs_before;
    let after = rss();
    let heap_after = live();
    times.sort_unstable();
    attribution_times.sort_unstable();
    let traffic = match cli.traffic {
        Traffic::Spread => format!("spread over all {} tenants", cli.tenants),
        Traffic::Hot => format!("from {busy} busy tenants"),
        Traffic::Zipf => format!("Zipf-skewed over all {} tenants", cli.tenants),
    };
    println!(
        "decisions: {} timed after {} untimed ({traffic})",
        cli.decisions, cli.warmup
    );
    for (name, times) in STAGES.iter().zip(out.stages.times.iter_mut()) {
        if !times.is_empty() {
            times.sort_unstable();
            println!(
                "  stage {name}: median {} ns, p90 {} ns",
                percentile(times, 0.5),
                percentile(times, 0.9)
            );
        }
    }
    println!(
        "decision cost per message: median {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        percentile(&times, 0.999),
        times.last().copied().unwrap_or(0)
    );
    println!(
        "allocations per decision (with the benchmark's own strings for the message): {:.1}",
        allocs as f64 / f64::from(cli.decisions.max(1))
    );
    println!(
        "attribution (once per connection: connector by client IP, or the AUTH user): median {} ns, p99 {} ns",
        percentile(&attribution_times, 0.5),
        percentile(&attribution_times, 0.99)
    );
    println!("outcomes: {} accepted", out.accepted);
    for (reply, n) in &out.refused {
        println!("          {n} refused with {reply}");
    }
    println!(
        "memory: guard counters for {} tenants that sent: {:.0} MiB of live heap ({:.0} bytes each); process {:.0} MiB resident",
        guard.counters().len(),
        mib(heap_after.saturating_sub(heap_loaded)),
        heap_after.saturating_sub(heap_loaded) as f64 / guard.counters().len().max(1) as f64,
        mib(after)
    );
    Ok(())
}
