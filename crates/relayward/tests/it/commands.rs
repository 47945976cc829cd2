//! The command line as an operator meets it at 3 a.m.: `--help` describes every command and
//! option, and a password need not be typed where the process list and the shell's history
//! keep it.

#![allow(clippy::unwrap_used)] // a test: a missing field should panic and say where

use std::process::Command;

use crate::util::*;

/// The `--help` text of `relayward <path…>`.
fn help(path: &[String]) -> String {
    let out = Command::new(BIN)
        .args(path)
        .arg("--help")
        .output()
        .expect("run relayward --help");
    assert!(out.status.success(), "relayward {path:?} --help failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One entry of a help text's `Commands:`, `Arguments:` or `Options:` section, and whether it
/// has a description. clap starts an entry two spaces in (six for an option without a short
/// form) and writes its description beside it, two spaces or more after it, or (when the text
/// is wide) on the lines below it, ten spaces in. A default value alone (`[default: 50]`) is
/// not a description.
struct Entry {
    section: String,
    name: String,
    described: bool,
}

fn entries(text: &str) -> Vec<Entry> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let mut section = String::new();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line.trim_end_matches(':').to_string();
            continue;
        }
        if !matches!(section.as_str(), "Commands" | "Arguments" | "Options") {
            continue;
        }
        let entry = line.trim_start();
        if entry.is_empty() || indent(line) > 6 {
            continue;
        }
        let (name, beside) = entry.split_once("  ").unwrap_or((entry, ""));
        let below: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|l| indent(l) > 6)
            .map(|l| l.trim())
            .collect();
        let description = format!("{} {}", beside.trim(), below.join(" "));
        let description = description.trim();
        let described = !description.is_empty() && !description.starts_with("[default:");
        found.push(Entry {
            section: section.clone(),
            name: name.trim().to_string(),
            described,
        });
    }
    found
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

#[test]
fn every_command_and_option_says_what_it_does_in_its_help() {
    let mut missing = Vec::new();
    let mut commands = 0;
    let mut walk = vec![Vec::<String>::new()];
    while let Some(path) = walk.pop() {
        commands += 1;
        for e in entries(&help(&path)) {
            if e.section == "Commands" {
                if e.name == "help" {
                    continue;
                }
                let mut next = path.clone();
                next.push(e.name.clone());
                walk.push(next);
            }
            if !e.described {
                missing.push(format!("relayward {} {}", path.join(" "), e.name));
            }
        }
    }
    // The walk reached the whole tree: the top level and its groups' own commands.
    assert!(commands > 50, "only {commands} commands walked");
    assert!(
        missing.is_empty(),
        "without a description in --help: {missing:#?}"
    );
}

#[test]
fn the_help_reader_sees_a_missing_description_in_either_layout() {
    let beside = "Usage: x\n\nArguments:\n  <ID>  \n\nOptions:\n      --json  \n      --limit <LIMIT>  [default: 50]\n      --all   Every one\n";
    let found: Vec<(String, bool)> = entries(beside)
        .into_iter()
        .map(|e| (e.name, e.described))
        .collect();
    assert_eq!(
        found,
        [
            ("<ID>".to_string(), false),
            ("--json".to_string(), false),
            ("--limit <LIMIT>".to_string(), false),
            ("--all".to_string(), true),
        ]
    );
    let below = "Options:\n      --language <LANGUAGE>\n          [default: en]\n      --admin <ADMIN>\n          Admin address for alerts\n";
    let found: Vec<bool> = entries(below).into_iter().map(|e| e.described).collect();
    assert_eq!(found, [false, true]);
}

/// A relay with the tenant contoso and its verified domain, both added on the command line.
fn contoso_by_cli(rx: &Receiver) -> Relay {
    let relay = Relay::start(&format!("[delivery]\nsmart_host = \"{}\"\n", rx.addr));
    relay.tenant_by_cli("contoso", "contoso.example");
    relay
}

/// `relayward user <command> contoso <user> --password-stdin`, with `input` piped in.
fn with_piped_password(relay: &Relay, command: &str, user: &str, input: &str) -> (bool, String) {
    relay.cli_with_input(
        &["user", command, "contoso", user, "--password-stdin"],
        input.as_bytes(),
    )
}

#[test]
fn a_users_smtp_password_can_come_from_standard_input() {
    let rx = Receiver::start(false);
    let relay = contoso_by_cli(&rx);
    let password = "a printer's long secret";
    let (ok, out) = with_piped_password(
        &relay,
        "add",
        "printer@contoso.example",
        &format!("{password}\n"),
    );
    assert!(ok, "{out}");
    relay.wait_directory();
    let (_, r) = submission_auth(&relay, "printer@contoso.example", password);
    assert_eq!(r.code, 235, "{}", r.text());
    // The line ending is not part of it.
    let (_, r) = submission_auth(&relay, "printer@contoso.example", &format!("{password}\n"));
    assert_eq!(r.code, 535, "{}", r.text());

    // Nothing piped in: refused, and no user without a password is left behind.
    let (ok, out) = with_piped_password(&relay, "add", "scanner@contoso.example", "");
    assert!(!ok, "{out}");
    assert!(out.contains("no password on standard input"), "{out}");
    let listed = relay.cli(&["tenant", "list"]);
    assert!(listed.contains("printer@contoso.example"), "{listed}");
    assert!(!listed.contains("scanner@contoso.example"), "{listed}");

    // One way or the other, not both.
    let (ok, out) = relay.cli_with_input(
        &[
            "user",
            "add",
            "contoso",
            "scanner@contoso.example",
            "--password",
            "another long secret",
            "--password-stdin",
        ],
        b"a third long secret\n",
    );
    assert!(!ok, "{out}");
    assert!(out.contains("cannot be used with"), "{out}");
}

/// A device's password leaked: the operator sets it anew from the command line. The old one no
/// longer signs in, and a session already signed in with it is closed at its next MAIL FROM,
/// while a session of another user, and one of this user signed in after the change, go on.
/// Removing the password, then the user, shuts the user out.
#[test]
fn a_password_set_anew_ends_the_sessions_signed_in_with_the_old_one() {
    let rx = Receiver::start(false);
    let relay = contoso_by_cli(&rx);
    let leaked = "the printer's old secret";
    for user in ["printer@contoso.example", "scanner@contoso.example"] {
        let (ok, out) = with_piped_password(&relay, "add", user, &format!("{leaked}\n"));
        assert!(ok, "{out}");
    }
    relay.wait_directory();
    let (mut attacker, r) = submission_auth(&relay, "printer@contoso.example", leaked);
    assert_eq!(r.code, 235, "{}", r.text());
    let (mut other, r) = submission_auth(&relay, "scanner@contoso.example", leaked);
    assert_eq!(r.code, 235, "{}", r.text());
    let body = "Subject: x\r\nFrom: printer@contoso.example\r\n\r\nhello\r\n";
    let r = attacker.transaction("printer@contoso.example", &["a@remote.example"], body);
    assert_eq!(r.code, 250, "before the change: {}", r.text());

    let fresh = "the printer's new secret";
    let (ok, out) = with_piped_password(
        &relay,
        "password",
        "printer@contoso.example",
        &format!("{fresh}\n"),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("password of printer@contoso.example changed"),
        "{out}"
    );
    relay.wait_directory();

    let r = attacker.cmd("MAIL FROM:<printer@contoso.example>");
    assert_eq!(r.code, 421, "{}", r.text());
    assert!(r.text().contains("sign in again"), "{}", r.text());
    assert!(attacker.closed(), "the session is closed after its 421");
    let (_, r) = submission_auth(&relay, "printer@contoso.example", leaked);
    assert_eq!(r.code, 535, "the old password: {}", r.text());
    let (mut device, r) = submission_auth(&relay, "printer@contoso.example", fresh);
    assert_eq!(r.code, 235, "the new password: {}", r.text());
    let r = device.transaction("printer@contoso.example", &["b@remote.example"], body);
    assert_eq!(r.code, 250, "signed in after the change: {}", r.text());
    // Another user's session was not touched.
    let body = "Subject: y\r\nFrom: scanner@contoso.example\r\n\r\nhello\r\n";
    let r = other.transaction("scanner@contoso.example", &["c@remote.example"], body);
    assert_eq!(r.code, 250, "another user: {}", r.text());

    // Removed: not even the new password signs in, and the device's session ends too.
    let out = relay.cli(&[
        "user",
        "password",
        "contoso",
        "printer@contoso.example",
        "--remove",
    ]);
    assert!(out.contains("removed"), "{out}");
    relay.wait_directory();
    let r = device.cmd("MAIL FROM:<printer@contoso.example>");
    assert_eq!(r.code, 421, "{}", r.text());
    let (_, r) = submission_auth(&relay, "printer@contoso.example", fresh);
    assert_eq!(r.code, 535, "no password: {}", r.text());

    // The user itself, removed: the other session, signed in as it, ends as well.
    let out = relay.cli(&["user", "remove", "contoso", "scanner@contoso.example"]);
    assert!(
        out.contains("user scanner@contoso.example removed"),
        "{out}"
    );
    relay.wait_directory();
    let r = other.cmd("MAIL FROM:<scanner@contoso.example>");
    assert_eq!(r.code, 421, "{}", r.text());
    let listed = relay.cli(&["tenant", "list"]);
    assert!(!listed.contains("scanner@contoso.example"), "{listed}");
    // Each change is in the audit log, as the command line's.
    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    assert!(
        audit.contains("user.update") && audit.contains("user.delete"),
        "{audit}"
    );
}

/// A connector removed on the command line (a server that should not relay any more): the
/// sessions it recognised are closed at their next MAIL FROM, another tenant's connector's go
/// on, and a new connection from the removed connector's address is nobody's.
#[test]
fn a_connector_removed_ends_the_sessions_it_recognised() {
    let rx = Receiver::start(false);
    let relay = contoso_by_cli(&rx);
    relay.cli(&["connector", "add", "contoso", "office", "--ip", "127.0.0.2"]);
    relay.tenant_by_cli("fabrikam", "fabrikam.example");
    relay.cli(&["connector", "add", "fabrikam", "plant", "--ip", "127.0.0.3"]);
    relay.wait_directory();
    let from = |ip: &str| {
        let mut c = Client::connect(relay.relay, Some(ip.parse().unwrap()));
        c.cmd("EHLO server");
        c
    };
    let contoso = "Subject: x\r\nFrom: it@contoso.example\r\n\r\nhello\r\n";
    let fabrikam = "Subject: y\r\nFrom: it@fabrikam.example\r\n\r\nhello\r\n";
    let mut office = from("127.0.0.2");
    let r = office.transaction("it@contoso.example", &["a@remote.example"], contoso);
    assert_eq!(r.code, 250, "before: {}", r.text());
    let mut plant = from("127.0.0.3");
    let r = plant.transaction("it@fabrikam.example", &["b@remote.example"], fabrikam);
    assert_eq!(r.code, 250, "before: {}", r.text());

    let out = relay.cli(&["connector", "remove", "contoso", "office"]);
    assert!(out.contains("connector office of contoso removed"), "{out}");
    relay.wait_directory();

    let r = office.cmd("MAIL FROM:<it@contoso.example>");
    assert_eq!(r.code, 421, "{}", r.text());
    assert!(r.text().contains("connect again"), "{}", r.text());
    assert!(office.closed(), "the session is closed after its 421");
    let r = plant.transaction("it@fabrikam.example", &["c@remote.example"], fabrikam);
    assert_eq!(r.code, 250, "another tenant's connector: {}", r.text());
    // Connecting again from the office's address: no connector, so no relaying.
    let mut again = from("127.0.0.2");
    let r = again.transaction("it@contoso.example", &["d@remote.example"], contoso);
    assert_eq!(r.code, 550, "{}", r.text());
    assert!(r.text().contains("5.7.64"), "{}", r.text());
    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    assert!(audit.contains("connector.delete"), "{audit}");
}
