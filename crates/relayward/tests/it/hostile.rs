//! Hostile and broken input: the open-relay battery, SMTP smuggling, protocol abuse, limits,
//! a full spool. Each refusal is asserted with its reply.

use std::time::Duration;

use crate::util::*;

const DENIED: &str = "550 5.7.64 TenantAttribution; Relay Access Denied";

/// From an address no connector knows (127.0.0.2), nothing leaves for a foreign domain.
#[test]
fn open_relay_battery_is_refused() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let stranger = || {
        let mut c = Client::connect(relay.relay, Some("127.0.0.2".parse().expect("ip")));
        c.cmd("EHLO attacker.example");
        c
    };
    let senders = [
        "spammer@evil.example",
        "alice@contoso.example",
        "",
        "postmaster@contoso.example",
    ];
    let tricks = [
        ("victim@remote.example", DENIED),
        ("VICTIM@REMOTE.EXAMPLE", DENIED),
        (
            "victim@remote.example.",
            "501 5.1.3 Bad recipient address syntax: its domain is empty or ends with a dot",
        ),
        (
            "victim%remote.example@contoso.example",
            "550 5.7.1 Routing addresses (%, !, quoted @) are not accepted",
        ),
        (
            "remote.example!victim@contoso.example",
            "550 5.7.1 Routing addresses (%, !, quoted @) are not accepted",
        ),
        (
            "\"victim@remote.example\"@contoso.example",
            "550 5.7.1 Routing addresses (%, !, quoted @) are not accepted",
        ),
        (
            "victim@127.0.0.1",
            "550 5.7.1 IP-literal recipient domains are not accepted",
        ),
        (
            "victim@[127.0.0.1]",
            "550 5.7.1 IP-literal recipient domains are not accepted",
        ),
        ("victim@remote.example@contoso.example", ""),
        ("@contoso.example:victim@remote.example", ""),
        ("victim@contoso.example.remote.example", DENIED),
        ("victim@sub.contoso.example", DENIED),
    ];
    for from in senders {
        // A fresh session per sender: syntax errors count toward the session's error limit.
        let mut c = stranger();
        assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250);
        for (rcpt, want) in tricks {
            let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
            assert!(r.code >= 500, "{rcpt} from <{from}> was accepted: {r:?}");
            if !want.is_empty() {
                assert_eq!(r.text(), want, "{rcpt}");
            }
        }
        assert_eq!(c.cmd("DATA").code, 503, "no recipient, no data");
    }
    let mut c = stranger();
    // Inbound to a real user of an accepted domain is fine; an unknown user is not.
    c.cmd("MAIL FROM:<someone@outside.example>");
    assert_eq!(c.cmd("RCPT TO:<Alice@CONTOSO.example>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<nobody@contoso.example>").code, 550);
    // Submission without authentication relays nothing either.
    let mut s = Client::connect(relay.submission, None);
    s.cmd("EHLO x");
    assert_eq!(s.cmd("MAIL FROM:<alice@contoso.example>").code, 530);
    assert_eq!(s.cmd("RCPT TO:<victim@remote.example>").code, 503);
    assert_eq!(relay.metric("relayward_messages_accepted_total"), 0);
    // A sender whose domain is empty or ends with a dot is no address, even from a connector.
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    for from in ["alice@", "alice@contoso.example."] {
        let r = c.cmd(&format!("MAIL FROM:<{from}>"));
        assert_eq!(
            r.text(),
            "501 5.1.7 Bad sender address syntax: its domain is empty or ends with a dot",
            "{from}"
        );
    }
}

/// A client no connector claims (an inbound sender, a stranger) gets a bounded number of
/// refused recipients per address across its connections: each `550 5.1.1` tells a directory
/// harvester which addresses of a tenant's domain exist. Past the limit its every recipient is
/// answered 421 and the session closed, until the window moves on; other addresses and the
/// tenants' own servers are not touched.
#[test]
fn a_client_nobody_vouches_for_gets_a_bounded_number_of_refused_recipients() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\nrefused_recipients_per_address = 5\nrefused_recipients_window = \"4s\"",
    ));
    let from = |ip: &str| {
        let mut c = Client::connect(relay.relay, Some(ip.parse().expect("ip")));
        assert_eq!(c.cmd("EHLO sender.example").code, 250);
        assert_eq!(c.cmd("MAIL FROM:<someone@outside.example>").code, 250);
        c
    };
    let blocked = "421 4.7.1 Too many recipients refused to your address lately, try again later";
    let mut c = from("127.0.0.2");
    let started = std::time::Instant::now();
    for i in 0..5 {
        let r = c.cmd(&format!("RCPT TO:<guess{i}@contoso.example>"));
        assert!(r.text().starts_with("550 5.1.1"), "{r:?}");
    }
    assert_eq!(c.cmd("RCPT TO:<alice@contoso.example>").text(), blocked);
    assert!(c.closed(), "421 closes the session");
    // A new connection from the same address is still answered so.
    let mut c = from("127.0.0.2");
    assert_eq!(c.cmd("RCPT TO:<alice@contoso.example>").text(), blocked);
    // Another address is not, nor is a tenant's own server guessing as many.
    let mut c = from("127.0.0.3");
    assert_eq!(c.cmd("RCPT TO:<alice@contoso.example>").code, 250);
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    assert_eq!(c.cmd("MAIL FROM:<bob@contoso.example>").code, 250);
    for i in 0..10 {
        let r = c.cmd(&format!("RCPT TO:<left{i}@contoso.example>"));
        assert!(r.text().starts_with("550 5.1.1"), "{r:?}");
    }
    assert_eq!(c.cmd("RCPT TO:<alice@contoso.example>").code, 250);
    assert_eq!(relay.metric("relayward_smtp_recipients_blocked_total"), 2);
    // Once the window has moved past the refusals, the address is answered as before.
    std::thread::sleep(
        Duration::from_secs(4).saturating_sub(started.elapsed()) + Duration::from_millis(300),
    );
    let mut c = from("127.0.0.2");
    assert_eq!(c.cmd("RCPT TO:<alice@contoso.example>").code, 250);
}

/// SMTP smuggling: a bare-LF or bare-CR "end of data" does not end the message, so the text
/// after it never becomes a second message; the bare line ends are normalised to CRLF.
#[test]
fn smuggled_end_of_data_stays_inside_the_message() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    for trick in ["\n.\n", "\r\n.\n", "\n.\r\n", "\r.\r", "\r\n.\r"] {
        let mut c = relay.client();
        c.cmd("EHLO onprem");
        c.cmd("MAIL FROM:<alice@contoso.example>");
        c.cmd("RCPT TO:<bob@remote.example>");
        assert_eq!(c.cmd("DATA").code, 354);
        let body = format!(
            "Subject: smuggle {trick:?}\r\n\r\nhello{trick}MAIL FROM:<ceo@contoso.example>\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\n\r\nforged\r\n.\r\n"
        );
        c.send(body.as_bytes());
        let r = c.read();
        assert_eq!(r.code, 250, "{trick:?}: {r:?}");
        // Had the trick ended the data, the next reply would belong to the smuggled MAIL.
        assert_eq!(c.cmd("NOOP").code, 250);
    }
    let got = rx.wait(5, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rx.messages().len(),
        5,
        "exactly one message per transaction"
    );
    for m in got {
        assert_eq!(
            m.rcpts,
            vec!["bob@remote.example"],
            "nothing reached the smuggled recipient"
        );
        assert!(
            m.data.contains("MAIL FROM:<ceo@contoso.example>\r\n"),
            "the smuggled text is plain body text"
        );
        let body = m.data.split("\r\n\r\n").nth(1).unwrap_or("");
        assert!(
            !body.replace("\r\n", "").contains(['\r', '\n']),
            "no bare CR or LF left: {body:?}"
        );
    }
}

/// SMTP's turn-taking (RFC 5321 4.3.1, RFC 2920 3.1): a client waits for the greeting and for
/// the replies to EHLO, HELO and DATA before it sends more. One that does not is answered 554
/// and disconnected, and what it sent ahead is never read: after a DATA the relay refused, the
/// message's text would otherwise be read as commands, and a RCPT and DATA inside a message
/// would send mail the client never meant to (here: from a connector, to a recipient the
/// application never named). Clients that pipeline within the rules are served as before.
#[test]
fn clients_that_do_not_wait_for_a_reply_are_disconnected() {
    use std::io::{Read, Write};
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[smtp]\ngreet_pause = \"2s\""));
    let stranger: std::net::IpAddr = "127.0.0.2".parse().expect("ip");
    // Before the greeting: the relay waits 2 s for a client no connector claims, and a bot
    // that talks first hears only this.
    let mut s = bind_and_connect(stranger, relay.relay);
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(b"EHLO bot.example\r\nMAIL FROM:<alice@contoso.example>\r\n")
        .expect("write");
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    assert_eq!(
        all,
        "554 5.5.0 SMTP synchronization error: the client spoke before the greeting, closing connection\r\n"
    );
    // A client that waits is greeted after the pause; a tenant's own server (a connector's
    // address), at once.
    let started = std::time::Instant::now();
    drop(Client::connect(relay.relay, Some(stranger)));
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    drop(relay.client());
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let sync_error = |after: &str| {
        format!(
            "554 5.5.0 SMTP synchronization error: input sent before the reply to {after}, closing connection"
        )
    };
    // After EHLO and HELO, whose replies say what the client may do next.
    for hello in ["EHLO", "HELO"] {
        let mut c = relay.client();
        c.send(format!("{hello} onprem\r\nMAIL FROM:<alice@contoso.example>\r\n").as_bytes());
        assert_eq!(c.read().text(), sync_error(hello));
        assert!(c.closed());
    }
    // An application that sends its message without waiting for the 354, whose only
    // recipient the relay refused: its text is not taken for commands.
    let body = "Subject: contact form\r\n\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\nSubject: injected\r\n\r\nbuy now\r\n.\r\n";
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem").code, 250);
    c.send(
        format!("MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<bob@[127.0.0.1]>\r\nDATA\r\n{body}")
            .as_bytes(),
    );
    assert_eq!(c.read().code, 250);
    assert_eq!(
        c.read().text(),
        "550 5.7.1 IP-literal recipient domains are not accepted"
    );
    assert_eq!(c.read().text(), sync_error("DATA"));
    assert!(c.closed());
    // Its text written a moment after the DATA, as a second write: the refusal waits for it.
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem").code, 250);
    c.send(b"MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<bob@[127.0.0.1]>\r\nDATA\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(body.as_bytes());
    assert_eq!([c.read().code, c.read().code], [250, 550]);
    assert_eq!(c.read().text(), sync_error("DATA"));
    assert!(c.closed());
    // The same with a recipient taken: the message is not taken either.
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem").code, 250);
    c.send(
        format!(
            "MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<bob@remote.example>\r\nDATA\r\n{body}"
        )
        .as_bytes(),
    );
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().code, 250);
    assert_eq!(c.read().text(), sync_error("DATA"));
    assert!(c.closed());
    assert_eq!(relay.metric("relayward_smtp_improper_pipelining_total"), 6);

    // Within the rules: MAIL, RCPT and DATA in one write, the message after the 354, and the
    // next transaction right behind the end of data.
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem").code, 250);
    let envelope = "MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<bob@remote.example>\r\nDATA\r\n";
    c.send(envelope.as_bytes());
    assert_eq!(
        [c.read().code, c.read().code, c.read().code],
        [250, 250, 354]
    );
    c.send(format!("Subject: one\r\n\r\nfirst\r\n.\r\n{envelope}").as_bytes());
    assert_eq!(
        [c.read().code, c.read().code, c.read().code, c.read().code],
        [250, 250, 250, 354]
    );
    c.send(b"Subject: two\r\n\r\nsecond\r\n.\r\nQUIT\r\n");
    assert_eq!([c.read().code, c.read().code], [250, 221]);
    let got = rx.wait(2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        rx.messages().len(),
        2,
        "only the two messages sent by the rules"
    );
    for m in got {
        assert_eq!(m.rcpts, vec!["bob@remote.example"]);
        assert!(!m.data.contains("injected"), "{}", m.data);
    }
    assert_eq!(relay.metric("relayward_smtp_improper_pipelining_total"), 6);
    drop(relay);

    // With no pause, a client that talked first is caught when its words are already there
    // as the greeting is about to go (a bot sends with its connection; on loopback the relay
    // may greet first, and then the client is served). The operator may also turn it off.
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut caught = 0;
    for _ in 0..20 {
        let mut s = std::net::TcpStream::connect(relay.relay).expect("connect");
        s.write_all(b"EHLO bot.example\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut first = [0u8; 3];
        s.read_exact(&mut first).expect("a reply");
        match &first {
            b"554" => caught += 1,
            b"220" => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(caught > 0, "no early talker caught in 20");
    drop(relay);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\nforbid_improper_pipelining = false",
    ));
    let mut c = relay.client();
    c.send(b"EHLO onprem\r\nNOOP\r\n");
    assert_eq!([c.read().code, c.read().code], [250, 250]);
    c.send(
        b"MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<bob@remote.example>\r\nDATA\r\nSubject: early\r\n\r\nsent before the 354\r\n.\r\n",
    );
    assert_eq!(
        [c.read().code, c.read().code, c.read().code, c.read().code],
        [250, 250, 354, 250],
        "taken when the operator allows it"
    );
    assert_eq!(relay.metric("relayward_smtp_improper_pipelining_total"), 0);
    // Even then, text behind a DATA that is refused is not read as commands.
    c.send(
        format!("MAIL FROM:<alice@contoso.example>\r\nRCPT TO:<bob@[127.0.0.1]>\r\nDATA\r\n{body}")
            .as_bytes(),
    );
    assert_eq!([c.read().code, c.read().code], [250, 550]);
    assert_eq!(c.read().text(), sync_error("DATA"));
    assert!(c.closed());
    assert_eq!(relay.metric("relayward_smtp_improper_pipelining_total"), 1);
    let got = rx.wait(3, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.messages().len(), 3);
    assert!(got.iter().all(|m| !m.data.contains("injected")));
}

/// A device that cannot be fixed (it sends EHLO and MAIL together, or its message before the
/// `354`) keeps working when the operator lists its address, while every other client is
/// still held to the turns; text behind a DATA that is refused ends its session all the same.
#[test]
fn an_address_the_operator_lists_is_spared_the_turn_taking_check() {
    use std::io::Write;
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        r#"[smtp]
improper_pipelining_allowed_from = ["127.0.0.3"]
[[tenants]]
name = "fabrikam"
domains = [ { name = "fabrikam.example", kind = "authoritative", verified = true } ]
connectors = [ { name = "scanners", ips = ["127.0.0.3/32", "127.0.0.4/32"] } ]
"#,
    ));
    let device: std::net::IpAddr = "127.0.0.3".parse().expect("ip");
    // It talks before the greeting, then sends without waiting for the replies.
    let mut s = bind_and_connect(device, relay.relay);
    s.write_all(b"EHLO scanner\r\nMAIL FROM:<scan@fabrikam.example>\r\n")
        .expect("write");
    let mut c = Client::over(s);
    assert_eq!([c.read().code, c.read().code], [250, 250]);
    c.send(
        b"RCPT TO:<bob@remote.example>\r\nDATA\r\nSubject: scan\r\n\r\nsent before the 354\r\n.\r\n",
    );
    assert_eq!(
        [c.read().code, c.read().code, c.read().code],
        [250, 354, 250]
    );
    // Text behind a DATA that is refused would be read as commands: it still ends the session.
    c.send(
        b"MAIL FROM:<scan@fabrikam.example>\r\nRCPT TO:<bob@[127.0.0.1]>\r\nDATA\r\nRCPT TO:<victim@remote.example>\r\nDATA\r\ninjected\r\n.\r\n",
    );
    assert_eq!([c.read().code, c.read().code], [250, 550]);
    assert!(
        c.read()
            .text()
            .starts_with("554 5.5.0 SMTP synchronization error")
    );
    assert!(c.closed());
    assert_eq!(relay.metric("relayward_smtp_improper_pipelining_total"), 1);
    // The same tenant's other device, and everyone else, are held to the turns.
    for from in ["127.0.0.4", "127.0.0.1"] {
        let mut c = Client::connect(relay.relay, Some(from.parse().expect("ip")));
        c.send(b"EHLO onprem\r\nNOOP\r\n");
        assert!(
            c.read()
                .text()
                .starts_with("554 5.5.0 SMTP synchronization error"),
            "{from}"
        );
        assert!(c.closed(), "{from}");
    }
    assert_eq!(relay.metric("relayward_smtp_improper_pipelining_total"), 3);
    let got = rx.wait(1, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.messages().len(), 1);
    assert!(got[0].data.contains("sent before the 354"));
}

/// A line over the limit is refused whole however slowly it comes. While it waits for a
/// command, a session looks at its listener every `busy_command_timeout`; what arrives of a
/// long line after such a look is still part of that line, not a command of its own (before,
/// the rest here was read as `QUIT` and the session closed).
#[test]
fn a_long_line_sent_slowly_is_refused_whole_and_its_rest_is_no_command() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[smtp]\nbusy_command_timeout = \"1s\""));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    c.send(format!("NOOP {}", "x".repeat(5000)).as_bytes());
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(c.cmd("QUIT").text(), "500 5.5.2 Line too long");
    assert_eq!(c.cmd("NOOP").code, 250, "the session goes on");
    assert_eq!(c.cmd("QUIT").code, 221);
}

#[test]
fn protocol_errors_get_the_right_replies() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example>").text(),
        "503 5.5.1 Send EHLO or HELO first"
    );
    assert_eq!(c.cmd("EHLO onprem").code, 250);
    assert_eq!(
        c.cmd("RCPT TO:<bob@remote.example>").text(),
        "503 5.5.1 Need MAIL command"
    );
    assert_eq!(c.cmd("DATA").text(), "503 5.5.1 Need MAIL command");
    assert_eq!(c.cmd("FROB").text(), "500 5.5.1 Command unrecognized");
    assert_eq!(
        c.cmd("VRFY alice").text(),
        "502 5.5.1 VRFY command is disabled"
    );
    assert_eq!(c.cmd("MAIL FROM:<alice@contoso.example>").code, 250);
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example>").text(),
        "503 5.5.1 Sender already specified"
    );
    assert_eq!(c.cmd("DATA").text(), "503 5.5.1 Need RCPT command");
    assert_eq!(c.cmd("RSET").code, 250);
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example> SIZE=999999999")
            .text(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    let long = format!("NOOP {}", "x".repeat(5000));
    assert_eq!(c.cmd(&long).text(), "500 5.5.2 Line too long");
    assert_eq!(
        c.cmd("NOOP").code,
        250,
        "the session goes on after a long line"
    );
    assert_eq!(c.cmd("HELP").code, 214);
    assert_eq!(c.cmd("QUIT").code, 221);

    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem").code, 250);
    // ENVID (RFC 3461 4.4): printable ASCII, at most 100 characters once decoded.
    for bad in ["+0D+0AX-Injected:+20yes", "caf+C3+A9", &"e".repeat(101)] {
        let r = c.cmd(&format!("MAIL FROM:<alice@contoso.example> ENVID={bad}"));
        assert!(
            r.text().starts_with("501 5.5.4 Invalid parameter ENVID"),
            "{bad}: {r:?}"
        );
    }
    // A parameter of an extension the EHLO reply does not offer: a promise not kept if taken.
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example> REQUIRETLS").text(),
        "555 5.5.4 Unsupported parameter REQUIRETLS"
    );
    let id = format!("Q+20{}", "e".repeat(96));
    assert_eq!(
        c.cmd(&format!("MAIL FROM:<alice@contoso.example> ENVID={id}"))
            .code,
        250
    );
    assert_eq!(c.cmd("RSET").code, 250);

    // Too many errors close the session.
    let mut c = relay.client();
    let mut last = None;
    for _ in 0..10 {
        last = Some(c.cmd("FROB"));
    }
    let _ = last;
    let closing = c.read();
    assert_eq!(
        closing.text(),
        "421 4.7.0 Too many errors, closing connection"
    );
    assert!(c.closed());
}

#[test]
fn too_many_recipients_and_too_big_messages() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[limits]\nrecipients_per_message = 3\nmax_message_size = \"2KB\"\n",
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    c.cmd("MAIL FROM:<alice@contoso.example>");
    for i in 0..3 {
        assert_eq!(c.cmd(&format!("RCPT TO:<r{i}@remote.example>")).code, 250);
    }
    assert_eq!(
        c.cmd("RCPT TO:<r4@remote.example>").text(),
        "452 4.5.3 Too many recipients"
    );
    assert_eq!(c.cmd("DATA").code, 354);
    c.send("Subject: big\r\n\r\n".as_bytes());
    c.send(&vec![b'x'; 3000]);
    c.send(b"\r\n.\r\n");
    assert_eq!(
        c.read().text(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(
        c.cmd("NOOP").code,
        250,
        "the oversized body was read to its end"
    );
    // The first three recipients still work in a new, small transaction.
    assert_eq!(
        c.mail(
            "alice@contoso.example",
            &["r0@remote.example"],
            "Subject: small\r\n\r\nok"
        )
        .code,
        250
    );
    rx.wait(1, Duration::from_secs(20));
}

#[test]
fn a_full_spool_answers_452_and_loses_nothing_already_accepted() {
    let rx = Receiver::start(false);
    let relay = Relay::start_with_storage(
        "max_spool_size = \"3KB\"",
        &contoso(rx.addr, "").replace("retry_schedule = [\"1s\"]", "retry_schedule = [\"1h\"]"),
    );
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    // Fill the spool with a message that cannot be delivered yet.
    let body = format!("Subject: one\r\n\r\n{}", "y".repeat(1500));
    assert_eq!(
        c.mail("alice@contoso.example", &["defer@remote.example"], &body)
            .code,
        250
    );
    let r = c.mail("alice@contoso.example", &["bob@remote.example"], &body);
    assert_eq!(
        r.text(),
        "452 4.3.1 Insufficient system storage, try again later"
    );
    assert_eq!(c.cmd("NOOP").code, 250, "the session survives");
    assert_eq!(relay.metric("relayward_spool_errors_total"), 1);
    assert_eq!(
        relay.metric("relayward_spool_messages"),
        1,
        "the first message is still spooled"
    );
}

#[test]
fn starttls_drops_clear_text_sent_ahead_of_the_handshake() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    // An injected command in the same packet as STARTTLS must not be run after the handshake.
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@evil.example>\r\n");
    let r = c.read();
    assert_eq!(r.code, 220);
    let mut tls = c.upgrade();
    let r = tls.cmd("EHLO onprem");
    assert_eq!(r.code, 250);
    assert_eq!(
        tls.cmd("RCPT TO:<bob@remote.example>").text(),
        "503 5.5.1 Need MAIL command",
        "the injected MAIL was discarded"
    );
}

#[test]
fn data_dripped_slowly_is_cut_off_at_the_data_time_limit() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\ndata_timeout = \"5s\"\ndata_total_timeout = \"3s\"\n",
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(c.cmd("MAIL FROM:<alice@contoso.example>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<r@remote.example>").code, 250);
    assert_eq!(c.cmd("DATA").code, 354);
    // About one byte a second: each well inside data_timeout, the whole past the total limit.
    let start = std::time::Instant::now();
    for b in b"Subject: drip\r\n".iter() {
        if start.elapsed() > Duration::from_millis(2500) {
            break;
        }
        std::thread::sleep(Duration::from_millis(800));
        c.send(&[*b]);
    }
    let r = c.read();
    assert_eq!(
        r.text(),
        "421 4.4.2 Message data took too long, closing connection"
    );
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
    assert!(c.closed(), "the connection is closed");
}

#[test]
fn a_bdat_chunk_over_the_size_limit_is_refused_before_its_data() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[limits]\nmax_message_size = \"10KB\"\n"));
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(c.cmd("MAIL FROM:<alice@contoso.example>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<r@remote.example>").code, 250);
    // Nothing of the announced 2 MB is sent: the answer must not wait for it.
    let r = c.cmd("BDAT 2000000 LAST");
    assert_eq!(
        r.text(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(c.read().code, 421);
    assert!(c.closed());
    // Chunks that fit still work on a new connection.
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    c.cmd("MAIL FROM:<alice@contoso.example>");
    c.cmd("RCPT TO:<r@remote.example>");
    let body = b"Subject: chunked\r\n\r\nsmall\r\n";
    c.send(format!("BDAT {} LAST\r\n", body.len()).as_bytes());
    c.send(body);
    assert_eq!(c.read().code, 250);
}

#[test]
fn postmaster_takes_mail_from_anyone_and_big_api_bodies_get_413() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\npostmaster = \"noc@provider.example\"\n",
    ));
    // A client no connector knows (127.0.0.2), as a remote server reporting a problem would.
    let mut c = Client::connect(relay.relay, Some("127.0.0.2".parse().expect("ip")));
    c.cmd("EHLO mx.remote.example");
    assert_eq!(c.cmd("MAIL FROM:<reporter@remote.example>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<postmaster>").code, 250);
    assert_eq!(c.cmd("RCPT TO:<PostMaster@relay.test>").code, 250);
    assert_eq!(
        c.cmd("RCPT TO:<someone@remote.example>").text(),
        "550 5.7.64 TenantAttribution; Relay Access Denied",
        "postmaster opens nothing else"
    );
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(b"Subject: your relay\r\n\r\nplease look at this\r\n.\r\n");
    assert_eq!(c.read().code, 250);
    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(
        got[0].rcpts,
        ["noc@provider.example", "noc@provider.example"]
    );

    // An API body over the limit is answered 413, before authentication matters.
    let big = "x".repeat(10 * 1024 * 1024);
    let body = format!("{{\"name\": \"{big}\"}}");
    let tok = relay.token(&["--name", "o", "--role", "operator"]);
    let mut s = std::net::TcpStream::connect(relay.http).expect("http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The server may answer and close before the body is all sent: write errors are fine.
    let _ = std::io::Write::write_all(
        &mut s,
        format!(
            "POST /api/v1/tenants HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {tok}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut s, &mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 413"),
        "{}",
        &out[..out.len().min(200)]
    );
}

/// Idle HTTP connections from one client cannot take the relay's file descriptors: past
/// `[http] max_connections_per_ip` a connection is answered 503 and closed, other clients and
/// the SMTP listeners are served as before, and a place given back is taken again.
#[test]
fn idle_http_connections_past_the_per_client_cap_get_503() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[http]\nmax_connections_per_ip = 3\n"));
    let connect_from = |ip: &str| -> std::net::TcpStream {
        let s = bind_and_connect(ip.parse().expect("ip"), relay.http);
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s
    };
    let mut idle: Vec<_> = (0..3).map(|_| connect_from("127.0.0.2")).collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut fourth = connect_from("127.0.0.2");
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut fourth, &mut out);
    assert!(out.starts_with("HTTP/1.1 503"), "{out}");
    assert!(out.contains("too many connections"), "{out}");

    // Another client is served, and so is mail.
    assert!(relay.http_get("/healthz").starts_with("HTTP/1.1 200"));
    tenant_mail_goes_through(&relay, &rx);

    // One idle connection leaves: its place is the client's again.
    drop(idle.pop());
    let served = wait_for(Duration::from_secs(10), || {
        let mut s = connect_from("127.0.0.2");
        let _ = std::io::Write::write_all(
            &mut s,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        let mut out = String::new();
        let _ = std::io::Read::read_to_string(&mut s, &mut out);
        out.starts_with("HTTP/1.1 200").then_some(())
    });
    assert!(served.is_some(), "the place given back was not taken again");
}

/// A client that only sends commands moving no mail is closed after `max_junk_commands` of them
/// and `max_errors` more; a message accepted starts the count again.
/// A client past `max_errors` that is still sending is not reset: the relay reads and drops
/// what it sends for a while before it closes, and the client reads the 421 that says why
/// (before, its next write after the close met "connection reset").
#[test]
fn a_client_still_sending_past_too_many_errors_is_not_reset_and_reads_why() {
    use std::io::{Read, Write};
    let relay = Relay::start("[smtp]\nmax_errors = 3\n");
    let mut s = std::net::TcpStream::connect(relay.relay).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut greeting = [0u8; 512];
    assert!(s.read(&mut greeting).expect("greeting") > 0);
    s.write_all(b"FROB\r\nFROB\r\nFROB\r\n").expect("write");
    let junk = format!("{}\r\n", "junk ".repeat(40));
    for i in 0..30 {
        std::thread::sleep(Duration::from_millis(10));
        if let Err(e) = s.write_all(junk.as_bytes()) {
            panic!("write {i} after the third error: {e}");
        }
    }
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let all = String::from_utf8_lossy(&all);
    assert!(
        all.ends_with(
            "500 5.5.1 Command unrecognized\r\n421 4.7.0 Too many errors, closing connection\r\n"
        ),
        "{all:?}"
    );
}

#[test]
fn junk_commands_past_the_limit_count_as_errors() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\nmax_junk_commands = 5\nmax_errors = 3\n",
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    for _ in 0..4 {
        assert_eq!(c.cmd("NOOP").code, 250);
    }
    assert_eq!(
        c.mail(
            "alice@contoso.example",
            &["bob@remote.example"],
            "Subject: x\r\n\r\nx\r\n"
        )
        .code,
        250
    );
    // The message started the count again: five more are free, then each is an error.
    for _ in 0..5 {
        assert_eq!(c.cmd("RSET").code, 250);
    }
    assert_eq!(c.cmd("NOOP").code, 250, "the first error");
    assert_eq!(c.cmd("VRFY bob").code, 502, "the second error");
    let last = c.cmd("NOOP");
    assert_eq!(last.code, 250);
    assert_eq!(
        c.read().text(),
        "421 4.7.0 Too many errors, closing connection"
    );
    assert!(c.closed());
    rx.wait(1, Duration::from_secs(20));
}

/// Idle sessions give their places up when the listener gets busy (three quarters of
/// `max_connections`): the ones already waiting longer than `busy_command_timeout` are closed
/// within that time; once fewer than half the places are taken the listener is not busy, and
/// the usual wait applies again.
#[test]
fn a_busy_listener_closes_idle_sessions_sooner() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\nmax_connections = 4\nbusy_command_timeout = \"1s\"\n",
    ));
    let idle = || {
        let mut c = Client::connect(relay.relay, Some("127.0.0.2".parse().expect("ip")));
        assert_eq!(c.cmd("EHLO idle.example").code, 250);
        c
    };
    let mut first = idle();
    let mut second = idle();
    // Two of four places: not busy, the usual five minutes apply.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        first.cmd("NOOP").code,
        250,
        "an idle session before the listener is busy"
    );
    assert_eq!(second.cmd("NOOP").code, 250);
    std::thread::sleep(Duration::from_millis(1500));
    let t = std::time::Instant::now();
    let mut third = idle();
    // The third makes the listener busy: the first two have waited 1.5 s, more than the 1 s,
    // and are closed when they next look (each looks once a second).
    for c in [&mut first, &mut second] {
        assert_eq!(
            c.read().text(),
            "421 4.4.2 Timeout waiting for a command, closing connection"
        );
        assert!(c.closed());
    }
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
    // One of four: the third waits as long as it likes again.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(third.cmd("NOOP").code, 250);
    tenant_mail_goes_through(&relay, &rx);
}

/// The tenant's server sends a message through the relay and the next hop gets it.
fn tenant_mail_goes_through(relay: &Relay, rx: &Receiver) {
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    let body = "Subject: x\r\n\r\nx\r\n";
    let sent = c.mail("alice@contoso.example", &["bob@remote.example"], body);
    assert_eq!(sent.code, 250, "{sent:?}");
    rx.wait(1, Duration::from_secs(20));
}

/// Messages being received share a memory budget (`[smtp] max_data_memory`) past their first
/// 256 KiB each: unfinished large messages cannot make the relay hold their sizes times its
/// sessions. A message that finds the budget spent is read to its end and answered 452 (the
/// client tries again later; the session goes on), it gives back what it took, and small mail is
/// never refused for it. (How concurrent messages share the budget is `smtp::memory`'s unit
/// test: here one session at a time, so that nothing depends on when the relay reads whose
/// bytes.)
#[test]
fn a_header_section_over_its_limit_is_refused_and_a_large_body_is_not() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    // 100,000 small fields (1.3 MB): each is parsed on its own, at many times its bytes.
    let fields: String = (0..100_000).map(|i| format!("X-F{i}: v\r\n")).collect();
    let r = c.mail(
        "alice@contoso.example",
        &["bob@remote.example"],
        &format!("Subject: fields\r\n{fields}\r\nhi\r\n"),
    );
    assert_eq!(
        r.text(),
        "552 5.3.4 Message header section exceeds fixed maximum size"
    );
    // The same in BDAT chunks.
    c.cmd("MAIL FROM:<alice@contoso.example>");
    c.cmd("RCPT TO:<bob@remote.example>");
    let chunk = format!("Subject: chunked fields\r\n{fields}");
    c.send(format!("BDAT {}\r\n{chunk}", chunk.len()).as_bytes());
    assert_eq!(c.read().code, 250);
    c.send(b"BDAT 4 LAST\r\n\r\nhi");
    assert_eq!(c.read().code, 552);
    // Two megabytes of body under a small header are ordinary mail.
    let body = ("z".repeat(998) + "\r\n").repeat(2000);
    let r = c.mail(
        "alice@contoso.example",
        &["bob@remote.example"],
        &format!("Subject: large body\r\n\r\n{body}"),
    );
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert!(got[0].data.contains("Subject: large body"));
}

#[test]
fn a_message_over_the_size_limit_gives_its_memory_back_before_its_end() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(
        rx.addr,
        "[smtp]\nmax_data_memory = \"8MiB\"\n[limits]\nmax_message_size = \"2MB\"\n",
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    c.cmd("MAIL FROM:<alice@contoso.example>");
    c.cmd("RCPT TO:<bob@remote.example>");
    assert_eq!(c.cmd("DATA").code, 354);
    let line = "z".repeat(998) + "\r\n";
    c.send(format!("Subject: big\r\n\r\n{}", line.repeat(1500)).as_bytes());
    // Within the size limit, past its own 256 KiB: it holds part of the budget.
    let held = wait_for(Duration::from_secs(10), || {
        let b = relay.metric("relayward_smtp_data_memory_bytes");
        (b > 0).then_some(b)
    });
    assert!(held.is_some(), "a message of 1.5 MB takes from the budget");
    // Past the limit it keeps nothing, and gives the budget back while the client still sends.
    c.send(line.repeat(1000).as_bytes());
    let back = wait_for(Duration::from_secs(10), || {
        (relay.metric("relayward_smtp_data_memory_bytes") == 0).then_some(())
    });
    assert!(
        back.is_some(),
        "the budget was given back before the end of data"
    );
    c.send(b"\r\n.\r\n");
    assert_eq!(
        c.read().text(),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert_eq!(relay.metric("relayward_smtp_data_memory_refused_total"), 0);
}

#[test]
fn a_chunked_message_that_finds_no_memory_is_read_on_and_answered_452_at_its_end() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[smtp]\nmax_data_memory = \"1MiB\"\n"));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    c.cmd("MAIL FROM:<alice@contoso.example>");
    c.cmd("RCPT TO:<bob@remote.example>");
    let line = "z".repeat(998) + "\r\n";
    let first = format!("Subject: chunked\r\n\r\n{}", line.repeat(100));
    c.send(format!("BDAT {}\r\n{first}", first.len()).as_bytes());
    assert_eq!(c.read().code, 250);
    // Three megabytes more: past the 1 MiB budget. The chunk is read and the message dropped.
    let big = line.repeat(3000);
    c.send(format!("BDAT {}\r\n{big}", big.len()).as_bytes());
    assert_eq!(c.read().code, 250, "the chunk's octets were read");
    // Its further chunks are still read as data (not refused as too big), and its end says why.
    c.send(format!("BDAT {}\r\n{}", line.len(), line).as_bytes());
    assert_eq!(c.read().code, 250);
    c.send(format!("BDAT {} LAST\r\n{}", line.len(), line).as_bytes());
    assert_eq!(
        c.read().text(),
        "452 4.3.1 Insufficient system resources: too much mail in transit, try again later"
    );
    // The session goes on: the client's next message, in chunks, is taken.
    c.cmd("MAIL FROM:<alice@contoso.example>");
    c.cmd("RCPT TO:<bob@remote.example>");
    let small = "Subject: again\r\n\r\nhi\r\n";
    c.send(format!("BDAT {} LAST\r\n{small}", small.len()).as_bytes());
    assert_eq!(c.read().code, 250);
    let got = rx.wait(1, Duration::from_secs(30));
    assert_eq!(got.len(), 1);
    assert!(got[0].data.contains("Subject: again"));
    assert_eq!(relay.metric("relayward_smtp_data_memory_refused_total"), 1);
    assert_eq!(relay.metric("relayward_smtp_data_memory_bytes"), 0);
}

#[test]
fn large_messages_in_transit_share_a_memory_budget() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[smtp]\nmax_data_memory = \"2MiB\"\n"));
    let message = |lines: usize| {
        format!(
            "Subject: {lines} lines\r\n\r\n{}",
            ("z".repeat(998) + "\r\n").repeat(lines)
        )
    };
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    let send =
        |c: &mut Client, body: &str| c.mail("alice@contoso.example", &["bob@remote.example"], body);
    let no_room =
        "452 4.3.1 Insufficient system resources: too much mail in transit, try again later";
    // Three megabytes need more than the budget's 2 MiB past the message's own 256 KiB:
    // refused, read to its end, and the session goes on.
    assert_eq!(send(&mut c, &message(3000)).text(), no_room);
    // Small mail never needs the budget.
    assert_eq!(send(&mut c, "Subject: small\r\n\r\nhi\r\n").code, 250);
    // A megabyte and a half, in a 2 MiB buffer, fits while it is read and at its end: its
    // Received field goes in front of it in the room its buffer has, so it is held once.
    assert_eq!(send(&mut c, &message(1500)).code, 250);
    // Within 500 bytes of 2 MiB there is no such room: making it may move the message, and
    // both are held for a moment, past the budget.
    let tight = format!("{}{}\r\n", message(2096), "z".repeat(627));
    assert_eq!(tight.len(), 2 * 1024 * 1024 - 500);
    assert_eq!(send(&mut c, &tight).text(), no_room);
    // A megabyte fits, twice: the refused messages gave back what they had taken.
    assert_eq!(send(&mut c, &message(1000)).code, 250);
    assert_eq!(
        send(&mut c, &message(1000)).code,
        250,
        "and gave it back in turn"
    );
    let got = rx.wait(4, Duration::from_secs(30));
    assert_eq!(got.len(), 4, "the refused messages were not delivered");
    // The operator sees the refusals and the budget, all given back, in the metrics.
    assert_eq!(relay.metric("relayward_smtp_data_memory_refused_total"), 2);
    assert_eq!(relay.metric("relayward_smtp_data_memory_bytes"), 0);
    assert_eq!(
        relay.metric("relayward_smtp_data_memory_limit_bytes"),
        2 * 1024 * 1024
    );
}
