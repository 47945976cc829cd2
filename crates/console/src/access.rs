//! Who and what reaches a tenant: its console accounts (an admin adds admins and readers, each
//! with a one-time setup link), its API tokens (operators make and revoke them), and its
//! webhooks (an admin adds one, sees its signing secret once, and removes it).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use relayward_control::AccountRole;
use serde::Deserialize;

use crate::page::{Banner, Shell, csrf, forbidden, refusal, time};
use crate::state::ConsoleState;
use crate::tenant::{may_change, open};
use crate::viewer::Viewer;

async fn render(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    shown_once: Option<Markup>,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let t = opened!(open(v, s, tenant).await);
    let w = v.w();
    let accounts = tried!(v, s.control.accounts(Some(&t.name)).await);
    let tokens = tried!(v, s.control.tokens(Some(&t.name)).await);
    let hooks = tried!(v, s.control.webhooks(Some(&t.name)).await);
    let body = html! {
        @if let Some(m) = shown_once { section.once aria-labelledby="once" { h2 #once { (w.t("shown_once")) } (m) } }
        h2 { (w.t("accounts")) }
        div.scroll tabindex="0" role="region" aria-label=(w.t("accounts")) { table {
            caption { (w.t("accounts_caption")) }
            thead { tr { th scope="col" { (w.t("email")) } th scope="col" { (w.t("account_role")) } th scope="col" { (w.t("status")) } th scope="col" { (w.t("last_sign_in")) } } }
            tbody { @for a in &accounts {
                tr {
                    th scope="row" { (a.email) } td { (a.role) }
                    td { @if a.setup_token_hash.is_some() { (w.t("waiting_for_setup")) } @else if a.locked_until.is_some_and(|u| u > relayward_clock::now_ms()) { (w.t("locked")) } @else { (w.t("active_mfa")) } }
                    td { (a.last_login_at.map(time).unwrap_or_default()) }
                }
            } }
        } }
        @if v.can_change() {
            form.card method="post" action=(format!("/t/{}/access/accounts", t.name)) {
                (csrf(v))
                label for="new-email" { (w.t("email")) }
                input #new-email type="email" name="email" required;
                label for="new-role" { (w.t("account_role")) }
                select #new-role name="role" { option value="admin" { (w.t("role_admin")) } option value="reader" { (w.t("role_reader")) } }
                button type="submit" { (w.t("add_account")) }
            }
        }
        h2 { (w.t("tokens")) }
        @if tokens.is_empty() { p { (w.t("tokens_none")) } } @else {
            div.scroll tabindex="0" role="region" aria-label=(w.t("tokens")) { table {
                caption { (w.t("tokens_caption")) }
                thead { tr { th scope="col" { (w.t("token_name")) } th scope="col" { (w.t("account_role")) } th scope="col" { (w.t("status")) } th scope="col" { (w.t("last_used")) } th scope="col" { span.visually-hidden { (w.t("actions")) } } } }
                tbody { @for k in &tokens {
                    tr {
                        th scope="row" { (k.name) " " code { (k.id) } } td { (k.role) }
                        td { @if k.revoked_at.is_some() { (w.t("revoked")) } @else if let Some(e) = k.expires_at { (w.f("expires", &[("time", &time(e))])) } @else { (w.t("active")) } }
                        td { (k.last_used_at.map(time).unwrap_or_default()) }
                        td { @if v.operator() && k.revoked_at.is_none() {
                            form method="post" action=(format!("/t/{}/access/tokens/{}/revoke", t.name, k.id)) {
                                (csrf(v)) button type="submit" aria-label=(w.f("revoke_of", &[("name", &k.name)])) { (w.t("revoke")) }
                            }
                        } }
                    }
                } }
            } }
        }
        @if v.operator() {
            form.card method="post" action=(format!("/t/{}/access/tokens", t.name)) {
                (csrf(v))
                label for="token-name" { (w.t("token_name")) }
                input #token-name type="text" name="name" required;
                label for="token-role" { (w.t("account_role")) }
                select #token-role name="role" { option value="admin" { (w.t("role_admin")) } option value="reader" { (w.t("role_reader")) } }
                button type="submit" { (w.t("add_token")) }
            }
        }
        h2 { (w.t("webhooks")) }
        p { (w.t("webhooks_intro")) }
        @if !hooks.is_empty() {
            div.scroll tabindex="0" role="region" aria-label=(w.t("webhooks")) { table {
                caption { (w.t("webhooks")) }
                thead { tr { th scope="col" { "URL" } th scope="col" { (w.t("events")) } th scope="col" { (w.t("created")) } th scope="col" { span.visually-hidden { (w.t("actions")) } } } }
                tbody { @for h in &hooks {
                    tr {
                        th scope="row" { (h.url) } td { (h.events.join(", ")) } td { (time(h.created_at)) " · " (h.created_by) }
                        td { @if v.can_change() {
                            form method="post" action=(format!("/t/{}/access/webhooks/{}/delete", t.name, h.id)) {
                                (csrf(v)) button type="submit" aria-label=(w.f("remove_of", &[("name", &h.url)])) { (w.t("remove")) }
                            }
                        } }
                    }
                } }
            } }
        }
        @if v.can_change() {
            form.card method="post" action=(format!("/t/{}/access/webhooks", t.name)) {
                (csrf(v))
                label for="hook-url" { (w.t("webhook_url")) }
                input #hook-url type="text" name="url" required placeholder="https://" aria-describedby="hook-help";
                p #hook-help .help { (w.t("webhook_help")) }
                button type="submit" { (w.t("add_webhook")) }
            }
        }
    };
    Shell::of(v, w.t("access").to_string())
        .tenant(tenant, "access")
        .banner(banner)
        .render_with(status, body)
}

pub async fn page(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
) -> Response {
    render(&v, &s, &tenant, None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct AccessForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
}

fn role(text: &str) -> AccountRole {
    if text == "reader" {
        AccountRole::Reader
    } else {
        AccountRole::Admin
    }
}

/// accounts, tokens, webhooks (add); tokens/{id}/revoke, webhooks/{id}/delete.
pub async fn act(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, what)): Path<(String, String)>,
    Form(f): Form<AccessForm>,
) -> Response {
    act_on(v, s, tenant, what, None, f).await
}

pub async fn act_item(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, what, id, verb)): Path<(String, String, String, String)>,
    Form(f): Form<AccessForm>,
) -> Response {
    act_on(v, s, tenant, what, Some((id, verb)), f).await
}

async fn act_on(
    v: Viewer,
    s: ConsoleState,
    tenant: String,
    what: String,
    item: Option<(String, String)>,
    f: AccessForm,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let w = v.w();
    let actor = v.actor();
    let result: Result<Option<Markup>, relayward_control::ControlError> = match (what.as_str(), item) {
        ("accounts", None) => s
            .control
            .create_account(&f.email, role(&f.role), Some(&tenant), &actor)
            .await
            .map(|(a, token)| {
                let link = format!("{}/setup/{token}", s.base_url);
                Some(html! { p { (w.f("setup_link_for", &[("email", &a.email)])) } p { code.secret { (link) } } })
            }),
        ("tokens", None) if v.operator() => s
            .control
            .create_token(role(&f.role), Some(&tenant), &f.name, None, &actor)
            .await
            .map(|(text, _)| Some(html! { p { (w.t("token_once")) } p { code.secret { (text) } } })),
        ("tokens", Some((id, verb))) if v.operator() && verb == "revoke" => {
            // Only a token of this tenant.
            match tried!(v, s.control.tokens(Some(&tenant)).await).iter().any(|k| k.id == id) {
                true => s.control.revoke_token(&id, &actor).await.map(|()| None),
                false => return crate::page::not_found(v.lang, Some(&v)),
            }
        }
        ("tokens", _) => return forbidden(&v, "operators_only"),
        ("webhooks", None) => s
            .control
            .create_webhook(&tenant, &f.url, &[], &actor)
            .await
            .map(|h| Some(html! { p { (w.t("webhook_secret_once")) } p { code.secret { (h.secret) } } })),
        ("webhooks", Some((id, verb))) if verb == "delete" => s.control.delete_webhook(&tenant, &id, &actor).await.map(|()| None),
        _ => return crate::page::not_found(v.lang, Some(&v)),
    };
    match result {
        Ok(Some(once)) => {
            render(
                &v,
                &s,
                &tenant,
                Some(once),
                Some(Banner::Done(w.t("done_saved").to_string())),
                StatusCode::OK,
            )
            .await
        }
        Ok(None) => Redirect::to(&format!("/t/{tenant}/access")).into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            render(&v, &s, &tenant, None, Some(banner), status).await
        }
    }
}
