//! Mail flows: delivery, partial failure, retries, expiry, MX lookup, TLS, BDAT, pipelining,
//! attribution and the trace.

use std::time::Duration;

use crate::util::*;

const MSG: &str = "Subject: quarterly report\r\nFrom: alice@contoso.example\r\nMessage-ID: <q1@contoso.example>\r\n\r\nHello Bob,\r\n.a line that starts with a dot\r\nBye\r\n";

#[test]
fn a_connector_message_is_delivered_with_its_body_intact_and_traced() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let r = c.mail("alice@contoso.example", &["bob@remote.example"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text().rsplit(' ').next().expect("id").to_string();
    assert!(r.text().contains("queued as"), "{r:?}");

    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(got[0].mail_from, "alice@contoso.example");
    assert_eq!(got[0].rcpts, vec!["bob@remote.example"]);
    // Our signatures on top (the keys exist before the relay listens), then our Received line.
    let data = &got[0].data;
    assert!(
        data.starts_with("DKIM-Signature: ") && data.contains("d=contoso.example"),
        "{data}"
    );
    let received = data.find("\r\nReceived: ").map_or("", |i| &data[i + 2..]);
    assert!(
        received.starts_with("Received: from onprem.contoso.example ([127.0.0.1])"),
        "{data}"
    );
    assert!(got[0].data.contains(&format!("id {id};")));
    assert!(
        got[0]
            .data
            .contains("\r\n.a line that starts with a dot\r\n"),
        "dot-unstuffing and re-stuffing keep the line"
    );
    assert_eq!(got[0].helo, "relay.test");

    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--id", &id]);
        t.contains("Delivered").then_some(t)
    })
    .expect("trace shows the delivery");
    for event in ["received", "attributed", "queued", "attempt", "delivered"] {
        assert!(trace.contains(event), "trace lacks {event}: {trace}");
    }
    assert!(trace.contains("connector:on-prem"), "{trace}");
    assert!(
        trace.lines().all(|l| l == l.trim_end()),
        "no blanks at the ends of lines: {trace:?}"
    );
    let by_recipient = relay.cli(&[
        "trace",
        "--recipient",
        "BOB@remote.example",
        "--status",
        "Delivered",
    ]);
    assert!(by_recipient.contains(&id), "{by_recipient}");
}

#[test]
fn stock_client_curl_sends_through_the_relay() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIP: curl is not installed");
        return;
    }
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("m.eml");
    std::fs::write(&file, MSG).expect("write");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--url",
            &format!("smtp://{}", relay.relay),
            "--mail-from",
            "alice@contoso.example",
            "--mail-rcpt",
            "carol@remote.example",
            "--upload-file",
        ])
        .arg(&file)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(got[0].rcpts, vec!["carol@remote.example"]);
}

#[test]
fn partial_failure_delivers_the_rest_and_reports_the_failed_recipient() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.mail(
        "alice@contoso.example",
        &[
            "bob@remote.example",
            "reject-me@remote.example",
            "dan@remote.example",
        ],
        MSG,
    );
    assert_eq!(r.code, 250);
    // The message to the two good recipients, then the NDR to alice.
    let got = rx.wait(2, Duration::from_secs(20));
    let delivered = got
        .iter()
        .find(|m| m.mail_from == "alice@contoso.example")
        .expect("message");
    assert_eq!(
        delivered.rcpts,
        vec!["bob@remote.example", "dan@remote.example"]
    );
    let ndr = got
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("an NDR from the null sender");
    assert_eq!(ndr.rcpts, vec!["alice@contoso.example"]);
    assert!(
        ndr.data
            .contains("multipart/report; report-type=delivery-status")
    );
    assert!(
        ndr.data
            .contains("Final-Recipient: rfc822; reject-me@remote.example")
    );
    assert!(ndr.data.contains("Status: 5.1.1"));
    assert!(
        ndr.data
            .contains("Diagnostic-Code: smtp; 550 5.1.1 no such user here")
    );
    assert!(
        !ndr.data
            .contains("Final-Recipient: rfc822; bob@remote.example"),
        "only failures are reported"
    );
    assert_eq!(relay.metric("relayward_ndr_total"), 1);
}

/// A next hop that answers EHLO with the relay's own name is the relay itself (a tenant's
/// domain whose MX is the relay, with no route to the tenant's server): the mail fails at once
/// with 5.4.6 and says why, rather than going round until the hop limit or waiting for days.
#[test]
fn mail_that_would_loop_back_to_the_relay_fails_at_once() {
    let rx = Receiver::start(false).answering_as("RELAY.test");
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.mail("alice@contoso.example", &["bob@remote.example"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text().rsplit(' ').next().expect("id").to_string();
    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--id", &id]);
        t.contains("Failed").then_some(t)
    })
    .expect("the message fails at its first attempt");
    assert!(
        trace.contains("554 5.4.6")
            && trace.contains("answers as RELAY.test, this relay's own name"),
        "{trace}"
    );
    assert!(rx.messages().is_empty(), "nothing was sent to it");

    // Two relays left on the placeholder name are not taken for one.
    let rx = Receiver::start(false).answering_as("relay.example.net");
    let relay = Relay::start(&format!(
        "[smtp]\nhostname = \"relay.example.net\"\n{}",
        contoso(rx.addr, "")
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.mail("alice@contoso.example", &["bob@remote.example"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(rx.wait(1, Duration::from_secs(20)).len(), 1);
}

/// A recipient named twice in one transaction gets one copy: the repeat is taken (250) but not
/// passed on. A local part in another letter case may be another mailbox, and stays.
#[test]
fn a_recipient_named_twice_gets_one_copy() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(c.cmd("MAIL FROM:<alice@contoso.example>").code, 250);
    for rcpt in [
        "bob@remote.example",
        "bob@REMOTE.example",
        "Bob@remote.example",
        "bob@remote.example",
    ] {
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert_eq!(r.code, 250, "{rcpt}: {r:?}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(MSG.as_bytes());
    assert_eq!(c.cmd(".").code, 250);
    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(
        got[0].rcpts,
        vec!["bob@remote.example", "Bob@remote.example"]
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.messages().len(), 1, "one transaction, one copy each");
}

/// A DKIM signature must cover the From field (RFC 6376 5.4): a message without one leaves
/// unsigned rather than with a signature every verifier fails; one with a From field that is not
/// an address is signed as its envelope sender's accepted domain.
/// The delivered message whose Subject is `s`.
fn with_subject(got: &[Received], s: &str) -> String {
    got.iter()
        .find(|m| m.data.contains(&format!("Subject: {s}\r\n")))
        .expect("delivered")
        .data
        .clone()
}

#[test]
fn a_message_without_a_from_field_leaves_unsigned() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let no_from = "Subject: no from\r\n\r\nbody\r\n";
    let named = "Subject: named\r\nFrom: Reception desk\r\n\r\nbody\r\n";
    for msg in [no_from, named] {
        let r = c.mail("alice@contoso.example", &["bob@remote.example"], msg);
        assert_eq!(r.code, 250, "{r:?}");
    }
    let got = rx.wait(2, Duration::from_secs(20));
    let subject = |s: &str| with_subject(&got, s);
    let unsigned = subject("no from");
    assert!(!unsigned.contains("DKIM-Signature:"), "{unsigned}");
    let signed = subject("named");
    assert!(
        signed.starts_with("DKIM-Signature: ") && signed.contains("d=contoso.example"),
        "{signed}"
    );
}

#[test]
fn a_tenant_message_without_message_id_or_date_gets_them_unless_it_is_signed() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO scanner.contoso.example");
    let bare = "From: scanner@contoso.example\r\nSubject: scan 1\r\n\r\nattached\r\n";
    let dated = "From: scanner@contoso.example\r\nSubject: scan 2\r\nDate: Thu, 3 Dec 2026 10:00:00 +0000\r\n\r\nattached\r\n";
    // Signed elsewhere, naming a Message-ID it does not have: adding one would break it.
    let signed = "DKIM-Signature: v=1; a=rsa-sha256; d=contoso.example; s=onprem; h=from:subject:message-id:date; bh=AAAA; b=AAAA\r\nFrom: scanner@contoso.example\r\nSubject: scan 3\r\n\r\nattached\r\n";
    // A device's message whose first line starts with white space: it must not fold into
    // the Date added for it.
    let folded = " scanned at the front desk\r\nFrom: scanner@contoso.example\r\nSubject: scan 4\r\n\r\nattached\r\n";
    let mut ids = Vec::new();
    for msg in [bare, dated, signed, folded] {
        let r = c.mail("scanner@contoso.example", &["bob@remote.example"], msg);
        assert_eq!(r.code, 250, "{r:?}");
        ids.push(r.text().rsplit(' ').next().expect("id").to_string());
    }
    let got = rx.wait(4, Duration::from_secs(20));
    let subject = |s: &str| with_subject(&got, s);
    let count = |data: &str, field: &str| data.matches(&format!("\r\n{field}: ")).count();

    let first = subject("scan 1");
    assert!(
        first.contains(&format!(
            "\r\nMessage-ID: <{}@relay.test>\r\nDate: ",
            ids[0]
        )),
        "{first}"
    );
    // Added before signing, so our signature covers them.
    let ours = &first[..first.find("\r\nReceived: ").expect("received")];
    assert!(ours.contains("h=from:subject:date:message-id"), "{ours}");

    let second = subject("scan 2");
    assert_eq!(count(&second, "Message-ID"), 1, "{second}");
    assert_eq!(
        count(&second, "Date"),
        1,
        "the client's Date is kept: {second}"
    );
    assert!(second.contains("\r\nDate: Thu, 3 Dec 2026 10:00:00 +0000\r\n"));

    let third = subject("scan 3");
    assert_eq!(count(&third, "Message-ID"), 0, "{third}");
    assert_eq!(count(&third, "Date"), 0, "{third}");

    // The added fields close the header section, each a line of its own.
    let fourth = subject("scan 4");
    let date = fourth.find("\r\nDate: ").expect("a Date") + 2;
    let line_end = fourth[date..].find("\r\n").expect("line") + date;
    assert!(
        fourth[line_end..].starts_with("\r\n\r\nattached"),
        "the Date is the last field, unfolded: {fourth}"
    );
    assert!(
        fourth.contains(&format!(
            "Subject: scan 4\r\nMessage-ID: <{}@relay.test>\r\nDate: ",
            ids[3]
        )),
        "{fourth}"
    );
}

/// Contoso with one domain, named in Unicode in the file (it is kept as its A-labels), and
/// a user in it.
fn buecher(smart_host: std::net::SocketAddr, extra: &str) -> String {
    format!(
        r#"
[delivery]
smart_host = "{smart_host}"
{extra}
[[tenants]]
name = "contoso"
domains = [ {{ name = "Bücher.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "anna@bücher.example", password = "change-me-please" }} ]
"#
    )
}

/// An internationalised domain is one name in two forms (RFC 5890): the directory holds its
/// A-labels, and an SMTPUTF8 client (Exchange, Postfix) writes it in Unicode. Written either
/// way it is the tenant's own: its mail is the tenant's, not mail from an unregistered domain
/// (with an allowance of 0, that is refused), it is signed for the domain, and its users take
/// mail addressed in Unicode. Before, the Unicode form was a stranger's domain: the sender got
/// 5.7.64 and the user's mail was refused as relaying.
#[test]
fn a_domain_written_in_unicode_is_the_tenants_own() {
    let rx = Receiver::start(false).with_smtputf8();
    let relay = Relay::start(&buecher(
        rx.addr,
        "[limits]\nunregistered_allowance_per_day = 0\nuser_messages_per_minute = 2",
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    for (from, header_from) in [
        ("alice@bücher.example", "Alice <alice@bücher.example>"),
        ("alice@xn--bcher-kva.example", "alice@xn--bcher-kva.example"),
    ] {
        let r = c.cmd(&format!("MAIL FROM:<{from}> SMTPUTF8"));
        assert_eq!(r.code, 250, "{from}: {r:?}");
        let r = c.cmd("RCPT TO:<bob@remote.example>");
        assert_eq!(r.code, 250, "{from}: {r:?}");
        assert_eq!(c.cmd("DATA").code, 354);
        c.send(format!("From: {header_from}\r\nSubject: {from}\r\n\r\nHallo\r\n.\r\n").as_bytes());
        let r = c.read();
        assert_eq!(r.code, 250, "{from}: {r:?}");
    }
    let got = rx.wait(2, Duration::from_secs(20));
    for m in &got {
        assert!(
            m.data.starts_with("DKIM-Signature: ") && m.data.contains("d=xn--bcher-kva.example"),
            "signed for the domain:\n{}",
            m.data
        );
    }
    // The trace says the header From matches the envelope's domain, written in Unicode in both.
    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--sender", "alice@bücher.example"]);
        t.contains("header From domain").then_some(t)
    })
    .expect("the trace shows the scan");
    assert!(!trace.contains("differs"), "{trace}");
    // Through the connector, a user is the sender however the address is written: two
    // messages a minute as anna's, then the third, written in Unicode, is over her limit.
    for _ in 0..2 {
        let r = c.mail(
            "anna@xn--bcher-kva.example",
            &["bob@remote.example"],
            "From: anna@xn--bcher-kva.example\r\nSubject: mine\r\n\r\nHallo\r\n",
        );
        assert_eq!(r.code, 250, "{r:?}");
    }
    let refused = [
        "MAIL FROM:<anna@bücher.example> SMTPUTF8",
        "RCPT TO:<bob@remote.example>",
        "DATA",
    ]
    .into_iter()
    .map(|command| c.cmd(command))
    .find(|r| r.code >= 400);
    assert!(
        refused
            .as_ref()
            .is_some_and(|r| r.code == 451 && r.text().contains("4.7.500")),
        "{refused:?}"
    );
    // A user of the domain takes mail from outside addressed either way; a name the domain
    // has no user for is unknown there, not a stranger's domain.
    let mut outside = Client::connect(relay.relay, Some("127.0.0.2".parse().expect("ip")));
    outside.cmd("EHLO mail.outside.example");
    assert_eq!(
        outside.cmd("MAIL FROM:<x@outside.example> SMTPUTF8").code,
        250
    );
    for to in [
        "anna@bücher.example",
        "anna@xn--bcher-kva.example",
        "Anna@BÜCHER.example",
    ] {
        let r = outside.cmd(&format!("RCPT TO:<{to}>"));
        assert_eq!(r.code, 250, "{to}: {r:?}");
    }
    let r = outside.cmd("RCPT TO:<nobody@bücher.example>");
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.lines[0].contains("5.1.1"), "{r:?}");
}

/// A next hop without SMTPUTF8 takes what needs no UTF-8 once its domains are written as their
/// A-labels (RFC 6531 asks for the extension only for what holds UTF-8; Exchange and Postfix
/// write a tenant's IDN in Unicode): such a message goes with an ASCII envelope and no SMTPUTF8
/// parameter. Before, every message that asked for SMTPUTF8 bounced there with 5.6.7. A message
/// whose header section holds UTF-8 still cannot go (5.6.7), and its NDR goes back to the
/// sender's address with the domain's A-labels, which that next hop takes.
#[test]
fn a_next_hop_without_smtputf8_takes_what_needs_no_utf8() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&buecher(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    for (subject, to) in [
        ("plain", "bob@m\u{fc}ller.example"),
        ("Gr\u{fc}\u{df}e", "bob@remote.example"),
    ] {
        assert_eq!(
            c.cmd("MAIL FROM:<alice@b\u{fc}cher.example> SMTPUTF8").code,
            250
        );
        assert_eq!(c.cmd(&format!("RCPT TO:<{to}>")).code, 250);
        assert_eq!(c.cmd("DATA").code, 354);
        c.send(
            format!("From: alice@xn--bcher-kva.example\r\nSubject: {subject}\r\n\r\nGr\u{fc}\u{df}e\r\n.\r\n")
                .as_bytes(),
        );
        assert_eq!(c.read().code, 250);
    }
    let got = rx.wait(2, Duration::from_secs(20));
    let delivered = got
        .iter()
        .find(|m| m.data.contains("Subject: plain\r\n"))
        .expect("the message in ASCII is delivered");
    assert_eq!(delivered.mail_from, "alice@xn--bcher-kva.example");
    assert_eq!(delivered.rcpts, ["bob@xn--mller-kva.example"]);
    assert!(
        delivered.data.contains("d=xn--bcher-kva.example"),
        "{}",
        delivered.data
    );
    let ndr = got
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("an NDR for the message with a UTF-8 subject");
    assert_eq!(ndr.rcpts, ["alice@xn--bcher-kva.example"], "{ndr:?}");
    assert!(ndr.data.contains("5.6.7"), "{}", ndr.data);
    assert_eq!(got.len(), 2, "{got:?}");
}

/// An address in UTF-8 needs SMTPUTF8 declared on its MAIL (RFC 6531): without it the client
/// hears 553 5.6.7 at once, as from Postfix. Before, the relay took it and sent it on in UTF-8
/// without the extension, which the next hop refused: the sender learnt of it from an NDR.
#[test]
fn a_unicode_address_needs_smtputf8_declared() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&buecher(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    let r = c.cmd("MAIL FROM:<alice@b\u{fc}cher.example>");
    assert_eq!(r.code, 553, "{r:?}");
    assert!(
        r.text().contains("5.6.7") && r.text().contains("SMTPUTF8"),
        "{r:?}"
    );
    assert_eq!(c.cmd("MAIL FROM:<alice@xn--bcher-kva.example>").code, 250);
    let r = c.cmd("RCPT TO:<j\u{f6}rg@remote.example>");
    assert_eq!(r.code, 553, "{r:?}");
    assert_eq!(c.cmd("RCPT TO:<bob@remote.example>").code, 250);
    assert_eq!(c.cmd("RSET").code, 250);
    let r = c.mail(
        "alice@xn--bcher-kva.example",
        &["j\u{f6}rg@remote.example"],
        "Subject: x\r\n\r\nhi\r\n",
    );
    assert_eq!(r.code, 554, "no recipient taken: {r:?}");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@b\u{fc}cher.example> SMTPUTF8").code,
        250
    );
    assert_eq!(c.cmd("RCPT TO:<j\u{f6}rg@remote.example>").code, 250);
}

/// The relay holds `"a b"@contoso.example` without its quotes (as the SMTP parser gives it);
/// what it writes to the next hop, and the NDR, must put them back, or the next hop reads
/// `a b@contoso.example`, a syntax error.
#[test]
fn quoted_local_parts_leave_quoted() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.mail(
        r#""a b"@contoso.example"#,
        &[
            r#""john smith"@remote.example"#,
            r#""reject \"me\""@remote.example"#,
            "plain@remote.example",
        ],
        MSG,
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(2, Duration::from_secs(20));
    let delivered = got
        .iter()
        .find(|m| !m.mail_from.is_empty())
        .expect("the message");
    assert_eq!(delivered.mail_from, r#""a b"@contoso.example"#);
    assert_eq!(
        delivered.rcpts,
        vec![r#""john smith"@remote.example"#, "plain@remote.example"]
    );
    let ndr = got
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("an NDR from the null sender");
    assert_eq!(ndr.rcpts, vec![r#""a b"@contoso.example"#]);
    assert!(
        ndr.data.contains("To: <\"a b\"@contoso.example>\r\n"),
        "{}",
        ndr.data
    );
    assert!(
        ndr.data
            .contains(r#"Final-Recipient: rfc822; "reject \"me\""@remote.example"#),
        "{}",
        ndr.data
    );
    // The trace shows the addresses as they were written, and finds them written so.
    let shown = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--sender", r#""a b"@contoso.example"#]);
        t.contains("john smith").then_some(t)
    })
    .expect("the message in the trace");
    assert!(
        shown.contains(r#"from <"a b"@contoso.example>"#)
            && shown.contains(r#" "john smith"@remote.example"#)
            && !shown.contains(" john smith@"),
        "{shown}"
    );
}

#[test]
fn a_temporary_failure_is_retried_and_then_delivered() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.mail("alice@contoso.example", &["flaky@remote.example"], MSG);
    assert_eq!(r.code, 250);
    let id = r.text().rsplit(' ').next().expect("id").to_string();
    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(got[0].rcpts, vec!["flaky@remote.example"]);
    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--id", &id]);
        t.contains("Delivered").then_some(t)
    })
    .expect("delivered in the trace");
    assert!(
        trace.contains("deferred") && trace.contains("451 4.3.0 temporary trouble"),
        "{trace}"
    );
    assert!(relay.metric("relayward_deferred_total") >= 1);
    assert_eq!(
        rx.messages().len(),
        1,
        "no NDR for a message that got through"
    );
}

#[test]
fn a_message_that_keeps_failing_temporarily_expires_into_an_ndr() {
    let rx = Receiver::start(false);
    let relay = Relay::start(
        &contoso(rx.addr, "").replace("expire_after = \"1h\"", "expire_after = \"3s\""),
    );
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.cmd("MAIL FROM:<alice@contoso.example> RET=HDRS ENVID=env-42");
    assert_eq!(r.code, 250);
    assert_eq!(
        c.cmd("RCPT TO:<defer@remote.example> ORCPT=rfc822;defer@remote.example")
            .code,
        250
    );
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(MSG.as_bytes());
    c.send(b".\r\n");
    assert_eq!(c.read().code, 250);
    let got = rx.wait(1, Duration::from_secs(30));
    let ndr = &got[0];
    assert!(ndr.mail_from.is_empty());
    assert!(ndr.data.contains("Status: 5.4.7"), "{}", ndr.data);
    assert!(
        ndr.data.contains("451 4.2.0 mailbox busy"),
        "the last remote error is reported"
    );
    assert!(ndr.data.contains("Original-Envelope-Id: env-42"));
    assert!(
        ndr.data
            .contains("Original-Recipient: rfc822;defer@remote.example")
    );
    assert!(
        ndr.data.contains("text/rfc822-headers"),
        "RET=HDRS returns headers only"
    );
    assert!(
        !ndr.data.contains("Hello Bob"),
        "RET=HDRS returns headers only"
    );
}

/// The relay as `contoso` sets it up, with a retry ten minutes away: whatever arrives within
/// a test's seconds came in the first delivery round.
fn contoso_slow_retry(smart_host: std::net::SocketAddr, extra: &str) -> String {
    contoso(smart_host, extra).replace(r#"retry_schedule = ["1s"]"#, r#"retry_schedule = ["10m"]"#)
}

#[test]
fn recipients_past_a_servers_limit_go_in_the_next_transaction_at_once() {
    // RFC 5321 4.5.3.1.10: a server with a limit says 452 (an older one 552) to the RCPT past
    // it; the client sends those recipients in another transaction.
    let to: Vec<String> = (1..=8).map(|n| format!("user{n}@remote.example")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    for limit in [
        "452 4.5.3 Too many recipients",
        "552 Error: too many recipients",
    ] {
        let rx = Receiver::start(false).with_recipient_limit(3, limit);
        let relay = Relay::start(&contoso_slow_retry(rx.addr, ""));
        let mut c = relay.client();
        c.cmd("EHLO onprem");
        let r = c.mail("alice@contoso.example", &to, MSG);
        assert_eq!(r.code, 250, "{r:?}");
        let got = rx.wait(3, Duration::from_secs(20));
        let sizes: Vec<usize> = got.iter().map(|m| m.rcpts.len()).collect();
        assert_eq!(sizes, vec![3, 3, 2], "{limit}: {got:?}");
        let all: Vec<&str> = got
            .iter()
            .flat_map(|m| m.rcpts.iter().map(String::as_str))
            .collect();
        assert_eq!(all, to, "{limit}: each recipient once, in order");
        assert_eq!(rx.connections(), 1, "{limit}: one connection");
        assert_eq!(relay.metric("relayward_deferred_total"), 0, "{limit}");
        assert_eq!(relay.metric("relayward_ndr_total"), 0, "{limit}");
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(rx.messages().len(), 3, "{limit}: nothing sent twice");
    }
}

#[test]
fn a_message_to_many_recipients_is_split_into_transactions_of_the_configured_size() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso_slow_retry(
        rx.addr,
        "recipients_per_transaction = 2",
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let to = [
        "a@remote.example",
        "b@remote.example",
        "c@remote.example",
        "reject-d@remote.example",
        "e@remote.example",
    ];
    let r = c.mail("alice@contoso.example", &to, MSG);
    assert_eq!(r.code, 250, "{r:?}");
    // Two transactions of two, one of one recipient taken of its two; then the NDR for d.
    let got = rx.wait(4, Duration::from_secs(20));
    let rcpts: Vec<Vec<String>> = got
        .iter()
        .filter(|m| !m.mail_from.is_empty())
        .map(|m| m.rcpts.clone())
        .collect();
    assert_eq!(
        rcpts,
        vec![
            vec!["a@remote.example".to_string(), "b@remote.example".into()],
            vec!["c@remote.example".to_string()],
            vec!["e@remote.example".to_string()],
        ]
    );
    let ndr = got.iter().find(|m| m.mail_from.is_empty()).expect("an NDR");
    assert!(
        ndr.data
            .contains("Final-Recipient: rfc822; reject-d@remote.example"),
        "{}",
        ndr.data
    );
}

#[test]
fn a_connection_lost_between_transactions_keeps_the_first_ones_delivered() {
    let rx = Receiver::start(false).hanging_up_once();
    let relay = Relay::start(&contoso(rx.addr, "recipients_per_transaction = 2"));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let to = [
        "a@remote.example",
        "b@remote.example",
        "c@remote.example",
        "d@remote.example",
    ];
    let r = c.mail("alice@contoso.example", &to, MSG);
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.text().rsplit(' ').next().expect("id").to_string();
    // The second transaction's recipients wait for the next round (a second later here); the
    // first transaction's are not sent again.
    let got = rx.wait(2, Duration::from_secs(20));
    let rcpts: Vec<Vec<String>> = got.iter().map(|m| m.rcpts.clone()).collect();
    assert_eq!(
        rcpts,
        vec![
            vec!["a@remote.example".to_string(), "b@remote.example".into()],
            vec!["c@remote.example".to_string(), "d@remote.example".into()],
        ]
    );
    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--id", &id]);
        (t.matches("Delivered").count() + t.matches("delivered").count() >= 4).then_some(t)
    })
    .unwrap_or_else(|| relay.cli(&["trace", "--id", &id]));
    assert!(
        trace.contains("deferred") && trace.contains("connection lost"),
        "{trace}"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(rx.messages().len(), 2, "nothing sent twice");
    assert_eq!(relay.metric("relayward_delivered_total"), 4);
}

#[test]
fn a_server_that_takes_no_recipient_at_all_leaves_the_message_waiting_not_failed() {
    for limit in [
        "452 4.5.3 Too many recipients",
        "552 5.5.3 Too many recipients",
    ] {
        let rx = Receiver::start(false).with_recipient_limit(0, limit);
        let relay = Relay::start(&contoso_slow_retry(rx.addr, ""));
        let mut c = relay.client();
        c.cmd("EHLO onprem");
        let r = c.mail(
            "alice@contoso.example",
            &["bob@remote.example", "dan@remote.example"],
            MSG,
        );
        assert_eq!(r.code, 250, "{r:?}");
        relay.queue_waits_with(&["452 4.5.3 Too many recipients"]);
        assert_eq!(relay.metric("relayward_failed_total"), 0, "{limit}");
        assert_eq!(relay.metric("relayward_deferred_total"), 2, "{limit}");
        assert!(rx.messages().is_empty(), "{limit}: no NDR");
    }
}

/// `contoso` with its mail leaving from `pool` to `smart_host`, retried an hour later.
fn contoso_from_pool(smart_host: std::net::SocketAddr, pool: &str) -> String {
    contoso_slow_retry(smart_host, &format!("normal_pool = [{pool}]"))
}

#[test]
fn a_pool_of_ipv4_and_ipv6_addresses_sends_from_the_family_of_each_destination_with_its_name() {
    // An IPv4 next hop: every connection from the pool's IPv4 address, none tried from its
    // IPv6 one (which cannot reach it), with the EHLO name given for that address.
    let rx = Receiver::start(false);
    let pool = r#"{ ip = "127.0.0.2", hostname = "Out-V4.relay.test" }, "::1""#;
    let dir = tempfile::tempdir().expect("dir");
    let (ok, out) = check_config(&write_config(dir.path(), &contoso_from_pool(rx.addr, pool)));
    assert!(ok, "{out}");
    assert!(
        out.contains("normal pool: 127.0.0.2 (EHLO out-v4.relay.test), ::1 (EHLO relay.test)"),
        "{out}"
    );
    let relay = Relay::start(&contoso_from_pool(rx.addr, pool));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    for n in 0..8 {
        let r = c.transaction(
            "alice@contoso.example",
            &[&format!("user{n}@remote.example")],
            MSG,
        );
        assert_eq!(r.code, 250, "{r:?}");
    }
    let got = rx.wait(8, Duration::from_secs(20));
    assert!(
        got.iter()
            .all(|m| m.peer.to_string() == "127.0.0.2" && m.helo == "out-v4.relay.test"),
        "{got:?}"
    );
    assert_eq!(relay.metric("relayward_deferred_total"), 0);
    drop(relay);

    // An IPv6 next hop: from the pool's IPv6 address, which has no name of its own.
    let rx6 = Receiver::start_on("::1".parse().expect("ip"), false);
    let relay = Relay::start(&contoso_from_pool(rx6.addr, pool));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.transaction("alice@contoso.example", &["bob@remote.example"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx6.wait(1, Duration::from_secs(20));
    assert_eq!(got[0].peer.to_string(), "::1");
    assert_eq!(got[0].helo, "relay.test");
    drop(relay);

    // A pool without an IPv6 address does not reach an IPv6 host; the queue says why.
    let relay = Relay::start(&contoso_from_pool(rx6.addr, r#""127.0.0.2""#));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.transaction("alice@contoso.example", &["carol@remote.example"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    relay.queue_waits_with(&["the normal pool has no IPv6 source address"]);
    assert_eq!(
        rx6.messages().len(),
        1,
        "nothing more reached the IPv6 host"
    );
}

#[test]
fn mx_records_are_looked_up_through_the_configured_resolver() {
    let rx = Receiver::start(false);
    let dns = Dns::start(vec![
        (
            "remote.example",
            "MX",
            Answer::Mx(vec![(10, "mx1.remote.example")]),
        ),
        (
            "mx1.remote.example",
            "A",
            Answer::A(vec!["127.0.0.1".parse().expect("ip")]),
        ),
        ("nullmx.example", "MX", Answer::Mx(vec![(0, "")])),
        ("gone.example", "MX", Answer::NxDomain),
    ]);
    let extra = format!(
        "[delivery]\ndns_resolver = \"{}\"\nremote_port = {}\nretry_schedule = [\"1s\"]\nprivate_destinations = [\"127.0.0.1\"]\n\
         [[tenants]]\nname = \"contoso\"\ndomains = [ {{ name = \"contoso.example\", verified = true }} ]\n\
         connectors = [ {{ name = \"on-prem\", ips = [\"127.0.0.1\"] }} ]\nusers = [ {{ address = \"alice@contoso.example\" }} ]\n\
         routes = [ {{ domain = \"contoso.example\", host = \"{}\" }} ]\n",
        dns.addr,
        rx.addr.port(),
        rx.addr
    );
    let relay = Relay::start(&extra);
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(
        c.mail("alice@contoso.example", &["bob@remote.example"], MSG)
            .code,
        250
    );
    assert_eq!(
        c.mail("alice@contoso.example", &["x@nullmx.example"], MSG)
            .code,
        250
    );
    assert_eq!(
        c.mail("alice@contoso.example", &["y@gone.example"], MSG)
            .code,
        250
    );
    // One delivery via MX, two NDRs (null MX, no such domain) back to alice via the tenant route.
    let got = rx.wait(3, Duration::from_secs(30));
    assert!(got.iter().any(|m| m.rcpts == vec!["bob@remote.example"]));
    let ndrs: Vec<_> = got.iter().filter(|m| m.mail_from.is_empty()).collect();
    assert_eq!(ndrs.len(), 2);
    assert!(
        ndrs.iter().any(|m| m.data.contains("Status: 5.1.10")),
        "null MX"
    );
    assert!(
        ndrs.iter().any(|m| m.data.contains("Status: 5.1.2")),
        "no such domain"
    );
}

#[test]
fn dns_that_leads_to_private_addresses_is_not_followed() {
    // A domain's MX and a route's host name both answer 127.0.0.2: refused. contoso's route
    // is written as an address (the receiver's, on loopback): the operator's choice, reached.
    let rx = Receiver::start(false);
    let dns = Dns::start(vec![
        (
            "inside.example",
            "MX",
            Answer::Mx(vec![(10, "mx.inside.example")]),
        ),
        (
            "mx.inside.example",
            "A",
            Answer::A(vec!["127.0.0.2".parse().expect("ip")]),
        ),
        (
            "mail.fabrikam.example",
            "A",
            Answer::A(vec!["127.0.0.2".parse().expect("ip")]),
        ),
    ]);
    let relay = Relay::start(&format!(
        "[delivery]\ndns_resolver = \"{dns}\"\nremote_port = {port}\nretry_schedule = [\"1s\"]\n\
         [[tenants]]\nname = \"contoso\"\ndomains = [ {{ name = \"contoso.example\", verified = true }} ]\n\
         connectors = [ {{ name = \"on-prem\", ips = [\"127.0.0.1\"] }} ]\nusers = [ {{ address = \"alice@contoso.example\" }} ]\n\
         routes = [ {{ domain = \"contoso.example\", host = \"{rx}\" }} ]\n\
         [[tenants]]\nname = \"fabrikam\"\ndomains = [ {{ name = \"fabrikam.example\", kind = \"authoritative\", verified = true }} ]\n\
         users = [ {{ address = \"bob@fabrikam.example\" }} ]\n\
         routes = [ {{ domain = \"fabrikam.example\", host = \"mail.fabrikam.example:{port}\" }} ]\n",
        dns = dns.addr,
        port = rx.addr.port(),
        rx = rx.addr
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    for to in ["bob@fabrikam.example", "carol@inside.example"] {
        assert_eq!(c.mail("alice@contoso.example", &[to], MSG).code, 250);
    }
    // Refused at once with an NDR each (a connection tried and refused would be retried).
    let got = rx.wait(2, Duration::from_secs(30));
    assert_eq!(got.len(), 2, "two NDRs");
    for (domain, host) in [
        ("fabrikam.example", "mail.fabrikam.example"),
        ("inside.example", "mx.inside.example"),
    ] {
        assert!(
            got.iter().any(|m| m.mail_from.is_empty()
                && m.data.contains("Status: 5.4.4")
                && m.data.contains(&format!(
                    "Mail for {domain} would go to {host} [127.0.0.2], which is not on the public internet"
                ))),
            "{domain}: {}",
            got[0].data
        );
    }
}

#[test]
fn starttls_inbound_and_outbound() {
    let rx = Receiver::start(true);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    let ehlo = c.cmd("EHLO onprem");
    assert!(ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    let mut c = c.starttls();
    let ehlo = c.cmd("EHLO onprem");
    assert!(
        !ehlo.lines.iter().any(|l| l == "STARTTLS"),
        "not offered twice"
    );
    assert_eq!(
        c.mail("alice@contoso.example", &["bob@remote.example"], MSG)
            .code,
        250
    );
    let got = rx.wait(1, Duration::from_secs(20));
    assert!(got[0].tls, "the relay used STARTTLS towards the receiver");
    assert!(got[0].data.contains("with ESMTPS id"), "{}", got[0].data);
    // The trace says the delivery was encrypted.
    let ops = relay.token(&["--name", "ops", "--role", "operator"]);
    let delivered = wait_for(Duration::from_secs(10), || {
        let (_, json) = relay.api(
            "GET",
            "/api/v1/tenants/contoso/trace?status=Delivered",
            Some(&ops),
            None,
        );
        let text = json.to_string();
        text.contains(" over TLS: 250").then_some(text)
    });
    assert!(delivered.is_some(), "no delivery over TLS in the trace");
}

#[test]
fn submission_needs_tls_auth_and_an_own_sender() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = Client::connect(relay.submission, None);
    let ehlo = c.cmd("EHLO laptop");
    assert!(
        !ehlo.lines.iter().any(|l| l.starts_with("AUTH")),
        "no AUTH before TLS"
    );
    let r = c.cmd("MAIL FROM:<alice@contoso.example>");
    assert_eq!(
        r.text(),
        "530 5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM"
    );
    assert_eq!(
        c.cmd("AUTH PLAIN AGFsaWNlQGNvbnRvc28uZXhhbXBsZQBjaGFuZ2UtbWU=")
            .code,
        538
    );
    let mut c = c.starttls();
    let ehlo = c.cmd("EHLO laptop");
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    // base64("\0alice@contoso.example\0wrong")
    assert_eq!(
        c.cmd("AUTH PLAIN AGFsaWNlQGNvbnRvc28uZXhhbXBsZQB3cm9uZw==")
            .text(),
        "535 5.7.8 Authentication credentials invalid"
    );
    // AUTH LOGIN with the right password.
    assert_eq!(c.cmd("AUTH LOGIN").code, 334);
    assert_eq!(c.cmd("YWxpY2VAY29udG9zby5leGFtcGxl").code, 334);
    assert_eq!(c.cmd("Y2hhbmdlLW1l").code, 235);
    let r = c.cmd("MAIL FROM:<bob@contoso.example>");
    assert_eq!(
        r.text(),
        "550 5.7.60 Client does not have permissions to send as this sender"
    );
    assert_eq!(
        c.cmd("MAIL FROM:<sales@contoso.example>").code,
        250,
        "an alias is the user's own"
    );
    assert_eq!(c.cmd("RCPT TO:<anyone@remote.example>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(MSG.as_bytes());
    c.send(b"\r\n.\r\n");
    assert_eq!(c.read().code, 250);
    let got = rx.wait(1, Duration::from_secs(20));
    assert!(got[0].data.contains("with ESMTPSA id"));
}

#[test]
fn bdat_chunks_make_one_message() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    let ehlo = c.cmd("EHLO onprem");
    assert!(ehlo.lines.iter().any(|l| l == "CHUNKING"));
    c.cmd("MAIL FROM:<alice@contoso.example>");
    c.cmd("RCPT TO:<bob@remote.example>");
    let part1 = "Subject: chunked\r\n\r\nfirst part, ";
    let part2 = "second part\r\n.not stuffed in BDAT\r\n";
    c.send(format!("BDAT {}\r\n{part1}", part1.len()).as_bytes());
    assert_eq!(c.read().code, 250);
    c.send(format!("BDAT {} LAST\r\n{part2}", part2.len()).as_bytes());
    let r = c.read();
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(1, Duration::from_secs(20));
    assert!(
        got[0]
            .data
            .contains("first part, second part\r\n.not stuffed in BDAT\r\n"),
        "{}",
        got[0].data
    );
}

#[test]
fn a_next_hop_offering_chunking_gets_each_message_by_bdat_whole_and_unstuffed() {
    let rx = Receiver::start(false).with_chunking();
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let r = c.mail(
        "alice@contoso.example",
        &["bob@remote.example", "reject-carol@remote.example"],
        MSG,
    );
    assert_eq!(r.code, 250, "{r:?}");
    // Past 64 KiB the message waits for the RCPT replies before it is sent.
    let big_body = ".a dotted line of a large message\r\nand a plain one\r\n".repeat(3000);
    let big = format!("Subject: large\r\nFrom: alice@contoso.example\r\n\r\n{big_body}");
    let r = c.mail("alice@contoso.example", &["dave@remote.example"], &big);
    assert_eq!(r.code, 250, "{r:?}");

    let got = wait_for(Duration::from_secs(20), || {
        let m = rx.messages();
        let small = m
            .iter()
            .find(|m| m.rcpts == ["bob@remote.example"])
            .cloned();
        let large = m
            .iter()
            .find(|m| m.rcpts == ["dave@remote.example"])
            .cloned();
        small.zip(large)
    });
    let Some((small, large)) = got else {
        panic!("both messages at the receiver: {:?}", rx.messages());
    };
    assert!(small.chunked && large.chunked, "{small:?} {large:?}");
    assert!(
        small.with_commands,
        "a small message goes in the write of its MAIL and RCPT commands"
    );
    assert!(!large.with_commands, "a large one waits for their replies");
    assert!(
        small
            .data
            .contains("\r\n.a line that starts with a dot\r\nBye\r\n"),
        "BDAT data is not dot-stuffed: {}",
        small.data
    );
    assert!(small.data.starts_with("DKIM-Signature: "), "{}", small.data);
    assert!(
        large.data.contains(&big_body),
        "the large message arrives whole"
    );
    // The refused recipient failed; the accepted one was delivered.
    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--recipient", "reject-carol@remote.example"]);
        t.contains("Failed").then_some(t)
    });
    assert!(trace.is_some(), "the refused recipient's trace says Failed");
}

#[test]
fn chunking_off_sends_data_to_a_next_hop_that_offers_it() {
    let rx = Receiver::start(false).with_chunking();
    let relay = Relay::start(&contoso(rx.addr, "chunking = false"));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let r = c.mail("alice@contoso.example", &["bob@remote.example"], MSG);
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(1, Duration::from_secs(20));
    assert!(!got[0].chunked, "sent with DATA");
    assert!(
        got[0]
            .data
            .contains("\r\n.a line that starts with a dot\r\nBye\r\n"),
        "{}",
        got[0].data
    );
}

#[test]
fn after_a_transaction_with_every_recipient_refused_the_next_one_starts_clean() {
    // The receiver keeps a transaction open after refusing DATA for want of recipients (as
    // Postfix and Relayward do) and refuses a MAIL inside it. The next transactions on the
    // same connection (the NDR to alice, then bob's message) must start with RSET; by DATA
    // and by BDAT.
    for rx in [
        Receiver::start(false),
        Receiver::start(false).with_chunking(),
    ] {
        let relay = Relay::start(&contoso(rx.addr, ""));
        let mut c = relay.client();
        assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
        let r = c.mail("alice@contoso.example", &["reject-x@remote.example"], MSG);
        assert_eq!(r.code, 250, "{r:?}");
        let has = |to: &str| rx.messages().iter().any(|m| m.rcpts == [to]);
        let ndr = wait_for(Duration::from_secs(20), || {
            has("alice@contoso.example").then_some(())
        });
        assert!(
            ndr.is_some(),
            "alice's NDR delivered: {}",
            relay.cli(&["trace", "--recipient", "alice@contoso.example"])
        );
        let r = c.mail("alice@contoso.example", &["bob@remote.example"], MSG);
        assert_eq!(r.code, 250, "{r:?}");
        let bob = wait_for(Duration::from_secs(20), || {
            has("bob@remote.example").then_some(())
        });
        assert!(
            bob.is_some(),
            "bob's message delivered: {}",
            relay.cli(&["trace", "--recipient", "bob@remote.example"])
        );
        // Nothing went into a transaction left open: every message to alice is the NDR,
        // from the null sender, and no command was refused as out of sequence.
        let to_alice: Vec<String> = rx
            .messages()
            .into_iter()
            .filter(|m| m.rcpts.iter().any(|r| r == "alice@contoso.example"))
            .map(|m| m.mail_from)
            .collect();
        assert_eq!(to_alice, [""], "the NDR alone, from the null sender");
        let traces = relay.cli(&["trace", "--sender", "alice@contoso.example"])
            + &relay.cli(&["trace", "--recipient", "alice@contoso.example"]);
        assert!(!traces.contains(" 503 "), "{traces}");
    }
}

#[test]
fn a_relay_delivers_by_bdat_to_another_relay() {
    // The next hop is a second Relayward (its own SMTP server, which offers CHUNKING and
    // PIPELINING) taking mail for its tenant's domain and routing it on to the receiver.
    let rx = Receiver::start(false);
    let next = Relay::start(&format!(
        "[smtp]\nhostname = \"next.test\"\n{}",
        routed_tenant(&[("remote.example", rx.addr)])
    ));
    let relay = Relay::start(&contoso(next.relay, ""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let big_body = "..two dots, and a third line of text\r\n".repeat(4000);
    let big = format!("Subject: large\r\nFrom: alice@contoso.example\r\n\r\n{big_body}");
    for (to, body) in [
        ("bob@remote.example", MSG),
        ("dave@remote.example", big.as_str()),
        ("erin@remote.example", MSG),
    ] {
        let r = c.mail("alice@contoso.example", &[to], body);
        assert_eq!(r.code, 250, "{r:?}");
    }
    let got = rx.wait(3, Duration::from_secs(30));
    let of = |to: &str| {
        got.iter()
            .find(|m| m.rcpts == [to])
            .unwrap_or_else(|| panic!("{to} at the receiver: {got:?}"))
    };
    for to in ["bob@remote.example", "erin@remote.example"] {
        let data = &of(to).data;
        assert!(
            data.contains("\r\n.a line that starts with a dot\r\nBye\r\n"),
            "{data}"
        );
        assert!(
            data.contains("d=contoso.example"),
            "signed by the first relay: {data}"
        );
    }
    assert!(of("dave@remote.example").data.contains(&big_body));
}

#[test]
fn pipelined_commands_get_their_replies_in_order() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    let ehlo = c.cmd("EHLO onprem");
    assert!(ehlo.lines.iter().any(|l| l == "PIPELINING"));
    c.send(b"MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<a@remote.example>\r\nRCPT TO:<b@remote.example>\r\nDATA\r\n");
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 354);
    c.send(b"Subject: p\r\n\r\nbody\r\n.\r\nMAIL FROM:<alice@contoso.example>\r\nRCPT TO:<c@remote.example>\r\nDATA\r\n");
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 354);
    c.send(b"Subject: q\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 221);
    let got = rx.wait(2, Duration::from_secs(20));
    assert_eq!(got.iter().map(|m| m.rcpts.len()).sum::<usize>(), 3);
}

#[test]
fn connector_added_on_the_command_line_is_picked_up_while_running() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!("[delivery]\nsmart_host = \"{}\"\n", rx.addr));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    c.cmd("MAIL FROM:<ops@fabrikam.example>");
    assert_eq!(
        c.cmd("RCPT TO:<x@remote.example>").text(),
        "550 5.7.64 TenantAttribution; Relay Access Denied"
    );
    relay.cli(&["tenant", "add", "fabrikam"]);
    let out = relay.cli(&["domain", "add", "fabrikam", "fabrikam.example"]);
    assert!(out.contains("IN TXT \"relayward-verification="), "{out}");
    relay.cli(&[
        "connector",
        "add",
        "fabrikam",
        "office",
        "--ip",
        "127.0.0.1/32",
    ]);
    let listed = relay.cli(&["tenant", "list"]);
    assert!(
        listed.contains("fabrikam.example authoritative NOT verified"),
        "{listed}"
    );
    // A new connection after the reload is attributed; the sender's domain is not verified, so
    // relaying for it still needs the connector option.
    let accepted = wait_for(Duration::from_secs(10), || {
        let mut c = relay.client();
        c.cmd("EHLO onprem");
        c.cmd("MAIL FROM:<>");
        (c.cmd("RCPT TO:<x@remote.example>").code == 250).then_some(())
    });
    assert!(accepted.is_some(), "connector not picked up");
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    c.cmd("MAIL FROM:<ops@fabrikam.example>");
    assert_eq!(
        c.cmd("RCPT TO:<x@remote.example>").code,
        550,
        "unverified sender domain does not relay"
    );
}

#[test]
fn health_and_metrics_answer() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let health = relay.http_get("/healthz");
    assert!(
        health.starts_with("HTTP/1.1 200") && health.ends_with("ok\n"),
        "{health}"
    );
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(
        c.mail("alice@contoso.example", &["bob@remote.example"], MSG)
            .code,
        250
    );
    rx.wait(1, Duration::from_secs(20));
    assert_eq!(relay.metric("relayward_messages_accepted_total"), 1);
    assert!(
        wait_for(Duration::from_secs(5), || (relay
            .metric("relayward_delivered_total")
            == 1)
            .then_some(()))
        .is_some()
    );
    assert!(relay.metric("relayward_spool_fsyncs_total") >= 1);
    // The session above is still open; a second client makes two, and both going makes none.
    let mut second = relay.client();
    second.cmd("EHLO onprem");
    assert_eq!(relay.metric("relayward_smtp_sessions_open"), 2);
    c.cmd("QUIT");
    second.cmd("QUIT");
    drop((c, second));
    assert!(
        wait_for(Duration::from_secs(5), || (relay
            .metric("relayward_smtp_sessions_open")
            == 0)
            .then_some(()))
        .is_some(),
        "sessions still counted open: {}",
        relay.metric("relayward_smtp_sessions_open")
    );
}

#[test]
fn sigterm_stops_cleanly_and_keeps_queued_mail() {
    let rx = Receiver::start(false);
    let mut relay = Relay::start(
        &contoso(rx.addr, "").replace("retry_schedule = [\"1s\"]", "retry_schedule = [\"1h\"]"),
    );
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(
        c.mail("alice@contoso.example", &["defer@remote.example"], MSG)
            .code,
        250
    );
    assert!(
        wait_for(Duration::from_secs(10), || (relay
            .metric("relayward_deferred_total")
            >= 1)
            .then_some(()))
        .is_some()
    );
    drop(c);
    let status = relay.terminate();
    assert!(status.success(), "exit status {status:?}");
    // Restarted, the deferred message is still there (recovered from the spool).
    relay.spawn();
    assert_eq!(relay.metric("relayward_spool_messages"), 1);
}
