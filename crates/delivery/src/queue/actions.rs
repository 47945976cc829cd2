//! What operators see of the queue and do to it: the list of waiting messages, an action on
//! one (retry, hold, release, bounce, purge) or on every one a selection picks (hold, release,
//! bounce, purge), and the flush of many. The control plane audits each; the command line, the
//! API and the console call it.

use std::cmp::Reverse;
use std::sync::atomic::Ordering;

use relayward_spool::{Envelope, RcptState};
use relayward_store::TraceKind;

use super::delayed::InRound;
use super::{Queue, QueuedMessage, now_ms};

/// Why an operator's queue action could not be done.
#[derive(Debug, thiserror::Error)]
pub enum QueueActionError {
    #[error("no queued message {0}")]
    NotFound(String),
    #[error("message {0} is being delivered right now; try again in a moment")]
    InFlight(String),
    #[error("{0} acts on one message; for many, flush")]
    NotForMany(&'static str),
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

/// Which waiting messages an operator means: those of one tenant, with a pending recipient in
/// one domain, from one sender (`<>` for the relay's own reports), or any mix; every message
/// when nothing is named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub tenant: Option<String>,
    pub domain: Option<String>,
    pub sender: Option<String>,
}

impl Selection {
    /// Nothing named: every waiting message.
    pub fn is_everything(&self) -> bool {
        self.tenant.is_none() && self.domain.is_none() && self.sender.is_none()
    }

    /// What picks the selection's messages, its domain and sender in the forms envelopes are
    /// compared in.
    pub(super) fn picker(&self) -> Picker<'_> {
        Picker {
            tenant: self.tenant.as_deref(),
            domain: self
                .domain
                .as_deref()
                .map(|d| relayward_names::domain_key(d).into_owned()),
            sender: self.sender.as_deref().map(sender_key),
        }
    }
}

/// A selection ready to pick waiting messages and messages in a delivery round.
pub(super) struct Picker<'a> {
    tenant: Option<&'a str>,
    domain: Option<String>,
    sender: Option<String>,
}

impl Picker<'_> {
    fn picks(
        &self,
        tenant: Option<&str>,
        mail_from: &str,
        has_domain: impl Fn(&str) -> bool,
    ) -> bool {
        self.tenant.is_none_or(|t| tenant == Some(t))
            && self.domain.as_deref().is_none_or(has_domain)
            && self
                .sender
                .as_deref()
                .is_none_or(|s| sender_key(mail_from) == s)
    }

    /// A waiting message: the domain is a pending recipient's.
    pub(super) fn envelope(&self, e: &Envelope) -> bool {
        self.picks(e.tenant.as_deref(), &e.mail_from, |d| {
            e.pending().any(|r| r.domain() == d)
        })
    }

    /// A message in a delivery round.
    pub(super) fn in_round(&self, m: &InRound) -> bool {
        self.picks(m.tenant.as_deref(), &m.mail_from, |d| {
            m.domains.iter().any(|x| x == d)
        })
    }
}

/// A sender as selections compare it: `<>` and the empty reverse path alike, the domain in its
/// lookup form (A-labels, lower case) and the local part in lower case, as people type it.
fn sender_key(sender: &str) -> String {
    let sender = sender.trim();
    let bare = sender
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(sender);
    match bare.rsplit_once('@') {
        Some((local, domain)) => format!(
            "{}@{}",
            local.to_lowercase(),
            relayward_names::domain_key(domain)
        ),
        None => bare.to_lowercase(),
    }
}

/// What an action on a selection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    /// The messages it was done to, with their tenants, oldest first.
    pub done: Vec<(String, Option<String>)>,
    /// Selected messages in a delivery round at that instant, with their tenants: the action
    /// is done to each when its round ends, if it is still queued then (delivered in its
    /// round, it is gone).
    pub after_rounds: Vec<(String, Option<String>)>,
    /// Set by the control plane: the action was passed on to the cluster's other nodes, each
    /// of which does it to its own queue.
    pub other_nodes: bool,
}

impl Selected {
    /// How many selected messages were in a delivery round (`after_rounds`).
    pub fn in_flight(&self) -> usize {
        self.after_rounds.len()
    }
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
    /// The messages a selection picks that wait for a delivery round (not those being
    /// delivered this instant), soonest first (held ones last), at most `limit`. Only the
    /// listed ones are copied out, under the scheduler's lock.
    pub fn list(&self, selection: &Selection, limit: usize) -> Vec<QueuedMessage> {
        let picker = selection.picker();
        let s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
        let mut picked: Vec<&Envelope> =
            s.waiting.values().filter(|e| picker.envelope(e)).collect();
        let order = |a: &&Envelope, b: &&Envelope| {
            (a.held, a.next_attempt, &a.id).cmp(&(b.held, b.next_attempt, &b.id))
        };
        if picked.len() > limit && limit > 0 {
            picked.select_nth_unstable_by(limit - 1, order);
        }
        picked.truncate(limit);
        picked.sort_unstable_by(order);
        picked.into_iter().map(queued_message).collect()
    }

    /// The message `id` if it waits for a delivery round.
    pub fn queued(&self, id: &str) -> Option<QueuedMessage> {
        let s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
        s.waiting.get(id).map(queued_message)
    }

    /// How many waiting messages a selection picks, held ones too.
    pub fn count(&self, selection: &Selection) -> usize {
        let picker = selection.picker();
        let s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
        s.waiting.values().filter(|e| picker.envelope(e)).count()
    }

    /// Makes every waiting message a selection picks that is not held due now (as `postqueue
    /// -f` and `-s` do), and lifts the backoff of the named destination (of every destination
    /// when nothing is named), so a destination back after an outage gets its mail at once
    /// instead of at each message's next retry. Returns how many messages were made due. The
    /// new times are not written to the spool: a restart leaves each message at the time its
    /// last round gave it.
    pub fn flush(&self, selection: &Selection) -> usize {
        let inner = &self.inner;
        let picker = selection.picker();
        let domain = selection.domain.as_deref().map(relayward_names::domain_key);
        let now = now_ms() / 1000;
        let made_due = {
            let mut s = inner.sched.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<String> = s
                .waiting
                .values()
                .filter(|e| !e.held && e.next_attempt > now && picker.envelope(e))
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
        match &domain {
            Some(d) => inner.lift_backoff(Some(&inner.destination_of(d))),
            None if selection.is_everything() => inner.lift_backoff(None),
            None => {}
        }
        inner.wake.notify_one();
        made_due
    }

    /// Holds, releases, bounces or purges every waiting message a selection picks, as `act`
    /// does one: hold takes those not held, release those held. A message in a delivery round
    /// (at the start, or by the time its turn comes) is counted, and the action is done to it
    /// when the round ends if it is still queued then (a destination that hangs keeps its
    /// messages in rounds for minutes; an operator holding or purging a spam run means those
    /// too); one delivered meanwhile is not there to act on. A message in a round is never
    /// held, so release leaves rounds alone. Retry is `flush`, and is refused here.
    pub async fn act_on_selection(
        &self,
        selection: &Selection,
        action: QueueAction,
    ) -> Result<Selected, QueueActionError> {
        if action == QueueAction::Retry {
            return Err(QueueActionError::NotForMany(action.as_str()));
        }
        let picker = selection.picker();
        let mut out = Selected::default();
        // Those in a round now are acted on as their rounds end (a destination that hangs
        // keeps its messages in rounds for minutes).
        let mut ids: Vec<(String, Option<String>)> = self.read_queued(|q| {
            if action != QueueAction::Release {
                out.after_rounds = q
                    .in_rounds_by_id()
                    .filter(|(_, m)| picker.in_round(m))
                    .map(|(id, m)| (id.clone(), m.tenant.clone()))
                    .collect();
            }
            q.waiting
                .values()
                .filter(|e| match action {
                    QueueAction::Hold => !e.held,
                    QueueAction::Release => e.held,
                    _ => true,
                })
                .filter(|e| picker.envelope(e))
                .map(|e| (e.id.clone(), e.tenant.clone()))
                .collect()
        });
        // Ids begin with their arrival time.
        ids.sort_unstable();
        for (id, tenant) in ids {
            match self.act(&id, action).await {
                Ok(before) => out.done.push((before.id, before.tenant)),
                Err(QueueActionError::InFlight(_)) => out.after_rounds.push((id, tenant)),
                Err(_) => {}
            }
        }
        for (id, _) in &out.after_rounds {
            self.after_its_round(id, action);
        }
        Ok(out)
    }

    /// Has `action` done to message `id` when its delivery round ends. A round that ended
    /// meanwhile has put the message back (or delivered it) already: then it is done now.
    pub fn after_its_round(&self, id: &str, action: QueueAction) {
        let mut d = self
            .inner
            .delivering
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(round) = d.get_mut(id) {
            round.after = Some(action);
            return;
        }
        drop(d);
        let queue = Queue {
            inner: self.inner.clone(),
        };
        let id = id.to_string();
        tokio::spawn(async move { queue.act_after_round(&id, action).await });
    }

    /// An action a selection asked for, done as a message's delivery round ended.
    pub(super) async fn act_after_round(&self, id: &str, action: QueueAction) {
        match self.act(id, action).await {
            Ok(before) => {
                tracing::info!(
                    message = id,
                    tenant = before.tenant.as_deref().unwrap_or("-"),
                    action = action.as_str(),
                    "an operator's action on a selection done as the message's delivery round ended"
                );
            }
            Err(QueueActionError::InFlight(_)) => self.after_its_round(id, action),
            Err(_) => {}
        }
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

/// A waiting message as operators see it.
fn queued_message(e: &Envelope) -> QueuedMessage {
    QueuedMessage {
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
        node: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_is_selected_as_people_type_it() {
        let picks = |typed: &str, from: &str| sender_key(typed) == sender_key(from);
        assert!(picks("<>", ""), "the null sender, typed as it is shown");
        assert!(picks("", ""));
        assert!(!picks("<>", "mailer-daemon@relay.example"));
        assert!(picks("Bob@Contoso.EXAMPLE", "bob@contoso.example"));
        assert!(picks("<bob@contoso.example>", "bob@contoso.example"));
        assert!(picks("bob@bücher.example", "bob@xn--bcher-kva.example"));
        assert!(!picks("bob@contoso.example", "bob@contoso.example.net"));
        assert!(!picks("bob", "bob@contoso.example"));
    }
}
