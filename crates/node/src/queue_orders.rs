//! Cluster mode: operators' actions on a selection of the queue, made on any node, done to
//! every node's own queue. The node asked does the action and stores it as an order
//! (`Control::queue_action_selected`, `queue_flush`); here each node takes the orders the
//! others stored, at once when the change feed says `queue`, else within a second, and does
//! them to its own queue (`Control::apply_queue_order`), audited there.
//!
//! Orders made before this node started are not done: the queue it holds now came after them,
//! or was adopted from another node.

use std::sync::Arc;
use std::time::Duration;

use relayward_control::Control;
use relayward_delivery::Queue;
use relayward_store::Store;

/// Orders taken in one read; more are read at once after.
const BATCH: usize = 100;

pub async fn run(store: Arc<dyn Store>, control: Arc<Control>, queue: Queue, node: String) {
    let mut seen = loop {
        match store.last_queue_order().await {
            Ok(id) => break id,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's queue orders yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut wait =
        crate::changes::ChangeWait::new(store.change_feed(), "queue", Duration::from_secs(1));
    loop {
        wait.next().await;
        loop {
            let orders = match store.queue_orders_after(seen, BATCH).await {
                Ok(orders) => orders,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the cluster's queue orders now");
                    break;
                }
            };
            let full = orders.len() == BATCH;
            for order in orders {
                seen = order.id;
                if order.node != node {
                    control.apply_queue_order(&queue, &order).await;
                }
            }
            if !full {
                break;
            }
        }
    }
}
