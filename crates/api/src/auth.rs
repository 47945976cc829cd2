//! Who calls: an API token or a console session (with its CSRF token for changes), the tenant
//! a request is about, and the access layer that enforces each operation's declared access in
//! front of its handler.

use crate::common::*;

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
    pub(crate) fn operator(&self) -> bool {
        self.role == AccountRole::Operator
    }

    /// The actor the service layer records in the audit log.
    pub(crate) fn actor(&self) -> Actor {
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
    pub(crate) fn from_token(token: ApiToken, client: String) -> Option<Principal> {
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
pub(crate) fn session_cookie(parts: &Parts) -> Option<String> {
    relayward_control::accounts::cookie(
        parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        relayward_control::accounts::SESSION_COOKIE,
    )
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
pub(crate) async fn tenant_access(
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
pub(crate) async fn enforce(
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
    if access == Access::TenantWrite
        && let Some(tenant) = principal.tenant.as_deref()
        && let Err(wait) = state
            .control
            .count_tenant_change(&principal.actor(), tenant)
            .await
    {
        let mut r = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "tenant {tenant} has made the changes allowed in an hour ([http] tenant_changes_per_hour); wait {wait} second(s) or ask the operator"
            ),
        )
        .into_response();
        if let Ok(v) = header::HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    parts.extensions.insert(principal);
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}
