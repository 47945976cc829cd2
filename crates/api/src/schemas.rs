//! The shapes of the management API's answers, for its OpenAPI document: one schema per object
//! (`components`) and, per operation, what its success answer holds (`response`). Schemathesis
//! checks every answer against these, so they are held to what the handlers send.

use serde_json::{Value, json};

fn r(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn list_of(key: &str, item: Value) -> Value {
    json!({
        "type": "object",
        "required": [key],
        "properties": { key: { "type": "array", "items": item } }
    })
}

fn s() -> Value {
    json!({ "type": "string" })
}

fn s_null() -> Value {
    json!({ "type": "string", "nullable": true })
}

fn int() -> Value {
    json!({ "type": "integer" })
}

fn int_null() -> Value {
    json!({ "type": "integer", "nullable": true })
}

fn b() -> Value {
    json!({ "type": "boolean" })
}

fn strings() -> Value {
    json!({ "type": "array", "items": { "type": "string" } })
}

fn object(props: Value) -> Value {
    let required: Vec<String> = props
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    json!({ "type": "object", "required": required, "properties": props })
}

/// `components.schemas`.
pub fn components() -> Value {
    json!({
        "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } },
        "Tenant": object(json!({
            "name": s(), "language": s(), "subscription_ends": s_null(), "admins": strings(),
            "managed_by_config": b(),
            "forwarding": { "type": "string", "enum": ["on", "off", "listed"] },
            "forwarding_domains": strings()
        })),
        "Domain": object(json!({
            "name": s(),
            "kind": { "type": "string", "enum": ["authoritative", "internal_relay"] },
            "match_subdomains": b(), "verified": b(),
            "txt_record": object(json!({ "name": s(), "type": s(), "value": s() }))
        })),
        "Connector": object(json!({
            "tenant": s(), "name": s(), "ips": strings(), "cert_name": s_null(),
            "require_tls": b(), "relay_unregistered": b(), "created_by": s(),
            "created_at": int(), "reviewed": b()
        })),
        "User": object(json!({
            "address": s(), "aliases": strings(), "forward_to": s_null(), "forward_only": b(),
            "has_password": b()
        })),
        "Route": object(json!({ "tenant": s(), "domain": s(), "host": s() })),
        "Webhook": object(json!({
            "id": s(), "tenant": s(), "url": s(), "events": strings(), "created_by": s(),
            "created_at": int()
        })),
        "WebhookDelivery": object(json!({
            "id": int(), "webhook_id": s(), "event": s(), "body": s(), "attempts": int(),
            "state": { "type": "string", "enum": ["pending", "delivered", "failed"] },
            "last_status": int_null(), "last_error": s_null(), "next_attempt": int(),
            "created_at": int(), "updated_at": int()
        })),
        "Account": object(json!({
            "id": s(), "email": s(),
            "role": { "type": "string", "enum": ["operator", "admin", "reader"] },
            "tenant": s_null(), "setup_expires_at": int_null(), "failed_logins": int(),
            "locked_until": int_null(), "created_at": int(), "last_login_at": int_null()
        })),
        "Token": object(json!({
            "id": s(), "name": s(), "role": s(), "tenant": s_null(), "created_at": int(),
            "expires_at": int_null(), "last_used_at": int_null(), "revoked_at": int_null()
        })),
        "AuditEntry": object(json!({
            "at": int(), "actor": s(), "role": s(), "tenant": s_null(), "action": s(),
            "client": s(), "mfa": b(), "detail": s()
        })),
        "Alert": object(json!({
            "id": int(), "tenant": s(), "at": int(), "severity": s(), "kind": s(),
            "subject": s(), "text": s()
        })),
        "AuthLockout": object(json!({
            "account": s(), "tenant": s(), "at": int(), "until": int(), "failures": int(),
            "client": s()
        })),
        "Counter": object(json!({
            "subject": s(), "counter": s(), "value": int(), "threshold": int_null()
        })),
        "Restriction": {
            "type": "object",
            "required": ["id", "state"],
            "properties": { "id": s(), "state": s() }
        },
        "QueuedMessage": object(json!({
            "id": s(), "tenant": s_null(), "mail_from": s(), "pending": strings(),
            "last_reply": s_null(), "attempts": int(), "received_at": int(),
            "next_attempt": int(), "held": b()
        })),
        "TraceMessage": object(json!({
            "message_id": s(), "received_at": int(), "sender": s(), "tenant": s_null(),
            "origin": s(), "client_ip": s(), "size": int(),
            "recipients": { "type": "array", "items": object(json!({ "address": s(), "status": s() })) },
            "events": { "type": "array", "items": object(json!({
                "at": int(), "kind": s(), "recipient": s_null(), "detail": s()
            })) }
        })),
        "DkimKeys": object(json!({
            "domain": s(),
            "keys": { "type": "array", "items": object(json!({
                "selector": s(),
                "algorithm": { "type": "string", "enum": ["rsa-sha256", "ed25519-sha256"] },
                "state": { "type": "string", "enum": ["pending", "active", "retiring", "retired"] },
                "since": int(), "created_at": int(),
                "record": object(json!({ "name": s(), "type": s(), "value": s() }))
            })) }
        })),
    })
}

/// The schema of an operation's success answer (`None`: no body, or not described).
pub fn response(method: &str, path: &str) -> Option<Value> {
    let restriction = || object(json!({ "restriction": r("Restriction") }));
    Some(match (method, path) {
        ("get", "/whoami") => object(json!({
            "id": s_null(), "name": s(), "role": s(), "tenant": s_null(), "mfa": b()
        })),
        ("get", "/tenants") => list_of("tenants", r("Tenant")),
        ("post", "/tenants") | ("patch", "/tenants/{tenant}") => r("Tenant"),
        ("get", "/tenants/{tenant}") => object(json!({
            "tenant": r("Tenant"),
            "domains": { "type": "array", "items": r("Domain") },
            "connectors": { "type": "array", "items": r("Connector") },
            "users": { "type": "array", "items": r("User") },
            "routes": { "type": "array", "items": r("Route") }
        })),
        ("put", "/tenants/{tenant}/forwarding") => object(json!({
            "tenant": s(), "forwarding": s(), "domains": strings()
        })),
        ("get", "/tenants/{tenant}/limits") | ("put", "/tenants/{tenant}/limits") => {
            object(json!({
                "effective": { "type": "object" },
                "overrides": { "type": "object" }
            }))
        }
        ("get", "/tenants/{tenant}/domains") => list_of("domains", r("Domain")),
        ("post", "/tenants/{tenant}/domains") => r("Domain"),
        ("post", "/tenants/{tenant}/domains/{domain}/verify") => {
            json!({ "type": "object", "required": ["domain", "verified"],
                    "properties": { "domain": s(), "verified": b() } })
        }
        ("get", "/tenants/{tenant}/domains/{domain}/dkim")
        | ("post", "/tenants/{tenant}/domains/{domain}/dkim/rotate")
        | ("post", "/tenants/{tenant}/domains/{domain}/dkim/activate")
        | ("post", "/tenants/{tenant}/domains/{domain}/dkim/retire") => r("DkimKeys"),
        ("get", "/tenants/{tenant}/connectors") => list_of(
            "connectors",
            json!({ "allOf": [r("Connector"), object(json!({ "unusual": strings() }))] }),
        ),
        ("post", "/tenants/{tenant}/connectors") => r("Connector"),
        ("post", "/tenants/{tenant}/connectors/{connector}/review") => {
            object(json!({ "connector": s(), "reviewed": b() }))
        }
        ("get", "/tenants/{tenant}/users") => list_of(
            "users",
            json!({ "allOf": [r("User"), object(json!({ "flags": strings() }))] }),
        ),
        ("post", "/tenants/{tenant}/users") | ("patch", "/tenants/{tenant}/users/{user}") => {
            r("User")
        }
        ("get", "/tenants/{tenant}/webhooks") => list_of("webhooks", r("Webhook")),
        ("post", "/tenants/{tenant}/webhooks") => json!({
            "allOf": [r("Webhook"), { "type": "object", "required": ["secret"], "properties": { "secret": s() } }]
        }),
        ("get", "/tenants/{tenant}/webhooks/{webhook}/deliveries") => object(json!({
            "webhook": s(),
            "deliveries": { "type": "array", "items": r("WebhookDelivery") }
        })),
        ("post", "/tenants/{tenant}/webhooks/{webhook}/ping") => {
            object(json!({ "webhook": s(), "queued": s() }))
        }
        ("get", "/tenants/{tenant}/restrictions") => list_of("restrictions", r("Restriction")),
        ("get", "/tenants/{tenant}/restrictions/{restriction}") => json!({
            "type": "object", "required": ["restriction", "checklist"],
            "properties": {
                "restriction": r("Restriction"),
                "checklist": { "type": "array", "nullable": true, "items": { "type": "object" } }
            }
        }),
        ("post", "/tenants/{tenant}/restrictions/{restriction}/release")
        | ("post", "/tenants/{tenant}/restrictions/{restriction}/request-release")
        | ("post", "/tenants/{tenant}/restrictions/{restriction}/approve")
        | ("post", "/tenants/{tenant}/restrictions/{restriction}/refuse") => restriction(),
        ("get", "/tenants/{tenant}/alerts") => list_of("alerts", r("Alert")),
        ("get", "/tenants/{tenant}/counters") => object(json!({
            "counters": { "type": "array", "items": r("Counter") },
            "auth_lockouts": { "type": "array", "items": r("AuthLockout") }
        })),
        ("get", "/tenants/{tenant}/audit") | ("get", "/audit") => list_of("audit", r("AuditEntry")),
        ("get", "/tenants/{tenant}/trace") | ("get", "/trace") => object(json!({
            "messages": { "type": "array", "items": r("TraceMessage") },
            "next": s_null()
        })),
        ("get", "/tenants/{tenant}/accounts") | ("get", "/accounts") => {
            list_of("accounts", r("Account"))
        }
        ("post", "/tenants/{tenant}/accounts") | ("post", "/accounts") => object(json!({
            "account": r("Account"), "setup_link": s(), "expires_at": int()
        })),
        ("get", "/setup/{token}") => object(json!({
            "email": s(), "role": s(), "tenant": s_null(), "totp_secret": s(),
            "otpauth_uri": s(), "expires_at": int(), "next": s()
        })),
        ("post", "/setup/{token}") => object(json!({ "recovery_codes": strings(), "note": s() })),
        ("post", "/login") => object(json!({
            "account": r("Account"), "csrf_token": s(), "expires_at": int(),
            "recovery_codes_left": int()
        })),
        ("get", "/tokens") => list_of("tokens", r("Token")),
        ("get", "/queue") => list_of("messages", r("QueuedMessage")),
        (_, p) if p.starts_with("/queue/{message}/") => {
            object(json!({ "message": s(), "done": s() }))
        }
        _ => return None,
    })
}
