//! What every part of the API shares: its state, its error answer, the shape of an operation
//! and who may call it, and small helpers for requests. Every resource module starts with
//! `use crate::common::*`.

pub(crate) use std::net::SocketAddr;
pub(crate) use std::sync::Arc;

pub(crate) use axum::Json;
pub(crate) use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
pub(crate) use axum::http::request::Parts;
pub(crate) use axum::http::{StatusCode, header};
pub(crate) use axum::response::{IntoResponse, Response};
pub(crate) use axum::routing::{MethodRouter, delete, get, patch, post, put};
pub(crate) use relayward_control::{
    AccountRole, Actor, Control, ControlError, DomainVerification, TokenError, Via,
};
pub(crate) use relayward_store::{ApiToken, DomainKind};
pub(crate) use serde::Deserialize;
pub(crate) use serde_json::{Value, json};

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
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn not_found(what: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, format!("{what} does not exist"))
    }

    /// A refused or failed control-plane action: the caller's request was refused for the
    /// reason given, with the status its kind calls for.
    pub(crate) fn refused(e: ControlError) -> ApiError {
        use relayward_store::StoreError;
        let status = match &e {
            ControlError::NotFound(_) => StatusCode::NOT_FOUND,
            ControlError::Forbidden(_) | ControlError::MfaRequired(_) => StatusCode::FORBIDDEN,
            ControlError::Conflict(_) => StatusCode::CONFLICT,
            ControlError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Store(StoreError::NotFound { .. }) => StatusCode::NOT_FOUND,
            ControlError::Store(StoreError::Exists { .. } | StoreError::ManagedByConfig(_)) => {
                StatusCode::CONFLICT
            }
            ControlError::Store(StoreError::Invalid(_)) => StatusCode::UNPROCESSABLE_ENTITY,
            ControlError::Store(StoreError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ControlError::Store(
                StoreError::Db(_)
                | StoreError::Open { .. }
                | StoreError::Task(_)
                | StoreError::Postgres(_),
            )
            | ControlError::Internal(_) => return ApiError::internal(e),
        };
        ApiError::new(status, e.to_string())
    }

    pub(crate) fn internal(e: impl std::fmt::Display + 'static) -> ApiError {
        // The cluster's database away: the request may be repeated when it is back.
        let any: &dyn std::any::Any = &e;
        let away = matches!(
            any.downcast_ref::<relayward_store::StoreError>(),
            Some(relayward_store::StoreError::Unavailable(_))
        ) || matches!(
            any.downcast_ref::<ControlError>(),
            Some(ControlError::Store(
                relayward_store::StoreError::Unavailable(_)
            ))
        );
        if away {
            tracing::warn!(error = %e, "API request refused: the database is unreachable");
            return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
        }
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

pub(crate) type ApiResult<T> = Result<T, ApiError>;

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
    /// The type of the success answer's body (`crate::answers`), whose schema the document
    /// derives; `None` for no body, or a body that is not JSON.
    pub answer: Option<crate::answers::AnswerSchema>,
    /// More of the operation's description (query parameters, request body, extra responses),
    /// merged into what the path and access give.
    pub doc: Option<fn() -> Value>,
}

/// `/tenants/{tenant}` → `/tenants/:tenant` (axum 0.7's syntax).
pub(crate) fn axum_path(path: &str) -> String {
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

pub(crate) fn client_of(connect: &ConnectInfo<SocketAddr>) -> String {
    connect.0.ip().to_string()
}

/// A request the extractors refused: 413 when the body is over the limit, else 400 (a body
/// that is not the JSON expected is the client's mistake whatever the detail).
pub(crate) fn bad_request(extractor_status: StatusCode) -> StatusCode {
    if extractor_status == StatusCode::PAYLOAD_TOO_LARGE {
        extractor_status
    } else {
        StatusCode::BAD_REQUEST
    }
}

pub(crate) type JsonBody<T> = Result<Json<T>, axum::extract::rejection::JsonRejection>;

pub(crate) fn body<T>(b: JsonBody<T>) -> ApiResult<T> {
    b.map(|Json(t)| t)
        .map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))
}

pub(crate) async fn tenant_data(
    s: &ApiState,
    tenant: &str,
) -> ApiResult<relayward_store::TenantData> {
    s.control
        .tenant_data(tenant)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&format!("tenant '{tenant}'")))
}

/// What an e-mail address looks like to the API (the service checks no more than this).
pub(crate) const EMAIL_PATTERN: &str = r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$";
