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

/// The documented age of a node's view of the other nodes' counts: about 2 s (a save each
/// half second, a read each second), with a margin for a loaded machine.
const COUNTS_SPREAD: Duration = Duration::from_millis(3000);

/// Tenant contoso, whose on-premises server (127.0.0.1) may relay for other domains, with
/// `limits`; everything goes to `rx`.
fn contoso(rx: std::net::SocketAddr, limits: &str, extra: &str) -> String {
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
fn database() -> Option<relayward_store::testdb::TestDb> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(relayward_store::testdb::create())
}

/// Three nodes on one database, each with its own data directory (spool).
fn cluster(url: &str, extra: &str) -> Vec<Relay> {
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

/// How long until `check` holds on `relay` (polled every 50 ms for at most 10 s).
fn time_until(relay: &Relay, check: impl Fn(&Relay) -> bool) -> Duration {
    let start = Instant::now();
    wait_for(Duration::from_secs(10), || check(relay).then_some(()))
        .unwrap_or_else(|| panic!("not within 10 s on {}", relay.relay));
    start.elapsed()
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
            took <= Duration::from_secs(2),
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
            took <= Duration::from_secs(2),
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
            took <= Duration::from_secs(2),
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
