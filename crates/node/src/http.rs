//! The HTTP side of a node: `/healthz`, Prometheus `/metrics`, the management API
//! (`relayward_api`) mounted under `/api/v1`, and the console's pages (`relayward_console`) at `/`.

use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use relayward_delivery::Queue;
use relayward_spool::Spool;
use relayward_store::Store;

use crate::policy::PolicyStats;
use crate::trace::TraceSink;

mod listener;
pub use listener::{Bounds, serve};

/// What health and metrics read.
#[derive(Clone)]
pub struct NodeState {
    pub store: Arc<dyn Store>,
    pub spool: Spool,
    pub queue: Queue,
    pub policy: Arc<PolicyStats>,
    pub passwords: Arc<relayward_control::passwords::Checker>,
    pub auth_limits: Arc<relayward_control::passwords::Limiter>,
    pub trace: TraceSink,
    /// The budget for messages being received (`[smtp] max_data_memory`).
    pub data_memory: Arc<relayward_smtp::memory::DataMemory>,
    /// The listeners' TLS certificates, as served now.
    pub certificates: Vec<Arc<crate::tls::Certificate>>,
    /// `[smtp] client_ca`, as trusted now.
    pub client_ca: Option<Arc<crate::tls::ClientCa>>,
}

/// The HTTP listener's routes: `/healthz`, `/metrics`, the management API under `/api/v1`, and
/// the console's pages at `/`.
pub fn router(
    state: NodeState,
    api: relayward_api::ApiState,
    console: relayward_console::ConsoleState,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .nest("/api/v1", relayward_api::router(api))
        .merge(relayward_console::router(console))
}

async fn healthz(State(s): State<NodeState>) -> impl IntoResponse {
    // Degraded while mail is refused for storage, even though what is queued still flows.
    if let Some(why) = s.spool.refusing() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("spool: refusing new mail: {why}\n"),
        );
    }
    let spool = s.spool.flush().await;
    let store = s.store.directory_version().await;
    match (spool, store) {
        (Ok(()), Ok(_)) => (StatusCode::OK, "ok\n".to_string()),
        // The cluster's database away: mail still flows on what the node knows, so the node
        // stays in service and says how it is.
        (Ok(()), Err(e @ relayward_store::StoreError::Unavailable(_))) => {
            (StatusCode::OK, format!("degraded\nspool: ok\nstore: {e}\n"))
        }
        (spool, store) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "spool: {}\nstore: {}\n",
                spool
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "ok".into()),
                store
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "ok".into())
            ),
        ),
    }
}

async fn metrics(State(s): State<NodeState>) -> impl IntoResponse {
    let mut out = String::new();
    let mut m = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
        );
    };
    let p = &s.policy;
    let a = &s.auth_limits;
    m(
        "relayward_auth_failures_total",
        "counter",
        "SMTP AUTH attempts with a wrong password or an unknown account.",
        a.failures.load(Ordering::Relaxed),
    );
    m(
        "relayward_auth_lockouts_total",
        "counter",
        "Accounts locked for SMTP AUTH after too many failures.",
        a.lockouts.load(Ordering::Relaxed),
    );
    m(
        "relayward_auth_refused_locked_total",
        "counter",
        "SMTP AUTH attempts answered 454 without a check (account or client address locked).",
        a.refused_locked.load(Ordering::Relaxed),
    );
    m(
        "relayward_auth_busy_total",
        "counter",
        "SMTP AUTH attempts answered 454 because every password checker was busy.",
        s.passwords.busy.load(Ordering::Relaxed),
    );
    m(
        "relayward_directory_version",
        "gauge",
        "The directory version this node is running on (grows with every tenant, domain, connector or user change).",
        p.directory_version.load(Ordering::Relaxed).max(0) as u64,
    );
    m(
        "relayward_smtp_sessions_total",
        "counter",
        "SMTP connections accepted.",
        p.sessions.load(Ordering::Relaxed),
    );
    m(
        "relayward_smtp_sessions_open",
        "gauge",
        "SMTP sessions open now.",
        p.open_sessions.load(Ordering::Relaxed),
    );
    let dm = &s.data_memory;
    m(
        "relayward_smtp_data_memory_bytes",
        "gauge",
        "Bytes that messages being received hold now past their first 256 KiB each (taken from [smtp] max_data_memory).",
        dm.used() as u64,
    );
    m(
        "relayward_smtp_data_memory_limit_bytes",
        "gauge",
        "The budget for messages being received ([smtp] max_data_memory).",
        dm.limit() as u64,
    );
    m(
        "relayward_smtp_data_memory_refused_total",
        "counter",
        "Messages read to their end and answered 452 because the budget for messages being received was spent.",
        dm.refused(),
    );
    m(
        "relayward_messages_accepted_total",
        "counter",
        "Messages accepted and spooled (250 after DATA).",
        p.accepted.load(Ordering::Relaxed),
    );
    m(
        "relayward_rcpt_refused_total",
        "counter",
        "RCPT commands refused by policy.",
        p.refused_rcpt.load(Ordering::Relaxed),
    );
    m(
        "relayward_mail_refused_total",
        "counter",
        "MAIL commands refused by policy.",
        p.refused_mail.load(Ordering::Relaxed),
    );
    m(
        "relayward_spool_errors_total",
        "counter",
        "Messages refused with 452 because the spool could not store them.",
        p.spool_errors.load(Ordering::Relaxed),
    );
    let sp = s.spool.stats();
    m(
        "relayward_spool_fsyncs_total",
        "counter",
        "fdatasync calls of the spool (one per group commit).",
        sp.fsyncs.load(Ordering::Relaxed),
    );
    m(
        "relayward_spool_records_total",
        "counter",
        "Records written to the spool.",
        sp.records.load(Ordering::Relaxed),
    );
    m(
        "relayward_spool_bytes",
        "gauge",
        "Bytes of spool segments on disk.",
        sp.bytes_on_disk.load(Ordering::Relaxed),
    );
    m(
        "relayward_spool_messages",
        "gauge",
        "Unfinished messages in the spool.",
        sp.live_messages.load(Ordering::Relaxed),
    );
    m(
        "relayward_spool_write_errors_total",
        "counter",
        "Spool batches that failed to write.",
        sp.write_errors.load(Ordering::Relaxed),
    );
    m(
        "relayward_spool_unreadable_at_start",
        "gauge",
        "Ranges of spool bytes that were not whole records when the relay started: a write cut short by a crash, or damage; each is copied to the spool's damaged/ directory, and the records after it were read.",
        sp.unreadable_at_open.load(Ordering::Relaxed),
    );
    let q = s.queue.stats();
    m(
        "relayward_queue_messages",
        "gauge",
        "Messages waiting for their next delivery round.",
        q.queued.load(Ordering::Relaxed),
    );
    m(
        "relayward_queue_in_flight",
        "gauge",
        "Messages being delivered now.",
        q.in_flight.load(Ordering::Relaxed),
    );
    let (used, limit, waiting) = s.queue.body_memory();
    m(
        "relayward_delivery_body_memory_bytes",
        "gauge",
        "Bytes that the bodies of messages being delivered hold now, past those of 256 KiB or less (taken from [delivery] max_body_memory).",
        used as u64,
    );
    m(
        "relayward_delivery_body_memory_limit_bytes",
        "gauge",
        "The budget for the bodies of messages being delivered ([delivery] max_body_memory).",
        limit as u64,
    );
    m(
        "relayward_delivery_body_memory_waiting",
        "gauge",
        "Messages due for delivery that wait for the budget for bodies being delivered.",
        waiting as u64,
    );
    m(
        "relayward_delivered_total",
        "counter",
        "Recipients delivered.",
        q.delivered.load(Ordering::Relaxed),
    );
    m(
        "relayward_deferred_total",
        "counter",
        "Recipient attempts deferred (temporary failure).",
        q.deferred.load(Ordering::Relaxed),
    );
    m(
        "relayward_failed_total",
        "counter",
        "Recipients failed permanently.",
        q.failed.load(Ordering::Relaxed),
    );
    m(
        "relayward_ndr_total",
        "counter",
        "Non-delivery reports generated.",
        q.ndrs.load(Ordering::Relaxed),
    );
    m(
        "relayward_connections_opened_total",
        "counter",
        "Outbound SMTP connections opened.",
        q.connections_opened.load(Ordering::Relaxed),
    );
    m(
        "relayward_connections_reused_total",
        "counter",
        "Outbound transactions on a reused connection.",
        q.connections_reused.load(Ordering::Relaxed),
    );
    m(
        "relayward_delivery_starttls_fallbacks_total",
        "counter",
        "Outbound connections that went without the TLS their destination offers, its STARTTLS having failed (now, or within the hour before).",
        q.starttls_fallbacks.load(Ordering::Relaxed),
    );
    m(
        "relayward_delivery_mta_sts_refusals_total",
        "counter",
        "Delivery attempts that an enforced MTA-STS policy did not let go to a host (not one of its MX patterns, no TLS, or a certificate not for its name); the mail waits.",
        q.mta_sts_refusals.load(Ordering::Relaxed),
    );
    m(
        "relayward_delivery_mta_sts_testing_failures_total",
        "counter",
        "The same failures under MTA-STS policies in testing mode; the mail went all the same.",
        q.mta_sts_testing_failures.load(Ordering::Relaxed),
    );
    m(
        "relayward_delivery_dane_refusals_total",
        "counter",
        "Delivery attempts that a host's signed TLSA records (DANE) did not let go there (no TLS, a certificate none of them names, or records that could not be looked up); the mail waits.",
        q.dane_refusals.load(Ordering::Relaxed),
    );
    m(
        "relayward_delivery_dane_connections_total",
        "counter",
        "Connections made under DANE: TLS with a certificate the host's signed TLSA records name.",
        q.dane_connections.load(Ordering::Relaxed),
    );
    m(
        "relayward_pool_normal_total",
        "counter",
        "Delivery attempts from the normal pool.",
        q.normal_pool_messages.load(Ordering::Relaxed),
    );
    m(
        "relayward_pool_high_risk_total",
        "counter",
        "Delivery attempts from the high-risk pool.",
        q.high_risk_pool_messages.load(Ordering::Relaxed),
    );
    m(
        "relayward_scanned_bulk_total",
        "counter",
        "Messages the scanner called bulk.",
        p.scanned_bulk.load(Ordering::Relaxed),
    );
    m(
        "relayward_scanned_spam_total",
        "counter",
        "Messages the scanner called spam.",
        p.scanned_spam.load(Ordering::Relaxed),
    );
    m(
        "relayward_rspamd_failures_total",
        "counter",
        "Messages Rspamd could not scan (the configured fallback applied).",
        p.rspamd_failures.load(Ordering::Relaxed),
    );
    m(
        "relayward_smtp_recipients_blocked_total",
        "counter",
        "Recipients answered 421 because their client's address, which no connector claims, had [smtp] refused_recipients_per_address recipients refused within refused_recipients_window.",
        p.recipients_blocked.load(Ordering::Relaxed),
    );
    m(
        "relayward_smtp_improper_pipelining_total",
        "counter",
        "SMTP sessions answered 554 and closed for sending before a reply they had to wait for (the greeting, EHLO, HELO, DATA).",
        p.improper_pipelining.load(Ordering::Relaxed),
    );
    m(
        "relayward_trace_dropped_total",
        "counter",
        "Trace events dropped: the writer fell behind, or the store was away past the buffer's bound.",
        s.trace.dropped.load(Ordering::Relaxed),
    );
    m(
        "relayward_store_statements_total",
        "counter",
        "Statements run on PostgreSQL (cluster mode; 0 on the embedded store).",
        relayward_store::statements_run(),
    );
    m(
        "relayward_counters_unsaved_tenants",
        "gauge",
        "Tenants whose guard counters wait for the store to come back (saved once it is).",
        crate::guarding::UNSAVED_TENANTS.load(Ordering::Relaxed),
    );
    m(
        "relayward_trace_waiting",
        "gauge",
        "Trace events waiting for the store to come back.",
        s.trace.waiting.load(Ordering::Relaxed),
    );
    m(
        "relayward_cluster_nodes_running",
        "gauge",
        "Cluster mode: nodes that noted themselves in the last 10 seconds, this one included (0 on one node).",
        crate::queue_orders::NODES_RUNNING.load(Ordering::Relaxed),
    );
    m(
        "relayward_cluster_nodes_not_seen",
        "gauge",
        "Cluster mode: nodes seen in the last day but not in the last 10 seconds (stopped, or cut off from the database); the mail a stopped node acknowledged waits in its spool.",
        crate::queue_orders::NODES_NOT_SEEN.load(Ordering::Relaxed),
    );
    certificate_metrics(&mut out, &s.certificates, s.client_ca.as_deref());
    destination_metrics(&mut out, &s.queue.destinations());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

/// Per listener: when its certificate ends (what to alert on before it does), and whether its
/// files on disk were last found unusable.
fn certificate_metrics(
    out: &mut String,
    certificates: &[Arc<crate::tls::Certificate>],
    client_ca: Option<&crate::tls::ClientCa>,
) {
    let name = "relayward_tls_certificate_expiry_timestamp_seconds";
    let _ = write!(
        out,
        "# HELP {name} When the certificate the listener serves stops being valid (its notAfter), Unix seconds.\n# TYPE {name} gauge\n"
    );
    for c in certificates {
        if let (Some(end), _) = c.state() {
            let _ = writeln!(out, "{name}{{listener=\"{}\"}} {end}", c.listener);
        }
    }
    let name = "relayward_tls_certificate_files_unusable";
    let _ = write!(
        out,
        "# HELP {name} 1 while the listener's certificate files changed into something that cannot be served (the certificate loaded before is served).\n# TYPE {name} gauge\n"
    );
    for c in certificates {
        let failing = c.state().1;
        let _ = writeln!(
            out,
            "{name}{{listener=\"{}\"}} {}",
            c.listener,
            u8::from(failing)
        );
    }
    if let Some(ca) = client_ca {
        let name = "relayward_tls_client_ca_files_unusable";
        let _ = write!(
            out,
            "# HELP {name} 1 while the [smtp] client_ca file changed into something that cannot be used (the bundle loaded before is trusted).\n# TYPE {name} gauge\n{name} {}\n",
            u8::from(ca.failing())
        );
    }
}

/// Per destination (the busiest 50, so a page stays small): deliveries under way, messages
/// parked waiting for a slot, failures in a row, and whether it is backed off.
fn destination_metrics(out: &mut String, list: &[relayward_delivery::DestinationView]) {
    let list = &list[..list.len().min(50)];
    let families: [(&str, &str, &str); 4] = [
        (
            "relayward_destination_in_flight",
            "gauge",
            "Deliveries under way to the destination.",
        ),
        (
            "relayward_destination_waiting",
            "gauge",
            "Messages waiting for one of the destination's delivery slots.",
        ),
        (
            "relayward_destination_failures",
            "gauge",
            "Failures in a row to reach the destination.",
        ),
        (
            "relayward_destination_backed_off",
            "gauge",
            "1 while the destination is left alone after repeated failures.",
        ),
    ];
    for (i, (name, kind, help)) in families.iter().enumerate() {
        let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
        for d in list {
            let value = match i {
                0 => d.in_flight as u64,
                1 => d.waiting as u64,
                2 => u64::from(d.failures),
                _ => u64::from(d.down_until.is_some()),
            };
            let label: String = d
                .destination
                .chars()
                .filter(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']')
                })
                .collect();
            let _ = writeln!(out, "{name}{{destination=\"{label}\"}} {value}");
        }
    }
}
