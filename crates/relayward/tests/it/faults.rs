//! The relay when the world misbehaves (issue 18): destinations that are dead or never answer
//! must not hold up mail for the ones that work.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use crate::util::*;

const BODY: &str = "Subject: fault test\r\n\r\nhello\r\n";

/// Sends `n` messages to `rcpt` over one connection (each its own transaction).
fn send(relay: &Relay, rcpt: &str, n: usize) {
    let mut c = relay.client();
    c.cmd("EHLO mx.outside.example");
    for i in 0..n {
        let r = c.transaction(&format!("sender{i}@outside.example"), &[rcpt], BODY);
        assert_eq!(r.code, 250, "message {i} to {rcpt}: {r:?}");
    }
}

/// Messages a second for `n` messages to the healthy receiver, from the first one sent to the
/// last one received.
fn healthy_rate(relay: &Relay, rx: &Receiver, already: usize, n: usize) -> f64 {
    let start = Instant::now();
    send(relay, "someone@healthy.example", n);
    rx.wait(already + n, Duration::from_secs(120));
    n as f64 / start.elapsed().as_secs_f64()
}

#[test]
fn dead_and_silent_destinations_do_not_hold_up_healthy_mail() {
    let rx = Receiver::start(false);
    // Nothing listens here.
    let dead = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    // This one accepts connections and never says a word.
    let tarpit = TcpListener::bind("127.0.0.1:0").expect("bind");
    let tarpit_addr = tarpit.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in tarpit.incoming().take(5_000).flatten() {
            held.push(s);
        }
    });
    let relay = Relay::start(&format!(
        r#"
[delivery]
retry_schedule = ["1s"]
[[tenants]]
name = "t"
domains = [
  {{ name = "healthy.example", kind = "internal_relay", verified = true }},
  {{ name = "dead.example", kind = "internal_relay", verified = true }},
  {{ name = "tarpit.example", kind = "internal_relay", verified = true }},
]
routes = [
  {{ domain = "healthy.example", host = "{}" }},
  {{ domain = "dead.example", host = "{dead}" }},
  {{ domain = "tarpit.example", host = "{tarpit_addr}" }},
]
"#,
        rx.addr
    ));
    let n = 1_000;
    let alone = healthy_rate(&relay, &rx, 0, n);
    send(&relay, "someone@dead.example", n);
    send(&relay, "someone@tarpit.example", n);
    let beside = healthy_rate(&relay, &rx, n, n);
    println!(
        "healthy destination: {alone:.0} msg/s alone, {beside:.0} msg/s beside {n} queued for a dead and {n} for a silent destination"
    );
    assert!(
        beside >= alone / 2.0,
        "healthy mail slowed from {alone:.0} to {beside:.0} msg/s"
    );
    // The broken destinations are visible to the operator.
    let page = relay.http_get("/metrics");
    assert!(
        page.contains("relayward_destination_backed_off{destination=\"dead.example\"} 1"),
        "{}",
        page.lines()
            .filter(|l| l.starts_with("relayward_destination"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(
        page.contains("relayward_destination_in_flight{destination=\"tarpit.example\"} 20"),
        "the silent one holds its own 20 slots and no more"
    );
}
