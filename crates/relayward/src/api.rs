//! The management API under `/api/v1` (issue 6, first part): API tokens for scripts, tenant
//! isolation in one place, and the resources that exist so far. Every action goes through
//! `service.rs`, as the command line's do.
//!
//! One table (`OPERATIONS`) lists every operation with its method, path, who may call it and its
//! handler; the router and the OpenAPI document at `/api/v1/openapi.json` are both built from it,
//! so the document cannot drift from what is served.
//!
//! Access: an operator token reaches everything; an admin or reader token reaches its own tenant
//! only, and any other tenant's objects answer 404 exactly as a tenant that does not exist
//! (`TenantAccess`, the one place that decides). Readers read; writing needs an admin.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post, put};
use relayward_guard::Role;
use relayward_store::{ApiToken, DomainKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::AppState;
use crate::service::{Actor, DomainVerification, NotFound, TokenError};

/// An error as the API answers it: a status and `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} does not exist"))
    }

    /// A failed service action: the caller's request was refused for the reason given; the
    /// status follows the error's type (missing → 404, clash → 409, otherwise 422).
    fn refused(e: anyhow::Error) -> ApiError {
        use relayward_store::StoreError;
        let status = if e.downcast_ref::<NotFound>().is_some() {
            StatusCode::NOT_FOUND
        } else {
            match e.downcast_ref::<StoreError>() {
                Some(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
                Some(StoreError::Exists { .. } | StoreError::ManagedByConfig(_)) => {
                    StatusCode::CONFLICT
                }
                Some(StoreError::Db(_) | StoreError::Open { .. } | StoreError::Task(_)) => {
                    return ApiError::internal(format!("{e:#}"));
                }
                Some(StoreError::Invalid(_)) | None => StatusCode::UNPROCESSABLE_ENTITY,
            }
        };
        ApiError::new(status, format!("{e:#}"))
    }

    fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "API request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; see the relay's log",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(json!({ "error": self.message }))).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"relayward\""),
            );
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Who calls, from their API token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token: ApiToken,
    pub client: String,
}

impl Principal {
    fn operator(&self) -> bool {
        self.token.role == "operator"
    }

    /// The actor the service layer records in the audit log.
    fn actor(&self) -> Actor {
        Actor {
            name: format!("token:{} ({})", self.token.id, self.token.name),
            role: if self.operator() {
                Role::Operator
            } else {
                Role::Admin
            },
            client: self.client.clone(),
            // API tokens carry no second factor; operator actions that need MFA come with
            // console sessions.
            mfa: false,
        }
    }

    fn require_operator(&self) -> ApiResult<()> {
        if self.operator() {
            Ok(())
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this needs an operator token",
            ))
        }
    }
}

#[axum::async_trait]
impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Principal> {
        let unauthorized = |e: TokenError| match e {
            TokenError::Store(s) => ApiError::internal(s),
            e => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
        };
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| unauthorized(TokenError::Missing))?;
        let text = value
            .strip_prefix("Bearer ")
            .ok_or_else(|| unauthorized(TokenError::Missing))?
            .trim();
        let token = state
            .service
            .authenticate_token(text)
            .await
            .map_err(unauthorized)?;
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        Ok(Principal { token, client })
    }
}

/// A request about an existing tenant, allowed for this caller: the only way handlers reach a
/// tenant. Another tenant's name answers 404, exactly like a tenant that does not exist.
pub struct TenantAccess {
    pub principal: Principal,
    pub tenant: String,
}

impl TenantAccess {
    fn require_admin(&self) -> ApiResult<()> {
        if self.principal.token.role == "reader" {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "a reader token cannot change anything",
            ));
        }
        Ok(())
    }
}

#[axum::async_trait]
impl FromRequestParts<AppState> for TenantAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<TenantAccess> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let Path(params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        let tenant = params
            .get("tenant")
            .cloned()
            .ok_or_else(|| ApiError::not_found("tenant"))?;
        let mine = principal.operator() || principal.token.tenant.as_deref() == Some(&tenant);
        let exists = mine
            && state
                .store
                .tenant(&tenant)
                .await
                .map_err(ApiError::internal)?
                .is_some();
        if !exists {
            return Err(ApiError::not_found(&format!("tenant '{tenant}'")));
        }
        Ok(TenantAccess { principal, tenant })
    }
}

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No token needed.
    Public,
    /// Any valid token.
    Any,
    /// Operator tokens only.
    Operator,
    /// The tenant's readers, admins and operators.
    TenantRead,
    /// The tenant's admins and operators.
    TenantWrite,
}

pub struct Operation {
    pub method: &'static str,
    /// OpenAPI style: `/tenants/{tenant}`.
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    /// The success status.
    pub ok: u16,
    pub route: fn() -> MethodRouter<AppState>,
    /// More of the operation's description (query parameters, request body, extra responses),
    /// merged into what the path and access give.
    pub doc: Option<fn() -> Value>,
}

pub const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/openapi.json",
        summary: "This document.",
        access: Access::Public,
        ok: 200,
        route: || get(openapi),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/whoami",
        summary: "The calling token: its role, tenant and name.",
        access: Access::Any,
        ok: 200,
        route: || get(whoami),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants",
        summary: "Tenants by name, paged with `after` and `limit` (a tenant token sees its own).",
        access: Access::Any,
        ok: 200,
        route: || get(list_tenants),
        doc: Some(paging_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}",
        summary: "One tenant: language, subscription end date, admins, domains, connectors, users.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(get_tenant),
        doc: None,
    },
    Operation {
        method: "put",
        path: "/tenants/{tenant}/forwarding",
        summary: "Set the tenant's automatic forwarding control: on, off, or listed (only to the given domains).",
        access: Access::TenantWrite,
        ok: 200,
        route: || put(set_forwarding),
        doc: Some(forwarding_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/domains",
        summary: "Accepted domains with their verification state and the TXT record to publish.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_domains),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains",
        summary: "Add an accepted domain; it counts once its TXT proof is verified.",
        access: Access::TenantWrite,
        ok: 201,
        route: || post(add_domain),
        doc: Some(new_domain_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/verify",
        summary: "Look up the domain's TXT proof now and mark it verified when found.",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(verify_domain),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/domains/{domain}/dkim",
        summary: "The domain's DKIM keys: each selector's DNS record to publish and its state (pending, active, retiring, retired).",
        access: Access::TenantRead,
        ok: 200,
        route: || get(dkim_keys),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/dkim/rotate",
        summary: "Start a key rotation: a new RSA and Ed25519 pair, pending until its records are published and it is activated.",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(dkim_rotate),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/dkim/activate",
        summary: "Sign with the pending keys once their records are found in DNS; the old keys become retiring (keep their records a week).",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(dkim_activate),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/domains/{domain}/dkim/retire",
        summary: "End a rotation's overlap: retiring keys become retired and their records may be removed.",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(dkim_retire),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/webhooks",
        summary: "The tenant's webhooks (never their secrets).",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_webhooks),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/webhooks",
        summary: "Register a webhook for alerts and restriction changes; the answer shows its signing secret once.",
        access: Access::TenantWrite,
        ok: 201,
        route: || post(create_webhook),
        doc: Some(new_webhook_doc),
    },
    Operation {
        method: "delete",
        path: "/tenants/{tenant}/webhooks/{webhook}",
        summary: "Remove a webhook (its queued deliveries go with it).",
        access: Access::TenantWrite,
        ok: 204,
        route: || delete(delete_webhook),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/webhooks/{webhook}/deliveries",
        summary: "The webhook's delivery log, newest first: event, attempts, state, last HTTP status or error, next attempt.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(webhook_deliveries),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/webhooks/{webhook}/ping",
        summary: "Queue a signed ping event to the webhook.",
        access: Access::TenantWrite,
        ok: 202,
        route: || post(ping_webhook),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/restrictions",
        summary: "Current and past restrictions with cause and history.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_restrictions),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/alerts",
        summary: "Alerts, newest first.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_alerts),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/counters",
        summary: "Every counter beside its threshold.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(counters),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/audit",
        summary: "The tenant's audit log, newest first.",
        access: Access::TenantWrite,
        ok: 200,
        route: || get(tenant_audit),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tokens",
        summary: "API tokens (never their secrets).",
        access: Access::Operator,
        ok: 200,
        route: || get(list_tokens),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/audit",
        summary: "The whole audit log, newest first.",
        access: Access::Operator,
        ok: 200,
        route: || get(audit),
        doc: None,
    },
];

/// The `/api/v1` router, built from `OPERATIONS`.
pub fn router() -> axum::Router<AppState> {
    let mut paths: Vec<(&str, MethodRouter<AppState>)> = Vec::new();
    for op in OPERATIONS {
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, r)) => *r = std::mem::take(r).merge((op.route)()),
            None => paths.push((op.path, (op.route)())),
        }
    }
    let mut router = axum::Router::new();
    for (path, methods) in paths {
        router = router.route(&axum_path(path), methods);
    }
    router.fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API path") })
}

/// `/tenants/{tenant}` → `/tenants/:tenant` (axum 0.7's syntax).
fn axum_path(path: &str) -> String {
    path.split('/')
        .map(
            |seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => format!(":{name}"),
                None => seg.to_string(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// The OpenAPI 3 document, from `OPERATIONS`.
pub fn openapi_document() -> Value {
    let mut paths = serde_json::Map::new();
    for op in OPERATIONS {
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } })
            })
            .collect();
        let mut responses = serde_json::Map::new();
        responses.insert(
            op.ok.to_string(),
            if op.ok == 204 {
                json!({ "description": "done; no content" })
            } else {
                json!({ "description": "success", "content": { "application/json": { "schema": {} } } })
            },
        );
        let error = error_response();
        if op.access != Access::Public {
            responses.insert("401".into(), error.clone());
        }
        if matches!(op.access, Access::Operator | Access::TenantWrite) {
            responses.insert("403".into(), error.clone());
        }
        if !params.is_empty() {
            responses.insert("404".into(), error.clone());
        }
        if matches!(op.method, "post" | "put" | "delete") {
            responses.insert("409".into(), error.clone());
            responses.insert("422".into(), error.clone());
            responses.insert("400".into(), error.clone());
        }
        let mut o = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": responses,
            "x-relayward-access": format!("{:?}", op.access),
        });
        if op.access != Access::Public {
            o["security"] = json!([{ "token": [] }]);
        }
        if let Some(doc) = op.doc {
            merge_doc(&mut o, doc());
        }
        let entry = paths
            .entry(format!("/api/v1{}", op.path))
            .or_insert_with(|| json!({}));
        entry[op.method] = o;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "Relayward management API", "version": env!("CARGO_PKG_VERSION") },
        "paths": paths,
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer" } },
            "schemas": { "Error": { "type": "object", "required": ["error"], "properties": { "error": { "type": "string" } } } }
        }
    })
}

/// Adds `extra` to an operation's description: parameters are appended, responses added,
/// anything else set.
fn merge_doc(op: &mut Value, extra: Value) {
    let Value::Object(extra) = extra else {
        return;
    };
    for (k, v) in extra {
        match (k.as_str(), op.get_mut(&k), v) {
            ("parameters", Some(Value::Array(have)), Value::Array(more)) => have.extend(more),
            ("responses", Some(Value::Object(have)), Value::Object(more)) => have.extend(more),
            (_, _, v) => op[k.as_str()] = v,
        }
    }
}

fn error_response() -> Value {
    json!({ "description": "error", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn paging_doc() -> Value {
    json!({
        "parameters": [
            { "name": "after", "in": "query", "required": false, "schema": { "type": "string" } },
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
        ],
        "responses": { "400": error_response() }
    })
}

fn new_domain_doc() -> Value {
    json!({
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": { "type": "string" },
                    "kind": { "type": "string", "enum": ["authoritative", "internal_relay"] },
                    "match_subdomains": { "type": "boolean" }
                },
                "additionalProperties": false
            } } }
        }
    })
}

async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

async fn whoami(p: Principal) -> Json<Value> {
    Json(
        json!({ "id": p.token.id, "name": p.token.name, "role": p.token.role, "tenant": p.token.tenant }),
    )
}

#[derive(Deserialize)]
struct Paging {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_tenants(
    p: Principal,
    State(s): State<AppState>,
    q: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 1000",
        ));
    }
    let tenants = match &p.token.tenant {
        Some(own) if !p.operator() => s
            .store
            .tenant_data(own)
            .await
            .map_err(ApiError::internal)?
            .and_then(|d| d.tenant)
            .into_iter()
            .collect(),
        _ => s
            .store
            .tenants(q.after.as_deref(), limit)
            .await
            .map_err(ApiError::internal)?,
    };
    Ok(Json(json!({ "tenants": tenants })))
}

async fn tenant_data(s: &AppState, tenant: &str) -> ApiResult<relayward_store::TenantData> {
    s.store
        .tenant_data(tenant)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("tenant '{tenant}'")))
}

async fn get_tenant(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let d = tenant_data(&s, &a.tenant).await?;
    let users: Vec<Value> = d
        .users
        .iter()
        .map(|u| json!({ "address": u.address, "aliases": u.aliases, "forward_to": u.forward_to, "forward_only": u.forward_only, "has_password": u.password_hash.is_some() }))
        .collect();
    Ok(Json(json!({
        "tenant": d.tenant,
        "domains": d.domains.iter().map(domain_json).collect::<Vec<_>>(),
        "connectors": d.connectors,
        "users": users,
        "routes": d.routes,
    })))
}

fn domain_json(d: &relayward_store::Domain) -> Value {
    json!({
        "name": d.name,
        "kind": d.kind.as_str(),
        "match_subdomains": d.match_subdomains,
        "verified": d.verified,
        "txt_record": { "name": d.name, "type": "TXT", "value": format!("relayward-verification={}", d.verification_token) },
    })
}

fn forwarding_doc() -> Value {
    json!({
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "type": "object",
                "additionalProperties": false,
                "required": ["mode"],
                "properties": {
                    "mode": { "type": "string", "enum": ["on", "off", "listed"] },
                    "domains": { "type": "array", "items": { "type": "string" } }
                }
            } } }
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForwardingBody {
    mode: String,
    #[serde(default)]
    domains: Vec<String>,
}

async fn set_forwarding(
    a: TenantAccess,
    State(s): State<AppState>,
    body: Result<Json<ForwardingBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    a.require_admin()?;
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    s.service
        .set_forwarding(&a.tenant, &body.mode, &body.domains, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(
        json!({ "tenant": a.tenant, "forwarding": body.mode, "domains": body.domains }),
    ))
}

async fn list_domains(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let d = tenant_data(&s, &a.tenant).await?;
    Ok(Json(
        json!({ "domains": d.domains.iter().map(domain_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDomain {
    name: String,
    kind: Option<String>,
    match_subdomains: Option<bool>,
}

async fn add_domain(
    a: TenantAccess,
    State(s): State<AppState>,
    body: Result<Json<NewDomain>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    a.require_admin()?;
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let kind = match body.kind.as_deref() {
        None => DomainKind::Authoritative,
        Some(k) => DomainKind::parse(k).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "kind must be authoritative or internal_relay",
            )
        })?,
    };
    let d = s
        .service
        .add_domain(
            &a.tenant,
            &body.name,
            kind,
            body.match_subdomains.unwrap_or(false),
            false,
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(domain_json(&d))))
}

async fn verify_domain(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    a.require_admin()?;
    let found = s
        .service
        .verify_domain(
            &a.tenant,
            &domain,
            s.resolver.as_ref(),
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(match found {
        DomainVerification::Verified => json!({ "domain": domain, "verified": true }),
        DomainVerification::AlreadyVerified => {
            json!({ "domain": domain, "verified": true, "already": true })
        }
        DomainVerification::NotFound { expected, found } => json!({
            "domain": domain,
            "verified": false,
            "expected": expected,
            "found": found,
        }),
    }))
}

fn new_webhook_doc() -> Value {
    json!({
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "type": "object",
                "required": ["url"],
                "properties": {
                    "url": { "type": "string", "description": "http:// or https:// URL" },
                    "events": { "type": "array", "items": { "type": "string", "enum": crate::webhooks::EVENTS } }
                },
                "additionalProperties": false
            } } }
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    #[serde(default)]
    events: Vec<String>,
}

async fn list_webhooks(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let hooks = s
        .store
        .webhooks(Some(&a.tenant))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "webhooks": hooks })))
}

async fn create_webhook(
    a: TenantAccess,
    State(s): State<AppState>,
    body: Result<Json<NewWebhook>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    a.require_admin()?;
    let Json(body) = body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let hook = s
        .service
        .create_webhook(&a.tenant, &body.url, &body.events, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    let mut out = serde_json::to_value(&hook).unwrap_or_default();
    out["secret"] = json!(hook.secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn delete_webhook(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    a.require_admin()?;
    s.service
        .delete_webhook(&a.tenant, &id, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn webhook_deliveries(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.service
        .webhook(&a.tenant, &id)
        .await
        .map_err(ApiError::refused)?;
    let log = s
        .store
        .webhook_deliveries(&id, 200)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "webhook": id, "deliveries": log })))
}

async fn ping_webhook(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    a.require_admin()?;
    s.service
        .ping_webhook(&a.tenant, &id, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "webhook": id, "queued": "ping" })),
    ))
}

fn dkim_json(domain: &str, keys: &[relayward_store::DkimKey]) -> Json<Value> {
    Json(json!({
        "domain": domain,
        "keys": keys.iter().map(|k| {
            let (name, value) = crate::dkim::record(k);
            json!({
                "selector": k.selector,
                "algorithm": k.algorithm,
                "state": k.state.as_str(),
                "since": k.state_since,
                "created_at": k.created_at,
                "record": { "name": name, "type": "TXT", "value": value },
            })
        }).collect::<Vec<_>>(),
    }))
}

async fn dkim_keys(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let keys = s
        .service
        .dkim_keys(&a.tenant, &domain)
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_rotate(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    a.require_admin()?;
    s.service
        .rotate_dkim(&a.tenant, &domain, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    let keys = s
        .service
        .dkim_keys(&a.tenant, &domain)
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_activate(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    a.require_admin()?;
    let keys = s
        .service
        .activate_dkim(
            &a.tenant,
            &domain,
            s.resolver.as_ref(),
            false,
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_retire(
    a: TenantAccess,
    State(s): State<AppState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    a.require_admin()?;
    let keys = s
        .service
        .retire_dkim(&a.tenant, &domain, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn list_restrictions(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let r = s
        .service
        .restrictions(Some(&a.tenant), true)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "restrictions": r })))
}

async fn list_alerts(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let alerts = s
        .store
        .alerts(Some(&a.tenant), 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "alerts": alerts })))
}

async fn counters(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let c = s
        .service
        .counters(&a.tenant)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "counters": c })))
}

async fn tenant_audit(a: TenantAccess, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    a.require_admin()?;
    let log = s
        .store
        .audit_log(Some(&a.tenant), 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "audit": log })))
}

async fn list_tokens(p: Principal, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    p.require_operator()?;
    let t = s.store.tokens(None).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "tokens": t })))
}

async fn audit(p: Principal, State(s): State<AppState>) -> ApiResult<Json<Value>> {
    p.require_operator()?;
    let log = s
        .store
        .audit_log(None, 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "audit": log })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_operation_once() {
        let doc = openapi_document();
        for op in OPERATIONS {
            let p = &doc["paths"][format!("/api/v1{}", op.path)][op.method];
            assert!(p.is_object(), "{} {} missing", op.method, op.path);
        }
        assert_eq!(
            axum_path("/tenants/{tenant}/domains/{domain}/verify"),
            "/tenants/:tenant/domains/:domain/verify"
        );
    }
}
