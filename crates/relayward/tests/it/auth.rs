//! SMTP AUTH under attack: wrong passwords are limited across connections per
//! account and per client address, with the same answer for accounts that do not exist; a
//! lockout reaches the tenant's admins and shows beside the counters.

#![allow(clippy::unwrap_used)] // a test: a missing field should panic and say where

use std::time::{Duration, Instant};

use crate::util::*;

const LOCKED: &str =
    "454 4.7.0 Temporary authentication failure: too many failed attempts, try again later";
const INVALID: &str = "535 5.7.8 Authentication credentials invalid";

#[test]
fn the_sixth_wrong_password_is_locked_out_on_any_connection_until_the_lock_ends() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[smtp]\nauth_lockout = \"4s\"\n"));
    // (alice@contoso.example, password change-me, from the fixture; contoso's admins get
    // alerts.)
    relay.cli(&["tenant", "list"]);
    // Five wrong passwords, each on a new connection, are answered as wrong passwords.
    for i in 0..5 {
        let (_, r) = submission_auth(&relay, "alice@contoso.example", &format!("guess-{i}"));
        assert_eq!(r.text(), INVALID, "attempt {}", i + 1);
    }
    // The sixth, on a new connection, gets the lockout; so does the right password.
    let (_, r) = submission_auth(&relay, "alice@contoso.example", "guess-5");
    assert_eq!(r.text(), LOCKED);
    let locked_at = Instant::now();
    let (_, r) = submission_auth(&relay, "ALICE@contoso.example", "change-me");
    assert_eq!(
        r.text(),
        LOCKED,
        "the right password waits for the lock too"
    );
    // However the account's name is written: IDNA maps these to the same domain.
    for name in [
        "alice@contoso\u{200b}.example",
        "alice@CONTOSO\u{ff0e}example",
    ] {
        let (_, r) = submission_auth(&relay, name, "change-me");
        assert_eq!(r.text(), LOCKED, "{name}");
    }

    // An account that does not exist gets exactly the same answers.
    for i in 0..5 {
        let (_, r) = submission_auth(&relay, "nobody@contoso.example", &format!("guess-{i}"));
        assert_eq!(r.text(), INVALID);
    }
    let (_, r) = submission_auth(&relay, "nobody@contoso.example", "guess-5");
    assert_eq!(r.text(), LOCKED);

    // The lockout is counted, shown beside the counters (command line and API) and alerted.
    assert_eq!(relay.metric("relayward_auth_lockouts_total"), 2);
    assert!(relay.metric("relayward_auth_failures_total") >= 10);
    assert!(relay.metric("relayward_auth_refused_locked_total") >= 3);
    let shown = wait_for(Duration::from_secs(10), || {
        let out = relay.cli(&["counters", "contoso"]);
        out.contains("alice@contoso.example").then_some(out)
    })
    .expect("the lockout in relayward counters");
    assert!(
        shown.contains("LOCKED until") && shown.contains("127.0.0.1"),
        "{shown}"
    );
    assert!(
        !shown.contains("nobody@"),
        "unknown accounts belong to no tenant: {shown}"
    );
    let tok = relay.token(&["--name", "r", "--role", "reader", "--tenant", "contoso"]);
    let (status, json) = relay.api("GET", "/api/v1/tenants/contoso/counters", Some(&tok), None);
    assert_eq!(status, 200);
    assert_eq!(
        json["auth_lockouts"][0]["account"], "alice@contoso.example",
        "{json}"
    );
    assert_eq!(json["auth_lockouts"][0]["failures"], 5, "{json}");
    let alerts = wait_for(Duration::from_secs(10), || {
        let out = relay.cli(&["alerts", "--tenant", "contoso"]);
        out.contains("account_locked").then_some(out)
    })
    .expect("an alert for the tenant");
    assert!(alerts.contains("alice@contoso.example"), "{alerts}");

    // When the lock ends the right password works again.
    let left = Duration::from_millis(4300).saturating_sub(locked_at.elapsed());
    std::thread::sleep(left);
    let (mut c, r) = submission_auth(&relay, "alice@contoso.example", "change-me");
    assert_eq!(r.code, 235, "{r:?}");
    assert_eq!(c.cmd("MAIL FROM:<alice@contoso.example>").code, 250);
}

/// A user signs in with its primary address or any alias: guesses through either count
/// against the one account (before, each alias had five guesses of its own).
#[test]
fn guesses_through_an_alias_count_against_the_users_account() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    // (alice@contoso.example has the alias sales@contoso.example in the fixture.)
    let (_, r) = submission_auth(&relay, "sales@contoso.example", "change-me");
    assert!(r.text().starts_with("235"), "{}", r.text());
    for (i, name) in ["alice", "sales", "alice", "sales", "sales"]
        .iter()
        .enumerate()
    {
        let (_, r) = submission_auth(
            &relay,
            &format!("{name}@contoso.example"),
            &format!("guess-{i}"),
        );
        assert_eq!(r.text(), INVALID, "attempt {}", i + 1);
    }
    for name in ["sales@contoso.example", "alice@contoso.example"] {
        let (_, r) = submission_auth(&relay, name, "change-me");
        assert_eq!(r.text(), LOCKED, "{name}");
    }
    assert_eq!(relay.metric("relayward_auth_lockouts_total"), 1);
}

#[test]
fn one_client_address_gets_a_bounded_number_of_guesses_across_accounts() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, "[smtp]\nauth_failures_per_address = 6\n"));
    let from = |ip: &str| {
        let mut c = Client::connect(relay.submission, Some(ip.parse().unwrap()));
        c.cmd("EHLO sprayer");
        let mut c = c.starttls();
        c.cmd("EHLO sprayer");
        c
    };
    // A password spray: one guess per account, from one address.
    for i in 0..6 {
        let mut c = from("127.0.0.2");
        assert_eq!(
            c.cmd(&auth_plain(
                &format!("user{i}@contoso.example"),
                "Winter2026!"
            ))
            .text(),
            INVALID
        );
    }
    let mut c = from("127.0.0.2");
    assert_eq!(
        c.cmd(&auth_plain("alice@contoso.example", "change-me"))
            .text(),
        LOCKED
    );
    // Another address is not held back by it.
    let mut c = from("127.0.0.3");
    assert_eq!(
        c.cmd(&auth_plain("alice@contoso.example", "change-me"))
            .code,
        235
    );
}

/// AUTH PLAIN carries an authorization identity besides the user's (RFC 4616): a user who
/// names another is refused, even with the right password, and before the password is looked
/// at; naming itself, in any letter case, is the same as naming no one. Before, the identity
/// was ignored: a client that asked to act for bob was let in as alice without being told.
#[test]
fn a_user_acts_only_as_itself() {
    use base64::Engine;
    let rx = Receiver::start(false);
    let relay = Relay::start(&contoso(rx.addr, ""));
    let plain = |authzid: &str, user: &str, password: &str| {
        let b = base64::engine::general_purpose::STANDARD
            .encode(format!("{authzid}\0{user}\0{password}"));
        let mut c = Client::connect(relay.submission, None);
        c.cmd("EHLO device");
        let mut c = c.starttls();
        c.cmd("EHLO device");
        let r = c.cmd(&format!("AUTH PLAIN {b}"));
        (c, r)
    };
    for password in ["change-me", "wrong"] {
        let (_, r) = plain("bob@contoso.example", "alice@contoso.example", password);
        assert_eq!(r.code, 535, "{r:?}");
        assert!(r.text().contains("authorization identity"), "{r:?}");
    }
    let (mut c, r) = plain(
        "ALICE@contoso.example",
        "alice@contoso.example",
        "change-me",
    );
    assert_eq!(r.code, 235, "{r:?}");
    let r = c.mail(
        "alice@contoso.example",
        &["someone@remote.example"],
        "From: alice@contoso.example\r\nSubject: as myself\r\n\r\nhi\r\n",
    );
    assert_eq!(r.code, 250, "{r:?}");
    assert_eq!(rx.wait(1, std::time::Duration::from_secs(20)).len(), 1);
    // The refusals were not wrong passwords: alice is not one guess nearer a lockout.
    assert_eq!(relay.metric("relayward_auth_failures_total"), 0);
}
