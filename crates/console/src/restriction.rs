//! A restriction's page: its cause and evidence, the live remediation checklist, the
//! attestation and release request (tenant admins), approval, refusal and release (operators),
//! its history; and an operator's restriction by hand.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use relayward_guard::{Kind, Restriction, State as RState};
use serde::Deserialize;

use crate::page::{Banner, Shell, csrf, failure, forbidden, not_found, refusal, reply_code, time};
use crate::state::ConsoleState;
use crate::tenant::{CsrfNote, Done, evidence, kind_key, may_change, open, reason_text, state_key};
use crate::viewer::Viewer;

/// A restriction of this tenant, or the "not found" page (another tenant's id is not found).
async fn restriction_of(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    id: &str,
) -> Result<Restriction, Response> {
    match s.control.restriction(id).await {
        Ok(r) if r.key.tenant == tenant => Ok(r),
        Ok(_)
        | Err(relayward_control::ControlError::Store(relayward_store::StoreError::NotFound {
            ..
        })) => Err(not_found(v.lang, Some(v))),
        Err(relayward_control::ControlError::NotFound(_)) => Err(not_found(v.lang, Some(v))),
        Err(e) => Err(failure(v.lang, e)),
    }
}

async fn restriction_page(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    id: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let t = opened!(open(v, s, tenant).await);
    let r = opened!(restriction_of(v, s, &t.name, id).await);
    let w = v.w();
    let items = if r.key.kind.is_tenant() {
        tried!(v, s.control.checklist(&r).await)
    } else {
        Vec::new()
    };
    let open_items = items.iter().filter(|i| !i.done).count();
    let action = |a: &str| format!("/t/{}/restrictions/{}/{a}", t.name, r.id);
    let body = html! {
        p { strong { (reply_code(r.key.kind)) } " · " (w.t(kind_key(r.key.kind))) " · " (w.t(state_key(r.state))) }
        p { (w.f("since", &[("time", &time(r.started_at))])) }
        @if let Some(p) = r.probation_until { p { (w.f("probation_until", &[("time", &time(p))])) } }
        h2 { (w.t("why")) }
        p { (reason_text(v, &r)) }
        (evidence(v, &r))
        @if !items.is_empty() {
            h2 #checklist { (w.t("checklist_title")) }
            p { (w.f("checklist_open", &[("open", &open_items.to_string()), ("all", &items.len().to_string())])) }
            ol.checklist {
                @for i in &items {
                    li.(if i.done { "done" } else { "open" }) {
                        p.item {
                            span.mark aria-hidden="true" { @if i.done { "✓" } @else { "○" } }
                            " " strong { (w.opt(&format!("check_{}", i.number)).unwrap_or(&i.title)) }
                            " — " (if i.done { w.t("item_done") } else { w.t("item_open") })
                        }
                        @if !i.notes.is_empty() { ul.evidence { @for n in &i.notes { li { (crate::page::note(v, n)) } } } }
                        @if i.number == 5 && !i.done && v.can_change() && !v.operator() {
                            form method="post" action=(action("attest")) {
                                (csrf(v))
                                button type="submit" { (w.t("attest_button")) }
                            }
                        }
                    }
                }
            }
        }
        @if r.key.kind.is_tenant() && r.state == RState::Restricted && v.can_change() && !v.operator() {
            h2 { (w.t("request_release")) }
            form.card method="post" action=(action("request-release")) {
                (csrf(v))
                label for="note" { (w.t("request_note")) }
                textarea #note name="note" rows="3" {}
                button type="submit" { (w.t("request_release")) }
            }
        }
        @if v.operator() && r.blocks() {
            h2 { (w.t("operator_decision")) }
            @if r.state == RState::ReleaseRequested {
                form.card method="post" action=(action("approve")) {
                    (csrf(v))
                    label for="approve-note" { (w.t("approve_note")) }
                    input #approve-note type="text" name="note";
                    button type="submit" { (w.t("approve")) }
                }
                form.card method="post" action=(action("refuse")) {
                    (csrf(v))
                    label for="refuse-note" { (w.t("refuse_reason")) }
                    input #refuse-note type="text" name="note" required;
                    button type="submit" { (w.t("refuse")) }
                }
            } @else {
                form.card method="post" action=(action("release")) {
                    (csrf(v))
                    label for="release-note" { (w.t("release_note")) }
                    input #release-note type="text" name="note";
                    button type="submit" { (w.t("release_now")) }
                }
            }
        }
        h2 { (w.t("history")) }
        div.scroll tabindex="0" role="region" aria-label=(w.t("history_caption")) { table {
            caption { (w.t("history_caption")) }
            thead { tr { th scope="col" { (w.t("when")) } th scope="col" { (w.t("status")) } th scope="col" { (w.t("who")) } th scope="col" { (w.t("note")) } } }
            tbody { @for h in &r.history {
                tr { td { (time(h.at)) } td { (w.t(state_key(h.to))) } td { (h.actor) } td { (h.note) } }
            } }
        } }
    };
    Shell::of(
        v,
        w.f("restriction_title", &[("code", reply_code(r.key.kind))]),
    )
    .tenant(tenant, "home")
    .banner(banner)
    .render_with(status, body)
}

pub async fn restriction(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, id)): Path<(String, String)>,
    Query(d): Query<Done>,
) -> Response {
    let banner = d.banner(&v);
    restriction_page(&v, &s, &tenant, &id, banner, StatusCode::OK).await
}

/// attest, request-release (tenant admins); approve, refuse, release (operators).
pub async fn act(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, id, action)): Path<(String, String, String)>,
    Form(f): Form<CsrfNote>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let r = opened!(restriction_of(&v, &s, &tenant, &id).await);
    let operator_only = matches!(action.as_str(), "approve" | "refuse" | "release");
    if operator_only && !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let actor = v.actor();
    let note = f.note.trim();
    let result = match action.as_str() {
        "attest" => s.control.attest(&r.id, &actor).await.map(|()| "attested"),
        "request-release" => s
            .control
            .request_release(&r.id, &actor, note)
            .await
            .map(|_| "release_requested"),
        "approve" => s
            .control
            .approve(&r.id, &actor, note)
            .await
            .map(|_| "approved"),
        "refuse" => s
            .control
            .refuse(&r.id, &actor, note)
            .await
            .map(|_| "refused"),
        "release" => s
            .control
            .release(&r.id, &actor, note)
            .await
            .map(|_| "released"),
        _ => return not_found(v.lang, Some(&v)),
    };
    match result {
        Ok(done) => {
            Redirect::to(&format!("/t/{tenant}/restrictions/{id}?done={done}")).into_response()
        }
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            restriction_page(&v, &s, &tenant, &id, Some(banner), status).await
        }
    }
}

#[derive(Deserialize)]
pub struct RestrictForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    note: String,
}

/// An operator restricts the tenant, a connector or a user by hand.
pub async fn restrict(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Form(f): Form<RestrictForm>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let Some(kind) = Kind::parse(&f.kind) else {
        return not_found(v.lang, Some(&v));
    };
    match s
        .control
        .restrict(&tenant, kind, &f.name, &f.note, &v.actor())
        .await
    {
        Ok(r) => Redirect::to(&format!("/t/{tenant}/restrictions/{}", r.id)).into_response(),
        Err(e) => {
            let (_, banner) = opened!(refusal(&v, e));
            let text = match banner {
                Banner::Error(t) | Banner::Done(t) => t,
            };
            Shell::of(&v, v.w().t("restrict_title").to_string())
                .tenant(&tenant, "home")
                .banner(Some(Banner::Error(text)))
                .render_with(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    html! { p { a href=(format!("/t/{tenant}")) { (v.w().t("back_home")) } } },
                )
        }
    }
}
