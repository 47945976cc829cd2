//! The DSN extension end to end over real SMTP: delay notices once per message after
//! `delay_notice_after`, none for NOTIFY=NEVER; NOTIFY and ORCPT passed on to a next hop that
//! speaks DSN (which then owes the success notice); a "relayed" notice from us when the next hop
//! does not; no NDR for NOTIFY=NEVER.

use std::time::Duration;

use crate::util::*;

const MSG: &str =
    "From: alice@contoso.example\r\nSubject: Quarterly figures\r\n\r\nSee attached.\r\n";

fn send(c: &mut Client, rcpt_line: &str) {
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example> RET=HDRS ENVID=Q3-1")
            .code,
        250
    );
    let r = c.cmd(&format!("RCPT TO:{rcpt_line}"));
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(MSG.as_bytes());
    let r = c.cmd(".");
    assert_eq!(r.code, 250, "{r:?}");
}

/// Reports that reached the receiver for alice (from the null sender).
fn reports(rx: &Receiver) -> Vec<Received> {
    rx.messages()
        .into_iter()
        .filter(|m| m.mail_from.is_empty() && m.rcpts == vec!["alice@contoso.example".to_string()])
        .collect()
}

/// The message for ok@remote.example, once the receiver has it.
fn delivered_to_ok(rx: &Receiver) -> Received {
    wait_for(Duration::from_secs(20), || {
        rx.messages()
            .into_iter()
            .find(|m| m.rcpts == vec!["ok@remote.example".to_string()])
    })
    .expect("ok@ delivered")
}

#[test]
fn delay_notices_once_never_when_asked_not_and_notify_passed_on() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "delay_notice_after = \"2s\"\n"));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    // NEVER stands alone (RFC 3461 4.1).
    c.cmd("MAIL FROM:<alice@contoso.example>");
    let r = c.cmd("RCPT TO:<x@remote.example> NOTIFY=NEVER,SUCCESS");
    assert!(r.code == 501 && r.text().contains("NOTIFY=NEVER"), "{r:?}");
    assert_eq!(c.cmd("RSET").code, 250);
    send(&mut c, "<defer-a@remote.example>");
    send(&mut c, "<defer-b@remote.example> NOTIFY=NEVER");
    send(&mut c, "<reject-n@remote.example> NOTIFY=NEVER");
    send(
        &mut c,
        "<ok@remote.example> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ok@Remote.example",
    );

    // The next hop speaks DSN: NOTIFY and ORCPT go on with the message; no notice from us.
    let ok = delivered_to_ok(&rx);
    assert_eq!(
        ok.rcpt_params,
        vec!["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Ok@Remote.example".to_string()]
    );

    // defer-a keeps getting 451: after 2 s its sender hears once that it is delayed.
    let notice = wait_for(Duration::from_secs(20), || reports(&rx).into_iter().next())
        .expect("a delay notice");
    assert!(
        notice.data.contains("Subject: Delayed: Quarterly figures"),
        "{}",
        notice.data
    );
    assert!(
        notice
            .data
            .contains("Final-Recipient: rfc822; defer-a@remote.example")
    );
    assert!(notice.data.contains("Action: delayed"), "{}", notice.data);
    assert!(notice.data.contains("Status: 4.2.0"), "{}", notice.data);
    assert!(
        notice.data.contains("Will-Retry-Until: "),
        "{}",
        notice.data
    );
    assert!(
        notice.data.contains("Original-Envelope-Id: Q3-1"),
        "{}",
        notice.data
    );
    // More rounds pass (retry every second): still one notice, and none about defer-b (NEVER),
    // no NDR for reject-n (NEVER), no success notice for ok@ (the next hop owes it).
    std::thread::sleep(Duration::from_secs(5));
    let all = reports(&rx);
    assert_eq!(
        all.len(),
        1,
        "{:#?}",
        all.iter().map(|m| &m.data).collect::<Vec<_>>()
    );
}

#[test]
fn a_next_hop_without_dsn_makes_us_say_relayed() {
    let rx = Receiver::start(false).without_dsn();
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    send(&mut c, "<ok@remote.example> NOTIFY=SUCCESS");
    let notice = wait_for(Duration::from_secs(20), || reports(&rx).into_iter().next())
        .expect("a success notice");
    assert!(
        notice
            .data
            .contains("Subject: Delivered: Quarterly figures"),
        "{}",
        notice.data
    );
    assert!(notice.data.contains("Action: relayed"), "{}", notice.data);
    assert!(notice.data.contains("Status: 2.0.0"), "{}", notice.data);
    let ok = rx
        .messages()
        .into_iter()
        .find(|m| m.rcpts == vec!["ok@remote.example".to_string()])
        .expect("delivered");
    assert_eq!(
        ok.rcpt_params,
        vec![String::new()],
        "no DSN parameters to a hop without DSN"
    );
}

/// The report follows the tenant's language setting: a Spanish tenant's sender reads Spanish.
#[test]
fn a_spanish_tenant_gets_its_reports_in_spanish() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "{}"
retry_schedule = ["1s"]
[[tenants]]
name = "contoso"
language = "es"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
"#,
        rx.addr
    ));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    send(&mut c, "<reject-x@remote.example>");
    let ndr =
        wait_for(Duration::from_secs(20), || reports(&rx).into_iter().next()).expect("an NDR");
    assert!(
        ndr.data
            .contains("Subject: No se pudo entregar: Quarterly figures"),
        "{}",
        ndr.data
    );
    assert!(ndr.data.contains("Content-Language: es"), "{}", ndr.data);
    assert!(ndr.data.contains("Qué ha pasado"), "{}", ndr.data);
    assert!(
        ndr.data
            .contains("El servidor de correo del destinatario dice que la dirección reject-x@remote.example no existe."),
        "{}",
        ndr.data
    );
    assert!(ndr.data.contains("Action: failed"), "{}", ndr.data);
    assert!(ndr.data.contains("Status: 5.1.1"), "{}", ndr.data);
}

#[test]
fn an_ndr_returns_a_small_message_whole_and_a_large_ones_header_section() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let r = c.mail(
        "alice@contoso.example",
        &["reject-small@remote.example"],
        MSG,
    );
    assert_eq!(r.code, 250, "{r:?}");
    // Past the 256 KiB a report returns whole.
    let large = format!(
        "From: alice@contoso.example\r\nSubject: The large one\r\n\r\n{}",
        format!("{}\r\n", "q".repeat(98)).repeat(4_000)
    );
    let r = c.mail(
        "alice@contoso.example",
        &["reject-large@remote.example"],
        &large,
    );
    assert_eq!(r.code, 250, "{r:?}");
    let ndrs = wait_for(Duration::from_secs(20), || {
        let r = reports(&rx);
        (r.len() == 2).then_some(r)
    })
    .expect("two NDRs");
    let small = ndrs
        .iter()
        .find(|m| m.data.contains("reject-small@remote.example"))
        .expect("the small one's NDR");
    assert!(small.data.contains("message/rfc822"), "{}", small.data);
    assert!(small.data.contains("See attached."), "returned whole");
    let big = ndrs
        .iter()
        .find(|m| m.data.contains("reject-large@remote.example"))
        .expect("the large one's NDR");
    assert!(big.data.contains("text/rfc822-headers"));
    assert!(big.data.contains("Subject: The large one"));
    assert!(!big.data.contains(&"q".repeat(98)), "no body");
    assert!(big.data.len() < 64 * 1024, "{} bytes", big.data.len());
}

/// An SMTPUTF8 client (Postfix, for one) passes on an original recipient in UTF-8 as RFC 6533's
/// `ORCPT=utf-8;`, in ASCII (`\x{HEX}`) or in UTF-8 as it is: the recipient is taken, the
/// parameter goes on to a next hop that speaks DSN in its ASCII form, and the relay's own NDR
/// names it so. Before, the recipient was refused with `501 5.5.4 Invalid parameter ORCPT`,
/// and the client bounced the message for it.
#[test]
fn an_original_recipient_in_utf8_is_taken_and_passed_on() {
    original_recipients_in_utf8(
        Some(r"<bad@remote.example> ORCPT=utf-8;a\b@remote.example"),
        [
            r"<ok@remote.example> NOTIFY=FAILURE ORCPT=utf-8;b\x{F6}b@m\x{FC}ller.example",
            "<reject-x@remote.example> ORCPT=UTF-8;r\u{e9}ject@m\u{fc}ller.example NOTIFY=FAILURE",
        ],
        r"NOTIFY=FAILURE ORCPT=utf-8;b\x{F6}b@m\x{FC}ller.example",
    );
}

/// An address in UTF-8 typed `rfc822;` (its bytes in xtext), which that type cannot name
/// (RFC 6533 3): passed on and reported as `utf-8;`. Before, smtp-proto's decoding made each
/// byte a character, and the address left with those characters' bytes in xtext.
#[test]
fn an_original_recipient_in_utf8_typed_rfc822_leaves_as_utf8() {
    original_recipients_in_utf8(
        None,
        [
            "<ok@remote.example> ORCPT=rfc822;b+C3+B6b@m+C3+BCller.example",
            "<reject-x@remote.example> NOTIFY=FAILURE ORCPT=rfc822;r+C3+A9ject@m+C3+BCller.example",
        ],
        r"ORCPT=utf-8;b\x{F6}b@m\x{FC}ller.example",
    );
}

/// A message with SMTPUTF8 to `to` (ok@ and reject-x@, with their parameters), after a RCPT
/// `refused` with 501: ok@'s copy arrives with `ok_params`, and reject-x's NDR names its
/// original recipient as `utf-8;r\x{E9}ject@m\x{FC}ller.example`.
fn original_recipients_in_utf8(refused: Option<&str>, to: [&str; 2], ok_params: &str) {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example> SMTPUTF8").code,
        250
    );
    if let Some(bad) = refused {
        let r = c.cmd(&format!("RCPT TO:{bad}"));
        assert_eq!(r.code, 501, "{r:?}");
    }
    for to in to {
        let r = c.cmd(&format!("RCPT TO:{to}"));
        assert_eq!(r.code, 250, "{to}: {r:?}");
    }
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(MSG.as_bytes());
    assert_eq!(c.cmd(".").code, 250);
    let ok = delivered_to_ok(&rx);
    assert_eq!(ok.rcpt_params, [ok_params]);
    let ndr = wait_for(Duration::from_secs(20), || reports(&rx).into_iter().next())
        .expect("an NDR for reject-x");
    assert!(
        ndr.data
            .contains(r"Original-Recipient: utf-8;r\x{E9}ject@m\x{FC}ller.example"),
        "{}",
        ndr.data
    );
}
