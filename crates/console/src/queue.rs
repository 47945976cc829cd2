//! The mail queue (operators): messages waiting, by tenant, destination domain or sender, and
//! the operator's actions on one: retry now, hold, release, bounce with an NDR, purge without;
//! and on every one the filter selects: try them now, and (once something is filtered on)
//! hold, release, bounce or purge them all.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use relayward_control::queue_reads::Nodes;
use relayward_delivery::{QueueAction, Selection, Shape, ShapeBy};
use serde::Deserialize;

use crate::page::{Banner, Shell, csrf, forbidden, refusal, time};
use crate::state::ConsoleState;
use crate::viewer::Viewer;

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    sender: String,
    done: Option<String>,
    /// After an action on a selection: how many of its messages were in a delivery round (done
    /// to each as its round ends).
    in_flight: Option<usize>,
    /// After an action on a selection or a flush in a cluster: it was passed on to the other
    /// nodes.
    nodes: Option<u8>,
}

/// The queue's selection from a filter's fields: blank ones name nothing.
fn selection(tenant: &str, domain: &str, sender: &str) -> Selection {
    let some = |x: &str| Some(x.trim()).filter(|x| !x.is_empty()).map(str::to_string);
    Selection {
        tenant: some(tenant),
        domain: some(domain),
        sender: some(sender),
    }
}

/// Where the filtered queue waits: its messages by recipient domain and time waited (the
/// busiest ten domains, each a link to its messages), as `relayward queue shape` prints it.
fn shape_table(v: &Viewer, shape: &Shape) -> maud::Markup {
    let w = v.w();
    let last = shape
        .minutes
        .last()
        .copied()
        .unwrap_or_default()
        .to_string();
    html! {
        div.scroll tabindex="0" role="region" aria-label=(w.t("queue_shape_caption")) { table {
            caption { (w.t("queue_shape_caption")) }
            thead { tr {
                th scope="col" { (w.t("destination_domain")) }
                th scope="col" { (w.t("queue_shape_all")) }
                @for m in &shape.minutes {
                    th scope="col" { (w.f("queue_shape_under", &[("n", &m.to_string())])) }
                }
                th scope="col" { (w.f("queue_shape_past", &[("n", &last)])) }
                th scope="col" { (w.t("held")) }
            } }
            tbody {
                @for (i, r) in std::iter::once(&shape.total).chain(&shape.rows).enumerate() {
                    tr {
                        th scope="row" {
                            @if i == 0 { (w.t("queue_shape_total")) } @else {
                                a href=(format!("/support/queue?domain={}", query_value(&r.domain))) { (r.domain) }
                            }
                        }
                        td { (r.messages) }
                        @for n in &r.by_age { td { (n) } }
                        td { (r.held) }
                    }
                }
            }
        } }
        @if shape.more > 0 { p.help { (w.f("queue_shape_more", &[("n", &shape.more.to_string())])) } }
    }
}

/// The queue page again with the same filter, saying the action was done (how many messages
/// of a selection were in their delivery rounds, and whether the other nodes were asked too).
fn back(tenant: &str, domain: &str, sender: &str, in_flight: usize, nodes: bool) -> Response {
    let mut back = format!(
        "/support/queue?tenant={}&domain={}&sender={}&done=1",
        query_value(tenant),
        query_value(domain),
        query_value(sender)
    );
    if in_flight > 0 {
        back.push_str(&format!("&in_flight={in_flight}"));
    }
    if nodes {
        back.push_str("&nodes=1");
    }
    Redirect::to(&back).into_response()
}

/// In a cluster, how many of the selected messages each node holds, and a warning for the
/// nodes whose queues are not shown (no answer in time, or the database away).
fn nodes_said(v: &Viewer, nodes: &Nodes) -> maud::Markup {
    let w = v.w();
    let silent: Vec<&str> = nodes.silent().collect();
    let each: Vec<String> = nodes
        .nodes
        .iter()
        .filter(|n| n.answered)
        .map(|n| format!("{} {}", n.node, n.messages))
        .collect();
    html! {
        @if !each.is_empty() {
            p.help { (w.t("queue_on_nodes")) ": " (each.join(", ")) }
        }
        @if !silent.is_empty() {
            p.banner.error role="status" { (w.f("queue_nodes_silent", &[("nodes", &silent.join(", "))])) }
        }
        @for (node, secs) in nodes.unseen() {
            p.banner.error role="status" { (w.f("queue_nodes_unseen", &[("node", node), ("seconds", &secs.to_string())])) }
        }
        @if let Some(why) = &nodes.not_asked {
            p.banner.error role="status" { (w.t("queue_nodes_not_asked")) " (" (why) ")" }
        }
    }
}

/// The actions on every message a filter selects (retry is the flush).
const MANY: &[(&str, QueueAction)] = &[
    ("hold", QueueAction::Hold),
    ("release", QueueAction::Release),
    ("bounce", QueueAction::Bounce),
    ("purge", QueueAction::Purge),
];

const ACTIONS: &[(&str, QueueAction)] = &[
    ("retry", QueueAction::Retry),
    ("hold", QueueAction::Hold),
    ("release", QueueAction::Release),
    ("bounce", QueueAction::Bounce),
    ("purge", QueueAction::Purge),
];

async fn render(
    v: &Viewer,
    s: &ConsoleState,
    f: &Filter,
    banner: Option<Banner>,
    status: StatusCode,
) -> Response {
    let w = v.w();
    let Some(queue) = &s.queue else {
        return Shell::of(v, w.t("support_queue").to_string())
            .active("support_queue")
            .render(html! { p { (w.t("queue_unavailable")) } });
    };
    let selected = selection(&f.tenant, &f.domain, &f.sender);
    // In a cluster each asks every node and may wait for one that does not answer: together.
    let ((list, nodes), (shape, _)) = tokio::join!(
        s.control.queue_list(queue, &selected, None, 200),
        s.control
            .queue_shape(queue, &selected, ShapeBy::Recipient, 10)
    );
    let clustered = !nodes.nodes.is_empty();
    let body = html! {
        form.filters method="get" action="/support/queue" role="search" {
            div { label for="q-tenant" { (w.t("tenant")) } input #q-tenant type="text" name="tenant" value=(f.tenant); }
            div { label for="q-domain" { (w.t("destination_domain")) } input #q-domain type="text" name="domain" value=(f.domain); }
            div { label for="q-sender" { (w.t("sender")) } input #q-sender type="text" name="sender" value=(f.sender); }
            button type="submit" { (w.t("apply")) }
        }
        (nodes_said(v, &nodes))
        @if shape.total.messages > 0 { (shape_table(v, &shape)) }
        @if list.is_empty() {
            p { (w.t(if shape.total.messages > 0 { "queue_all_in_rounds" } else { "queue_empty" })) }
        } @else {
            form.flush method="post" action="/support/queue/flush" {
                (csrf(v))
                input type="hidden" name="tenant" value=(f.tenant);
                input type="hidden" name="domain" value=(f.domain);
                input type="hidden" name="sender" value=(f.sender);
                button type="submit" { (w.t("queue_flush")) }
                " " span.help { (w.t("queue_flush_help")) }
            }
            @if !selected.is_everything() {
                div.many {
                    @for (name, _) in MANY {
                        form method="post" action=(format!("/support/queue/selected/{name}")) {
                            (csrf(v))
                            input type="hidden" name="tenant" value=(f.tenant);
                            input type="hidden" name="domain" value=(f.domain);
                            input type="hidden" name="sender" value=(f.sender);
                            button type="submit" { (w.t(&format!("queue_{name}_selected"))) }
                        }
                    }
                    " " span.help { (w.t("queue_selected_help")) }
                }
            }
            div.scroll tabindex="0" role="region" aria-label=(w.t("queue_caption")) { table {
                caption { (w.t("queue_caption")) }
                thead { tr {
                    th scope="col" { (w.t("message_id")) }
                    @if clustered { th scope="col" { (w.t("queue_node")) } }
                    th scope="col" { (w.t("tenant")) } th scope="col" { (w.t("sender")) }
                    th scope="col" { (w.t("recipients")) } th scope="col" { (w.t("attempts")) } th scope="col" { (w.t("next_attempt")) }
                    th scope="col" { (w.t("last_reply")) } th scope="col" { span.visually-hidden { (w.t("actions")) } }
                } }
                tbody { @for m in &list {
                    tr {
                        th scope="row" { (m.id) @if m.held { " " span.flag { (w.t("held")) } } }
                        @if clustered { td { (m.node.clone().unwrap_or_default()) } }
                        td { (m.tenant.clone().unwrap_or_default()) } td { (m.mail_from) } td { (m.pending.join(", ")) }
                        td { (m.attempts) } td { (time(m.next_attempt * 1000)) } td { (m.last_reply.clone().unwrap_or_default()) }
                        td.actions {
                            @for (name, _) in ACTIONS {
                                @let shown = match *name { "hold" => !m.held, "release" => m.held, _ => true };
                                @if shown {
                                    form method="post" action=(format!("/support/queue/{}/{name}", m.id)) {
                                        (csrf(v))
                                        button type="submit" aria-label=(format!("{} {}", w.t(&format!("queue_{name}")), m.id)) { (w.t(&format!("queue_{name}"))) }
                                    }
                                }
                            }
                        }
                    }
                } }
            } }
        }
    };
    Shell::of(v, w.t("support_queue").to_string())
        .active("support_queue")
        .banner(banner)
        .render_with(status, body)
}

pub async fn page(v: Viewer, State(s): State<ConsoleState>, Query(f): Query<Filter>) -> Response {
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let w = v.w();
    let banner = f.done.as_ref().map(|_| {
        let mut said = w.t("done_saved").to_string();
        if let Some(n) = f.in_flight.filter(|n| *n > 0) {
            said.push(' ');
            said.push_str(&w.f("queue_in_flight_left", &[("n", &n.to_string())]));
        }
        match f.nodes {
            Some(1) => {
                said.push(' ');
                said.push_str(w.t("queue_passed_on"));
            }
            Some(2) => {
                said.push(' ');
                said.push_str(w.t("queue_passed_on_one"));
            }
            _ => {}
        }
        Banner::Done(said)
    });
    render(&v, &s, &f, banner, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct FlushForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    sender: String,
    /// `yes` once the operator has seen what a bounce or purge of a selection takes.
    #[serde(default)]
    confirm: String,
}

/// Every waiting message the filter shows (held ones stay held) due now, with the named
/// destination's backoff lifted (`Queue::flush`).
pub async fn flush(v: Viewer, State(s): State<ConsoleState>, Form(f): Form<FlushForm>) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return forbidden(&v, "form_expired");
    }
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let Some(queue) = &s.queue else {
        return crate::page::not_found(v.lang, Some(&v));
    };
    let selected = selection(&f.tenant, &f.domain, &f.sender);
    match s.control.queue_flush(queue, &selected, &v.actor()).await {
        Ok((_, nodes)) => back(&f.tenant, &f.domain, &f.sender, 0, nodes),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            render(&v, &s, &Filter::default(), Some(banner), status).await
        }
    }
}

/// Holds, releases, bounces or purges every waiting message the filter selects; the console
/// offers it only with something filtered on, and the control plane refuses it without. A
/// bounce or a purge, which cannot be undone, first shows how many messages it takes and waits
/// for the operator to confirm.
pub async fn act_on_selected(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path(action): Path<String>,
    Form(f): Form<FlushForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return forbidden(&v, "form_expired");
    }
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let (Some(queue), Some((_, action))) = (&s.queue, MANY.iter().find(|(n, _)| *n == action))
    else {
        return crate::page::not_found(v.lang, Some(&v));
    };
    let selected = selection(&f.tenant, &f.domain, &f.sender);
    let undone_never = matches!(action, QueueAction::Bounce | QueueAction::Purge);
    if undone_never && f.confirm != "yes" && !selected.is_everything() {
        // In a cluster the action reaches every node's queue: say what it takes on all.
        let (_, nodes) = s.control.queue_list(queue, &selected, None, 1).await;
        let messages = if nodes.nodes.is_empty() {
            queue.count(&selected)
        } else {
            nodes.nodes.iter().map(|n| n.messages).sum()
        };
        return confirm(&v, &f, action.as_str(), messages);
    }
    match s
        .control
        .queue_action_selected(queue, &selected, false, *action, &v.actor())
        .await
    {
        Ok(done) => back(
            &f.tenant,
            &f.domain,
            &f.sender,
            done.in_flight(),
            done.other_nodes,
        ),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            render(&v, &s, &Filter::default(), Some(banner), status).await
        }
    }
}

/// What a bounce or purge of the filter's selection would take, with the same form to confirm
/// it and the way back to the list.
fn confirm(v: &Viewer, f: &FlushForm, action: &str, messages: usize) -> Response {
    let w = v.w();
    let n = messages.to_string();
    let named: Vec<String> = [
        ("tenant", &f.tenant),
        ("destination_domain", &f.domain),
        ("sender", &f.sender),
    ]
    .iter()
    .filter(|(_, value)| !value.trim().is_empty())
    .map(|(label, value)| format!("{} {}", w.t(label), value.trim()))
    .collect();
    let cancel = format!(
        "/support/queue?tenant={}&domain={}&sender={}",
        query_value(&f.tenant),
        query_value(&f.domain),
        query_value(&f.sender)
    );
    let body = html! {
        p { (w.f(&format!("queue_confirm_{action}"), &[("n", &n)])) }
        p { (w.t("queue_confirm_selection")) ": " (named.join(", ")) }
        form method="post" action=(format!("/support/queue/selected/{action}")) {
            (csrf(v))
            input type="hidden" name="tenant" value=(f.tenant);
            input type="hidden" name="domain" value=(f.domain);
            input type="hidden" name="sender" value=(f.sender);
            input type="hidden" name="confirm" value="yes";
            button type="submit" { (w.t(&format!("queue_{action}_selected"))) }
            " " a href=(cancel) { (w.t("queue_confirm_back")) }
        }
    };
    Shell::of(v, w.t("support_queue").to_string())
        .active("support_queue")
        .render(body)
}

/// `value` for a URL's query, every byte outside letters, digits and `.-_@` percent-encoded.
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.trim().bytes() {
        if b.is_ascii_alphanumeric() || b".-_@".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[derive(Deserialize)]
pub struct ActForm {
    #[serde(default)]
    csrf: String,
}

pub async fn act(
    v: Viewer,
    State(s): State<ConsoleState>,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActForm>,
) -> Response {
    if !v.csrf_ok(&f.csrf) {
        return forbidden(&v, "form_expired");
    }
    if !v.operator() {
        return forbidden(&v, "operators_only");
    }
    let (Some(queue), Some((_, action))) = (&s.queue, ACTIONS.iter().find(|(n, _)| *n == action))
    else {
        return crate::page::not_found(v.lang, Some(&v));
    };
    match s
        .control
        .queue_action_anywhere(queue, &id, *action, &v.actor())
        .await
    {
        Ok(Some(_)) => Redirect::to("/support/queue?done=1").into_response(),
        // Listed from another node of the cluster: that node does it.
        Ok(None) => Redirect::to("/support/queue?done=1&nodes=2").into_response(),
        Err(e) => {
            let (status, banner) = opened!(refusal(&v, e));
            render(&v, &s, &Filter::default(), Some(banner), status).await
        }
    }
}
