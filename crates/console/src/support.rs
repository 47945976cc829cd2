//! The support console (operators): tenants, searched and filtered, a page at a time; the
//! queue of release requests with each request's checklist evidence.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use relayward_guard::{Restriction, State as RState};
use serde::Deserialize;

use crate::page::{Shell, csrf, failure, forbidden, reply_code, time};
use crate::state::ConsoleState;
use crate::viewer::Viewer;

const PAGE: usize = 50;
/// Names looked at per page while searching, at most (a search never reads every tenant).
const SCAN: usize = 5_000;

#[derive(Deserialize, Default)]
pub struct TenantQuery {
    #[serde(default)]
    q: String,
    /// `restricted` or `probation`; empty for all.
    #[serde(default)]
    filter: String,
    /// The last name of the previous page.
    #[serde(default)]
    after: String,
}

fn operator_only(v: &Viewer) -> Option<Response> {
    (!v.operator()).then(|| forbidden(v, "operators_only"))
}

pub async fn tenants(
    v: Viewer,
    State(s): State<ConsoleState>,
    Query(q): Query<TenantQuery>,
) -> Response {
    if let Some(r) = operator_only(&v) {
        return r;
    }
    let w = v.w();
    let search = q.q.trim().to_ascii_lowercase();
    let open = match s.control.restrictions(None, false).await {
        Ok(r) => r,
        Err(e) => return failure(v.lang, e),
    };
    let state_of = |name: &str| -> Vec<&Restriction> {
        open.iter().filter(|r| r.key.tenant == name).collect()
    };
    // (name, subscription end, restrictions): the page's rows.
    let mut rows: Vec<(String, Option<String>)> = Vec::new();
    let mut more = false;
    // Why a tenant is listed, for the near-threshold filter.
    let mut notes: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    match q.filter.as_str() {
        "near" => {
            let near = match s.control.near_threshold().await {
                Ok(n) => n,
                Err(e) => return failure(v.lang, e),
            };
            for (tenant, counter, value, threshold) in near {
                if !tenant.starts_with(&search) || notes.contains_key(&tenant) {
                    continue;
                }
                notes.insert(tenant.clone(), format!("{counter}: {value} / {threshold}"));
                if rows.len() < PAGE {
                    let ends = s
                        .control
                        .tenant(&tenant)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|t| t.subscription_ends);
                    rows.push((tenant, ends));
                }
            }
        }
        "lapsed" => {
            let after = (!q.after.is_empty()).then_some(q.after.as_str());
            let found = match s.control.lapsed_tenants(after, PAGE + 1).await {
                Ok(f) => f,
                Err(e) => return failure(v.lang, e),
            };
            more = found.len() > PAGE;
            rows = found
                .into_iter()
                .filter(|t| t.name.starts_with(&search))
                .take(PAGE)
                .map(|t| (t.name, t.subscription_ends))
                .collect();
        }
        f @ ("restricted" | "probation") => {
            let mut names: Vec<String> = open
                .iter()
                .filter(|r| {
                    if f == "restricted" {
                        r.blocks()
                    } else {
                        r.on_probation()
                    }
                })
                .map(|r| r.key.tenant.clone())
                .filter(|n| n.starts_with(&search) && *n > q.after)
                .collect();
            names.sort();
            names.dedup();
            more = names.len() > PAGE;
            for n in names.into_iter().take(PAGE) {
                let ends = s
                    .control
                    .tenant(&n)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|t| t.subscription_ends);
                rows.push((n, ends));
            }
        }
        _ => {
            // Names in order from the cursor (or from just before the search prefix).
            let mut cursor: Option<String> = if !q.after.is_empty() {
                Some(q.after.clone())
            } else if !search.is_empty() {
                let mut before = search.clone();
                before.pop();
                Some(before)
            } else {
                None
            };
            let mut scanned = 0;
            'pages: while scanned < SCAN {
                let batch = match s.control.tenants(cursor.as_deref(), 500).await {
                    Ok(b) => b,
                    Err(e) => return failure(v.lang, e),
                };
                if batch.is_empty() {
                    break;
                }
                scanned += batch.len();
                for t in batch {
                    cursor = Some(t.name.clone());
                    if !t.name.starts_with(&search) {
                        if t.name.as_str() > search.as_str() && !search.is_empty() {
                            break 'pages;
                        }
                        continue;
                    }
                    if rows.len() == PAGE {
                        more = true;
                        break 'pages;
                    }
                    rows.push((t.name, t.subscription_ends));
                }
            }
        }
    }
    let next = rows.last().map(|(n, _)| n.clone());
    let body = html! {
        form.filters method="get" action="/support" role="search" {
            label for="q" { (w.t("search_tenants")) }
            input #q type="search" name="q" value=(q.q);
            label for="filter" { (w.t("filter")) }
            select #filter name="filter" {
                option value="" selected[q.filter.is_empty()] { (w.t("filter_all")) }
                option value="restricted" selected[q.filter == "restricted"] { (w.t("filter_restricted")) }
                option value="probation" selected[q.filter == "probation"] { (w.t("filter_probation")) }
                option value="near" selected[q.filter == "near"] { (w.t("filter_near")) }
                option value="lapsed" selected[q.filter == "lapsed"] { (w.t("filter_lapsed")) }
            }
            button type="submit" { (w.t("apply")) }
        }
        div.scroll tabindex="0" role="region" aria-label=(w.t("tenants_caption")) { table {
            caption { (w.t("tenants_caption")) }
            thead { tr { th scope="col" { (w.t("tenant")) } th scope="col" { (w.t("status")) } th scope="col" { (w.t("subscription_ends")) } th scope="col" { span.visually-hidden { (w.t("actions")) } } } }
            tbody { @for (name, ends) in &rows {
                tr {
                    th scope="row" { a href=(format!("/t/{name}")) { (name) } }
                    td { @if let Some(n) = notes.get(name) { (n) " · " } @let rs = state_of(name); @if rs.is_empty() { (w.t("status_ok")) } @else {
                        @for (i, r) in rs.iter().enumerate() { @if i > 0 { ", " } (reply_code(r.key.kind)) " " (r.state.as_str()) }
                    } }
                    td { (ends.clone().unwrap_or_else(|| "—".into())) }
                    td { a href=(format!("/support/limits/{name}")) aria-label=(format!("{} · {name}", w.t("edit_limits"))) { (w.t("edit_limits")) } }
                }
            } }
        } }
        @if rows.is_empty() { p { (w.t("no_tenants")) } }
        @if let (true, Some(n)) = (more, next) {
            p { a href=(format!("/support?q={}&filter={}&after={}", enc(&q.q), enc(&q.filter), enc(&n))) { (w.t("next_page")) } }
        }
    };
    Shell::of(&v, w.t("support_tenants").to_string())
        .active("support_tenants")
        .render(body)
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn releases(v: Viewer, State(s): State<ConsoleState>) -> Response {
    if let Some(r) = operator_only(&v) {
        return r;
    }
    let w = v.w();
    let open = match s.control.restrictions(None, false).await {
        Ok(r) => r,
        Err(e) => return failure(v.lang, e),
    };
    let mut requests: Vec<(Restriction, Vec<relayward_guard::checklist::ChecklistItem>)> =
        Vec::new();
    for r in open
        .into_iter()
        .filter(|r| r.state == RState::ReleaseRequested)
        .take(100)
    {
        let items = match s.control.checklist(&r).await {
            Ok(i) => i,
            Err(e) => return failure(v.lang, e),
        };
        requests.push((r, items));
    }
    let body = html! {
        @if requests.is_empty() { p { (w.t("no_requests")) } }
        @for (r, items) in &requests {
            @let requested = r.history.iter().rev().find(|h| h.to == RState::ReleaseRequested);
            @let action = |a: &str| format!("/t/{}/restrictions/{}/{a}", r.key.tenant, r.id);
            article.request aria-labelledby=(format!("q-{}", r.id)) {
                h2 #(format!("q-{}", r.id)) { (r.key.tenant) " · " (reply_code(r.key.kind)) }
                @if let Some(h) = requested {
                    p { (w.f("requested_by", &[("who", &h.actor), ("time", &time(h.at))])) }
                    @if !h.note.is_empty() { blockquote { (h.note) } }
                }
                h3 { (w.t("checklist_title")) }
                ol.checklist { @for i in items {
                    li.(if i.done { "done" } else { "open" }) {
                        span.mark aria-hidden="true" { @if i.done { "✓" } @else { "○" } }
                        " " strong { (w.opt(&format!("check_{}", i.number)).unwrap_or(&i.title)) }
                        @if !i.notes.is_empty() { ul.evidence { @for n in &i.notes { li { (crate::page::note(&v, n)) } } } }
                    }
                } }
                div.decide {
                    form method="post" action=(action("approve")) {
                        (csrf(&v))
                        label for=(format!("a-{}", r.id)) { (w.t("approve_note")) }
                        input id=(format!("a-{}", r.id)) type="text" name="note";
                        button type="submit" { (w.t("approve")) }
                    }
                    form method="post" action=(action("refuse")) {
                        (csrf(&v))
                        label for=(format!("r-{}", r.id)) { (w.t("refuse_reason")) }
                        input id=(format!("r-{}", r.id)) type="text" name="note" required;
                        button type="submit" { (w.t("refuse")) }
                    }
                    p { a href=(format!("/t/{}/restrictions/{}", r.key.tenant, r.id)) { (w.t("open_restriction")) } }
                }
            }
        }
    };
    Shell::of(&v, w.t("support_releases").to_string())
        .active("support_releases")
        .render(body)
}
