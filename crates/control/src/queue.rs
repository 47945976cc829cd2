//! Operators' actions on queued messages (retry, hold, release, bounce, purge), each audited
//! with what the message was, and on many at once (flush; hold, release, bounce and purge of a
//! selection). The API, the console and the relay's control socket (the command line's
//! `relayward queue`) call here.

use std::collections::BTreeMap;
use std::sync::Arc;

use relayward_delivery::Selection;
use relayward_guard::Role;

use crate::{Actor, Conflict, Control, NotFound, Result};

impl Control {
    /// An operator's action on a queued message (retry, hold, release, bounce, purge), audited
    /// with what the message was.
    pub async fn queue_action(
        &self,
        queue: &relayward_delivery::Queue,
        id: &str,
        action: relayward_delivery::QueueAction,
        actor: &Actor,
    ) -> Result<relayward_spool::Envelope> {
        use relayward_delivery::QueueActionError;
        if actor.role != Role::Operator {
            invalid!("queue actions are the operator's");
        }
        let before = queue.act(id, action).await.map_err(|e| match e {
            QueueActionError::NotFound(_) => NotFound(e.to_string()),
            QueueActionError::InFlight(_) => Conflict(e.to_string()),
            QueueActionError::NotForMany(_) => crate::ControlError::Invalid(e.to_string()),
        })?;
        self.audit(
            actor,
            before.tenant.as_deref(),
            &format!("queue.{}", action.as_str()),
            serde_json::json!({
                "message": before.id,
                "sender": before.mail_from,
                "pending": before.pending().map(|r| r.address.clone()).collect::<Vec<_>>(),
                "before": { "held": before.held, "attempts": before.attempts, "next_attempt": before.next_attempt },
                "after": action.as_str(),
            }),
        )
        .await?;
        Ok(before)
    }

    /// An operator makes every waiting message a selection picks due now, and lifts the
    /// destination's backoff (`Queue::flush`); audited with the selection and how many messages
    /// it concerned.
    pub async fn queue_flush(
        &self,
        queue: &relayward_delivery::Queue,
        selection: &Selection,
        actor: &Actor,
    ) -> Result<usize> {
        if actor.role != Role::Operator {
            invalid!("queue actions are the operator's");
        }
        let made_due = queue.flush(selection);
        self.audit(
            actor,
            selection.tenant.as_deref(),
            "queue.flush",
            serde_json::json!({
                "tenant": selection.tenant,
                "domain": selection.domain,
                "sender": selection.sender,
                "messages": made_due,
            }),
        )
        .await?;
        Ok(made_due)
    }

    /// An operator holds, releases, bounces or purges every waiting message a selection picks
    /// (`Queue::act_on_selection`). Nothing named means every message, and is refused unless
    /// `everything` says so: one slip must not bounce a whole queue. Audited once for each
    /// tenant whose mail it touched, with the selection, how many and which messages. The work
    /// runs as a task of its own: a caller that goes away (a client hanging up on a long bounce)
    /// leaves it to finish and be audited.
    pub async fn queue_action_selected(
        self: &Arc<Self>,
        queue: &relayward_delivery::Queue,
        selection: &Selection,
        everything: bool,
        action: relayward_delivery::QueueAction,
        actor: &Actor,
    ) -> Result<relayward_delivery::Selected> {
        if actor.role != Role::Operator {
            invalid!("queue actions are the operator's");
        }
        if selection.is_everything() && !everything {
            invalid!(
                "name a tenant, a recipient domain or a sender, or say that every queued message is meant"
            );
        }
        if selection.is_everything() != everything {
            invalid!("every queued message, or those of a selection: not both");
        }
        let (control, queue, selection, actor) = (
            self.clone(),
            queue.clone(),
            selection.clone(),
            actor.clone(),
        );
        tokio::spawn(async move {
            control
                .act_on_selection(&queue, &selection, action, &actor)
                .await
        })
        .await
        .map_err(|e| crate::ControlError::Internal(format!("queue action stopped: {e}")))?
    }

    async fn act_on_selection(
        &self,
        queue: &relayward_delivery::Queue,
        selection: &Selection,
        action: relayward_delivery::QueueAction,
        actor: &Actor,
    ) -> Result<relayward_delivery::Selected> {
        let done = queue
            .act_on_selection(selection, action)
            .await
            .map_err(|e| crate::ControlError::Invalid(e.to_string()))?;
        let mut by_tenant: BTreeMap<Option<&str>, Vec<&str>> = BTreeMap::new();
        for (id, tenant) in &done.done {
            by_tenant.entry(tenant.as_deref()).or_default().push(id);
        }
        for (tenant, ids) in by_tenant {
            let listed = &ids[..ids.len().min(AUDITED_IDS)];
            self.audit(
                actor,
                tenant,
                &format!("queue.{}", action.as_str()),
                serde_json::json!({
                    "selection": {
                        "tenant": selection.tenant,
                        "domain": selection.domain,
                        "sender": selection.sender,
                    },
                    "messages": ids.len(),
                    "ids": listed,
                    "ids_not_listed": ids.len() - listed.len(),
                    "after": action.as_str(),
                }),
            )
            .await?;
        }
        Ok(done)
    }
}

/// An audit entry of an action on many messages names at most this many of them.
const AUDITED_IDS: usize = 1_000;
