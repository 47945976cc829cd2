//! DANE (RFC 7672) on MX delivery, against a real DNS server that marks the answers of signed
//! zones with the AD bit (as a validating resolver does) and real SMTP receivers, with a
//! certificate from a CA made at run time that nothing else trusts: only the TLSA records
//! vouch for it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::util::*;

const MSG: &str = "From: alice@contoso.example\r\nSubject: Order 42\r\n\r\nPlease confirm.\r\n";

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn signed(a: Answer) -> Answer {
    Answer::Signed(Box::new(a))
}

/// The relay's configuration for these tests: MX delivery through the test DNS server, to
/// receivers on loopback at `port`, with DANE on, and `extra` delivery keys.
fn dane_config(dns: SocketAddr, port: u16, extra: &str) -> String {
    format!(
        r#"[delivery]
dns_resolver = "{dns}"
remote_port = {port}
private_destinations = ["127.0.0.0/8"]
dane = true
retry_schedule = ["1s"]
{extra}
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "alice@contoso.example" }} ]
"#
    )
}

/// One message from alice to bob at each `<d>.example`, accepted; each one's queue id.
fn send_to_each<'a>(relay: &Relay, domains: &[&'a str]) -> HashMap<&'a str, String> {
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let mut ids = HashMap::new();
    for d in domains {
        let reply = c.transaction("alice@contoso.example", &[&format!("bob@{d}.example")], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
        ids.insert(*d, reply.queued_id());
    }
    c.cmd("QUIT");
    ids
}

/// A host with signed TLSA records gets its mail only over TLS with a certificate they name:
/// its own key (DANE-EE) or the CA it was issued under (DANE-TA), with no CA bundle involved.
/// Records that name another certificate, a host that offers no STARTTLS, and TLSA records
/// that cannot be looked up leave the mail waiting, each with its reason; nothing goes in clear
/// text. Where the MX records or the TLSA records are not signed, DANE does not apply and the
/// mail goes as before.
#[test]
fn signed_tlsa_records_decide_which_certificate_an_mx_host_must_show() {
    let ca = TestCa::new("Relayward DANE Test CA");
    let domains = [
        "ee", "ta", "wrong", "plain", "servfail", "insecure", "unsigned",
    ];
    let names: Vec<String> = domains.iter().map(|d| format!("mx.{d}.example")).collect();
    let (tls, spki, ca_cert) =
        ca.server_tls_for_dane(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let rx = Receiver::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Some(tokio_rustls::TlsAcceptor::from(tls)),
    );
    // The host of plain.example, on the same port: no STARTTLS.
    let plain = Receiver::start_at(SocketAddr::new([127, 0, 0, 3].into(), rx.addr.port()), None);
    let port = rx.addr.port();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let own_key = (3, 1, 1, sha256(&spki));
    let elsewhere = (3, 1, 1, vec![0u8; 32]);
    let mut zone = Vec::new();
    for d in domains {
        let mx = leak(format!("mx.{d}.example"));
        let ip = if d == "plain" {
            "127.0.0.3"
        } else {
            "127.0.0.1"
        };
        let mx_answer = Answer::Mx(vec![(10, mx)]);
        zone.push((
            leak(format!("{d}.example")),
            "MX",
            if d == "insecure" {
                mx_answer
            } else {
                signed(mx_answer)
            },
        ));
        zone.push((mx, "A", signed(Answer::A(vec![ip.parse().expect("ip")]))));
        let tlsa = match d {
            "ee" | "plain" => signed(Answer::Tlsa(vec![elsewhere.clone(), own_key.clone()])),
            "ta" => signed(Answer::Tlsa(vec![(2, 0, 1, sha256(&ca_cert))])),
            "servfail" => Answer::ServFail,
            "unsigned" => Answer::Tlsa(vec![elsewhere.clone()]),
            _ => signed(Answer::Tlsa(vec![elsewhere.clone()])),
        };
        zone.push((leak(format!("_{port}._tcp.mx.{d}.example")), "TLSA", tlsa));
    }
    let dns = Dns::start(zone);
    let dir = tempfile::tempdir().expect("dir");
    let config = dane_config(dns.addr, port, "mta_sts = false");
    let (ok, out) = check_config(&write_config(dir.path(), &config));
    assert!(ok, "{out}");
    let line = format!(
        "DANE:       on; the AD bit of {} is trusted (it must validate DNSSEC)",
        dns.addr
    );
    assert!(out.contains(&line), "{out}");

    let relay = Relay::start(&config);
    let ids = send_to_each(&relay, &domains);

    // Delivered: DANE-EE and DANE-TA met (over TLS), and the two where DANE does not apply.
    let got = rx.wait(4, Duration::from_secs(30));
    let to = |d: &str| {
        got.iter()
            .filter(|m| m.rcpts == [format!("bob@{d}.example")])
            .collect::<Vec<_>>()
    };
    for d in ["ee", "ta", "insecure", "unsigned"] {
        assert_eq!(to(d).len(), 1, "{d}: {got:?}");
    }
    assert!(to("ee")[0].tls && to("ta")[0].tls, "{got:?}");
    // The others wait, each with its reason.
    relay.queue_waits_with(&[
        "mx.wrong.example [127.0.0.1] failed TLS during the TLS handshake",
        "mx.plain.example [127.0.0.3] does not offer STARTTLS; the signed TLSA records of mx.plain.example (DANE) require TLS",
        "mx.servfail.example [127.0.0.1] not tried: its address is signed and its TLSA records (DANE) could not be looked up",
    ]);
    let trace = relay.cli(&["trace", "--id", &ids["wrong"]]);
    assert!(
        trace.contains("matches none of its TLSA records"),
        "{trace}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(plain.messages().is_empty(), "{:?}", plain.messages());
    assert_eq!(rx.messages().len(), 4, "{:?}", rx.messages());
    assert!(relay.metric("relayward_delivery_dane_connections_total") >= 2);
    assert!(relay.metric("relayward_delivery_dane_refusals_total") >= 3);
}

/// RFC 8461 section 2: where DANE covers a host, its rule is the one applied. A domain with an
/// enforced MTA-STS policy that does not name its MX host, while the host has signed TLSA
/// records, gets its mail over TLS under DANE; a host the policy does not name and DANE does
/// not cover still gets nothing, and the mail waits with the policy's reason.
#[test]
fn a_host_dane_covers_gets_mail_its_domains_mta_sts_policy_does_not_name_it() {
    let ca = TestCa::new("Relayward DANE and MTA-STS Test CA");
    let dir = tempfile::tempdir().expect("dir");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &ca.pem).expect("write CA");
    let (tls, spki, _) = ca.server_tls_for_dane(&["mx.covered.example", "mx.uncovered.example"]);
    let rx = Receiver::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Some(tokio_rustls::TlsAcceptor::from(tls)),
    );
    let port = rx.addr.port();
    let policy =
        "version: STSv1\r\nmode: enforce\r\nmx: mx.elsewhere.example\r\nmax_age: 86400\r\n";
    let host = HttpsServer::start(
        ca.server_tls(&["mta-sts.covered.example", "mta-sts.uncovered.example"]),
        move |r| {
            if r.head.starts_with("GET /.well-known/mta-sts.txt ") {
                (200, policy.to_string())
            } else {
                (404, String::new())
            }
        },
    );
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut zone = Vec::new();
    for d in ["covered", "uncovered"] {
        let mx = leak(format!("mx.{d}.example"));
        zone.push((
            leak(format!("{d}.example")),
            "MX",
            signed(Answer::Mx(vec![(10, mx)])),
        ));
        let a = Answer::A(vec!["127.0.0.1".parse().expect("ip")]);
        // The uncovered host's address is not signed: DANE does not apply to it.
        zone.push((mx, "A", if d == "covered" { signed(a) } else { a }));
        zone.push((
            leak(format!("_{port}._tcp.mx.{d}.example")),
            "TLSA",
            signed(Answer::Tlsa(vec![(3, 1, 1, sha256(&spki))])),
        ));
        zone.push((
            leak(format!("_mta-sts.{d}.example")),
            "TXT",
            Answer::Txt(vec![format!("v=STSv1; id=20261202{d};")]),
        ));
        zone.push((
            leak(format!("mta-sts.{d}.example")),
            "A",
            Answer::A(vec!["127.0.0.1".parse().expect("ip")]),
        ));
    }
    let dns = Dns::start(zone);
    let relay = Relay::start(&dane_config(
        dns.addr,
        port,
        &format!(
            "tls_ca_file = \"{}\"\nmta_sts_port = {}",
            bundle.display(),
            host.addr.port()
        ),
    ));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    for d in ["covered", "uncovered"] {
        let reply = c.transaction("alice@contoso.example", &[&format!("bob@{d}.example")], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    c.cmd("QUIT");
    let got = rx.wait(1, Duration::from_secs(30));
    assert_eq!(got[0].rcpts, ["bob@covered.example"], "{got:?}");
    assert!(got[0].tls, "under DANE, over TLS");
    relay.queue_waits_with(&[
        "451 4.7.5 No mail host of uncovered.example (mx.uncovered.example) is one its MTA-STS policy names (mx.elsewhere.example)",
    ]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.messages().len(), 1, "{:?}", rx.messages());
    assert_eq!(relay.metric("relayward_delivery_dane_connections_total"), 1);
}

/// RFC 7672 2.2.2 and 3.2.2: an MX host that is an alias, through signed CNAME records, has
/// the TLSA records of the name they lead to, and a DANE-TA certificate may name that name
/// instead of the host's; a target without TLSA records leaves the host's own.
#[test]
fn an_mx_host_behind_a_signed_alias_is_checked_against_its_targets_tlsa_records() {
    let ca = TestCa::new("Relayward DANE Alias Test CA");
    // The certificate names the provider's host only, never the customers' MX names.
    let (tls, spki, ca_cert) = ca.server_tls_for_dane(&["smtp.provider.example"]);
    let rx = Receiver::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Some(tokio_rustls::TlsAcceptor::from(tls)),
    );
    let port = rx.addr.port();
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let tlsa = |name: &str| leak(format!("_{port}._tcp.{name}"));
    let elsewhere = (3, 1, 1, vec![0u8; 32]);
    let zone = vec![
        // alias.example: its MX is an alias of the provider's host, whose DANE-TA record
        // names the CA; the alias's own name has a record that matches nothing.
        (
            "alias.example",
            "MX",
            signed(Answer::Mx(vec![(10, "mx.alias.example")])),
        ),
        (
            "mx.alias.example",
            "CNAME",
            signed(Answer::Cname("smtp.provider.example")),
        ),
        (
            "smtp.provider.example",
            "A",
            signed(Answer::A(vec!["127.0.0.1".parse().expect("ip")])),
        ),
        (
            tlsa("smtp.provider.example"),
            "TLSA",
            signed(Answer::Tlsa(vec![(2, 0, 1, sha256(&ca_cert))])),
        ),
        (
            tlsa("mx.alias.example"),
            "TLSA",
            signed(Answer::Tlsa(vec![elsewhere])),
        ),
        // own.example: an alias whose target has no TLSA records: the host's own (DANE-EE).
        (
            "own.example",
            "MX",
            signed(Answer::Mx(vec![(10, "mx.own.example")])),
        ),
        (
            "mx.own.example",
            "CNAME",
            signed(Answer::Cname("bare.provider.example")),
        ),
        (
            "bare.provider.example",
            "A",
            signed(Answer::A(vec!["127.0.0.1".parse().expect("ip")])),
        ),
        (
            tlsa("mx.own.example"),
            "TLSA",
            signed(Answer::Tlsa(vec![(3, 1, 1, sha256(&spki))])),
        ),
    ];
    let dns = Dns::start(zone);
    let relay = Relay::start(&dane_config(dns.addr, port, "mta_sts = false"));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    for d in ["alias", "own"] {
        let reply = c.transaction("alice@contoso.example", &[&format!("bob@{d}.example")], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    c.cmd("QUIT");
    let got = rx.wait(2, Duration::from_secs(30));
    for d in ["alias", "own"] {
        let m = got
            .iter()
            .find(|m| m.rcpts == [format!("bob@{d}.example")])
            .unwrap_or_else(|| panic!("{d}: {got:?}"));
        assert!(m.tls, "{d}: over TLS");
    }
    assert_eq!(relay.metric("relayward_delivery_dane_connections_total"), 2);
    assert_eq!(relay.metric("relayward_delivery_dane_refusals_total"), 0);
}

/// RFC 7671 5.2.2: a DANE-TA record may give the trust anchor's public key in full (`2 1 0`),
/// and then the host need not send its CA's certificate. A host that sends its own
/// certificate alone gets its mail over TLS when its record holds the key that signed it.
/// Hosts whose record holds another key, whose record is a digest of the CA certificate they
/// did not send, or whose certificate does not name them, get nothing: their mail waits.
#[test]
fn a_trust_anchor_given_as_a_bare_public_key_needs_no_certificate_from_the_host() {
    let ca = TestCa::new("Relayward DANE Key-only Test CA");
    let other = TestCa::new("Relayward DANE Other Test CA");
    let domains = ["key", "otherkey", "digest", "unnamed"];
    // The host sends its certificate without the CA's; it names every host but the last.
    let tls = ca.server_tls(&["mx.key.example", "mx.otherkey.example", "mx.digest.example"]);
    let rx = Receiver::start_at(
        "127.0.0.1:0".parse().expect("addr"),
        Some(tokio_rustls::TlsAcceptor::from(tls)),
    );
    let port = rx.addr.port();
    let (_, _, ca_cert) = ca.server_tls_for_dane(&["unused.example"]);
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let mut zone = Vec::new();
    for d in domains {
        let mx = leak(format!("mx.{d}.example"));
        zone.push((
            leak(format!("{d}.example")),
            "MX",
            signed(Answer::Mx(vec![(10, mx)])),
        ));
        zone.push((
            mx,
            "A",
            signed(Answer::A(vec!["127.0.0.1".parse().expect("ip")])),
        ));
        let record = match d {
            "otherkey" => (2, 1, 0, other.spki()),
            "digest" => (2, 0, 1, sha256(&ca_cert)),
            _ => (2, 1, 0, ca.spki()),
        };
        zone.push((
            leak(format!("_{port}._tcp.mx.{d}.example")),
            "TLSA",
            signed(Answer::Tlsa(vec![record])),
        ));
    }
    let dns = Dns::start(zone);
    let relay = Relay::start(&dane_config(dns.addr, port, "mta_sts = false"));
    let ids = send_to_each(&relay, &domains);

    let got = rx.wait(1, Duration::from_secs(30));
    assert_eq!(got[0].rcpts, ["bob@key.example"], "{got:?}");
    assert!(got[0].tls, "over TLS");
    relay.queue_waits_with(&[
        "mx.otherkey.example [127.0.0.1] failed TLS during the TLS handshake",
        "mx.digest.example [127.0.0.1] failed TLS during the TLS handshake",
        "mx.unnamed.example [127.0.0.1] failed TLS during the TLS handshake",
    ]);
    for d in ["otherkey", "digest", "unnamed"] {
        let trace = relay.cli(&["trace", "--id", &ids[d]]);
        assert!(
            trace.contains("matches none of its TLSA records"),
            "{d}: {trace}"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(rx.messages().len(), 1, "{:?}", rx.messages());
    assert_eq!(relay.metric("relayward_delivery_dane_connections_total"), 1);
}
