//! TLS on both sides. Certificates renewed while the relay runs: an ACME client replaces the
//! files, and the next handshakes get the new certificate without a restart; SIGHUP reads them
//! at once and does not end the relay; files that cannot be used leave the last good
//! certificate in service. Connectors matched by client certificate, and the CA bundle they are
//! checked against changed the same way. Destinations whose STARTTLS fails still get their mail.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::util::*;

/// A certificate for `relay.test` that ends on the given day, and its key, as PEM.
fn pair(not_after: (i32, u8, u8)) -> (String, String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(vec!["relay.test".to_string()]).expect("params");
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), key.serialize_pem(), cert.der().to_vec())
}

/// Puts `text` at `path` the way ACME clients and configuration tools do: written beside it,
/// then renamed over it.
fn replace(path: &Path, text: &str) {
    let beside = path.with_extension("new");
    std::fs::write(&beside, text).expect("write");
    std::fs::rename(&beside, path).expect("rename");
}

/// The certificate the HTTP listener serves (DER).
fn https_certificate(relay: &Relay) -> Vec<u8> {
    tls_connect(relay.http)
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a certificate")
}

fn metric_line(relay: &Relay, prefix: &str) -> String {
    relay
        .http_get("/metrics")
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .to_string()
}

#[test]
fn renewed_certificates_are_served_without_a_restart_and_broken_ones_are_not() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("smtp.pem"), dir.path().join("smtp.key"));
    let (http_cert, http_key) = (dir.path().join("http.pem"), dir.path().join("http.key"));
    let (a_pem, a_key, a_der) = pair((2027, 3, 1));
    replace(&cert, &a_pem);
    replace(&key, &a_key);
    let (h_pem, h_key, h_der) = pair((2027, 3, 1));
    replace(&http_cert, &h_pem);
    replace(&http_key, &h_key);
    let mut relay = Relay::start(&format!(
        "[smtp]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[http]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display(),
        http_cert.display(),
        http_key.display()
    ));
    assert_eq!(starttls_certificate(relay.submission).0, a_der);
    assert_eq!(https_certificate(&relay), h_der);
    // What an operator alerts on: 2027-03-01 00:00:00 UTC.
    // The HTTP listener speaks TLS here: read the page through it.
    let page = |relay: &Relay| https_get(relay.http, "/metrics");
    let metrics = page(&relay);
    assert!(
        metrics.contains(
            "relayward_tls_certificate_expiry_timestamp_seconds{listener=\"smtp\"} 1803859200"
        ) && metrics.contains(
            "relayward_tls_certificate_expiry_timestamp_seconds{listener=\"http\"} 1803859200"
        ),
        "{metrics}"
    );

    // Renewed on disk, nothing said to the relay: new handshakes get it within seconds.
    let (b_pem, b_key, b_der) = pair((2027, 6, 1));
    replace(&key, &b_key);
    replace(&cert, &b_pem);
    let seen = wait_for(Duration::from_secs(20), || {
        (starttls_certificate(relay.relay).0 == b_der).then_some(())
    });
    assert!(seen.is_some(), "the renewed certificate was not served");
    assert_eq!(starttls_certificate(relay.submission).0, b_der);

    // Half a renewal (a new certificate, the old key), then SIGHUP: the relay goes on, serving
    // the last good pair, and says the files cannot be used.
    let (c_pem, _, _) = pair((2027, 9, 1));
    replace(&cert, &c_pem);
    relay.signal("HUP");
    let flagged = wait_for(Duration::from_secs(20), || {
        page(&relay)
            .contains("relayward_tls_certificate_files_unusable{listener=\"smtp\"} 1")
            .then_some(())
    });
    assert!(flagged.is_some(), "unusable files were not reported");
    assert!(relay.running(), "SIGHUP ended the relay");
    let (served, mut c) = starttls_certificate(relay.submission);
    assert_eq!(served, b_der, "the last good certificate is served");
    assert_eq!(c.cmd("EHLO client.test").code, 250);

    // Mended, and the HTTP listener's certificate renewed too; SIGHUP reads both at once.
    let (d_pem, d_key, d_der) = pair((2027, 12, 1));
    replace(&key, &d_key);
    replace(&cert, &d_pem);
    let (h2_pem, h2_key, h2_der) = pair((2028, 1, 1));
    replace(&http_key, &h2_key);
    replace(&http_cert, &h2_pem);
    relay.signal("HUP");
    let both = wait_for(Duration::from_secs(20), || {
        (starttls_certificate(relay.relay).0 == d_der && https_certificate(&relay) == h2_der)
            .then_some(())
    });
    assert!(
        both.is_some(),
        "SIGHUP did not bring in the renewed certificates"
    );
    let metrics = page(&relay);
    assert!(
        metrics.contains("relayward_tls_certificate_files_unusable{listener=\"smtp\"} 0"),
        "{metrics}"
    );
    assert!(relay.running(), "SIGHUP ended the relay");
    // SIGTERM still stops it cleanly.
    assert!(relay.terminate().success());
}

/// A CA that signs client certificates.
pub(crate) fn client_ca(name: &str) -> TestCa {
    TestCa::new(name)
}

/// A client certificate for `name` signed by `ca`, with its key.
fn client_certificate(
    ca: &TestCa,
    name: &str,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    ca.issue(&[name], rcgen::ExtendedKeyUsagePurpose::ClientAuth)
}

/// Connectors matched by client certificate, against the operator's CA bundle
/// (`[smtp] client_ca`): a certificate from a CA in the bundle relays for its connector's
/// tenant, one from another CA is refused, and the bundle is read again when it changes (a CA
/// added for a new tenant's servers, one retired) without a restart; a bundle that cannot be used
/// leaves the one before it trusted, and says so in the metrics.
#[test]
fn connectors_are_matched_by_client_certificate_and_a_changed_ca_bundle_needs_no_restart() {
    let rx = Receiver::start(false);
    let dir = tempfile::tempdir().expect("dir");
    let bundle = dir.path().join("client-ca.pem");
    let (first, second) = (client_ca("First CA"), client_ca("Second CA"));
    replace(&bundle, &first.pem);
    let mut relay = Relay::start(&format!(
        r#"[smtp]
client_ca = "{}"
[delivery]
smart_host = "{}"
retry_schedule = ["1s"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "edge", cert_name = "mail.contoso.example" }} ]
[[tenants]]
name = "fabrikam"
domains = [ {{ name = "fabrikam.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "edge", cert_name = "*.fabrikam.example" }} ]
"#,
        bundle.display(),
        rx.addr
    ));
    let contoso = client_certificate(&first, "mail.contoso.example");
    let fabrikam = client_certificate(&second, "smtp.fabrikam.example");
    let sends = |c: &mut Client, from: &str| {
        let r = c.mail(from, &["bob@remote.example"], "Subject: x\r\n\r\nx\r\n");
        assert_eq!(r.code, 250, "{r:?}");
    };

    // Without a certificate, this address is nobody's connector: no relaying.
    let mut plain = relay.client();
    plain.cmd("EHLO client.test");
    assert_eq!(plain.cmd("MAIL FROM:<a@contoso.example>").code, 250);
    let refused = plain.cmd("RCPT TO:<bob@remote.example>");
    assert_eq!(refused.code / 100, 5, "{refused:?}");
    drop(plain);

    // With contoso's certificate (from the CA in the bundle), contoso's connector.
    let mut c = starttls_with_certificate(relay.relay, contoso.0.clone(), contoso.1.clone_key())
        .expect("the certificate from the trusted CA is taken");
    sends(&mut c, "a@contoso.example");
    rx.wait(1, Duration::from_secs(20));
    // Fabrikam's certificate comes from a CA the bundle does not hold.
    assert!(
        starttls_with_certificate(relay.relay, fabrikam.0.clone(), fabrikam.1.clone_key())
            .is_none(),
        "a certificate from a CA not in the bundle was taken"
    );
    assert!(
        metric_line(&relay, "relayward_tls_client_ca_files_unusable").ends_with(" 0"),
        "the bundle is usable"
    );

    // The operator adds fabrikam's CA: new sessions trust it within seconds, no restart.
    replace(&bundle, &format!("{}{}", first.pem, second.pem));
    let taken = wait_for(Duration::from_secs(20), || {
        starttls_with_certificate(relay.relay, fabrikam.0.clone(), fabrikam.1.clone_key())
    });
    let mut f = taken.expect("the CA added to the bundle was not trusted");
    sends(&mut f, "b@fabrikam.example");
    rx.wait(2, Duration::from_secs(20));
    // A change to the directory elsewhere: the session, matched by its certificate, is looked
    // at again at its next MAIL, still fabrikam's, and goes on.
    relay.cli(&["tenant", "add", "litware"]);
    relay.wait_directory();
    sends(&mut f, "b@fabrikam.example");
    rx.wait(3, Duration::from_secs(20));

    // A bundle cut short, then SIGHUP: said in the metrics, and both CAs are still trusted.
    replace(&bundle, "-----BEGIN CERTIFICATE-----\nMIIB\n");
    relay.signal("HUP");
    let flagged = wait_for(Duration::from_secs(20), || {
        metric_line(&relay, "relayward_tls_client_ca_files_unusable")
            .ends_with(" 1")
            .then_some(())
    });
    assert!(flagged.is_some(), "the unusable bundle was not reported");
    assert!(relay.running(), "SIGHUP ended the relay");
    let mut c = starttls_with_certificate(relay.relay, contoso.0.clone(), contoso.1.clone_key())
        .expect("the bundle before is still trusted");
    sends(&mut c, "a@contoso.example");
    rx.wait(4, Duration::from_secs(20));

    // The first CA retired: its certificates are refused from then on.
    replace(&bundle, &second.pem);
    let retired = wait_for(Duration::from_secs(20), || {
        starttls_with_certificate(relay.relay, contoso.0.clone(), contoso.1.clone_key())
            .is_none()
            .then_some(())
    });
    assert!(
        retired.is_some(),
        "a retired CA's certificate was still taken"
    );
    assert!(
        metric_line(&relay, "relayward_tls_client_ca_files_unusable").ends_with(" 0"),
        "the mended bundle is still reported unusable"
    );
    assert!(
        starttls_with_certificate(relay.relay, fabrikam.0.clone(), fabrikam.1.clone_key())
            .is_some()
    );
    assert!(relay.terminate().success());
}

#[test]
fn the_self_signed_certificate_made_at_first_start_is_reported() {
    let relay = Relay::start("");
    let line = metric_line(
        &relay,
        "relayward_tls_certificate_expiry_timestamp_seconds{listener=\"smtp\"}",
    );
    let end: i64 = line
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // rcgen's default validity runs to the year 4096: far past any alert.
    assert!(end > 4_000_000_000, "{line}");
    assert!(!relay.http_get("/metrics").contains("listener=\"http\""));
}

/// What a destination does with STARTTLS, which it always offers.
#[derive(Clone, Copy)]
enum BrokenStarttls {
    /// Answers 220, then meets the client's hello with a fatal `protocol_version` alert, as a
    /// server that speaks only old TLS versions does, and hangs up.
    Handshake,
    /// Answers `454 4.7.0 TLS not available` and goes on.
    Refused,
}

/// Counts of what a destination saw: connections, STARTTLS commands, messages taken.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    starttls: AtomicUsize,
    messages: AtomicUsize,
}

/// A destination that offers STARTTLS and cannot keep the offer. It takes mail without TLS,
/// and hangs up after each message, so each message needs a connection of its own.
fn broken_starttls_destination(mode: BrokenStarttls) -> (std::net::SocketAddr, Arc<Seen>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    std::thread::spawn(move || {
        for sock in listener.incoming().take(50).flatten() {
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            std::thread::spawn(move || {
                let _ = sock.set_read_timeout(Some(Duration::from_secs(30)));
                let mut w = sock.try_clone().expect("clone");
                let mut r = BufReader::new(sock);
                let _ = w.write_all(b"220 legacy.test ESMTP\r\n");
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let verb = line.to_ascii_uppercase();
                    line.clear();
                    let reply: &[u8] = if verb.starts_with("EHLO") {
                        b"250-legacy.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                    } else if verb.starts_with("STARTTLS") {
                        counts.starttls.fetch_add(1, Ordering::SeqCst);
                        if let BrokenStarttls::Refused = mode {
                            b"454 4.7.0 TLS not available due to temporary reason\r\n"
                        } else {
                            let _ = w.write_all(b"220 2.0.0 Ready to start TLS\r\n");
                            let mut hello = [0u8; 512];
                            let _ = r.read(&mut hello);
                            // A TLS 1.0 record: alert, fatal, protocol_version.
                            let _ = w.write_all(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]);
                            return;
                        }
                    } else if verb.starts_with("DATA") {
                        let _ = w.write_all(b"354 go ahead\r\n");
                        let mut data = String::new();
                        while r.read_line(&mut data).is_ok_and(|n| n > 0)
                            && !data.ends_with("\r\n.\r\n")
                        {}
                        counts.messages.fetch_add(1, Ordering::SeqCst);
                        let _ = w.write_all(b"250 2.0.0 taken\r\n");
                        return;
                    } else if verb.starts_with("QUIT") {
                        let _ = w.write_all(b"221 bye\r\n");
                        return;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = w.write_all(reply);
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn destinations_whose_starttls_fails_get_their_mail_without_tls() {
    let (legacy, legacy_seen) = broken_starttls_destination(BrokenStarttls::Handshake);
    let (refusing, refusing_seen) = broken_starttls_destination(BrokenStarttls::Refused);
    // A retry would come an hour later: what is delivered is delivered on the first attempt.
    let relay = Relay::start(&format!(
        "[delivery]\nretry_schedule = [\"1h\"]\n{}",
        routed_tenant(&[("legacy.example", legacy), ("refusing.example", refusing)])
    ));
    let send = |rcpt: &str| {
        let mut c = relay.client();
        c.cmd("EHLO mx.outside.example");
        let r = c.transaction(
            "someone@outside.example",
            &[rcpt],
            "Subject: tls\r\n\r\nhi\r\n",
        );
        assert_eq!(r.code, 250, "{r:?}");
    };
    let taken = |seen: &Seen, n: usize| {
        wait_for(Duration::from_secs(20), || {
            (seen.messages.load(Ordering::SeqCst) >= n).then_some(())
        })
        .is_some()
    };

    // The handshake fails: the same attempt connects again without TLS and delivers.
    send("a@legacy.example");
    assert!(
        taken(&legacy_seen, 1),
        "not delivered after a failed TLS handshake"
    );
    assert_eq!(legacy_seen.starttls.load(Ordering::SeqCst), 1);
    assert_eq!(legacy_seen.connections.load(Ordering::SeqCst), 2);
    // The next message goes without trying TLS there again.
    send("b@legacy.example");
    assert!(
        taken(&legacy_seen, 2),
        "the second message was not delivered"
    );
    assert_eq!(
        legacy_seen.starttls.load(Ordering::SeqCst),
        1,
        "a failed STARTTLS is remembered"
    );
    assert_eq!(legacy_seen.connections.load(Ordering::SeqCst), 3);

    // STARTTLS refused with a reply: the same session goes on.
    send("c@refusing.example");
    assert!(
        taken(&refusing_seen, 1),
        "not delivered after STARTTLS was refused"
    );
    assert_eq!(refusing_seen.connections.load(Ordering::SeqCst), 1);

    assert_eq!(
        relay.metric("relayward_delivery_starttls_fallbacks_total"),
        3
    );
}

#[test]
fn devices_that_only_speak_implicit_tls_submit_on_the_submissions_port() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        "[smtp]\nsubmissions_listen = \"127.0.0.1:0\"\n{}",
        contoso(rx.addr, "")
    ));
    let port = relay
        .submissions
        .expect("the ready line names the submissions listener");

    // TLS from the first byte: the greeting, EHLO and AUTH all come encrypted, and AUTH is
    // offered at once (no STARTTLS to ask for).
    let mut c = implicit_tls(port);
    let ehlo = c.cmd("EHLO scanner.contoso.example");
    assert!(
        ehlo.lines.iter().any(|l| l == "AUTH PLAIN LOGIN"),
        "{ehlo:?}"
    );
    assert!(!ehlo.lines.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert_eq!(
        c.cmd(&auth_plain("alice@contoso.example", "change-me"))
            .code,
        235
    );
    let r = c.transaction(
        "alice@contoso.example",
        &["someone@remote.example"],
        "Subject: scanned document\r\n\r\nattached\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(rx.wait(1, Duration::from_secs(20)).len(), 1);

    // A client that speaks SMTP in clear text there gets no greeting and no reply.
    let mut plain = std::net::TcpStream::connect(port).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(40)))
        .expect("timeout");
    use std::io::{Read, Write};
    let _ = plain.write_all(b"EHLO plain.example\r\n");
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("250"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
}

#[test]
fn past_its_caps_the_implicit_tls_listener_closes_without_a_clear_text_reply() {
    use std::io::Read;
    let relay =
        Relay::start("[smtp]\nsubmissions_listen = \"127.0.0.1:0\"\nmax_connections_per_ip = 1\n");
    let port = relay.submissions.expect("submissions listener");
    let mut held = implicit_tls(port);
    let mut second = std::net::TcpStream::connect(port).expect("connect");
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut got = Vec::new();
    let closed = second.read_to_end(&mut got);
    assert!(closed.is_ok() && got.is_empty(), "{closed:?} {got:?}");
    // The first goes on.
    assert_eq!(held.cmd("NOOP").code, 250);
}

/// On the implicit-TLS listener as on the others, a client that talks before the greeting
/// (here, once its handshake is done) hears only why and is disconnected. Before, the relay
/// looked for early input in what it had read itself, not in the TLS layer or the socket, and
/// greeted such a client.
#[test]
fn on_the_implicit_tls_listener_a_client_that_talks_first_is_disconnected() {
    use std::io::{Read, Write};
    let relay =
        Relay::start("[smtp]\nsubmissions_listen = \"127.0.0.1:0\"\ngreet_pause = \"1s\"\n");
    let port = relay.submissions.expect("submissions listener");
    let mut bot = tls_connect(port);
    bot.write_all(b"EHLO bot.example\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n")
        .expect("write");
    bot.flush().expect("flush");
    let mut all = String::new();
    let _ = bot.read_to_string(&mut all);
    assert_eq!(
        all,
        "554 5.5.0 SMTP synchronization error: the client spoke before the greeting, closing connection\r\n"
    );
    // A client that waits is greeted after the pause and served.
    let mut c = implicit_tls(port);
    assert_eq!(c.cmd("EHLO device.example").code, 250);
}

#[test]
fn check_config_loads_the_certificates_as_the_relay_would_and_says_when_they_end() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = (dir.path().join("smtp.pem"), dir.path().join("smtp.key"));
    let (a_pem, a_key, _) = pair((2027, 3, 1));
    replace(&cert, &a_pem);
    replace(&key, &a_key);
    let bundle = dir.path().join("client-ca.pem");
    replace(
        &bundle,
        &format!(
            "{}{}",
            client_ca("First CA").pem,
            client_ca("Second CA").pem
        ),
    );
    let config = write_config(
        dir.path(),
        &format!(
            "[smtp]\ntls_cert = \"{}\"\ntls_key = \"{}\"\nclient_ca = \"{}\"\n",
            cert.display(),
            key.display(),
            bundle.display()
        ),
    );
    let check = || check_config(&config);
    let (ok, out) = check();
    assert!(ok, "{out}");
    assert!(
        out.contains("smtp certificate") && out.contains("valid until 2027-03-01"),
        "{out}"
    );
    assert!(out.contains("client-ca.pem (2 CAs)"), "{out}");
    // A CA bundle cut short: the check says so.
    replace(&bundle, "-----BEGIN CERTIFICATE-----\nMIIB\n");
    let (ok, out) = check();
    assert!(!ok, "{out}");
    assert!(out.contains("[smtp] client_ca"), "{out}");
    replace(&bundle, &client_ca("Third CA").pem);
    // A renewal gone half way: the check says so before anyone restarts on it.
    let (b_pem, _, _) = pair((2027, 6, 1));
    replace(&cert, &b_pem);
    let (ok, out) = check();
    assert!(!ok, "{out}");
    assert!(out.contains("[smtp] tls_cert and tls_key"), "{out}");
}
