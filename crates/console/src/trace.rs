//! Message trace: a tenant's messages searched by sender, recipient, status or id, and one
//! message's timeline (every event: scan verdict, queueing, each attempt with the remote answer,
//! delivery, reports).

use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::html;
use relayward_control::shown_address;
use relayward_store::{TRACE_STATUSES as STATUSES, TraceQuery};
use serde::Deserialize;

use crate::page::{Shell, not_found, time};
use crate::state::ConsoleState;
use crate::tenant::open;
use crate::viewer::Viewer;

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    sender: String,
    #[serde(default)]
    recipient: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    id: String,
    /// How many days back (1 to 90).
    #[serde(default)]
    days: Option<i64>,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 320).then(|| s.to_string())
}

pub async fn search(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Query(q): Query<Search>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let w = v.w();
    let days = q.days.unwrap_or(2).clamp(1, 90);
    let status = some(&q.status).filter(|x| STATUSES.contains(&x.as_str()));
    let query = TraceQuery {
        message_id: some(&q.id),
        sender: some(&q.sender),
        recipient: some(&q.recipient),
        tenant: Some(t.name.clone()),
        status: status.clone(),
        since: Some(relayward_clock::now_ms() - days * 86_400_000),
        until: None,
        limit: 100,
    };
    let found = tried!(v, s.control.search_trace(&query).await);
    let body = html! {
        form.filters method="get" action=(format!("/t/{}/trace", t.name)) role="search" {
            div { label for="sender" { (w.t("sender")) } input #sender type="text" name="sender" value=(q.sender); }
            div { label for="recipient" { (w.t("recipient")) } input #recipient type="text" name="recipient" value=(q.recipient); }
            div { label for="status" { (w.t("status")) }
                select #status name="status" {
                    option value="" { (w.t("any")) }
                    @for st in STATUSES { option value=(st) selected[status.as_deref() == Some(*st)] { (st) } }
                }
            }
            div { label for="id" { (w.t("message_id")) } input #id type="text" name="id" value=(q.id); }
            div { label for="days" { (w.t("days_back")) } input #days type="number" name="days" min="1" max="90" value=(days); }
            button type="submit" { (w.t("search")) }
        }
        @if found.is_empty() { p { (w.t("trace_none")) } } @else {
            div.scroll tabindex="0" role="region" aria-label=(w.t("trace_caption")) { table {
                caption { (w.t("trace_caption")) }
                thead { tr { th scope="col" { (w.t("received")) } th scope="col" { (w.t("sender")) } th scope="col" { (w.t("recipients")) } th scope="col" { (w.t("message_id")) } } }
                tbody { @for m in &found {
                    tr {
                        td { (time(m.received_at)) }
                        td { (shown_address(&m.sender)) }
                        td { @for (i, r) in m.recipients.iter().enumerate() { @if i > 0 { ", " } (shown_address(&r.address)) " (" (r.status) ")" } }
                        td { a href=(format!("/t/{}/trace/{}", t.name, m.message_id)) { (m.message_id) } }
                    }
                } }
            } }
        }
    };
    Shell::of(&v, w.t("trace").to_string())
        .tenant(&tenant, "trace")
        .render(body)
}

pub async fn message(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let w = v.w();
    let query = TraceQuery {
        message_id: Some(id.clone()),
        tenant: Some(t.name.clone()),
        limit: 1,
        ..TraceQuery::default()
    };
    let Some(m) = tried!(v, s.control.search_trace(&query).await)
        .into_iter()
        .next()
    else {
        return not_found(v.lang, Some(&v));
    };
    let body = html! {
        dl.evidence {
            dt { (w.t("received")) } dd { (time(m.received_at)) }
            dt { (w.t("sender")) } dd { (shown_address(&m.sender)) }
            dt { (w.t("client_address")) } dd { (m.client_ip) " · " (m.origin) }
            dt { (w.t("size")) } dd { (m.size) " B" }
            @for r in &m.recipients { dt { (w.t("recipient")) } dd { (shown_address(&r.address)) " — " strong { (r.status) } } }
        }
        h2 { (w.t("timeline")) }
        ol.timeline {
            @for e in &m.events {
                li {
                    span.when { (crate::page::time_s(e.at)) }
                    " " strong.kind { (e.kind) }
                    @if let Some(r) = &e.recipient { " · " (shown_address(r)) }
                    @if !e.detail.is_empty() { br; span.detail { (e.detail) } }
                }
            }
        }
        p { a href=(format!("/t/{}/trace", t.name)) { (w.t("back_to_search")) } }
    };
    Shell::of(&v, w.f("message_title", &[("id", &m.message_id)]))
        .tenant(&tenant, "trace")
        .render(body)
}
