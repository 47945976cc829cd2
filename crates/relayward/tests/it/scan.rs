//! Content scanning over real SMTP: realistic messages kept as .eml fixtures get their
//! verdicts; suspicious mail reaches the receiver from the high-risk pool's address and HELO
//! name, clean mail from the normal pool's; bulk is recognised across connections; a sender
//! domain with neither MX nor A records goes to the high-risk pool.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::util::*;

const NORMAL: &str = "127.0.0.2";
const HIGH_RISK: &str = "127.0.0.3";

/// Tenant contoso with its on-premises server at 127.0.0.1, both pools on their own loopback
/// addresses, and limits high enough that the guard stays out of the way.
fn pools_config(rx: SocketAddr, extra_delivery: &str, connector: &str) -> String {
    format!(
        r#"
[delivery]
smart_host = "{rx}"
normal_pool = ["{NORMAL}"]
high_risk_pool = ["{HIGH_RISK}"]
high_risk_hostname = "risky.relay.test"
retry_schedule = ["1s"]
{extra_delivery}
[limits]
user_suspicious_per_day = 100000
connector_suspicious_per_day = 100000
tenant_suspicious_per_day = 100000
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] {connector} }} ]
users = [ {{ address = "alice@contoso.example" }} ]
"#
    )
}

fn fixtures() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scan");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .map(|p| {
            let stem = p
                .file_stem()
                .and_then(|s| s.to_str())
                .expect("name")
                .to_string();
            let text = std::fs::read_to_string(&p).expect("read fixture");
            // SMTP carries CRLF line ends.
            (stem, text.replace("\r\n", "\n").replace('\n', "\r\n"))
        })
        .collect();
    out.sort();
    out
}

/// The address in the fixture's `From:` header (the envelope sender a mail program would use).
fn header_from(message: &str) -> String {
    let line = message
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("from:"))
        .expect("fixture has a From header");
    let v = &line[5..];
    match (v.rfind('<'), v.rfind('>')) {
        (Some(a), Some(b)) if a < b => v[a + 1..b].to_string(),
        _ => v.trim().to_string(),
    }
}

fn queued_id(r: &Reply) -> String {
    assert_eq!(r.code, 250, "{r:?}");
    r.text().rsplit(' ').next().expect("id").to_string()
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

#[test]
fn fixtures_get_their_verdicts_and_leave_from_their_pools() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&pools_config(rx.addr, "", ""));
    let fixtures = fixtures();
    assert!(fixtures.len() >= 7, "fixtures: {fixtures:?}");
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO mail.contoso.example").code, 250);
    let mut ids = HashMap::new();
    for (name, message) in &fixtures {
        let rcpt = format!("{name}@fabrikam.example");
        let r = c.mail(&header_from(message), &[&rcpt], message);
        ids.insert(name.clone(), queued_id(&r));
    }
    let got = rx.wait(fixtures.len(), Duration::from_secs(30));
    for (name, _) in &fixtures {
        let expected = name.split('-').next().expect("verdict prefix");
        let m = got
            .iter()
            .find(|m| m.rcpts == vec![format!("{name}@fabrikam.example")])
            .unwrap_or_else(|| panic!("{name} did not arrive"));
        let trace = wait_for(Duration::from_secs(10), || {
            let t = relay.cli(&["trace", "--id", &ids[name]]);
            t.contains("Delivered").then_some(t)
        })
        .unwrap_or_else(|| panic!("{name}: no delivery in the trace"));
        assert!(
            trace.contains(&format!("verdict {expected} ")),
            "{name}: expected {expected}: {trace}"
        );
        if expected == "clean" {
            assert_eq!(m.peer, ip(NORMAL), "{name} left from the wrong pool");
            assert_eq!(m.helo, "relay.test");
            assert!(trace.contains("from the normal pool"), "{trace}");
        } else {
            assert_eq!(m.peer, ip(HIGH_RISK), "{name} left from the wrong pool");
            assert_eq!(m.helo, "risky.relay.test");
            assert!(
                trace.contains(&format!(
                    "from the high-risk pool (scan verdict {expected})"
                )),
                "{trace}"
            );
        }
    }
    // The rules that make each one what it is are named in the trace.
    let rules = |name: &str| relay.cli(&["trace", "--id", &ids[name]]);
    for (fixture, rule) in [
        ("spam-gtube", "GTUBE"),
        ("spam-mailbox-phishing", "PHISHING_CREDENTIALS"),
        ("spam-mailbox-phishing", "URL_IP_LITERAL"),
        ("spam-mailbox-phishing", "HTML_HIDDEN_TEXT"),
        ("spam-mailbox-phishing", "REPLY_TO_FREEMAIL"),
        ("spam-invoice-executable", "ATTACH_EXECUTABLE"),
        ("spam-invoice-executable", "MISSING_DATE"),
        ("spam-macro-shortener", "ATTACH_MACRO"),
        ("spam-macro-shortener", "URL_SHORTENER"),
        ("spam-macro-shortener", "MALFORMED_MESSAGE_ID"),
        ("bulk-newsletter", "LIST_UNSUBSCRIBE"),
    ] {
        let t = rules(fixture);
        assert!(t.contains(rule), "{fixture} lacks {rule}: {t}");
    }
    assert!(
        rules("clean-meeting-minutes").contains("rules []"),
        "{}",
        rules("clean-meeting-minutes")
    );
    assert_eq!(relay.metric("relayward_scanned_spam_total"), 4);
    assert_eq!(relay.metric("relayward_scanned_bulk_total"), 1);
    assert_eq!(relay.metric("relayward_pool_normal_total"), 2);
    assert_eq!(relay.metric("relayward_pool_high_risk_total"), 5);
}

/// 200 copies of one letter, each greeting its recipient by name and carrying its own
/// reference number, over 10 connections taking turns: the first 20 are ordinary mail, from
/// the 21st on the content has reached more than `scan.bulk_recipients` (20) external
/// recipients in 24 hours and is bulk.
#[test]
fn the_same_letter_to_many_recipients_becomes_bulk_from_the_21st_copy() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&pools_config(rx.addr, "", ""));
    let mut clients: Vec<Client> = (0..10)
        .map(|_| {
            let mut c = relay.client();
            assert_eq!(c.cmd("EHLO mail.contoso.example").code, 250);
            c
        })
        .collect();
    let names = [
        "Ana", "Ben", "Chloe", "Dmitri", "Eva", "Farid", "Greta", "Hugo",
    ];
    for n in 0..200usize {
        let body = format!(
            "From: Contoso Sales <sales@contoso.example>\r\nTo: r{n}@fabrikam.example\r\n\
             Subject: Winter offer\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <offer-{n}@contoso.example>\r\n\r\n\
             Dear {},\r\n\r\nwe are pleased to offer you an exclusive discount on all our \
             premium garden furniture this winter, with free delivery to your door and a \
             two year guarantee on every chair, table and parasol in the catalogue.\r\n\r\n\
             Your reference: {}\r\n",
            names[n % names.len()],
            100_000 + n * 7
        );
        let c = &mut clients[n % 10];
        let r = c.mail(
            "sales@contoso.example",
            &[&format!("r{n}@fabrikam.example")],
            &body,
        );
        assert_eq!(r.code, 250, "copy {}: {r:?}", n + 1);
    }
    let got = rx.wait(200, Duration::from_secs(60));
    let mut bulk_from = None;
    for n in 0..200usize {
        let m = got
            .iter()
            .find(|m| m.rcpts == vec![format!("r{n}@fabrikam.example")])
            .unwrap_or_else(|| panic!("copy {} did not arrive", n + 1));
        let high_risk = m.peer == ip(HIGH_RISK);
        if n < 20 {
            assert!(!high_risk, "copy {} is not bulk yet", n + 1);
        } else {
            assert!(high_risk, "copy {} is bulk", n + 1);
            bulk_from.get_or_insert(n + 1);
        }
    }
    assert_eq!(bulk_from, Some(21));
    assert_eq!(relay.metric("relayward_scanned_bulk_total"), 180);
}

#[test]
fn mail_from_a_sender_domain_without_mx_or_a_leaves_from_the_high_risk_pool() {
    let rx = Receiver::start(false);
    let dns = Dns::start(vec![(
        "contoso.example",
        "A",
        Answer::A(vec!["192.0.2.10".parse().expect("ip")]),
    )]);
    let relay = Relay::start(&pools_config(
        rx.addr,
        &format!("dns_resolver = \"{}\"", dns.addr),
        ", relay_unregistered = true",
    ));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO mail.contoso.example").code, 250);
    let body = |from: &str| {
        format!(
            "From: {from}\r\nSubject: hello\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
             Message-ID: <{}@contoso.example>\r\n\r\nSee you tomorrow.\r\n",
            from.replace('@', ".")
        )
    };
    let ok = queued_id(&c.mail(
        "alice@contoso.example",
        &["a@fabrikam.example"],
        &body("alice@contoso.example"),
    ));
    let ghost = queued_id(&c.mail(
        "billing@ghost.example",
        &["b@fabrikam.example"],
        &body("billing@ghost.example"),
    ));
    let got = rx.wait(2, Duration::from_secs(30));
    let peer = |rcpt: &str| {
        got.iter()
            .find(|m| m.rcpts == vec![rcpt.to_string()])
            .map(|m| m.peer)
    };
    assert_eq!(peer("a@fabrikam.example"), Some(ip(NORMAL)));
    assert_eq!(peer("b@fabrikam.example"), Some(ip(HIGH_RISK)));
    let trace = relay.cli(&["trace", "--id", &ghost]);
    assert!(
        trace.contains("sender domain ghost.example has neither MX nor A records"),
        "{trace}"
    );
    let trace = relay.cli(&["trace", "--id", &ok]);
    assert!(trace.contains("from the normal pool"), "{trace}");
}

fn message(id: &str, text: &str) -> String {
    format!(
        "From: Alice Martin <alice@contoso.example>\r\nTo: dana@fabrikam.example\r\n\
         Subject: {id}\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}@contoso.example>\r\n\r\n{text}\r\n"
    )
}

/// A real Rspamd, started here: its verdict and symbols join ours (a message only Rspamd calls
/// spam is spam, and leaves from the high-risk pool); with Rspamd stopped, mail is accepted on
/// the built-in verdict and the trace and metrics say so (the default), or the client is told
/// to try later (`rspamd_failure = "tempfail"`).
#[test]
fn rspamd_verdicts_merge_with_ours_and_its_absence_falls_back_as_configured() {
    let Some(mut rspamd) = RspamdServer::start() else {
        return;
    };
    let rx = Receiver::start(false);
    let rspamd_addr = rspamd.addr;
    let scan = |failure: &str| {
        format!(
            "[scan]\nrspamd = \"{rspamd_addr}\"\nrspamd_timeout = \"20s\"\nrspamd_failure = \"{failure}\"\n"
        )
    };
    let relay = Relay::start(&format!(
        "{}{}",
        pools_config(rx.addr, "", ""),
        scan("accept")
    ));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO mail.contoso.example").code, 250);
    let send = |c: &mut Client, rcpt: &str, body: &str| {
        queued_id(&c.mail("alice@contoso.example", &[rcpt], body))
    };
    let clean = send(
        &mut c,
        "clean@fabrikam.example",
        &message("lunch", "Lunch at one on Tuesday?"),
    );
    let marked = send(
        &mut c,
        "marked@fabrikam.example",
        &message(
            "offer",
            "A quiet note that only Rspamd's test rule dislikes: relayward-rspamd-marker.",
        ),
    );
    let trace_of = |id: &str| {
        wait_for(Duration::from_secs(20), || {
            let t = relay.cli(&["trace", "--id", id]);
            t.contains("Delivered").then_some(t)
        })
        .unwrap_or_else(|| panic!("{id} not delivered"))
    };
    let t = trace_of(&clean);
    assert!(t.contains("verdict clean"), "{t}");
    assert!(t.contains("rspamd: clean score"), "{t}");
    let t = trace_of(&marked);
    assert!(t.contains("verdict spam"), "{t}");
    assert!(t.contains("RSPAMD:RELAYWARD_TEST_MARKER(20.0)"), "{t}");
    assert!(t.contains("rspamd: spam score"), "{t}");
    let got = rx.wait(2, Duration::from_secs(20));
    let peer = |rcpt: &str| {
        got.iter()
            .find(|m| m.rcpts == vec![rcpt.to_string()])
            .map(|m| m.peer)
    };
    assert_eq!(peer("clean@fabrikam.example"), Some(ip(NORMAL)));
    assert_eq!(peer("marked@fabrikam.example"), Some(ip(HIGH_RISK)));
    assert_eq!(relay.metric("relayward_rspamd_failures_total"), 0);

    // Rspamd goes away: the default keeps mail flowing on our own verdict, and says so.
    rspamd.stop();
    let fallback = send(
        &mut c,
        "later@fabrikam.example",
        &message(
            "fallback",
            "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X",
        ),
    );
    let t = trace_of(&fallback);
    assert!(
        t.contains("verdict spam"),
        "the built-in verdict stands: {t}"
    );
    assert!(
        t.contains("rspamd unavailable (cannot reach Rspamd at"),
        "{t}"
    );
    assert_eq!(relay.metric("relayward_rspamd_failures_total"), 1);

    // The other documented choice: ask the client to come back later.
    let strict = Relay::start(&format!(
        "{}{}",
        pools_config(rx.addr, "", ""),
        scan("tempfail")
    ));
    let mut c = strict.client();
    assert_eq!(c.cmd("EHLO mail.contoso.example").code, 250);
    let r = c.mail(
        "alice@contoso.example",
        &["held@fabrikam.example"],
        &message("held", "Lunch at one on Tuesday?"),
    );
    assert_eq!(r.code, 451, "{r:?}");
    assert!(
        r.text()
            .contains("4.7.1 The content scanner is unavailable"),
        "{r:?}"
    );
    assert_eq!(strict.metric("relayward_rspamd_failures_total"), 1);
}
