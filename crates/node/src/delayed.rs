//! SPEC section 9's "messages delayed" alert: a tenant with `[guard] delayed_alert_messages`
//! (2,000) or more messages waiting in this node's queue for longer than `delayed_alert_after`
//! (1 h). Its admins are told once (mail, console, webhook: the guard's alert path), with the
//! destinations most waited for; again only once the backlog has fallen under half the
//! threshold and grown past it anew.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use relayward_delivery::{Delayed, Queue};

use crate::guarding::GuardHandle;

/// Looks at the queue every quarter of `after` (at least every second, at most every minute)
/// until the task is aborted.
pub async fn watch(queue: Queue, guard: Arc<GuardHandle>, messages: u64, after: Duration) {
    let every = (after / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut told: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(every).await;
        let now_ms = relayward_clock::now_ms();
        let since = now_ms / 1000 - after.as_secs() as i64;
        let delayed = queue.delayed(since);
        for alert in look(&mut told, &delayed, messages, after, now_ms) {
            // Logged, stored, mailed and posted by the guard task.
            guard.raise(alert);
        }
    }
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
