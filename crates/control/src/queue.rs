//! Operators' actions on queued messages (retry, hold, release, bounce, purge), each audited
//! with what the message was, and on many at once (flush; hold, release, bounce and purge of a
//! selection). The API, the console and the relay's control socket (the command line's
//! `relayward queue`) call here. In a cluster each node has its own queue: an action on a
//! selection is done here and passed on to the other nodes as an order in the shared store,
//! which each does to its own queue within seconds (`apply_queue_order`), audited there.

use std::collections::BTreeMap;
use std::sync::Arc;

use relayward_delivery::{QueueAction, Selection};
use relayward_guard::Role;
use relayward_store::QueueOrder;

use crate::{Actor, Conflict, Control, NotFound, Result, Via};

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

    /// `queue_action` from anywhere in a cluster: a message this node does not hold is passed
    /// on to the other nodes, and the one that holds it does the action (`None`: passed on).
    /// On one node, or for a message here, it is `queue_action`.
    pub async fn queue_action_anywhere(
        &self,
        queue: &relayward_delivery::Queue,
        id: &str,
        action: QueueAction,
        actor: &Actor,
    ) -> Result<Option<relayward_spool::Envelope>> {
        match self.queue_action(queue, id, action, actor).await {
            Err(NotFound(e)) if self.cluster_node.is_some() => {
                let one = Selection::default();
                if self.pass_on(&one, Some(id), action, actor).await {
                    Ok(None)
                } else {
                    Err(NotFound(e))
                }
            }
            done => done.map(Some),
        }
    }

    /// An operator makes every waiting message a selection picks due now, and lifts the
    /// destination's backoff (`Queue::flush`); audited with the selection and how many messages
    /// it concerned. Returns that count here, and whether the other nodes of a cluster were
    /// asked to do the same.
    pub async fn queue_flush(
        &self,
        queue: &relayward_delivery::Queue,
        selection: &Selection,
        actor: &Actor,
    ) -> Result<(usize, bool)> {
        if actor.role != Role::Operator {
            invalid!("queue actions are the operator's");
        }
        let made_due = self.flush_here(queue, selection, actor).await?;
        let passed_on = self
            .pass_on(selection, None, QueueAction::Retry, actor)
            .await;
        Ok((made_due, passed_on))
    }

    async fn flush_here(
        &self,
        queue: &relayward_delivery::Queue,
        selection: &Selection,
        actor: &Actor,
    ) -> Result<usize> {
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
            let mut done = control
                .act_on_selection(&queue, &selection, action, &actor)
                .await?;
            done.other_nodes = control.pass_on(&selection, None, action, &actor).await;
            Ok(done)
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
        // Per tenant: the messages done now, and those done as their delivery rounds end.
        type Touched<'a> = (Vec<&'a str>, Vec<&'a str>);
        let mut by_tenant: BTreeMap<Option<&str>, Touched<'_>> = BTreeMap::new();
        for (id, tenant) in &done.done {
            by_tenant.entry(tenant.as_deref()).or_default().0.push(id);
        }
        for (id, tenant) in &done.after_rounds {
            by_tenant.entry(tenant.as_deref()).or_default().1.push(id);
        }
        for (tenant, (ids, after_rounds)) in by_tenant {
            let listed = &ids[..ids.len().min(AUDITED_IDS)];
            let after_listed = &after_rounds[..after_rounds.len().min(AUDITED_IDS)];
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
                    "in_delivery_rounds": after_rounds.len(),
                    "in_delivery_rounds_ids": after_listed,
                    "after": action.as_str(),
                }),
            )
            .await?;
        }
        Ok(done)
    }
}

impl Control {
    /// In a cluster, stores an action on a selection, or on the message `id`, for the other
    /// nodes (`retry` of a selection is a flush); whether it did. Had it failed, the operator is
    /// told to act on each node.
    async fn pass_on(
        &self,
        selection: &Selection,
        id: Option<&str>,
        action: QueueAction,
        actor: &Actor,
    ) -> bool {
        let Some(node) = &self.cluster_node else {
            return false;
        };
        let order = QueueOrder {
            id: 0,
            at: relayward_clock::now_ms(),
            node: node.clone(),
            action: action.as_str().to_string(),
            tenant: selection.tenant.clone(),
            domain: selection.domain.clone(),
            sender: selection.sender.clone(),
            actor: actor.name.clone(),
            role: actor.role_str().to_string(),
            client: actor.client.clone(),
            message: id.map(str::to_string),
        };
        match self.store.add_queue_order(&order).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, action = action.as_str(), "a queue action could not be passed on to the other nodes: it was done on this node only");
                false
            }
        }
    }

    /// Does an order another node of the cluster passed on to this node's own queue, audited
    /// for the operator who asked, through that node. The asking node checked the operator's
    /// rights; an order names nothing but a selection and an action.
    pub async fn apply_queue_order(&self, queue: &relayward_delivery::Queue, order: &QueueOrder) {
        let Some(action) = QueueAction::parse(&order.action) else {
            tracing::warn!(
                order = order.id,
                action = order.action,
                "a queue order with an action this node does not know; skipped"
            );
            return;
        };
        let selection = Selection {
            tenant: order.tenant.clone(),
            domain: order.domain.clone(),
            sender: order.sender.clone(),
        };
        let actor = Actor {
            name: format!("{} (through {})", order.actor, order.node),
            role: Role::Operator,
            via: Via::System,
            client: order.client.clone(),
            mfa: false,
        };
        if let Some(id) = &order.message {
            self.apply_to_message(queue, id, action, &actor, order)
                .await;
            return;
        }
        let done = if action == QueueAction::Retry {
            self.flush_here(queue, &selection, &actor)
                .await
                .map(|n| (n, 0))
        } else {
            self.act_on_selection(queue, &selection, action, &actor)
                .await
                .map(|d| (d.done.len(), d.in_flight()))
        };
        match done {
            Ok((messages, in_flight)) => {
                tracing::info!(
                    order = order.id,
                    from = order.node,
                    action = action.as_str(),
                    messages,
                    in_flight,
                    "an operator's queue action passed on by another node, done to this node's queue"
                );
            }
            Err(e) => {
                tracing::warn!(order = order.id, from = order.node, action = action.as_str(), error = %e, "an operator's queue action passed on by another node could not be done here");
            }
        }
    }
}

impl Control {
    /// An order for one message: done if this node holds it (a message in a delivery round, as
    /// its round ends); the nodes that do not hold it have nothing to do.
    async fn apply_to_message(
        &self,
        queue: &relayward_delivery::Queue,
        id: &str,
        action: QueueAction,
        actor: &Actor,
        order: &QueueOrder,
    ) {
        let when = match self.queue_action(queue, id, action, actor).await {
            Ok(_) => "done here",
            Err(Conflict(_)) => {
                queue.after_its_round(id, action);
                "done here as its delivery round ends"
            }
            Err(_) => return,
        };
        tracing::info!(
            order = order.id,
            from = order.node,
            message = id,
            action = action.as_str(),
            "an operator's action on a message passed on by another node: {when}"
        );
    }
}

/// An audit entry of an action on many messages names at most this many of them.
const AUDITED_IDS: usize = 1_000;
