//! Cluster mode: three relay processes on 127.0.0.2, .3 and .4 sharing one PostgreSQL database
//! (a database of its own per test). A restriction one node starts is enforced by the others
//! within 2 s, a release made through a third reaches the first two as fast, and a webhook
//! event is delivered once, not once per node.

use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::*;

const R750: &str =
    "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains";
const CLEAN: &str = "Subject: minutes\r\n\r\nThe minutes of today's meeting.\r\n";

const R705: &str = "550 5.7.705 Access denied, tenant has exceeded threshold";
const GTUBE: &str = "Subject: offer\r\n\r\nXJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X\r\n";

/// Tenant fabrikam, whose user carol signs in with `right-password`.
const FABRIKAM_CAROL: &str = r#"[[tenants]]
name = "fabrikam"
domains = [ { name = "fabrikam.example", kind = "authoritative", verified = true } ]
users = [ { address = "carol@fabrikam.example", password = "right-password" } ]"#;

/// The documented age of a node's view of the other nodes' counts: about 2 s (a save each
/// half second, a read each second), with a margin for a loaded machine.
const COUNTS_SPREAD: Duration = Duration::from_millis(3000);

/// Tenant contoso, whose on-premises server (127.0.0.1) may relay for other domains, with
/// `limits`; everything goes to `rx`.
pub(crate) fn contoso(rx: std::net::SocketAddr, limits: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
[delivery]
smart_host = "{rx}"
retry_schedule = ["1s"]
expire_after = "1h"
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"], relay_unregistered = true }} ]
users = [ {{ address = "alice@contoso.example" }}, {{ address = "bob@contoso.example" }} ]
limits = {{ {limits} }}
"#
    )
}

/// The tenant's stored restrictions (through `node`'s command line).
fn restrictions(node: &Relay) -> Vec<Value> {
    node.cli(&["restrictions", "--tenant", "contoso", "--all", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A database for the test's cluster; `None` (with a loud message) without a server outside CI.
pub(crate) fn database() -> Option<relayward_store::testdb::TestDb> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(relayward_store::testdb::create())
}

/// Three nodes on one database, each with its own data directory (spool).
pub(crate) fn cluster(url: &str, extra: &str) -> Vec<Relay> {
    ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| {
            Relay::start_on(
                ip,
                &format!("database_url = \"{url}\"\nnode_name = \"node-{ip}\""),
                extra,
            )
        })
        .collect()
}

fn loopback() -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, 1]))
}

/// The reply to MAIL FROM `from` on `relay`, the transaction reset after it (nothing is sent,
/// so nothing is counted).
fn mail_from(relay: &Relay, from: &str) -> String {
    let mut c = Client::connect(relay.relay, loopback());
    c.cmd("EHLO onprem.contoso.example");
    let r = c.cmd(&format!("MAIL FROM:<{from}>"));
    c.cmd("QUIT");
    r.text()
}

/// How long a restriction or its release may take to hold on the other nodes here. README
/// says 2 s (a notification, else the poll each second); under the whole suite on two cores,
/// beside three relays and PostgreSQL, a node took 3.3 s once (CI's run of dae4098), so the
/// tests allow more: what they check is that the other nodes hold it by themselves (the time
/// itself is measured by `bench/propagation.py`).
const REACHES_EVERY_NODE: Duration = Duration::from_secs(5);

/// How long until `check` holds on `relay` (polled every 50 ms for at most 10 s).
fn time_until(relay: &Relay, check: impl Fn(&Relay) -> bool) -> Duration {
    let start = Instant::now();
    wait_for(Duration::from_secs(10), || check(relay).then_some(()))
        .unwrap_or_else(|| panic!("not within 10 s on {}", relay.relay));
    start.elapsed()
}

/// Sends each node its messages from alice, one transaction per recipient.
pub(crate) fn send_deferred(to: &[(&Relay, [&str; 2])]) {
    for (node, rcpts) in to {
        let mut c = Client::connect(node.relay, loopback());
        assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
        for r in rcpts {
            let reply = c.transaction("alice@contoso.example", &[r], CLEAN);
            assert_eq!(reply.code, 250, "{reply:?}");
        }
        c.cmd("QUIT");
    }
}

/// An HTTP receiver that keeps each request's delivery id and answers 200 after 1.5 s (while
/// one node waits for the answer, the others poll for due deliveries); it stops by itself after
/// two minutes.
fn hook_receiver() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(120);
        while Instant::now() < end {
            let Ok((s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let log = log.clone();
            std::thread::spawn(move || answer(s, &log));
        }
    });
    (url, seen)
}

/// Reads one request, logs its delivery id, answers 200 after 1.5 s.
fn answer(mut s: std::net::TcpStream, log: &Mutex<Vec<String>>) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= len {
                let id = head
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Relayward-Delivery: "))
                    .unwrap_or("")
                    .to_string();
                log.lock().expect("lock").push(id);
                break;
            }
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    let _ = write!(
        s,
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

#[test]
fn a_restriction_started_on_one_node_holds_on_all_and_a_release_anywhere_lifts_it() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let (hook_url, hooks) = hook_receiver();
    let nodes = cluster(
        &db.url,
        &contoso(
            rx.addr,
            "unregistered_allowance_per_day = 5",
            "[webhooks]\nallow_private_addresses = true",
        ),
    );
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    // A webhook made through one node's API is every node's.
    let admin = c.token(&["--name", "ci", "--role", "admin", "--tenant", "contoso"]);
    let (status, hook) = b.api(
        "POST",
        "/api/v1/tenants/contoso/webhooks",
        Some(&admin),
        Some(&format!(
            r#"{{"url": "{hook_url}", "events": ["restriction"]}}"#
        )),
    );
    assert_eq!(status, 201, "{hook}");

    // Node A counts the tenant's mail from unregistered domains and restricts it.
    let mut client = Client::connect(a.relay, loopback());
    client.cmd("EHLO onprem.contoso.example");
    for i in 0..5 {
        let r = client.transaction(
            "billing@fabrikam.example",
            &["victim@remote.example"],
            CLEAN,
        );
        assert_eq!(r.code, 250, "message {i} is within the allowance: {r:?}");
    }
    let r = client.transaction(
        "billing@fabrikam.example",
        &["victim@remote.example"],
        CLEAN,
    );
    assert_eq!(r.text(), R750, "the sixth, on node A");
    let restricted = |n: &Relay| mail_from(n, "billing@fabrikam.example") == R750;
    for n in [b, c] {
        let took = time_until(n, restricted);
        assert!(
            took <= REACHES_EVERY_NODE,
            "{} enforced it after {took:?}",
            n.relay
        );
    }
    // The tenant's own domain still flows everywhere.
    for n in [a, b, c] {
        assert!(
            mail_from(n, "alice@contoso.example").starts_with("250"),
            "{}",
            n.relay
        );
    }

    // An operator releases it through node C; A and B let the tenant's mail through again.
    let list = restrictions(c);
    assert_eq!(list.len(), 1, "one restriction, not one per node: {list:?}");
    let id = list[0]["id"].as_str().expect("id").to_string();
    c.cli(&["restriction", "release", &id, "--note", "server patched"]);
    let released = |n: &Relay| mail_from(n, "billing@fabrikam.example").starts_with("250");
    for n in [a, b] {
        let took = time_until(n, released);
        assert!(
            took <= REACHES_EVERY_NODE,
            "{} released it after {took:?}",
            n.relay
        );
    }

    // Two events (the start and the release), each delivered once by one of the three nodes.
    let delivered = wait_for(Duration::from_secs(20), || {
        let seen = hooks.lock().expect("lock").clone();
        (seen.len() >= 2).then_some(seen)
    })
    .expect("the webhook events are delivered");
    std::thread::sleep(Duration::from_secs(3));
    let mut seen = hooks.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        2,
        "each event once: {delivered:?} then {seen:?}"
    );
    seen.dedup();
    assert_eq!(seen.len(), 2, "two distinct deliveries: {seen:?}");
}

#[test]
fn mail_from_unregistered_domains_spread_over_the_nodes_meets_one_allowance() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(
        &db.url,
        &contoso(rx.addr, "unregistered_allowance_per_day = 6", ""),
    );
    // Two messages through each node: six in all, the whole allowance.
    for n in &nodes {
        let mut client = Client::connect(n.relay, loopback());
        client.cmd("EHLO onprem.contoso.example");
        for i in 0..2 {
            let r = client.transaction(
                "billing@fabrikam.example",
                &["victim@remote.example"],
                CLEAN,
            );
            assert_eq!(r.code, 250, "message {i} through {}: {r:?}", n.relay);
        }
    }
    // Once the counts have spread, every node knows the allowance is used up (each saw only
    // two of the six itself).
    std::thread::sleep(COUNTS_SPREAD);
    for n in &nodes {
        assert_eq!(
            mail_from(n, "billing@fabrikam.example"),
            R750,
            "{}",
            n.relay
        );
    }
    // Nodes that found it at the same moment store one restriction, not one each.
    std::thread::sleep(Duration::from_secs(1));
    let list: Vec<Value> = restrictions(&nodes[0])
        .into_iter()
        .filter(|r| r["key"]["kind"] == "tenant_unregistered")
        .collect();
    assert_eq!(list.len(), 1, "{list:?}");
}

#[test]
fn suspicious_mail_spread_over_the_nodes_meets_one_tenant_threshold() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(
        &db.url,
        &contoso(
            rx.addr,
            "tenant_suspicious_per_day = 5, user_suspicious_per_day = 100",
            "",
        ),
    );
    let users = ["alice@contoso.example", "bob@contoso.example"];
    // Two suspicious messages through A, two through B: four, below the threshold of five.
    for n in &nodes[..2] {
        let mut client = Client::connect(n.relay, loopback());
        client.cmd("EHLO onprem.contoso.example");
        for (i, user) in users.iter().enumerate() {
            let r = client.transaction(user, &["target@remote.example"], GTUBE);
            assert_eq!(
                r.code, 250,
                "suspicious message {i} through {}: {r:?}",
                n.relay
            );
        }
        std::thread::sleep(COUNTS_SPREAD);
    }
    // The fifth, through C, reaches the tenant's threshold as it would on one node.
    let mut client = Client::connect(nodes[2].relay, loopback());
    client.cmd("EHLO onprem.contoso.example");
    let r = client.transaction("alice@contoso.example", &["target@remote.example"], GTUBE);
    assert_eq!(r.text(), R705, "the fifth suspicious message, on node C");
    for n in &nodes[..2] {
        let took = time_until(n, |n| mail_from(n, "bob@contoso.example") == R705);
        assert!(
            took <= REACHES_EVERY_NODE,
            "{} enforced it after {took:?}",
            n.relay
        );
    }
    let list = restrictions(&nodes[0]);
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["reason"], "tenant_suspicious");
}

#[test]
fn a_node_killed_under_load_delivers_every_acknowledged_message_after_its_restart() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    // Node B delivers to a port where nothing listens until after the crash, so acknowledged
    // mail is still in its own spool when it dies.
    let parked = TcpListener::bind("127.0.0.1:0").expect("free port");
    let parked_addr = parked.local_addr().expect("addr");
    drop(parked);
    let mut nodes = cluster(&db.url, &contoso(parked_addr, "", ""));
    crate::crash::kill_under_load_and_restart(&mut nodes[1], parked_addr, &rx);
}

/// A TCP proxy between the nodes and PostgreSQL that the test cuts and restores: cut, it ends
/// every connection it carries and closes new ones at once. It stops by itself after five
/// minutes.
struct Proxy {
    addr: std::net::SocketAddr,
    up: Arc<std::sync::atomic::AtomicBool>,
    carried: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Proxy {
    fn start(upstream: String) -> Proxy {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let carried: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (on, held) = (up.clone(), carried.clone());
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(300);
            while Instant::now() < end {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                if !on.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                let _ = client.set_nonblocking(false);
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let pipes = [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ];
                for (from, to) in pipes {
                    if let (Ok(mut from), Ok(mut to)) = (from, to) {
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut from, &mut to);
                            let _ = to.shutdown(std::net::Shutdown::Both);
                        });
                    }
                }
                let mut held = held.lock().expect("lock");
                held.push(client);
                held.push(server);
            }
        });
        Proxy { addr, up, carried }
    }

    fn cut(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        for s in self.carried.lock().expect("lock").drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// `url` with its host and port replaced by the proxy's; and the address it replaced.
    fn route(&self, url: &str) -> (String, String) {
        let (head, rest) = url.split_once('@').expect("user@host");
        let (upstream, db) = rest.split_once('/').expect("host/db");
        (format!("{head}@{}/{db}", self.addr), upstream.to_string())
    }
}

/// The tenant's count of messages in 24 hours, summed over the nodes (through `node`'s API).
fn messages_counted(node: &Relay, token: &str) -> Option<u64> {
    let (status, body) = node.api("GET", "/api/v1/tenants/contoso/counters", Some(token), None);
    if status != 200 {
        return None;
    }
    body["counters"].as_array()?.iter().find_map(|c| {
        (c["subject"] == "tenant" && c["counter"] == "messages_24h")
            .then(|| c["value"].as_u64())
            .flatten()
    })
}

#[test]
fn with_the_database_away_mail_flows_changes_wait_and_the_counts_come_out_right() {
    let Some(db) = database() else { return };
    // The proxy needs the database's address before the nodes start.
    let probe = Proxy::start(String::new());
    let (_, upstream) = probe.route(&db.url);
    let proxy = Proxy::start(upstream);
    let (url, _) = proxy.route(&db.url);
    let rx = Receiver::start(false);
    let nodes = cluster(&url, &contoso(rx.addr, "", FABRIKAM_CAROL));
    let operator = nodes[0].token(&["--name", "ops", "--role", "operator"]);
    let send = |n: &Relay, count: usize, tag: &str| {
        let mut client = Client::connect(n.relay, loopback());
        client.cmd("EHLO onprem.contoso.example");
        for i in 0..count {
            let r = client.transaction(
                "reports@contoso.example",
                &["partner@remote.example"],
                &format!("Subject: {tag} {i}\r\n\r\nreport\r\n"),
            );
            assert_eq!(r.code, 250, "{tag} {i} through {}: {r:?}", n.relay);
        }
    };
    for n in &nodes {
        send(n, 2, "before");
    }
    proxy.cut();
    // Mail keeps flowing on what each node knows.
    for n in &nodes {
        send(n, 3, "during");
    }
    rx.wait(15, Duration::from_secs(30));
    let health = nodes[0].http_get("/healthz");
    assert!(health.contains("degraded"), "{health}");
    // What waits for the database, in the metrics.
    let waiting = wait_for(Duration::from_secs(10), || {
        let counters = nodes[0].metric("relayward_counters_unsaved_tenants");
        let trace = nodes[0].metric("relayward_trace_waiting");
        (counters >= 1 && trace >= 1).then_some((counters, trace))
    });
    assert!(
        waiting.is_some(),
        "counters and trace events wait for the database"
    );
    // Changes wait for the database: refused with 503 and a clear reason.
    let (status, body) = nodes[1].api(
        "POST",
        "/api/v1/tenants",
        Some(&operator),
        Some(r#"{"name": "northwind"}"#),
    );
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains("unreachable"), "{body}");
    // Password guesses meet this node's own count while the cluster's cannot be read, and
    // the lockout is alerted all the same.
    for i in 0..5 {
        let (_, r) = submission_auth(&nodes[0], "carol@fabrikam.example", &format!("guess-{i}"));
        assert!(r.text().starts_with("535 "), "{}", r.text());
    }
    let (_, r) = submission_auth(&nodes[0], "carol@fabrikam.example", "right-password");
    assert!(r.text().starts_with("454 4.7.0"), "{}", r.text());

    proxy.restore();
    wait_for(Duration::from_secs(30), || {
        nodes[0]
            .http_get("/healthz")
            .ends_with("\r\n\r\nok\n")
            .then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the node is healthy again: {}",
            nodes[0].http_get("/healthz")
        )
    });
    // What the nodes counted while the database was away is saved once: 15 messages.
    let counted = wait_for(Duration::from_secs(20), || {
        messages_counted(&nodes[2], &operator).filter(|n| *n >= 15)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(counted, Some(15));
    assert_eq!(
        messages_counted(&nodes[2], &operator),
        Some(15),
        "nothing counted twice"
    );
    let drained = wait_for(Duration::from_secs(10), || {
        (nodes[0].metric("relayward_counters_unsaved_tenants") == 0
            && nodes[0].metric("relayward_trace_waiting") == 0)
            .then_some(())
    });
    assert!(drained.is_some(), "what waited is written");
    // The message trace has every message, those of the outage included.
    let traced = nodes[1]
        .cli(&["trace", "--tenant", "contoso", "--limit", "100", "--json"])
        .lines()
        .filter(|l| l.contains("reports@contoso.example"))
        .count();
    assert_eq!(traced, 15);
    let alerted = wait_for(Duration::from_secs(20), || {
        let out = nodes[1].cli(&["alerts", "--tenant", "fabrikam"]);
        out.contains("wrong passwords for carol@fabrikam.example")
            .then_some(())
    });
    assert!(
        alerted.is_some(),
        "the lockout made while the database was away is alerted"
    );
}

#[test]
fn one_address_gets_its_sign_in_attempts_once_whichever_nodes_it_asks() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(&db.url, &contoso(rx.addr, "", ""));
    // A new address each time (five failures for one address lock it, as for an account).
    let body = |i: usize| {
        format!(
            r#"{{"email": "nobody{i}@contoso.example", "password": "guess", "totp": "000000"}}"#
        )
    };
    // Twenty attempts per address per ten minutes: seven, seven and six through the three nodes.
    for i in 0..20 {
        let (status, answer) = nodes[i % 3].api("POST", "/api/v1/login", None, Some(&body(i)));
        assert_eq!(status, 401, "attempt {i}: {answer}");
    }
    for (i, n) in nodes.iter().enumerate() {
        let (status, answer) = n.api("POST", "/api/v1/login", None, Some(&body(100 + i)));
        assert_eq!(status, 429, "{}: {answer}", n.http);
        assert!(
            answer["error"]
                .as_str()
                .unwrap_or("")
                .contains("too many sign-in attempts from this address"),
            "{answer}"
        );
    }
}

#[test]
fn a_node_that_never_comes_back_has_its_spool_adopted_by_a_running_one() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let parked = TcpListener::bind("127.0.0.1:0").expect("free port");
    let parked_addr = parked.local_addr().expect("addr");
    drop(parked);
    let storage = |ip: &str| format!("database_url = \"{}\"\nnode_name = \"node-{ip}\"", db.url);
    // Node B holds its mail (nothing listens where it delivers); node C delivers to `rx`.
    let mut b = Relay::start_on(
        "127.0.0.3",
        &storage("127.0.0.3"),
        &contoso(parked_addr, "", ""),
    );
    let c = Relay::start_on(
        "127.0.0.4",
        &storage("127.0.0.4"),
        &contoso(rx.addr, "", ""),
    );
    let acked = crate::crash::load_then_kill(&mut b);
    let spool = b.dir.path().join("data/spool");
    // Its spool cannot be adopted while a node runs on it...
    let own = c.dir.path().join("data/spool");
    let (ok, out) = c.cli_status(&["queue", "adopt", &own.display().to_string()]);
    assert!(!ok, "a node's own spool: {out}");
    // ...and is, once B is gone: C delivers everything B acknowledged.
    let out = c.cli(&["queue", "adopt", &spool.display().to_string()]);
    assert!(out.starts_with("adopted "), "{out}");
    crate::crash::all_delivered(&rx, &acked);
    // Adopted messages are finished in B's spool: adopting it again moves nothing.
    let again = c.cli(&["queue", "adopt", &spool.display().to_string()]);
    assert!(again.starts_with("adopted 0 message(s)"), "{again}");
}

#[test]
fn a_lapsed_subscription_restricts_once_for_the_whole_cluster() {
    let Some(db) = database() else { return };
    let (hook_url, hooks) = hook_receiver();
    let nodes = cluster(
        &db.url,
        "[webhooks]\nallow_private_addresses = true\nretry_schedule = [\"1s\"]",
    );
    nodes[0].cli(&["tenant", "add", "northwind"]);
    let admin = nodes[0].token(&["--name", "ci", "--role", "admin", "--tenant", "northwind"]);
    let (status, hook) = nodes[0].api(
        "POST",
        "/api/v1/tenants/northwind/webhooks",
        Some(&admin),
        Some(&format!(
            r#"{{"url": "{hook_url}", "events": ["restriction", "alert"]}}"#
        )),
    );
    assert_eq!(status, 201, "{hook}");
    // Every node's guard looks at subscription dates; the lapse is stored, posted and alerted once.
    nodes[1].cli(&[
        "tenant",
        "subscription",
        "northwind",
        "--ends",
        "2020-01-31",
    ]);
    wait_for(Duration::from_secs(20), || {
        let l: Vec<Value> = nodes[2]
            .cli(&["restrictions", "--tenant", "northwind", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        (!l.is_empty()).then_some(l)
    })
    .expect("the lapse restricts the tenant");
    std::thread::sleep(Duration::from_secs(4));
    let list: Vec<Value> = nodes[2]
        .cli(&["restrictions", "--tenant", "northwind", "--all", "--json"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(list.len(), 1, "one restriction for three nodes: {list:?}");
    let alerts = nodes[0].cli(&["alerts", "--tenant", "northwind"]);
    assert_eq!(alerts.matches("tenant_restricted").count(), 1, "{alerts}");
    let seen = hooks.lock().expect("lock").clone();
    assert_eq!(
        seen.len(),
        2,
        "one restriction event and one alert event: {seen:?}"
    );
}

#[test]
fn a_campaign_spread_over_the_nodes_is_bulk_at_the_one_node_count() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(
        &db.url,
        &contoso(rx.addr, "", "[scan]\nbulk_recipients = 5"),
    );
    let letter = "Subject: spring sale\r\n\r\nWe are pleased to offer you an exclusive discount on all our premium garden furniture this spring, with free delivery to your door and a two year guarantee on every chair.\r\n";
    // Two recipients through each of A and B, then two through C: six in all, past five.
    for (i, n) in nodes.iter().enumerate() {
        let mut client = Client::connect(n.relay, loopback());
        client.cmd("EHLO onprem.contoso.example");
        let rcpts = [
            format!("a{i}@remote.example"),
            format!("b{i}@remote.example"),
        ];
        let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
        let r = client.transaction("offers@contoso.example", &rcpts, letter);
        assert_eq!(r.code, 250, "{}: {r:?}", n.relay);
        std::thread::sleep(COUNTS_SPREAD);
    }
    let scanned = |recipient: &str| -> String {
        nodes[0].cli(&["trace", "--recipient", recipient, "--json"])
    };
    let first = scanned("a0@remote.example");
    assert!(first.contains("verdict clean"), "{first}");
    let last = wait_for(Duration::from_secs(10), || {
        let t = scanned("a2@remote.example");
        t.contains("verdict").then_some(t)
    })
    .expect("traced");
    assert!(
        last.contains("verdict bulk") && last.contains("reached 6 external recipient"),
        "the third node saw the campaign's six recipients: {last}"
    );
}

#[test]
fn a_backlog_spread_over_the_nodes_is_alerted_once_at_the_cluster_count() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(
        &db.url,
        &contoso(
            rx.addr,
            "",
            "[guard]\ndelayed_alert_messages = 4\ndelayed_alert_after = \"2s\"",
        ),
    );
    // Two messages wait on each of two nodes (the receiver defers defer-*): under the
    // threshold on either, at it for the tenant. (With a threshold of 3, a look that came
    // while one message was in a delivery round alerted at 3, and the alert named 3.)
    send_deferred(&[
        (
            &nodes[0],
            ["defer-a@remote.example", "defer-b@remote.example"],
        ),
        (
            &nodes[1],
            ["defer-c@remote.example", "defer-d@other.example"],
        ),
    ]);
    let alerts = wait_for(Duration::from_secs(20), || {
        let out = nodes[2].cli(&["alerts", "--tenant", "contoso"]);
        out.contains("messages_delayed").then_some(out)
    })
    .expect("a messages-delayed alert for the four messages on two nodes");
    assert!(
        alerts.contains("4 messages have waited in the queue for more than 2 s")
            && alerts.contains("most wait for remote.example (3), other.example (1)"),
        "{alerts}"
    );
    // Every node sees the backlog; the tenant is told once.
    std::thread::sleep(Duration::from_secs(5));
    let alerts = nodes[0].cli(&["alerts", "--tenant", "contoso"]);
    assert_eq!(alerts.matches("messages_delayed").count(), 1, "{alerts}");
}

/// Each node keeps its own queue, but an operator's action on a selection, made on any node,
/// is done on every node: a hold made through a node that has none of the mail holds it where
/// it waits, and a purge made through another reaches the rest; each node audits what it did,
/// for the operator, through the node asked.
#[test]
fn an_action_on_a_selection_made_on_one_node_is_done_on_every_node() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(&db.url, &contoso(rx.addr, "", ""));
    // The receiver defers defer-* for ever: two messages wait on each of two nodes, retried
    // every second.
    send_deferred(&[
        (
            &nodes[0],
            ["defer-a@remote.example", "defer-b@other.example"],
        ),
        (
            &nodes[1],
            ["defer-c@remote.example", "defer-d@other.example"],
        ),
    ]);
    // What waits on `node` for `domain` (a listing through any node shows every node's mail,
    // each message naming its node).
    let waiting = |node: &Relay, domain: &str| -> Vec<Value> {
        listed(node, &["--domain", domain])
            .into_iter()
            .filter(|m| m["node"] == node_name(node))
            .collect()
    };
    let shape_total = |node: &Relay| -> u64 { queued_on(node)[&node_name(node)] };
    for node in &nodes[..2] {
        wait_for(Duration::from_secs(10), || {
            (shape_total(node) == 2).then_some(())
        })
        .expect("two messages queued");
    }
    // A hold through the third node, which has none of the mail.
    let out = nodes[2].cli(&["queue", "hold", "--domain", "remote.example"]);
    assert!(
        out.contains(
            "hold done for 0 message(s) (on this node); passed on to the cluster's other nodes"
        ),
        "{out}"
    );
    for node in &nodes[..2] {
        let held = wait_for(REACHES_EVERY_NODE, || {
            let w = waiting(node, "remote.example");
            (w.len() == 1 && w[0]["held"] == true).then_some(w)
        });
        assert!(
            held.is_some(),
            "held on {}: {:?}",
            node.relay,
            waiting(node, "remote.example")
        );
        let others = waiting(node, "other.example");
        assert!(others.iter().all(|m| m["held"] == false), "{others:?}");
    }
    // An action on one message by its id (as the shared trace shows it), through a node that
    // does not hold it: the one that does, does it.
    let id = waiting(&nodes[1], "remote.example")[0]["id"]
        .as_str()
        .map(str::to_string)
        .expect("an id");
    let out = nodes[2].cli(&["queue", "release", &id]);
    assert!(
        out.contains(&format!(
            "{id}: not queued on this node; passed on to the cluster's other nodes"
        )),
        "{out}"
    );
    let released = wait_for(REACHES_EVERY_NODE, || {
        let w = waiting(&nodes[1], "remote.example");
        (w.len() == 1 && w[0]["held"] == false).then_some(())
    });
    assert!(
        released.is_some(),
        "{:?}",
        waiting(&nodes[1], "remote.example")
    );
    assert_eq!(waiting(&nodes[0], "remote.example")[0]["held"], true);
    // A purge through the first: its own message goes at once, the second node's within seconds.
    let out = nodes[0].cli(&["queue", "purge", "--domain", "other.example"]);
    assert!(
        out.contains("passed on to the cluster's other nodes"),
        "{out}"
    );
    let purged = wait_for(REACHES_EVERY_NODE, || {
        (shape_total(&nodes[1]) == 1).then_some(())
    });
    assert!(purged.is_some(), "{}", nodes[1].cli(&["queue", "list"]));
    assert_eq!(shape_total(&nodes[0]), 1);
    let audit = nodes[2].cli(&["audit", "--limit", "50"]);
    assert!(
        audit.contains("queue.hold") && audit.contains("(through node-127.0.0.4)"),
        "{audit}"
    );
    assert!(audit.contains("(through node-127.0.0.2)"), "{audit}");
    assert_eq!(rx.messages().len(), 0);
}

/// Sign-ins for an address without an account, spread over the nodes, lock it on every node at
/// the fifth failure, as the count in an account's row does: the lock does not tell who has an
/// account, however the attempts are spread.
#[test]
fn sign_ins_for_an_address_without_an_account_lock_it_on_every_node() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(&db.url, &contoso(rx.addr, "", ""));
    let body = r#"{"email": "nobody@provider.example", "password": "wrong", "totp": "000000"}"#;
    for i in 0..5 {
        let (status, json) = nodes[i % 3].api("POST", "/api/v1/login", None, Some(body));
        assert_eq!(status, 401, "attempt {}: {json}", i + 1);
    }
    for node in &nodes {
        let (status, json) = node.api("POST", "/api/v1/login", None, Some(body));
        assert_eq!(status, 429, "{}: {json}", node.relay);
        assert!(
            json["error"].as_str().unwrap_or("").contains("locked"),
            "{json}"
        );
    }
}

/// The name `cluster` gives a node.
pub(crate) fn node_name(node: &Relay) -> String {
    format!("node-{}", node.relay.ip())
}

/// How many messages each node holds (waiting or in a delivery round), from the shape asked
/// through `node`.
fn queued_on(node: &Relay) -> std::collections::BTreeMap<String, u64> {
    let shape: Value =
        serde_json::from_str(&node.cli(&["queue", "shape", "--json"])).unwrap_or(Value::Null);
    shape["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n["node"].as_str()?.to_string(), n["messages"].as_u64()?)))
        .collect()
}

/// `relayward queue list --json` through `node`, with `filter`.
fn listed(node: &Relay, filter: &[&str]) -> Vec<Value> {
    let mut args = vec!["queue", "list", "--json"];
    args.extend_from_slice(filter);
    node.cli(&args)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Each node keeps its own queue, but an operator looking through any node sees the cluster's:
/// the listing, one message and the shape hold every node's mail, each message names its
/// node, and each node's count is given. A node that stops answering is named, and the rest
/// is shown.
#[test]
fn a_look_at_the_queue_through_any_node_shows_every_nodes_mail() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let mut nodes = cluster(&db.url, &contoso(rx.addr, "", ""));
    send_deferred(&[
        (
            &nodes[0],
            ["defer-a@remote.example", "defer-b@other.example"],
        ),
        (
            &nodes[1],
            ["defer-c@remote.example", "defer-d@remote.example"],
        ),
    ]);
    // Through the third node, which holds none of it: each node's count, this node first.
    let counts = wait_for(Duration::from_secs(10), || {
        let counts = queued_on(&nodes[2]);
        (counts.values().sum::<u64>() == 4).then_some(counts)
    })
    .unwrap_or_else(|| panic!("{}", nodes[2].cli(&["queue", "shape"])));
    assert_eq!(
        counts.into_iter().collect::<Vec<_>>(),
        vec![
            ("node-127.0.0.2".to_string(), 2),
            ("node-127.0.0.3".to_string(), 2),
            ("node-127.0.0.4".to_string(), 0)
        ]
    );
    // A listing leaves out a message in a delivery round that instant (each is retried every
    // second here): look until all four wait at once.
    let (all, text) = wait_for(Duration::from_secs(20), || {
        let text = nodes[2].cli(&["queue", "list"]);
        let all = listed(&nodes[2], &[]);
        (all.len() == 4 && text.contains("-- 4 messages")).then_some((all, text))
    })
    .unwrap_or_else(|| panic!("{}", nodes[2].cli(&["queue", "list"])));
    let on = |node: &Relay| all.iter().filter(|m| m["node"] == node_name(node)).count();
    assert_eq!((on(&nodes[0]), on(&nodes[1]), on(&nodes[2])), (2, 2, 0));
    assert!(
        text.contains("-- 4 messages, 4 recipients pending")
            && text.contains(
                "-- queued on each node: node-127.0.0.4 0, node-127.0.0.2 2, node-127.0.0.3 2"
            )
            && text.contains("(queued on node-127.0.0.3)"),
        "{text}"
    );
    let shape: Value =
        serde_json::from_str(&nodes[2].cli(&["queue", "shape", "--json"])).expect("a shape");
    assert_eq!(shape["total"]["messages"], 4, "{shape}");
    assert!(
        shape["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 3 && n.iter().all(|n| n["answered"] == true)),
        "{shape}"
    );
    assert_eq!(shape["rows"][0]["domain"], "remote.example", "{shape}");
    assert_eq!(shape["rows"][0]["messages"], 3, "{shape}");
    assert_eq!(shape["rows"][1]["domain"], "other.example", "{shape}");
    assert_eq!(shape["rows"][1]["messages"], 1, "{shape}");
    // One message, asked of a node that does not hold it.
    let id = all
        .iter()
        .find(|m| m["node"] == node_name(&nodes[1]))
        .and_then(|m| m["id"].as_str())
        .expect("an id")
        .to_string();
    let shown = wait_for(Duration::from_secs(10), || {
        let (ok, out) = nodes[0].cli_status(&["queue", "show", &id]);
        ok.then_some(out)
    })
    .expect("shown");
    assert!(
        shown.contains(&id) && shown.contains("(queued on node-127.0.0.3)"),
        "{shown}"
    );
    // The API, the same.
    let operator = nodes[0].token(&["--name", "ops", "--role", "operator"]);
    let list = wait_for(Duration::from_secs(20), || {
        let (status, list) = nodes[2].api(
            "GET",
            "/api/v1/queue?domain=remote.example",
            Some(&operator),
            None,
        );
        assert_eq!(status, 200, "{list}");
        (list["messages"].as_array().map(Vec::len) == Some(3)).then_some(list)
    })
    .expect("three messages for remote.example listed");
    assert_eq!(
        list["nodes"],
        serde_json::json!([
            { "node": "node-127.0.0.4", "answered": true, "messages": 0 },
            { "node": "node-127.0.0.2", "answered": true, "messages": 1 },
            { "node": "node-127.0.0.3", "answered": true, "messages": 2 },
        ])
    );
    let (status, shape) = nodes[1].api("GET", "/api/v1/queue/shape", Some(&operator), None);
    assert_eq!(status, 200, "{shape}");
    assert_eq!(shape["total"]["messages"], 4, "{shape}");
    // A node gone: its queue is not shown, and the look says so.
    nodes[1].kill9();
    let (ok, out) = nodes[2].cli_status(&["queue", "shape", "--json"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("warning: not shown: the queue of node-127.0.0.3 (no answer within 3 s)"),
        "{out}"
    );
    let shape: Value = out
        .lines()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a shape");
    assert_eq!(shape["total"]["messages"], 2, "node-127.0.0.2's: {shape}");
    assert_eq!(
        shape["nodes"][2],
        serde_json::json!({ "node": "node-127.0.0.3", "answered": false, "messages": 0 })
    );
    // Ten seconds after it last noted itself, it is taken as stopped: not asked (nor waited
    // for), and named with the time since it was seen, as its spool keeps its mail.
    let out = wait_for(Duration::from_secs(30), || {
        let (_, out) = nodes[2].cli_status(&["queue", "list"]);
        out.contains("node-127.0.0.3 not seen for").then_some(out)
    })
    .expect("the stopped node named");
    assert!(
        out.contains("warning: not shown: the queue of node-127.0.0.3, not seen for")
            && out.contains("its spool keeps the mail it acknowledged"),
        "{out}"
    );
    let (_, api) = nodes[0].api("GET", "/api/v1/queue/shape", Some(&operator), None);
    assert!(
        api["nodes"][2]["not_seen_for"]
            .as_u64()
            .is_some_and(|s| s >= 10),
        "{api}"
    );
    // And every running node's metrics say a node has stopped, for an alert.
    for node in [&nodes[0], &nodes[2]] {
        wait_for(Duration::from_secs(10), || {
            (node.metric("relayward_cluster_nodes_not_seen") == 1
                && node.metric("relayward_cluster_nodes_running") == 2)
                .then_some(())
        })
        .unwrap_or_else(|| panic!("{}", node.http_get("/metrics")));
    }
    // The node list says the same; once its spool is dealt with, the operator forgets it (a
    // running node is refused), and it is named no more.
    let list = nodes[2].cli(&["node", "list"]);
    assert!(
        list.contains("node-127.0.0.2")
            && list.contains("running (seen")
            && list
                .lines()
                .any(|l| l.starts_with("node-127.0.0.3") && l.contains("not seen for")),
        "{list}"
    );
    let (ok, out) = nodes[2].cli_status(&["node", "forget", "node-127.0.0.2"]);
    assert!(
        !ok && out.contains("node node-127.0.0.2 is running"),
        "{out}"
    );
    let out = nodes[2].cli(&["node", "forget", "node-127.0.0.3"]);
    assert!(out.contains("node node-127.0.0.3 forgotten"), "{out}");
    wait_for(Duration::from_secs(10), || {
        (nodes[0].metric("relayward_cluster_nodes_not_seen") == 0).then_some(())
    })
    .expect("forgotten everywhere");
    let (_, out) = nodes[2].cli_status(&["queue", "list"]);
    assert!(!out.contains("node-127.0.0.3"), "{out}");
    let audit = nodes[0].cli(&["audit", "--limit", "5"]);
    assert!(audit.contains("node.forget"), "{audit}");
}

/// Password guesses spread over the nodes (as a load balancer's round robin spreads them) meet
/// one limit: five wrong passwords in all lock the account on every node, where each node on
/// its own had seen two at most; the lockout is alerted once. A made-up name locks alike.
#[test]
fn password_guesses_spread_over_the_nodes_meet_one_lockout() {
    let Some(db) = database() else { return };
    let rx = Receiver::start(false);
    let nodes = cluster(&db.url, &contoso(rx.addr, "", FABRIKAM_CAROL));
    let invalid = "535 5.7.8 Authentication credentials invalid";
    let locked =
        "454 4.7.0 Temporary authentication failure: too many failed attempts, try again later";
    for i in 0..5 {
        let (_, r) = submission_auth(
            &nodes[i % 3],
            "carol@fabrikam.example",
            &format!("guess-{i}"),
        );
        assert_eq!(r.text(), invalid, "guess {}", i + 1);
    }
    for node in &nodes {
        let (_, r) = submission_auth(node, "carol@fabrikam.example", "right-password");
        assert_eq!(r.text(), locked, "{}", node.submission);
    }
    // Another account is not held up.
    let (_, r) = submission_auth(&nodes[0], "nobody@fabrikam.example", "guess");
    assert_eq!(r.text(), invalid);
    // A name nobody has locks the same way, so the lock does not tell which names are real.
    for i in 0..5 {
        let (_, r) = submission_auth(
            &nodes[(i + 1) % 3],
            "made-up@fabrikam.example",
            &format!("guess-{i}"),
        );
        assert_eq!(r.text(), invalid, "made-up name, guess {}", i + 1);
    }
    for node in &nodes {
        let (_, r) = submission_auth(node, "made-up@fabrikam.example", "anything");
        assert_eq!(r.text(), locked, "made-up name on {}", node.submission);
    }
    wait_for(Duration::from_secs(10), || {
        let out = nodes[1].cli(&["alerts", "--tenant", "fabrikam"]);
        out.contains("wrong passwords for carol@fabrikam.example")
            .then_some(())
    })
    .expect("the lockout alerted");
    std::thread::sleep(Duration::from_secs(2));
    let alerts = nodes[2].cli(&["alerts", "--tenant", "fabrikam"]);
    assert_eq!(
        alerts
            .matches("wrong passwords for carol@fabrikam.example")
            .count(),
        1,
        "{alerts}"
    );
}
