//! Read-only records: a tenant's alerts and audit log, and the global audit log (operators).

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};
use relayward_store::AuditEntry;

use crate::page::{Shell, forbidden, time};
use crate::state::ConsoleState;
use crate::tenant::open;
use crate::viewer::Viewer;

const ROWS: usize = 200;

pub async fn alerts(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let w = v.w();
    let alerts = tried!(v, s.control.alerts(Some(&t.name), ROWS).await);
    let body = html! {
        p { (w.t("alerts_intro")) }
        @if alerts.is_empty() { p { (w.t("alerts_none")) } } @else {
            div.scroll tabindex="0" role="region" aria-label=(w.t("alerts")) { table {
                caption { (w.t("alerts_caption")) }
                thead { tr { th scope="col" { (w.t("when")) } th scope="col" { (w.t("severity")) } th scope="col" { (w.t("alert_kind")) } th scope="col" { (w.t("subject")) } th scope="col" { (w.t("what_happened")) } } }
                tbody { @for a in &alerts {
                    tr.(format!("sev-{}", a.severity)) {
                        td { (time(a.at)) } td { (a.severity) } td { (a.kind) } td { (a.subject) } td { (a.text) }
                    }
                } }
            } }
        }
    };
    Shell::of(&v, w.t("alerts").to_string())
        .tenant(&tenant, "alerts")
        .render(body)
}

fn audit_table(v: &Viewer, entries: &[AuditEntry], with_tenant: bool) -> Markup {
    let w = v.w();
    html! {
        @if entries.is_empty() { p { (w.t("audit_none")) } } @else {
            div.scroll tabindex="0" role="region" aria-label=(w.t("audit_caption")) { table {
                caption { (w.t("audit_caption")) }
                thead { tr {
                    th scope="col" { (w.t("when")) } th scope="col" { (w.t("who")) }
                    @if with_tenant { th scope="col" { (w.t("tenant")) } }
                    th scope="col" { (w.t("action")) } th scope="col" { (w.t("from_where")) } th scope="col" { "MFA" } th scope="col" { (w.t("what_changed")) }
                } }
                tbody { @for e in entries {
                    tr {
                        td { (time(e.at)) } td { (e.actor) " (" (e.role) ")" }
                        @if with_tenant { td { (e.tenant.clone().unwrap_or_default()) } }
                        td { code { (e.action) } } td { (e.client) } td { @if e.mfa { (w.t("yes")) } @else { (w.t("no")) } }
                        td.detail { code { (e.detail) } }
                    }
                } }
            } }
        }
    }
}

pub async fn audit(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let w = v.w();
    let entries = tried!(v, s.control.audit_log(Some(&t.name), ROWS).await);
    let body = html! { p { (w.t("audit_intro")) } (audit_table(&v, &entries, false)) };
    Shell::of(&v, w.t("audit").to_string())
        .tenant(&tenant, "audit")
        .render(body)
}

pub async fn global_audit(v: Viewer, State(s): State<ConsoleState>) -> Response {
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let w = v.w();
    let entries = tried!(v, s.control.audit_log(None, ROWS).await);
    let body = html! { p { (w.t("audit_intro_global")) } (audit_table(&v, &entries, true)) };
    Shell::of(&v, w.t("support_audit").to_string())
        .active("support_audit")
        .render(body)
}
