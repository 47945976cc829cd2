//! The guard counters the relay saved, read back for views: one node's rows, or in a cluster
//! every node's, summed per tenant.

use relayward_guard::TenantCounters;

/// Saved counter rows as one set of counters per tenant: the nodes' rows of a tenant summed
/// (the first node's as its own, the rest beside it). Unreadable rows are left out.
pub fn combined(rows: Vec<relayward_store::CounterRow>) -> Vec<(String, TenantCounters)> {
    let mut by_tenant: std::collections::BTreeMap<String, Vec<TenantCounters>> =
        std::collections::BTreeMap::new();
    for r in rows {
        if let Ok(c) = serde_json::from_str::<TenantCounters>(&r.body) {
            by_tenant.entry(r.tenant).or_default().push(c);
        }
    }
    by_tenant
        .into_iter()
        .filter_map(|(tenant, mut nodes)| {
            let rest = nodes.split_off(1.min(nodes.len()));
            let mut first = nodes.pop()?;
            if !rest.is_empty() {
                first.set_others(&rest.iter().collect::<Vec<_>>());
            }
            Some((tenant, first))
        })
        .collect()
}
