//! A tenant's limits (operators) with the what-if: before saving new limits, the tenant's last
//! 30 days of traced mail are replayed through the guard engine under them and under the current
//! ones, and the page shows on which days and at which message each would have restricted.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use relayward_control::whatif::WhatIf;
use relayward_guard::Limits;
use serde_json::{Map, Value};

use crate::page::{Banner, Shell, csrf, forbidden, refusal, reply_code, time};
use crate::state::ConsoleState;
use crate::tenant::{Done, open};
use crate::viewer::Viewer;

/// The limits the form edits: (key, is a ratio).
const FIELDS: &[(&str, bool)] = &[
    ("unregistered_allowance_per_day", false),
    ("unregistered_suspicious_per_day", false),
    ("tenant_suspicious_per_day", false),
    ("tenant_suspicious_ratio", true),
    ("connector_suspicious_per_day", false),
    ("user_suspicious_per_day", false),
    ("user_recipients_per_day", false),
    ("user_messages_per_minute", false),
];

fn value_of(l: &Limits, key: &str) -> String {
    serde_json::to_value(l)
        .ok()
        .and_then(|v| v.get(key).cloned())
        .map(|v| v.to_string())
        .unwrap_or_default()
}

fn form(v: &Viewer, tenant: &str, shown: &Limits) -> Markup {
    let w = v.w();
    html! {
        form.card method="post" action=(format!("/support/limits/{tenant}")) {
            (csrf(v))
            @for (key, ratio) in FIELDS {
                label for=(key) { (w.t(&format!("limit_{key}"))) }
                input id=(key) type="number" name=(key) min="0" step=(if *ratio { "0.01" } else { "1" }) value=(value_of(shown, key)) required;
            }
            p.help { (w.t("whatif_help")) }
            button type="submit" name="action" value="whatif" { (w.t("whatif_button")) }
            " "
            button type="submit" name="action" value="save" { (w.t("save_limits")) }
        }
    }
}

fn outcome(v: &Viewer, id: &str, title: &str, r: &WhatIf) -> Markup {
    let w = v.w();
    let o = &r.outcome;
    let days_hit = o.days.iter().filter(|d| !d.triggers.is_empty()).count();
    html! {
        section.whatif aria-labelledby=(id) {
            h2 #(id) { (title) }
            p {
                (w.f("whatif_summary", &[
                    ("messages", &o.messages.to_string()),
                    ("since", &time(r.since)[..10]),
                    ("days", &days_hit.to_string()),
                    ("refused", &o.refused.to_string()),
                ]))
            }
            @if r.truncated { p.help { (w.t("whatif_truncated")) } }
            @if days_hit == 0 { p.verdict.ok { (w.t("whatif_never")) } } @else {
                div.scroll tabindex="0" role="region" aria-label=(title) { table {
                    caption { (title) }
                    thead { tr { th scope="col" { (w.t("day")) } th scope="col" { (w.t("messages")) } th scope="col" { (w.t("whatif_refused")) } th scope="col" { (w.t("whatif_restrictions")) } } }
                    tbody { @for d in o.days.iter().filter(|d| !d.triggers.is_empty() || d.refused > 0) {
                        tr {
                            td { (time(d.day_start)[..10].to_string()) }
                            td { (d.messages) }
                            td { (d.refused) }
                            td { ul { @for t in &d.triggers {
                                li {
                                    strong { (reply_code(t.key.kind)) } " "
                                    @if !t.key.name.is_empty() { (t.key.name) " · " }
                                    (w.f("whatif_at", &[("n", &t.day_message.to_string()), ("time", &time(t.at)[11..])]))
                                    " — " (crate::page::reason(v, t.reason))
                                }
                            } } }
                        }
                    } }
                } }
            }
        }
    }
}

async fn show(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    proposed: Option<Value>,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    if !v.operator() {
        return forbidden(v, "operators_only");
    }
    let t = opened!(open(v, s, tenant).await);
    let w = v.w();
    let current_overrides = tried!(v, s.control.limit_overrides(&t.name).await);
    let current = tried!(v, s.control.what_if(&t.name, &current_overrides).await);
    let proposal = match &proposed {
        Some(p) => match s.control.what_if(&t.name, p).await {
            Ok(r) => Some(r),
            Err(e) => {
                let (status, banner) = opened!(refusal(v, e));
                let body = html! { (form(v, &t.name, &current.limits)) };
                return Shell::of(v, w.f("limits_title", &[("tenant", &t.name)]))
                    .active("support_tenants")
                    .banner(Some(banner))
                    .render_with(status, body);
            }
        },
        None => None,
    };
    let shown = proposal.as_ref().map_or(&current.limits, |p| &p.limits);
    let body = html! {
        p { (w.t("limits_intro")) }
        @if let Some(p) = &proposal { (outcome(v, "whatif-new", w.t("whatif_new"), p)) }
        (outcome(v, "whatif-current", w.t("whatif_current"), &current))
        h2 { (w.t("edit_limits")) }
        (form(v, &t.name, shown))
        h2 { (w.t("service_limits")) }
        p { (w.t("service_limits_text")) }
        dl.evidence {
            @for (key, _) in FIELDS {
                dt { (w.t(&format!("limit_{key}"))) } dd { (value_of(&s.control.defaults, key)) }
            }
        }
    };
    Shell::of(v, w.f("limits_title", &[("tenant", &t.name)]))
        .active("support_tenants")
        .banner(banner)
        .render_with(status, body)
}

pub async fn page(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let banner = d.banner(&v);
    show(&v, &s, &tenant, None, banner, StatusCode::OK).await
}

pub async fn submit(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Form(f): Form<std::collections::HashMap<String, String>>,
) -> Response {
    if !v.csrf_ok(f.get("csrf").map_or("", String::as_str)) {
        return forbidden(&v, "form_expired");
    }
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let t = opened!(open(&v, &s, &tenant).await);
    // The current overrides, with the form's fields set over them.
    let mut overrides = match tried!(v, s.control.limit_overrides(&t.name).await) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (key, ratio) in FIELDS {
        let Some(text) = f.get(*key).map(|x| x.trim()).filter(|x| !x.is_empty()) else {
            continue;
        };
        let value = if *ratio {
            text.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .and_then(|x| serde_json::Number::from_f64(x).map(Value::Number))
        } else {
            text.parse::<u64>().ok().map(Value::from)
        };
        let Some(value) = value else {
            let banner = Banner::Error(v.w().f(
                "limit_not_a_number",
                &[("field", v.w().t(&format!("limit_{key}")))],
            ));
            return show(
                &v,
                &s,
                &t.name,
                None,
                Some(banner),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        };
        overrides.insert((*key).to_string(), value);
    }
    let overrides = Value::Object(overrides);
    if f.get("action").map(String::as_str) == Some("save") {
        return match s.control.set_limits(&t.name, &overrides, &v.actor()).await {
            Ok(_) => Redirect::to(&format!("/support/limits/{}?done=limits_saved", t.name))
                .into_response(),
            Err(e) => {
                let (status, banner) = opened!(refusal(&v, e));
                show(&v, &s, &t.name, None, Some(banner), status).await
            }
        };
    }
    show(&v, &s, &t.name, Some(overrides), None, StatusCode::OK).await
}
