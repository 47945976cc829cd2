//! The command line applies the control plane's rules: `tenant add`, `connector add`,
//! `user add`, `route add` and `tenant subscription` refuse what the API refuses, with the same
//! reasons, and leave audit entries with the command-line actor. `relayward queue` lists and
//! acts on the running relay's queue like `postqueue`/`postsuper`, audited like the API.

#![allow(clippy::unwrap_used)] // a test: a missing field should panic and say where

use std::time::Duration;

use crate::queue::{contoso_relay, three_deferred};
use crate::util::*;

/// The command's failure, without the `relayward: ` prefix.
fn cli_refusal(relay: &Relay, args: &[&str]) -> String {
    let (ok, out) = relay.cli_status(args);
    assert!(!ok, "relayward {args:?} should be refused: {out}");
    out.trim().trim_start_matches("relayward: ").to_string()
}

#[test]
fn the_command_line_refuses_what_the_api_refuses_and_audits_as_itself() {
    let rx = Receiver::start(false);
    let relay = contoso_relay(&rx, "1s");
    let ops = relay.token(&["--name", "ops", "--role", "operator"]);
    relay.tenant_by_cli("fabrikam", "fabrikam.example");

    // The same change through both doors: the API's error text is in the command line's.
    let same = |args: &[&str], method: &str, path: &str, body: &str, status: u16| {
        let cli = cli_refusal(&relay, args);
        let (got, json) = relay.api(method, path, Some(&ops), Some(body));
        assert_eq!(got, status, "{method} {path} {body}: {json}");
        let api = json["error"].as_str().unwrap_or_default().to_string();
        assert!(!api.is_empty(), "{json}");
        assert!(
            cli.contains(&api),
            "relayward {args:?} said {cli:?}; the API said {api:?}"
        );
        api
    };
    // tenant add: an admin address in another tenant's domain; a date that is not one.
    let why = same(
        &["tenant", "add", "litware", "--admin", "it@contoso.example"],
        "POST",
        "/api/v1/tenants",
        r#"{"name": "litware", "admins": ["it@contoso.example"]}"#,
        403,
    );
    assert!(why.contains("contoso.example"), "{why}");
    same(
        &[
            "tenant",
            "add",
            "litware",
            "--subscription-ends",
            "2027-02-30",
        ],
        "POST",
        "/api/v1/tenants",
        r#"{"name": "litware", "subscription_ends": "2027-02-30"}"#,
        422,
    );
    // A name another tenant has in other letters' case.
    let why = same(
        &["tenant", "add", "FabriKam"],
        "POST",
        "/api/v1/tenants",
        r#"{"name": "FABRIKAM"}"#,
        409,
    );
    assert!(why.contains("'fabrikam' already exists"), "{why}");
    // connector add: another tenant's host; a range wider than /24.
    let why = same(
        &[
            "connector",
            "add",
            "fabrikam",
            "grab",
            "--ip",
            "127.0.0.1/32",
        ],
        "POST",
        "/api/v1/tenants/fabrikam/connectors",
        r#"{"name": "grab", "ips": ["127.0.0.1/32"]}"#,
        403,
    );
    assert!(
        why.contains("overlaps connector 'on-prem' of tenant 'contoso'"),
        "an operator is told whose: {why}"
    );
    same(
        &["connector", "add", "fabrikam", "wide", "--ip", "10.0.0.0/8"],
        "POST",
        "/api/v1/tenants/fabrikam/connectors",
        r#"{"name": "wide", "ips": ["10.0.0.0/8"]}"#,
        403,
    );
    // user add: an address and an alias in another tenant's domain.
    same(
        &["user", "add", "fabrikam", "director@contoso.example"],
        "POST",
        "/api/v1/tenants/fabrikam/users",
        r#"{"address": "director@contoso.example"}"#,
        422,
    );
    same(
        &[
            "user",
            "add",
            "fabrikam",
            "bob@fabrikam.example",
            "--alias",
            "ceo@contoso.example",
        ],
        "POST",
        "/api/v1/tenants/fabrikam/users",
        r#"{"address": "bob@fabrikam.example", "aliases": ["ceo@contoso.example"]}"#,
        403,
    );
    // tenant subscription: not a date.
    same(
        &["tenant", "subscription", "fabrikam", "--ends", "2027-13-01"],
        "PATCH",
        "/api/v1/tenants/fabrikam",
        r#"{"subscription_ends": "2027-13-01"}"#,
        422,
    );
    // route add: only for one of the tenant's own accepted domains (the API has no route
    // operation; the rule is the control plane's all the same).
    let why = cli_refusal(
        &relay,
        &[
            "route",
            "add",
            "fabrikam",
            "contoso.example",
            "127.0.0.1:2525",
        ],
    );
    assert!(
        why.contains("contoso.example is not an accepted domain of fabrikam"),
        "{why}"
    );
    let why = cli_refusal(
        &relay,
        &["route", "add", "fabrikam", "fabrikam.example", "mx one"],
    );
    assert!(why.contains("is not a host name"), "{why}");

    // Accepted changes, each audited with the command-line actor.
    relay.cli(&["tenant", "add", "litware", "--admin", "it@litware.example"]);
    relay.cli(&["connector", "add", "fabrikam", "hq", "--ip", "192.0.2.0/28"]);
    relay.cli(&["user", "add", "fabrikam", "bob@fabrikam.example"]);
    relay.cli(&[
        "route",
        "add",
        "fabrikam",
        "fabrikam.example",
        "mail.fabrikam.example:2525",
    ]);
    relay.cli(&["tenant", "subscription", "fabrikam", "--ends", "2027-12-31"]);
    let audit: Vec<serde_json::Value> = relay
        .cli(&["audit", "--limit", "100"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (action, tenant) in [
        ("tenant.create", "litware"),
        ("connector.create", "fabrikam"),
        ("user.create", "fabrikam"),
        ("route.create", "fabrikam"),
        ("tenant.update", "fabrikam"),
    ] {
        let e = audit
            .iter()
            .find(|e| e["action"] == action && e["tenant"] == tenant)
            .unwrap_or_else(|| panic!("no {action} for {tenant} in {audit:?}"));
        assert!(
            e["actor"].as_str().unwrap().starts_with("cli:"),
            "{action}: {e}"
        );
        assert_eq!(e["client"], "cli", "{action}: {e}");
        assert_eq!(e["role"], "operator", "{action}: {e}");
    }
    let update = audit
        .iter()
        .find(|e| e["action"] == "tenant.update")
        .unwrap();
    assert!(
        update["detail"].as_str().unwrap().contains("2027-12-31"),
        "{update}"
    );
    // And the route is in force: the directory lists it.
    assert!(
        relay
            .cli(&["tenant", "list"])
            .contains("route     fabrikam.example -> mail.fabrikam.example:2525")
    );
}

#[test]
fn relayward_queue_lists_and_acts_on_the_running_relays_queue() {
    let rx = Receiver::start(false);
    let relay = contoso_relay(&rx, "1h");
    let ids = three_deferred(&relay);
    let listed = |args: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["queue", "list", "--json"];
        all.extend_from_slice(args);
        relay
            .cli(&all)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let find = |id: &str| listed(&[]).into_iter().find(|m| m["id"] == id);
    wait_for(Duration::from_secs(20), || {
        let all = listed(&["--tenant", "contoso"]);
        (all.len() == 3 && all.iter().all(|m| m["attempts"] == 1)).then_some(())
    })
    .expect("three messages waiting after their first round");

    // The listing an operator used to `postqueue -p` reads at a glance.
    let text = relay.cli(&["queue", "list"]);
    assert!(text.starts_with("-Queue ID-"), "{text}");
    for id in &ids {
        assert!(text.contains(id.as_str()), "{text}");
    }
    assert!(text.contains("alice@contoso.example"), "{text}");
    assert!(text.contains("(451"), "the last answer is shown: {text}");
    assert!(text.contains("defer-b@other.example"), "{text}");
    assert!(
        text.contains("-- 3 messages, 3 recipients pending"),
        "{text}"
    );
    let other = listed(&["--domain", "other.example"]);
    assert_eq!(other.len(), 1);
    assert_eq!(other[0]["id"], ids[1].as_str());
    let shown = relay.cli(&["queue", "show", &ids[1]]);
    assert!(shown.contains("defer-b@other.example"), "{shown}");

    // Hold, then release: tried again at once.
    assert!(relay.cli(&["queue", "hold", &ids[0]]).contains("hold done"));
    assert_eq!(find(&ids[0]).unwrap()["held"], true);
    assert!(
        relay
            .cli(&["queue", "list"])
            .contains(&format!("{}!", ids[0])),
        "a held message is marked"
    );
    relay.cli(&["queue", "release", &ids[0]]);
    wait_for(Duration::from_secs(10), || {
        find(&ids[0]).filter(|m| m["held"] == false && m["attempts"] == 2)
    })
    .expect("released and tried again");
    // Retry now.
    relay.cli(&["queue", "retry", &ids[2]]);
    wait_for(Duration::from_secs(10), || {
        find(&ids[2]).filter(|m| m["attempts"] == 2)
    })
    .expect("tried again");
    // Bounce: gone from the queue, and alice hears about it exactly once.
    relay.cli(&["queue", "bounce", &ids[1]]);
    assert!(find(&ids[1]).is_none());
    let ndrs = |rx: &Receiver| {
        rx.messages()
            .into_iter()
            .filter(|m| m.mail_from.is_empty() && m.rcpts == ["alice@contoso.example"])
            .count()
    };
    wait_for(Duration::from_secs(10), || (ndrs(&rx) == 1).then_some(()))
        .expect("an NDR for the bounced message");
    // Purge: gone, and nobody is told.
    relay.cli(&["queue", "purge", &ids[2]]);
    assert!(find(&ids[2]).is_none());
    let again = cli_refusal(&relay, &["queue", "purge", &ids[2]]);
    assert!(again.contains("no queued message"), "{again}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(ndrs(&rx), 1, "one NDR, for the bounce only");

    // Each action is in the audit log, as the command line's operator.
    let audit: Vec<serde_json::Value> = relay
        .cli(&["audit", "--tenant", "contoso", "--limit", "50"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for (action, id) in [
        ("queue.hold", &ids[0]),
        ("queue.release", &ids[0]),
        ("queue.retry", &ids[2]),
        ("queue.bounce", &ids[1]),
        ("queue.purge", &ids[2]),
    ] {
        let e = audit
            .iter()
            .find(|e| e["action"] == action && e["detail"].as_str().unwrap().contains(id.as_str()))
            .unwrap_or_else(|| panic!("no {action} of {id} in {audit:?}"));
        assert!(e["actor"].as_str().unwrap().starts_with("cli:"), "{e}");
        assert_eq!(e["client"], "cli", "{e}");
    }
}

#[test]
fn the_queue_command_says_plainly_when_no_relay_is_running() {
    let rx = Receiver::start(false);
    let mut relay = contoso_relay(&rx, "1s");
    relay.terminate();
    let why = cli_refusal(&relay, &["queue", "list"]);
    assert!(why.contains("is `relayward serve` running"), "{why}");
}

#[test]
fn a_listing_cut_short_by_its_reader_ends_quietly() {
    // Far more output than a pipe holds, so the command is still writing when `head` leaves.
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!(
        "[storage]\ndata_dir = \"{}\"\n",
        dir.path().join("data").display()
    );
    for i in 0..5000 {
        text.push_str(&format!("[[tenants]]\nname = \"tenant{i}\"\n"));
    }
    let file = dir.path().join("relayward.toml");
    std::fs::write(&file, text).unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{BIN} check-config --config {} | head -3; exit ${{PIPESTATUS:-0}}",
            file.display()
        ))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stdout.starts_with("configuration is valid"), "{stdout}");
    assert!(stderr.is_empty(), "quiet, no panic: {stderr}");
}

/// `relayward serve`'s log lines (stderr, not a terminal here) until it says it is running,
/// with `format` as `RELAYWARD_LOG_FORMAT`.
fn serve_logs(format: &str) -> Vec<String> {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RELAYWARD_LOG", "info")
        .env("RELAYWARD_LOG_FORMAT", format)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start relayward");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        let running = line.contains("relayward is running");
        lines.push(line);
        if running {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        lines.iter().any(|l| l.contains("relayward is running")),
        "{lines:#?}"
    );
    lines
}

#[test]
fn logs_are_plain_text_off_a_terminal_and_json_lines_on_request() {
    // journald and log files get no terminal colour codes.
    let plain = serve_logs("");
    assert!(
        plain.iter().all(|l| !l.contains('\u{1b}')),
        "escape codes in: {plain:#?}"
    );
    // One JSON object per line, for log shippers.
    let json = serve_logs("json");
    for line in &json {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["fields"]["message"].is_string(),
            "{line}"
        );
    }
}

#[test]
fn under_systemd_the_relay_says_when_it_is_ready_and_when_it_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let systemd = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind");
    systemd
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("timeout");
    let config = write_config(dir.path(), "");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("RELAYWARD_LOG", "warn")
        .env("NOTIFY_SOCKET", &socket_path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start relayward");
    let mut buf = [0u8; 256];
    let n = systemd.recv(&mut buf).expect("READY from the relay");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    // Ready means ready: the ready line is out and the relay answers.
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let relay: std::net::SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("relay="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    drop(Client::connect(relay, None));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let n = systemd.recv(&mut buf).expect("STOPPING from the relay");
    let stopping = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(stopping.lines().any(|l| l == "STOPPING=1"), "{stopping}");
    let _ = child.wait();
}

/// A SIGTERM that comes right after the ready line still stops the relay in order (exit 0):
/// the signal is listened for before the relay says it is ready. Before, one that came before
/// the relay first waited for it ended the process at once (13 of 30 times in a loop like this).
#[test]
fn a_sigterm_right_after_the_ready_line_is_an_orderly_stop() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "");
    for _ in 0..10 {
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RELAYWARD_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start relayward");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert!(line.starts_with("relayward ready"), "{line}");
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let status = child.wait().expect("wait");
        assert!(
            status.success(),
            "ended by the signal, not in order: {status}"
        );
    }
}
