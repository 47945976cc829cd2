//! One user of a tenant: reset the SMTP AUTH password (or remove it), aliases, and forwarding.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use relayward_control::directory::UserPatch;
use serde::Deserialize;

use crate::page::{Banner, Shell, csrf, not_found, refusal};
use crate::state::ConsoleState;
use crate::tenant::{may_change, open};
use crate::viewer::Viewer;

async fn render(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    address: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let t = opened!(open(v, s, tenant).await);
    let w = v.w();
    let data = tried!(v, s.control.tenant_data(&t.name).await).unwrap_or_default();
    let Some(u) = data
        .users
        .iter()
        .find(|u| u.address.eq_ignore_ascii_case(address))
    else {
        return not_found(v.lang, Some(v));
    };
    let body = html! {
        dl.evidence {
            dt { (w.t("smtp_auth")) } dd { @if u.password_hash.is_some() { (w.t("password_set")) } @else { (w.t("password_none")) } }
            dt { (w.t("aliases")) } dd { (u.aliases.join(", ")) }
            dt { (w.t("forwarding")) } dd { (u.forward_to.clone().unwrap_or_default()) @if u.forward_only { " (" (w.t("forward_only")) ")" } }
        }
        @if v.can_change() {
            form.card method="post" action=(format!("/t/{}/users/{}", t.name, u.address)) {
                (csrf(v))
                label for="password" { (w.t("new_password")) }
                input #password type="password" name="password" autocomplete="new-password" aria-describedby="pw-help";
                p #pw-help .help { (w.t("user_password_help")) }
                label for="aliases" { (w.t("aliases")) }
                input #aliases type="text" name="aliases" value=(u.aliases.join(", ")) aria-describedby="aliases-help";
                p #aliases-help .help { (w.t("aliases_help")) }
                label for="forward_to" { (w.t("forwarding")) }
                input #forward_to type="email" name="forward_to" value=(u.forward_to.clone().unwrap_or_default());
                p.check {
                    input #forward_only type="checkbox" name="forward_only" value="1" checked[u.forward_only];
                    label for="forward_only" { (w.t("forward_only")) }
                }
                button type="submit" { (w.t("save")) }
            }
        }
        p { a href=(format!("/t/{}/users", t.name)) { (w.t("users")) } }
    };
    Shell::of(v, u.address.clone())
        .tenant(tenant, "users")
        .banner(banner)
        .render_with(status, body)
}

pub async fn page(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, user)): Path<(String, String)>,
) -> Response {
    render(&v, &s, &tenant, &user, None, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    aliases: String,
    #[serde(default)]
    forward_to: String,
    #[serde(default)]
    forward_only: Option<String>,
}

pub async fn save(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, user)): Path<(String, String)>,
    Form(f): Form<UserForm>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let forward = f.forward_to.trim();
    let patch = UserPatch {
        // An empty password field leaves the password as it is.
        password: (!f.password.is_empty()).then(|| Some(f.password.clone())),
        aliases: Some(
            f.aliases
                .split([',', ' ', '\n'])
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_string)
                .collect(),
        ),
        forward_to: Some((!forward.is_empty()).then(|| forward.to_string())),
        forward_only: Some(f.forward_only.is_some() && !forward.is_empty()),
    };
    match s
        .control
        .update_user(&tenant, &user, patch, &v.actor())
        .await
    {
        Ok(_) => Redirect::to(&format!("/t/{tenant}/users/{user}?saved=1")).into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            render(&v, &s, &tenant, &user, Some(banner), status).await
        }
    }
}
