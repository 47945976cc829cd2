//! Durability: kill -9 the relay while clients are sending; every message that got a 250 is
//! delivered after the restart (duplicates allowed, losses not).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;

#[test]
fn kill_9_while_sending_loses_no_acknowledged_message() {
    let rx = Receiver::start(false);
    // Deliveries go to a port where nothing listens until after the crash, so acknowledged mail
    // is still in the spool when the process dies.
    let parked = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let parked_addr = parked.local_addr().expect("addr");
    drop(parked);
    let mut relay = Relay::start(&contoso(parked_addr, ""));
    kill_under_load_and_restart(&mut relay, parked_addr, &rx);
}

/// Clients send to `relay` (which delivers to `parked`, where nothing listens) until it has
/// acknowledged 200 messages, then it is killed with SIGKILL and restarted delivering to `rx`:
/// every acknowledged message must arrive.
pub fn kill_under_load_and_restart(
    relay: &mut Relay,
    parked_addr: std::net::SocketAddr,
    rx: &Receiver,
) {
    let acked = load_then_kill(relay);
    // Restart pointing at the real receiver.
    let text = std::fs::read_to_string(&relay.config).expect("config");
    std::fs::write(
        &relay.config,
        text.replace(&parked_addr.to_string(), &rx.addr.to_string()),
    )
    .expect("config");
    relay.spawn();
    all_delivered(rx, &acked);
}

/// Clients send to `relay` until it has acknowledged 200 messages; then it is killed with
/// SIGKILL while they are still sending. What it acknowledged (by `X-Tag`).
pub fn load_then_kill(relay: &mut Relay) -> HashSet<String> {
    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for t in 0..4 {
        let addr = relay.relay;
        let acked = acked.clone();
        let stop = stop.clone();
        senders.push(std::thread::spawn(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let mut c = Client::connect(addr, Some([127, 0, 0, 1].into()));
                c.cmd("EHLO onprem");
                for i in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let tag = format!("crash-{t}-{i}");
                    let body = format!("Subject: {tag}\r\nX-Tag: {tag}\r\n\r\nbody {tag}\r\n");
                    // Not a user of the tenant: user rate limits (30 a minute) do not apply to it.
                    if c.mail("scanner@contoso.example", &["bob@remote.example"], &body)
                        .code
                        == 250
                    {
                        acked.lock().expect("lock").insert(tag);
                    }
                }
            }));
            drop(result); // the connection dies with the relay: expected
        }));
    }
    // Let them send for a while, then pull the plug.
    let enough = wait_for(Duration::from_secs(30), || {
        (acked.lock().expect("lock").len() >= 200).then_some(())
    });
    assert!(enough.is_some(), "clients could not send 200 messages");
    relay.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        let _ = s.join();
    }
    let acked = acked.lock().expect("lock").clone();
    eprintln!("messages acknowledged before kill -9: {}", acked.len());
    acked
}

/// Waits (up to 2 minutes) until `rx` has every acknowledged message; names the lost ones.
pub fn all_delivered(rx: &Receiver, acked: &HashSet<String>) {
    let delivered = wait_for(Duration::from_secs(120), || {
        let tags: HashSet<String> = rx
            .messages()
            .iter()
            .filter_map(|m| {
                m.data
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Tag: "))
                    .map(str::to_string)
            })
            .collect();
        acked.is_subset(&tags).then_some(tags)
    });
    let tags = delivered.unwrap_or_else(|| {
        let got: HashSet<String> = rx
            .messages()
            .iter()
            .filter_map(|m| {
                m.data
                    .lines()
                    .find_map(|l| l.strip_prefix("X-Tag: "))
                    .map(str::to_string)
            })
            .collect();
        let lost: Vec<_> = acked.difference(&got).take(10).collect();
        panic!(
            "{} acknowledged messages were lost, e.g. {lost:?}",
            acked.difference(&got).count()
        )
    });
    eprintln!(
        "acknowledged {}, delivered after restart {} (duplicates and unacknowledged ones allowed)",
        acked.len(),
        tags.len()
    );
}
