//! Inbound mail forwarded to users' outside addresses, over real SMTP: the copy leaves
//! with an SRS sender in the tenant's domain, DKIM-signed and ARC-sealed (checked by dkimpy, an
//! independent verifier); bounces to the SRS address reach the original sender, forged ones
//! are refused; forward-only users keep no copy; the tenant's forwarding control and its
//! restrictions stop the copy with an NDR to the user; a loop between two tenants is stopped.

use std::time::Duration;

use crate::util::*;

const LETTER: &str = "From: Ext Sender <ext@outside.example>\r\nTo: Ana <ana@contoso.example>\r\nSubject: Lunch on Friday\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <lunch-1@outside.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHi Ana,\r\n\r\nshall we have lunch on Friday?  The usual place.\r\n\r\nExt\r\n";

fn config(rx: std::net::SocketAddr) -> String {
    format!(
        r#"
[delivery]
smart_host = "{rx}"
retry_schedule = ["1s"]
expire_after = "1h"

[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
users = [
  {{ address = "ana@contoso.example", forward_to = "ana@home.example" }},
  {{ address = "olaf@contoso.example", forward_to = "olaf@home.example", forward_only = true }},
]
routes = [ {{ domain = "contoso.example", host = "{rx}" }} ]

[[tenants]]
name = "fabrikam"
forwarding = "listed"
forwarding_domains = ["partner.example"]
domains = [ {{ name = "fabrikam.example", kind = "authoritative", verified = true }} ]
users = [
  {{ address = "fred@fabrikam.example", forward_to = "fred@home.example" }},
  {{ address = "gina@fabrikam.example", forward_to = "gina@partner.example", forward_only = true }},
]
routes = [ {{ domain = "fabrikam.example", host = "{rx}" }} ]

[[tenants]]
name = "lapsed"
subscription_ends = "2020-01-31"
domains = [ {{ name = "lapsed.example", kind = "authoritative", verified = true }} ]
users = [ {{ address = "lars@lapsed.example", forward_to = "lars@home.example", forward_only = true }} ]
routes = [ {{ domain = "lapsed.example", host = "{rx}" }} ]
"#
    )
}

/// Sends `body` from `from` to `to` as an outside server would (no connector matches).
fn inbound(relay: &Relay, from: &str, to: &str, body: &str) -> Reply {
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO mx.outside.example").code, 250);
    c.transaction(from, &[to], body)
}

/// The DKIM records `relayward dkim show` lists for a domain, once both keys exist.
fn dkim_records(relay: &Relay, tenant: &str, domain: &str) -> Vec<(String, String)> {
    wait_for(Duration::from_secs(60), || {
        let out = relay.cli(&["dkim", "show", tenant, domain]);
        let records: Vec<(String, String)> = out
            .lines()
            .filter(|l| l.starts_with("active"))
            .filter_map(|l| {
                let (head, rest) = l.split_once(" TXT \"")?;
                let name = head.split_whitespace().last()?.to_string();
                Some((name, rest.trim_end_matches('"').to_string()))
            })
            .collect();
        (records.len() == 2).then_some(records)
    })
    .expect("two active DKIM keys (RSA and Ed25519) for the domain")
}

/// dkimpy's verdict on a message, or `None` (loudly) where dkimpy is missing outside CI.
fn dkimpy(message: &str, records: &[(String, String)]) -> Option<serde_json::Value> {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 with dkimpy and PyNaCl is required in CI (scripts/test installs them)"
        );
        eprintln!("SKIPPED the dkimpy check: pip install dkimpy pynacl");
        return None;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let msg = dir.path().join("forwarded.eml");
    let rec = dir.path().join("records.json");
    std::fs::write(&msg, message).expect("write");
    let map: serde_json::Map<String, serde_json::Value> = records
        .iter()
        .map(|(n, r)| (n.clone(), serde_json::Value::String(r.clone())))
        .collect();
    std::fs::write(&rec, serde_json::Value::Object(map).to_string()).expect("write");
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dkim/tests/dkimpy_check.py"
        ))
        .arg(&msg)
        .arg(&rec)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "dkimpy_check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("json from dkimpy_check"))
}

/// `LETTER` as outside.example's own server signs it, with the key record to publish.
fn signed_letter() -> (String, (String, String)) {
    use relayward_dkim::{Algorithm, Signer, SigningKey, dns_record, generate, sign};
    let g = generate(Algorithm::Ed25519Sha256).expect("key");
    let key = SigningKey::from_pkcs8(g.algorithm, &g.private_pkcs8).expect("load");
    let signer = Signer {
        domain: "outside.example",
        selector: "mail",
        key: &key,
    };
    let sig = sign(LETTER.as_bytes(), &signer, 1_795_000_000).expect("sign");
    (
        format!("{sig}{LETTER}"),
        (
            "mail._domainkey.outside.example".to_string(),
            dns_record(g.algorithm, &g.public),
        ),
    )
}

/// A forwarded copy the target refuses: the NDR the relay writes goes to the original sender,
/// not to the SRS address (which is in the forwarding tenant's domain, and would go to its own
/// server by the domain's route).
#[test]
fn the_relays_own_report_on_a_forwarded_copy_goes_to_the_original_sender() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "{rx}"
retry_schedule = ["1s"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
users = [ {{ address = "ana@contoso.example", forward_to = "reject-ana@home.example", forward_only = true }} ]
routes = [ {{ domain = "contoso.example", host = "{rx}" }} ]
"#,
        rx = rx.addr
    ));
    let r = inbound(&relay, "ext@outside.example", "ana@contoso.example", LETTER);
    assert_eq!(r.code, 250, "{r:?}");
    let ndr = wait_for(Duration::from_secs(20), || {
        rx.messages().into_iter().find(|m| m.mail_from.is_empty())
    })
    .expect("an NDR");
    assert_eq!(ndr.rcpts, ["ext@outside.example"], "{}", ndr.data);
    assert!(
        ndr.data.contains("To: <ext@outside.example>\r\n"),
        "{}",
        ndr.data
    );
    assert!(
        ndr.data
            .contains("Final-Recipient: rfc822; reject-ana@home.example"),
        "{}",
        ndr.data
    );
}

#[test]
fn a_forwarded_copy_is_srs_rewritten_signed_and_sealed_and_its_bounce_finds_the_sender() {
    let rx = Receiver::start(false);
    // The sender's domain signs its mail and publishes its key in (our local) DNS.
    let (letter, (key_name, key_record)) = signed_letter();
    let dns = Dns::start(vec![]);
    dns.set(&key_name, "TXT", Answer::Txt(vec![key_record.clone()]));
    let relay = Relay::start(&config(rx.addr).replacen(
        "[delivery]\n",
        &format!("[delivery]\ndns_resolver = \"{}\"\n", dns.addr),
        1,
    ));
    let mut records = dkim_records(&relay, "contoso", "contoso.example");

    let r = inbound(
        &relay,
        "ext@outside.example",
        "ana@contoso.example",
        &letter,
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(2, Duration::from_secs(20));
    // Deliver and forward: the mailbox copy goes to the tenant's server as it came...
    let mailbox = got
        .iter()
        .find(|m| m.rcpts == ["ana@contoso.example"])
        .expect("the mailbox copy");
    assert_eq!(mailbox.mail_from, "ext@outside.example");
    // ...and the forwarded copy leaves with a sender in the tenant's own domain.
    let fwd = got
        .iter()
        .find(|m| m.rcpts == ["ana@home.example"])
        .expect("the forwarded copy");
    assert!(
        fwd.mail_from.starts_with("ana+SRS=")
            && fwd
                .mail_from
                .ends_with("=outside.example=ext@contoso.example"),
        "{}",
        fwd.mail_from
    );
    assert!(
        fwd.data
            .contains("X-Relayward-Loop: ana@contoso.example\r\n")
    );
    // The results we saw at receipt travel with the copy: the sender's valid signature.
    assert!(
        fwd.data.contains(
            "ARC-Authentication-Results: i=1; relay.test;\r\n\tdkim=pass header.d=outside.example header.s=mail;\r\n\tarc=none\r\n"
        ),
        "{}",
        fwd.data
    );
    assert!(
        fwd.data
            .contains(&LETTER[LETTER.find("\r\n\r\n").unwrap_or(0)..])
    );

    // An independent verifier agrees: our two signatures (d=contoso.example), the sender's own
    // (forwarding left the body and signed fields alone) and the ARC chain.
    records.push((key_name, key_record));
    if let Some(verdict) = dkimpy(&fwd.data, &records) {
        let sigs = verdict["dkim"].as_array().expect("signatures");
        assert_eq!(sigs.len(), 3, "{verdict}");
        for s in sigs {
            assert_eq!(s["ok"], true, "{verdict}");
        }
        let domains: Vec<&str> = sigs.iter().filter_map(|s| s["d"].as_str()).collect();
        assert_eq!(
            domains,
            ["contoso.example", "contoso.example", "outside.example"],
            "{verdict}"
        );
        let algs: Vec<&str> = sigs.iter().filter_map(|s| s["a"].as_str()).collect();
        assert!(
            algs.contains(&"rsa-sha256") && algs.contains(&"ed25519-sha256"),
            "{verdict}"
        );
        assert_eq!(verdict["arc"]["cv"], "pass", "{verdict}");
    }

    // The mailbox copy is not ours to sign (its From is outside.example): it keeps the
    // sender's signature and gets none of ours.
    assert!(mailbox.data.contains("d=outside.example"));
    assert!(!mailbox.data.contains("d=contoso.example"));

    // The home server bounces the copy: the bounce reaches the original sender.
    let bounce =
        "From: MAILER-DAEMON@home.example\r\nSubject: Undeliverable\r\n\r\nMailbox full.\r\n";
    let r = inbound(&relay, "", &fwd.mail_from, bounce);
    assert_eq!(r.code, 250, "{r:?}");
    let back = wait_for(Duration::from_secs(20), || {
        rx.messages()
            .into_iter()
            .find(|m| m.rcpts == ["ext@outside.example"])
    })
    .expect("the bounce reaches ext@outside.example");
    assert_eq!(back.mail_from, "");
    assert!(back.data.contains("Mailbox full."));

    // A forged or altered SRS address is refused at RCPT.
    let forged = fwd.mail_from.replace("=ext@", "=ceo@");
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO mx.attacker.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<>").code, 250);
    let r = c.cmd(&format!("RCPT TO:<{forged}>"));
    assert_eq!(r.code, 550, "{r:?}");
    assert!(
        r.text().contains("5.7.1 Invalid forwarding address"),
        "{r:?}"
    );
    let r = c.cmd("RCPT TO:<ana+SRS=abcdefgh=zz=victim.example=boss@contoso.example>");
    assert_eq!(r.code, 550, "{r:?}");

    // The trace tells what happened to the recipient.
    let trace = relay.cli(&["trace", "--recipient", "ana@contoso.example"]);
    assert!(trace.contains("forwarded"), "{trace}");
}

#[test]
fn forward_only_policy_and_restrictions_decide_whether_a_copy_leaves() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&config(rx.addr));

    // Forward only: the copy leaves, no mailbox copy is kept.
    let r = inbound(
        &relay,
        "ext@outside.example",
        "olaf@contoso.example",
        LETTER,
    );
    assert_eq!(r.code, 250, "{r:?}");
    // Listed domains: gina's partner.example is allowed, fred's home.example is not.
    assert_eq!(
        inbound(
            &relay,
            "ext@outside.example",
            "gina@fabrikam.example",
            LETTER
        )
        .code,
        250
    );
    assert_eq!(
        inbound(
            &relay,
            "ext@outside.example",
            "fred@fabrikam.example",
            LETTER
        )
        .code,
        250
    );
    // A lapsed tenant (5.7.705) forwards nothing; the message stays in the mailbox.
    assert_eq!(
        inbound(&relay, "ext@outside.example", "lars@lapsed.example", LETTER).code,
        250
    );

    // olaf@home, gina@partner, fred's mailbox copy, fred's NDR, lars's mailbox copy, lars's NDR.
    let got = rx.wait(6, Duration::from_secs(30));
    let to = |a: &str| got.iter().filter(|m| m.rcpts == [a]).count();
    assert_eq!(to("olaf@home.example"), 1);
    assert_eq!(to("olaf@contoso.example"), 0, "forward only keeps no copy");
    assert_eq!(to("gina@partner.example"), 1);
    assert_eq!(
        to("fred@home.example"),
        0,
        "forwarding to home.example is not allowed"
    );
    assert_eq!(
        to("lars@home.example"),
        0,
        "a tenant under 5.7.705 forwards nothing"
    );

    let ndr_to = |user: &str| {
        got.iter()
            .find(|m| m.rcpts == [user] && m.mail_from.is_empty())
            .unwrap_or_else(|| panic!("an NDR to {user}: {got:#?}"))
    };
    let fred_ndr = ndr_to("fred@fabrikam.example");
    assert!(
        fred_ndr.data.contains("Status: 5.7.520"),
        "{}",
        fred_ndr.data
    );
    assert!(
        fred_ndr
            .data
            .contains("Final-Recipient: rfc822; fred@home.example")
    );
    assert!(fred_ndr.data.contains("allow"), "{}", fred_ndr.data);
    let lars_ndr = ndr_to("lars@lapsed.example");
    assert!(
        lars_ndr.data.contains("Status: 5.7.705"),
        "{}",
        lars_ndr.data
    );
    assert!(
        lars_ndr
            .data
            .contains("550 5.7.705 Access denied, tenant has exceeded threshold"),
        "{}",
        lars_ndr.data
    );
    // Refused forwards keep the mailbox copy even for forward-only users.
    let kept = |a: &str| {
        got.iter()
            .any(|m| m.rcpts == [a] && m.mail_from == "ext@outside.example")
    };
    assert!(kept("fred@fabrikam.example"));
    assert!(kept("lars@lapsed.example"));

    // Forwarded copies count toward the tenant's volume, as registered-domain mail.
    // (The relay stores its counters about twice a second.)
    let counter = |name: &str| {
        relay
            .cli(&["counters", "contoso", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|c| c["subject"] == "tenant" && c["counter"] == name)
            .and_then(|c| c["value"].as_f64())
            .unwrap_or_else(|| panic!("tenant counter {name}"))
    };
    wait_for(Duration::from_secs(5), || {
        (counter("messages_24h") >= 1.0).then_some(())
    })
    .expect("the forwarded copy counted toward the tenant's volume");
    assert_eq!(counter("unregistered_messages_24h"), 0.0);

    // The trace finds a forward-only user's message by the user, with SPEC section 9's
    // "Expanded": the mail left only as its forwarded copy. A refused forward leaves the user's
    // own copy, which goes on as any other.
    let traced = |args: &[&str]| {
        let mut a = vec!["trace", "--json"];
        a.extend_from_slice(args);
        relay.cli(&a)
    };
    let olaf = wait_for(Duration::from_secs(10), || {
        let out = traced(&["--recipient", "olaf@contoso.example"]);
        out.contains("Expanded").then_some(out)
    })
    .expect("the forward-only user's message in the trace, Expanded");
    assert!(olaf.contains("expanded"), "{olaf}");
    let expanded = traced(&["--status", "Expanded"]);
    assert!(
        expanded.contains("olaf@contoso.example") && expanded.contains("gina@fabrikam.example"),
        "{expanded}"
    );
    assert!(!expanded.contains("fred@fabrikam.example"), "{expanded}");
}

#[test]
fn copies_past_the_forwarding_bound_are_refused_and_their_users_keep_the_message() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&config(rx.addr).replacen(
        "[delivery]\n",
        "[forwarding]\nmax_bytes_per_message = \"1MB\"\n[delivery]\n",
        1,
    ));
    // 600 KB to ana and olaf: ana's copy fits in the 1 MB bound, olaf's would pass it.
    let big = format!("{LETTER}{}", ("z".repeat(998) + "\r\n").repeat(600));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO mx.outside.example").code, 250);
    let r = c.mail(
        "ext@outside.example",
        &["ana@contoso.example", "olaf@contoso.example"],
        &big,
    );
    assert_eq!(r.code, 250, "{r:?}");
    // The message for both mailboxes (olaf's forward was refused, so he keeps it), ana's copy
    // at home, and olaf's NDR.
    let got = rx.wait(3, Duration::from_secs(30));
    assert!(got.iter().any(|m| m.rcpts == vec!["ana@home.example"]));
    assert!(
        got.iter()
            .any(|m| m.rcpts == vec!["ana@contoso.example", "olaf@contoso.example"])
    );
    // Nothing else arrives: olaf's copy did not leave.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.messages().len(), 3);
    let ndr = got
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("olaf's NDR");
    assert_eq!(ndr.rcpts, vec!["olaf@contoso.example"]);
    assert!(ndr.data.contains("Status: 5.3.4"), "{}", ndr.data);
    assert!(
        ndr.data
            .contains("too large to forward to so many addresses at once"),
        "{}",
        ndr.data
    );
    // It returns the message's header section, not its 600 KB.
    assert!(ndr.data.contains("Subject: Lunch on Friday"));
    assert!(ndr.data.len() < 100_000, "{} bytes", ndr.data.len());
}

#[test]
fn a_forwarding_loop_between_two_tenants_is_stopped() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        "[delivery]\nsmart_host = \"{}\"\nretry_schedule = [\"1s\"]\nexpire_after = \"1h\"\n",
        rx.addr
    ));
    // Two tenants whose users forward to each other. Both tenants' own server is one other
    // mail server (a second relay, by another name), which sends whatever it gets for either
    // domain back through this relay, as a server that relays all its mail here does.
    let server = Relay::start(&format!(
        "[smtp]\nhostname = \"mail.test\"\n[delivery]\nretry_schedule = [\"1s\"]\n{}",
        routed_tenant(&[("a.example", relay.relay), ("b.example", relay.relay),])
    ));
    let theirs = server.relay.to_string();
    let pairs = [
        ("tenant-a", "a.example", "ua@a.example", "ub@b.example"),
        ("tenant-b", "b.example", "ub@b.example", "ua@a.example"),
    ];
    for (t, d, _, _) in pairs {
        relay.cli(&["tenant", "add", t]);
        relay.cli(&["domain", "add", t, d, "--verified"]);
        relay.cli(&["route", "add", t, d, &theirs]);
    }
    for (t, _, user, other) in pairs {
        relay.cli(&[
            "user",
            "add",
            t,
            user,
            "--forward-to",
            other,
            "--forward-only",
        ]);
    }
    // The running relay reloads its directory whole; once the last user added is known,
    // everything added before it is too.
    wait_for(Duration::from_secs(10), || {
        let mut c = relay.client();
        c.cmd("EHLO probe.example");
        c.cmd("MAIL FROM:<probe@outside.example>");
        (c.cmd("RCPT TO:<ub@b.example>").code == 250).then_some(())
    })
    .expect("tenant-b's user is known");

    let r = inbound(&relay, "ext@outside.example", "ua@a.example", LETTER);
    assert_eq!(r.code, 250, "{r:?}");
    // ua → ub → ua: the second arrival for ua is refused with a clear reply, and the refusal
    // (the other server's NDR) travels back through both SRS hops to the original sender.
    let ndr = wait_for(Duration::from_secs(30), || {
        rx.messages()
            .into_iter()
            .find(|m| m.rcpts == ["ext@outside.example"])
    })
    .unwrap_or_else(|| {
        panic!(
            "an NDR reaches the original sender; this relay's trace:\n{}\nthe other server's:\n{}",
            relay.cli(&["trace", "--json"]),
            server.cli(&["trace", "--json"])
        )
    });
    assert!(ndr.data.contains("Status: 5.4.6"), "{}", ndr.data);
    assert!(
        ndr.data.contains("Forwarding loop detected"),
        "{}",
        ndr.data
    );
    std::thread::sleep(Duration::from_secs(3));
    let all = rx.messages();
    assert_eq!(all.len(), 1, "nothing else arrives: {all:#?}");
    // The refused arrival is in tenant-a's trace: ua Failed, with the reply the loop got
    // (tenant-b's trace has its copy, failed with that reply when delivered).
    let refused = relay.cli(&[
        "trace",
        "--tenant",
        "tenant-a",
        "--recipient",
        "ua@a.example",
        "--status",
        "Failed",
        "--json",
    ]);
    assert!(
        refused.lines().count() == 1
            && refused.contains("\"kind\":\"refused\"")
            && refused.contains("554 5.4.6"),
        "{refused}"
    );
}

#[test]
fn a_copy_forwarded_the_moment_the_relay_is_ready_is_signed_and_sealed() {
    let rx = Receiver::start(false);
    // No waiting for keys: the message goes in right after the ready line.
    let relay = Relay::start(&config(rx.addr));
    let r = inbound(&relay, "ext@outside.example", "ana@contoso.example", LETTER);
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(2, Duration::from_secs(20));
    let fwd = got
        .iter()
        .find(|m| m.rcpts == ["ana@home.example"])
        .expect("the forwarded copy");
    let count = |name: &str| {
        fwd.data.matches(&format!("\r\n{name}: ")).count()
            + usize::from(fwd.data.starts_with(&format!("{name}: ")))
    };
    assert_eq!(count("DKIM-Signature"), 2, "RSA and Ed25519: {}", fwd.data);
    assert_eq!(count("ARC-Authentication-Results"), 1, "{}", fwd.data);
    assert_eq!(count("ARC-Message-Signature"), 1, "{}", fwd.data);
    assert_eq!(count("ARC-Seal"), 1, "{}", fwd.data);
    let records = dkim_records(&relay, "contoso", "contoso.example");
    if let Some(verdict) = dkimpy(&fwd.data, &records) {
        let sigs = verdict["dkim"].as_array().expect("signatures");
        assert!(sigs.iter().all(|s| s["ok"] == true), "{verdict}");
        assert_eq!(verdict["arc"]["cv"], "pass", "{verdict}");
    }
}

#[test]
fn a_copy_that_cannot_be_sealed_leaves_without_a_partial_arc_set() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        "[delivery]\nsmart_host = \"{}\"\nretry_schedule = [\"1s\"]\n",
        rx.addr
    ));
    let me = rx.addr.to_string();
    relay.cli(&["tenant", "add", "northwind"]);
    relay.cli(&[
        "domain",
        "add",
        "northwind",
        "northwind.example",
        "--verified",
    ]);
    relay.cli(&["route", "add", "northwind", "northwind.example", &me]);
    relay.cli(&[
        "user",
        "add",
        "northwind",
        "nina@northwind.example",
        "--forward-to",
        "nina@home.example",
    ]);
    // Its keys are gone (a broken key store): nothing can sign or seal for the domain.
    let db = rusqlite::Connection::open(relay.dir.path().join("data/relayward.sqlite"))
        .expect("open the database");
    db.execute(
        "DELETE FROM dkim_keys WHERE domain = 'northwind.example'",
        [],
    )
    .expect("delete keys");
    relay.wait_directory();
    let r = inbound(
        &relay,
        "ext@outside.example",
        "nina@northwind.example",
        LETTER,
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(2, Duration::from_secs(20));
    let fwd = got
        .iter()
        .find(|m| m.rcpts == ["nina@home.example"])
        .expect("the forwarded copy still leaves");
    assert!(
        !fwd.data.contains("ARC-"),
        "no incomplete ARC set: {}",
        fwd.data
    );
    assert!(
        fwd.data
            .contains("X-Relayward-Loop: nina@northwind.example")
    );
}
