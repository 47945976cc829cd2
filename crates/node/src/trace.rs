//! The trace writer: events from SMTP sessions and delivery go through a bounded channel to one
//! task that writes them to the store in batches. Sessions never wait on the database; when the
//! channel is full, events are dropped and counted (mail flow matters more than its diary).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relayward_store::{Store, TraceEvent};
use tokio::sync::mpsc;

const CHANNEL: usize = 100_000;
const BATCH: usize = 2_000;

#[derive(Clone)]
pub struct TraceSink {
    tx: mpsc::Sender<TraceEvent>,
    pub dropped: Arc<AtomicU64>,
}

impl TraceSink {
    /// Starts the writer; it ends (after writing what it has) when every sink is dropped.
    pub fn start(store: Arc<dyn Store>) -> (TraceSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<TraceEvent>(CHANNEL);
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                // Let a burst gather so one transaction carries many events.
                if batch.len() < BATCH {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                }
                let events = std::mem::take(&mut batch);
                let n = events.len();
                if let Err(e) = store.record_trace(events).await {
                    tracing::error!(error = %e, events = n, "cannot write trace events");
                }
            }
        });
        (
            TraceSink {
                tx,
                dropped: Arc::default(),
            },
            handle,
        )
    }

    pub fn send(&self, event: TraceEvent) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl relayward_delivery::Events for TraceSink {
    fn event(&self, event: TraceEvent) {
        self.send(event);
    }
}
