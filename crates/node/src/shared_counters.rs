//! Cluster mode's counters (the guard's, and the scanner's bulk fingerprints at the end). Each node counts in memory and saves its own counts of the
//! tenants whose counts changed (about twice a second, the guard task's beat); about once a
//! second it reads what the other nodes saved since it last looked and puts their counts beside
//! its own (`TenantCounters::set_others`), so every limit reads a tenant's traffic on all nodes.
//! A node's view of the others is at most about two seconds old. Saves replace a node's row,
//! so a save repeated after the database was away counts nothing twice.

use std::collections::HashMap;

use relayward_guard::TenantCounters;
use relayward_store::CounterRow;

/// How far back each read looks beyond the newest row already seen: a save's time is taken
/// before it commits, so a row can appear with a time a little older than one read before.
const OVERLAP_MS: i64 = 5_000;

/// The other nodes' latest counts, by tenant and node.
#[derive(Default)]
pub struct Others {
    by_tenant: HashMap<String, HashMap<String, (i64, TenantCounters)>>,
    /// The newest save seen (the store's clock).
    newest: i64,
}

impl Others {
    /// Where the next read starts.
    pub fn since(&self) -> i64 {
        (self.newest - OVERLAP_MS).max(0)
    }

    /// Takes rows read from the store, leaving out this node's own (`me`); returns the tenants
    /// whose other-node counts changed.
    pub fn take(&mut self, rows: Vec<CounterRow>, me: &str) -> Vec<String> {
        let mut changed = Vec::new();
        for row in rows {
            self.newest = self.newest.max(row.updated_at);
            if row.node == me {
                continue;
            }
            let held = self
                .by_tenant
                .get(&row.tenant)
                .and_then(|nodes| nodes.get(&row.node));
            if held.is_some_and(|(at, _)| *at >= row.updated_at) {
                continue;
            }
            let Ok(counters) = serde_json::from_str::<TenantCounters>(&row.body) else {
                tracing::warn!(node = %row.node, tenant = %row.tenant, "unreadable counters saved by another node; left out");
                continue;
            };
            self.by_tenant
                .entry(row.tenant.clone())
                .or_default()
                .insert(row.node, (row.updated_at, counters));
            if !changed.contains(&row.tenant) {
                changed.push(row.tenant);
            }
        }
        changed
    }

    /// The other nodes' counts of one tenant.
    pub fn of(&self, tenant: &str) -> Vec<&TenantCounters> {
        self.by_tenant
            .get(tenant)
            .map(|nodes| nodes.values().map(|(_, c)| c).collect())
            .unwrap_or_default()
    }
}

/// Cluster mode: about once a second, saves the bulk fingerprint bands whose count changed
/// here and takes the ones the other nodes saved, so content sent to many recipients through
/// several nodes is bulk at the same count as through one. Bands not saved (the database
/// away) are saved with the next ones.
pub async fn share_bulk(
    scanner: std::sync::Arc<relayward_scan::Scanner>,
    store: std::sync::Arc<dyn relayward_store::Store>,
    node: String,
) {
    let mut unsaved: HashMap<u64, (i64, u32)> = HashMap::new();
    let mut newest = 0i64;
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        for (band, first, n) in scanner.take_bulk_changes() {
            unsaved.insert(band, (first, n));
        }
        if !unsaved.is_empty() {
            let rows: Vec<(i64, i64, i64)> = unsaved
                .iter()
                .map(|(band, (first, n))| (*band as i64, *first, i64::from(*n)))
                .collect();
            match store
                .save_bulk_bands(&node, rows, relayward_clock::now_ms())
                .await
            {
                Ok(()) => unsaved.clear(),
                Err(e) => {
                    tracing::warn!(error = %e, bands = unsaved.len(), "cannot save bulk fingerprint counts; kept for the next save")
                }
            }
        }
        match store.bulk_bands_since((newest - OVERLAP_MS).max(0)).await {
            Ok(rows) => {
                newest = rows.iter().map(|r| r.updated_at).fold(newest, i64::max);
                scanner.add_bulk_from(
                    rows.iter().filter(|r| r.node != node).map(|r| {
                        (
                            r.node.as_str(),
                            (
                                r.band as u64,
                                r.first,
                                u32::try_from(r.recipients.max(0)).unwrap_or(u32::MAX),
                            ),
                        )
                    }),
                    relayward_clock::now_ms(),
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the other nodes' bulk fingerprint counts")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use relayward_guard::{CounterStore, Counts};

    fn row(node: &str, at: i64, messages: u32) -> CounterRow {
        let mut c = TenantCounters::default();
        c.tenant.day.add(
            at,
            &Counts {
                messages,
                ..Counts::default()
            },
        );
        CounterRow {
            node: node.into(),
            tenant: "contoso".into(),
            body: serde_json::to_string(&c).expect("json"),
            updated_at: at,
        }
    }

    #[test]
    fn a_tenant_reads_its_traffic_on_every_node_and_a_repeated_row_counts_once() {
        let mut others = Others::default();
        let changed = others.take(
            vec![
                row("a", 1_000, 3),
                row("b", 1_000, 4),
                row("me", 1_000, 100),
            ],
            "me",
        );
        assert_eq!(changed, ["contoso"]);
        // Read again (the overlap): nothing changes, nothing is added twice.
        assert!(others.take(vec![row("a", 1_000, 3)], "me").is_empty());
        assert_eq!(others.since(), 0);
        let mut mine = relayward_guard::MemoryCounters::default();
        let local = mine.tenant_mut("contoso");
        local.tenant.day.add(
            1_000,
            &Counts {
                messages: 2,
                ..Counts::default()
            },
        );
        local.set_others(&others.of("contoso"));
        assert_eq!(local.tenant.day.total(1_000).messages, 2 + 3 + 4);
        // Node a's newer save replaces its older one.
        assert_eq!(others.take(vec![row("a", 2_000, 5)], "me"), ["contoso"]);
        local.set_others(&others.of("contoso"));
        assert_eq!(local.tenant.day.total(2_000).messages, 2 + 5 + 4);
        // What this node saves is its own count only.
        let saved: TenantCounters =
            serde_json::from_str(&serde_json::to_string(&*local).expect("json")).expect("back");
        let mut saved = saved;
        assert_eq!(saved.tenant.day.total(2_000).messages, 2);
    }
}
