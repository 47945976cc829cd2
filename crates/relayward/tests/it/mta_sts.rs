//! MTA-STS (RFC 8461) on MX delivery, against a real DNS server, a real HTTPS policy host and
//! real SMTP receivers, with certificates from a CA made at run time that the relay is told to
//! trust (`[delivery] tls_ca_file`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;

const MSG: &str = "From: alice@contoso.example\r\nSubject: Order 42\r\n\r\nPlease confirm.\r\n";

/// The policy hosts: a request for `Host: mta-sts.<domain>` is answered with that domain's
/// policy, anything else with 404.
fn policy_host(tls: Arc<rustls::ServerConfig>, policies: HashMap<String, String>) -> HttpsServer {
    HttpsServer::start(tls, move |r| match policies.get(r.header("Host")) {
        Some(p) if r.head.starts_with("GET /.well-known/mta-sts.txt ") => (200, p.clone()),
        _ => (404, String::new()),
    })
}

/// How many requests the policy host had for `host`.
fn requests(server: &HttpsServer, host: &str) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.header("Host") == host)
        .count()
}

fn enforce(mx: &str) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// A recipient domain with an enforced policy gets mail only from the MX hosts the policy names,
/// over TLS with a certificate for the host's name; where that cannot be, the mail waits and the
/// queue says why (opportunistic TLS would have sent it: to a certificate for another name,
/// to a host the policy does not name, or in clear text to a host that offers no STARTTLS, as
/// an attacker who strips STARTTLS would have it). A policy in testing mode, a policy host that
/// answers 404 and a domain without a policy get their mail as before; in testing mode, a
/// certificate that enforcing would refuse is counted and traced. A policy is fetched once and
/// then cached.
#[test]
fn an_enforced_mta_sts_policy_is_met_or_the_mail_waits() {
    let ca = TestCa::new("Relayward Test Root CA");
    let dir = tempfile::tempdir().expect("dir");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &ca.pem).expect("write CA");
    // The MX hosts on 127.0.0.1 present a certificate for mx.remote.example; the one on
    // 127.0.0.3 (same port) offers no STARTTLS.
    let rx = Receiver::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Some(tokio_rustls::TlsAcceptor::from(
            ca.server_tls(&["mx.remote.example"]),
        )),
    );
    let plain = Receiver::start_at(SocketAddr::new([127, 0, 0, 3].into(), rx.addr.port()), None);
    let domains = [
        "remote",
        "wrongname",
        "unnamed",
        "stripped",
        "testing",
        "broken",
    ];
    let mut policies: HashMap<String, String> = HashMap::new();
    policies.insert(
        "mta-sts.remote.example".into(),
        enforce("mx.remote.example"),
    );
    policies.insert(
        "mta-sts.wrongname.example".into(),
        enforce("mx.wrongname.example"),
    );
    policies.insert(
        "mta-sts.unnamed.example".into(),
        enforce("*.elsewhere.example"),
    );
    policies.insert(
        "mta-sts.stripped.example".into(),
        enforce("mx.stripped.example"),
    );
    policies.insert(
        "mta-sts.testing.example".into(),
        "version: STSv1\nmode: testing\nmx: mx.testing.example\nmax_age: 600\n".into(),
    );
    let names: Vec<String> = domains
        .iter()
        .map(|d| format!("mta-sts.{d}.example"))
        .collect();
    let host = policy_host(
        ca.server_tls(&names.iter().map(String::as_str).collect::<Vec<_>>()),
        policies,
    );
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut zone = Vec::new();
    for d in domains.iter().chain(&["nopolicy"]) {
        let mx = leak(format!("mx.{d}.example"));
        let ip = if *d == "stripped" {
            "127.0.0.3"
        } else {
            "127.0.0.1"
        };
        zone.push((
            leak(format!("{d}.example")),
            "MX",
            Answer::Mx(vec![(10, mx)]),
        ));
        zone.push((mx, "A", Answer::A(vec![ip.parse().expect("ip")])));
        if *d != "nopolicy" {
            zone.push((
                leak(format!("_mta-sts.{d}.example")),
                "TXT",
                Answer::Txt(vec![format!("v=STSv1; id=2026120101{d};")]),
            ));
            zone.push((
                leak(format!("mta-sts.{d}.example")),
                "A",
                Answer::A(vec!["127.0.0.1".parse().expect("ip")]),
            ));
        }
    }
    let dns = Dns::start(zone);
    let config = format!(
        r#"[delivery]
dns_resolver = "{}"
remote_port = {}
private_destinations = ["127.0.0.0/8"]
tls_ca_file = "{}"
mta_sts_port = {}
retry_schedule = ["1s"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "alice@contoso.example" }} ]
"#,
        dns.addr,
        rx.addr.port(),
        bundle.display(),
        host.addr.port()
    );
    // check-config says what certificates are checked against.
    let (ok, out) = check_config(&write_config(dir.path(), &config));
    assert!(ok, "{out}");
    let line = format!(
        "MTA-STS:    on; certificates checked against {} (1 CA)",
        bundle.display()
    );
    assert!(out.contains(&line), "{out}");
    let mut relay = Relay::start(&config);
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let mut ids = HashMap::new();
    for d in domains.iter().chain(&["nopolicy", "remote"]) {
        let reply = c.transaction("alice@contoso.example", &[&format!("bob@{d}.example")], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
        ids.insert(*d, reply.text().rsplit(' ').next().expect("id").to_string());
    }
    c.cmd("QUIT");

    // Delivered: the policy met (twice, over TLS), testing mode, a 404 and no policy.
    let got = rx.wait(5, Duration::from_secs(30));
    let to = |d: &str| {
        got.iter()
            .filter(|m| m.rcpts == [format!("bob@{d}.example")])
            .collect::<Vec<_>>()
    };
    assert_eq!(to("remote").len(), 2, "{got:?}");
    assert!(to("remote").iter().all(|m| m.tls), "{got:?}");
    for d in ["testing", "broken", "nopolicy"] {
        assert_eq!(to(d).len(), 1, "{d}: {got:?}");
    }
    // The others wait, each with the reason in the queue; nothing went in clear text.
    relay.queue_waits_with(&[
        "mx.wrongname.example [127.0.0.1] failed TLS during the TLS handshake",
        "No mail host of unnamed.example (mx.unnamed.example) is one its MTA-STS policy names (*.elsewhere.example)",
        "mx.stripped.example [127.0.0.3] does not offer STARTTLS; the MTA-STS policy of stripped.example requires TLS",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(plain.messages().is_empty(), "{:?}", plain.messages());
    assert_eq!(rx.messages().len(), 5, "{:?}", rx.messages());
    let refusals = relay.metric("relayward_delivery_mta_sts_refusals_total");
    assert!(refusals >= 3, "{refusals}");
    // Testing mode: the policy names the host, whose certificate is for another name. The
    // mail went; the trace and the count say enforcing would have stopped it.
    assert_eq!(
        relay.metric("relayward_delivery_mta_sts_testing_failures_total"),
        1
    );
    let trace = relay.cli(&["trace", "--id", &ids["testing"]]);
    assert!(
        trace.contains("MTA-STS (testing): mx.testing.example [127.0.0.1] would not meet the policy of testing.example"),
        "{trace}"
    );
    for d in ["remote", "nopolicy", "broken"] {
        let trace = relay.cli(&["trace", "--id", &ids[d]]);
        assert!(!trace.contains("MTA-STS (testing)"), "{d}: {trace}");
    }
    // Fetched once for two messages and several rounds: cached for its max_age.
    assert_eq!(requests(&host, "mta-sts.remote.example"), 1);
    assert_eq!(requests(&host, "mta-sts.wrongname.example"), 1);
    assert_eq!(requests(&host, "mta-sts.broken.example"), 1);
    assert_eq!(requests(&host, "mta-sts.nopolicy.example"), 0);

    // The policy host goes away (blocked by an attacker, say) and the relay restarts: the
    // policies fetched before still hold, kept in the store for their max_age.
    drop(host);
    relay.terminate();
    relay.spawn();
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let reply = c.transaction("alice@contoso.example", &["carol@remote.example"], MSG);
    assert_eq!(reply.code, 250, "{reply:?}");
    c.cmd("QUIT");
    let got = rx.wait(6, Duration::from_secs(30));
    assert!(
        got.iter()
            .any(|m| m.rcpts == ["carol@remote.example"] && m.tls),
        "{got:?}"
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(plain.messages().is_empty(), "{:?}", plain.messages());
    assert_eq!(rx.messages().len(), 6, "{:?}", rx.messages());
    let waiting = relay.cli(&["queue", "list"]);
    assert!(
        waiting.contains("mx.stripped.example [127.0.0.3] does not offer STARTTLS"),
        "{waiting}"
    );
}
