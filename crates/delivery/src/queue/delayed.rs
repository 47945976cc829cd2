//! Messages that have waited long, by tenant: what SPEC section 9's "messages delayed" alert is
//! raised on (the node's guard task decides when; `node/src/delayed.rs`).

use std::collections::HashMap;

use super::Queue;

/// One tenant's messages waiting since before a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delayed {
    pub tenant: String,
    pub messages: usize,
    /// When the oldest of them was received, Unix seconds.
    pub oldest: i64,
    /// The recipient domains they wait for most, with how many of them wait for each (at most
    /// three, the most first).
    pub domains: Vec<(String, usize)>,
}

impl Queue {
    /// Per tenant, the messages waiting for a delivery round that were received before
    /// `received_before` (Unix seconds). Messages held by an operator are not counted: they
    /// wait because someone chose so. Mail no tenant sent is not counted either.
    pub fn delayed(&self, received_before: i64) -> Vec<Delayed> {
        struct Tally {
            messages: usize,
            oldest: i64,
            domains: HashMap<String, usize>,
        }
        let mut by_tenant: HashMap<String, Tally> = HashMap::new();
        {
            let s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
            for env in s.waiting.values() {
                let Some(tenant) = &env.tenant else { continue };
                if env.held || env.received_at >= received_before {
                    continue;
                }
                let t = by_tenant.entry(tenant.clone()).or_insert(Tally {
                    messages: 0,
                    oldest: env.received_at,
                    domains: HashMap::new(),
                });
                t.messages += 1;
                t.oldest = t.oldest.min(env.received_at);
                // A tenant's queue names few domains; a hostile one's many are bounded by the
                // queue itself.
                let mut seen: Vec<String> = env.pending().map(|r| r.domain()).collect();
                seen.sort_unstable();
                seen.dedup();
                for d in seen {
                    *t.domains.entry(d).or_default() += 1;
                }
            }
        }
        let mut out: Vec<Delayed> = by_tenant
            .into_iter()
            .map(|(tenant, t)| {
                let mut domains: Vec<(String, usize)> = t.domains.into_iter().collect();
                domains.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                domains.truncate(3);
                Delayed {
                    tenant,
                    messages: t.messages,
                    oldest: t.oldest,
                    domains,
                }
            })
            .collect();
        out.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        out
    }
}
