//! The admin center (tenant admins and readers) and the support console (operators): pages
//! rendered on the server from the control plane, so a page, the API and the command line
//! obey one set of rules. Every asset is compiled in; no script runs in the page.
//!
//! Who may see what is decided once per request (`viewer`): a tenant's pages live under
//! `/t/{tenant}`, and another tenant's name answers the same "not found" page as a tenant that
//! does not exist. Every form carries the session's CSRF token; sign-in and setup forms, which
//! come before a session, carry a token bound to a cookie of their own.

// A page's early exit is the page to show (a `Response`): large, and made once per request.
#![allow(clippy::result_large_err)]

/// The value of a store read, or the failure page.
macro_rules! tried {
    ($v:expr, $e:expr) => {
        match $e {
            Ok(x) => x,
            Err(e) => return crate::page::failure($v.lang, e),
        }
    };
}

/// The value, or the page an early exit answers.
macro_rules! opened {
    ($e:expr) => {
        match $e {
            Ok(x) => x,
            Err(r) => return r,
        }
    };
}

mod access;
mod account;
mod chart;
mod domain_check;
mod limits;
mod page;
mod queue;
mod records;
mod restriction;
mod signin;
mod state;
mod support;
mod tenant;
mod trace;
mod traffic;
mod user;
mod viewer;
mod words;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub use state::ConsoleState;
pub use words::Lang;

const CSS: &str = include_str!("../assets/console.css");

/// The console's routes, served at `/` beside the API.
pub fn router(state: ConsoleState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/assets/console.css", get(css))
        .route("/sign-in", get(signin::form).post(signin::submit))
        .route("/sign-out", post(signin::sign_out))
        .route("/account", get(account::page).post(account::save))
        .route(
            "/setup/:token",
            get(signin::setup).post(signin::setup_finish),
        )
        .route("/t/:tenant", get(tenant::home))
        .route(
            "/t/:tenant/domains",
            get(tenant::domains).post(tenant::add_domain),
        )
        .route(
            "/t/:tenant/domains/:domain/verify",
            post(tenant::verify_domain),
        )
        .route(
            "/t/:tenant/domains/:domain/dkim/:action",
            post(tenant::dkim_act),
        )
        .route("/t/:tenant/domains/:domain/checks", get(domain_check::page))
        .route("/t/:tenant/connectors", get(tenant::connectors))
        .route(
            "/t/:tenant/connectors/:connector/:action",
            post(tenant::connector_act),
        )
        .route("/t/:tenant/users", get(tenant::users))
        .route("/t/:tenant/users/:user", get(user::page).post(user::save))
        .route("/t/:tenant/users/:user/release", post(tenant::release_user))
        .route("/t/:tenant/restrictions/:id", get(restriction::restriction))
        .route(
            "/t/:tenant/restrictions/:id/:action",
            post(restriction::act),
        )
        .route("/t/:tenant/traffic", get(traffic::page))
        .route("/t/:tenant/trace", get(trace::search))
        .route("/t/:tenant/trace/:id", get(trace::message))
        .route("/t/:tenant/alerts", get(records::alerts))
        .route("/t/:tenant/audit", get(records::audit))
        .route("/support/audit", get(records::global_audit))
        .route("/support/queue", get(queue::page))
        .route("/support/queue/flush", post(queue::flush))
        .route(
            "/support/queue/selected/:action",
            post(queue::act_on_selected),
        )
        .route("/support/queue/:id/:action", post(queue::act))
        .route("/t/:tenant/restrict", post(restriction::restrict))
        .route("/t/:tenant/access", get(access::page))
        .route("/t/:tenant/access/:what", post(access::act))
        .route("/t/:tenant/access/:what/:id/:verb", post(access::act_item))
        .route("/support", get(support::tenants))
        .route(
            "/support/limits/:tenant",
            get(limits::page).post(limits::submit),
        )
        .route("/support/releases", get(support::releases))
        .layer(axum::middleware::map_response(safety_headers))
        .with_state(state)
}

/// Signed in: the account's home; else the sign-in page.
async fn root(viewer: Option<viewer::Viewer>) -> Response {
    match viewer {
        Some(v) => Redirect::to(&v.home()).into_response(),
        None => Redirect::to("/sign-in").into_response(),
    }
}

async fn css() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        CSS,
    )
        .into_response()
}

/// Every answer of the console: no inline script or style, no framing, no sniffing, no
/// referrer leaking a setup link, and pages that hold tenant data are never cached.
async fn safety_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    let is_css = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/css"));
    if !is_css {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    r
}
