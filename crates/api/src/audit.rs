//! The audit log: a tenant's or the whole, as JSON pages or as JSON lines.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/audit",
        summary: "The tenant's audit log, newest first.",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<AuditList>),
        route: || get(tenant_audit),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/audit/export",
        summary: "The whole audit log as JSON lines (application/x-ndjson), oldest first (operators).",
        access: Access::Operator,
        ok: 200,
        answer: None,
        route: || get(audit_export),
        doc: Some(ndjson_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/audit/export",
        summary: "The tenant's audit log as JSON lines (application/x-ndjson), oldest first (its admins and operators).",
        access: Access::TenantWrite,
        ok: 200,
        answer: None,
        route: || get(tenant_audit_export),
        doc: Some(ndjson_doc),
    },
    Operation {
        method: "get",
        path: "/audit",
        summary: "The whole audit log, newest first.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<AuditList>),
        route: || get(audit),
        doc: None,
    },
];

async fn tenant_audit(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<AuditList>> {
    let log = s
        .control
        .audit_log(Some(&a.tenant), 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(AuditList { audit: log }))
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

async fn audit(State(s): State<ApiState>) -> ApiResult<Json<AuditList>> {
    let log = s
        .control
        .audit_log(None, 500)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(AuditList { audit: log }))
}
