//! Webhooks over real HTTP: a local receiver checks every request's signature,
//! answers the first one with 500, and sees the same delivery again after the backoff; the
//! delivery log in the API tells the story.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: String,
    answered: u16,
}

impl Request {
    fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    }
}

/// An HTTP receiver on loopback: 500 to the first request, 200 to the rest. It stops by itself
/// after a minute.
fn receiver() -> (String, Arc<Mutex<Vec<Request>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let url = format!(
        "http://{}/hooks/relayward",
        listener.local_addr().expect("addr")
    );
    let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_secs(60);
        while Instant::now() < end {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut raw = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then as much body as Content-Length says.
            let (head, body) = loop {
                let Ok(n) = s.read(&mut buf) else {
                    break (String::new(), String::new());
                };
                if n == 0 {
                    break (String::new(), String::new());
                }
                raw.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&raw).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if body.len() >= len {
                        break (head.to_string(), body.to_string());
                    }
                }
            };
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(": "))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let mut seen = log.lock().expect("lock");
            let answered = if seen.is_empty() { 500 } else { 200 };
            seen.push(Request {
                headers,
                body,
                answered,
            });
            drop(seen);
            let _ = write!(
                s,
                "HTTP/1.1 {answered} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

/// Registers a webhook for contoso's restriction events (201), through `admin`'s token.
fn add_restriction_webhook(relay: &Relay, admin: &str, url: &str) -> serde_json::Value {
    let body = format!(r#"{{"url": "{url}", "events": ["restriction"]}}"#);
    let (status, hook) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/webhooks",
        Some(admin),
        Some(&body),
    );
    assert_eq!(status, 201, "{hook}");
    hook
}

fn hmac_hex(secret: &str, message: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    aws_lc_rs::hmac::sign(&key, message.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn restriction_changes_reach_a_signed_webhook_and_a_500_is_retried() {
    let (url, seen) = receiver();
    let relay = Relay::start(
        "[webhooks]\nretry_schedule = [\"1s\", \"1s\"]\nallow_private_addresses = true\n",
    );
    relay.cli(&["tenant", "add", "contoso"]);
    relay.cli(&["tenant", "add", "fabrikam"]);
    let admin = relay
        .cli(&[
            "token", "create", "--name", "ci", "--role", "admin", "--tenant", "contoso",
        ])
        .trim()
        .to_string();
    let other = relay
        .cli(&[
            "token", "create", "--name", "f", "--role", "admin", "--tenant", "fabrikam",
        ])
        .trim()
        .to_string();

    let hook = add_restriction_webhook(&relay, &admin, &url);
    let secret = hook["secret"]
        .as_str()
        .expect("the secret, shown once")
        .to_string();
    let id = hook["id"].as_str().expect("id").to_string();
    let (_, list) = relay.api(
        "GET",
        "/api/v1/tenants/contoso/webhooks",
        Some(&admin),
        None,
    );
    assert!(
        !list.to_string().contains(&secret),
        "secrets are not listed: {list}"
    );
    let (status, _) = relay.api(
        "GET",
        &format!("/api/v1/tenants/contoso/webhooks/{id}/deliveries"),
        Some(&other),
        None,
    );
    assert_eq!(status, 404, "another tenant's webhook is not found");

    // The subscription lapses: the running relay restricts the tenant (5.7.705) and tells the
    // webhook; the receiver's first answer is 500, so the same delivery comes again.
    relay.cli(&["tenant", "subscription", "contoso", "--ends", "2020-01-31"]);
    let requests = wait_for(Duration::from_secs(30), || {
        let r = seen.lock().expect("lock").clone();
        (r.len() >= 2).then_some(r)
    })
    .expect("the delivery, then its retry");
    let (first, second) = (&requests[0], &requests[1]);
    assert_eq!((first.answered, second.answered), (500, 200));
    assert_eq!(
        first.header("X-Relayward-Delivery"),
        second.header("X-Relayward-Delivery")
    );
    assert_eq!(first.body, second.body, "a retry sends the same event");
    let authority = url.trim_start_matches("http://").split('/').next();
    assert_eq!(
        Some(first.header("Host")),
        authority,
        "the Host header names the receiver's port"
    );
    for r in [first, second] {
        // The receiver's check: HMAC-SHA256 over "<timestamp>.<body>" with the secret.
        let ts = r.header("X-Relayward-Timestamp");
        let expected = format!("v1={}", hmac_hex(&secret, &format!("{ts}.{}", r.body)));
        assert_eq!(r.header("X-Relayward-Signature"), expected);
        assert_ne!(
            r.header("X-Relayward-Signature"),
            format!(
                "v1={}",
                hmac_hex("not the secret", &format!("{ts}.{}", r.body))
            )
        );
        assert_eq!(r.header("X-Relayward-Event"), "restriction");
    }
    let event: serde_json::Value = serde_json::from_str(&first.body).expect("json");
    assert_eq!(event["type"], "restriction");
    assert_eq!(event["tenant"], "contoso");
    assert_eq!(event["data"]["state"], "restricted", "{event}");

    // The delivery log: delivered on the second attempt, with the last answer.
    let log = wait_for(Duration::from_secs(10), || {
        let (_, log) = relay.api(
            "GET",
            &format!("/api/v1/tenants/contoso/webhooks/{id}/deliveries"),
            Some(&admin),
            None,
        );
        let d = log["deliveries"].as_array()?.last()?.clone();
        (d["state"] == "delivered").then_some(d)
    })
    .expect("delivered in the log");
    assert_eq!(log["attempts"], 2, "{log}");
    assert_eq!(log["last_status"], 200, "{log}");

    // A ping goes to this webhook only, signed the same way.
    let (status, _) = relay.api(
        "POST",
        &format!("/api/v1/tenants/contoso/webhooks/{id}/ping"),
        Some(&admin),
        None,
    );
    assert_eq!(status, 202);
    let ping = wait_for(Duration::from_secs(10), || {
        seen.lock()
            .expect("lock")
            .iter()
            .find(|r| r.header("X-Relayward-Event") == "ping")
            .cloned()
    })
    .expect("the ping");
    let ts = ping.header("X-Relayward-Timestamp");
    assert_eq!(
        ping.header("X-Relayward-Signature"),
        format!("v1={}", hmac_hex(&secret, &format!("{ts}.{}", ping.body)))
    );

    // Removal is audited; the webhook is gone.
    let (status, _) = relay.api(
        "DELETE",
        &format!("/api/v1/tenants/contoso/webhooks/{id}"),
        Some(&admin),
        None,
    );
    assert_eq!(status, 204);
    let (_, list) = relay.api(
        "GET",
        "/api/v1/tenants/contoso/webhooks",
        Some(&admin),
        None,
    );
    assert_eq!(list["webhooks"].as_array().map(Vec::len), Some(0));
    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    assert!(
        audit.contains("webhook.create") && audit.contains("webhook.delete"),
        "{audit}"
    );
}

#[test]
fn webhooks_may_not_reach_private_addresses_unless_the_operator_allows_it() {
    let (url, seen) = receiver();
    let relay = Relay::start("[webhooks]\nretry_schedule = []\n");
    relay.cli(&["tenant", "add", "contoso"]);
    let admin = relay
        .cli(&[
            "token", "create", "--name", "ci", "--role", "admin", "--tenant", "contoso",
        ])
        .trim()
        .to_string();
    // An address in the URL is refused at once; a name is looked at when it is sent.
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/webhooks",
        Some(&admin),
        Some(&format!(r#"{{"url": "{url}"}}"#)),
    );
    assert_eq!(status, 422, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("127.0.0.1 is not on the public internet"),
        "{json}"
    );
    let by_name = url.replace("127.0.0.1", "localhost");
    let (status, hook) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/webhooks",
        Some(&admin),
        Some(&format!(r#"{{"url": "{by_name}"}}"#)),
    );
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().expect("id");
    let (status, _) = relay.api(
        "POST",
        &format!("/api/v1/tenants/contoso/webhooks/{id}/ping"),
        Some(&admin),
        None,
    );
    assert_eq!(status, 202);
    let failed = wait_for(Duration::from_secs(10), || {
        let (_, log) = relay.api(
            "GET",
            &format!("/api/v1/tenants/contoso/webhooks/{id}/deliveries"),
            Some(&admin),
            None,
        );
        let d = log["deliveries"].as_array()?.first()?.clone();
        (d["state"] == "failed").then_some(d)
    })
    .expect("the ping fails");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("private or loopback"),
        "{failed}"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing reached the receiver"
    );
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/webhooks",
        Some(&admin),
        Some(r#"{"url": "ftp://example.com/x"}"#),
    );
    assert_eq!(status, 422, "{json}");
}

/// A webhook over HTTPS is sent only to a server whose certificate a CA in `[webhooks]
/// ca_file` issued for the URL's host: one from another CA gets nothing, and its delivery log
/// says why.
#[test]
fn an_https_webhook_is_sent_only_to_a_certificate_the_ca_bundle_trusts() {
    let (trusted, other) = (TestCa::new("Hooks CA"), TestCa::new("Someone else's CA"));
    let dir = tempfile::tempdir().expect("dir");
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, &trusted.pem).expect("write");
    let good = HttpsServer::start(trusted.server_tls(&["localhost"]), |_| (200, String::new()));
    let bad = HttpsServer::start(other.server_tls(&["localhost"]), |_| (200, String::new()));
    let relay = Relay::start(&format!(
        "[webhooks]\nretry_schedule = [\"1s\"]\nallow_private_addresses = true\nca_file = \"{}\"\n",
        bundle.display()
    ));
    relay.cli(&["tenant", "add", "contoso"]);
    let admin = relay.token(&["--name", "ci", "--role", "admin", "--tenant", "contoso"]);
    let mut ids = Vec::new();
    for server in [&good, &bad] {
        let url = format!("https://localhost:{}/hook", server.addr.port());
        let hook = add_restriction_webhook(&relay, &admin, &url);
        ids.push(hook["id"].as_str().expect("id").to_string());
    }
    relay.cli(&["tenant", "subscription", "contoso", "--ends", "2020-01-31"]);
    let got = wait_for(Duration::from_secs(30), || {
        let r = good.requests();
        (!r.is_empty()).then_some(r)
    })
    .expect("the event at the trusted server");
    assert_eq!(got[0].header("X-Relayward-Event"), "restriction");
    assert!(got[0].body.contains("\"contoso\""), "{:?}", got[0]);
    let error = wait_for(Duration::from_secs(30), || {
        let (_, log) = relay.api(
            "GET",
            &format!("/api/v1/tenants/contoso/webhooks/{}/deliveries", ids[1]),
            Some(&admin),
            None,
        );
        log["deliveries"].as_array()?.last()?["last_error"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the untrusted server's delivery failed");
    assert!(error.contains("TLS with localhost"), "{error}");
    assert!(bad.requests().is_empty(), "{:?}", bad.requests());
}
