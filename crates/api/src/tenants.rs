//! Tenants: listing, one tenant with everything of it, creation and changes, forwarding policy and limits.

use crate::answers::*;
use crate::auth::{Principal, TenantAccess};
use crate::common::*;
use crate::document::{body_doc, paging_doc};
use relayward_store::Tenant;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants",
        summary: "Tenants by name, paged with `after` and `limit` (a tenant token sees its own).",
        access: Access::Any,
        ok: 200,
        answer: Some(answer::<TenantList>),
        route: || get(list_tenants),
        doc: Some(paging_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}",
        summary: "One tenant: language, subscription end date, admins, domains, connectors, users.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<TenantDetail>),
        route: || get(get_tenant),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants",
        summary: "Add a tenant (operators): name, language, subscription end date, admin addresses for alerts.",
        access: Access::Operator,
        ok: 201,
        answer: Some(answer::<Tenant>),
        route: || post(create_tenant),
        doc: Some(new_tenant_doc),
    },
    Operation {
        method: "patch",
        path: "/tenants/{tenant}",
        summary: "Change a tenant's language and admin addresses, or (operators) its subscription end date (null: open-ended).",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<Tenant>),
        route: || patch(update_tenant),
        doc: Some(tenant_patch_doc),
    },
    Operation {
        method: "put",
        path: "/tenants/{tenant}/forwarding",
        summary: "Set the tenant's automatic forwarding control: on, off, or listed (only to the given domains).",
        access: Access::TenantWrite,
        ok: 200,
        answer: Some(answer::<ForwardingAnswer>),
        route: || put(set_forwarding),
        doc: Some(forwarding_doc),
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/limits",
        summary: "The tenant's limits in force (SPEC section 4) and the overrides set for it through the API.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<LimitsAnswer>),
        route: || get(get_limits),
        doc: None,
    },
    Operation {
        method: "put",
        path: "/tenants/{tenant}/limits",
        summary: "Replace the tenant's limit overrides (operators): `[limits]` keys of the configuration file; {} restores the service-wide defaults. In force within two seconds.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<LimitsAnswer>),
        route: || put(set_limits),
        doc: Some(limits_doc),
    },
];

#[derive(Deserialize)]
struct Paging {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_tenants(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<Paging>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TenantList>> {
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
    Ok(Json(TenantList { tenants }))
}

async fn get_tenant(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<TenantDetail>> {
    let d = tenant_data(&s, &a.tenant).await?;
    Ok(Json(TenantDetail {
        domains: d.domains.iter().map(DomainAnswer::from).collect(),
        users: d.users.iter().map(UserAnswer::from).collect(),
        tenant: d.tenant,
        connectors: d.connectors,
        routes: d.routes,
    }))
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
) -> ApiResult<Json<ForwardingAnswer>> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    s.control
        .set_forwarding(&a.tenant, &body.mode, &body.domains, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(ForwardingAnswer {
        tenant: a.tenant,
        forwarding: body.mode,
        domains: body.domains,
    }))
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

async fn create_tenant(
    p: Principal,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::NewTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    let t = s
        .control
        .create_tenant(body(b)?, &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((StatusCode::CREATED, Json(t)))
}

async fn update_tenant(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<relayward_control::directory::TenantPatch>,
) -> ApiResult<Json<Tenant>> {
    let t = s
        .control
        .update_tenant(&a.tenant, body(b)?, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(t))
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

async fn limits_answer(s: &ApiState, tenant: &str) -> ApiResult<Json<LimitsAnswer>> {
    let effective = s.control.limits(tenant).await.map_err(ApiError::refused)?;
    let overrides = s
        .control
        .limit_overrides(tenant)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(LimitsAnswer {
        effective,
        overrides,
    }))
}

async fn get_limits(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<LimitsAnswer>> {
    limits_answer(&s, &a.tenant).await
}

async fn set_limits(
    a: TenantAccess,
    State(s): State<ApiState>,
    b: JsonBody<Value>,
) -> ApiResult<Json<LimitsAnswer>> {
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
