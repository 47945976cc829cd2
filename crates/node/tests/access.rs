//! Walks the management API's whole operation table against a relay running in this process
//! (`relayward_node::serve` with its listeners handed in) and calls every operation as five
//! callers: no credentials, a reader of the tenant, an admin of another tenant, an admin of the
//! tenant, and an operator. Each answer must match the operation's declared access:
//! 401 without credentials, 404 for another tenant's objects (exactly as for a tenant that does
//! not exist), 403 for a role the access does not admit, and otherwise a success or a
//! validation error. (`tests/it/api.rs` walks the same table through a relay process with
//! the exact answer of each call; this walk derives what to expect from the table alone.) Several handlers (`GET /accounts`, `GET /queue`, `GET /tokens`,
//! `GET /audit`, `GET /trace`) hold no check of their own and do not even take the caller: only
//! the table's access layer protects them, and the walk shows it does.

use std::time::Duration;

use relayward_api::{Access, openapi_document, operations};
use relayward_config::Config;
use relayward_control::directory::NewTenant;
use relayward_control::{AccountRole, Actor, Control};
use relayward_guard::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect to the API");
    let body = if matches!(method, "POST" | "PUT" | "PATCH") {
        "{}"
    } else {
        ""
    };
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: relay.test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut answer))
        .await
        .expect("an answer within 20 s")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    (status, body)
}

/// A concrete path: the tenant is contoso; every other object named is one that does not exist.
fn concrete(path: &str) -> String {
    let p: Vec<String> = path
        .split('/')
        .map(|seg| match seg {
            "{tenant}" => "contoso".to_string(),
            s if s.starts_with('{') => "nosuchthing".to_string(),
            s => s.to_string(),
        })
        .collect();
    format!("/api/v1{}", p.join("/"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Caller {
    Nobody,
    Reader,
    OtherAdmin,
    Admin,
    Operator,
}

/// What the declared access lets this caller get: `Err(status)` for the refusal it must meet.
/// `scoped`: the path names a tenant, whose objects another tenant's admin never learns of.
fn expected(access: Access, scoped: bool, caller: Caller) -> Result<(), u16> {
    use Caller::*;
    match (access, caller) {
        (Access::Public, _) => Ok(()),
        (_, Nobody) => Err(401),
        (_, OtherAdmin) if scoped => Err(404),
        (Access::Any, _) => Ok(()),
        (Access::Operator, Operator) => Ok(()),
        (Access::Operator, _) => Err(403),
        (Access::TenantRead | Access::TenantWrite, OtherAdmin) => Err(404),
        (Access::TenantRead, _) => Ok(()),
        (Access::TenantWrite, Reader) => Err(403),
        (Access::TenantWrite, _) => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_answers_each_caller_as_its_declared_access_says() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("relayward.toml");
    std::fs::write(
        &file,
        format!(
            "[smtp]\nhostname = \"relay.test\"\n[storage]\ndata_dir = \"{}\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("config");
    let config = Config::load(Some(&file)).expect("configuration");
    let control = Control::new(
        &config,
        relayward_control::open_store(&config).await.expect("store"),
    );
    let op = Actor::command_line("cli:test".into(), Role::Operator);
    for name in ["contoso", "fabrikam"] {
        control
            .create_tenant(
                NewTenant {
                    name: name.into(),
                    language: None,
                    subscription_ends: None,
                    admins: vec![],
                },
                &op,
            )
            .await
            .expect("tenant");
    }
    let token = |role: AccountRole, tenant: Option<&'static str>| {
        let control = &control;
        let op = &op;
        async move {
            control
                .create_token(role, tenant, role.as_str(), None, op)
                .await
                .expect("token")
                .0
        }
    };
    let tokens = [
        (Caller::Nobody, None),
        (
            Caller::Reader,
            Some(token(AccountRole::Reader, Some("contoso")).await),
        ),
        (
            Caller::OtherAdmin,
            Some(token(AccountRole::Admin, Some("fabrikam")).await),
        ),
        (
            Caller::Admin,
            Some(token(AccountRole::Admin, Some("contoso")).await),
        ),
        (
            Caller::Operator,
            Some(token(AccountRole::Operator, None).await),
        ),
    ];

    let local = || async { TcpListener::bind("127.0.0.1:0").await.expect("bind") };
    let listeners = relayward_node::Listeners {
        relay: local().await,
        submission: local().await,
        submissions: None,
        http: local().await,
    };
    let http = listeners.http.local_addr().expect("address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relayward_node::serve(config, listeners, async move {
        let _ = stopped.await;
    }));
    let mut up = false;
    for _ in 0..100 {
        if TcpStream::connect(http).await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(up, "the relay's HTTP listener answers");

    let mut failures = Vec::new();
    let mut checked = 0;
    for o in operations() {
        let path = concrete(o.path);
        let method = o.method.to_ascii_uppercase();
        for (caller, token) in &tokens {
            let (status, body) = request(http, &method, &path, token.as_deref()).await;
            checked += 1;
            let tenant_hidden = status == 404 && body.contains("tenant 'contoso'");
            let ok = match expected(o.access, o.path.contains("{tenant}"), *caller) {
                Err(404) => tenant_hidden,
                Err(want) => status == want,
                Ok(()) => !matches!(status, 401 | 403 | 0) && !tenant_hidden && status < 500,
            };
            if !ok {
                failures.push(format!(
                    "{method} {path} as {caller:?} ({:?}): {status} {body}",
                    o.access
                ));
            }
        }
    }
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(40), relay).await;
    assert!(
        failures.is_empty(),
        "{} of {checked} calls did not match the declared access:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(checked, operations().count() * 5);
    // The walk covered operations whose handlers hold no check of their own.
    for (m, p) in [
        ("get", "/accounts"),
        ("get", "/queue"),
        ("get", "/tokens"),
        ("get", "/audit"),
    ] {
        assert!(
            operations().any(|o| o.method == m && o.path == p && o.access == Access::Operator),
            "{m} {p} is in the table as an operator's operation"
        );
    }
}

#[test]
fn the_document_lists_every_operation_once() {
    let doc = openapi_document();
    for op in operations() {
        let p = &doc["paths"][format!("/api/v1{}", op.path)][op.method];
        assert!(p.is_object(), "{} {} missing", op.method, op.path);
    }
    let listed: usize = doc["paths"]
        .as_object()
        .map(|paths| {
            paths
                .values()
                .filter_map(|p| p.as_object())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(listed, operations().count());
}

/// Every JSON answer is described by the schema of its type: an operation with a body and no
/// answer type would be an undocumented answer.
#[test]
fn every_json_answer_has_a_derived_schema() {
    let doc = openapi_document();
    for op in operations() {
        let ok =
            &doc["paths"][format!("/api/v1{}", op.path)][op.method]["responses"][op.ok.to_string()];
        let json = &ok["content"]["application/json"];
        if op.ok == 204 || op.path == "/openapi.json" || json.is_null() {
            assert!(op.answer.is_none(), "{} {}", op.method, op.path);
            continue;
        }
        assert!(
            op.answer.is_some(),
            "{} {} has no answer type",
            op.method,
            op.path
        );
        let schema = &json["schema"];
        assert!(
            schema["$ref"].is_string() || schema["properties"].is_object(),
            "{} {}: {schema}",
            op.method,
            op.path
        );
    }
    // Shared objects are components, with their fields.
    let tenant = &doc["components"]["schemas"]["Tenant"];
    assert!(
        tenant["properties"]["subscription_ends"].is_object(),
        "{tenant}"
    );
    let restriction = &doc["components"]["schemas"]["Restriction"];
    assert!(
        restriction["properties"]["history"].is_object(),
        "{restriction}"
    );
    // Secrets are never described, as they are never sent.
    let account = &doc["components"]["schemas"]["Account"];
    assert!(
        account["properties"]["password_hash"].is_null(),
        "{account}"
    );
    assert!(account["properties"]["totp_secret"].is_null(), "{account}");
}
