//! The mail queue (operators): list by tenant or destination; retry, hold, release, bounce, purge;
//! flush (every waiting message due now).

use crate::answers::*;
use crate::auth::Principal;
use crate::common::*;
use crate::document::error_response;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/queue",
        summary: "Messages waiting for delivery, soonest first (held ones last): filter by tenant and by recipient domain (destination). Operators.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueList>),
        route: || get(queue_list),
        doc: Some(queue_list_doc),
    },
    Operation {
        method: "post",
        path: "/queue/flush",
        summary: "Try every waiting message now (held ones stay held), or those of one tenant and/or with a pending recipient in one domain; the named destination (every one, without filters) is tried at once even if it was backed off. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueFlushed>),
        route: || post(queue_flush),
        doc: Some(queue_flush_doc),
    },
    Operation {
        method: "post",
        path: "/queue/{message}/retry",
        summary: "Try the message again now. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueDone>),
        route: || post(queue_retry),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/hold",
        summary: "Hold the message: kept, not delivered, until released. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueDone>),
        route: || post(queue_hold),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/release",
        summary: "Release a held message; it is tried at once. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueDone>),
        route: || post(queue_release),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/bounce",
        summary: "Fail the message's pending recipients now; its sender gets an NDR. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueDone>),
        route: || post(queue_bounce),
        doc: None,
    },
    Operation {
        method: "post",
        path: "/queue/{message}/purge",
        summary: "Delete the message from the queue without an NDR. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueDone>),
        route: || post(queue_purge),
        doc: None,
    },
];

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

fn queue_flush_doc() -> Value {
    json!({
        "responses": { "400": error_response() },
        "parameters": [
            { "name": "tenant", "in": "query", "required": false, "schema": { "type": "string" } },
            { "name": "domain", "in": "query", "required": false, "schema": { "type": "string" } }
        ]
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlushQuery {
    tenant: Option<String>,
    domain: Option<String>,
}

async fn queue_flush(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<FlushQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueFlushed>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let messages = s
        .control
        .queue_flush(
            &s.queue,
            q.tenant.as_deref(),
            q.domain.as_deref(),
            &p.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(QueueFlushed { messages }))
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
) -> ApiResult<Json<QueueList>> {
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
    Ok(Json(QueueList { messages: list }))
}

async fn queue_act(
    p: Principal,
    s: ApiState,
    id: String,
    action: relayward_delivery::QueueAction,
) -> ApiResult<Json<QueueDone>> {
    let before = s
        .control
        .queue_action(&s.queue, &id, action, &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(QueueDone {
        message: before.id,
        done: action.as_str().to_string(),
    }))
}

async fn queue_retry(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDone>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Retry).await
}

async fn queue_hold(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDone>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Hold).await
}

async fn queue_release(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDone>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Release).await
}

async fn queue_bounce(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDone>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Bounce).await
}

async fn queue_purge(
    p: Principal,
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<QueueDone>> {
    queue_act(p, s, id, relayward_delivery::QueueAction::Purge).await
}
