//! What the next hops see of a message to many domains: a smart host (or a route's host) is
//! one destination, whatever the recipients' domains; one message's round goes to at most 32
//! destinations at once; and the relay never holds more outbound connections than
//! `max_concurrent_messages`, however many destinations its messages have.

use std::time::Duration;

use crate::util::*;

const MSG: &str = "From: alice@contoso.example\r\nSubject: to everyone\r\n\r\nHello all.\r\n";

/// Recipients in `n` domains, one each: `user@d0.example`, `user@d1.example`, …
fn one_per_domain(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user@d{i}.example")).collect()
}

/// Waits until the receiver has `n` recipients in all; returns each transaction's count.
fn transactions_until(rx: &Receiver, n: usize) -> Vec<usize> {
    wait_for(Duration::from_secs(60), || {
        let sizes: Vec<usize> = rx.messages().iter().map(|m| m.rcpts.len()).collect();
        (sizes.iter().sum::<usize>() >= n).then_some(sizes)
    })
    .unwrap_or_else(|| panic!("not every recipient arrived: {:?}", rx.messages().len()))
}

#[test]
fn a_smart_host_gets_a_message_to_many_domains_in_a_few_transactions_on_one_connection() {
    // A next hop that takes its time at each end of data, as a loaded one does: a relay that
    // opened a connection per recipient domain would have them all open at once.
    let rx = Receiver::start(false).with_data_delay(Duration::from_millis(200));
    let relay = Relay::start(&contoso(rx.addr, ""));
    let to = one_per_domain(250);
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    let r = c.mail("alice@contoso.example", &to, MSG);
    assert_eq!(r.code, 250, "{r:?}");

    let mut sizes = transactions_until(&rx, to.len());
    sizes.sort_unstable();
    assert_eq!(
        sizes,
        vec![50, 100, 100],
        "transactions of at most recipients_per_transaction (100), whatever the domains"
    );
    let mut got: Vec<String> = rx.messages().into_iter().flat_map(|m| m.rcpts).collect();
    got.sort_unstable();
    let mut want: Vec<String> = to.iter().map(|s| s.to_string()).collect();
    want.sort_unstable();
    assert_eq!(got, want, "every recipient once");
    assert_eq!(rx.peak_connections(), 1, "one connection for the three");
}

/// A relay whose recipient domains `d0.example`… each have their own MX host, all on `rx`.
fn mx_relay(rx: &Receiver, domains: usize, delivery: &str) -> (Relay, Dns) {
    let mut zone = Vec::new();
    for i in 0..domains {
        let domain: &'static str = Box::leak(format!("d{i}.example").into_boxed_str());
        let mx: &'static str = Box::leak(format!("mx.d{i}.example").into_boxed_str());
        zone.push((domain, "MX", Answer::Mx(vec![(10, mx)])));
        zone.push((mx, "A", Answer::A(vec!["127.0.0.1".parse().expect("ip")])));
    }
    relay_with_dns(rx, zone, delivery)
}

/// A relay that finds its recipients' MX hosts in `zone`, all on `rx`.
fn relay_with_dns(
    rx: &Receiver,
    zone: Vec<(&'static str, &'static str, Answer)>,
    delivery: &str,
) -> (Relay, Dns) {
    let dns = Dns::start(zone);
    let relay = Relay::start(&format!(
        "[delivery]\ndns_resolver = \"{}\"\nremote_port = {}\nretry_schedule = [\"10m\"]\n\
         private_destinations = [\"127.0.0.1\"]\n{delivery}\n\
         [[tenants]]\nname = \"contoso\"\ndomains = [ {{ name = \"contoso.example\", verified = true }} ]\n\
         connectors = [ {{ name = \"on-prem\", ips = [\"127.0.0.1\"] }} ]\n",
        dns.addr,
        rx.addr.port(),
    ));
    (relay, dns)
}

/// An internationalised domain is one destination however its recipients write it (RFC 5890:
/// in Unicode, as SMTPUTF8 clients do, or as its A-labels): its MX is looked up by its
/// A-labels, and its next hop, which does not offer SMTPUTF8, gets one transaction with every
/// recipient in that form. Before, each form was a destination of its own: two transactions,
/// and both refused there with 5.6.7.
#[test]
fn an_idn_is_one_destination_in_either_form() {
    let rx = Receiver::start(false);
    let (relay, _dns) = relay_with_dns(
        &rx,
        vec![
            (
                "xn--mller-kva.example",
                "MX",
                Answer::Mx(vec![(10, "mx.xn--mller-kva.example")]),
            ),
            (
                "mx.xn--mller-kva.example",
                "A",
                Answer::A(vec!["127.0.0.1".parse().expect("ip")]),
            ),
        ],
        "",
    );
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    assert_eq!(
        c.cmd("MAIL FROM:<alice@contoso.example> SMTPUTF8").code,
        250
    );
    for to in [
        "bob@m\u{fc}ller.example",
        "eve@xn--mller-kva.example",
        "Ann@M\u{dc}LLER.example",
    ] {
        let r = c.cmd(&format!("RCPT TO:<{to}>"));
        assert_eq!(r.code, 250, "{to}: {r:?}");
    }
    // Bob again, with his domain's A-labels: the same mailbox, one copy.
    let r = c.cmd("RCPT TO:<bob@XN--MLLER-KVA.example>");
    assert!(r.code == 250 && r.text().contains("duplicate"), "{r:?}");
    assert_eq!(c.cmd("DATA").code, 354);
    c.send(format!("{MSG}.\r\n").as_bytes());
    assert_eq!(c.read().code, 250);
    assert_eq!(
        transactions_until(&rx, 3),
        [3],
        "one transaction for the three"
    );
    let mut got = rx.messages()[0].rcpts.clone();
    got.sort();
    assert_eq!(
        got,
        [
            "Ann@xn--mller-kva.example",
            "bob@xn--mller-kva.example",
            "eve@xn--mller-kva.example"
        ]
    );
}

/// Sends `times` messages (one after the other's delivery) to one recipient in each of `n`
/// domains; returns the most connections the receiver saw open at once.
fn fan_out(relay: &Relay, rx: &Receiver, n: usize, times: usize) -> usize {
    let to = one_per_domain(n);
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    let mut c = relay.client();
    c.cmd("EHLO onprem");
    for round in 1..=times {
        let r = c.mail("alice@contoso.example", &to, MSG);
        assert_eq!(r.code, 250, "{r:?}");
        let sizes = transactions_until(rx, round * n);
        assert!(
            sizes.iter().all(|&n| n == 1),
            "a transaction per domain: {sizes:?}"
        );
    }
    rx.peak_connections()
}

#[test]
fn a_message_to_many_domains_takes_a_bounded_share_of_outbound_connections() {
    // Forty domains, each its own destination, in one message to a next hop that takes its
    // time: the round goes to 32 of them at once, not all forty.
    let rx = Receiver::start(false).with_data_delay(Duration::from_millis(300));
    let (relay, _dns) = mx_relay(&rx, 40, "");
    let peak = fan_out(&relay, &rx, 40, 1);
    assert!(
        (2..=32).contains(&peak),
        "{peak} connections at once for one message"
    );

    // However many destinations, no more than max_concurrent_messages connections are open
    // at once, in use or idle: thirty domains, twice, with four places.
    let rx = Receiver::start(false).with_data_delay(Duration::from_millis(200));
    let (relay, _dns) = mx_relay(&rx, 30, "max_concurrent_messages = 4");
    let peak = fan_out(&relay, &rx, 30, 2);
    assert!(
        (1..=4).contains(&peak),
        "{peak} connections open at once, over max_concurrent_messages (4)"
    );
}
