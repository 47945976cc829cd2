//! The queue in the management API: operators list what waits, by tenant and by
//! destination, and retry, hold, release, bounce (with an NDR) or purge (without) one message;
//! each action is audited; nobody else may.

use std::time::Duration;

use crate::util::*;

const MSG: &str = "From: alice@contoso.example\r\nSubject: Order 42\r\n\r\nPlease confirm.\r\n";

/// contoso (from the file) with a connector for 127.0.0.1 and a user, delivering to `rx`,
/// retrying on `retry`.
pub(crate) fn contoso_relay(rx: &Receiver, retry: &str) -> Relay {
    contoso_relay_with(rx.addr, retry, "")
}

/// `contoso_relay` with more tables (`extra`, before the others), its next hop at `next_hop`.
pub(crate) fn contoso_relay_with(
    next_hop: std::net::SocketAddr,
    retry: &str,
    extra: &str,
) -> Relay {
    Relay::start(&format!(
        r#"
{extra}
[delivery]
smart_host = "{}"
retry_schedule = ["{retry}"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "alice@contoso.example" }} ]
"#,
        next_hop
    ))
}

/// A next hop that takes connections and never answers (up to 100 of them, held open).
pub(crate) fn tarpit() -> std::net::SocketAddr {
    let tarpit = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = tarpit.local_addr().expect("addr");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in tarpit.incoming().take(100).flatten() {
            held.push(s);
        }
    });
    addr
}

/// An operator's API token (`ops`) and one of contoso's admins (`ci`).
fn tokens(relay: &Relay) -> (String, String) {
    let token = |args: &[&str]| relay.cli(args).trim().to_string();
    (
        token(&["token", "create", "--name", "ops", "--role", "operator"]),
        token(&[
            "token", "create", "--name", "ci", "--role", "admin", "--tenant", "contoso",
        ]),
    )
}

/// Three messages from alice that the receiver defers forever (it answers 451 to defer-*), so
/// they stay queued after their first round; their queue ids.
pub(crate) fn three_deferred(relay: &Relay) -> Vec<String> {
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    [
        "defer-a@remote.example",
        "defer-b@other.example",
        "defer-c@remote.example",
    ]
    .iter()
    .map(|r| {
        let reply = c.transaction("alice@contoso.example", &[r], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
        reply.queued_id()
    })
    .collect()
}

#[test]
fn operators_list_hold_release_retry_bounce_and_purge_queued_mail() {
    let rx = Receiver::start(false);
    let relay = contoso_relay(&rx, "1h");
    let (ops, admin) = tokens(&relay);
    let ids = three_deferred(&relay);
    let list = |query: &str| {
        let (status, json) = relay.api("GET", &format!("/api/v1/queue{query}"), Some(&ops), None);
        assert_eq!(status, 200, "{json}");
        json["messages"].as_array().cloned().unwrap_or_default()
    };
    let find = |id: &str| list("").into_iter().find(|m| m["id"] == id);
    wait_for(Duration::from_secs(20), || {
        let all = list("?tenant=contoso");
        (all.len() == 3 && all.iter().all(|m| m["attempts"] == 1)).then_some(())
    })
    .expect("three messages waiting after their first round");
    let first = find(&ids[0]).expect("listed");
    assert_eq!(first["pending"][0], "defer-a@remote.example");
    assert!(
        first["last_reply"]
            .as_str()
            .unwrap_or("")
            .starts_with("451"),
        "{first}"
    );
    // By destination and by tenant.
    let other = list("?domain=other.example");
    assert_eq!(other.len(), 1);
    assert_eq!(other[0]["id"], ids[1].as_str());
    assert!(list("?tenant=fabrikam").is_empty());
    // Only operators.
    let (status, _) = relay.api("GET", "/api/v1/queue", Some(&admin), None);
    assert_eq!(status, 403);
    let (status, _) = relay.api(
        "POST",
        &format!("/api/v1/queue/{}/purge", ids[0]),
        Some(&admin),
        None,
    );
    assert_eq!(status, 403);

    let act = |id: &str, action: &str| {
        relay
            .api(
                "POST",
                &format!("/api/v1/queue/{id}/{action}"),
                Some(&ops),
                None,
            )
            .0
    };
    // Hold, then release: tried again at once.
    assert_eq!(act(&ids[0], "hold"), 200);
    assert_eq!(find(&ids[0]).expect("listed")["held"], true);
    assert_eq!(act(&ids[0], "release"), 200);
    wait_for(Duration::from_secs(10), || {
        find(&ids[0]).filter(|m| m["held"] == false && m["attempts"] == 2)
    })
    .expect("released and tried again");
    // Retry now.
    assert_eq!(act(&ids[2], "retry"), 200);
    wait_for(Duration::from_secs(10), || {
        find(&ids[2]).filter(|m| m["attempts"] == 2)
    })
    .expect("tried again");
    // Bounce: gone from the queue, and alice hears about it.
    assert_eq!(act(&ids[1], "bounce"), 200);
    assert!(find(&ids[1]).is_none());
    let ndr = wait_for(Duration::from_secs(10), || {
        rx.messages()
            .into_iter()
            .find(|m| m.mail_from.is_empty() && m.rcpts == ["alice@contoso.example"])
    })
    .expect("an NDR for the bounced message");
    assert!(ndr.data.contains("defer-b@other.example"), "{}", ndr.data);
    assert!(
        ndr.data
            .contains("Returned to the sender by the relay's operator"),
        "{}",
        ndr.data
    );
    // Purge: gone, and nobody is told.
    assert_eq!(act(&ids[2], "purge"), 200);
    assert!(find(&ids[2]).is_none());
    assert_eq!(act(&ids[2], "purge"), 404, "already gone");
    assert_eq!(act("nosuchmessage", "retry"), 404);
    std::thread::sleep(Duration::from_secs(2));
    let ndrs = rx
        .messages()
        .into_iter()
        .filter(|m| m.mail_from.is_empty())
        .count();
    assert_eq!(ndrs, 1, "only the bounce made an NDR");

    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    for action in [
        "queue.hold",
        "queue.release",
        "queue.retry",
        "queue.bounce",
        "queue.purge",
    ] {
        let line = audit
            .lines()
            .find(|l| l.contains(&format!("\"{action}\"")))
            .unwrap_or_else(|| panic!("{action} audited: {audit}"));
        assert!(line.contains("token:") && line.contains("(ops)"), "{line}");
    }
}

/// An incident: many messages wait for a destination that will not take them, or a sender
/// filled the queue. An operator holds, releases, bounces or purges every message a selection
/// picks (tenant, recipient domain, sender), from the command line or the API, as `postsuper`
/// does with a list; nothing named means nothing unless every message is meant. Each action is
/// audited once, with the selection and the messages.
#[test]
fn an_operator_acts_on_every_message_a_selection_picks() {
    let rx = Receiver::start(false);
    let relay = contoso_relay(&rx, "1h");
    let (ops, admin) = tokens(&relay);
    let alice = three_deferred(&relay);
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let bob: Vec<String> = ["defer-d@remote.example", "defer-e@other.example"]
        .iter()
        .map(|r| {
            let reply = c.transaction("bob@contoso.example", &[r], MSG);
            assert_eq!(reply.code, 250, "{reply:?}");
            reply.queued_id()
        })
        .collect();
    c.cmd("QUIT");
    let listed = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["queue", "list", "--json"];
        all.extend_from_slice(args);
        relay
            .cli(&all)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let held = || -> Vec<String> {
        let mut ids: Vec<String> = listed(&[])
            .into_iter()
            .filter(|m| m["held"] == true)
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        ids
    };
    wait_for(Duration::from_secs(20), || {
        let all = listed(&[]);
        (all.len() == 5 && all.iter().all(|m| m["attempts"] == 1)).then_some(())
    })
    .expect("five messages waiting after their first round");
    assert_eq!(listed(&["--sender", "BOB@contoso.EXAMPLE"]).len(), 2);

    // A target is needed, and an id goes alone.
    let (ok, out) = relay.cli_status(&["queue", "hold"]);
    assert!(!ok && out.contains("required"), "{out}");
    let (ok, out) = relay.cli_status(&["queue", "purge", &alice[0], "--tenant", "contoso"]);
    assert!(!ok && out.contains("cannot be used with"), "{out}");

    // Every message to remote.example held, from the command line.
    let out = relay.cli(&["queue", "hold", "--domain", "remote.example"]);
    assert_eq!(out.trim(), "hold done for 3 message(s)");
    let mut expected = vec![alice[0].clone(), alice[2].clone(), bob[0].clone()];
    expected.sort();
    assert_eq!(held(), expected);

    // Bob's released through the API (his address in any case), and tried again at once.
    let api = |path: &str, tok: &str| relay.api("POST", path, Some(tok), None);
    let (status, json) = api(
        "/api/v1/queue/release?domain=remote.example&sender=Bob@Contoso.Example",
        &ops,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["messages"], 1, "{json}");
    assert_eq!(json["done"], "release", "{json}");
    wait_for(Duration::from_secs(10), || {
        listed(&[])
            .into_iter()
            .find(|m| m["id"] == bob[0].as_str() && m["attempts"] == 2)
    })
    .expect("released and tried again");
    // Nothing named is refused, as is everything with a name; tenant admins may not.
    let (status, json) = api("/api/v1/queue/purge", &ops);
    assert_eq!(status, 422, "{json}");
    assert!(json.to_string().contains("name a tenant"), "{json}");
    let (status, _) = api("/api/v1/queue/purge?all=true&tenant=contoso", &ops);
    assert_eq!(status, 422);
    let (status, _) = api("/api/v1/queue/bounce?tenant=contoso", &admin);
    assert_eq!(status, 403);
    let (status, _) = api("/api/v1/queue/purge?tenant=contoso&limit=3", &ops);
    assert_eq!(status, 400, "an unknown parameter is refused");
    assert_eq!(listed(&[]).len(), 5, "nothing refused touched the queue");

    // Alice's three bounced (two of them held): an NDR each.
    let out = relay.cli(&["queue", "bounce", "--sender", "alice@contoso.example"]);
    assert_eq!(out.trim(), "bounce done for 3 message(s)");
    let ndrs = |rx: &Receiver| {
        rx.messages()
            .into_iter()
            .filter(|m| m.mail_from.is_empty() && m.rcpts == ["alice@contoso.example"])
            .count()
    };
    wait_for(Duration::from_secs(10), || (ndrs(&rx) == 3).then_some(()))
        .expect("an NDR for each bounced message");
    // What is left (bob's two) purged: the whole queue, said so.
    assert_eq!(
        relay
            .cli(&["queue", "purge", "--tenant", "fabrikam"])
            .trim(),
        "purge done for 0 message(s)"
    );
    let out = relay.cli(&["queue", "purge", "--all"]);
    assert_eq!(out.trim(), "purge done for 2 message(s)");
    assert!(listed(&[]).is_empty());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ndrs(&rx), 3, "purging tells nobody");
    assert!(
        rx.messages()
            .iter()
            .all(|m| m.rcpts.iter().all(|r| !r.starts_with("defer-"))),
        "nothing selected was delivered"
    );

    // Audited once for each action, with the selection and the messages.
    let audit: Vec<serde_json::Value> = relay
        .cli(&["audit", "--tenant", "contoso", "--limit", "50"])
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let entry = |action: &str| -> serde_json::Value {
        let e = audit
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("no {action} in {audit:?}"));
        serde_json::from_str(e["detail"].as_str().unwrap_or("{}")).unwrap_or_default()
    };
    let hold = entry("queue.hold");
    assert_eq!(hold["messages"], 3, "{hold}");
    assert_eq!(hold["selection"]["domain"], "remote.example", "{hold}");
    assert_eq!(hold["ids"].as_array().map(Vec::len), Some(3), "{hold}");
    let release = entry("queue.release");
    assert_eq!(release["ids"][0], bob[0].as_str(), "{release}");
    assert_eq!(entry("queue.bounce")["messages"], 3);
    assert_eq!(entry("queue.purge")["messages"], 2);
}

/// At 3 a.m. the first question is where the queue waits: `relayward queue shape` (and the API)
/// draws it as Postfix's `qshape` does, messages by recipient domain (or sender domain) and by
/// minutes since they arrived, the busiest first, held ones counted apart.
#[test]
fn the_queues_shape_shows_where_mail_waits() {
    let rx = Receiver::start(false);
    let relay = contoso_relay(&rx, "1h");
    let (ops, admin) = tokens(&relay);
    let ids = three_deferred(&relay);
    wait_for(Duration::from_secs(20), || {
        let out = relay.cli(&["queue", "list", "--json"]);
        (out.lines()
            .filter(|l| l.contains(r#""attempts":1"#))
            .count()
            == 3)
            .then_some(())
    })
    .expect("three messages waiting after their first round");
    relay.cli(&["queue", "hold", &ids[0]]);

    // The table: a header of age bounds, the total, then the busiest domain first.
    let text = relay.cli(&["queue", "shape"]);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines[0],
        [
            "T", "5", "10", "20", "40", "80", "160", "320", "640", "1280", "1280+", "held"
        ],
        "{text}"
    );
    let row = |cells: &[&str]| cells.iter().map(|c| c.to_string()).collect::<Vec<_>>();
    assert_eq!(
        row(&lines[1]),
        row(&[
            "TOTAL", "3", "3", "0", "0", "0", "0", "0", "0", "0", "0", "0", "1"
        ]),
        "{text}"
    );
    assert_eq!(lines[2][..3], ["remote.example", "2", "2"], "{text}");
    assert_eq!(lines[2].last(), Some(&"1"), "one of them held: {text}");
    assert_eq!(lines[3][..3], ["other.example", "1", "1"], "{text}");
    assert_eq!(lines.len(), 4, "{text}");

    // By sender domain, as JSON, and cut to a limit.
    let by_sender: serde_json::Value =
        serde_json::from_str(&relay.cli(&["queue", "shape", "--by-sender", "--json"]))
            .expect("json");
    assert_eq!(
        by_sender["rows"][0]["domain"], "contoso.example",
        "{by_sender}"
    );
    assert_eq!(by_sender["rows"][0]["messages"], 3, "{by_sender}");
    let cut = relay.cli(&["queue", "shape", "--limit", "1"]);
    assert!(cut.contains("-- 1 more domain(s) not shown"), "{cut}");

    // The API, for operators only.
    let (status, json) = relay.api(
        "GET",
        "/api/v1/queue/shape?tenant=contoso&limit=1",
        Some(&ops),
        None,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["total"]["messages"], 3, "{json}");
    assert_eq!(json["rows"][0]["domain"], "remote.example", "{json}");
    assert_eq!(json["more"], 1, "{json}");
    assert_eq!(json["minutes"][0], 5, "{json}");
    let (status, json) = relay.api(
        "GET",
        "/api/v1/queue/shape?domain=other.example&by=sender",
        Some(&ops),
        None,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["total"]["messages"], 1, "{json}");
    let (status, _) = relay.api("GET", "/api/v1/queue/shape?by=age", Some(&ops), None);
    assert_eq!(status, 400);
    let (status, _) = relay.api("GET", "/api/v1/queue/shape", Some(&admin), None);
    assert_eq!(status, 403);
}

/// A destination that takes connections and never answers holds its messages in delivery
/// rounds for minutes: the shape counts them where they wait, and an action on a selection
/// says it left them as they were, instead of leaving them out of both.
#[test]
fn messages_in_a_delivery_round_are_in_the_shape_and_counted_by_a_selection() {
    let addr = tarpit();
    let relay = contoso_relay_with(addr, "1h", "");
    let ops = relay.token(&["--name", "ops", "--role", "operator"]);
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    for to in ["a@remote.example", "b@remote.example"] {
        let reply = c.transaction("alice@contoso.example", &[to], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    c.cmd("QUIT");
    let shape = wait_for(Duration::from_secs(10), || {
        let json: serde_json::Value =
            serde_json::from_str(&relay.cli(&["queue", "shape", "--json"])).ok()?;
        (json["total"]["messages"] == 2).then_some(json)
    })
    .expect("both messages in the shape");
    assert_eq!(shape["rows"][0]["domain"], "remote.example", "{shape}");
    assert_eq!(shape["rows"][0]["messages"], 2, "{shape}");
    // At least the first is in its round, waiting for a greeting that never comes.
    wait_for(Duration::from_secs(10), || {
        relay
            .cli(&["queue", "list", "--json"])
            .lines()
            .count()
            .lt(&2)
            .then_some(())
    })
    .expect("a message in a round is not in the list");
    let (status, json) = relay.api(
        "POST",
        "/api/v1/queue/hold?domain=remote.example",
        Some(&ops),
        None,
    );
    assert_eq!(status, 200, "{json}");
    let (held, in_flight) = (
        json["messages"].as_u64().unwrap_or(9),
        json["in_flight"].as_u64().unwrap_or(0),
    );
    assert!(in_flight >= 1 && held + in_flight == 2, "{json}");
    let out = relay.cli(&["queue", "purge", "--sender", "alice@contoso.example"]);
    assert!(
        out.contains("in a delivery round at that moment: done to each as its round ends"),
        "{out}"
    );
}

/// A hold or purge of a selection reaches the messages that were in a delivery round at that
/// moment: each is held (or purged) as its round ends, instead of going back to wait for its
/// next attempt as if nobody had asked.
#[test]
fn an_action_on_a_selection_reaches_messages_in_a_round_as_the_round_ends() {
    let addr = tarpit();
    let relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "{addr}"
retry_schedule = ["1h"]
command_timeout = "4s"
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
"#
    ));
    let ops = relay.token(&["--name", "ops", "--role", "operator"]);
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let to_hold = c
        .transaction("alice@contoso.example", &["a@remote.example"], MSG)
        .queued_id();
    let to_purge = c
        .transaction("alice@contoso.example", &["b@other.example"], MSG)
        .queued_id();
    c.cmd("QUIT");
    let listed = || {
        relay
            .cli(&["queue", "list", "--json"])
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .collect::<Vec<_>>()
    };
    // Both in their rounds, waiting for a greeting that never comes.
    wait_for(Duration::from_secs(3), || listed().is_empty().then_some(()))
        .expect("both in their rounds");
    for (path, action) in [
        ("/api/v1/queue/hold?domain=remote.example", "hold"),
        ("/api/v1/queue/purge?domain=other.example", "purge"),
    ] {
        let (status, json) = relay.api("POST", path, Some(&ops), None);
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["done"], action, "{json}");
        assert_eq!(json["messages"], 0, "{json}");
        assert_eq!(json["in_flight"], 1, "{json}");
    }
    // The rounds end when the greeting times out: one is held, the other gone, with its trace
    // saying so.
    let held = wait_for(Duration::from_secs(20), || {
        let l = listed();
        (l.len() == 1).then_some(l)
    })
    .expect("back in the queue");
    assert_eq!(held[0]["id"], to_hold.as_str(), "{held:?}");
    assert_eq!(held[0]["held"], true, "{held:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(listed().len(), 1, "the purged one stays gone");
    let trace = relay.cli(&["trace", "--id", &to_purge]);
    assert!(
        trace.contains("purged from the queue by the relay's operator"),
        "{trace}"
    );
}

#[test]
fn the_trace_is_searched_and_paged_per_tenant() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    relay.cli(&["tenant", "add", "fabrikam"]);
    let token = |args: &[&str]| {
        let mut a = vec!["token", "create"];
        a.extend_from_slice(args);
        relay.cli(&a).trim().to_string()
    };
    let reader = token(&["--name", "r", "--role", "reader", "--tenant", "contoso"]);
    let other = token(&["--name", "f", "--role", "admin", "--tenant", "fabrikam"]);
    let ops = token(&["--name", "ops", "--role", "operator"]);
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let mut sent = Vec::new();
    for i in 0..5 {
        let r = c.transaction(
            "alice@contoso.example",
            &[&format!("ok{i}@remote.example")],
            MSG,
        );
        assert_eq!(r.code, 250, "{r:?}");
        sent.push(r.queued_id());
    }
    rx.wait(5, Duration::from_secs(20));
    let get = |path: &str, tok: &str| {
        let (status, json) = relay.api("GET", path, Some(tok), None);
        assert_eq!(status, 200, "{path}: {json}");
        json
    };
    // Pages of two, newest first, until `next` runs out; every message once.
    wait_for(Duration::from_secs(10), || {
        let all = get("/api/v1/tenants/contoso/trace?status=Delivered", &reader);
        (all["messages"].as_array().map(Vec::len) == Some(5)).then_some(())
    })
    .expect("five delivered messages in the trace");
    let mut seen = Vec::new();
    let mut path = "/api/v1/tenants/contoso/trace?limit=2".to_string();
    for _ in 0..5 {
        let page = get(&path, &reader);
        let msgs = page["messages"].as_array().expect("messages");
        assert!(msgs.len() <= 2);
        seen.extend(
            msgs.iter()
                .filter_map(|m| m["message_id"].as_str().map(str::to_string)),
        );
        match page["next"].as_str() {
            Some(n) => path = format!("/api/v1/tenants/contoso/trace?limit=2&before={n}"),
            None => break,
        }
    }
    let mut expected = sent.clone();
    expected.reverse();
    assert_eq!(seen, expected, "newest first, each once");
    // Filters.
    let one = get(
        "/api/v1/tenants/contoso/trace?recipient=ok3@remote.example",
        &reader,
    );
    assert_eq!(one["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["messages"][0]["message_id"], sent[3].as_str());
    assert_eq!(one["messages"][0]["recipients"][0]["status"], "Delivered");
    let (status, _) = relay.api(
        "GET",
        "/api/v1/tenants/contoso/trace?status=Lost",
        Some(&reader),
        None,
    );
    assert_eq!(status, 400);
    // Another tenant's admin does not see it; the operator sees it across tenants.
    let (status, _) = relay.api("GET", "/api/v1/tenants/contoso/trace", Some(&other), None);
    assert_eq!(status, 404);
    let all = get("/api/v1/trace?tenant=contoso", &ops);
    assert_eq!(all["messages"].as_array().map(Vec::len), Some(5));
    assert!(
        get("/api/v1/trace?tenant=fabrikam", &ops)["messages"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );
}

/// SPEC section 9's "messages delayed" alert: once `[guard] delayed_alert_messages` of a
/// tenant's messages have waited longer than `delayed_alert_after`, its admins are alerted,
/// once, with the destinations most waited for; messages an operator holds do not count.
#[test]
fn a_tenant_whose_mail_waits_long_is_alerted_once() {
    let rx = Receiver::start(false);
    let relay = contoso_relay_with(
        rx.addr,
        "1h",
        "[guard]\ndelayed_alert_messages = 3\ndelayed_alert_after = \"2s\"\n",
    );
    let delayed = |relay: &Relay| {
        relay
            .cli(&["alerts", "--tenant", "contoso"])
            .matches("messages_delayed")
            .count()
    };
    // Three deferred by the destination, one of them held by an operator: two count.
    let ids = three_deferred(&relay);
    let tok = relay.token(&["--name", "ops", "--role", "operator"]);
    // Held once its first round is over (during it, the answer is 409).
    let held = wait_for(Duration::from_secs(10), || {
        let path = format!("/api/v1/queue/{}/hold", ids[0]);
        (relay.api("POST", &path, Some(&tok), None).0 == 200).then_some(())
    });
    assert!(held.is_some(), "the message could not be held");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        delayed(&relay),
        0,
        "two waiting messages are under the threshold"
    );

    // A third waits: past the threshold once it has waited 2 s.
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    let reply = c.transaction("alice@contoso.example", &["defer-d@remote.example"], MSG);
    assert_eq!(reply.code, 250, "{reply:?}");
    let alerts = wait_for(Duration::from_secs(15), || {
        let out = relay.cli(&["alerts", "--tenant", "contoso"]);
        out.contains("messages_delayed").then_some(out)
    })
    .expect("a messages-delayed alert");
    assert!(
        alerts.contains("3 messages have waited in the queue for more than 2 s")
            && alerts.contains("remote.example (2)"),
        "{alerts}"
    );
    // Still waiting a while later: not told again.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(delayed(&relay), 1);
}

/// A destination that takes connections and never answers holds its messages in delivery
/// rounds (until the command timeout, minutes): they are as delayed as messages waiting for a
/// round, and the alert counts them and names the destination.
#[test]
fn messages_held_in_rounds_by_a_silent_destination_count_as_delayed() {
    let addr = tarpit();
    let relay = contoso_relay_with(
        addr,
        "1h",
        "[guard]\ndelayed_alert_messages = 3\ndelayed_alert_after = \"2s\"\n",
    );
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    for to in ["a@remote.example", "b@remote.example", "c@remote.example"] {
        let reply = c.transaction("alice@contoso.example", &[to], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    c.cmd("QUIT");
    let alerts = wait_for(Duration::from_secs(20), || {
        let out = relay.cli(&["alerts", "--tenant", "contoso"]);
        out.contains("messages_delayed").then_some(out)
    })
    .expect("a messages-delayed alert for the three messages in rounds");
    assert!(
        alerts.contains("3 messages have waited in the queue for more than 2 s")
            && alerts.contains("remote.example (3)"),
        "{alerts}"
    );
}

/// After a destination's outage, an operator flushes its mail (`postqueue -s`): what waited
/// for it goes at once, not at each message's next retry (an hour away here), although the
/// destination had been backed off after failing three times; other destinations' mail stays
/// until flushed in turn. Only operators may; each flush is audited.
#[test]
fn a_destination_back_after_an_outage_gets_its_mail_at_once_when_flushed() {
    // The next hop is down: nothing listens at its address until the outage ends.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let relay = contoso_relay_with(addr, "1h", "");
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO onprem.contoso.example").code, 250);
    for to in [
        "a@remote.example",
        "b@remote.example",
        "c@remote.example",
        "d@other.example",
    ] {
        let reply = c.transaction("alice@contoso.example", &[to], MSG);
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    c.cmd("QUIT");
    // Every domain goes through the smart host, one destination: after three refused
    // connections it is backed off as a whole, and a message not tried yet waits with the rest.
    wait_for(Duration::from_secs(20), || {
        let list = relay.cli(&["queue", "list"]);
        (list.matches("refused").count() >= 3).then_some(())
    })
    .unwrap_or_else(|| panic!("{}", relay.cli(&["queue", "list"])));
    let metrics = relay.http_get("/metrics");
    assert!(
        metrics.contains(&format!(
            "relayward_destination_backed_off{{destination=\"[{addr}]\"}} 1"
        )),
        "{metrics}"
    );

    // The outage ends; the mail would wait for its retry an hour from now.
    let rx = Receiver::start_at(addr, None);
    std::thread::sleep(Duration::from_secs(2));
    assert!(rx.messages().is_empty());

    assert_eq!(
        relay
            .cli(&["queue", "flush", "--tenant", "fabrikam"])
            .trim(),
        "0 message(s) due now"
    );
    assert_eq!(
        relay
            .cli(&["queue", "flush", "--domain", "remote.example"])
            .trim(),
        "3 message(s) due now"
    );
    let got = rx.wait(3, Duration::from_secs(20));
    let mut to: Vec<String> = got.iter().flat_map(|m| m.rcpts.clone()).collect();
    to.sort();
    assert_eq!(
        to,
        ["a@remote.example", "b@remote.example", "c@remote.example"]
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rx.messages().len(), 3, "other.example's message waits");

    // Through the API: a tenant's admin may not; an operator may.
    let (ops, admin) = tokens(&relay);
    let (status, _) = relay.api("POST", "/api/v1/queue/flush", Some(&admin), None);
    assert_eq!(status, 403);
    let (status, json) = relay.api(
        "POST",
        "/api/v1/queue/flush?tenant=contoso",
        Some(&ops),
        None,
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["messages"], 1, "{json}");
    let got = rx.wait(4, Duration::from_secs(20));
    assert!(
        got.iter().any(|m| m.rcpts == ["d@other.example"]),
        "{got:?}"
    );

    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    let flushes: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"queue.flush\""))
        .collect();
    assert_eq!(flushes.len(), 1, "{audit}");
    assert!(
        flushes[0].contains("(ops)") && flushes[0].contains(r#"\"messages\":1"#),
        "{audit}"
    );
    let all = relay.cli(&["audit"]);
    assert!(
        all.lines().any(|l| l.contains("\"queue.flush\"")
            && l.contains(r#"\"domain\":\"remote.example\""#)
            && l.contains(r#"\"messages\":3"#)),
        "{all}"
    );
}
