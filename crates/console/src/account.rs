//! The signed-in account's own page: who it is, its second factor and recovery codes left, and
//! the console's language for it.

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use crate::page::{Banner, Shell, csrf, forbidden, refusal, time};
use crate::state::ConsoleState;
use crate::viewer::Viewer;

#[derive(Deserialize, Default)]
pub struct Saved {
    saved: Option<String>,
}

fn render(v: &Viewer, banner: Option<Banner>, status: StatusCode) -> Response {
    let w = v.w();
    let a = &v.account;
    let current = a.language.as_deref().unwrap_or("");
    let body = html! {
        dl.evidence {
            dt { (w.t("email")) } dd { (a.email) }
            dt { (w.t("account_role")) } dd { (w.t(match v.role {
                relayward_control::AccountRole::Operator => "role_operator",
                relayward_control::AccountRole::Admin => "role_admin",
                relayward_control::AccountRole::Reader => "role_reader",
            })) }
            @if let Some(t) = &a.tenant { dt { (w.t("tenant")) } dd { a href=(format!("/t/{t}")) { (t) } } }
            dt { (w.t("second_factor")) } dd { (w.t("second_factor_totp")) }
            dt { (w.t("recovery_codes_left")) } dd { (a.recovery_codes.len()) }
            @if let Some(at) = a.last_login_at { dt { (w.t("last_sign_in")) } dd { (time(at)) } }
            dt { (w.t("session_ends")) } dd { (time(v.session.expires_at)) }
        }
        h2 { (w.t("language")) }
        form.card method="post" action="/account" {
            (csrf(v))
            label for="language" { (w.t("language")) }
            select #language name="language" aria-describedby="language-help" {
                option value="" selected[current.is_empty()] { (w.t("language_automatic")) }
                option value="en" lang="en" selected[current == "en"] { "English" }
                option value="es" lang="es" selected[current == "es"] { "Español" }
            }
            p #language-help .help { (w.t("language_help")) }
            button type="submit" { (w.t("save")) }
        }
    };
    Shell::of(v, w.t("your_account").to_string())
        .active("your_account")
        .banner(banner)
        .render_with(status, body)
}

pub async fn page(v: Viewer, Query(q): Query<Saved>) -> Response {
    let banner = q
        .saved
        .is_some()
        .then(|| Banner::Done(v.w().t("language_saved").to_string()));
    render(&v, banner, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LanguageForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    language: String,
}

pub async fn save(
    v: Viewer,
    State(s): State<ConsoleState>,
    Form(f): Form<LanguageForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return forbidden(&v, "form_expired");
    }
    match s
        .control
        .set_account_language(&v.account.id, Some(&f.language), &v.actor())
        .await
    {
        Ok(()) => Redirect::to("/account?saved=1").into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            render(&v, Some(banner), status)
        }
    }
}
