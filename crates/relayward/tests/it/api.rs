//! The management API over HTTP: each role against each operation
//! (table-driven), cross-tenant access answering 404, revoked, expired and malformed tokens,
//! bad input, the audit entries API changes leave, and the OpenAPI document listing what is
//! served.

#![allow(clippy::unwrap_used)] // a test: a missing field should panic and say where

use crate::util::*;

struct Tokens {
    operator: String,
    admin: String,
    reader: String,
    other_admin: String,
}

fn token(relay: &Relay, args: &[&str]) -> String {
    let mut a = vec!["token", "create"];
    a.extend_from_slice(args);
    relay.cli(&a).trim().to_string()
}

/// Tenants contoso and fabrikam: an admin token of each, and an operator's.
fn two_tenants(relay: &Relay) -> (String, String, String) {
    relay.cli(&["tenant", "add", "contoso"]);
    relay.cli(&["tenant", "add", "fabrikam"]);
    (
        token(
            relay,
            &["--name", "a", "--role", "admin", "--tenant", "contoso"],
        ),
        token(
            relay,
            &["--name", "f", "--role", "admin", "--tenant", "fabrikam"],
        ),
        token(relay, &["--name", "o", "--role", "operator"]),
    )
}

fn setup() -> (Relay, Tokens) {
    // A DNS of the test's own, empty: the domain check asks it (and nothing else).
    let dns = Dns::start(vec![]);
    let relay = Relay::start(&format!("[delivery]\ndns_resolver = \"{}\"\n", dns.addr));
    relay.cli(&["tenant", "add", "contoso", "--admin", "it@contoso.example"]);
    relay.cli(&["tenant", "add", "fabrikam"]);
    relay.cli(&["domain", "add", "contoso", "contoso.example", "--verified"]);
    let t = Tokens {
        operator: token(&relay, &["--name", "ops", "--role", "operator"]),
        admin: token(
            &relay,
            &["--name", "ci", "--role", "admin", "--tenant", "contoso"],
        ),
        reader: token(
            &relay,
            &["--name", "dash", "--role", "reader", "--tenant", "contoso"],
        ),
        other_admin: token(
            &relay,
            &["--name", "f", "--role", "admin", "--tenant", "fabrikam"],
        ),
    };
    assert!(t.operator.starts_with("rw_"), "{}", t.operator);
    (relay, t)
}

#[test]
fn every_role_against_every_operation() {
    let (relay, t) = setup();
    let who: [(&str, Option<&str>); 5] = [
        ("operator", Some(&t.operator)),
        ("admin", Some(&t.admin)),
        ("reader", Some(&t.reader)),
        ("other tenant's admin", Some(&t.other_admin)),
        ("no token", None),
    ];
    // (method, path template, body, expected status for each of `who`, in order). Every
    // operation of the OpenAPI document has a row (checked below). Path parameters stand for:
    // {tenant} contoso, {domain} contoso.example, {webhook}/{restriction}/{token} ones that do
    // not exist. A write that the operator's row makes first may meet a conflict (409, 422) in
    // the admin's row: it got past authorisation, which is what is checked here.
    let m401 = 401;
    let table: &[(&str, &str, Option<&str>, [u16; 5])] = &[
        ("GET", "/openapi.json", None, [200, 200, 200, 200, 200]),
        ("GET", "/setup/{token}", None, [404, 404, 404, 404, 404]),
        (
            "POST",
            "/setup/{token}",
            Some(r#"{"password": "long enough pass", "totp": "123456"}"#),
            [404, 404, 404, 404, 404],
        ),
        (
            "POST",
            "/login",
            Some(r#"{"email": "x@y.example", "password": "p", "totp": "123456"}"#),
            [401, 401, 401, 401, 401],
        ),
        ("POST", "/logout", None, [204, 204, 204, 204, m401]),
        ("GET", "/accounts", None, [200, 403, 403, 403, m401]),
        (
            "POST",
            "/accounts",
            Some(r#"{"email": "op2@provider.example", "role": "operator"}"#),
            [201, 403, 403, 403, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/accounts",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/accounts",
            Some(r#"{"email": "r@contoso.example", "role": "reader"}"#),
            [201, 409, 403, 404, m401],
        ),
        ("GET", "/whoami", None, [200, 200, 200, 200, m401]),
        ("GET", "/tenants", None, [200, 200, 200, 200, m401]),
        ("GET", "/tenants/{tenant}", None, [200, 200, 200, 404, m401]),
        (
            "PUT",
            "/tenants/{tenant}/forwarding",
            Some(r#"{"mode": "on"}"#),
            [200, 200, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/domains",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/domains",
            Some(r#"{"name": "table.contoso.example"}"#),
            [201, 409, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/domains/{domain}/verify",
            None,
            [200, 200, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/domains/{domain}/checks",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/domains/{domain}/dkim",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/domains/{domain}/dkim/rotate",
            None,
            [200, 422, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/domains/{domain}/dkim/activate",
            None,
            [422, 422, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/domains/{domain}/dkim/retire",
            None,
            [422, 422, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/webhooks",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/webhooks",
            Some(r#"{"url": "http://hooks.contoso.example/relayward"}"#),
            [201, 201, 403, 404, m401],
        ),
        (
            "DELETE",
            "/tenants/{tenant}/webhooks/{webhook}",
            None,
            [404, 404, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/webhooks/{webhook}/deliveries",
            None,
            [404, 404, 404, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/webhooks/{webhook}/ping",
            None,
            [404, 404, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/restrictions",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/restrictions/{restriction}",
            None,
            [404, 404, 404, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/restrictions/{restriction}/release",
            None,
            [404, 404, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/restrictions/{restriction}/request-release",
            None,
            [404, 404, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/restrictions/{restriction}/approve",
            None,
            [404, 403, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/restrictions/{restriction}/refuse",
            Some(r#"{"note": "no"}"#),
            [404, 403, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/trace",
            None,
            [200, 200, 200, 404, m401],
        ),
        ("GET", "/trace", None, [200, 403, 403, 403, m401]),
        (
            "GET",
            "/tenants/{tenant}/alerts",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/counters",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/audit",
            None,
            [200, 200, 403, 404, m401],
        ),
        ("GET", "/queue", None, [200, 403, 403, 403, m401]),
        ("GET", "/queue/shape", None, [200, 403, 403, 403, m401]),
        ("POST", "/queue/flush", None, [200, 403, 403, 403, m401]),
        // Nothing selected: the operator is told to name something.
        ("POST", "/queue/hold", None, [422, 403, 403, 403, m401]),
        ("POST", "/queue/release", None, [422, 403, 403, 403, m401]),
        ("POST", "/queue/bounce", None, [422, 403, 403, 403, m401]),
        ("POST", "/queue/purge", None, [422, 403, 403, 403, m401]),
        (
            "POST",
            "/queue/{message}/retry",
            None,
            [404, 403, 403, 403, m401],
        ),
        (
            "POST",
            "/queue/{message}/hold",
            None,
            [404, 403, 403, 403, m401],
        ),
        (
            "POST",
            "/queue/{message}/release",
            None,
            [404, 403, 403, 403, m401],
        ),
        (
            "POST",
            "/queue/{message}/bounce",
            None,
            [404, 403, 403, 403, m401],
        ),
        (
            "POST",
            "/queue/{message}/purge",
            None,
            [404, 403, 403, 403, m401],
        ),
        (
            "POST",
            "/tenants",
            Some(r#"{"name": "tbl-tenant"}"#),
            [201, 403, 403, 403, m401],
        ),
        (
            "PATCH",
            "/tenants/{tenant}",
            Some(r#"{"language": "en"}"#),
            [200, 200, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/connectors",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/connectors",
            Some(r#"{"name": "tbl", "ips": ["192.0.2.1"]}"#),
            [201, 409, 403, 404, m401],
        ),
        (
            "DELETE",
            "/tenants/{tenant}/connectors/{connector}",
            None,
            [404, 404, 403, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/connectors/{connector}/review",
            None,
            [404, 404, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/users",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "POST",
            "/tenants/{tenant}/users",
            Some(r#"{"address": "tbl@contoso.example"}"#),
            [201, 409, 403, 404, m401],
        ),
        (
            "PATCH",
            "/tenants/{tenant}/users/{user}",
            Some(r#"{"forward_only": false}"#),
            [404, 404, 403, 404, m401],
        ),
        (
            "DELETE",
            "/tenants/{tenant}/users/{user}",
            None,
            [404, 404, 403, 404, m401],
        ),
        ("GET", "/audit/export", None, [200, 403, 403, 403, m401]),
        (
            "GET",
            "/tenants/{tenant}/audit/export",
            None,
            [200, 200, 403, 404, m401],
        ),
        (
            "GET",
            "/tenants/{tenant}/limits",
            None,
            [200, 200, 200, 404, m401],
        ),
        (
            "PUT",
            "/tenants/{tenant}/limits",
            Some(r#"{"user_messages_per_minute": 40}"#),
            [200, 403, 403, 404, m401],
        ),
        ("GET", "/tokens", None, [200, 403, 403, 403, m401]),
        ("GET", "/audit", None, [200, 403, 403, 403, m401]),
    ];
    let concrete = |template: &str| {
        format!(
            "/api/v1{}",
            template
                .replace("{tenant}", "contoso")
                .replace("{domain}", "contoso.example")
                .replace("{webhook}", "wh_nosuch")
                .replace("{restriction}", "R_nosuch")
                .replace("{token}", "nosuch")
                .replace("{message}", "nosuch")
                .replace("{connector}", "nosuch")
                .replace("{user}", "nosuch@contoso.example")
        )
    };
    for (method, template, body, expected) in table {
        let path = concrete(template);
        for ((name, tok), want) in who.iter().zip(expected) {
            let (status, json) = relay.api(method, &path, *tok, *body);
            assert_eq!(status, *want, "{name}: {method} {path} → {json}");
            if status >= 400 {
                assert!(json["error"].is_string(), "{name}: {method} {path}: {json}");
            }
        }
    }
    // The table covers every operation the API documents, and nothing it does not.
    let (_, doc) = relay.api("GET", "/api/v1/openapi.json", None, None);
    let mut documented: Vec<String> = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, ops)| {
            ops.as_object()
                .into_iter()
                .flat_map(|o| o.keys())
                .map(move |m| format!("{} {}", m.to_uppercase(), p.trim_start_matches("/api/v1")))
        })
        .collect();
    let mut tested: Vec<String> = table
        .iter()
        .map(|(m, t, _, _)| format!("{m} {t}"))
        .collect();
    documented.sort();
    tested.sort();
    assert_eq!(tested, documented);
    for (method, path, expected) in [
        ("GET", "/api/v1/tenants/nobody", [404, 404, 404, 404, 401]),
        ("GET", "/api/v1/no/such/path", [404, 404, 404, 404, 404]),
    ] {
        for ((name, tok), want) in who.iter().zip(expected) {
            let (status, json) = relay.api(method, path, *tok, None);
            assert_eq!(status, want, "{name}: {method} {path} → {json}");
        }
    }
    // The forwarding control: admins and operators set it, readers may not.
    let off = r#"{"mode": "listed", "domains": ["partner.example"]}"#;
    for ((name, tok), want) in who.iter().zip([200, 200, 403, 404, 401]) {
        let (status, json) =
            relay.api("PUT", "/api/v1/tenants/contoso/forwarding", *tok, Some(off));
        assert_eq!(status, want, "{name}: PUT forwarding → {json}");
    }
    let (status, json) = relay.api(
        "PUT",
        "/api/v1/tenants/contoso/forwarding",
        Some(&t.admin),
        Some(r#"{"mode": "listed"}"#),
    );
    assert_eq!(status, 422, "listed needs domains: {json}");
    let many: Vec<String> = (0..1001).map(|i| format!("d{i}.example")).collect();
    let (status, json) = relay.api(
        "PUT",
        "/api/v1/tenants/contoso/forwarding",
        Some(&t.admin),
        Some(&serde_json::json!({ "mode": "listed", "domains": many }).to_string()),
    );
    assert_eq!(status, 422, "at most 1,000 domains: {}", json["error"]);
    let (_, tenant) = relay.api("GET", "/api/v1/tenants/contoso", Some(&t.admin), None);
    assert_eq!(tenant["tenant"]["forwarding"], "listed", "{tenant}");
    assert_eq!(
        tenant["tenant"]["forwarding_domains"][0], "partner.example",
        "{tenant}"
    );

    // Writes: each role adds its own domain name so successes do not collide.
    let writes = [
        (Some(t.operator.as_str()), "ops.contoso.example", 201),
        (Some(t.admin.as_str()), "admin.contoso.example", 201),
        (Some(t.reader.as_str()), "reader.contoso.example", 403),
        (Some(t.other_admin.as_str()), "other.contoso.example", 404),
        (None, "anon.contoso.example", 401),
    ];
    for (tok, name, want) in writes {
        let body = format!("{{\"name\": \"{name}\"}}");
        let (status, json) = relay.api("POST", "/api/v1/tenants/contoso/domains", tok, Some(&body));
        assert_eq!(status, want, "POST domain {name}: {json}");
        let (status, _) = relay.api(
            "POST",
            &format!("/api/v1/tenants/contoso/domains/{name}/verify"),
            tok,
            None,
        );
        let want_verify = match want {
            201 => 200,
            w => w,
        };
        assert_eq!(status, want_verify, "verify {name}");
    }
}

#[test]
fn dkim_keys_rotate_through_the_api_with_overlap() {
    let dns = Dns::start(vec![]);
    let relay = Relay::start(&format!("[delivery]\ndns_resolver = \"{}\"\n", dns.addr));
    relay.cli(&["tenant", "add", "contoso"]);
    relay.cli(&["tenant", "add", "fabrikam"]);
    relay.cli(&["domain", "add", "contoso", "contoso.example"]);
    let admin = token(
        &relay,
        &["--name", "ci", "--role", "admin", "--tenant", "contoso"],
    );
    let reader = token(
        &relay,
        &["--name", "r", "--role", "reader", "--tenant", "contoso"],
    );
    let other = token(
        &relay,
        &["--name", "f", "--role", "admin", "--tenant", "fabrikam"],
    );
    let path = "/api/v1/tenants/contoso/domains/contoso.example/dkim";
    let states = |json: &serde_json::Value| -> Vec<String> {
        json["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| {
                format!(
                    "{} {}",
                    k["state"].as_str().unwrap_or(""),
                    k["algorithm"].as_str().unwrap_or("")
                )
            })
            .collect()
    };

    // An unverified domain has no keys yet, nor can it have any rotated in: a name anyone
    // may type costs no key generation.
    let (status, json) = relay.api("GET", path, Some(&reader), None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(states(&json), Vec::<String>::new(), "{json}");
    let (status, json) = relay.api("POST", &format!("{path}/rotate"), Some(&admin), None);
    assert_eq!(status, 422, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("not verified yet"),
        "{json}"
    );
    // Once its TXT proof is found, it has its keys: both active, each with the record to
    // publish.
    let (_, list) = relay.api("GET", "/api/v1/tenants/contoso/domains", Some(&admin), None);
    let proof = list["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .find(|d| d["name"] == "contoso.example")
        .and_then(|d| d["txt_record"]["value"].as_str())
        .unwrap_or_else(|| panic!("the TXT record to publish: {list}"))
        .to_string();
    dns.set("contoso.example", "TXT", Answer::Txt(vec![proof]));
    let (status, json) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/domains/contoso.example/verify",
        Some(&admin),
        None,
    );
    assert_eq!(status, 200, "{json}");
    let (status, json) = relay.api("GET", path, Some(&reader), None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        states(&json),
        ["active rsa-sha256", "active ed25519-sha256"]
    );
    let rec = &json["keys"][0]["record"];
    assert!(
        rec["name"]
            .as_str()
            .unwrap_or("")
            .ends_with("._domainkey.contoso.example"),
        "{json}"
    );
    assert!(
        rec["value"]
            .as_str()
            .unwrap_or("")
            .starts_with("v=DKIM1; k=rsa; p="),
        "{json}"
    );
    assert!(
        !json.to_string().contains("private"),
        "private keys never leave: {json}"
    );
    let (status, _) = relay.api("GET", path, Some(&other), None);
    assert_eq!(status, 404, "another tenant's domain is not found");

    // Rotation: readers may not; an admin gets a pending pair to publish.
    let (status, _) = relay.api("POST", &format!("{path}/rotate"), Some(&reader), None);
    assert_eq!(status, 403);
    let (status, json) = relay.api("POST", &format!("{path}/rotate"), Some(&admin), None);
    assert_eq!(status, 200, "{json}");
    let pending: Vec<serde_json::Value> = json["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| k["state"] == "pending")
        .cloned()
        .collect();
    assert_eq!(pending.len(), 2, "{json}");
    let (status, json) = relay.api("POST", &format!("{path}/rotate"), Some(&admin), None);
    assert_eq!(status, 422, "one rotation at a time: {json}");

    // Activation waits for the records in DNS.
    let (status, json) = relay.api("POST", &format!("{path}/activate"), Some(&admin), None);
    assert_eq!(status, 422, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("not published"),
        "{json}"
    );
    for k in &pending {
        dns.set(
            k["record"]["name"].as_str().expect("name"),
            "TXT",
            Answer::Txt(vec![
                k["record"]["value"].as_str().expect("value").to_string(),
            ]),
        );
    }
    let (status, json) = relay.api("POST", &format!("{path}/activate"), Some(&admin), None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        states(&json),
        [
            "retiring rsa-sha256",
            "retiring ed25519-sha256",
            "active rsa-sha256",
            "active ed25519-sha256"
        ]
    );
    let (status, json) = relay.api("POST", &format!("{path}/retire"), Some(&admin), None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(
        states(&json),
        [
            "retired rsa-sha256",
            "retired ed25519-sha256",
            "active rsa-sha256",
            "active ed25519-sha256"
        ]
    );
    // Each step is in the audit log.
    let audit = relay.cli(&["audit", "--tenant", "contoso"]);
    for action in ["dkim.rotate", "dkim.activate", "dkim.retire"] {
        assert!(audit.contains(action), "{action} in {audit}");
    }
}

#[test]
fn tenants_connectors_and_users_are_managed_and_the_audit_log_exports_as_json_lines() {
    let (relay, t) = setup();
    let call = |method: &str, path: &str, tok: &str, body: Option<&str>| {
        relay.api(method, path, Some(tok), body)
    };

    // Tenants: operators add them; admins change language and alert addresses, not the
    // subscription.
    let (status, json) = call(
        "POST",
        "/api/v1/tenants",
        &t.operator,
        Some(r#"{"name": "northwind", "language": "es", "admins": ["it@northwind.example"]}"#),
    );
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["language"], "es");
    let (status, json) = call(
        "PATCH",
        "/api/v1/tenants/contoso",
        &t.admin,
        Some(r#"{"language": "es", "admins": ["ops@contoso.example"]}"#),
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["admins"][0], "ops@contoso.example");
    let (status, json) = call(
        "PATCH",
        "/api/v1/tenants/contoso",
        &t.admin,
        Some(r#"{"subscription_ends": "2030-01-31"}"#),
    );
    assert_eq!(status, 403, "{json}");
    let (status, json) = call(
        "PATCH",
        "/api/v1/tenants/contoso",
        &t.operator,
        Some(r#"{"subscription_ends": "2030-01-31"}"#),
    );
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["subscription_ends"], "2030-01-31");
    let (_, json) = call(
        "PATCH",
        "/api/v1/tenants/contoso",
        &t.operator,
        Some(r#"{"subscription_ends": null}"#),
    );
    assert!(json["subscription_ends"].is_null(), "{json}");

    // Connectors.
    let (status, json) = call(
        "POST",
        "/api/v1/tenants/contoso/connectors",
        &t.admin,
        Some(r#"{"name": "office", "ips": ["192.0.2.0/24"], "require_tls": true}"#),
    );
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["reviewed"], false);
    let (status, _) = call(
        "POST",
        "/api/v1/tenants/contoso/connectors",
        &t.admin,
        Some(r#"{"name": "bad", "ips": ["192.0.2.0/99"]}"#),
    );
    assert_eq!(status, 422);
    let (status, _) = call(
        "POST",
        "/api/v1/tenants/contoso/connectors/office/review",
        &t.admin,
        None,
    );
    assert_eq!(status, 200);
    let (_, json) = call("GET", "/api/v1/tenants/contoso/connectors", &t.reader, None);
    let office = json["connectors"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "office").cloned())
        .expect("listed");
    assert_eq!(office["reviewed"], true, "{office}");
    assert!(
        office["unusual"]
            .to_string()
            .contains("created in the last 7 days"),
        "{office}"
    );
    assert_eq!(office["ips"][0], "192.0.2.0/24");
    let (status, _) = call(
        "DELETE",
        "/api/v1/tenants/contoso/connectors/office",
        &t.admin,
        None,
    );
    assert_eq!(status, 204);
    let (status, _) = call(
        "DELETE",
        "/api/v1/tenants/contoso/connectors/office",
        &t.admin,
        None,
    );
    assert_eq!(status, 404);

    // Users, in the tenant's own domains only; never a password hash in an answer.
    let (status, json) = call(
        "POST",
        "/api/v1/tenants/contoso/users",
        &t.admin,
        Some(
            r#"{"address": "Ana@contoso.example", "password": "a long device secret", "forward_to": "ana@home.example"}"#,
        ),
    );
    assert_eq!(status, 201, "{json}");
    assert_eq!(json["address"], "ana@contoso.example");
    assert_eq!(json["has_password"], true);
    assert!(!json.to_string().contains("argon2"), "{json}");
    let (status, _) = call(
        "POST",
        "/api/v1/tenants/contoso/users",
        &t.admin,
        Some(r#"{"address": "eve@fabrikam.example"}"#),
    );
    assert_eq!(status, 422, "not a domain of contoso");
    let (status, _) = call(
        "POST",
        "/api/v1/tenants/contoso/users",
        &t.admin,
        Some(r#"{"address": "bob@contoso.example", "password": "short"}"#),
    );
    assert_eq!(status, 422);
    let (status, json) = call(
        "PATCH",
        "/api/v1/tenants/contoso/users/ana@contoso.example",
        &t.admin,
        Some(r#"{"forward_to": null, "password": null}"#),
    );
    assert_eq!(status, 200, "{json}");
    assert!(json["forward_to"].is_null());
    assert_eq!(json["has_password"], false);
    let (status, _) = call(
        "PATCH",
        "/api/v1/tenants/contoso/users/ana@contoso.example",
        &t.other_admin,
        Some(r#"{"forward_only": false}"#),
    );
    assert_eq!(status, 404);
    let (status, _) = call(
        "DELETE",
        "/api/v1/tenants/contoso/users/ana@contoso.example",
        &t.admin,
        None,
    );
    assert_eq!(status, 204);

    // The tenant's audit log as JSON lines, oldest first: every change above, with its actor.
    let mut s = std::net::TcpStream::connect(relay.http).expect("http");
    std::io::Write::write_all(
        &mut s,
        format!("GET /api/v1/tenants/contoso/audit/export HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {}\r\n\r\n", t.admin).as_bytes(),
    )
    .expect("write");
    let mut out = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut out);
    let (head, body) = out.split_once("\r\n\r\n").expect("http answer");
    assert!(
        head.contains("200")
            && head
                .to_ascii_lowercase()
                .contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let actions: Vec<String> = body
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("each line is JSON"))
        .map(|e| e["action"].as_str().unwrap_or("").to_string())
        .collect();
    let pos = |a: &str| {
        actions
            .iter()
            .position(|x| x == a)
            .unwrap_or_else(|| panic!("{a} in {actions:?}"))
    };
    assert!(pos("tenant.update") < pos("connector.create"));
    assert!(pos("connector.create") < pos("connector.review"));
    assert!(pos("connector.review") < pos("connector.delete"));
    assert!(pos("user.create") < pos("user.update") && pos("user.update") < pos("user.delete"));
    assert!(
        !body.contains("northwind"),
        "another tenant's entries stay out"
    );
}

#[test]
fn limit_overrides_set_through_the_api_are_in_force_at_once() {
    let rx = Receiver::start(false);
    let relay = Relay::start(&format!("[delivery]\nsmart_host = \"{}\"\n", rx.addr));
    relay.cli(&["tenant", "add", "northwind"]);
    relay.cli(&[
        "domain",
        "add",
        "northwind",
        "northwind.example",
        "--verified",
    ]);
    relay.cli(&[
        "connector",
        "add",
        "northwind",
        "office",
        "--ip",
        "127.0.0.1/32",
        "--relay-unregistered",
    ]);
    let ops = token(&relay, &["--name", "ops", "--role", "operator"]);
    let admin = token(
        &relay,
        &["--name", "a", "--role", "admin", "--tenant", "northwind"],
    );
    let path = "/api/v1/tenants/northwind/limits";
    let (status, json) = relay.api("GET", path, Some(&admin), None);
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["effective"]["unregistered_allowance_per_day"], 1000);
    let two = r#"{"unregistered_allowance_per_day": 2}"#;
    let (status, _) = relay.api("PUT", path, Some(&admin), Some(two));
    assert_eq!(status, 403, "limits are the operator's");
    let (status, json) = relay.api(
        "PUT",
        path,
        Some(&ops),
        Some(r#"{"recipients_per_message": 5}"#),
    );
    assert_eq!(status, 422, "{json}");
    let (status, json) = relay.api("PUT", path, Some(&ops), Some(r#"{"no_such_limit": 5}"#));
    assert_eq!(status, 422, "{json}");
    let (status, json) = relay.api("PUT", path, Some(&ops), Some(two));
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["effective"]["unregistered_allowance_per_day"], 2);
    assert_eq!(json["overrides"]["unregistered_allowance_per_day"], 2);

    // The running relay applies it: two messages from an unregistered domain, then 5.7.750.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let mut c = relay.client();
    assert_eq!(c.cmd("EHLO office.northwind.example").code, 250);
    let msg = "From: x@elsewhere.example\r\nSubject: hi\r\n\r\nhello\r\n";
    for _ in 0..2 {
        let r = c.transaction("x@elsewhere.example", &["bob@remote.example"], msg);
        assert_eq!(r.code, 250, "{r:?}");
    }
    let r = c.transaction("x@elsewhere.example", &["bob@remote.example"], msg);
    assert_eq!(r.code, 550, "{r:?}");
    assert!(r.text().contains("5.7.750"), "{r:?}");

    // {} goes back to the defaults; the change is audited.
    let (_, json) = relay.api("PUT", path, Some(&ops), Some("{}"));
    assert_eq!(json["effective"]["unregistered_allowance_per_day"], 1000);
    let audit = relay.cli(&["audit", "--tenant", "northwind"]);
    assert_eq!(audit.matches("tenant.limits").count(), 2, "{audit}");
}

#[test]
fn tenant_tokens_see_only_their_tenant_and_writes_are_audited() {
    let (relay, t) = setup();
    let (_, all) = relay.api("GET", "/api/v1/tenants", Some(&t.operator), None);
    let names: Vec<&str> = all["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["name"].as_str())
        .collect();
    assert_eq!(names, vec!["contoso", "fabrikam"]);
    let (_, own) = relay.api("GET", "/api/v1/tenants", Some(&t.other_admin), None);
    assert_eq!(own["tenants"].as_array().map(Vec::len), Some(1));
    assert_eq!(own["tenants"][0]["name"], "fabrikam");

    // A domain added through the API: unverified, with the record to publish, audited.
    let (status, d) = relay.api(
        "POST",
        "/api/v1/tenants/contoso/domains",
        Some(&t.admin),
        Some(r#"{"name": "Sales.Contoso.Example", "kind": "internal_relay", "match_subdomains": true}"#),
    );
    assert_eq!(status, 201, "{d}");
    assert_eq!(d["name"], "sales.contoso.example");
    assert_eq!(d["verified"], false);
    assert!(
        d["txt_record"]["value"]
            .as_str()
            .unwrap()
            .starts_with("relayward-verification=")
    );
    let (_, log) = relay.api("GET", "/api/v1/tenants/contoso/audit", Some(&t.admin), None);
    let entry = log["audit"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["action"] == "domain.add"
                && e["detail"]
                    .as_str()
                    .unwrap()
                    .contains("sales.contoso.example")
        })
        .unwrap_or_else(|| panic!("no audit entry: {log}"));
    assert!(
        entry["actor"].as_str().unwrap().starts_with("token:"),
        "{entry}"
    );
    assert_eq!(entry["client"], "127.0.0.1");
    // Another tenant's audit log stays closed to it.
    let (status, _) = relay.api(
        "GET",
        "/api/v1/tenants/contoso/audit",
        Some(&t.other_admin),
        None,
    );
    assert_eq!(status, 404);

    // Bad input: clear errors, nothing stored.
    for (body, want) in [
        ("{not json", 400),
        (r#"{"name": "x.example", "colour": "red"}"#, 400),
        (r#"{"name": "x.example", "kind": "mailbox"}"#, 422),
        (r#"{"name": "not a domain"}"#, 422),
        (r#"{"name": "sales.contoso.example"}"#, 409),
        (r#"{"name": "y.example", "match_subdomains": true}"#, 422),
    ] {
        let (status, json) = relay.api(
            "POST",
            "/api/v1/tenants/contoso/domains",
            Some(&t.admin),
            Some(body),
        );
        assert_eq!(status, want, "{body} → {json}");
        assert!(json["error"].is_string(), "{json}");
    }
}

#[test]
fn revoked_expired_and_malformed_tokens_are_refused() {
    let (relay, t) = setup();
    let short = token(
        &relay,
        &[
            "--name",
            "short",
            "--role",
            "reader",
            "--tenant",
            "contoso",
            "--expires-in",
            "1s",
        ],
    );
    assert_eq!(
        relay.api("GET", "/api/v1/whoami", Some(&short), None).0,
        200
    );
    std::thread::sleep(std::time::Duration::from_millis(1200));
    let (status, json) = relay.api("GET", "/api/v1/whoami", Some(&short), None);
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("the API token has expired"))
    );

    let id = t.admin.split('_').nth(1).unwrap().to_string();
    relay.cli(&["token", "revoke", &id]);
    let (status, json) = relay.api("GET", "/api/v1/tenants/contoso", Some(&t.admin), None);
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("the API token was revoked"))
    );

    let forged = format!("{}x", &t.operator[..t.operator.len() - 1]);
    for bad in [forged.as_str(), "rw_zz_zz", "hello", "rw_", ""] {
        let (status, _) = relay.api("GET", "/api/v1/whoami", Some(bad), None);
        assert_eq!(status, 401, "{bad:?}");
    }
    // The token list shows last use, never secrets.
    let (_, list) = relay.api("GET", "/api/v1/tokens", Some(&t.operator), None);
    let text = list.to_string();
    assert!(!text.contains("secret"), "{text}");
    let ops = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "ops")
        .unwrap();
    assert!(ops["last_used_at"].as_i64().is_some(), "{ops}");
    let revoked = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap();
    assert!(revoked["revoked_at"].as_i64().is_some());
}

#[test]
fn the_openapi_document_lists_what_is_served() {
    let (relay, t) = setup();
    let (status, doc) = relay.api("GET", "/api/v1/openapi.json", None, None);
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 10, "{}", paths.len());
    // Every GET without path parameters answers an operator with what the document says.
    for (path, item) in paths {
        if path.contains('{') || item.get("get").is_none() {
            continue;
        }
        let (status, _) = relay.api("GET", path, Some(&t.operator), None);
        assert!(
            item["get"]["responses"].get(status.to_string()).is_some(),
            "{path}: {status}"
        );
    }
}

/// Every change costs the relay all tenants share (claim checks against every tenant's
/// objects, a rebuild of the directory), so one tenant's admins may make
/// `[http] tenant_changes_per_hour` of them an hour: past it, 429 and nothing changes. Reads go
/// on, another tenant's admins have their own count, and operators are not counted.
#[test]
fn one_tenants_changes_per_hour_are_bounded_and_only_its_own() {
    let relay = Relay::start("[http]\ntenant_changes_per_hour = 3\n");
    let (admin, other, ops) = two_tenants(&relay);
    let add = |tok: &str, tenant: &str, name: &str| {
        relay.api(
            "POST",
            &format!("/api/v1/tenants/{tenant}/domains"),
            Some(tok),
            Some(&format!(r#"{{"name": "{name}"}}"#)),
        )
    };
    for i in 0..3 {
        let (status, json) = add(&admin, "contoso", &format!("d{i}.contoso.example"));
        assert_eq!(status, 201, "{json}");
    }
    let (status, json) = add(&admin, "contoso", "d3.contoso.example");
    assert_eq!(status, 429, "{json}");
    assert!(
        json["error"]
            .as_str()
            .unwrap_or("")
            .contains("tenant_changes_per_hour"),
        "{json}"
    );
    let (status, list) = relay.api("GET", "/api/v1/tenants/contoso/domains", Some(&admin), None);
    assert_eq!(status, 200, "reads go on: {list}");
    let names: Vec<&str> = list["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert!(!names.contains(&"d3.contoso.example"), "{list}");
    let (status, json) = add(&other, "fabrikam", "d0.fabrikam.example");
    assert_eq!(status, 201, "fabrikam has its own count: {json}");
    let (status, json) = add(&ops, "contoso", "ops.contoso.example");
    assert_eq!(status, 201, "operators are not counted: {json}");
}

/// The hourly limit bounds how fast one tenant's admins add objects; `[http]
/// tenant_objects_max` bounds how many of each kind they may have (every one is a claim the
/// others are checked against and a part of the directory every node rebuilds), and
/// `tenant_webhooks_max` how many webhooks each event is sent to. Past it, 403 naming the key,
/// and nothing added; a removed object makes room; operators and other tenants are not held.
#[test]
fn a_tenants_admins_may_add_so_many_objects_of_each_kind() {
    let relay = Relay::start("[http]\ntenant_objects_max = 2\ntenant_webhooks_max = 1\n");
    let (admin, other, ops) = two_tenants(&relay);
    let post = |tok: &str, tenant: &str, kind: &str, body: String| {
        relay.api(
            "POST",
            &format!("/api/v1/tenants/{tenant}/{kind}"),
            Some(tok),
            Some(&body),
        )
    };
    let refused = |(status, json): (u16, serde_json::Value), key: &str| {
        assert_eq!(status, 403, "{json}");
        let text = json["error"].as_str().unwrap_or("");
        assert!(text.contains(key), "{json}");
    };
    // Each kind, with the body of its i-th object.
    type Kind = (&'static str, fn(u32) -> String);
    let kinds: [Kind; 3] = [
        ("domains", |i| {
            format!(r#"{{"name": "d{i}.contoso.example"}}"#)
        }),
        ("users", |i| {
            format!(r#"{{"address": "u{i}@contoso.example"}}"#)
        }),
        ("connectors", |i| {
            format!(r#"{{"name": "c{i}", "ips": ["192.0.2.{i}"]}}"#)
        }),
    ];
    for (kind, body) in kinds {
        if kind == "users" {
            // The operator may add more (here the verified domain the users need).
            relay.cli(&["domain", "add", "contoso", "contoso.example", "--verified"]);
        }
        for i in 0..2 {
            let (status, json) = post(&admin, "contoso", kind, body(i));
            assert_eq!(status, 201, "{kind} {i}: {json}");
        }
        refused(post(&admin, "contoso", kind, body(2)), "tenant_objects_max");
        let (status, list) = relay.api(
            "GET",
            &format!("/api/v1/tenants/contoso/{kind}"),
            Some(&admin),
            None,
        );
        assert_eq!(status, 200, "{list}");
        assert_eq!(list[kind].as_array().map(Vec::len), Some(2), "{list}");
    }
    let hook = |i: u32| format!(r#"{{"url": "https://hooks{i}.contoso.example/"}}"#);
    let (status, json) = post(&admin, "contoso", "webhooks", hook(0));
    assert_eq!(status, 201, "{json}");
    refused(
        post(&admin, "contoso", "webhooks", hook(1)),
        "tenant_webhooks_max",
    );
    // A removed user makes room for another.
    let (status, json) = relay.api(
        "DELETE",
        "/api/v1/tenants/contoso/users/u0@contoso.example",
        Some(&admin),
        None,
    );
    assert_eq!(status, 204, "{json}");
    let (status, json) = post(&admin, "contoso", "users", kinds[1].1(5));
    assert_eq!(status, 201, "{json}");
    // Aliases count too: the tenant's users hold at most tenant_objects_max of them in all
    // (each is a claim and a directory entry), and a user at most 100, whoever adds them.
    let aliases = |user: &str, tok: &str, names: &[String]| {
        relay.api(
            "PATCH",
            &format!("/api/v1/tenants/contoso/users/{user}"),
            Some(tok),
            Some(&serde_json::json!({ "aliases": names }).to_string()),
        )
    };
    let named = |from: u32, to: u32| -> Vec<String> {
        (from..to)
            .map(|i| format!("a{i}@contoso.example"))
            .collect()
    };
    let (status, json) = aliases("u1@contoso.example", &admin, &named(0, 2));
    assert_eq!(status, 200, "{json}");
    refused(
        aliases("u5@contoso.example", &admin, &named(2, 3)),
        "tenant_objects_max",
    );
    let (status, json) = aliases("u5@contoso.example", &ops, &named(2, 103));
    assert_eq!(status, 422, "{json}");
    assert!(
        json["error"].as_str().unwrap_or("").contains("at most 100"),
        "{json}"
    );
    let (status, json) = aliases("u5@contoso.example", &ops, &named(2, 102));
    assert_eq!(status, 200, "the operator, within 100 for the user: {json}");
    // An address is no longer than mail can carry: a local part of 64 octets at most.
    let long = format!(r#"{{"address": "{}@contoso.example"}}"#, "x".repeat(65));
    let (status, json) = post(&ops, "contoso", "users", long);
    assert_eq!(status, 422, "{json}");
    let (status, json) = aliases(
        "u5@contoso.example",
        &ops,
        &[format!("{}@contoso.example", "y".repeat(65))],
    );
    assert_eq!(status, 422, "{json}");
    // The operator may add more through the API too; another tenant has its own room.
    let (status, json) = post(&ops, "contoso", "connectors", kinds[2].1(7));
    assert_eq!(status, 201, "{json}");
    let (status, json) = post(
        &other,
        "fabrikam",
        "domains",
        r#"{"name": "fabrikam.example"}"#.into(),
    );
    assert_eq!(status, 201, "{json}");
}
