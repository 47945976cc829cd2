//! Cluster mode: operators' actions on a selection of the queue, made on any node, done to
//! every node's own queue. The node asked does the action and stores it as an order
//! (`Control::queue_action_selected`, `queue_flush`); here each node takes the orders the
//! others stored, at once when the change feed says `queue`, else within a second, and does
//! them to its own queue (`Control::apply_queue_order`), audited there.
//!
//! Orders made before this node started are not done: the queue it holds now came after them,
//! or was adopted from another node.
//!
//! The same task answers the looks at the queue (a listing, the shape) other nodes were asked
//! for, from this node's queue (`Control::answer_queue_read`), and notes this node as running
//! every few seconds (`Store::nodes_seen`), so that a node asked knows whose answers to await.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relayward_control::Control;
use relayward_control::queue_reads::ALIVE_MS;
use relayward_delivery::Queue;
use relayward_store::Store;

/// Orders taken in one read; more are read at once after.
const BATCH: usize = 100;

pub async fn run(store: Arc<dyn Store>, control: Arc<Control>, queue: Queue, node: String) {
    let (seen, seen_reads) = loop {
        match tokio::try_join!(store.last_queue_order(), store.last_queue_read()) {
            Ok(ids) => break ids,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the cluster's queue orders yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    tokio::join!(
        note_running(&*store, &node),
        take_orders(&*store, &control, &queue, &node, seen, seen_reads)
    );
}

/// The cluster's nodes as this node last read them (`/metrics`): running (noted in the last
/// 10 seconds, this one included), and seen in the last day but not since (stopped, or cut off
/// from the database: the mail a stopped node acknowledged waits in its spool).
pub static NODES_RUNNING: AtomicU64 = AtomicU64::new(0);
pub static NODES_NOT_SEEN: AtomicU64 = AtomicU64::new(0);

/// Notes this node as running every `NOTE_EVERY`, beside the orders (a long one, a bounce of a
/// whole queue, does not make the node look stopped), and counts the nodes seen.
async fn note_running(store: &dyn Store, node: &str) {
    let mut every = tokio::time::interval(NOTE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match store.nodes_seen(node, relayward_clock::now_ms()).await {
            Ok(seen) => {
                let running = seen.iter().filter(|(_, ago)| *ago <= ALIVE_MS).count();
                NODES_RUNNING.store(running as u64, Ordering::Relaxed);
                NODES_NOT_SEEN.store((seen.len() - running) as u64, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot note this node as running now");
            }
        }
    }
}

async fn take_orders(
    store: &dyn Store,
    control: &Control,
    queue: &Queue,
    node: &str,
    mut seen: i64,
    mut seen_reads: i64,
) {
    let mut wait =
        crate::changes::ChangeWait::new(store.change_feed(), "queue", Duration::from_secs(1));
    loop {
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
                    control.apply_queue_order(queue, &order).await;
                }
            }
            if !full {
                break;
            }
        }
        answer_reads(store, control, queue, node, &mut seen_reads).await;
        wait.next().await;
    }
}

/// How often this node notes itself as running.
const NOTE_EVERY: Duration = Duration::from_secs(2);

/// Answers the looks at the queue other nodes were asked for since read `seen`.
async fn answer_reads(
    store: &dyn Store,
    control: &Control,
    queue: &Queue,
    node: &str,
    seen: &mut i64,
) {
    loop {
        let reads = match store.queue_reads_after(*seen, BATCH).await {
            Ok(reads) => reads,
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the cluster's looks at the queue now");
                return;
            }
        };
        let full = reads.len() == BATCH;
        let stale = relayward_clock::now_ms() - STALE_MS;
        for read in reads {
            *seen = read.id;
            if read.node != node && read.at >= stale {
                control.answer_queue_read(queue, node, &read).await;
            }
        }
        if !full {
            return;
        }
    }
}

/// A look asked longer ago than this is not answered: its asker has long stopped waiting
/// (seconds), and the margin covers clocks a little apart.
const STALE_MS: i64 = 60_000;
