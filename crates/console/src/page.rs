//! The shell every page shares (landmarks, navigation, the sign-out form), the banners that
//! say what just happened, the error pages, and small formatting helpers.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};
use relayward_control::ControlError;

use crate::viewer::Viewer;
use crate::words::Lang;

/// What happened just before this page: shown at the top of `main`, announced to screen
/// readers.
pub enum Banner {
    Done(String),
    Error(String),
}

pub struct Shell<'a> {
    pub lang: Lang,
    pub title: String,
    pub viewer: Option<&'a Viewer>,
    /// The tenant whose pages these are (the tenant navigation).
    pub tenant: Option<&'a str>,
    /// The navigation entry of this page (`home`, `domains`, …).
    pub active: &'static str,
    pub banner: Option<Banner>,
}

impl<'a> Shell<'a> {
    pub fn new(lang: Lang, title: String) -> Shell<'a> {
        Shell {
            lang,
            title,
            viewer: None,
            tenant: None,
            active: "",
            banner: None,
        }
    }

    pub fn of(v: &'a Viewer, title: String) -> Shell<'a> {
        Shell {
            viewer: Some(v),
            ..Shell::new(v.lang, title)
        }
    }

    pub fn tenant(mut self, tenant: &'a str, active: &'static str) -> Shell<'a> {
        self.tenant = Some(tenant);
        self.active = active;
        self
    }

    pub fn active(mut self, active: &'static str) -> Shell<'a> {
        self.active = active;
        self
    }

    pub fn banner(mut self, banner: Option<Banner>) -> Shell<'a> {
        self.banner = banner;
        self
    }

    pub fn render(self, body: Markup) -> Response {
        self.render_with(StatusCode::OK, body)
    }

    pub fn render_with(self, status: StatusCode, body: Markup) -> Response {
        let w = self.lang.words();
        let link = |href: String, key: &'static str| {
            let current = self.active == key;
            html! {
                li { a href=(href) aria-current=[current.then_some("page")] { (w.t(key)) } }
            }
        };
        let doc = html! {
            (DOCTYPE)
            html lang=(self.lang.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · Relayward" }
                    link rel="stylesheet" href="/assets/console.css";
                }
                body {
                    a.skip href="#main" { (w.t("skip_to_content")) }
                    header.top {
                        p.brand { "Relayward" }
                        @if let Some(v) = self.viewer {
                            nav aria-label=(w.t("nav_label")) {
                                ul {
                                    @if let Some(t) = self.tenant {
                                        (link(format!("/t/{t}"), "home"))
                                        (link(format!("/t/{t}/domains"), "domains"))
                                        (link(format!("/t/{t}/connectors"), "connectors"))
                                        (link(format!("/t/{t}/users"), "users"))
                                        (link(format!("/t/{t}/traffic"), "traffic"))
                                        (link(format!("/t/{t}/trace"), "trace"))
                                        (link(format!("/t/{t}/alerts"), "alerts"))
                                        (link(format!("/t/{t}/audit"), "audit"))
                                        (link(format!("/t/{t}/access"), "access"))
                                    }
                                    @if v.operator() {
                                        (link("/support".into(), "support_tenants"))
                                        (link("/support/releases".into(), "support_releases"))
                                        (link("/support/queue".into(), "support_queue"))
                                        (link("/support/audit".into(), "support_audit"))
                                    }
                                }
                            }
                            form.signout method="post" action="/sign-out" {
                                (csrf(v))
                                a.who href="/account" aria-current=[(self.active == "your_account").then_some("page")] { (v.account.email) " · " (w.t(role_key(v))) }
                                button type="submit" { (w.t("sign_out")) }
                            }
                        }
                    }
                    main #main tabindex="-1" {
                        h1 { (self.title) }
                        @match &self.banner {
                            Some(Banner::Done(text)) => p.banner.done role="status" { (text) },
                            Some(Banner::Error(text)) => p.banner.error role="alert" { (text) },
                            None => {}
                        }
                        (body)
                    }
                    footer { p { (w.t("footer")) } }
                }
            }
        };
        (status, Html(doc.into_string())).into_response()
    }
}

fn role_key(v: &Viewer) -> &'static str {
    match v.role {
        relayward_control::AccountRole::Operator => "role_operator",
        relayward_control::AccountRole::Admin => "role_admin",
        relayward_control::AccountRole::Reader => "role_reader",
    }
}

impl IntoResponse for crate::viewer::NoViewer {
    fn into_response(self) -> Response {
        match self {
            crate::viewer::NoViewer::SignIn => Redirect::to("/sign-in").into_response(),
            crate::viewer::NoViewer::Failed(lang, e) => failure(lang, e),
        }
    }
}

/// The hidden field every form of a signed-in page carries.
pub fn csrf(v: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(v.session.csrf); }
}

/// The page for what does not exist or is not the viewer's: the same either way.
pub fn not_found(lang: Lang, viewer: Option<&Viewer>) -> Response {
    let w = lang.words();
    let mut shell = Shell::new(lang, w.t("not_found_title").to_string());
    shell.viewer = viewer;
    shell.render_with(
        StatusCode::NOT_FOUND,
        html! {
            p { (w.t("not_found_text")) }
            @if let Some(v) = viewer { p { a href=(v.home()) { (w.t("back_home")) } } }
        },
    )
}

/// A failure of the relay itself (the store): what to do, and where the detail is.
pub fn failure(lang: Lang, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "console page failed");
    let w = lang.words();
    Shell::new(lang, w.t("failure_title").to_string()).render_with(
        StatusCode::INTERNAL_SERVER_ERROR,
        html! { p { (w.t("failure_text")) } },
    )
}

/// A page refused to a reader, or a form post without the session's token.
pub fn forbidden(v: &Viewer, key: &'static str) -> Response {
    let w = v.w();
    Shell::of(v, w.t("forbidden_title").to_string()).render_with(
        StatusCode::FORBIDDEN,
        html! { p { (w.t(key)) } p { a href=(v.home()) { (w.t("back_home")) } } },
    )
}

/// A change refused because the tenant made its hour's changes (`[http] tenant_changes_per_hour`).
pub fn too_many_changes(v: &Viewer, wait: i64) -> Response {
    let w = v.w();
    let mut r = Shell::of(v, w.t("forbidden_title").to_string()).render_with(
        StatusCode::TOO_MANY_REQUESTS,
        html! {
            p { (w.f("too_many_changes", &[("seconds", &wait.to_string())])) }
            p { a href=(v.home()) { (w.t("back_home")) } }
        },
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&wait.to_string()) {
        r.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, value);
    }
    r
}

/// A refused action's banner: what kind of refusal, in the viewer's words, then the control
/// plane's own reason. Internal failures become the failure page.
pub fn refusal(v: &Viewer, e: ControlError) -> Result<(StatusCode, Banner), Response> {
    let (status, key) = match &e {
        ControlError::NotFound(_) => (StatusCode::NOT_FOUND, "refused_not_found"),
        ControlError::Forbidden(_) | ControlError::MfaRequired(_) => {
            (StatusCode::FORBIDDEN, "refused_forbidden")
        }
        ControlError::Conflict(_) => (StatusCode::CONFLICT, "refused_conflict"),
        ControlError::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused_invalid"),
        ControlError::Store(s) if s.is_disk_full() => return Err(failure(v.lang, e)),
        ControlError::Store(relayward_store::StoreError::NotFound { .. }) => {
            (StatusCode::NOT_FOUND, "refused_not_found")
        }
        ControlError::Store(
            relayward_store::StoreError::Exists { .. }
            | relayward_store::StoreError::ManagedByConfig(_),
        ) => (StatusCode::CONFLICT, "refused_conflict"),
        ControlError::Store(relayward_store::StoreError::Invalid(_)) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "refused_invalid")
        }
        ControlError::Store(_) | ControlError::Internal(_) => return Err(failure(v.lang, e)),
    };
    Ok((status, Banner::Error(format!("{} {}", v.w().t(key), e))))
}

/// Why a restriction starts, in the viewer's words where the words file has the reason.
pub fn reason(v: &Viewer, reason: relayward_guard::Reason) -> String {
    let code = serde_json::to_value(reason)
        .ok()
        .and_then(|x| x.as_str().map(str::to_string))
        .unwrap_or_default();
    v.w()
        .opt(&format!("reason_{code}"))
        .map_or_else(|| reason.describe().to_string(), str::to_string)
}

/// A moment as people read it, in UTC.
pub fn time(ms: i64) -> String {
    relayward_guard::note::utc(ms)
}

/// A sentence of evidence in the viewer's language (English where the words lack it).
pub fn note(v: &Viewer, n: &relayward_guard::note::Note) -> String {
    v.w()
        .opt(&format!("ev_{}", n.key))
        .map_or_else(|| n.english(), |t| n.fill(t))
}

/// A moment to the second, in UTC (timelines).
pub fn time_s(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(60);
    let mut t = time(ms);
    t.insert_str(16, &format!(":{secs:02}"));
    t
}

/// A restriction's reply as the relay sends it: code and enhanced status.
pub fn reply_code(kind: relayward_guard::Kind) -> &'static str {
    match kind {
        relayward_guard::Kind::TenantUnregistered => "5.7.750",
        relayward_guard::Kind::TenantThreshold => "5.7.705",
        relayward_guard::Kind::Connector => "5.7.711",
        relayward_guard::Kind::User => "5.1.8",
    }
}
