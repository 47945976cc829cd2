//! SPEC section 9's "messages delayed" alert: a tenant with `[guard] delayed_alert_messages`
//! (2,000) or more messages waiting for longer than `delayed_alert_after` (1 h). In a cluster
//! the count is the tenant's on every node: each node saves its own count with each look and
//! reads the others' (`Store::share_delayed`). Its admins are told once (mail, console,
//! webhook: the guard's alert path), with the destinations most waited for; again only once
//! the backlog has fallen under half the threshold and grown past it anew. Each node keeps
//! whom it told; a claim in the store (one per tenant per `delayed_alert_after`) keeps the
//! other nodes, and a node restarted during the backlog, from telling them again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use relayward_delivery::{Delayed, Queue};
use relayward_store::{CounterRow, Store};
use serde::{Deserialize, Serialize};

use crate::guarding::GuardHandle;

/// What a node saves of one tenant's long-waiting messages (cluster mode).
#[derive(Serialize, Deserialize)]
struct Saved {
    messages: usize,
    oldest: i64,
    domains: Vec<(String, usize)>,
}

/// Looks at the queue every quarter of `after` (at least every second, at most every minute)
/// until the task is aborted. `cluster_node` is this node's name in cluster mode.
pub async fn watch(
    queue: Queue,
    guard: Arc<GuardHandle>,
    store: Arc<dyn Store>,
    cluster_node: Option<String>,
    messages: u64,
    after: Duration,
) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut told: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(every).await;
        let now_ms = relayward_clock::now_ms();
        let since = now_ms / 1000 - after.as_secs() as i64;
        let mut delayed = queue.delayed(since);
        if let Some(node) = &cluster_node {
            let mine = delayed
                .iter()
                .map(|d| {
                    let saved = Saved {
                        messages: d.messages,
                        oldest: d.oldest,
                        domains: d.domains.clone(),
                    };
                    (
                        d.tenant.clone(),
                        serde_json::to_string(&saved).unwrap_or_default(),
                    )
                })
                .collect();
            let fresh = (every * 3).as_millis() as i64;
            match store.share_delayed(node, mine, fresh, now_ms).await {
                Ok(rows) => delayed = cluster_wide(rows),
                // This node's own count until the database is back.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot share the count of delayed messages with the other nodes")
                }
            }
        }
        for alert in look(&mut told, &delayed, messages, after, now_ms) {
            let claim = format!("alert:{}:messages_delayed", alert.tenant);
            let window = (after.as_millis() as i64).min(relayward_store::ATTEMPTS_KEPT_MS);
            match store.count_attempt(&claim, window, 1, now_ms).await {
                Ok(Some(_)) => {
                    tracing::info!(tenant = %alert.tenant, "messages-delayed alert already sent for this backlog");
                    continue;
                }
                Ok(None) => {}
                // Better told twice than not at all.
                Err(e) => tracing::warn!(error = %e, "cannot claim the messages-delayed alert"),
            }
            // Logged, stored, mailed and posted by the guard task.
            guard.raise(alert);
        }
    }
}

/// Every node's rows summed per tenant: the messages, the oldest, and the destinations most
/// waited for (of each node's three).
fn cluster_wide(rows: Vec<CounterRow>) -> Vec<Delayed> {
    let mut by_tenant: HashMap<String, (usize, i64, HashMap<String, usize>)> = HashMap::new();
    for row in rows {
        let Ok(saved) = serde_json::from_str::<Saved>(&row.body) else {
            tracing::warn!(node = %row.node, tenant = %row.tenant, "unreadable delayed count saved by a node; left out");
            continue;
        };
        let t = by_tenant
            .entry(row.tenant)
            .or_insert((0, saved.oldest, HashMap::new()));
        t.0 += saved.messages;
        t.1 = t.1.min(saved.oldest);
        for (domain, n) in saved.domains {
            *t.2.entry(domain).or_default() += n;
        }
    }
    let mut out: Vec<Delayed> = by_tenant
        .into_iter()
        .map(|(tenant, (messages, oldest, domains))| {
            let mut domains: Vec<(String, usize)> = domains.into_iter().collect();
            domains.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            domains.truncate(3);
            Delayed {
                tenant,
                messages,
                oldest,
                domains,
            }
        })
        .collect();
    out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    out
}

/// The alerts to raise now, keeping `told` (the tenants told during their present backlog).
fn look(
    told: &mut HashSet<String>,
    delayed: &[Delayed],
    messages: u64,
    after: Duration,
    now_ms: i64,
) -> Vec<relayward_guard::Alert> {
    let waiting = |tenant: &str| {
        delayed
            .iter()
            .find(|d| d.tenant == tenant)
            .map_or(0, |d| d.messages as u64)
    };
    told.retain(|t| waiting(t) * 2 >= messages);
    let mut out = Vec::new();
    for d in delayed {
        if (d.messages as u64) < messages || !told.insert(d.tenant.clone()) {
            continue;
        }
        let most = d
            .domains
            .iter()
            .map(|(domain, n)| format!("{domain} ({n})"))
            .collect::<Vec<_>>()
            .join(", ");
        out.push(relayward_guard::Alert {
            tenant: d.tenant.clone(),
            at: now_ms,
            severity: relayward_guard::Severity::Medium,
            kind: relayward_guard::AlertKind::MessagesDelayed,
            subject: d.tenant.clone(),
            text: format!(
                "{} messages have waited in the queue for more than {} (the oldest for {}); most wait for {most}. The message trace shows the replies they get: a destination that refuses them or cannot be reached keeps them waiting until it takes them or they expire and their senders get an NDR.",
                d.messages,
                span(after.as_secs()),
                span((now_ms / 1000 - d.oldest).max(0) as u64),
            ),
        });
    }
    out
}

/// `3 h 12 min`, `45 min`, `30 s`.
fn span(secs: u64) -> String {
    match (secs / 3600, secs % 3600 / 60) {
        (0, 0) => format!("{secs} s"),
        (0, m) => format!("{m} min"),
        (h, 0) => format!("{h} h"),
        (h, m) => format!("{h} h {m} min"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delayed(tenant: &str, messages: usize) -> Delayed {
        Delayed {
            tenant: tenant.into(),
            messages,
            oldest: 1_000,
            domains: vec![("slow.example".into(), messages)],
        }
    }

    #[test]
    fn a_tenants_count_is_the_sum_of_its_nodes() {
        let row = |node: &str, tenant: &str, body: &str| CounterRow {
            node: node.into(),
            tenant: tenant.into(),
            body: body.into(),
            updated_at: 0,
        };
        let all = cluster_wide(vec![
            row(
                "a",
                "contoso",
                r#"{"messages":2,"oldest":500,"domains":[["remote.example",2]]}"#,
            ),
            row(
                "b",
                "contoso",
                r#"{"messages":2,"oldest":400,"domains":[["other.example",1],["remote.example",1]]}"#,
            ),
            row(
                "b",
                "fabrikam",
                r#"{"messages":5,"oldest":900,"domains":[]}"#,
            ),
            row("c", "contoso", "not what a node saves"),
        ]);
        assert_eq!(
            all,
            [
                Delayed {
                    tenant: "contoso".into(),
                    messages: 4,
                    oldest: 400,
                    domains: vec![("remote.example".into(), 3), ("other.example".into(), 1)],
                },
                Delayed {
                    tenant: "fabrikam".into(),
                    messages: 5,
                    oldest: 900,
                    domains: vec![],
                },
            ]
        );
    }

    #[test]
    fn a_tenant_is_told_once_per_backlog() {
        let mut told = HashSet::new();
        let hour = Duration::from_secs(3600);
        let now = 1_000 * 1000 + 3 * 3_600_000 + 12 * 60_000;
        // Under the threshold: nothing.
        assert!(look(&mut told, &[delayed("contoso", 1999)], 2000, hour, now).is_empty());
        // Past it: one alert, naming the count, the age and the destination.
        let alerts = look(&mut told, &[delayed("contoso", 2000)], 2000, hour, now);
        assert_eq!(alerts.len(), 1);
        assert_eq!(alerts[0].kind, relayward_guard::AlertKind::MessagesDelayed);
        assert!(
            alerts[0].text.starts_with(
                "2000 messages have waited in the queue for more than 1 h (the oldest for 3 h 12 min); most wait for slow.example (2000)."
            ),
            "{}",
            alerts[0].text
        );
        // Still over, or down but not under half: not again.
        assert!(look(&mut told, &[delayed("contoso", 2500)], 2000, hour, now).is_empty());
        assert!(look(&mut told, &[delayed("contoso", 1000)], 2000, hour, now).is_empty());
        // Under half, then past the threshold again: a new backlog, a new alert.
        assert!(look(&mut told, &[delayed("contoso", 999)], 2000, hour, now).is_empty());
        assert_eq!(
            look(&mut told, &[delayed("contoso", 2000)], 2000, hour, now).len(),
            1
        );
        // Gone from the queue altogether counts as under half; other tenants are their own.
        assert_eq!(
            look(&mut told, &[delayed("fabrikam", 3000)], 2000, hour, now).len(),
            1
        );
        assert_eq!(
            look(&mut told, &[delayed("contoso", 2000)], 2000, hour, now).len(),
            1
        );
    }
}
