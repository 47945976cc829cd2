//! Messages that have waited long, by tenant: what SPEC section 9's "messages delayed" alert is
//! raised on (the node's guard task decides when; `node/src/delayed.rs`).

use std::collections::HashMap;

use relayward_spool::Envelope;

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

/// A message in a delivery round, as the count, the queue's shape and operators' selections
/// need it: a destination that hangs holds its messages in rounds for minutes, and they are as
/// delayed as the ones waiting for a round.
pub(super) struct InRound {
    pub(super) tenant: Option<String>,
    pub(super) mail_from: String,
    pub(super) received_at: i64,
    /// Its pending recipients' domains, each once.
    pub(super) domains: Vec<String>,
    /// An operator's action on a selection that took it in, done when its round ends if it
    /// is still queued then (`Queue::act_on_selection`).
    pub(super) after: Option<super::actions::QueueAction>,
}

impl InRound {
    pub(super) fn of(env: &Envelope) -> InRound {
        let mut domains: Vec<String> = env.pending().map(|r| r.domain()).collect();
        domains.sort_unstable();
        domains.dedup();
        InRound {
            tenant: env.tenant.clone(),
            mail_from: env.mail_from.clone(),
            received_at: env.received_at,
            domains,
            after: None,
        }
    }
}

/// The queue as the delayed count, the shape and operators' selections read it: the messages
/// waiting for a round, and those in a round now.
pub(super) struct Queued<'a> {
    pub(super) waiting: &'a HashMap<String, Envelope>,
    delivering: &'a HashMap<String, InRound>,
}

impl Queued<'_> {
    /// The messages in a round that have not been put back yet: a round that just ended has
    /// put its message back already, among the waiting ones.
    pub(super) fn in_rounds(&self) -> impl Iterator<Item = &InRound> {
        self.in_rounds_by_id().map(|(_, m)| m)
    }

    /// The same, with their ids.
    pub(super) fn in_rounds_by_id(&self) -> impl Iterator<Item = (&String, &InRound)> {
        self.delivering
            .iter()
            .filter(|(id, _)| !self.waiting.contains_key(*id))
    }
}

impl Queue {
    /// Reads the queue under the scheduler's lock, then the rounds' (in that order, as
    /// everywhere).
    pub(super) fn read_queued<R>(&self, read: impl FnOnce(Queued<'_>) -> R) -> R {
        let s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
        let d = self
            .inner
            .delivering
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        read(Queued {
            waiting: &s.waiting,
            delivering: &d,
        })
    }

    /// Per tenant, the messages waiting for a delivery round or in one that were received
    /// before `received_before` (Unix seconds). Messages held by an operator are not counted:
    /// they wait because someone chose so. Mail no tenant sent is not counted either.
    pub fn delayed(&self, received_before: i64) -> Vec<Delayed> {
        struct Tally {
            messages: usize,
            oldest: i64,
            domains: HashMap<String, usize>,
        }
        let mut by_tenant: HashMap<String, Tally> = HashMap::new();
        let mut tally = |tenant: &str, received_at: i64, domains: Vec<String>| {
            let t = by_tenant.entry(tenant.to_string()).or_insert(Tally {
                messages: 0,
                oldest: received_at,
                domains: HashMap::new(),
            });
            t.messages += 1;
            t.oldest = t.oldest.min(received_at);
            // A tenant's queue names few domains; a hostile one's many are bounded by the
            // queue itself.
            for d in domains {
                *t.domains.entry(d).or_default() += 1;
            }
        };
        self.read_queued(|q| {
            for env in q.waiting.values() {
                let Some(tenant) = &env.tenant else { continue };
                if env.held || env.received_at >= received_before {
                    continue;
                }
                tally(tenant, env.received_at, InRound::of(env).domains);
            }
            for m in q.in_rounds() {
                let Some(tenant) = &m.tenant else { continue };
                if m.received_at < received_before {
                    tally(tenant, m.received_at, m.domains.clone());
                }
            }
        });
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
