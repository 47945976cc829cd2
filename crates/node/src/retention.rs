//! Retention (SPEC section 11): message trace rows older than `storage.trace_retention`, and
//! audit entries, alerts and finished webhook deliveries older than `storage.audit_retention`,
//! are deleted as the relay runs, in small batches with pauses between them so mail never
//! waits on the database for long.

use std::sync::Arc;
use std::time::Duration;

use relayward_store::Store;

use relayward_clock::now_ms;

/// Rows of each kind per batch.
const BATCH: usize = 500;

/// Runs until the process ends.
pub async fn run(store: Arc<dyn Store>, trace: Duration, audit: Duration) {
    // Look often enough for short retentions (tests), at most once a minute.
    let every = trace
        .min(audit)
        .div_f64(4.0)
        .clamp(Duration::from_millis(250), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let now = now_ms();
        let trace_before = now - trace.as_millis() as i64;
        let audit_before = now - audit.as_millis() as i64;
        let mut total = relayward_store::Pruned::default();
        loop {
            match store.prune(trace_before, audit_before, BATCH).await {
                Ok(p) => {
                    total.trace_messages += p.trace_messages;
                    total.audit += p.audit;
                    total.alerts += p.alerts;
                    total.webhook_deliveries += p.webhook_deliveries;
                    let full = [p.trace_messages, p.audit, p.alerts, p.webhook_deliveries]
                        .contains(&BATCH);
                    if !full {
                        break;
                    }
                    // Let the trace writer and the API have the database between batches.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune old trace and audit rows; trying again later");
                    break;
                }
            }
        }
        if total.total() > 0 {
            tracing::info!(
                trace_messages = total.trace_messages,
                audit = total.audit,
                alerts = total.alerts,
                webhook_deliveries = total.webhook_deliveries,
                "pruned rows past their retention"
            );
        }
    }
}
