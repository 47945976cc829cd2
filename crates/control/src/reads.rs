//! What the consoles, the API and the command line list: read-only views of the store, with
//! no rule to apply and nothing to audit. Callers read through here, never from the store.

use crate::Result;
use relayward_store::{
    Account, AlertRow, ApiToken, AuditEntry, DirectoryData, Tenant, TenantData, TraceMessage,
    TraceQuery, Webhook, WebhookDelivery,
};

use crate::Control;

impl Control {
    /// Every tenant with its domains, connectors, users and routes.
    pub async fn directory(&self) -> Result<DirectoryData> {
        Ok(self.store.directory().await?)
    }

    pub async fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        Ok(self.store.tenant(name).await?)
    }

    /// Tenants in name order after `after`, at most `limit`.
    pub async fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>> {
        Ok(self.store.tenants(after, limit).await?)
    }

    /// One tenant with everything of it.
    /// Tenants whose subscription has ended, by name (paging).
    pub async fn lapsed_tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>> {
        let today = relayward_clock::civil_date(relayward_clock::now_secs());
        Ok(self.store.lapsed_tenants(&today, after, limit).await?)
    }

    /// Tenants with a counter at or past the early-warning share of its threshold (80% by
    /// default), from the counters the relay last saved: (tenant, counter, value, threshold),
    /// the nearest first.
    pub async fn near_threshold(&self) -> Result<Vec<(String, String, u64, u64)>> {
        let now = relayward_clock::now_ms();
        let overrides = self.store.tenant_limits().await?;
        let mut out = Vec::new();
        for (tenant, c) in crate::saved_counters::combined(self.store.counters(None).await?) {
            let limits = match (
                self.tenant_limits.get(&tenant),
                overrides.iter().find(|(t, _)| *t == tenant),
            ) {
                (Some(l), _) => l.clone(),
                (None, Some((_, json))) => {
                    relayward_config::limits_from_overrides(&self.defaults, json)
                        .unwrap_or_else(|_| self.defaults.clone())
                }
                (None, None) => self.defaults.clone(),
            };
            for v in relayward_guard::view(Some(&c), &limits, now) {
                let Some(t) = v.threshold.filter(|t| *t > 0) else {
                    continue;
                };
                if v.subject == "tenant" && v.value as f64 >= t as f64 * limits.early_warning_ratio
                {
                    out.push((tenant.clone(), v.counter.clone(), v.value, t));
                }
            }
        }
        out.sort_by(|a, b| (b.2 as f64 / b.3 as f64).total_cmp(&(a.2 as f64 / a.3 as f64)));
        Ok(out)
    }

    pub async fn tenant_data(&self, name: &str) -> Result<Option<TenantData>> {
        Ok(self.store.tenant_data(name).await?)
    }

    pub async fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>> {
        Ok(self.store.accounts(tenant).await?)
    }

    /// API tokens, never their secrets.
    pub async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<ApiToken>> {
        Ok(self.store.tokens(tenant).await?)
    }

    /// Alerts, newest first.
    pub async fn alerts(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AlertRow>> {
        Ok(self.store.alerts(tenant, limit).await?)
    }

    /// The audit log, newest first.
    pub async fn audit_log(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        Ok(self.store.audit_log(tenant, limit).await?)
    }

    /// The message trace.
    pub async fn search_trace(&self, query: &TraceQuery) -> Result<Vec<TraceMessage>> {
        // An address typed as it is shown (`"a b"@contoso.example`) finds it as it is held.
        let unquoted = |a: &Option<String>| {
            a.as_deref()
                .map(|a| relayward_spool::unquoted_address(a).into_owned())
        };
        let query = TraceQuery {
            sender: unquoted(&query.sender),
            recipient: unquoted(&query.recipient),
            ..query.clone()
        };
        Ok(self.store.search_trace(&query).await?)
    }

    /// Webhooks of one tenant, or of all.
    pub async fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<Webhook>> {
        Ok(self.store.webhooks(tenant).await?)
    }

    /// A webhook's deliveries, newest first (the caller has checked the webhook is the
    /// tenant's).
    pub async fn webhook_deliveries(
        &self,
        webhook: &str,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        Ok(self.store.webhook_deliveries(webhook, limit).await?)
    }
}

/// A directory of one tenant's objects: it answers the same questions about that tenant as the
/// whole one (accepted domains, users), without loading every tenant.
pub(crate) fn one_tenant_directory(
    data: &relayward_store::TenantData,
) -> relayward_tenancy::Directory {
    relayward_tenancy::Directory::build(relayward_store::DirectoryData {
        tenants: data.tenant.clone().into_iter().collect(),
        domains: data.domains.clone(),
        connectors: data.connectors.clone(),
        users: data.users.clone(),
        routes: data.routes.clone(),
    })
}
