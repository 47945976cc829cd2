//! Operators' actions on queued messages (retry, hold, release, bounce, purge), each audited
//! with what the message was, and on many at once (flush). The API and the relay's control socket (the command line's
//! `relayward queue`) both call here.

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

    /// An operator makes every waiting message (of one tenant and/or with a pending recipient
    /// in one domain) due now, and lifts the destination's backoff (`Queue::flush`); audited
    /// with the filters and how many messages it concerned.
    pub async fn queue_flush(
        &self,
        queue: &relayward_delivery::Queue,
        tenant: Option<&str>,
        domain: Option<&str>,
        actor: &Actor,
    ) -> Result<usize> {
        if actor.role != Role::Operator {
            invalid!("queue actions are the operator's");
        }
        let made_due = queue.flush(tenant, domain);
        self.audit(
            actor,
            tenant,
            "queue.flush",
            serde_json::json!({ "tenant": tenant, "domain": domain, "messages": made_due }),
        )
        .await?;
        Ok(made_due)
    }
}
