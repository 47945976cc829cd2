//! NDRs as a mail program sees them: each status code the relay reports, in each language,
//! built and then read back by an independent parser (Python's `email` package, through
//! `tests/check_ndr.py`) and checked field by field; and snapshots of the texts people read, so
//! a change of wording is a reviewed change (`UPDATE_SNAPSHOTS=1 cargo test -p relayward-dsn`
//! rewrites them).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

use relayward_dsn::{NdrInput, ReportKind, build_ndr, reportable, texts};
use relayward_spool::{Envelope, RcptState, Recipient, Ret};
use serde_json::Value;

/// Every status code the relay writes reports for, with a reply as a server would give it.
const CASES: &[(&str, &str, Option<&str>)] = &[
    (
        "5.7.750",
        "550 5.7.750 Service unavailable. Client blocked from sending from unregistered domains",
        None,
    ),
    (
        "5.7.705",
        "550 5.7.705 Access denied, tenant has exceeded threshold",
        None,
    ),
    (
        "5.7.711",
        "550 5.7.711 Access denied, bad inbound connector",
        None,
    ),
    (
        "5.1.8",
        "550 5.1.8 Access denied, bad outbound sender",
        None,
    ),
    (
        "5.1.90",
        "550 5.1.90 Your message can't be sent because you've reached your daily limit for message recipients",
        None,
    ),
    (
        "5.7.520",
        "550 5.7.520 Access denied, Your organization does not allow external forwarding",
        None,
    ),
    (
        "5.7.64",
        "550 5.7.64 TenantAttribution; Relay Access Denied",
        None,
    ),
    (
        "5.7.60",
        "550 5.7.60 Client does not have permissions to send as this sender",
        None,
    ),
    (
        "5.4.7",
        "554 5.4.7 Delivery time expired after 48 hours of retries; last error: 451 4.3.0 try later",
        Some("mx.remote.example"),
    ),
    (
        "5.1.1",
        "550 5.1.1 <dana@remote.example>: Recipient address rejected: User unknown",
        Some("mx.remote.example"),
    ),
    ("5.2.2", "552 5.2.2 Mailbox full", Some("mx.remote.example")),
    (
        "5.3.4",
        "552 5.3.4 Message size exceeds fixed limit",
        Some("mx.remote.example"),
    ),
    (
        "5.7.1",
        "554 5.7.1 Service unavailable; client host blocked using a block list",
        Some("mx.remote.example"),
    ),
    (
        "5.1.2",
        "550 5.1.2 Recipient domain not found (remote.example does not exist)",
        None,
    ),
    (
        "5.1.10",
        "556 5.1.10 The domain remote.example accepts no mail (null MX)",
        None,
    ),
];

const ORIGINAL: &[u8] = b"Received: from laptop.contoso.example ([192.0.2.7])\r\n\tby relay.example.net (Relayward) with ESMTPSA id M1;\r\n\tSun, 22 Nov 2026 09:00:00 +0000\r\nReceived: from [10.0.0.5] by laptop.contoso.example; Sun, 22 Nov 2026 08:59:58 +0000\r\nFrom: Alice <alice@contoso.example>\r\nTo: dana@remote.example\r\nSubject: Quarterly figures\r\nMessage-ID: <q3@contoso.example>\r\n\r\nThe figures are attached.\r\n";

fn envelope(reply: &str, remote: Option<&str>, ret: Ret) -> Envelope {
    let mut failed = Recipient::new("dana@remote.example");
    failed.orcpt = Some("rfc822;Dana@Remote.example".into());
    failed.state = RcptState::Failed {
        reply: reply.into(),
        remote: remote.map(str::to_string),
    };
    Envelope {
        id: "M1".into(),
        received_at: 1_795_338_000,
        mail_from: "alice@contoso.example".into(),
        ret: Some(ret),
        env_id: Some("ENV-42".into()),
        smtputf8: false,
        body_8bit: false,
        tenant: Some("contoso".into()),
        origin: "user:alice@contoso.example".into(),
        client_ip: "192.0.2.7".into(),
        helo: "laptop.contoso.example".into(),
        recipients: vec![failed, Recipient::new("ok@remote.example")],
        attempts: 3,
        next_attempt: 0,
        is_report: false,
        delay_notified: false,
        high_risk: String::new(),
        held: false,
    }
}

fn render(reply: &str, remote: Option<&str>, ret: Ret, language: &str) -> Vec<u8> {
    let env = envelope(reply, remote, ret);
    let failed = reportable(&env);
    report(&env, &failed, language, ReportKind::Failure)
}

fn report(env: &Envelope, recipients: &[&Recipient], language: &str, kind: ReportKind) -> Vec<u8> {
    build_ndr(&NdrInput {
        reporting_mta: "relay.example.net",
        env,
        to: &env.mail_from,
        failed: recipients,
        original: ORIGINAL,
        date: "Sun, 22 Nov 2026 10:00:00 +0000".into(),
        arrival_date: "Sun, 22 Nov 2026 09:00:00 +0000".into(),
        message_id: "N1@relay.example.net".into(),
        language,
        expire_hours: 48,
        kind,
    })
}

fn python_reads(ndr: &[u8]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ndr.eml");
    std::fs::write(&file, ndr).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/check_ndr.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&file)
        .output()
        .expect("python3 runs (it is on every machine of this kind)");
    assert!(
        out.status.success(),
        "check_ndr.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn every_code_in_every_language_reads_back_field_by_field() {
    for language in texts::languages() {
        let t = texts::texts(language).unwrap();
        for (code, reply, remote) in CASES {
            let ndr = render(reply, *remote, Ret::Hdrs, language);
            let v = python_reads(&ndr);
            let at = format!("{language} {code}");
            assert_eq!(v["defects"], serde_json::json!([]), "{at}");
            assert_eq!(v["content_type"], "multipart/report", "{at}");
            assert_eq!(v["report_type"], "delivery-status", "{at}");
            assert_eq!(v["to"], "alice@contoso.example", "{at}");
            assert_eq!(v["auto_submitted"], "auto-replied", "{at}");
            assert_eq!(v["language"], language, "{at}");
            assert_eq!(
                v["subject"],
                texts::fill(&t.subject, &[("subject", "Quarterly figures")]),
                "{at}"
            );
            assert_eq!(
                v["parts"],
                serde_json::json!([
                    "multipart/alternative",
                    "message/delivery-status",
                    "text/rfc822-headers"
                ]),
                "{at}"
            );
            assert_eq!(
                v["human_parts"],
                serde_json::json!(["text/plain", "text/html"]),
                "{at}"
            );
            let pm = &v["per_message"];
            assert_eq!(pm["Reporting-MTA"], "dns; relay.example.net", "{at}");
            assert_eq!(pm["Original-Envelope-Id"], "ENV-42", "{at}");
            assert_eq!(
                pm["Arrival-Date"], "Sun, 22 Nov 2026 09:00:00 +0000",
                "{at}"
            );
            let rcpts = v["per_recipient"].as_array().unwrap();
            assert_eq!(
                rcpts.len(),
                1,
                "{at}: only the failed recipient is reported"
            );
            let r = &rcpts[0];
            assert_eq!(r["Final-Recipient"], "rfc822; dana@remote.example", "{at}");
            assert_eq!(
                r["Original-Recipient"], "rfc822;Dana@Remote.example",
                "{at}"
            );
            assert_eq!(r["Action"], "failed", "{at}");
            assert_eq!(r["Status"], *code, "{at}");
            assert_eq!(r["Diagnostic-Code"], format!("smtp; {reply}"), "{at}");
            assert_eq!(
                r["Last-Attempt-Date"], "Sun, 22 Nov 2026 10:00:00 +0000",
                "{at}"
            );
            match remote {
                Some(m) => assert_eq!(r["Remote-MTA"], format!("dns; {m}"), "{at}"),
                None => assert!(r.get("Remote-MTA").is_none(), "{at}"),
            }
            // The part for people: this code's explanation, who acts, the steps, the details,
            // the hops oldest first; the HTML says the same.
            let plain = v["plain"].as_str().unwrap();
            let html = v["html"].as_str().unwrap();
            let text = t.code(code);
            let what = texts::fill(
                &text.what,
                &[
                    ("recipient", "dana@remote.example"),
                    ("domain", "remote.example"),
                    ("hours", "48"),
                ],
            );
            assert!(plain.contains(&what), "{at}: {plain}");
            assert!(plain.contains(t.who(&text.who)), "{at}");
            for (i, step) in text.steps.iter().enumerate() {
                assert!(
                    plain.contains(&format!("{}. {step}", i + 1)),
                    "{at}: step {i}"
                );
            }
            assert!(plain.contains(&format!("{}: {code}", t.status)), "{at}");
            assert!(plain.contains(reply), "{at}");
            let hop1 = plain
                .find("1. from [10.0.0.5] by laptop.contoso.example")
                .unwrap();
            let hop2 = plain
                .find("2. from laptop.contoso.example ([192.0.2.7])")
                .unwrap();
            assert!(hop1 < hop2, "{at}: hops oldest first");
            assert!(html.contains(&format!("<h1>{}</h1>", t.title)), "{at}");
            assert!(html.contains("<ol>"), "{at}");
            // RET=HDRS: headers only.
            assert!(
                v["returned_text"]
                    .as_str()
                    .unwrap()
                    .contains("Subject: Quarterly figures")
            );
            assert!(
                !v["returned_text"].as_str().unwrap().contains("attached."),
                "{at}"
            );
        }
    }
}

#[test]
fn delay_and_success_notices_say_delayed_and_relayed() {
    let mut env = envelope("550 5.1.1 unused", None, Ret::Hdrs);
    env.recipients[0].state = RcptState::Pending {
        last_reply: Some("451 4.2.0 Greylisted, try again later".into()),
    };
    let pending = vec![&env.recipients[0]];
    let kind = ReportKind::Delay {
        retry_until: "Tue, 24 Nov 2026 09:00:00 +0000".into(),
    };
    let v = python_reads(&report(&env, &pending, "en", kind));
    assert_eq!(v["defects"], serde_json::json!([]));
    assert_eq!(v["subject"], "Delayed: Quarterly figures");
    let r = &v["per_recipient"][0];
    assert_eq!(r["Action"], "delayed");
    assert_eq!(r["Status"], "4.2.0");
    assert_eq!(r["Will-Retry-Until"], "Tue, 24 Nov 2026 09:00:00 +0000");
    assert!(
        v["plain"]
            .as_str()
            .unwrap()
            .contains("you don't need to do anything now")
    );

    env.recipients[0].state = RcptState::Delivered {
        reply: "250 2.0.0 Ok: queued as 4XyZ".into(),
        remote: "mx.remote.example".into(),
    };
    let delivered = vec![&env.recipients[0]];
    let v = python_reads(&report(&env, &delivered, "es", ReportKind::Success));
    assert_eq!(v["subject"], "Entregado: Quarterly figures");
    let r = &v["per_recipient"][0];
    assert_eq!(r["Action"], "relayed");
    assert_eq!(r["Status"], "2.0.0");
    assert_eq!(r["Remote-MTA"], "dns; mx.remote.example");
}

#[test]
fn ret_full_returns_the_whole_message() {
    let ndr = render(CASES[9].1, CASES[9].2, Ret::Full, "es");
    let v = python_reads(&ndr);
    assert_eq!(v["returned_type"], "message/rfc822");
    assert_eq!(v["returned_subject"], "Quarterly figures");
    assert!(
        v["returned_body"]
            .as_str()
            .unwrap()
            .contains("The figures are attached.")
    );
    assert_eq!(v["subject"], "No se pudo entregar: Quarterly figures");
}

/// The plain-text part for every code, one file per language: wording changes show up in the
/// diff of `tests/snapshots/<language>.txt`.
#[test]
fn rendered_texts_match_their_snapshots() {
    let update = std::env::var("UPDATE_SNAPSHOTS").is_ok_and(|v| v == "1");
    for language in texts::languages() {
        let mut all = String::new();
        for (code, reply, remote) in CASES {
            let ndr = render(reply, *remote, Ret::Hdrs, language);
            let v = python_reads(&ndr);
            all.push_str(&format!(
                "======== {code}\n{}\n",
                v["plain"].as_str().unwrap().replace("\r\n", "\n")
            ));
        }
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/snapshots")
            .join(format!("{language}.txt"));
        if update {
            std::fs::write(&path, &all).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: run UPDATE_SNAPSHOTS=1 cargo test -p relayward-dsn and review it",
                path.display()
            )
        });
        if expected != all {
            let first = expected
                .lines()
                .zip(all.lines())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            panic!(
                "{language}: the rendered text differs from {} at line {}:\n  snapshot: {:?}\n  now:      {:?}\n(review, then UPDATE_SNAPSHOTS=1 cargo test -p relayward-dsn)",
                path.display(),
                first + 1,
                expected.lines().nth(first),
                all.lines().nth(first)
            );
        }
    }
}
