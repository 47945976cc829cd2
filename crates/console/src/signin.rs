//! Sign-in (password and a TOTP or recovery code), sign-out, and the one-time setup page with
//! its QR code. Forms shown before a session carry a token bound to a cookie of their own
//! (`rw_form`), so another site cannot post them in the visitor's name.

use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, PreEscaped, html};
use relayward_control::accounts::{self, LoginError};
use serde::Deserialize;

use crate::page::{Banner, Shell};
use crate::state::ConsoleState;
use crate::viewer::{Viewer, browser_lang, cookie};
use crate::words::Lang;

const FORM_COOKIE: &str = "rw_form";

/// A pre-session form's token: the one in the visitor's cookie, or a new one to set.
fn form_token(headers: &HeaderMap) -> (String, bool) {
    match cookie(headers, FORM_COOKIE) {
        Some(t) if t.len() == 32 && t.bytes().all(|b| b.is_ascii_hexdigit()) => (t, false),
        _ => (relayward_control::random_hex(16), true),
    }
}

fn with_form_cookie(mut r: Response, token: &str, new: bool) -> Response {
    if new
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{FORM_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=3600"
        ))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn form_token_ok(headers: &HeaderMap, given: &str) -> bool {
    cookie(headers, FORM_COOKIE).is_some_and(|c| accounts::same(c.as_bytes(), given.as_bytes()))
}

fn sign_in_page(
    lang: Lang,
    token: &str,
    email: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let w = lang.words();
    Shell::new(lang, w.t("signin_title").to_string())
        .banner(banner)
        .render_with(
            status,
            html! {
                form.card method="post" action="/sign-in" {
                    input type="hidden" name="form_token" value=(token);
                    label for="email" { (w.t("email")) }
                    input #email type="email" name="email" autocomplete="username" required value=(email);
                    label for="password" { (w.t("password")) }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    label for="code" { (w.t("totp_code")) }
                    input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]*" aria-describedby="code-help";
                    p #code-help .help { (w.t("totp_code_help")) }
                    label for="recovery" { (w.t("recovery_code")) }
                    input #recovery type="text" name="recovery" autocomplete="off" aria-describedby="recovery-help";
                    p #recovery-help .help { (w.t("recovery_code_help")) }
                    button type="submit" { (w.t("signin_button")) }
                }
                p.help { (w.t("signin_limits")) }
            },
        )
}

pub async fn form(viewer: Option<Viewer>, headers: HeaderMap) -> Response {
    if let Some(v) = viewer {
        return Redirect::to(&v.home()).into_response();
    }
    let (token, new) = form_token(&headers);
    let page = sign_in_page(browser_lang(&headers), &token, "", None, StatusCode::OK);
    with_form_cookie(page, &token, new)
}

#[derive(Deserialize)]
pub struct SignIn {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    recovery: String,
}

pub async fn submit(
    State(s): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<SignIn>,
) -> Response {
    let lang = browser_lang(&headers);
    let w = lang.words();
    let (token, new) = form_token(&headers);
    let again = |banner: String, status: StatusCode| {
        let page = sign_in_page(lang, &token, &f.email, Some(Banner::Error(banner)), status);
        with_form_cookie(page, &token, new)
    };
    if !form_token_ok(&headers, &f.form_token) {
        return again(w.t("form_expired").to_string(), StatusCode::FORBIDDEN);
    }
    if let Err(wait) = s.logins.attempt(peer.ip(), relayward_clock::now_ms()).await {
        return again(
            w.f("signin_too_many", &[("seconds", &wait.to_string())]),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let code: String = f.code.chars().filter(|c| !c.is_whitespace()).collect();
    let (code, recovery) = match (code.is_empty(), f.recovery.trim().is_empty()) {
        (false, _) => (Some(code.as_str()), None),
        (true, false) => (None, Some(f.recovery.trim())),
        (true, true) => {
            return again(
                w.t("signin_need_code").to_string(),
                StatusCode::UNAUTHORIZED,
            );
        }
    };
    let email = f.email.trim();
    let signed = match s
        .control
        .login(email, &f.password, code, recovery, &peer.ip().to_string())
        .await
    {
        Ok(signed) => signed,
        Err(LoginError::Invalid) => {
            return again(w.t("signin_invalid").to_string(), StatusCode::UNAUTHORIZED);
        }
        Err(LoginError::Locked(wait)) => {
            return again(
                w.f("signin_locked", &[("seconds", &wait.to_string())]),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(LoginError::TooMany(wait)) => {
            return again(
                w.f("signin_too_many", &[("seconds", &wait.to_string())]),
                StatusCode::TOO_MANY_REQUESTS,
            );
        }
        Err(LoginError::Store(e)) => return crate::page::failure(lang, e),
    };
    let home = match (&signed.account.tenant, signed.account.role.as_str()) {
        (Some(t), "admin" | "reader") => format!("/t/{t}"),
        _ => "/support".to_string(),
    };
    let mut r = Redirect::to(&home).into_response();
    let value = format!(
        "{}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        accounts::SESSION_COOKIE,
        signed.cookie,
        accounts::SESSION_HOURS * 3600
    );
    if let Ok(v) = HeaderValue::from_str(&value) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

#[derive(Deserialize)]
pub struct Csrf {
    #[serde(default)]
    csrf: String,
}

pub async fn sign_out(
    v: Viewer,
    State(s): State<ConsoleState>,
    headers: HeaderMap,
    Form(f): Form<Csrf>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return crate::page::forbidden(&v, "form_expired");
    }
    if let Some(c) = cookie(&headers, accounts::SESSION_COOKIE)
        && let Err(e) = s.control.logout(&c).await
    {
        return crate::page::failure(v.lang, e);
    }
    let mut r = Redirect::to("/sign-in").into_response();
    let clear = format!(
        "{}=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        accounts::SESSION_COOKIE
    );
    if let Ok(v) = HeaderValue::from_str(&clear) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The QR code of the authenticator key, drawn on the server as SVG.
fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

fn setup_page(
    lang: Lang,
    path: &str,
    form_token: &str,
    email: &str,
    secret: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let w = lang.words();
    let uri = accounts::otpauth_uri(email, secret);
    let qr: Markup = match qr_svg(&uri) {
        // The SVG is the qrcode crate's own output from our URI: no input of the visitor's.
        Some(svg) => {
            html! { figure.qr role="img" aria-label=(w.t("setup_qr_label")) { (PreEscaped(svg)) } }
        }
        None => html! {},
    };
    Shell::new(lang, w.t("setup_title").to_string())
        .banner(banner)
        .render_with(
            status,
            html! {
                p { (w.f("setup_intro", &[("email", email)])) }
                h2 { (w.t("setup_step_key")) }
                (qr)
                p { (w.t("setup_key_text")) " " code.secret { (secret) } }
                h2 { (w.t("setup_step_password")) }
                form.card method="post" action=(path) {
                    input type="hidden" name="form_token" value=(form_token);
                    label for="password" { (w.t("new_password")) }
                    input #password type="password" name="password" autocomplete="new-password" minlength="12" required aria-describedby="pw-help";
                    p #pw-help .help { (w.t("new_password_help")) }
                    label for="code" { (w.t("totp_code")) }
                    input #code type="text" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                    button type="submit" { (w.t("setup_button")) }
                }
            },
        )
}

pub async fn setup(
    State(s): State<ConsoleState>,
    Path(token): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = browser_lang(&headers);
    let (a, secret) = match s.control.setup_begin(&token).await {
        Ok(found) => found,
        Err(relayward_control::ControlError::NotFound(_)) => return setup_gone(lang),
        Err(e) => return crate::page::failure(lang, e),
    };
    let (ft, new) = form_token(&headers);
    let page = setup_page(
        lang,
        &format!("/setup/{token}"),
        &ft,
        &a.email,
        &secret,
        None,
        StatusCode::OK,
    );
    with_form_cookie(page, &ft, new)
}

fn setup_gone(lang: Lang) -> Response {
    let w = lang.words();
    Shell::new(lang, w.t("setup_gone_title").to_string()).render_with(
        StatusCode::NOT_FOUND,
        html! { p { (w.t("setup_gone_text")) } },
    )
}

#[derive(Deserialize)]
pub struct SetupForm {
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

pub async fn setup_finish(
    State(s): State<ConsoleState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    Form(f): Form<SetupForm>,
) -> Response {
    let lang = browser_lang(&headers);
    let w = lang.words();
    let (a, secret) = match s.control.setup_begin(&token).await {
        Ok(found) => found,
        Err(relayward_control::ControlError::NotFound(_)) => return setup_gone(lang),
        Err(e) => return crate::page::failure(lang, e),
    };
    let (ft, new) = form_token(&headers);
    let again = |text: String, status| {
        let page = setup_page(
            lang,
            &format!("/setup/{token}"),
            &ft,
            &a.email,
            &secret,
            Some(Banner::Error(text)),
            status,
        );
        with_form_cookie(page, &ft, new)
    };
    if !form_token_ok(&headers, &f.form_token) {
        return again(w.t("form_expired").to_string(), StatusCode::FORBIDDEN);
    }
    // The same per-address limit as sign-in: a setup form guesses codes too.
    if let Err(wait) = s.logins.attempt(peer.ip(), relayward_clock::now_ms()).await {
        return again(
            w.f("signin_too_many", &[("seconds", &wait.to_string())]),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let code: String = f.code.chars().filter(|c| !c.is_whitespace()).collect();
    let codes = match s
        .control
        .setup_finish(&token, &f.password, &code, &peer.ip().to_string())
        .await
    {
        Ok(codes) => codes,
        Err(relayward_control::ControlError::Invalid(_)) => {
            return again(
                w.t("new_password_help").to_string(),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
        Err(relayward_control::ControlError::Forbidden(_)) => {
            return again(w.t("setup_wrong_code").to_string(), StatusCode::FORBIDDEN);
        }
        Err(relayward_control::ControlError::NotFound(_)) => return setup_gone(lang),
        Err(e) => return crate::page::failure(lang, e),
    };
    Shell::new(lang, w.t("setup_done_title").to_string()).render(html! {
        p { (w.t("setup_done_text")) }
        ol.codes { @for c in &codes { li { code { (c) } } } }
        p { a.button href="/sign-in" { (w.t("signin_button")) } }
    })
}
