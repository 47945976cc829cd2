//! Restrictions and their release workflow, alerts, and the counters beside their thresholds.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/restrictions",
        summary: "Current and past restrictions with cause and history.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<RestrictionList>),
        route: || get(list_restrictions),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/restrictions/{restriction}",
        summary: "One restriction: cause, history and, for a tenant restriction, the remediation checklist with evidence.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<RestrictionDetail>),
        route: || get(restriction_detail),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/release",
        summary: "Release a user or connector (admins, 3 times per 24 h), or any restriction (operators). Needs a session signed in with TOTP.",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<RestrictionAnswer>),
        route: || post(release_restriction),
        doc: Some(note_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/request-release",
        summary: "Ask for a tenant restriction's release once its checklist is complete.",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<RestrictionAnswer>),
        route: || post(request_release),
        doc: Some(note_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/approve",
        summary: "Approve a release request (operators; needs a session signed in with TOTP).",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<RestrictionAnswer>),
        route: || post(approve_release),
        doc: Some(note_doc),
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/restrictions/{restriction}/refuse",
        summary: "Refuse a release request with a reason the tenant's admins can act on (operators).",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<RestrictionAnswer>),
        route: || post(refuse_release),
        doc: Some(note_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/alerts",
        summary: "Alerts, newest first.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<AlertList>),
        route: || get(list_alerts),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/counters",
        summary: "Every counter beside its threshold.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<Counters>),
        route: || get(counters),
        doc: None,
    },
];

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
) -> ApiResult<Json<RestrictionDetail>> {
    let r = tenant_restriction(&a, &s, &id).await?;
    let checklist = if r.key.kind.is_tenant() {
        Some(s.control.checklist(&r).await.map_err(ApiError::internal)?)
    } else {
        None
    };
    Ok(Json(RestrictionDetail {
        restriction: r,
        checklist,
    }))
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
) -> ApiResult<Json<RestrictionAnswer>> {
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
    Ok(Json(RestrictionAnswer { restriction: r }))
}

async fn release_restriction(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<RestrictionAnswer>> {
    restriction_action(a, s, id, &body, RestrictionAction::Release).await
}

async fn request_release(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<RestrictionAnswer>> {
    restriction_action(a, s, id, &body, RestrictionAction::RequestRelease).await
}

async fn approve_release(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<RestrictionAnswer>> {
    restriction_action(a, s, id, &body, RestrictionAction::Approve).await
}

async fn refuse_release(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<RestrictionAnswer>> {
    restriction_action(a, s, id, &body, RestrictionAction::Refuse).await
}

async fn list_restrictions(
    a: TenantAccess,
    State(s): State<ApiState>,
) -> ApiResult<Json<RestrictionList>> {
    let r = s
        .control
        .restrictions(Some(&a.tenant), true)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(RestrictionList { restrictions: r }))
}

async fn list_alerts(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<AlertList>> {
    let alerts = s
        .control
        .alerts(Some(&a.tenant), 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(AlertList { alerts }))
}

async fn counters(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<Counters>> {
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
    Ok(Json(Counters {
        counters: c,
        auth_lockouts: locks,
    }))
}
