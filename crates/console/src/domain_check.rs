//! A domain's DNS as receivers of the relay's mail read it (the control plane's domain check):
//! its DKIM records, SPF against the relay's sending addresses and DMARC, each in the viewer's
//! words with what to do. A page of its own, reached from the domains page, since each visit
//! asks the DNS.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use relayward_control::domain_checks::{DkimRecordCheck, DmarcCheck, DomainChecks, SpfCheck};

use crate::page::{Shell, not_found, refusal};
use crate::state::ConsoleState;
use crate::tenant::open;
use crate::viewer::Viewer;
use crate::words::Words;

pub async fn page(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((tenant, domain)): Path<(String, String)>,
) -> Response {
    let t = opened!(open(&v, &s, &tenant).await);
    let report = match s
        .control
        .check_domain(&t.name, &domain, s.resolver.as_ref())
        .await
    {
        Ok(r) => r,
        Err(relayward_control::ControlError::NotFound(_)) => return not_found(v.lang, Some(&v)),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            return Shell::of(&v, v.w().f("check_title", &[("domain", &domain)]))
                .tenant(&t.name, "domains")
                .banner(Some(banner))
                .render_with(status, html! {});
        }
    };
    let w = v.w();
    let body = html! {
        p { (w.t("check_intro")) }
        p { a href=(format!("/t/{}/domains", t.name)) { (w.t("check_back")) } }
        (dkim(w, &report))
        (spf(w, &report.domain, &report.spf))
        (dmarc(w, &report.domain, &report.dmarc))
    };
    Shell::of(&v, w.f("check_title", &[("domain", &report.domain)]))
        .tenant(&t.name, "domains")
        .render_with(StatusCode::OK, body)
}

fn dkim(w: &Words, r: &DomainChecks) -> Markup {
    let found = |k: &DkimRecordCheck| match k.status.as_str() {
        "published" => w.t("check_dkim_published"),
        "different" => w.t("check_dkim_different"),
        "unknown" => w.t("check_no_answer"),
        _ => w.t("check_dkim_missing"),
    };
    let todo = |k: &DkimRecordCheck| match (k.status.as_str(), k.state.as_str()) {
        ("published", _) => None,
        ("unknown", _) => Some(w.t("check_try_again")),
        (_, "active") => Some(w.t("check_dkim_todo_active")),
        (_, "pending") => Some(w.t("check_dkim_todo_pending")),
        _ => Some(w.t("check_dkim_todo_retiring")),
    };
    html! {
        section aria-labelledby="check-dkim" {
            h2 #check-dkim { (w.t("check_dkim_title")) }
            @if r.dkim.is_empty() { p { (w.t("check_dkim_none")) } } @else {
                div.scroll tabindex="0" role="region" aria-label=(w.f("dkim_of", &[("domain", &r.domain)])) { table {
                    caption { (w.f("dkim_of", &[("domain", &r.domain)])) }
                    thead { tr {
                        th scope="col" { (w.t("check_name")) }
                        th scope="col" { (w.t("check_key")) }
                        th scope="col" { (w.t("check_found")) }
                        th scope="col" { (w.t("check_todo")) }
                    } }
                    tbody { @for k in &r.dkim {
                        tr {
                            th scope="row" { code { (k.name) } }
                            td { (k.state) }
                            td { (found(k)) }
                            td.detail { @if let Some(todo) = todo(k) {
                                (todo)
                                @if k.status != "unknown" { br; code { (k.name) " TXT \"" (k.expected) "\"" } }
                            } }
                        }
                    } }
                } }
            }
        }
    }
}

fn spf(w: &Words, domain: &str, spf: &SpfCheck) -> Markup {
    let failing: Vec<&str> = spf
        .addresses
        .iter()
        .filter(|a| a.result != "pass")
        .map(|a| a.ip.as_str())
        .collect();
    // The technical reasons (the record's own words or the DNS's), as they were found.
    let mut reasons: Vec<&str> = spf.reason.as_deref().into_iter().collect();
    for why in spf.addresses.iter().filter_map(|a| a.reason.as_deref()) {
        if !reasons.contains(&why) {
            reasons.push(why);
        }
    }
    let verdict = match spf.status.as_str() {
        "ok" => w.t("check_spf_ok").to_string(),
        "not_authorised" => w.f(
            "check_spf_not_authorised",
            &[("addresses", &failing.join(", ")), ("domain", domain)],
        ),
        "missing" => w.f("check_spf_missing", &[("domain", domain)]),
        "error" => w.t("check_spf_error").to_string(),
        "addresses_unknown" => w.t("check_spf_addresses_unknown").to_string(),
        "smart_host" => w.t("check_spf_smart_host").to_string(),
        _ => w.t("check_try_again").to_string(),
    };
    html! {
        section aria-labelledby="check-spf" {
            h2 #check-spf { (w.t("check_spf_title")) }
            p { @match &spf.record { Some(r) => code { (r) }, None => (w.t("check_no_record")) } }
            p { (verdict) }
            @if !reasons.is_empty() { ul { @for why in &reasons { li { code { (why) } } } } }
            @if !spf.addresses.is_empty() {
                div.scroll tabindex="0" role="region" aria-label=(w.t("check_spf_addresses")) { table {
                    caption { (w.t("check_spf_addresses")) }
                    thead { tr {
                        th scope="col" { (w.t("check_address")) }
                        th scope="col" { (w.t("check_pool")) }
                        th scope="col" { (w.t("check_spf_result")) }
                    } }
                    tbody { @for a in &spf.addresses {
                        tr {
                            th scope="row" { (a.ip) }
                            td { @if a.pool == "normal" { (w.t("check_pool_normal")) } @else { (w.t("check_pool_high_risk")) } }
                            td { (a.result) }
                        }
                    } }
                } }
            }
        }
    }
}

fn dmarc(w: &Words, domain: &str, d: &DmarcCheck) -> Markup {
    let verdict = match d.status.as_str() {
        "ok" => w.f("check_dmarc_ok", &[("domain", domain)]),
        "monitoring" => w.t("check_dmarc_monitoring").to_string(),
        "missing" => w.f("check_dmarc_missing", &[("domain", domain)]),
        "error" => w.t("check_dmarc_error").to_string(),
        _ => w.t("check_try_again").to_string(),
    };
    html! {
        section aria-labelledby="check-dmarc" {
            h2 #check-dmarc { (w.t("check_dmarc_title")) }
            p {
                @match &d.record { Some(r) => code { (r) }, None => (w.t("check_no_record")) }
                @if let Some(at) = &d.name { " · " (w.f("check_found_at", &[("name", at)])) }
            }
            p { (verdict) }
        }
    }
}
