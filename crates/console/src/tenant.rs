//! The admin center: a tenant's home ("can my organisation send mail right now?"), accepted
//! domains, connectors, users, and a restriction with its live checklist and release request.
//! Operators see the same pages for any tenant and approve or refuse from them.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use relayward_control::DomainVerification;
use relayward_guard::{Kind, Restriction, State as RState};
use relayward_store::Tenant;
use serde::Deserialize;

use crate::page::{
    Banner, Shell, csrf, failure, forbidden, not_found, refusal, reply_code, time, too_many_changes,
};
use crate::state::ConsoleState;
use crate::viewer::Viewer;

/// The tenant of the path, if the viewer may see it; else the one "not found" page.
pub(crate) async fn open(v: &Viewer, s: &ConsoleState, tenant: &str) -> Result<Tenant, Response> {
    if !v.may_see(tenant) {
        return Err(not_found(v.lang, Some(v)));
    }
    match s.control.tenant(tenant).await {
        Ok(Some(t)) => Ok(t),
        Ok(None) => Err(not_found(v.lang, Some(v))),
        Err(e) => Err(failure(v.lang, e)),
    }
}

/// A change: the viewer may make it, the form carries the session's token, and the viewer's
/// tenant has not made its hour's changes (`Control::count_tenant_change`, shared with the API).
pub(crate) async fn may_change(s: &ConsoleState, v: &Viewer, csrf: &str) -> Result<(), Response> {
    if !v.csrf_ok(csrf) {
        return Err(forbidden(v, "form_expired"));
    }
    if !v.can_change() {
        return Err(forbidden(v, "readers_cannot_change"));
    }
    if let Some(tenant) = v.account.tenant.as_deref()
        && let Err(wait) = s.control.count_tenant_change(&v.actor(), tenant).await
    {
        return Err(too_many_changes(v, wait));
    }
    Ok(())
}

/// `?done=<what>` after a change: the banner that says it happened.
#[derive(Deserialize, Default)]
pub(crate) struct Done {
    done: Option<String>,
}

impl Done {
    pub(crate) fn banner(&self, v: &Viewer) -> Option<Banner> {
        let key = match self.done.as_deref()? {
            "domain_added" => "done_domain_added",
            "connector_reviewed" => "done_connector_reviewed",
            "connector_removed" => "done_connector_removed",
            "user_released" => "done_user_released",
            "attested" => "done_attested",
            "release_requested" => "done_release_requested",
            "approved" => "done_approved",
            "refused" => "done_refused",
            "released" => "done_released",
            "limits_saved" => "done_limits_saved",
            _ => return None,
        };
        Some(Banner::Done(v.w().t(key).to_string()))
    }
}

pub(crate) fn kind_key(kind: Kind) -> &'static str {
    match kind {
        Kind::TenantUnregistered => "kind_tenant_unregistered",
        Kind::TenantThreshold => "kind_tenant_threshold",
        Kind::Connector => "kind_connector",
        Kind::User => "kind_user",
    }
}

pub(crate) fn state_key(state: RState) -> &'static str {
    match state {
        RState::Restricted => "state_restricted",
        RState::ReleaseRequested => "state_release_requested",
        RState::Probation => "state_probation",
        RState::Lifted => "state_lifted",
    }
}

/// Why, in the viewer's words where the words file has the reason.
pub(crate) fn reason_text(v: &Viewer, r: &Restriction) -> String {
    crate::page::reason(v, r.reason)
}

/// The cause's evidence: counters beside thresholds and the top contributors.
pub(crate) fn evidence(v: &Viewer, r: &Restriction) -> Markup {
    let w = v.w();
    let c = &r.cause;
    let list = |key: &'static str, items: &[(String, u64)]| {
        html! {
            @if !items.is_empty() {
                dt { (w.t(key)) }
                dd { @for (i, (name, n)) in items.iter().enumerate() {
                    @if i > 0 { ", " } (name) " (" (n) ")"
                } }
            }
        }
    };
    html! {
        dl.evidence {
            @for k in &c.counters {
                dt { (k.name) }
                dd { (w.f("counter_of", &[("value", &k.value.to_string()), ("threshold", &k.threshold.to_string())])) }
            }
            (list("top_sender_domains", &c.top_sender_domains))
            (list("top_connectors", &c.top_connectors))
            (list("top_users", &c.top_users))
            (list("top_client_ips", &c.top_client_ips))
        }
    }
}

/// Where to go next about a restriction.
fn next_step(v: &Viewer, tenant: &str, r: &Restriction) -> (String, &'static str) {
    match r.key.kind {
        Kind::TenantUnregistered | Kind::TenantThreshold => (
            format!("/t/{tenant}/restrictions/{}", r.id),
            if r.state == RState::ReleaseRequested {
                "next_wait_approval"
            } else if v.can_change() {
                "next_checklist"
            } else {
                "next_checklist_reader"
            },
        ),
        Kind::User => (format!("/t/{tenant}/users"), "next_users"),
        Kind::Connector => (format!("/t/{tenant}/connectors"), "next_connectors"),
    }
}

pub async fn home(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let w = v.w();
    let every = tried!(v, s.control.restrictions(Some(&t.name), true).await);
    let past: Vec<&Restriction> = every
        .iter()
        .filter(|r| r.state == RState::Lifted)
        .take(20)
        .collect();
    let all: Vec<Restriction> = every
        .iter()
        .filter(|r| r.state != RState::Lifted)
        .cloned()
        .collect();
    let blocking: Vec<&Restriction> = all.iter().filter(|r| r.blocks()).collect();
    let probation: Vec<&Restriction> = all.iter().filter(|r| r.on_probation()).collect();
    let counters = tried!(v, s.control.counters(&t.name).await);
    let tenant_wide = blocking.iter().any(|r| r.key.kind.is_tenant());
    // Users at their daily recipient limit get 5.1.90 until the 24-hour window moves on.
    let at_limit: Vec<&relayward_guard::CounterView> = counters
        .iter()
        .filter(|c| {
            c.subject.starts_with("user:")
                && c.counter == "recipients_24h"
                && c.threshold.is_some_and(|t| c.value >= t)
        })
        .collect();
    let (verdict_class, verdict) = if blocking.is_empty() && at_limit.is_empty() {
        ("ok", w.t("home_can_send"))
    } else if tenant_wide {
        ("blocked", w.t("home_blocked"))
    } else {
        ("partial", w.t("home_partly"))
    };
    let body = html! {
        section.verdict.(verdict_class) aria-labelledby="verdict" {
            h2 #verdict { (verdict) }
            @if blocking.is_empty() { p { (w.t("home_can_send_text")) } }
        }
        @for r in &blocking {
            @let (link, step) = next_step(&v, &t.name, r);
            article.restriction aria-labelledby=(format!("r-{}", r.id)) {
                h2 #(format!("r-{}", r.id)) { (reply_code(r.key.kind)) " · " (w.t(kind_key(r.key.kind))) }
                @if r.key.kind == Kind::User || r.key.kind == Kind::Connector { p { strong { (r.key.name) } } }
                p { (w.t("reply_sent")) " " code { (r.key.kind.refusal().code) " " (r.key.kind.refusal().text) } }
                p { (w.f("since", &[("time", &time(r.started_at))])) " · " (w.t(state_key(r.state))) }
                h3 { (w.t("why")) }
                p { (reason_text(&v, r)) }
                (evidence(&v, r))
                p.next { a.button href=(link) { (w.t(step)) } }
            }
        }
        @for c in &at_limit {
            article.restriction {
                h2 { "5.1.90 · " (w.t("daily_recipient_limit")) }
                p { strong { (c.subject.trim_start_matches("user:")) } }
                p { (w.t("reply_sent")) " " code { "550 5.1.90 Your message can't be sent because you've reached your daily limit for message recipients" } }
                p { (w.f("counter_of", &[("value", &c.value.to_string()), ("threshold", &c.threshold.unwrap_or(0).to_string())])) }
                p { (w.t("daily_recipient_limit_text")) }
                p.next { a.button href=(format!("/t/{}/users/{}", t.name, c.subject.trim_start_matches("user:"))) { (w.t("next_users")) } }
            }
        }
        @for r in &probation {
            article.probation {
                h2 { (reply_code(r.key.kind)) " · " (w.t(kind_key(r.key.kind))) }
                p { (w.f("probation_until", &[("time", &r.probation_until.map(time).unwrap_or_default())])) }
            }
        }
        section aria-labelledby="counters" {
            h2 #counters { (w.t("counters_title")) }
            (counter_table(&v, &counters))
        }
        @if !past.is_empty() {
            section aria-labelledby="past" {
                h2 #past { (w.t("restriction_history")) }
                ul { @for r in &past {
                    li { a href=(format!("/t/{}/restrictions/{}", t.name, r.id)) { (reply_code(r.key.kind)) " · " (w.t(kind_key(r.key.kind))) }
                        @if !r.key.name.is_empty() { " · " (r.key.name) }
                        " · " (time(r.started_at)) " · " (w.t(state_key(r.state))) }
                } }
            }
        }
        @if v.operator() {
            section aria-labelledby="restrict" {
                h2 #restrict { (w.t("restrict_title")) }
                p { a href=(format!("/support/limits/{}", t.name)) { (w.t("edit_limits")) } }
                form.card method="post" action=(format!("/t/{}/restrict", t.name)) {
                    (csrf(&v))
                    label for="restrict-kind" { (w.t("restrict_what")) }
                    select #restrict-kind name="kind" {
                        option value="tenant_threshold" { "5.7.705 · " (w.t("kind_tenant_threshold")) }
                        option value="tenant_unregistered" { "5.7.750 · " (w.t("kind_tenant_unregistered")) }
                        option value="connector" { "5.7.711 · " (w.t("kind_connector")) }
                        option value="user" { "5.1.8 · " (w.t("kind_user")) }
                    }
                    label for="restrict-name" { (w.t("restrict_name")) }
                    input #restrict-name type="text" name="name" aria-describedby="restrict-help";
                    p #restrict-help .help { (w.t("restrict_name_help")) }
                    label for="restrict-note" { (w.t("restrict_note")) }
                    input #restrict-note type="text" name="note" required;
                    button type="submit" { (w.t("restrict_button")) }
                }
            }
        }
    };
    Shell::of(&v, w.f("home_title", &[("tenant", &t.name)]))
        .tenant(&tenant, "home")
        .render(body)
}

pub(crate) fn counter_table(v: &Viewer, counters: &[relayward_guard::CounterView]) -> Markup {
    let w = v.w();
    html! {
        @if counters.is_empty() { p { (w.t("counters_none")) } } @else {
            div.scroll tabindex="0" role="region" aria-label=(w.t("counters_caption")) { table {
                caption { (w.t("counters_caption")) }
                thead { tr { th scope="col" { (w.t("subject")) } th scope="col" { (w.t("counter")) } th scope="col" { (w.t("value")) } th scope="col" { (w.t("threshold")) } } }
                tbody { @for c in counters {
                    tr {
                        td { (c.subject) } td { (c.counter) } td { (c.value) }
                        td { @match c.threshold { Some(t) => (t), None => "—" } }
                    }
                } }
            } }
        }
    }
}

async fn domains_page(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let t = opened!(open(v, s, tenant).await);
    let w = v.w();
    let data = tried!(v, s.control.tenant_data(&t.name).await).unwrap_or_default();
    let mut keys = Vec::new();
    for d in &data.domains {
        keys.push((
            d.name.clone(),
            tried!(v, s.control.dkim_keys(&t.name, &d.name).await),
        ));
    }
    let body = html! {
        p { (w.t("domains_intro")) }
        div.scroll tabindex="0" role="region" aria-label=(w.t("domains_caption")) { table {
            caption { (w.t("domains_caption")) }
            thead { tr { th scope="col" { (w.t("domain")) } th scope="col" { (w.t("status")) } th scope="col" { (w.t("txt_record")) } th scope="col" { span.visually-hidden { (w.t("actions")) } } } }
            tbody { @for d in &data.domains {
                tr {
                    th scope="row" { (d.name) }
                    td { @if d.verified { (w.t("verified")) } @else { (w.t("not_verified")) } }
                    td { @if !d.verified { code { (d.name) " TXT \"relayward-verification=" (d.verification_token) "\"" } } }
                    td {
                        @if !d.verified && v.can_change() {
                            form method="post" action=(format!("/t/{}/domains/{}/verify", t.name, d.name)) {
                                (csrf(v))
                                button type="submit" aria-label=(w.f("verify_now_of", &[("domain", &d.name)])) { (w.t("verify_now")) }
                            }
                        }
                        a href=(format!("/t/{}/domains/{}/checks", t.name, d.name)) aria-label=(w.f("check_dns_of", &[("domain", &d.name)])) { (w.t("check_dns")) }
                    }
                }
            } }
        } }
        h2 { (w.t("dkim_title")) }
        p { (w.t("dkim_intro")) }
        @for (domain, list) in &keys {
            h3 { (domain) }
            @if list.is_empty() { p { (w.t("dkim_none")) } } @else {
                div.scroll tabindex="0" role="region" aria-label=(w.f("dkim_of", &[("domain", domain)])) { table {
                    caption { (w.f("dkim_of", &[("domain", domain)])) }
                    thead { tr { th scope="col" { (w.t("selector")) } th scope="col" { (w.t("algorithm")) } th scope="col" { (w.t("status")) } th scope="col" { (w.t("txt_record")) } } }
                    tbody { @for k in list.iter().filter(|k| k.state != relayward_store::DkimKeyState::Retired) {
                        @let (name, value) = relayward_control::dkim_keys::record(k);
                        tr {
                            th scope="row" { (k.selector) } td { (k.algorithm) }
                            td { (k.state.as_str()) " · " (time(k.state_since)) }
                            td.detail { code { (name) " TXT \"" (value) "\"" } }
                        }
                    } }
                } }
            }
            @if v.can_change() {
                div.decide {
                    @for (action, label) in [("rotate", "dkim_rotate"), ("activate", "dkim_activate"), ("retire", "dkim_retire")] {
                        form method="post" action=(format!("/t/{}/domains/{}/dkim/{action}", t.name, domain)) {
                            (csrf(v))
                            button type="submit" aria-label=(format!("{} · {domain}", w.t(label))) { (w.t(label)) }
                        }
                    }
                }
            }
        }
        @if v.can_change() {
            h2 { (w.t("add_domain")) }
            form.card method="post" action=(format!("/t/{}/domains", t.name)) {
                (csrf(v))
                label for="domain" { (w.t("domain")) }
                input #domain type="text" name="domain" required autocomplete="off" aria-describedby="domain-help";
                p #domain-help .help { (w.t("add_domain_help")) }
                button type="submit" { (w.t("add_domain")) }
            }
        }
    };
    Shell::of(v, w.t("domains").to_string())
        .tenant(tenant, "domains")
        .banner(banner)
        .render_with(status, body)
}

pub async fn domains(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let banner = d.banner(&v);
    domains_page(&v, &s, &tenant, banner, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct AddDomain {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    domain: String,
}

pub async fn add_domain(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Form(f): Form<AddDomain>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    match s
        .control
        .add_domain(
            &tenant,
            &f.domain,
            relayward_store::DomainKind::Authoritative,
            false,
            false,
            &v.actor(),
        )
        .await
    {
        Ok(_) => Redirect::to(&format!("/t/{tenant}/domains?done=domain_added")).into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            domains_page(&v, &s, &tenant, Some(banner), status).await
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct CsrfNote {
    #[serde(default)]
    pub(crate) csrf: String,
    #[serde(default)]
    pub(crate) note: String,
}

pub async fn verify_domain(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, domain)): Path<(String, String)>,
    Form(f): Form<CsrfNote>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let w = v.w();
    let (status, banner) = match s
        .control
        .verify_domain(&tenant, &domain, s.resolver.as_ref(), &v.actor())
        .await
    {
        Ok(DomainVerification::Verified | DomainVerification::AlreadyVerified) => (
            StatusCode::OK,
            Banner::Done(w.f("verified_now", &[("domain", &domain)])),
        ),
        Ok(DomainVerification::NotFound { expected, found }) => {
            let found = if found.is_empty() {
                w.t("no_txt_found").to_string()
            } else {
                found
                    .iter()
                    .map(|f| format!("\"{f}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Banner::Error(w.f(
                    "verify_missing",
                    &[
                        ("domain", &domain),
                        ("expected", &expected),
                        ("found", &found),
                    ],
                )),
            )
        }
        Err(e) => opened!(refusal(&v, e)),
    };
    domains_page(&v, &s, &tenant, Some(banner), status).await
}

async fn connectors_page(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let t = opened!(open(v, s, tenant).await);
    let w = v.w();
    let data = tried!(v, s.control.tenant_data(&t.name).await).unwrap_or_default();
    let flags = tried!(
        v,
        s.control.connector_flags(&data.connectors, &t.name).await
    );
    let body = html! {
        p { (w.t("connectors_intro")) }
        div.scroll tabindex="0" role="region" aria-label=(w.t("connectors_caption")) { table {
            caption { (w.t("connectors_caption")) }
            thead { tr {
                th scope="col" { (w.t("connector")) } th scope="col" { (w.t("ip_ranges")) } th scope="col" { (w.t("cert_name")) }
                th scope="col" { (w.t("flags")) } th scope="col" { (w.t("reviewed")) } th scope="col" { span.visually-hidden { (w.t("actions")) } }
            } }
            tbody { @for c in &data.connectors {
                @let unusual = flags.get(&c.name).cloned().unwrap_or_default();
                tr {
                    th scope="row" { (c.name) }
                    td { (c.ips.join(", ")) }
                    td { (c.cert_name.clone().unwrap_or_default()) }
                    td {
                        @if c.relay_unregistered { span.flag { (w.t("relays_unregistered")) } " " }
                        @if unusual.is_empty() { (w.t("none")) } @else { ul { @for f in &unusual { li { (crate::page::note(v, f)) } } } }
                    }
                    td { @if c.reviewed { (w.t("yes")) } @else { (w.t("no")) } }
                    td.actions { @if v.can_change() {
                        @if !c.reviewed {
                            form method="post" action=(format!("/t/{}/connectors/{}/review", t.name, c.name)) {
                                (csrf(v))
                                button type="submit" aria-label=(w.f("mark_reviewed_of", &[("connector", &c.name)])) { (w.t("mark_reviewed")) }
                            }
                        }
                        form method="post" action=(format!("/t/{}/connectors/{}/remove", t.name, c.name)) {
                            (csrf(v))
                            button type="submit" aria-label=(w.f("remove_of", &[("name", &c.name)])) { (w.t("remove")) }
                        }
                    } }
                }
            } }
        } }
    };
    Shell::of(v, w.t("connectors").to_string())
        .tenant(tenant, "connectors")
        .banner(banner)
        .render_with(status, body)
}

pub async fn connectors(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let banner = d.banner(&v);
    connectors_page(&v, &s, &tenant, banner, StatusCode::OK).await
}

/// review (checklist item 3) or remove a connector.
pub async fn connector_act(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, connector, action)): Path<(String, String, String)>,
    Form(f): Form<CsrfNote>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let actor = v.actor();
    let (result, done) = match action.as_str() {
        "review" => (
            s.control
                .review_connector(&tenant, &connector, &actor)
                .await,
            "connector_reviewed",
        ),
        "remove" => (
            s.control
                .delete_connector(&tenant, &connector, &actor)
                .await,
            "connector_removed",
        ),
        _ => return not_found(v.lang, Some(&v)),
    };
    match result {
        Ok(()) => Redirect::to(&format!("/t/{tenant}/connectors?done={done}")).into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            connectors_page(&v, &s, &tenant, Some(banner), status).await
        }
    }
}

async fn users_page(
    v: &Viewer,
    s: &ConsoleState,
    tenant: &str,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let t = opened!(open(v, s, tenant).await);
    let w = v.w();
    let data = tried!(v, s.control.tenant_data(&t.name).await).unwrap_or_default();
    let flags = tried!(v, s.control.user_flags(&t.name).await);
    let open_user: Vec<Restriction> = tried!(v, s.control.restrictions(Some(&t.name), false).await)
        .into_iter()
        .filter(|r| r.key.kind == Kind::User && r.blocks())
        .collect();
    let body = html! {
        p { (w.t("users_intro")) }
        div.scroll tabindex="0" role="region" aria-label=(w.t("users_caption")) { table {
            caption { (w.t("users_caption")) }
            thead { tr {
                th scope="col" { (w.t("user")) } th scope="col" { (w.t("aliases")) } th scope="col" { (w.t("forwarding")) }
                th scope="col" { (w.t("flags")) } th scope="col" { span.visually-hidden { (w.t("actions")) } }
            } }
            tbody { @for u in &data.users {
                @let f = flags.get(&u.address.to_ascii_lowercase()).cloned().unwrap_or_default();
                @let restricted = open_user.iter().find(|r| r.key.name.eq_ignore_ascii_case(&u.address));
                tr {
                    th scope="row" { a href=(format!("/t/{}/users/{}", t.name, u.address)) { (u.address) } }
                    td { (u.aliases.join(", ")) }
                    td { (u.forward_to.clone().unwrap_or_default()) }
                    td { @if f.is_empty() { (w.t("none")) } @else { ul { @for x in &f { li { (crate::page::note(v, x)) } } } } }
                    td { @if let (Some(r), true) = (restricted, v.can_change()) {
                        form method="post" action=(format!("/t/{}/users/{}/release", t.name, u.address)) {
                            (csrf(v))
                            input type="hidden" name="note" value=(r.id);
                            button type="submit" aria-label=(w.f("release_user_of", &[("user", &u.address)])) { (w.t("release_user")) }
                        }
                    } }
                }
            } }
        } }
        p.help { (w.t("users_release_help")) }
    };
    Shell::of(v, w.t("users").to_string())
        .tenant(tenant, "users")
        .banner(banner)
        .render_with(status, body)
}

pub async fn users(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(tenant): Path<String>,
    Query(d): Query<Done>,
) -> Response {
    let banner = d.banner(&v);
    users_page(&v, &s, &tenant, banner, StatusCode::OK).await
}

pub async fn release_user(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, user)): Path<(String, String)>,
    Form(f): Form<CsrfNote>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let open_user = tried!(v, s.control.restrictions(Some(&tenant), false).await)
        .into_iter()
        .find(|r| r.key.kind == Kind::User && r.blocks() && r.key.name.eq_ignore_ascii_case(&user));
    let Some(r) = open_user else {
        return users_page(
            &v,
            &s,
            &tenant,
            Some(Banner::Error(v.w().t("user_not_restricted").to_string())),
            StatusCode::CONFLICT,
        )
        .await;
    };
    match s
        .control
        .release(&r.id, &v.actor(), "released in the admin center")
        .await
    {
        Ok(_) => Redirect::to(&format!("/t/{tenant}/users?done=user_released")).into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            users_page(&v, &s, &tenant, Some(banner), status).await
        }
    }
}

/// rotate (a new pending pair), activate (the pending pair, once its records are found in
/// DNS), retire (the old pair, after the overlap).
pub async fn dkim_act(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, domain, action)): Path<(String, String, String)>,
    Form(f): Form<CsrfNote>,
) -> Response {
    opened!(open(&v, &s, &tenant).await);
    opened!(may_change(&s, &v, &f.csrf).await);
    let actor = v.actor();
    let result = match action.as_str() {
        "rotate" => s.control.rotate_dkim(&tenant, &domain, &actor).await,
        "activate" => {
            s.control
                .activate_dkim(&tenant, &domain, s.resolver.as_ref(), false, &actor)
                .await
        }
        "retire" => s.control.retire_dkim(&tenant, &domain, &actor).await,
        _ => return not_found(v.lang, Some(&v)),
    };
    let (status, banner) = match result {
        Ok(_) => (
            StatusCode::OK,
            Banner::Done(v.w().t("done_saved").to_string()),
        ),
        Err(e) => opened!(refusal(&v, e)),
    };
    domains_page(&v, &s, &tenant, Some(banner), status).await
}
