//! A tenant's webhooks: registration, removal, delivery log, ping.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/webhooks",
        summary: "The tenant's webhooks (never their secrets).",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<WebhookList>),
        route: || get(list_webhooks),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/webhooks",
        summary: "Register a webhook for alerts and restriction changes; the answer shows its signing secret once.",
        access: Access::TenantWrite,
        ok: 201,
        answer: Some(answer::<WebhookCreated>),
        route: || post(create_webhook),
        doc: Some(new_webhook_doc),
    },
    Operation {
        method: "delete",
        path: "/tenants/{tenant}/webhooks/{webhook}",
        summary: "Remove a webhook (its queued deliveries go with it).",
        access: Access::TenantWrite,
        ok: 204,
        answer: None,
        route: || delete(delete_webhook),
        doc: None,
    },
    Operation {
        method: "get",
        path: "/tenants/{tenant}/webhooks/{webhook}/deliveries",
        summary: "The webhook's delivery log, newest first: event, attempts, state, last HTTP status or error, next attempt.",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<Deliveries>),
        route: || get(webhook_deliveries),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/tenants/{tenant}/webhooks/{webhook}/ping",
        summary: "Queue a signed ping event to the webhook.",
        access: Access::TenantWrite,
        ok: 202,
        answer: Some(answer::<Pinged>),
        route: || post(ping_webhook),
        doc: None,
    },
];

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

async fn list_webhooks(a: TenantAccess, State(s): State<ApiState>) -> ApiResult<Json<WebhookList>> {
    let hooks = s
        .control
        .webhooks(Some(&a.tenant))
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(WebhookList { webhooks: hooks }))
}

async fn create_webhook(
    a: TenantAccess,
    State(s): State<ApiState>,
    body: Result<Json<NewWebhook>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<WebhookCreated>)> {
    let Json(body) = body.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let hook = s
        .control
        .create_webhook(&a.tenant, &body.url, &body.events, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookCreated {
            secret: hook.secret.clone(),
            webhook: hook,
        }),
    ))
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
) -> ApiResult<Json<Deliveries>> {
    s.control
        .webhook(&a.tenant, &id)
        .await
        .map_err(ApiError::refused)?;
    let log = s
        .control
        .webhook_deliveries(&id, 200)
        .await
        .map_err(ApiError::internal)?;
    Ok(Json(Deliveries {
        webhook: id,
        deliveries: log,
    }))
}

async fn ping_webhook(
    a: TenantAccess,
    State(s): State<ApiState>,
    Path((_, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Pinged>)> {
    s.control
        .ping_webhook(&a.tenant, &id, &a.principal.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Pinged {
            webhook: id,
            queued: "ping".into(),
        }),
    ))
}
