//! The management API under `/api/v1`: API tokens for scripts and console sessions, tenant
//! isolation in one place, and every resource. Every action goes through the control plane
//! (`relayward_control`), as the command line's do.
//!
//! One table (`OPERATIONS`) lists every operation with its method, path, who may call it and its
//! handler; the router and the OpenAPI document at `/api/v1/openapi.json` are both built from it,
//! so the document cannot drift from what is served.
//!
//! Access: an operator token reaches everything; an admin or reader token reaches its own tenant
//! only, and any other tenant's objects answer 404 exactly as a tenant that does not exist
//! (`TenantAccess`, the one place that decides). Readers read; writing needs an admin.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, patch, post, put};
use relayward_store::{ApiToken, DomainKind};
use serde::Deserialize;
use serde_json::{Value, json};

mod schemas;

use relayward_control::{
    AccountRole, Actor, Control, DomainVerification, NotFound, TokenError, Via,
};

/// What the API's handlers reach: the control plane and, for queue actions and domain checks,
/// the running relay's queue and resolver.
#[derive(Clone)]
pub struct ApiState {
    /// Every admin and operator action (the command line calls the same).
    pub control: Arc<Control>,
    pub queue: relayward_delivery::Queue,
    pub resolver: Arc<dyn relayward_delivery::dns::Resolver>,
    /// `http://host:port` of the HTTP listener, for links the API hands out (setup links).
    pub base_url: String,
    /// Sign-in attempts per client address.
    pub logins: Arc<relayward_control::accounts::LoginLimiter>,
}

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
        } else if e.downcast_ref::<relayward_control::Forbidden>().is_some() {
            StatusCode::FORBIDDEN
        } else if e.downcast_ref::<relayward_control::Conflict>().is_some() {
            StatusCode::CONFLICT
        } else if e.downcast_ref::<relayward_control::MfaRequired>().is_some() {
            StatusCode::FORBIDDEN
        } else if let Some(r) = e.downcast_ref::<relayward_control::accounts::SetupRefused>() {
            match r {
                relayward_control::accounts::SetupRefused::NotBegun => StatusCode::CONFLICT,
                relayward_control::accounts::SetupRefused::WrongCode => StatusCode::FORBIDDEN,
            }
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
    /// `token:<id> (<name>)` or `account:<email>`.
    pub name: String,
    pub role: AccountRole,
    pub tenant: Option<String>,
    pub client: String,
    /// Signed in with a second factor (console sessions); API tokens carry none.
    pub mfa: bool,
    /// The token's id, for `whoami`.
    pub token_id: Option<String>,
    /// The session's cookie value, for sign-out.
    pub session_cookie: Option<String>,
}

impl Principal {
    fn operator(&self) -> bool {
        self.role == AccountRole::Operator
    }

    /// The actor the service layer records in the audit log.
    fn actor(&self) -> Actor {
        Actor {
            name: self.name.clone(),
            role: self.role.acting(),
            via: if self.session_cookie.is_some() {
                Via::Session
            } else {
                Via::Token
            },
            client: self.client.clone(),
            mfa: self.mfa,
        }
    }

    /// `None` for a token whose stored role this version does not know.
    fn from_token(token: ApiToken, client: String) -> Option<Principal> {
        Some(Principal {
            name: format!("token:{} ({})", token.id, token.name),
            role: AccountRole::parse(&token.role)?,
            tenant: token.tenant,
            client,
            mfa: false,
            token_id: Some(token.id),
            session_cookie: None,
        })
    }
}

/// The session cookie's value in a request, if it carries one.
fn session_cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == relayward_control::accounts::SESSION_COOKIE && !v.is_empty())
                .then(|| v.to_string())
        })
}

#[axum::async_trait]
impl FromRequestParts<ApiState> for Principal {
    type Rejection = ApiError;

    /// A bearer token, or else a session cookie; with the cookie, every change must carry the
    /// session's CSRF token in `X-CSRF-Token` (a page of another site can make the browser send
    /// the cookie, never read the token).
    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<Principal> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let unauthorized = |e: TokenError| match e {
            TokenError::Store(s) => ApiError::internal(s),
            e => ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()),
        };
        let client = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
        if let Some(value) = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        {
            let text = value
                .strip_prefix("Bearer ")
                .ok_or_else(|| unauthorized(TokenError::Missing))?
                .trim();
            let token = state
                .control
                .authenticate_token(text)
                .await
                .map_err(unauthorized)?;
            return Principal::from_token(token, client)
                .ok_or_else(|| unauthorized(TokenError::Invalid));
        }
        let Some(cookie) = session_cookie(parts) else {
            return Err(unauthorized(TokenError::Missing));
        };
        let Some((account, session)) = state
            .control
            .session(&cookie)
            .await
            .map_err(ApiError::internal)?
        else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "the session has ended; sign in again",
            ));
        };
        let safe = matches!(parts.method.as_str(), "GET" | "HEAD" | "OPTIONS");
        if !safe {
            let given = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !relayward_control::accounts::same(given.as_bytes(), session.csrf.as_bytes()) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token: changes made with a session cookie must carry the session's CSRF token",
                ));
            }
        }
        Ok(Principal {
            name: format!("account:{}", account.email),
            role: AccountRole::parse(&account.role).ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "the account's role is not known")
            })?,
            tenant: account.tenant,
            client,
            mfa: session.mfa,
            token_id: None,
            session_cookie: Some(cookie),
        })
    }
}

/// A request about an existing tenant, allowed for this caller: the only way handlers reach a
/// tenant. Another tenant's name answers 404, exactly like a tenant that does not exist. The
/// operation table's access layer has already decided this for every tenant-scoped operation
/// (`enforce`); handlers take the verdict from the request.
#[derive(Debug, Clone)]
pub struct TenantAccess {
    pub principal: Principal,
    pub tenant: String,
}

/// Finds the caller's tenant access: the tenant named in the path, which must exist and be the
/// caller's own (operators reach every tenant).
async fn tenant_access(
    parts: &mut Parts,
    state: &ApiState,
    principal: Principal,
) -> ApiResult<TenantAccess> {
    let Path(params) =
        Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
    let tenant = params
        .get("tenant")
        .cloned()
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    let mine = principal.operator() || principal.tenant.as_deref() == Some(&tenant);
    let exists = mine
        && state
            .control
            .tenant(&tenant)
            .await
            .map_err(ApiError::internal)?
            .is_some();
    if !exists {
        return Err(ApiError::not_found(&format!("tenant '{tenant}'")));
    }
    Ok(TenantAccess { principal, tenant })
}

#[axum::async_trait]
impl FromRequestParts<ApiState> for TenantAccess {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> ApiResult<TenantAccess> {
        if let Some(a) = parts.extensions.get::<TenantAccess>() {
            return Ok(a.clone());
        }
        let principal = Principal::from_request_parts(parts, state).await?;
        tenant_access(parts, state, principal).await
    }
}

/// The access layer every operation runs behind: it answers 401 without valid credentials,
/// 404 for a tenant that is not the caller's (exactly as for one that does not exist), 403 for
/// a role the operation's declared access does not admit, and otherwise hands the caller (and
/// the tenant) to the handler. Handlers hold no checks of their own: what the table declares
/// is what is enforced.
async fn enforce(
    State((state, access, scoped)): State<(ApiState, Access, bool)>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if access == Access::Public {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let principal = match Principal::from_request_parts(&mut parts, &state).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // Another tenant's objects answer 404 before anything else is said about them, even for
    // operations only operators may call.
    if scoped {
        match tenant_access(&mut parts, &state, principal.clone()).await {
            Ok(a) => {
                parts.extensions.insert(a);
            }
            Err(e) => return e.into_response(),
        }
    }
    let refused = match access {
        Access::Public | Access::Any | Access::TenantRead => None,
        Access::Operator => (!principal.operator()).then_some("this needs an operator"),
        Access::TenantWrite => {
            (principal.role == AccountRole::Reader).then_some("a reader cannot change anything")
        }
    };
    if let Some(why) = refused {
        return ApiError::new(StatusCode::FORBIDDEN, why).into_response();
    }
    parts.extensions.insert(principal);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
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
    pub route: fn() -> MethodRouter<ApiState>,
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
        path: "/setup/{token}",
        summary: "Open a one-time setup link: the account, and the TOTP key to enrol in an authenticator app.",
        access: Access::Public,
        ok: 200,
        route: || get(setup_begin),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/setup/{token}",
        summary: "Finish setup: a password (12 characters or more) and a current TOTP code; answers the recovery codes, once.",
        access: Access::Public,
        ok: 200,
        route: || post(setup_finish),
        doc: Some(setup_doc),
    },
    Operation {
        method: "post",
        path: "/login",
        summary: "Sign in with e-mail, password and a TOTP code (or an unused recovery code): sets the session cookie and answers the CSRF token. Locked for 15 minutes after 5 failures; 20 attempts per address per 10 minutes.",
        access: Access::Public,
        ok: 200,
        route: || post(login),
        doc: Some(login_doc),
    },
    Operation {
        method: "post",
        path: "/logout",
        summary: "End the session.",
        access: Access::Any,
        ok: 204,
        route: || post(logout),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/accounts",
        summary: "Every account (operators).",
        access: Access::Operator,
        ok: 200,
        route: || get(list_accounts),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/accounts",
        summary: "Make an account of any role; answers its one-time setup link (no default passwords).",
        access: Access::Operator,
        ok: 201,
        route: || post(create_operator_account),
        doc: Some(new_account_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/accounts",
        summary: "The tenant's admin and reader accounts.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_tenant_accounts),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/accounts",
        summary: "Make an admin or reader account of the tenant; answers its one-time setup link.",
        access: Access::TenantWrite,
        ok: 201,
        route: || post(create_tenant_account),
        doc: Some(new_tenant_account_doc),
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
        method: "post",
        path: "/tenants",
        summary: "Add a tenant (operators): name, language, subscription end date, admin addresses for alerts.",
        access: Access::Operator,
        ok: 201,
        route: || post(create_tenant),
        doc: Some(new_tenant_doc),
    },
    Operation {
        method: "patch",
        path: "/tenants/{tenant}",
        summary: "Change a tenant's language and admin addresses, or (operators) its subscription end date (null: open-ended).",
        access: Access::TenantWrite,
        ok: 200,
        route: || patch(update_tenant),
        doc: Some(tenant_patch_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/connectors",
        summary: "Connectors: IP ranges, certificate name, require-TLS, may-relay-unregistered, who made them and when, reviewed mark.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_connectors),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/connectors",
        summary: "Add a connector (unreviewed until an admin reviews it).",
        access: Access::TenantWrite,
        ok: 201,
        route: || post(create_connector),
        doc: Some(new_connector_doc),
    },
    Operation {
        method: "delete",
        path: "/tenants/{tenant}/connectors/{connector}",
        summary: "Remove a connector.",
        access: Access::TenantWrite,
        ok: 204,
        route: || delete(delete_connector),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/connectors/{connector}/review",
        summary: "Mark a connector reviewed (remediation checklist item 3).",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(review_connector),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/users",
        summary: "Users: address, aliases, forwarding, whether SMTP AUTH is set (never the password).",
        access: Access::TenantRead,
        ok: 200,
        route: || get(list_users),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/users",
        summary: "Add a user in one of the tenant's domains: aliases, forwarding, SMTP AUTH password (12 characters or more).",
        access: Access::TenantWrite,
        ok: 201,
        route: || post(create_user),
        doc: Some(new_user_doc),
    },
    Operation {
        method: "patch",
        path: "/tenants/{tenant}/users/{user}",
        summary: "Change a user's password (null removes SMTP AUTH), aliases or forwarding (forward_to null stops it).",
        access: Access::TenantWrite,
        ok: 200,
        route: || patch(update_user),
        doc: Some(user_patch_doc),
    },
    Operation {
        method: "delete",
        path: "/tenants/{tenant}/users/{user}",
        summary: "Remove a user.",
        access: Access::TenantWrite,
        ok: 204,
        route: || delete(delete_user),
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
        path: "/tenants/{tenant}/limits",
        summary: "The tenant's limits in force (SPEC section 4) and the overrides set for it through the API.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(get_limits),
        doc: None,
    },
    Operation {
        method: "put",
        path: "/tenants/{tenant}/limits",
        summary: "Replace the tenant's limit overrides (operators): `[limits]` keys of the configuration file; {} restores the service-wide defaults. In force within two seconds.",
        access: Access::Operator,
        ok: 200,
        route: || put(set_limits),
        doc: Some(limits_doc),
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
        path: "/tenants/{tenant}/restrictions/{restriction}",
        summary: "One restriction: cause, history and, for a tenant restriction, the remediation checklist with evidence.",
        access: Access::TenantRead,
        ok: 200,
        route: || get(restriction_detail),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/release",
        summary: "Release a user or connector (admins, 3 times per 24 h), or any restriction (operators). Needs a session signed in with TOTP.",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(release_restriction),
        doc: Some(note_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/request-release",
        summary: "Ask for a tenant restriction's release once its checklist is complete.",
        access: Access::TenantWrite,
        ok: 200,
        route: || post(request_release),
        doc: Some(note_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/approve",
        summary: "Approve a release request (operators; needs a session signed in with TOTP).",
        access: Access::Operator,
        ok: 200,
        route: || post(approve_release),
        doc: Some(note_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/refuse",
        summary: "Refuse a release request with a reason the tenant's admins can act on (operators).",
        access: Access::Operator,
        ok: 200,
        route: || post(refuse_release),
        doc: Some(note_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/trace",
        summary: "Message trace of the tenant, newest first: filter by message id, sender, recipient, status (Delivered, Failed, Pending, Deferred) and time (Unix ms); page with `before` (the previous page's `next`).",
        access: Access::TenantRead,
        ok: 200,
        route: || get(tenant_trace),
        doc: Some(tenant_trace_doc),
    },
    Operation {
        method: "get",
        path: "/trace",
        summary: "Message trace across tenants (operators): the same filters, and `tenant`.",
        access: Access::Operator,
        ok: 200,
        route: || get(all_trace),
        doc: Some(trace_doc),
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
        path: "/queue",
        summary: "Messages waiting for delivery, soonest first (held ones last): filter by tenant and by recipient domain (destination). Operators.",
        access: Access::Operator,
        ok: 200,
        route: || get(queue_list),
        doc: Some(queue_list_doc),
    },
    Operation {
        method: "post",
        path: "/queue/{message}/retry",
        summary: "Try the message again now. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        route: || post(queue_retry),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/hold",
        summary: "Hold the message: kept, not delivered, until released. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        route: || post(queue_hold),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/release",
        summary: "Release a held message; it is tried at once. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        route: || post(queue_release),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/bounce",
        summary: "Fail the message's pending recipients now; its sender gets an NDR. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        route: || post(queue_bounce),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/purge",
        summary: "Delete the message from the queue without an NDR. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        route: || post(queue_purge),
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
        path: "/audit/export",
        summary: "The whole audit log as JSON lines (application/x-ndjson), oldest first (operators).",
        access: Access::Operator,
        ok: 200,
        route: || get(audit_export),
        doc: Some(ndjson_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/audit/export",
        summary: "The tenant's audit log as JSON lines (application/x-ndjson), oldest first (its admins and operators).",
        access: Access::TenantWrite,
        ok: 200,
        route: || get(tenant_audit_export),
        doc: Some(ndjson_doc),
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

/// The `/api/v1` router, built from `OPERATIONS`: each operation's handler behind the access
/// layer that enforces its declared access.
pub fn router(state: ApiState) -> axum::Router {
    let mut paths: Vec<(&str, MethodRouter<ApiState>)> = Vec::new();
    for op in OPERATIONS {
        let guarded = (op.route)().layer(axum::middleware::from_fn_with_state(
            (state.clone(), op.access, op.path.contains("{tenant}")),
            enforce,
        ));
        match paths.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, r)) => *r = std::mem::take(r).merge(guarded),
            None => paths.push((op.path, guarded)),
        }
    }
    let mut router = axum::Router::new();
    for (path, methods) in paths {
        router = router.route(&axum_path(path), methods);
    }
    router
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such API path") })
        .with_state(state)
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
        if matches!(op.method, "post" | "put" | "patch" | "delete") {
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
            o["security"] = json!([{ "token": [] }, { "session": [] }]);
        }
        if let Some(schema) = crate::schemas::response(op.method, op.path) {
            o["responses"][op.ok.to_string()]["content"]["application/json"]["schema"] = schema;
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
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer" },
                "session": { "type": "apiKey", "in": "cookie", "name": "rw_session", "description": "console session from POST /api/v1/login; changes also need the X-CSRF-Token header" }
            },
            "schemas": crate::schemas::components()
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
                    "kind": { "type": "string", "enum": ["authoritative", "internal_relay"], "nullable": true },
                    "match_subdomains": { "type": "boolean", "nullable": true }
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
        json!({ "id": p.token_id, "name": p.name, "role": p.role, "tenant": p.tenant, "mfa": p.mfa }),
    )
}

#[derive(Deserialize)]
struct Paging {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_tenants(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit must be between 1 and 1000",
        ));
    }
    let tenants = match &p.tenant {
        Some(own) if !p.operator() => s
            .control
            .tenant_data(own)
            .await
            .map_err(ApiError::internal)?
            .and_then(|d| d.tenant)
            .into_iter()
            .collect(),
        _ => s
            .control
            .tenants(q.after.as_deref(), limit)
            .await
            .map_err(ApiError::internal)?,
    };
    Ok(Json(json!({ "tenants": tenants })))
}

async fn tenant_data(s: &ApiState, tenant: &str) -> ApiResult<relayward_store::TenantData> {
    s.control
        .tenant_data(tenant)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("tenant '{tenant}'")))
}

async fn get_tenant(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let d = tenant_data(&s, &a.tenant).await?;
    let users: Vec<Value> = d
        .users
        .iter()
        .map(relayward_control::directory::user_view)
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
    State(s): State<ApiState>,
    body: Result<Json<ForwardingBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    s.control
        .set_forwarding(&a.tenant, &body.mode, &body.domains, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(
        json!({ "tenant": a.tenant, "forwarding": body.mode, "domains": body.domains }),
    ))
}

async fn list_domains(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
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
    State(s): State<ApiState>,
    body: Result<Json<NewDomain>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
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
        .control
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
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let found = s
        .control
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

/// A JSON object body. OpenAPI 3.0 forbids an empty `required` list, so a body whose fields
/// are all optional has none.
fn body_doc(required: &[&str], properties: Value) -> Value {
    let mut schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false
    });
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    json!({
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": schema } }
        }
    })
}

fn setup_doc() -> Value {
    let mut d = body_doc(
        &["password", "totp"],
        json!({
            "password": { "type": "string", "minLength": 12 },
            "totp": { "type": "string", "pattern": "^[0-9]{6}$" }
        }),
    );
    // A code of the right shape that does not match the key; setup not begun yet.
    d["responses"] = json!({ "403": error_response(), "409": error_response() });
    d
}

fn login_doc() -> Value {
    let mut d = body_doc(
        &["email", "password"],
        json!({
            "email": { "type": "string" },
            "password": { "type": "string" },
            "totp": { "type": "string", "nullable": true },
            "recovery_code": { "type": "string", "nullable": true }
        }),
    );
    d["responses"] = json!({
        "401": error_response(),
        "429": error_response(),
    });
    d
}

/// What an e-mail address looks like to the API (the service checks no more than this).
const EMAIL_PATTERN: &str = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$";

fn new_account_doc() -> Value {
    let email = json!({ "type": "string", "pattern": EMAIL_PATTERN });
    json!({
        "responses": { "404": error_response() },
        "requestBody": {
            "required": true,
            "content": { "application/json": { "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["email", "role"],
                        "properties": {
                            "email": email,
                            "role": { "type": "string", "enum": ["operator"] },
                            "tenant": { "type": "string", "nullable": true, "enum": [null] }
                        },
                        "additionalProperties": false
                    },
                    {
                        "type": "object",
                        "required": ["email", "role", "tenant"],
                        "properties": {
                            "email": email,
                            "role": { "type": "string", "enum": ["admin", "reader"] },
                            "tenant": { "type": "string", "minLength": 1 }
                        },
                        "additionalProperties": false
                    }
                ]
            } } }
        }
    })
}

fn new_tenant_account_doc() -> Value {
    body_doc(
        &["email", "role"],
        json!({
            "email": { "type": "string", "pattern": EMAIL_PATTERN },
            "role": { "type": "string", "enum": ["admin", "reader"] }
        }),
    )
}

fn note_doc() -> Value {
    json!({
        "requestBody": {
            "required": false,
            "content": { "application/json": { "schema": {
                "type": "object",
                "properties": { "note": { "type": "string", "nullable": true } },
                "additionalProperties": false
            } } }
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    password: String,
    totp: String,
}

fn client_of(connect: &ConnectInfo<SocketAddr>) -> String {
    connect.0.ip().to_string()
}

async fn setup_begin(
    State(s): State<ApiState>,
    Path(token): Path<String>,
) -> ApiResult<Json<Value>> {
    let (a, secret) = s
        .control
        .setup_begin(&token)
        .await
        .map_err(ApiError::refused)?;
    let label = format!("Relayward:{}", a.email);
    Ok(Json(json!({
        "email": a.email,
        "role": a.role,
        "tenant": a.tenant,
        "totp_secret": secret,
        "otpauth_uri": format!("otpauth://totp/{}?secret={secret}&issuer=Relayward&algorithm=SHA1&digits=6&period=30", label.replace(' ', "%20")),
        "expires_at": a.setup_expires_at,
        "next": "add the key to an authenticator app, then POST this URL with {\"password\", \"totp\"}",
    })))
}

async fn setup_finish(
    State(s): State<ApiState>,
    connect: ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    body: Result<Json<SetupBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let codes = s
        .control
        .setup_finish(&token, &body.password, &body.totp, &client_of(&connect))
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(json!({
        "recovery_codes": codes,
        "note": "keep these codes somewhere safe: each signs in once without the authenticator; they are not shown again",
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    email: String,
    password: String,
    totp: Option<String>,
    recovery_code: Option<String>,
}

async fn login(
    State(s): State<ApiState>,
    connect: ConnectInfo<SocketAddr>,
    body: Result<Json<LoginBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    use relayward_control::accounts::LoginError;
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let client = client_of(&connect);
    let too_many = |message: String, wait: i64| {
        let mut r = ApiError::new(StatusCode::TOO_MANY_REQUESTS, message).into_response();
        if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        r
    };
    if let Err(wait) = s.logins.attempt(connect.0.ip(), relayward_clock::now_ms()) {
        return Ok(too_many(LoginError::TooMany(wait).to_string(), wait));
    }
    let signed = match s
        .control
        .login(
            &body.email,
            &body.password,
            body.totp.as_deref(),
            body.recovery_code.as_deref(),
            &client,
        )
        .await
    {
        Ok(signed) => signed,
        Err(LoginError::Locked(wait)) => {
            return Ok(too_many(LoginError::Locked(wait).to_string(), wait));
        }
        Err(LoginError::Store(e)) => return Err(ApiError::internal(e)),
        Err(e) => return Err(ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())),
    };
    let cookie = format!(
        "{}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        relayward_control::accounts::SESSION_COOKIE,
        signed.cookie,
        relayward_control::accounts::SESSION_HOURS * 3600
    );
    let mut r = Json(json!({
        "account": signed.account,
        "csrf_token": signed.session.csrf,
        "expires_at": signed.session.expires_at,
        "recovery_codes_left": signed.account.recovery_codes.len(),
    }))
    .into_response();
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

async fn logout(p: Principal, State(s): State<ApiState>) -> ApiResult<Response> {
    if let Some(c) = &p.session_cookie {
        s.control.logout(c).await.map_err(ApiError::internal)?;
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    let clear = format!(
        "{}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        relayward_control::accounts::SESSION_COOKIE
    );
    if let Ok(v) = header::HeaderValue::from_str(&clear) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    email: String,
    role: String,
    tenant: Option<String>,
}

fn setup_answer(s: &ApiState, a: &relayward_store::Account, token: &str) -> Json<Value> {
    Json(json!({
        "account": a,
        "setup_link": format!("{}/api/v1/setup/{token}", s.base_url),
        "expires_at": a.setup_expires_at,
    }))
}

async fn list_accounts(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let all = s.control.accounts(None).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "accounts": all })))
}

async fn create_operator_account(
    p: Principal,
    State(s): State<ApiState>,
    body: Result<Json<NewAccount>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let (a, token) = s
        .control
        .create_account(&body.email, &body.role, body.tenant.as_deref(), &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, setup_answer(&s, &a, &token)))
}

async fn list_tenant_accounts(
    a: TenantAccess,
    State(s): State<ApiState>,
) -> ApiResult<Json<Value>> {
    let list = s
        .control
        .accounts(Some(&a.tenant))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "accounts": list })))
}

async fn create_tenant_account(
    a: TenantAccess,
    State(s): State<ApiState>,
    body: Result<Json<NewAccount>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    if body.tenant.as_deref().is_some_and(|t| t != a.tenant) || body.role == "operator" {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a tenant's accounts are its admins and readers",
        ));
    }
    let (acc, token) = s
        .control
        .create_account(
            &body.email,
            &body.role,
            Some(&a.tenant),
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, setup_answer(&s, &acc, &token)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NoteBody {
    note: Option<String>,
}

/// A restriction of the tenant in the path; another tenant's answers 404.
async fn tenant_restriction(
    a: &TenantAccess,
    s: &ApiState,
    id: &str,
) -> ApiResult<relayward_guard::Restriction> {
    match s.control.restriction(id).await {
        Ok(r) if r.key.tenant == a.tenant => Ok(r),
        _ => Err(ApiError::not_found(&format!("restriction '{id}'"))),
    }
}

/// The optional `{"note": ...}` body of a restriction action (no body: no note).
fn note_of(body: &[u8]) -> ApiResult<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    serde_json::from_slice::<NoteBody>(body)
        .map(|b| b.note.unwrap_or_default())
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))
}

async fn restriction_detail(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let r = tenant_restriction(&a, &s, &id).await?;
    let checklist = if r.key.kind.is_tenant() {
        Some(s.control.checklist(&r).await.map_err(ApiError::internal)?)
    } else {
        None
    };
    Ok(Json(json!({ "restriction": r, "checklist": checklist })))
}

/// What an admin or operator does to a restriction through the API.
#[derive(Clone, Copy)]
enum RestrictionAction {
    Release,
    RequestRelease,
    Approve,
    Refuse,
}

/// One restriction action: who may ask, the optional note, the tenant's own restriction only,
/// then the service layer (which checks the state machine, MFA and the audit log).
async fn restriction_action(
    a: TenantAccess,
    s: ApiState,
    id: String,
    body: &[u8],
    action: RestrictionAction,
) -> ApiResult<Json<Value>> {
    use RestrictionAction::*;
    let note = note_of(body)?;
    tenant_restriction(&a, &s, &id).await?;
    let actor = a.principal.actor();
    let r = match action {
        Release => s.control.release(&id, &actor, &note).await,
        RequestRelease => s.control.request_release(&id, &actor, &note).await,
        Approve => s.control.approve(&id, &actor, &note).await,
        Refuse => s.control.refuse(&id, &actor, &note).await,
    }
    .map_err(ApiError::refused)?;
    Ok(Json(json!({ "restriction": r })))
}

async fn release_restriction(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    restriction_action(a, s, id, &body, RestrictionAction::Release).await
}

async fn request_release(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    restriction_action(a, s, id, &body, RestrictionAction::RequestRelease).await
}

async fn approve_release(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    restriction_action(a, s, id, &body, RestrictionAction::Approve).await
}

async fn refuse_release(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    restriction_action(a, s, id, &body, RestrictionAction::Refuse).await
}

fn trace_doc() -> Value {
    let text = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "string" } });
    let ms = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "integer", "format": "int64" } });
    json!({
        "responses": { "400": error_response() },
        "parameters": [
            text("message_id"), text("sender"), text("recipient"), text("tenant"),
            { "name": "status", "in": "query", "required": false, "schema": { "type": "string", "enum": ["Delivered", "Failed", "Pending", "Deferred"] } },
            ms("since"), ms("until"),
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 500 } },
            { "name": "before", "in": "query", "required": false, "schema": { "type": "string", "pattern": "^[0-9]+:.+$" } }
        ]
    })
}

/// The tenant's own trace takes the same filters, less `tenant` (it is in the path).
fn tenant_trace_doc() -> Value {
    let mut d = trace_doc();
    if let Some(params) = d["parameters"].as_array_mut() {
        params.retain(|p| p["name"] != "tenant");
    }
    d
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceParams {
    message_id: Option<String>,
    sender: Option<String>,
    recipient: Option<String>,
    tenant: Option<String>,
    status: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    /// `<received_at>:<message id>` of the last message already seen.
    before: Option<String>,
}

/// One page of the trace, newest first, after the `before` cursor; `next` continues it.
async fn trace_page(
    s: &ApiState,
    tenant: Option<String>,
    p: TraceParams,
) -> ApiResult<Json<Value>> {
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, m.to_string());
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit must be 1 to 500"));
    }
    if let Some(st) = &p.status
        && !["Delivered", "Failed", "Pending", "Deferred"].contains(&st.as_str())
    {
        return Err(bad("status must be Delivered, Failed, Pending or Deferred"));
    }
    let cursor = match &p.before {
        None => None,
        Some(c) => {
            let (at, id) = c
                .split_once(':')
                .and_then(|(a, i)| Some((a.parse::<i64>().ok()?, i.to_string())))
                .ok_or_else(|| {
                    bad("before must be <received_at>:<message id>, as `next` gives it")
                })?;
            Some((at, id))
        }
    };
    let until = match (&cursor, p.until) {
        (Some((at, _)), Some(u)) => Some((*at).min(u)),
        (Some((at, _)), None) => Some(*at),
        (None, u) => u,
    };
    // Messages received in the cursor's own millisecond come again from the store: ask for
    // some more and drop those already seen.
    let query = relayward_store::TraceQuery {
        message_id: p.message_id,
        sender: p.sender,
        recipient: p.recipient,
        tenant,
        status: p.status,
        since: p.since,
        until,
        limit: limit + 50,
    };
    let mut found = s
        .control
        .search_trace(&query)
        .await
        .map_err(ApiError::internal)?;
    if let Some((at, id)) = &cursor {
        found.retain(|m| (m.received_at, m.message_id.as_str()) < (*at, id.as_str()));
    }
    let more = found.len() > limit;
    found.truncate(limit);
    let next = more
        .then(|| {
            found
                .last()
                .map(|m| format!("{}:{}", m.received_at, m.message_id))
        })
        .flatten();
    Ok(Json(json!({ "messages": found, "next": next })))
}

async fn tenant_trace(
    a: TenantAccess,
    State(s): State<ApiState>,
    q: Result<Query<TraceParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    if q.tenant.as_deref().is_some_and(|t| t != a.tenant) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the tenant is the one in the path",
        ));
    }
    trace_page(&s, Some(a.tenant.clone()), q).await
}

async fn all_trace(
    State(s): State<ApiState>,
    q: Result<Query<TraceParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let tenant = q.tenant.clone();
    trace_page(&s, tenant, q).await
}

fn queue_list_doc() -> Value {
    json!({
        "responses": { "400": error_response() },
        "parameters": [
            { "name": "tenant", "in": "query", "required": false, "schema": { "type": "string" } },
            { "name": "domain", "in": "query", "required": false, "schema": { "type": "string" } },
            { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
        ]
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    tenant: Option<String>,
    domain: Option<String>,
    limit: Option<usize>,
}

async fn queue_list(
    State(s): State<ApiState>,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit must be 1 to 1000",
        ));
    }
    let list = s
        .queue
        .list(q.tenant.as_deref(), q.domain.as_deref(), limit);
    Ok(Json(json!({ "messages": list })))
}

async fn queue_act(
    p: Principal,
    s: ApiState,
    id: String,
    action: relayward_delivery::QueueAction,
) -> ApiResult<Json<Value>> {
    let before = s
        .control
        .queue_action(&s.queue, &id, action, &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(
        json!({ "message": before.id, "done": action.as_str() }),
    ))
}

async fn queue_retry(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Retry).await
}

async fn queue_hold(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Hold).await
}

async fn queue_release(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Release).await
}

async fn queue_bounce(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Bounce).await
}

async fn queue_purge(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Purge).await
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
                    "events": { "type": "array", "items": { "type": "string", "enum": relayward_control::webhooks::EVENTS } }
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

async fn list_webhooks(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let hooks = s
        .control
        .webhooks(Some(&a.tenant))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "webhooks": hooks })))
}

async fn create_webhook(
    a: TenantAccess,
    State(s): State<ApiState>,
    body: Result<Json<NewWebhook>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let hook = s
        .control
        .create_webhook(&a.tenant, &body.url, &body.events, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    let mut out = serde_json::to_value(&hook).unwrap_or_default();
    out["secret"] = json!(hook.secret);
    Ok((StatusCode::CREATED, Json(out)))
}

async fn delete_webhook(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.control
        .delete_webhook(&a.tenant, &id, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn webhook_deliveries(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.control
        .webhook(&a.tenant, &id)
        .await
        .map_err(ApiError::refused)?;
    let log = s
        .control
        .webhook_deliveries(&id, 200)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "webhook": id, "deliveries": log })))
}

async fn ping_webhook(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    s.control
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
            let (name, value) = relayward_control::dkim_keys::record(k);
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
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let keys = s
        .control
        .dkim_keys(&a.tenant, &domain)
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_rotate(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.control
        .rotate_dkim(&a.tenant, &domain, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    let keys = s
        .control
        .dkim_keys(&a.tenant, &domain)
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn dkim_activate(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let keys = s
        .control
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
    State(s): State<ApiState>,
    Path((_, domain)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let keys = s
        .control
        .retire_dkim(&a.tenant, &domain, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(dkim_json(&domain, &keys))
}

async fn list_restrictions(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let r = s
        .control
        .restrictions(Some(&a.tenant), true)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "restrictions": r })))
}

async fn list_alerts(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let alerts = s
        .control
        .alerts(Some(&a.tenant), 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "alerts": alerts })))
}

async fn counters(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let c = s
        .control
        .counters(&a.tenant)
        .await
        .map_err(ApiError::internal)?;
    let locks = s
        .control
        .auth_lockouts(&a.tenant)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "counters": c, "auth_lockouts": locks })))
}

async fn tenant_audit(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let log = s
        .control
        .audit_log(Some(&a.tenant), 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(json!({ "audit": log })))
}

fn ndjson_doc() -> Value {
    json!({
        "responses": { "200": {
            "description": "one audit entry per line",
            "content": { "application/x-ndjson": { "schema": { "type": "string" } } }
        } }
    })
}

async fn ndjson(s: &ApiState, tenant: Option<&str>) -> ApiResult<Response> {
    let mut log = s
        .control
        .audit_log(tenant, 10_000_000)
        .await
        .map_err(ApiError::internal)?;
    log.reverse();
    let mut body = String::new();
    for e in &log {
        body.push_str(&serde_json::to_string(e).map_err(ApiError::internal)?);
        body.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

async fn audit_export(State(s): State<ApiState>) -> ApiResult<Response> {
    ndjson(&s, None).await
}

async fn tenant_audit_export(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Response> {
    ndjson(&s, Some(&a.tenant)).await
}

fn new_tenant_doc() -> Value {
    body_doc(
        &["name"],
        json!({
            "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
            "language": { "type": "string", "enum": ["en", "es", null], "nullable": true },
            "subscription_ends": { "type": "string", "nullable": true, "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$" },
            "admins": { "type": "array", "items": { "type": "string", "pattern": EMAIL_PATTERN } }
        }),
    )
}

fn tenant_patch_doc() -> Value {
    body_doc(
        &[],
        json!({
            "language": { "type": "string", "enum": ["en", "es", null], "nullable": true },
            "subscription_ends": { "type": "string", "nullable": true, "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$" },
            "admins": { "type": "array", "nullable": true, "items": { "type": "string", "pattern": EMAIL_PATTERN } }
        }),
    )
}

fn new_connector_doc() -> Value {
    body_doc(
        &["name"],
        json!({
            "name": { "type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$" },
            "ips": { "type": "array", "items": { "type": "string" } },
            "cert_name": { "type": "string", "nullable": true },
            "require_tls": { "type": "boolean" },
            "relay_unregistered": { "type": "boolean" }
        }),
    )
}

fn new_user_doc() -> Value {
    body_doc(
        &["address"],
        json!({
            "address": { "type": "string", "pattern": EMAIL_PATTERN },
            "password": { "type": "string", "minLength": 12, "nullable": true },
            "aliases": { "type": "array", "items": { "type": "string", "pattern": EMAIL_PATTERN } },
            "forward_to": { "type": "string", "pattern": EMAIL_PATTERN, "nullable": true },
            "forward_only": { "type": "boolean" }
        }),
    )
}

fn user_patch_doc() -> Value {
    body_doc(
        &[],
        json!({
            "password": { "type": "string", "minLength": 12, "nullable": true },
            "aliases": { "type": "array", "nullable": true, "items": { "type": "string", "pattern": EMAIL_PATTERN } },
            "forward_to": { "type": "string", "pattern": EMAIL_PATTERN, "nullable": true },
            "forward_only": { "type": "boolean", "nullable": true }
        }),
    )
}

/// A request the extractors refused: 413 when the body is over the limit, else 400 (a body
/// that is not the JSON expected is the client's mistake whatever the detail).
fn bad_request(extractor_status: StatusCode) -> StatusCode {
    if extractor_status == StatusCode::PAYLOAD_TOO_LARGE {
        extractor_status
    } else {
        StatusCode::BAD_REQUEST
    }
}

type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))
}

async fn create_tenant(
    p: Principal,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::NewTenant>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let t = s
        .control
        .create_tenant(body(b)?, &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(json!(t))))
}

async fn update_tenant(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::TenantPatch>,
) -> ApiResult<Json<Value>> {
    let t = s
        .control
        .update_tenant(&a.tenant, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(json!(t)))
}

fn limits_doc() -> Value {
    let n = || json!({ "type": "integer", "minimum": 0, "nullable": true });
    let ratio = || json!({ "type": "number", "minimum": 0, "maximum": 1, "nullable": true });
    body_doc(
        &[],
        json!({
            "unregistered_allowance_per_day": n(),
            "unregistered_suspicious_per_day": n(),
            "tenant_suspicious_per_day": n(),
            "tenant_suspicious_ratio": ratio(),
            "connector_suspicious_per_day": n(),
            "connector_suspicious_ratio": ratio(),
            "user_suspicious_per_day": n(),
            "user_recipients_per_day": n(),
            "user_messages_per_minute": n(),
            "new_connector_volume_factor": n(),
            "outbound_external_per_hour": n(),
            "outbound_internal_per_hour": n(),
            "outbound_per_day": n(),
            "outbound_action": { "type": "string", "nullable": true, "enum": ["block_until_tomorrow", "block_until_released", "alert_only", null] }
        }),
    )
}

async fn limits_answer(s: &ApiState, tenant: &str) -> ApiResult<Json<Value>> {
    let effective = s.control.limits(tenant).await.map_err(ApiError::refused)?;
    let overrides = s
        .control
        .limit_overrides(tenant)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(
        json!({ "effective": effective, "overrides": overrides }),
    ))
}

async fn get_limits(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    limits_answer(&s, &a.tenant).await
}

async fn set_limits(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<Value>,
) -> ApiResult<Json<Value>> {
    let overrides = body(b)?;
    if !overrides.is_object() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is an object of [limits] keys",
        ));
    }
    s.control
        .set_limits(&a.tenant, &overrides, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    limits_answer(&s, &a.tenant).await
}

async fn list_connectors(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let d = tenant_data(&s, &a.tenant).await?;
    let flags = s
        .control
        .connector_flags(&d.connectors, &a.tenant)
        .await
        .map_err(ApiError::internal)?;
    let list: Vec<Value> = d
        .connectors
        .iter()
        .map(|c| {
            let mut v = json!(c);
            v["unusual"] = json!(flags.get(&c.name).cloned().unwrap_or_default());
            v
        })
        .collect();
    Ok(Json(json!({ "connectors": list })))
}

async fn create_connector(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::NewConnector>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let c = s
        .control
        .add_connector(&a.tenant, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(json!(c))))
}

async fn delete_connector(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.control
        .delete_connector(&a.tenant, &name, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn review_connector(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    s.control
        .review_connector(&a.tenant, &name, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(json!({ "connector": name, "reviewed": true })))
}

async fn list_users(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let d = tenant_data(&s, &a.tenant).await?;
    let flags = s
        .control
        .user_flags(&a.tenant)
        .await
        .map_err(ApiError::internal)?;
    let users: Vec<Value> = d
        .users
        .iter()
        .map(|u| {
            let mut v = relayward_control::directory::user_view(u);
            v["flags"] = json!(
                flags
                    .get(&u.address.to_ascii_lowercase())
                    .cloned()
                    .unwrap_or_default()
            );
            v
        })
        .collect();
    Ok(Json(json!({ "users": users })))
}

async fn create_user(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let u = s
        .control
        .add_user(&a.tenant, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((
        StatusCode::CREATED,
        Json(relayward_control::directory::user_view(&u)),
    ))
}

async fn update_user(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, address)): Path<(String, String)>,
    b: JsonBody<relayward_control::directory::UserPatch>,
) -> ApiResult<Json<Value>> {
    let u = s
        .control
        .update_user(&a.tenant, &address, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(relayward_control::directory::user_view(&u)))
}

async fn delete_user(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, address)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.control
        .delete_user(&a.tenant, &address, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_tokens(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let t = s.control.tokens(None).await.map_err(ApiError::internal)?;
    Ok(Json(json!({ "tokens": t })))
}

async fn audit(State(s): State<ApiState>) -> ApiResult<Json<Value>> {
    let log = s
        .control
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
