//! The mail queue (operators): list by tenant, destination or sender, and its shape (qshape);
//! retry, hold, release, bounce, purge one message; flush (every selected message due now);
//! hold, release, bounce or purge every selected message.

use crate::answers::*;
use crate::auth::Principal;
use crate::common::*;
use crate::document::error_response;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/queue",
        summary: "Messages waiting for delivery, soonest first (held ones last): filter by tenant and by recipient domain (destination). In a cluster, of every node (each message names its node; `nodes` says which answered). Operators.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueList>),
        route: || get(queue_list),
        doc: Some(queue_list_doc),
    },
    Operation {
        method: "get",
        path: "/queue/shape",
        summary: "Where the queue waits, as qshape draws it: waiting messages by recipient domain (by=sender: sender domain) and by minutes since they arrived, the busiest domains first; filter by tenant, recipient domain and sender. In a cluster, every node's shape added up (`nodes` says which answered). Operators.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueShape>),
        route: || get(queue_shape),
        doc: Some(queue_shape_doc),
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
        path: "/queue/hold",
        summary: "Hold every waiting message of a selection (tenant, recipient domain, sender), or every one with all=true. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueSelectedDone>),
        route: || post(queue_hold_selected),
        doc: Some(queue_selected_doc),
    },
    Operation {
        method: "post",
        path: "/queue/release",
        summary: "Release every held message of a selection (tenant, recipient domain, sender), or every one with all=true; they are tried at once. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueSelectedDone>),
        route: || post(queue_release_selected),
        doc: Some(queue_selected_doc),
    },
    Operation {
        method: "post",
        path: "/queue/bounce",
        summary: "Fail the pending recipients of every waiting message of a selection (tenant, recipient domain, sender), or of every one with all=true; each sender gets an NDR. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueSelectedDone>),
        route: || post(queue_bounce_selected),
        doc: Some(queue_selected_doc),
    },
    Operation {
        method: "post",
        path: "/queue/purge",
        summary: "Delete every waiting message of a selection (tenant, recipient domain, sender), or every one with all=true, without NDRs. Operators; audited.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<QueueSelectedDone>),
        route: || post(queue_purge_selected),
        doc: Some(queue_selected_doc),
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

/// A queue operation's document: the selection's three parameters (`Selection`: tenant,
/// recipient domain, sender), then `more`.
fn selection_doc(more: Value) -> Value {
    let text = json!({ "in": "query", "required": false, "schema": { "type": "string" } });
    let mut parameters: Vec<Value> = ["tenant", "domain", "sender"]
        .into_iter()
        .map(|name| {
            let mut p = text.clone();
            p["name"] = json!(name);
            p
        })
        .collect();
    if let Value::Array(more) = more {
        parameters.extend(more);
    }
    json!({ "responses": { "400": error_response() }, "parameters": parameters })
}

fn queue_list_doc() -> Value {
    selection_doc(json!([
        { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
    ]))
}

fn queue_shape_doc() -> Value {
    selection_doc(json!([
        { "name": "by", "in": "query", "required": false, "schema": { "type": "string", "enum": ["recipient", "sender"] } },
        { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 1000 } }
    ]))
}

fn queue_flush_doc() -> Value {
    selection_doc(json!([]))
}

fn queue_selected_doc() -> Value {
    selection_doc(json!([
        { "name": "all", "in": "query", "required": false, "schema": { "type": "boolean" },
          "description": "Every queued message: needed when no tenant, domain or sender is named, refused with them" }
    ]))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FlushQuery {
    tenant: Option<String>,
    domain: Option<String>,
    sender: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShapeQuery {
    tenant: Option<String>,
    domain: Option<String>,
    sender: Option<String>,
    by: Option<ShapeByName>,
    limit: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum ShapeByName {
    Recipient,
    Sender,
}

/// A listing's `limit`, 1 to 1,000; `default` when none is asked.
fn limit(asked: Option<usize>, default: usize) -> ApiResult<usize> {
    let limit = asked.unwrap_or(default);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "limit must be 1 to 1000",
        ));
    }
    Ok(limit)
}

async fn queue_shape(
    State(s): State<ApiState>,
    q: Result<Query<ShapeQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueShape>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let limit = limit(q.limit, 20)?;
    let by = match q.by {
        Some(ShapeByName::Sender) => relayward_delivery::ShapeBy::Sender,
        Some(ShapeByName::Recipient) | None => relayward_delivery::ShapeBy::Recipient,
    };
    let (shape, nodes) = s
        .control
        .queue_shape(
            &s.queue,
            &selection(q.tenant, q.domain, q.sender),
            by,
            limit,
        )
        .await;
    Ok(Json(QueueShape { shape, nodes }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SelectedQuery {
    tenant: Option<String>,
    domain: Option<String>,
    sender: Option<String>,
    #[serde(default)]
    all: bool,
}

/// The selection a query names; blank values name nothing.
fn selection(
    tenant: Option<String>,
    domain: Option<String>,
    sender: Option<String>,
) -> relayward_delivery::Selection {
    let named = |x: Option<String>| x.filter(|x| !x.trim().is_empty());
    relayward_delivery::Selection {
        tenant: named(tenant),
        domain: named(domain),
        sender: named(sender),
    }
}

async fn queue_flush(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<FlushQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueFlushed>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let (messages, other_nodes) = s
        .control
        .queue_flush(
            &s.queue,
            &selection(q.tenant, q.domain, q.sender),
            &p.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(QueueFlushed {
        messages,
        other_nodes,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueQuery {
    tenant: Option<String>,
    domain: Option<String>,
    sender: Option<String>,
    limit: Option<usize>,
}

async fn queue_list(
    State(s): State<ApiState>,
    q: Result<Query<QueueQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueList>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let limit = limit(q.limit, 100)?;
    let (messages, nodes) = s
        .control
        .queue_list(
            &s.queue,
            &selection(q.tenant, q.domain, q.sender),
            None,
            limit,
        )
        .await;
    Ok(Json(QueueList { messages, nodes }))
}

async fn queue_act(
    p: Principal,
    s: ApiState,
    id: String,
    action: relayward_delivery::QueueAction,
) -> ApiResult<Json<QueueDone>> {
    let before = s
        .control
        .queue_action_anywhere(&s.queue, &id, action, &p.actor())
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(QueueDone {
        other_nodes: before.is_none(),
        message: before.map_or(id, |b| b.id),
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

async fn queue_act_selected(
    p: Principal,
    s: ApiState,
    q: Result<Query<SelectedQuery>, axum::extract::rejection::QueryRejection>,
    action: relayward_delivery::QueueAction,
) -> ApiResult<Json<QueueSelectedDone>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let done = s
        .control
        .queue_action_selected(
            &s.queue,
            &selection(q.tenant, q.domain, q.sender),
            q.all,
            action,
            &p.actor(),
        )
        .await
        .map_err(ApiError::refused)?;
    Ok(Json(QueueSelectedDone {
        done: action.as_str().to_string(),
        messages: done.done.len(),
        in_flight: done.in_flight(),
        other_nodes: done.other_nodes,
    }))
}

async fn queue_hold_selected(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<SelectedQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueSelectedDone>> {
    queue_act_selected(p, s, q, relayward_delivery::QueueAction::Hold).await
}

async fn queue_release_selected(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<SelectedQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueSelectedDone>> {
    queue_act_selected(p, s, q, relayward_delivery::QueueAction::Release).await
}

async fn queue_bounce_selected(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<SelectedQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueSelectedDone>> {
    queue_act_selected(p, s, q, relayward_delivery::QueueAction::Bounce).await
}

async fn queue_purge_selected(
    p: Principal,
    State(s): State<ApiState>,
    q: Result<Query<SelectedQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<QueueSelectedDone>> {
    queue_act_selected(p, s, q, relayward_delivery::QueueAction::Purge).await
}
