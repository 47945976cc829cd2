//! The management API over HTTP (issue 6, first part): each role against each operation
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

fn setup() -> (Relay, Tokens) {
    let relay = Relay::start("");
    relay.cli(&["tenant", "add", "contoso", "--admin", "it@contoso.example"]);
    relay.cli(&["tenant", "add", "fabrikam"]);
    relay.cli(&["domain", "add", "contoso", "contoso.example"]);
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

    // A domain comes with its keys: both active, each with the record to publish.
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
