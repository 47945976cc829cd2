//! Accounts over real HTTP: an operator made with a one-time setup link enrols TOTP,
//! signs in, works with a session cookie that needs its CSRF token for changes, lifts a
//! restriction (which an API token may not), and signs out; recovery codes work once; wrong
//! passwords lock the account; one address gets 20 attempts per ten minutes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::util::*;

struct Answer {
    status: u16,
    head: String,
    json: serde_json::Value,
}

fn http(
    relay: &Relay,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Answer {
    let mut s = TcpStream::connect(relay.http).expect("http");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let (head, rest) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Answer {
        status: head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0),
        head: head.to_string(),
        json: serde_json::from_str(rest).unwrap_or(serde_json::Value::Null),
    }
}

const PASSWORD: &str = "correct horse battery staple";

/// Makes an operator through the CLI and finishes its setup; returns the TOTP key and the
/// recovery codes.
fn operator(relay: &Relay, email: &str) -> (String, Vec<String>) {
    let out = relay.cli(&["operator", "create", email]);
    let path = out
        .split_whitespace()
        .find_map(|w| w.find("/api/v1/setup/").map(|i| w[i..].to_string()))
        .unwrap_or_else(|| panic!("a setup link in {out}"));
    let begin = http(relay, "GET", &path, &[], None);
    assert_eq!(begin.status, 200, "{}", begin.json);
    assert_eq!(begin.json["email"], email);
    let secret = begin.json["totp_secret"].as_str().expect("key").to_string();
    assert!(
        begin.json["otpauth_uri"]
            .as_str()
            .unwrap_or("")
            .starts_with("otpauth://totp/")
    );

    let short = format!(
        r#"{{"password": "short", "totp": "{}"}}"#,
        totp_now(&secret)
    );
    assert_eq!(http(relay, "POST", &path, &[], Some(&short)).status, 422);
    let wrong_code = format!(r#"{{"password": "{PASSWORD}", "totp": "000000"}}"#);
    let a = http(relay, "POST", &path, &[], Some(&wrong_code));
    assert_eq!(a.status, 403, "{}", a.json);
    let good = format!(
        r#"{{"password": "{PASSWORD}", "totp": "{}"}}"#,
        totp_now(&secret)
    );
    let done = http(relay, "POST", &path, &[], Some(&good));
    assert_eq!(done.status, 200, "{}", done.json);
    let codes: Vec<String> = done.json["recovery_codes"]
        .as_array()
        .expect("codes")
        .iter()
        .filter_map(|c| c.as_str().map(str::to_string))
        .collect();
    assert_eq!(codes.len(), 10);
    // The link was for one use.
    assert_eq!(http(relay, "GET", &path, &[], None).status, 404);
    (secret, codes)
}

fn login(relay: &Relay, email: &str, password: &str, factor: (&str, &str)) -> Answer {
    let body = format!(
        r#"{{"email": "{email}", "password": "{password}", "{}": "{}"}}"#,
        factor.0, factor.1
    );
    http(relay, "POST", "/api/v1/login", &[], Some(&body))
}

fn cookie_of(a: &Answer) -> String {
    a.head
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_string()
}

#[test]
fn an_operator_signs_in_with_totp_and_the_session_needs_its_csrf_token() {
    let relay = Relay::start("");
    relay.cli(&["tenant", "add", "contoso"]);
    let (secret, codes) = operator(&relay, "ops@provider.example");

    assert_eq!(
        login(
            &relay,
            "ops@provider.example",
            "wrong password!",
            ("totp", &totp_now(&secret))
        )
        .status,
        401
    );
    assert_eq!(
        login(&relay, "ops@provider.example", PASSWORD, ("totp", "123456")).status,
        401
    );
    let signed = login(
        &relay,
        "ops@provider.example",
        PASSWORD,
        ("totp", &totp_now(&secret)),
    );
    assert_eq!(signed.status, 200, "{}", signed.json);
    let set_cookie = signed
        .head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("set-cookie")
        .to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }
    let cookie = cookie_of(&signed);
    let csrf = signed.json["csrf_token"]
        .as_str()
        .expect("csrf")
        .to_string();

    let who = http(
        &relay,
        "GET",
        "/api/v1/whoami",
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(who.status, 200, "{}", who.json);
    assert_eq!(who.json["role"], "operator");
    assert_eq!(who.json["mfa"], true);

    // A change with the cookie alone is refused (CSRF); with the token it goes through.
    let new_admin = r#"{"email": "it@contoso.example", "role": "admin"}"#;
    let path = "/api/v1/tenants/contoso/accounts";
    let refused = http(
        &relay,
        "POST",
        path,
        &[("Cookie", &cookie)],
        Some(new_admin),
    );
    assert_eq!(refused.status, 403, "{}", refused.json);
    assert!(
        refused.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("CSRF")
    );
    let wrong = http(
        &relay,
        "POST",
        path,
        &[("Cookie", &cookie), ("X-CSRF-Token", "guess")],
        Some(new_admin),
    );
    assert_eq!(wrong.status, 403);
    let made = http(
        &relay,
        "POST",
        path,
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(new_admin),
    );
    assert_eq!(made.status, 201, "{}", made.json);
    assert!(
        made.json["setup_link"]
            .as_str()
            .unwrap_or("")
            .contains("/api/v1/setup/")
    );

    // Lifting a restriction needs the second factor: an operator token may not, the session may.
    relay.cli(&["tenant", "subscription", "contoso", "--ends", "2020-01-31"]);
    let token = relay
        .cli(&["token", "create", "--name", "ops", "--role", "operator"])
        .trim()
        .to_string();
    let id = wait_for(Duration::from_secs(10), || {
        let (_, list) = relay.api(
            "GET",
            "/api/v1/tenants/contoso/restrictions",
            Some(&token),
            None,
        );
        list["restrictions"].as_array()?.first()?["id"]
            .as_str()
            .map(str::to_string)
    })
    .expect("the lapsed tenant's restriction");
    let release = format!("/api/v1/tenants/contoso/restrictions/{id}/release");
    let (status, json) = relay.api(
        "POST",
        &release,
        Some(&token),
        Some(r#"{"note": "renewed by phone"}"#),
    );
    assert_eq!(status, 403, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("second factor"),
        "{json}"
    );
    let lifted = http(
        &relay,
        "POST",
        &release,
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        Some(r#"{"note": "renewed by phone"}"#),
    );
    assert_eq!(lifted.status, 200, "{}", lifted.json);
    assert_eq!(
        lifted.json["restriction"]["state"], "probation",
        "{}",
        lifted.json
    );
    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    let line = audit
        .lines()
        .find(|l| l.contains("restriction.release"))
        .expect("audited");
    assert!(
        line.contains("account:ops@provider.example") && line.contains("\"mfa\":true"),
        "{line}"
    );

    // A recovery code signs in once.
    let by_code = login(
        &relay,
        "ops@provider.example",
        PASSWORD,
        ("recovery_code", &codes[0]),
    );
    assert_eq!(by_code.status, 200, "{}", by_code.json);
    assert_eq!(by_code.json["recovery_codes_left"], 9);
    assert_eq!(
        login(
            &relay,
            "ops@provider.example",
            PASSWORD,
            ("recovery_code", &codes[0])
        )
        .status,
        401
    );

    // Signing out ends the session.
    let out = http(
        &relay,
        "POST",
        "/api/v1/logout",
        &[("Cookie", &cookie), ("X-CSRF-Token", &csrf)],
        None,
    );
    assert_eq!(out.status, 204);
    assert_eq!(
        http(
            &relay,
            "GET",
            "/api/v1/whoami",
            &[("Cookie", &cookie)],
            None
        )
        .status,
        401
    );
}

/// A sign-in for an address that has no account fails and locks as an operator's does: the
/// same answers, the same lock after five, so six tries do not tell who has an account.
#[test]
fn an_address_without_an_account_locks_as_an_account_does() {
    let relay = Relay::start("");
    operator(&relay, "ops@provider.example");
    let mut said = Vec::new();
    for email in ["ops@provider.example", "nobody@provider.example"] {
        for i in 0..5 {
            let a = login(&relay, email, "not the password", ("totp", "000000"));
            assert_eq!(a.status, 401, "{email}, attempt {}: {}", i + 1, a.json);
        }
        let locked = login(&relay, email, "not the password", ("totp", "000000"));
        assert_eq!(locked.status, 429, "{email}: {}", locked.json);
        assert!(locked.head.to_ascii_lowercase().contains("retry-after:"));
        let error = locked.json["error"].as_str().unwrap_or("").to_string();
        said.push(error.replace(|c: char| c.is_ascii_digit(), "N"));
    }
    assert_eq!(
        said[0], said[1],
        "the lock of an address without an account reads as an account's"
    );
    assert!(said[0].contains("the account is locked for N"), "{said:?}");
}

#[test]
fn wrong_passwords_lock_the_account_and_one_address_is_rate_limited() {
    let relay = Relay::start("");
    let (secret, _) = operator(&relay, "ops@provider.example");
    for _ in 0..5 {
        assert_eq!(
            login(
                &relay,
                "ops@provider.example",
                "not the password",
                ("totp", "000000")
            )
            .status,
            401
        );
    }
    // Locked: even the right password and code are refused for now.
    let locked = login(
        &relay,
        "ops@provider.example",
        PASSWORD,
        ("totp", &totp_now(&secret)),
    );
    assert_eq!(locked.status, 429, "{}", locked.json);
    assert!(
        locked.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("locked"),
        "{}",
        locked.json
    );
    assert!(locked.head.to_ascii_lowercase().contains("retry-after:"));
    let list = relay.cli(&["account", "list"]);
    assert!(list.contains("locked"), "{list}");

    // Unknown addresses answer like wrong passwords; past 20 attempts from one address in ten
    // minutes, everything from it waits.
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(
            login(
                &relay,
                &format!("nobody{i}@example.com"),
                "whatever password",
                ("totp", "000000"),
            )
            .status,
        );
    }
    assert!(statuses.iter().take(14).all(|s| *s == 401), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let limited = login(&relay, "nobody@example.com", "x", ("totp", "0"));
    assert!(
        limited.json["error"]
            .as_str()
            .unwrap_or("")
            .contains("too many sign-in attempts"),
        "{}",
        limited.json
    );
}
