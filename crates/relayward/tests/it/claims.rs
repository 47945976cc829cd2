//! Tenants share one relay: what one tenant adds — connector ranges, certificate
//! names, domains, user addresses, aliases, admin addresses — may not touch another tenant's,
//! through the API, the command line or the configuration file. An operator may allow an
//! overlap or a wide range explicitly, and the audit log says who and why.

#![allow(clippy::unwrap_used)] // a test: a missing field should panic and say where

use std::time::Duration;

use crate::util::*;

const BODY: &str = "Subject: claims\r\nFrom: a@b.example\r\n\r\nhello\r\n";

/// contoso (from the file) owns 127.0.0.0/24 and contoso.example; fabrikam is managed through
/// the API and its admin holds a token.
fn setup(rx: &Receiver) -> (Relay, String, String) {
    let relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "{}"
retry_schedule = ["1s"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.0/24"] }} ]
users = [ {{ address = "director@contoso.example" }} ]
"#,
        rx.addr
    ));
    relay.tenant_by_cli("fabrikam", "fabrikam.example");
    relay.cli(&[
        "user",
        "add",
        "fabrikam",
        "bob@fabrikam.example",
        "--password",
        "a long device secret",
    ]);
    let admin = relay.token(&["--name", "f", "--role", "admin", "--tenant", "fabrikam"]);
    let ops = relay.token(&["--name", "ops", "--role", "operator"]);
    (relay, admin, ops)
}

fn refused(relay: &Relay, method: &str, path: &str, tok: &str, body: &str, why: &str) {
    let (status, json) = relay.api(method, path, Some(tok), Some(body));
    assert_eq!(status, 403, "{method} {path} {body}: {json}");
    let text = json.to_string();
    assert!(text.contains(why), "{body}: expected '{why}' in {text}");
    assert!(
        !text.contains("contoso") || body.contains("contoso"),
        "a tenant admin is not told who holds the claim: {text}"
    );
}

#[test]
fn a_tenant_admin_cannot_take_another_tenants_hosts_domains_or_addresses() {
    let rx = Receiver::start(false);
    let (relay, admin, ops) = setup(&rx);
    let conns = "/api/v1/tenants/fabrikam/connectors";
    for (ips, why) in [
        (
            r#"["127.0.0.1/32"]"#,
            "overlaps a connector of another tenant",
        ),
        (r#"["127.0.0.1"]"#, "overlaps a connector of another tenant"),
        // IPv4 written as IPv6 is the same host (a dual-stack listener sees it so).
        (
            r#"["::ffff:127.0.0.1"]"#,
            "overlaps a connector of another tenant",
        ),
        (r#"["::ffff:127.0.0.0/104"]"#, "wider than /24"),
        (r#"["127.0.0.0/8"]"#, "wider than /24"),
        (r#"["0.0.0.0/0"]"#, "wider than /24"),
        (r#"["2001:db8::/32"]"#, "wider than /48"),
    ] {
        let body = format!(r#"{{"name": "grab", "ips": {ips}}}"#);
        refused(&relay, "POST", conns, &admin, &body, why);
    }
    refused(
        &relay,
        "POST",
        conns,
        &admin,
        r#"{"name": "grab", "cert_name": "mail.contoso.example"}"#,
        "not within one of the tenant's verified accepted domains",
    );
    refused(
        &relay,
        "POST",
        conns,
        &admin,
        r#"{"name": "grab", "ips": ["127.0.0.1/32"], "allow_overlap": true, "reason": "mine"}"#,
        "only an operator",
    );
    // Its own narrow range and a certificate name in its own domain are fine.
    let (status, json) = relay.api(
        "POST",
        conns,
        Some(&admin),
        Some(r#"{"name": "office", "ips": ["192.0.2.0/24"], "cert_name": "*.fabrikam.example"}"#),
    );
    assert_eq!(status, 201, "{json}");

    // Addresses: a user, an alias, an admin address or a domain in contoso's are refused.
    refused(
        &relay,
        "PATCH",
        "/api/v1/tenants/fabrikam/users/bob@fabrikam.example",
        &admin,
        r#"{"aliases": ["director@contoso.example"]}"#,
        "not in one of the tenant's verified accepted domains",
    );
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/fabrikam/users",
        Some(&admin),
        Some(r#"{"address": "ceo@fabrikam.example", "aliases": ["ceo@contoso.example"]}"#),
    );
    assert_eq!(status, 403, "{json}");
    refused(
        &relay,
        "PATCH",
        "/api/v1/tenants/fabrikam",
        &admin,
        r#"{"admins": ["it@contoso.example"]}"#,
        "another tenant",
    );
    for d in ["sales.contoso.example", "a.b.contoso.example"] {
        refused(
            &relay,
            "POST",
            "/api/v1/tenants/fabrikam/domains",
            &admin,
            &format!(r#"{{"name": "{d}"}}"#),
            "another tenant has verified",
        );
    }
    refused(
        &relay,
        "POST",
        "/api/v1/tenants/fabrikam/domains",
        &admin,
        r#"{"name": "contoso.example"}"#,
        "another tenant has verified",
    );

    // The command line keeps the same rules for the operator (and names the other tenant).
    let (ok, out) = relay.cli_status(&[
        "connector",
        "add",
        "fabrikam",
        "grab",
        "--ip",
        "127.0.0.7/32",
    ]);
    assert!(!ok && out.contains("tenant 'contoso'"), "{out}");
    let (ok, out) = relay.cli_status(&[
        "user",
        "add",
        "fabrikam",
        "bob2@fabrikam.example",
        "--alias",
        "director@contoso.example",
    ]);
    assert!(!ok && out.contains("verified accepted domains"), "{out}");
    let (ok, out) = relay.cli_status(&["tenant", "add", "evil", "--admin", "it@contoso.example"]);
    assert!(!ok && out.contains("another tenant"), "{out}");

    // Nothing above moved a host: mail from 127.0.0.1 is still contoso's.
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    let r = c.transaction("director@contoso.example", &["x@remote.example"], BODY);
    assert_eq!(r.code, 250, "{r:?}");
    let got = rx.wait(1, Duration::from_secs(20));
    assert_eq!(got.len(), 1);

    // fabrikam's own host written as IPv6 is its connector for that IPv4 host.
    let (status, json) = relay.api(
        "POST",
        conns,
        Some(&admin),
        Some(r#"{"name": "dual", "ips": ["::ffff:127.0.1.5"]}"#),
    );
    assert_eq!(status, 201, "{json}");
    relay.wait_directory();
    let mut c = Client::connect(relay.relay, Some("127.0.1.5".parse().unwrap()));
    c.cmd("EHLO mail.fabrikam.example");
    let r = c.transaction("bob@fabrikam.example", &["y@remote.example"], BODY);
    assert_eq!(r.code, 250, "{r:?}");
    let id = r.queued_id();
    let trace = wait_for(Duration::from_secs(10), || {
        let t = relay.cli(&["trace", "--id", &id]);
        t.contains("attributed").then_some(t)
    })
    .expect("the message's trace");
    assert!(
        trace.contains("via connector:dual (ip)  [127.0.1.5]"),
        "{trace}"
    );
    assert!(trace.contains("tenant fabrikam "), "{trace}");
    assert_eq!(rx.wait(2, Duration::from_secs(20)).len(), 2);

    // A fabrikam user cannot send as contoso's director on the submission port.
    relay.wait_directory();
    let (mut c, r) = submission_auth(&relay, "bob@fabrikam.example", "a long device secret");
    assert_eq!(r.code, 235, "{r:?}");
    assert_eq!(
        c.cmd("MAIL FROM:<director@contoso.example>").text(),
        "550 5.7.60 Client does not have permissions to send as this sender"
    );

    // An operator may allow an overlap explicitly, with a reason; the audit log keeps both.
    let (status, json) = relay.api(
        "POST",
        conns,
        Some(&ops),
        Some(r#"{"name": "shared", "ips": ["127.0.0.9/32"], "allow_overlap": true}"#),
    );
    assert_eq!(status, 422, "a reason is required: {json}");
    let (status, json) = relay.api(
        "POST",
        conns,
        Some(&ops),
        Some(
            r#"{"name": "shared", "ips": ["127.0.0.9/32"], "allow_overlap": true, "reason": "ticket 4711: fabrikam bought contoso's print server"}"#,
        ),
    );
    assert_eq!(status, 201, "{json}");
    let (_, audit) = relay.api("GET", "/api/v1/tenants/fabrikam/audit", Some(&ops), None);
    let text = audit.to_string();
    assert!(
        text.contains("ticket 4711") && text.contains("overlap"),
        "{text}"
    );
}

#[test]
fn the_configuration_file_cannot_give_one_tenants_host_to_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let check = |tenants: &str| {
        let path = dir.path().join("c.toml");
        std::fs::write(&path, config_text(&dir.path().join("data"), "", tenants)).expect("write");
        check_config(&path)
    };
    let two = |a: &str, b: &str| {
        format!(
            "[[tenants]]\nname = \"contoso\"\nconnectors = [ {{ name = \"on-prem\", ips = [\"127.0.0.0/24\"]{a} }} ]\n\
             [[tenants]]\nname = \"fabrikam\"\nconnectors = [ {{ name = \"printer\", ips = [\"127.0.0.9\"]{b} }} ]\n"
        )
    };
    let (ok, err) = check(&two("", ""));
    assert!(
        !ok && err.contains("tenant 'contoso'") && err.contains("tenant 'fabrikam'"),
        "{err}"
    );
    let (ok, err) = check(&two("", ", allow_overlap = true"));
    assert!(ok, "{err}");
    // A route takes every sender's mail for its domain: only for the tenant's verified domain.
    let routed = |verified: bool| {
        format!(
            "[[tenants]]\nname = \"shadow\"\ndomains = [ {{ name = \"partner.example\", verified = {verified} }} ]\n\
             routes = [ {{ domain = \"partner.example\", host = \"127.0.0.1:2600\" }} ]\n"
        )
    };
    let (ok, err) = check(&routed(false));
    assert!(!ok && err.contains("route for partner.example"), "{err}");
    let (ok, err) = check(&routed(true));
    assert!(ok, "{err}");
    let many: Vec<String> = (0..101).map(|i| format!("\"2001:db8:{i:x}::1\"")).collect();
    let (ok, err) = check(&format!(
        "[[tenants]]\nname = \"a\"\nconnectors = [ {{ name = \"c\", ips = [{}] }} ]\n",
        many.join(",")
    ));
    assert!(!ok && err.contains("at most 100"), "{err}");
    let (ok, err) = check(
        "[[tenants]]\nname = \"a\"\nconnectors = [ { name = \"c\", ips = [\"10.0.0.0/16\"] } ]\n",
    );
    assert!(!ok && err.contains("wider than /24"), "{err}");
    let (ok, err) = check(
        "[[tenants]]\nname = \"a\"\nconnectors = [ { name = \"c\", ips = [\"10.0.0.0/16\"], allow_wide = true } ]\n",
    );
    assert!(ok, "{err}");
    let (ok, err) = check(
        "[[tenants]]\nname = \"contoso\"\ndomains = [ { name = \"contoso.example\", verified = true } ]\n\
         [[tenants]]\nname = \"fabrikam\"\nusers = [ { address = \"bob@fabrikam.example\", aliases = [\"director@contoso.example\"] } ]\n",
    );
    assert!(
        !ok && err.contains("tenant 'fabrikam'") && err.contains("tenant 'contoso'"),
        "{err}"
    );

    // A tenant made on the command line holds 127.0.0.5; a file that gives it to another
    // tenant stops the relay at start, naming both.
    let mut relay = Relay::start("");
    relay.cli(&["tenant", "add", "litware"]);
    relay.cli(&["connector", "add", "litware", "hq", "--ip", "127.0.0.5/32"]);
    relay.kill9();
    let mut text = std::fs::read_to_string(&relay.config).expect("config");
    text.push_str(
        "[[tenants]]\nname = \"northwind\"\nconnectors = [ { name = \"office\", ips = [\"127.0.0.0/24\"] } ]\n",
    );
    std::fs::write(&relay.config, text).expect("write");
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&relay.config)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("tenant 'northwind'")
            && err.contains("tenant 'litware'"),
        "{err}"
    );
}

/// A domain is a claim whoever makes it: a tenant in the configuration file may not take a
/// domain under (or over) one that a tenant made on the command line or through the API has
/// verified. The relay does not start, and says which tenants and domains clash.
#[test]
fn a_file_tenant_cannot_take_a_domain_within_a_stored_tenants_verified_domain() {
    let mut relay = Relay::start("");
    relay.cli(&["tenant", "add", "litware"]);
    relay.cli(&[
        "domain",
        "add",
        "litware",
        "corp.litware.example",
        "--verified",
    ]);
    relay.cli(&["tenant", "add", "adatum"]);
    relay.cli(&["domain", "add", "adatum", "adatum.example"]);
    relay.kill9();
    let original = std::fs::read_to_string(&relay.config).expect("config");
    let serve = |tenant: &str| {
        std::fs::write(&relay.config, format!("{original}{tenant}")).expect("write");
        let mut child = std::process::Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&relay.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run");
        // Started (its ready line) or stopped: either way within the minute.
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a ready line or an exit");
        let _ = child.kill();
        let out = child.wait_with_output().expect("wait");
        (line, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for name in ["hq.corp.litware.example", "litware.example"] {
        let (ready, err) = serve(&format!(
            "[[tenants]]\nname = \"northwind\"\ndomains = [ {{ name = \"{name}\", verified = true }} ]\n"
        ));
        assert!(
            ready.is_empty()
                && err.contains("tenant 'northwind': domain")
                && err.contains("corp.litware.example of tenant 'litware'"),
            "{name}: {ready} {err}"
        );
    }
    // A domain nobody verified is no claim on the names under it.
    let northwind = "[[tenants]]\nname = \"northwind\"\ndomains = [ { name = \"mail.adatum.example\", verified = true }, { name = \"branch.fabrikam.example\" } ]\n";
    let (ready, err) = serve(northwind);
    assert!(ready.contains("relay="), "{ready} {err}");
    // A domain the file's tenant held at the last start stays its own at the next, even when
    // an operator has since vouched for a domain above it (allowed: it was not verified).
    relay.cli(&["domain", "add", "litware", "fabrikam.example", "--verified"]);
    let (ready, err) = serve(northwind);
    assert!(ready.contains("relay="), "{ready} {err}");
}

/// Proving a name by DNS does not settle a clash: a domain a tenant added before another tenant's
/// domain under it was vouched for by an operator stays unverified, whatever TXT record it shows,
/// until an operator decides which tenant keeps the names.
#[test]
fn a_domain_is_not_verified_over_another_tenants_verified_domain() {
    let dns = Dns::start(vec![]);
    let relay = Relay::start(&format!("[delivery]\ndns_resolver = \"{}\"\n", dns.addr));
    relay.cli(&["tenant", "add", "adatum"]);
    relay.cli(&["tenant", "add", "northwind"]);
    let added = relay.cli(&["domain", "add", "adatum", "adatum.example"]);
    let proof = added
        .split('"')
        .find(|s| s.starts_with("relayward-verification="))
        .unwrap_or_else(|| panic!("no TXT record to publish in: {added}"))
        .to_string();
    relay.cli(&[
        "domain",
        "add",
        "northwind",
        "mail.adatum.example",
        "--verified",
    ]);
    dns.set("adatum.example", "TXT", Answer::Txt(vec![proof]));
    let admin = relay.token(&["--name", "a", "--role", "admin", "--tenant", "adatum"]);
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/adatum/domains/adatum.example/verify",
        Some(&admin),
        None,
    );
    assert_eq!(status, 403, "{json}");
    let why = json.to_string();
    assert!(
        why.contains("another tenant has verified") && !why.contains("northwind"),
        "a tenant admin is not told whose: {why}"
    );
    let (ok, out) = relay.cli_status(&["domain", "verify", "adatum", "adatum.example"]);
    assert!(
        !ok && out.contains("mail.adatum.example of tenant 'northwind'"),
        "an operator is told whose: {out}"
    );
    let (_, tenant) = relay.api("GET", "/api/v1/tenants/adatum", Some(&admin), None);
    assert_eq!(tenant["domains"][0]["name"], "adatum.example", "{tenant}");
    assert_eq!(tenant["domains"][0]["verified"], false, "{tenant}");
}

/// An account's e-mail address is a claim too: fabrikam's admin may not make fabrikam an
/// account at contoso's verified domain (or below it), which would hold that sign-in and keep
/// contoso from having it. Its own domain and a domain nobody verified are fine; an operator
/// may.
#[test]
fn a_tenant_admin_cannot_make_accounts_at_another_tenants_domain() {
    let rx = Receiver::start(false);
    let (relay, admin, ops) = setup(&rx);
    let accounts = "/api/v1/tenants/fabrikam/accounts";
    for email in ["director@contoso.example", "it@mail.contoso.example"] {
        refused(
            &relay,
            "POST",
            accounts,
            &admin,
            &format!(r#"{{"email": "{email}", "role": "admin"}}"#),
            "another tenant has verified",
        );
    }
    for email in ["it@fabrikam.example", "helpdesk@msp.example"] {
        let (status, json) = relay.api(
            "POST",
            accounts,
            Some(&admin),
            Some(&format!(r#"{{"email": "{email}", "role": "reader"}}"#)),
        );
        assert_eq!(status, 201, "{email}: {json}");
    }
    let (_, list) = relay.api("GET", accounts, Some(&admin), None);
    assert!(!list.to_string().contains("contoso"), "{list}");
    let (status, json) = relay.api(
        "POST",
        accounts,
        Some(&ops),
        Some(r#"{"email": "director@contoso.example", "role": "reader"}"#),
    );
    assert_eq!(status, 201, "an operator may: {json}");
}

/// An internationalised domain is one claim whichever form it is written in: it is stored as
/// its A-labels, and the Unicode form of another tenant's domain, or of a name under it, is
/// that tenant's. Before, `bücher.example` and `xn--bcher-kva.example` were two names, so two
/// tenants could hold one domain.
#[test]
fn an_internationalised_domain_is_one_claim_in_either_form() {
    let rx = Receiver::start(false);
    let (relay, admin, ops) = setup(&rx);
    relay.cli(&["domain", "add", "fabrikam", "Bücher.example", "--verified"]);
    let (_, list) = relay.api("GET", "/api/v1/tenants/fabrikam/domains", Some(&ops), None);
    let list = list.to_string();
    assert!(
        list.contains(r#""name":"xn--bcher-kva.example""#) && !list.contains("cher.example\""),
        "kept in its ASCII form: {list}"
    );
    relay.cli(&["tenant", "add", "northwind"]);
    let other = relay.token(&["--name", "n", "--role", "admin", "--tenant", "northwind"]);
    for name in [
        "xn--bcher-kva.example",
        "bücher.example",
        "mail.BÜCHER.example",
    ] {
        let (status, json) = relay.api(
            "POST",
            "/api/v1/tenants/northwind/domains",
            Some(&other),
            Some(&format!(r#"{{"name": "{name}"}}"#)),
        );
        assert!(status == 403 || status == 409, "{name}: {status} {json}");
    }
    // A domain named in a path in Unicode is the one kept in ASCII.
    for name in ["b%C3%BCcher.example", "xn--bcher-kva.example"] {
        let (status, json) = relay.api(
            "GET",
            &format!("/api/v1/tenants/fabrikam/domains/{name}/dkim"),
            Some(&admin),
            None,
        );
        assert_eq!(status, 200, "{name}: {json}");
        assert!(json.to_string().contains("xn--bcher-kva.example"), "{json}");
    }
    // Its own users are named in either form, and kept in one.
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/fabrikam/users",
        Some(&admin),
        Some(
            r#"{"address": "anna@bücher.example", "password": "a long device secret", "forward_to": "anna@Straße.example"}"#,
        ),
    );
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["address"], "anna@xn--bcher-kva.example", "{json}");
    // A forwarded copy to her other mailbox needs no SMTPUTF8 for its domain.
    assert_eq!(json["forward_to"], "anna@xn--strae-oqa.example", "{json}");
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/fabrikam/accounts",
        Some(&admin),
        Some(r#"{"email": "it@Bücher.example", "role": "reader"}"#),
    );
    assert_eq!(status, 201, "{json}");
    assert!(
        json.to_string().contains("it@xn--bcher-kva.example"),
        "{json}"
    );
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/fabrikam/domains",
        Some(&admin),
        Some(r#"{"name": "b ü.example"}"#),
    );
    assert_eq!(status, 422, "{json}");
    assert!(
        json.to_string()
            .contains("'b ü.example' is not a domain name"),
        "{json}"
    );
}

/// A route takes every tenant's mail for its domain, so even the operator's command line sets
/// one only for a domain its tenant has verified.
#[test]
fn a_route_needs_its_domain_verified() {
    let rx = Receiver::start(false);
    let (relay, _, _) = setup(&rx);
    relay.cli(&["domain", "add", "fabrikam", "partner.example"]);
    let (ok, out) = relay.cli_status(&[
        "route",
        "add",
        "fabrikam",
        "partner.example",
        "127.0.0.1:2600",
    ]);
    assert!(!ok && out.contains("not verified"), "{out}");
    let (ok, out) = relay.cli_status(&[
        "route",
        "add",
        "fabrikam",
        "fabrikam.example",
        "127.0.0.1:2600",
    ]);
    assert!(ok, "{out}");
}

/// Each address of a connector is checked against every other tenant's claims, so one
/// request lists at most 100 of them.
#[test]
fn a_connector_lists_at_most_a_hundred_addresses() {
    let rx = Receiver::start(false);
    let (relay, admin, _) = setup(&rx);
    let body = |name: &str, n: u32| {
        let ips: Vec<String> = (0..n).map(|i| format!("\"2001:db8:{i:x}::1\"")).collect();
        format!(r#"{{"name": "{name}", "ips": [{}]}}"#, ips.join(","))
    };
    let conns = "/api/v1/tenants/fabrikam/connectors";
    let (status, json) = relay.api("POST", conns, Some(&admin), Some(&body("many", 101)));
    assert_eq!(status, 422, "{json}");
    assert!(json.to_string().contains("at most 100"), "{json}");
    let (status, json) = relay.api("POST", conns, Some(&admin), Some(&body("hundred", 100)));
    assert_eq!(status, 201, "{json}");
}

/// "Relay unregistered" lets a connector send from domains nobody here holds, not from another
/// tenant's: the relay's addresses are in that tenant's SPF record, so a receiver would take
/// such mail as the other tenant's own. Its verified domain and every name under it are
/// refused (`5.7.64`); mail to that tenant's own recipients is inbound mail and still taken.
#[test]
fn relay_unregistered_does_not_reach_another_tenants_domains() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!(
        r#"
[delivery]
smart_host = "{}"
retry_schedule = ["1s"]
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"], relay_unregistered = true }} ]
[[tenants]]
name = "fabrikam"
domains = [ {{ name = "fabrikam.example", kind = "internal_relay", verified = true }}, {{ name = "pending.example" }} ]
"#,
        rx.addr
    ));
    let mut c = relay.client();
    c.cmd("EHLO onprem.contoso.example");
    let mut rcpt = |from: &str, to: &str| {
        assert_eq!(c.cmd(&format!("MAIL FROM:<{from}>")).code, 250, "{from}");
        let r = c.cmd(&format!("RCPT TO:<{to}>"));
        c.cmd("RSET");
        r
    };
    for from in [
        "ceo@fabrikam.example",
        "ceo@FABRIKAM.example",
        "billing@mail.fabrikam.example",
    ] {
        let r = rcpt(from, "victim@remote.example");
        assert_eq!(
            r.text(),
            "550 5.7.64 TenantAttribution; Relay Access Denied",
            "{from}"
        );
    }
    // Domains nobody holds (an unverified claim holds nothing), and names under its own.
    for from in [
        "news@unrelated.example",
        "a@pending.example",
        "a@eu.contoso.example",
        "a@contoso.example",
    ] {
        assert_eq!(rcpt(from, "someone@remote.example").code, 250, "{from}");
    }
    // Inbound for fabrikam: any sender, as from any client.
    assert_eq!(
        rcpt("ceo@fabrikam.example", "staff@fabrikam.example").code,
        250
    );
}
