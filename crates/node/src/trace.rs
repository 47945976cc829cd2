//! The trace writer: events from SMTP sessions and delivery go through a bounded channel to one
//! task that writes them to the store in batches. Sessions never wait on the database; when the
//! channel is full, events are dropped and counted (mail flow matters more than its diary).
//! While the store cannot be written (the cluster's database away), events wait in a bounded
//! buffer and are written when it is back; past the bound the oldest go, counted and logged.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use relayward_store::{Store, TraceEvent};
use tokio::sync::mpsc;

const CHANNEL: usize = 100_000;
const BATCH: usize = 2_000;
/// Events kept while the store cannot be written (about 100 MB at worst).
const WAITING: usize = 200_000;
const RETRY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct TraceSink {
    tx: mpsc::Sender<TraceEvent>,
    /// Events dropped: the channel full, or the buffer full while the store was away.
    pub dropped: Arc<AtomicU64>,
    /// Events waiting for the store to come back.
    pub waiting: Arc<AtomicU64>,
}

impl TraceSink {
    /// Starts the writer; it ends (after writing what it has) when every sink is dropped.
    pub fn start(store: Arc<dyn Store>) -> (TraceSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<TraceEvent>(CHANNEL);
        let dropped: Arc<AtomicU64> = Arc::default();
        let lost = dropped.clone();
        let waiting_now: Arc<AtomicU64> = Arc::default();
        let gauge = waiting_now.clone();
        let handle = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut waiting = Waiting::default();
            loop {
                // With events waiting for the store, try again each second even when no new
                // ones come.
                let got = if waiting.events == 0 {
                    rx.recv_many(&mut batch, BATCH).await
                } else {
                    match tokio::time::timeout(RETRY, rx.recv_many(&mut batch, BATCH)).await {
                        Ok(n) => n,
                        Err(_) => usize::MAX,
                    }
                };
                if got == 0 {
                    break;
                }
                // Let a burst gather so one transaction carries many events.
                if got != usize::MAX && batch.len() < BATCH {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    while batch.len() < BATCH {
                        match rx.try_recv() {
                            Ok(e) => batch.push(e),
                            Err(_) => break,
                        }
                    }
                }
                waiting.push(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                waiting.write(store.as_ref(), &lost).await;
                gauge.store(waiting.events as u64, Ordering::Relaxed);
            }
            // The last sink went: one more try for what waits.
            waiting.write(store.as_ref(), &lost).await;
        });
        (
            TraceSink {
                tx,
                dropped,
                waiting: waiting_now,
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

/// Batches waiting for the store, oldest first, and how many events they hold.
#[derive(Default)]
struct Waiting {
    batches: VecDeque<Arc<[TraceEvent]>>,
    events: usize,
}

impl Waiting {
    fn push(&mut self, batch: Vec<TraceEvent>) {
        if !batch.is_empty() {
            self.events += batch.len();
            self.batches.push_back(batch.into());
        }
    }

    /// Writes what waits, oldest batch first; stops at the first failure (what failed stays
    /// for the next try) and drops the oldest batches past the bound.
    async fn write(&mut self, store: &dyn Store, dropped: &AtomicU64) {
        while let Some(batch) = self.batches.front() {
            match store.record_trace(batch.clone()).await {
                Ok(()) => {
                    self.events -= batch.len();
                    self.batches.pop_front();
                }
                Err(e) => {
                    let mut gone = 0;
                    while self.events > WAITING
                        && let Some(old) = self.batches.pop_front()
                    {
                        self.events -= old.len();
                        gone += old.len();
                    }
                    if gone > 0 {
                        dropped.fetch_add(gone as u64, Ordering::Relaxed);
                        tracing::error!(error = %e, dropped = gone, waiting = self.events, "cannot write trace events; the oldest are dropped past the buffer's bound");
                    } else {
                        tracing::warn!(error = %e, waiting = self.events, "cannot write trace events; they wait for the store");
                    }
                    return;
                }
            }
        }
    }
}

impl relayward_delivery::Events for TraceSink {
    fn event(&self, event: TraceEvent) {
        self.send(event);
    }
}
