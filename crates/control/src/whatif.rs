//! What-if: a tenant's last 30 days of traced mail replayed through the guard engine with
//! proposed limits, before an operator saves them.
//!
//! The replay judges each message as the relay would today: the sender domain counts as
//! registered when it is an accepted, verified domain of the tenant now, and the sender is the
//! tenant's user when its address is one now. Recipient limits checked at RCPT TO (per user per
//! day and hour) are not replayed; everything counted at MAIL FROM and at the end of DATA is.

use relayward_clock::now_ms;
use relayward_guard::Limits;
use relayward_guard::replay::{Outcome, Replayed, replay};

use crate::{Control, DAY, Invalid, NotFound, Result};

/// Messages a replay reads at most (memory and time stay bounded on the busiest tenant).
pub const REPLAY_LIMIT: usize = 200_000;

pub struct WhatIf {
    pub limits: Limits,
    pub outcome: Outcome,
    /// The first day replayed (Unix ms).
    pub since: i64,
    /// More than `REPLAY_LIMIT` messages: only the oldest were replayed.
    pub truncated: bool,
}

impl Control {
    /// Replays the tenant's last 30 days under the service-wide defaults with `overrides` (a
    /// JSON object of `[limits]` keys, as `set_limits` takes) applied. Changes nothing.
    pub async fn what_if(&self, tenant: &str, overrides: &serde_json::Value) -> Result<WhatIf> {
        let Some(data) = self.store.tenant_data(tenant).await? else {
            return Err(NotFound(format!("no tenant {tenant}")));
        };
        let limits =
            relayward_config::limits_from_overrides(&self.defaults, &overrides.to_string())
                .map_err(|e| Invalid(format!("{e:#}")))?;
        let since = (now_ms() / DAY - 29) * DAY;
        let mut rows = self
            .store
            .replay_trace(tenant, since, REPLAY_LIMIT + 1)
            .await?;
        let truncated = rows.len() > REPLAY_LIMIT;
        rows.truncate(REPLAY_LIMIT);
        let dir = crate::reads::one_tenant_directory(&data);
        let key = dir.tenant_key(tenant);
        let messages: Vec<Replayed> = rows
            .into_iter()
            .map(|r| {
                // As the guard counts it: lower case, a Unicode name as its A-labels.
                let domain = relayward_tenancy::domain_of(&r.sender);
                let (connector, user) = if let Some(rest) = r.origin.strip_prefix("connector:") {
                    (
                        Some(rest.split(" (").next().unwrap_or(rest).to_string()),
                        None,
                    )
                } else if let Some(u) = r.origin.strip_prefix("user:") {
                    (None, Some(u.to_string()))
                } else {
                    (None, None)
                };
                let user = user.or_else(|| {
                    key.and_then(|k| dir.user_of(k, &r.sender))
                        .map(str::to_string)
                });
                let external = r
                    .recipients
                    .iter()
                    .filter(|a| {
                        let d = a.rsplit_once('@').map_or("", |(_, d)| d);
                        !dir.is_accepted_by(tenant, d)
                    })
                    .count();
                Replayed {
                    at: r.at,
                    registered: !domain.is_empty() && dir.is_accepted_by(tenant, &domain),
                    sender_domain: domain,
                    id: r.message_id,
                    connector,
                    user,
                    client_ip: r.client_ip,
                    recipients: u32::try_from(r.recipients.len()).unwrap_or(u32::MAX),
                    external: u32::try_from(external).unwrap_or(u32::MAX),
                    suspicious: r.suspicious,
                }
            })
            .collect();
        // The engine is pure and CPU-bound: off the async workers.
        let t = tenant.to_string();
        let l = limits.clone();
        let outcome = tokio::task::spawn_blocking(move || replay(&l, &t, &messages))
            .await
            .map_err(|e| crate::Internal(format!("the replay stopped: {e}")))?;
        Ok(WhatIf {
            limits,
            outcome,
            since,
            truncated,
        })
    }
}
