//! The message trace, of one tenant or of all, paged.

use crate::answers::*;
use crate::auth::TenantAccess;
use crate::common::*;
use crate::document::error_response;

pub(crate) const OPERATIONS: &[Operation] = &[
    Operation {
        method: "get",
        path: "/tenants/{tenant}/trace",
        summary: "Message trace of the tenant, newest first: filter by message id, sender, recipient, status (Delivered, Failed, Pending, Deferred, FilteredAsSpam: refused at end of data with a spam or bulk verdict, Expanded: a forward-only user whose mail left as its forwarded copy) and time (Unix ms); page with `before` (the previous page's `next`).",
        access: Access::TenantRead,
        ok: 200,
        answer: Some(answer::<TracePage>),
        route: || get(tenant_trace),
        doc: Some(tenant_trace_doc),
    },
    Operation {
        method: "get",
        path: "/trace",
        summary: "Message trace across tenants (operators): the same filters, and `tenant`.",
        access: Access::Operator,
        ok: 200,
        answer: Some(answer::<TracePage>),
        route: || get(all_trace),
        doc: Some(trace_doc),
    },
];

fn trace_doc() -> Value {
    let text = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "string" } });
    let ms = |name: &str| json!({ "name": name, "in": "query", "required": false, "schema": { "type": "integer", "format": "int64" } });
    json!({
        "responses": { "400": error_response() },
        "parameters": [
            text("message_id"), text("sender"), text("recipient"), text("tenant"),
            { "name": "status", "in": "query", "required": false, "schema": { "type": "string", "enum": relayward_store::TRACE_STATUSES } },
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
) -> ApiResult<Json<TracePage>> {
    let bad = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, m.to_string());
    let limit = p.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(bad("limit must be 1 to 500"));
    }
    if let Some(st) = &p.status
        && !relayward_store::TRACE_STATUSES.contains(&st.as_str())
    {
        return Err(bad(&format!(
            "status must be one of {}",
            relayward_store::TRACE_STATUSES.join(", ")
        )));
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
    Ok(Json(TracePage {
        messages: found,
        next,
    }))
}

async fn tenant_trace(
    a: TenantAccess,
    State(s): State<ApiState>,
    q: Result<Query<TraceParams>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<TracePage>> {
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
) -> ApiResult<Json<TracePage>> {
    let Query(q) = q.map_err(|e| ApiError::new(bad_request(e.status()), e.body_text()))?;
    let tenant = q.tenant.clone();
    trace_page(&s, tenant, q).await
}
