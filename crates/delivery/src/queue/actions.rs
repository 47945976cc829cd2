//! What operators see of the queue and do to it: the list of waiting messages, an action on
//! one (retry, hold, release, bounce, purge), and the flush of many. The control plane audits
//! each; the command line, the API and the console call it.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;

use relayward_spool::{Envelope, RcptState};
use relayward_store::TraceKind;

use super::{Queue, QueuedMessage, now_ms};

/// Why an operator's queue action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum QueueActionError {
    #[error("no queued message {0}")]
    NotFound(String),
    #[error("message {0} is being delivered right now; try again in a moment")]
    InFlight(String),
}

/// What an operator does to a queued message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// Try again now.
    Retry,
    Hold,
    Release,
    /// Fail its pending recipients now; the sender gets an NDR.
    Bounce,
    /// Delete it without telling anyone.
    Purge,
}

impl QueueAction {
    pub fn parse(s: &str) -> Option<QueueAction> {
        Some(match s {
            "retry" => QueueAction::Retry,
            "hold" => QueueAction::Hold,
            "release" => QueueAction::Release,
            "bounce" => QueueAction::Bounce,
            "purge" => QueueAction::Purge,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            QueueAction::Retry => "retry",
            QueueAction::Hold => "hold",
            QueueAction::Release => "release",
            QueueAction::Bounce => "bounce",
            QueueAction::Purge => "purge",
        }
    }
}

impl Queue {
    /// Messages waiting for a delivery round (not those being delivered this instant), of one
    /// tenant and/or with a pending recipient in one domain, soonest first, at most `limit`.
    pub fn list(
        &self,
        tenant: Option<&str>,
        domain: Option<&str>,
        limit: usize,
    ) -> Vec<QueuedMessage> {
        let s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
        let domain = domain.map(relayward_names::domain_key);
        let mut out: Vec<QueuedMessage> = s
            .waiting
            .values()
            .filter(|e| tenant.is_none_or(|t| e.tenant.as_deref() == Some(t)))
            .filter(|e| {
                domain
                    .as_deref()
                    .is_none_or(|d| e.pending().any(|r| r.domain() == d))
            })
            .map(|e| QueuedMessage {
                id: e.id.clone(),
                tenant: e.tenant.clone(),
                mail_from: e.mail_from.clone(),
                pending: e.pending().map(|r| r.address.clone()).collect(),
                last_reply: e.pending().find_map(|r| match &r.state {
                    RcptState::Pending { last_reply } => last_reply.clone(),
                    _ => None,
                }),
                attempts: e.attempts,
                received_at: e.received_at,
                next_attempt: e.next_attempt,
                held: e.held,
            })
            .collect();
        out.sort_by_key(|m| (m.held, m.next_attempt, m.id.clone()));
        out.truncate(limit);
        out
    }

    /// Makes every waiting message that is not held, of one tenant and/or with a pending
    /// recipient in one domain, due now (as `postqueue -f` and `-s` do), and lifts the backoff
    /// of the named destination (of every destination when neither is named), so a destination
    /// back after an outage gets its mail at once instead of at each message's next retry.
    /// Returns how many messages were made due. The new times are not written to the spool: a
    /// restart leaves each message at the time its last round gave it.
    pub fn flush(&self, tenant: Option<&str>, domain: Option<&str>) -> usize {
        let inner = &self.inner;
        let domain = domain.map(relayward_names::domain_key);
        let now = now_ms() / 1000;
        let made_due = {
            let mut s = inner.sched.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<String> = s
                .waiting
                .values()
                .filter(|e| !e.held && e.next_attempt > now)
                .filter(|e| tenant.is_none_or(|t| e.tenant.as_deref() == Some(t)))
                .filter(|e| {
                    domain
                        .as_deref()
                        .is_none_or(|d| e.pending().any(|r| r.domain() == d))
                })
                .map(|e| e.id.clone())
                .collect();
            for id in &ids {
                if let Some(e) = s.waiting.get_mut(id) {
                    e.next_attempt = now;
                }
                s.seq += 1;
                let seq = s.seq;
                s.heap.push(Reverse((now * 1000, seq, id.clone())));
            }
            ids.len()
        };
        match (&domain, tenant) {
            (Some(d), _) => inner.lift_backoff(Some(&inner.destination_of(d))),
            (None, None) => inner.lift_backoff(None),
            (None, Some(_)) => {}
        }
        inner.wake.notify_one();
        made_due
    }

    /// An operator's action on one queued message. Returns the message as it was.
    pub async fn act(&self, id: &str, action: QueueAction) -> Result<Envelope, QueueActionError> {
        let inner = &self.inner;
        // Hold, release and retry change the waiting envelope in place, under the scheduler's
        // lock, so a delivery round cannot start between reading and writing it back.
        let taken = {
            let mut s = inner.sched.lock().unwrap_or_else(|p| p.into_inner());
            match action {
                QueueAction::Bounce | QueueAction::Purge => {
                    s.take_fresh(id);
                    s.waiting.remove(id).map(|e| (e, None))
                }
                QueueAction::Hold | QueueAction::Release | QueueAction::Retry => {
                    let now = now_ms() / 1000;
                    let changed = s.waiting.get_mut(id).map(|e| {
                        let before = e.clone();
                        if action == QueueAction::Hold {
                            e.held = true;
                        } else {
                            e.held = false;
                            e.next_attempt = now;
                        }
                        (before, e.clone())
                    });
                    if let Some((_, e)) = &changed
                        && !e.held
                    {
                        s.seq += 1;
                        let seq = s.seq;
                        s.heap.push(Reverse((now * 1000, seq, e.id.clone())));
                    }
                    changed.map(|(before, after)| (before, Some(after)))
                }
            }
        };
        let Some((mut env, changed)) = taken else {
            let in_flight = inner
                .delivering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(id);
            return Err(if in_flight {
                QueueActionError::InFlight(id.to_string())
            } else {
                QueueActionError::NotFound(id.to_string())
            });
        };
        if matches!(
            action,
            QueueAction::Bounce | QueueAction::Purge | QueueAction::Hold
        ) {
            // Out of the line for memory, if it waited there: it does not hold up the others.
            inner.wake_for_memory(inner.body_memory.forget(id));
        }
        if let Some(after) = changed {
            inner.spool.update(&after);
            inner.wake.notify_one();
            return Ok(env);
        }
        let before = env.clone();
        match action {
            QueueAction::Retry | QueueAction::Release | QueueAction::Hold => {}
            QueueAction::Bounce => {
                inner.stats.queued.fetch_sub(1, Ordering::Relaxed);
                for r in env.recipients.iter_mut().filter(|r| r.is_pending()) {
                    inner.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let reply =
                        "550 5.7.1 Returned to the sender by the relay's operator".to_string();
                    inner.event(
                        &env.id,
                        TraceKind::Failed,
                        Some(&r.address),
                        format!("relay: {reply}"),
                    );
                    r.state = RcptState::Failed {
                        reply,
                        remote: None,
                    };
                }
                inner.after_round(env).await;
            }
            QueueAction::Purge => {
                inner.stats.queued.fetch_sub(1, Ordering::Relaxed);
                for r in env.recipients.iter().filter(|r| r.is_pending()) {
                    inner.event(
                        &env.id,
                        TraceKind::Failed,
                        Some(&r.address),
                        "relay: purged from the queue by the relay's operator (no NDR)".into(),
                    );
                }
                inner.spool.done(&env.id);
            }
        }
        Ok(before)
    }
}
