//! Accounts and sign-in: the one-time setup link, password and TOTP sign-in, sign-out, accounts of every role, and the list of API tokens.

use crate::answers::*;
use crate::auth::{Principal, TenantAccess};
use crate::common::*;
use crate::document::{body_doc, error_response};

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/setup/{token}",
        summary: "Open a one-time setup link: the account, and the TOTP key to enrol in an authenticator app.",
        access: Access::Public,
        ok: 200,
        answer: Some(answer::<SetupBegun>),
        route: || get(setup_begin),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/setup/{token}",
        summary: "Finish setup: a password (12 characters or more) and a current TOTP code; answers the recovery codes, once.",
        access: Access::Public,
        ok: 200,
        answer: Some(answer::<SetupDone>),
        route: || post(setup_finish),
        doc: Some(setup_doc),
    },
    Operation {
        method: "post",
        path: "/login",
        summary: "Sign in with e-mail, password and a TOTP code (or an unused recovery code): sets the session cookie and answers the CSRF token. Locked for 15 minutes after 5 failures; 20 attempts per address per 10 minutes.",
        access: Access::Public,
        ok: 200,
        answer: Some(answer::<SignedIn>),
        route: || post(login),
        doc: Some(login_doc),
    },
    Operation {
        method: "post",
        path: "/logout",
        summary: "End the session.",
        access: Access::Any,
        ok: 204,
        answer: None,
        route: || post(logout),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/accounts",
        summary: "Every account (operators).",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<AccountList>),
        route: || get(list_accounts),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/accounts",
        summary: "Make an account of any role; answers its one-time setup link (no default passwords).",
        access: Access::Operator,
        ok: 201,
        answer: Some(answer::<AccountCreated>),
        route: || post(create_operator_account),
        doc: Some(new_account_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/accounts",
        summary: "The tenant's admin and reader accounts.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<AccountList>),
        route: || get(list_tenant_accounts),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/accounts",
        summary: "Make an admin or reader account of the tenant; answers its one-time setup link.",
        access: Access::TenantWrite,
        ok: 201,
        answer: Some(answer::<AccountCreated>),
        route: || post(create_tenant_account),
        doc: Some(new_tenant_account_doc),
    },
    Operation {
        method: "get",
        path: "/tokens",
        summary: "API tokens (never their secrets).",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<TokenList>),
        route: || get(list_tokens),
        doc: None,
    },
];

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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupBody {
    password: String,
    totp: String,
}

async fn setup_begin(
    State(s): State<ApiState>,
    Path(token): Path<String>,
) -> ApiResult<Json<SetupBegun>> {
    let (a, secret) = s
        .control
        .setup_begin(&token)
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(SetupBegun {
        otpauth_uri: relayward_control::accounts::otpauth_uri(&a.email, &secret),
        email: a.email,
        role: a.role,
        tenant: a.tenant,
        totp_secret: secret,
        expires_at: a.setup_expires_at,
        next:
            "add the key to an authenticator app, then POST this URL with {\"password\", \"totp\"}"
                .into(),
    }))
}

async fn setup_finish(
    State(s): State<ApiState>,
    connect: ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    body: Result<Json<SetupBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<SetupDone>> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let codes = s
        .control
        .setup_finish(&token, &body.password, &body.totp, &client_of(&connect))
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(SetupDone {
        recovery_codes: codes,
        note: "keep these codes somewhere safe: each signs in once without the authenticator; they are not shown again".into(),
    }))
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
    if let Err(wait) = s
        .logins
        .attempt(connect.0.ip(), relayward_clock::now_ms())
        .await
    {
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
    let mut r = Json(SignedIn {
        recovery_codes_left: signed.account.recovery_codes.len(),
        account: signed.account,
        csrf_token: signed.session.csrf,
        expires_at: signed.session.expires_at,
    })
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
    role: AccountRole,
    tenant: Option<String>,
}

fn setup_answer(s: &ApiState, a: relayward_store::Account, token: &str) -> Json<AccountCreated> {
    Json(AccountCreated {
        setup_link: format!("{}/api/v1/setup/{token}", s.base_url),
        setup_page: format!("{}/setup/{token}", s.base_url),
        expires_at: a.setup_expires_at,
        account: a,
    })
}

async fn list_accounts(State(s): State<ApiState>) -> ApiResult<Json<AccountList>> {
    let accounts = s.control.accounts(None).await.map_err(ApiError::internal)?;
    Ok(Json(AccountList { accounts }))
}

async fn create_operator_account(
    p: Principal,
    State(s): State<ApiState>,
    body: Result<Json<NewAccount>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<AccountCreated>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let (a, token) = s
        .control
        .create_account(&body.email, body.role, body.tenant.as_deref(), &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, setup_answer(&s, a, &token)))
}

async fn list_tenant_accounts(
    a: TenantAccess,
    State(s): State<ApiState>,
) -> ApiResult<Json<AccountList>> {
    let accounts = s
        .control
        .accounts(Some(&a.tenant))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(AccountList { accounts }))
}

async fn create_tenant_account(
    a: TenantAccess,
    State(s): State<ApiState>,
    body: Result<Json<NewAccount>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<AccountCreated>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    if body.tenant.as_deref().is_some_and(|t| t != a.tenant) || body.role == AccountRole::Operator {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "a tenant's accounts are its admins and readers",
        ));
    }
    let (acc, token) = s
        .control
        .create_account(
            &body.email,
            body.role,
            Some(&a.tenant),
            &a.principal.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, setup_answer(&s, acc, &token)))
}

async fn list_tokens(State(s): State<ApiState>) -> ApiResult<Json<TokenList>> {
    let tokens = s.control.tokens(None).await.map_err(ApiError::internal)?;
    Ok(Json(TokenList { tokens }))
}
