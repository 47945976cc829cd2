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
        Ok(self.store.search_trace(query).await?)
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
