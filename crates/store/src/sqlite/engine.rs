// Over 800 lines: one Store implementation (a trait impl cannot span files), method for method beside the PostgreSQL one; its tests are the shared suite in tests/engines.rs.
//! `Store` on the embedded engine: each call runs its statements on the blocking pool, on the
//! one writing connection (`SqliteStore::with`), or for a long read on the reader
//! (`SqliteStore::read`; the whole directory on connections opened for it); what must change
//! together runs in one transaction.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, params};

use super::*;
use crate::trace_batch::Recipients;

#[async_trait]
impl Store for SqliteStore {
    async fn directory(&self) -> Result<DirectoryData> {
        // On connections of its own, opened for the load: a reload of a large directory (a
        // second and more) keeps neither the writer nor the searches on the reader waiting.
        let path = self.path.clone();
        let own = tokio::task::spawn_blocking(move || match open_reader(&path) {
            Ok(mut c) => Some(load_whole(&mut c, &path)),
            Err(e) => {
                tracing::debug!(error = %e, "the directory loads on the reader connection");
                None
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        match own {
            Some(loaded) => loaded,
            None => {
                let path = self.path.clone();
                self.read(move |c| load_whole(c, &path)).await
            }
        }
    }

    async fn tenant_data(&self, tenant: &str) -> Result<Option<TenantData>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let d = load(c, Some(&tenant))?;
            let Some(t) = d.tenants.into_iter().next() else {
                return Ok(None);
            };
            Ok(Some(TenantData {
                tenant: Some(t),
                domains: d.domains,
                connectors: d.connectors,
                users: d.users,
                routes: d.routes,
            }))
        })
        .await
    }

    async fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains FROM tenants WHERE name = ?1",
                [name],
                tenant_row,
            )
            .optional()?)
        })
        .await
    }

    async fn tenants(&self, after: Option<&str>, limit: usize) -> Result<Vec<Tenant>> {
        let after = after.unwrap_or("").to_string();
        self.with(move |c| {
            let mut s = c.prepare(
                "SELECT name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains FROM tenants WHERE name > ?1 ORDER BY name LIMIT ?2",
            )?;
            let rows = s.query_map(params![after, limit.min(10_000) as i64], tenant_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn lapsed_tenants(
        &self,
        today: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Tenant>> {
        let after = after.unwrap_or("").to_string();
        let today = today.to_string();
        self.with(move |c| {
            let mut s = c.prepare_cached(
                "SELECT name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains FROM tenants
                 WHERE subscription_ends IS NOT NULL AND subscription_ends < ?1 AND name > ?2 ORDER BY name LIMIT ?3",
            )?;
            let rows = s.query_map(params![today, after, limit.min(10_000) as i64], tenant_row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn directory_version(&self) -> Result<i64> {
        self.with(|c| version_of(c)).await
    }

    async fn add_tenant(&self, tenant: &Tenant) -> Result<()> {
        let t = tenant.clone();
        self.with(move |c| {
            insert_tenant(c, &t)?;
            bump(c)
        })
        .await
    }

    async fn add_domain(&self, domain: &Domain) -> Result<()> {
        let d = domain.clone();
        self.with(move |c| {
            check_unmanaged(c, &d.tenant)?;
            insert_domain(c, &d)?;
            bump(c)
        })
        .await
    }

    async fn add_connector(&self, connector: &Connector) -> Result<()> {
        let k = connector.clone();
        self.with(move |c| {
            check_unmanaged(c, &k.tenant)?;
            insert_connector(c, &k)?;
            bump(c)
        })
        .await
    }

    async fn add_user(&self, user: &User) -> Result<()> {
        let u = user.clone();
        self.with(move |c| {
            check_unmanaged(c, &u.tenant)?;
            insert_user(c, &u)?;
            bump(c)
        })
        .await
    }

    async fn add_route(&self, route: &Route) -> Result<()> {
        let r = route.clone();
        self.with(move |c| {
            check_unmanaged(c, &r.tenant)?;
            insert_route(c, &r)?;
            bump(c)
        })
        .await
    }

    async fn provision(&self, data: &TenantData) -> Result<()> {
        let data = data.clone();
        self.with(move |c| {
            let Some(t) = data.tenant.as_ref() else {
                return Err(StoreError::Invalid("provisioning needs a tenant".into()));
            };
            let tx = writing(c)?;
            let existing: Option<bool> = tx
                .query_row(
                    "SELECT managed_by_config FROM tenants WHERE name = ?1",
                    [&t.name],
                    |r| r.get(0),
                )
                .optional()?;
            if existing == Some(false) {
                return Err(StoreError::Exists {
                    what: "tenant (created through the CLI or API, not by configuration)",
                    name: t.name.clone(),
                });
            }
            // The tenant row stays (what hangs on it — tokens, webhooks, restrictions — must
            // survive a restart); its directory objects are replaced.
            if existing.is_some() {
                tx.execute(
                    "UPDATE tenants SET language = ?2, subscription_ends = ?3, admins = ?4, managed_by_config = 1, forwarding = ?5, forwarding_domains = ?6 WHERE name = ?1",
                    params![t.name, t.language, t.subscription_ends, json(&t.admins), t.forwarding.as_str(), json(&t.forwarding_domains)],
                )?;
                for table in ["domains", "connectors", "users", "routes"] {
                    tx.execute(&format!("DELETE FROM {table} WHERE tenant = ?1"), [&t.name])?;
                }
            } else {
                insert_tenant(&tx, t)?;
            }
            for d in &data.domains {
                insert_domain(&tx, d)?;
            }
            for k in &data.connectors {
                insert_connector(&tx, k)?;
            }
            for u in &data.users {
                insert_user(&tx, u)?;
            }
            for r in &data.routes {
                insert_route(&tx, r)?;
            }
            bump(&tx)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_tenant_limits(&self, tenant: &str, overrides: &str) -> Result<()> {
        let (tenant, overrides) = (tenant.to_string(), overrides.to_string());
        self.with(move |c| {
            check_unmanaged(c, &tenant)?;
            c.execute(
                "UPDATE tenants SET limits = ?2 WHERE name = ?1",
                params![tenant, overrides],
            )?;
            bump(c)
        })
        .await
    }

    async fn tenant_limits(&self) -> Result<Vec<(String, String)>> {
        self.with(|c| {
            let mut s = c.prepare("SELECT name, limits FROM tenants WHERE limits != '{}'")?;
            let rows = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_tenant(&self, t: &Tenant) -> Result<()> {
        let t = t.clone();
        self.with(move |c| {
            check_unmanaged(c, &t.name)?;
            c.execute(
                "UPDATE tenants SET language = ?2, subscription_ends = ?3, admins = ?4, forwarding = ?5, forwarding_domains = ?6 WHERE name = ?1",
                params![t.name, t.language, t.subscription_ends, json(&t.admins), t.forwarding.as_str(), json(&t.forwarding_domains)],
            )?;
            bump(c)
        })
        .await
    }

    async fn delete_connector(&self, tenant: &str, name: &str) -> Result<()> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with(move |c| {
            check_unmanaged(c, &tenant)?;
            let n = c.execute(
                "DELETE FROM connectors WHERE tenant = ?1 AND name = ?2",
                params![tenant, name],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "connector",
                    name: format!("{name} of {tenant}"),
                });
            }
            bump(c)
        })
        .await
    }

    async fn update_user(&self, u: &User) -> Result<()> {
        let u = u.clone();
        self.with(move |c| {
            check_unmanaged(c, &u.tenant)?;
            let n = c.execute(
                "UPDATE users SET aliases = ?3, password_hash = ?4, forward_to = ?5, forward_only = ?6 WHERE tenant = ?1 AND address = ?2",
                params![u.tenant, u.address.to_ascii_lowercase(), json(&u.aliases), u.password_hash, u.forward_to, u.forward_only],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "user",
                    name: u.address,
                });
            }
            bump(c)
        })
        .await
    }

    async fn delete_user(&self, tenant: &str, address: &str) -> Result<()> {
        let (tenant, address) = (tenant.to_string(), address.to_ascii_lowercase());
        self.with(move |c| {
            check_unmanaged(c, &tenant)?;
            let n = c.execute(
                "DELETE FROM users WHERE tenant = ?1 AND address = ?2",
                params![tenant, address],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "user",
                    name: address,
                });
            }
            bump(c)
        })
        .await
    }

    async fn set_forwarding(
        &self,
        tenant: &str,
        forwarding: Forwarding,
        domains: &[String],
    ) -> Result<()> {
        let (tenant, domains) = (tenant.to_string(), domains.to_vec());
        self.with(move |c| {
            check_unmanaged(c, &tenant)?;
            c.execute(
                "UPDATE tenants SET forwarding = ?2, forwarding_domains = ?3 WHERE name = ?1",
                params![tenant, forwarding.as_str(), json(&domains)],
            )?;
            bump(c)
        })
        .await
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        let name = crate::domain_key(name).into_owned();
        self.with(move |c| {
            c.query_row(
                &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE name = ?1"),
                [&name],
                domain_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound {
                what: "domain",
                name,
            })
        })
        .await
    }

    async fn related_domains(&self, name: &str) -> Result<Vec<Domain>> {
        let name = crate::domain_key(name).into_owned();
        self.with(move |c| {
            let mut out = Vec::new();
            let mut one = c.prepare_cached(&format!(
                "SELECT {DOMAIN_COLUMNS} FROM domains WHERE name = ?1"
            ))?;
            let mut at = Some(name.as_str());
            while let Some(n) = at {
                if let Some(d) = one.query_row([n], domain_row).optional()? {
                    out.push(d);
                }
                at = n
                    .split_once('.')
                    .map(|(_, rest)| rest)
                    .filter(|r| r.contains('.'));
            }
            // Below it: the names whose reversed spelling starts with ours and a dot, one
            // range of the `reversed` index ('/' is the character after '.').
            let mut below = c.prepare_cached(&format!(
                "SELECT {DOMAIN_COLUMNS} FROM domains WHERE reversed > ?1 AND reversed < ?2"
            ))?;
            let rev = reversed(&name);
            let rows = below.query_map([format!("{rev}."), format!("{rev}/")], domain_row)?;
            for d in rows {
                out.push(d?);
            }
            Ok(out)
        })
        .await
    }

    async fn all_connectors(&self) -> Result<Vec<Connector>> {
        self.with(|c| connectors_of(c, None)).await
    }

    async fn connectors_touching(&self, spans: &[Span]) -> Result<Vec<Connector>> {
        let spans = spans.to_vec();
        self.with(move |c| {
            const SELECT: &str = "SELECT c.tenant, c.name, c.ips, c.cert_name, c.require_tls, c.relay_unregistered, c.created_by, c.created_at, c.reviewed FROM connector_ranges r JOIN connectors c ON c.tenant = r.tenant AND c.name = r.connector";
            let mut inside =
                c.prepare_cached(&format!("{SELECT} WHERE r.lo BETWEEN ?1 AND ?2"))?;
            let mut around =
                c.prepare_cached(&format!("{SELECT} WHERE r.lo = ?1 AND r.hi >= ?2"))?;
            let mut out: Vec<Connector> = Vec::new();
            for s in &spans {
                let hi = s.hi();
                for k in inside.query_map([s.lo(), hi.clone()], connector_row)? {
                    out.push(k?);
                }
                for start in s.enclosing_starts() {
                    for k in around.query_map([start, hi.clone()], connector_row)? {
                        out.push(k?);
                    }
                }
            }
            out.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
            out.dedup_by(|a, b| a.tenant == b.tenant && a.name == b.name);
            Ok(out)
        })
        .await
    }

    async fn set_domain_verified(&self, tenant: &str, name: &str, verified: bool) -> Result<()> {
        let (tenant, name) = (tenant.to_string(), name.to_ascii_lowercase());
        self.with(move |c| {
            let n = c.execute(
                "UPDATE domains SET verified = ?3 WHERE tenant = ?1 AND name = ?2",
                params![tenant, name, verified],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "domain",
                    name: format!("{name} of {tenant}"),
                });
            }
            bump(c)
        })
        .await
    }

    async fn set_connector_reviewed(&self, tenant: &str, name: &str, reviewed: bool) -> Result<()> {
        let (tenant, name) = (tenant.to_string(), name.to_string());
        self.with(move |c| {
            let n = c.execute(
                "UPDATE connectors SET reviewed = ?3 WHERE tenant = ?1 AND name = ?2",
                params![tenant, name, reviewed],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "connector",
                    name: format!("{name} of {tenant}"),
                });
            }
            bump(c)
        })
        .await
    }

    async fn save_restriction(&self, r: &RestrictionRow) -> Result<bool> {
        let r = r.clone();
        self.with(move |c| {
            let tx = writing(c)?;
            let known: Option<i64> = tx
                .query_row("SELECT 1 FROM restrictions WHERE id = ?1", [&r.id], |row| row.get(0))
                .optional()?;
            if known.is_none() && r.state != "lifted" {
                let open: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM restrictions WHERE tenant = ?1 AND kind = ?2 AND name = ?3 AND state <> 'lifted'",
                        params![r.tenant, r.kind, r.name],
                        |row| row.get(0),
                    )
                    .optional()?;
                if open.is_some() {
                    return Ok(false);
                }
            }
            tx.execute(
                "INSERT INTO restrictions (id, tenant, kind, name, state, started_at, updated_at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(id) DO UPDATE SET state = excluded.state,
                   updated_at = excluded.updated_at, body = excluded.body",
                params![r.id, r.tenant, r.kind, r.name, r.state, r.started_at, r.updated_at, r.body],
            )?;
            tx.execute(
                "UPDATE meta SET value = value + 1 WHERE key = 'restrictions_version'",
                [],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn restrictions(
        &self,
        tenant: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<RestrictionRow>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut st = c.prepare(&format!("SELECT id, tenant, kind, name, state, started_at, updated_at, body FROM restrictions
                 WHERE {which} AND (?2 = 0 OR state != 'lifted')
                 ORDER BY started_at DESC, id"))?;
            let rows = st
                .query_map(params![tenant, open_only], restriction_row)?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn restriction(&self, id: &str) -> Result<RestrictionRow> {
        let id = id.to_string();
        self.with(move |c| {
            c.query_row(
                "SELECT id, tenant, kind, name, state, started_at, updated_at, body FROM restrictions WHERE id = ?1",
                [&id],
                restriction_row,
            )
            .optional()?
            .ok_or(StoreError::NotFound { what: "restriction", name: id })
        })
        .await
    }

    async fn restrictions_version(&self) -> Result<i64> {
        self.with(|c| {
            Ok(c.query_row(
                "SELECT value FROM meta WHERE key = 'restrictions_version'",
                [],
                |r| r.get(0),
            )?)
        })
        .await
    }

    async fn add_alerts(&self, alerts: Vec<AlertRow>) -> Result<()> {
        self.with(move |c| {
            let tx = writing(c)?;
            for a in &alerts {
                tx.execute(
                    "INSERT INTO alerts (tenant, at, severity, kind, subject, text) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![a.tenant, a.at, a.severity, a.kind, a.subject, a.text],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, trace_before: i64, audit_before: i64, limit: usize) -> Result<Pruned> {
        let limit = limit.max(1) as i64;
        self.with(move |c| {
            let tx = writing(c)?;
            let ids: Vec<String> = {
                let mut st = tx.prepare_cached(
                    "SELECT message_id FROM trace_messages WHERE received_at < ?1 ORDER BY received_at LIMIT ?2",
                )?;
                st.query_map(params![trace_before, limit], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?
            };
            {
                let mut ev = tx.prepare_cached("DELETE FROM trace_events WHERE message_id = ?1")?;
                let mut rc =
                    tx.prepare_cached("DELETE FROM trace_recipients WHERE message_id = ?1")?;
                let mut m = tx.prepare_cached("DELETE FROM trace_messages WHERE message_id = ?1")?;
                for id in &ids {
                    ev.execute([id])?;
                    rc.execute([id])?;
                    m.execute([id])?;
                }
            }
            let audit = tx.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ?1 ORDER BY id LIMIT ?2)",
                params![audit_before, limit],
            )?;
            let alerts = tx.execute(
                "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE at < ?1 ORDER BY id LIMIT ?2)",
                params![audit_before, limit],
            )?;
            let webhook_deliveries = tx.execute(
                "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE created_at < ?1 AND state <> 'pending' ORDER BY id LIMIT ?2)",
                params![audit_before, limit],
            )?;
            tx.commit()?;
            Ok(Pruned {
                trace_messages: ids.len(),
                audit,
                alerts,
                webhook_deliveries,
            })
        })
        .await
    }

    async fn record_auth_lockout(&self, l: &AuthLockout) -> Result<()> {
        let l = l.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO auth_lockouts (account, tenant, at, until, failures, client) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (account) DO UPDATE SET tenant = ?2, at = ?3, until = ?4, failures = ?5, client = ?6",
                params![l.account, l.tenant, l.at, l.until, l.failures, l.client],
            )?;
            Ok(())
        })
        .await
    }

    async fn auth_lockouts(&self, tenant: &str, since: i64) -> Result<Vec<AuthLockout>> {
        let tenant = tenant.to_string();
        self.with(move |c| {
            let mut st = c.prepare(
                "SELECT account, tenant, at, until, failures, client FROM auth_lockouts
                 WHERE tenant = ?1 AND until >= ?2 ORDER BY at DESC LIMIT 1000",
            )?;
            let rows = st
                .query_map(params![tenant, since], |r| {
                    Ok(AuthLockout {
                        account: r.get(0)?,
                        tenant: r.get(1)?,
                        at: r.get(2)?,
                        until: r.get(3)?,
                        failures: r.get(4)?,
                        client: r.get(5)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn alerts(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AlertRow>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut st = c.prepare(&format!(
                "SELECT id, tenant, at, severity, kind, subject, text FROM alerts
                 WHERE {which} ORDER BY at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = st
                .query_map(params![tenant, limit as i64], |r| {
                    Ok(AlertRow {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        at: r.get(2)?,
                        severity: r.get(3)?,
                        kind: r.get(4)?,
                        subject: r.get(5)?,
                        text: r.get(6)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn save_bulk_bands(
        &self,
        node: &str,
        bands: Vec<(i64, i64, i64)>,
        now: i64,
    ) -> Result<()> {
        let node = node.to_string();
        self.with(move |c| {
            let tx = writing(c)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO bulk_bands (node, band, first, recipients, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (node, band) DO UPDATE SET first = excluded.first, recipients = excluded.recipients, updated_at = excluded.updated_at",
                )?;
                for (band, first, recipients) in &bands {
                    st.execute(params![node, band, first, recipients, now])?;
                }
                tx.execute("DELETE FROM bulk_bands WHERE first < ?1", [now - 86_400_000])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn bulk_bands_since(&self, since: i64) -> Result<Vec<BulkBandRow>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT node, band, first, recipients, updated_at FROM bulk_bands WHERE updated_at >= ?1",
            )?;
            let rows = st
                .query_map([since], |r| {
                    Ok(BulkBandRow {
                        node: r.get(0)?,
                        band: r.get(1)?,
                        first: r.get(2)?,
                        recipients: r.get(3)?,
                        updated_at: r.get(4)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn attempts_since(&self, key: &str, since: i64) -> Result<(usize, Option<i64>)> {
        let key = key.to_string();
        self.with(move |c| {
            let (n, oldest): (i64, Option<i64>) = c.query_row(
                "SELECT COUNT(*), MIN(at) FROM attempts WHERE key = ?1 AND at >= ?2",
                params![key, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok((usize::try_from(n).unwrap_or(0), oldest))
        })
        .await
    }

    async fn count_attempt(
        &self,
        key: &str,
        window_ms: i64,
        limit: usize,
        now: i64,
    ) -> Result<Option<i64>> {
        let key = key.to_string();
        self.with(move |c| {
            let tx = writing(c)?;
            let since = now - window_ms.min(crate::ATTEMPTS_KEPT_MS);
            tx.execute(
                "DELETE FROM attempts WHERE key = ?1 AND at <= ?2",
                params![key, since],
            )?;
            tx.execute(
                "DELETE FROM attempts WHERE at < ?1",
                [now - crate::ATTEMPTS_KEPT_MS],
            )?;
            let (n, oldest): (i64, Option<i64>) = tx.query_row(
                "SELECT COUNT(*), MIN(at) FROM attempts WHERE key = ?1",
                [&key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if n >= limit as i64 {
                return Ok(Some(oldest.unwrap_or(now)));
            }
            tx.execute(
                "INSERT INTO attempts (key, at) VALUES (?1, ?2)",
                params![key, now],
            )?;
            tx.commit()?;
            Ok(None)
        })
        .await
    }

    async fn save_counters(&self, node: &str, rows: Vec<(String, String)>, at: i64) -> Result<()> {
        let node = node.to_string();
        self.with(move |c| {
            let tx = writing(c)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO counters (node, tenant, body, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (node, tenant) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
                )?;
                for (tenant, body) in &rows {
                    st.execute(params![node, tenant, body, at])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn counters(&self, tenant: Option<&str>) -> Result<Vec<CounterRow>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut st = c.prepare(&format!("SELECT node, tenant, body, updated_at FROM counters WHERE {which} ORDER BY tenant, node"))?;
            let rows = st
                .query_map(params![tenant], counter_row)?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn mta_sts_policy(&self, domain: &str, now: i64) -> Result<Option<MtaStsRow>> {
        let domain = domain.to_string();
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT domain, id, policy, fetched_at, expires_at FROM mta_sts_policies
                 WHERE domain = ?1 AND expires_at > ?2",
            )?;
            let found = st
                .query_row(params![domain, now], |r| {
                    Ok(MtaStsRow {
                        domain: r.get(0)?,
                        id: r.get(1)?,
                        policy: r.get(2)?,
                        fetched_at: r.get(3)?,
                        expires_at: r.get(4)?,
                    })
                })
                .optional()?;
            Ok(found)
        })
        .await
    }

    async fn save_mta_sts_policy(&self, p: &MtaStsRow, now: i64) -> Result<()> {
        let p = p.clone();
        self.with(move |c| {
            let tx = writing(c)?;
            tx.execute(
                "INSERT INTO mta_sts_policies (domain, id, policy, fetched_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (domain) DO UPDATE SET id = excluded.id, policy = excluded.policy,
                     fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
                params![p.domain, p.id, p.policy, p.fetched_at, p.expires_at],
            )?;
            tx.execute("DELETE FROM mta_sts_policies WHERE expires_at <= ?1", [now])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn share_delayed(
        &self,
        node: &str,
        mine: Vec<(String, String)>,
        fresh_ms: i64,
        at: i64,
    ) -> Result<Vec<CounterRow>> {
        let node = node.to_string();
        self.with(move |c| {
            let tx = writing(c)?;
            tx.execute("DELETE FROM delayed WHERE node = ?1", [&node])?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO delayed (node, tenant, body, updated_at) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (tenant, body) in &mine {
                    st.execute(params![node, tenant, body, at])?;
                }
            }
            tx.execute(
                "DELETE FROM delayed WHERE updated_at < ?1",
                [at - 86_400_000],
            )?;
            let found = {
                let mut st = tx.prepare_cached(
                    "SELECT node, tenant, body, updated_at FROM delayed WHERE updated_at >= ?1",
                )?;
                st.query_map(params![at - fresh_ms], counter_row)?
                    .collect::<std::result::Result<Vec<_>, _>>()?
            };
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    async fn counters_since(&self, since: i64) -> Result<Vec<CounterRow>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT node, tenant, body, updated_at FROM counters WHERE updated_at >= ?1",
            )?;
            let rows = st
                .query_map(params![since], counter_row)?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_queue_order(&self, o: &QueueOrder) -> Result<i64> {
        let o = o.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "DELETE FROM queue_orders WHERE at < ?1",
                params![o.at - crate::QUEUE_ORDERS_KEPT_MS],
            )?;
            tx.execute(
                "INSERT INTO queue_orders (at, node, action, tenant, domain, sender, actor, role, client, message)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![o.at, o.node, o.action, o.tenant, o.domain, o.sender, o.actor, o.role, o.client, o.message],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn queue_orders_after(&self, after: i64, n: usize) -> Result<Vec<QueueOrder>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, at, node, action, tenant, domain, sender, actor, role, client, message
                 FROM queue_orders WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![after, i64::try_from(n).unwrap_or(i64::MAX)], |r| {
                    Ok(QueueOrder {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        node: r.get(2)?,
                        action: r.get(3)?,
                        tenant: r.get(4)?,
                        domain: r.get(5)?,
                        sender: r.get(6)?,
                        actor: r.get(7)?,
                        role: r.get(8)?,
                        client: r.get(9)?,
                        message: r.get(10)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn last_queue_order(&self) -> Result<i64> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT COALESCE(MAX(id), 0) FROM queue_orders", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn nodes_seen(&self, node: &str, now: i64) -> Result<Vec<(String, i64)>> {
        let node = node.to_string();
        self.with(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO cluster_nodes (name, seen_at) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at",
                params![node, now],
            )?;
            tx.execute(
                "DELETE FROM cluster_nodes WHERE seen_at < ?1",
                params![now - 86_400_000],
            )?;
            let seen = {
                let mut st = tx.prepare_cached(
                    "SELECT name, MAX(?1 - seen_at, 0) FROM cluster_nodes ORDER BY name",
                )?;
                st.query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<std::result::Result<Vec<(String, i64)>, _>>()?
            };
            tx.commit()?;
            Ok(seen)
        })
        .await
    }

    async fn cluster_nodes(&self, now: i64) -> Result<Vec<(String, i64)>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT name, MAX(?1 - seen_at, 0) FROM cluster_nodes
                 WHERE seen_at >= ?1 - 86400000 ORDER BY name",
            )?;
            let rows = st
                .query_map(params![now], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<Vec<(String, i64)>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn forget_node(&self, node: &str) -> Result<bool> {
        let node = node.to_string();
        self.with(move |c| {
            Ok(c.execute("DELETE FROM cluster_nodes WHERE name = ?1", params![node])? > 0)
        })
        .await
    }

    async fn add_queue_read(&self, q: &QueueRead) -> Result<i64> {
        let q = q.clone();
        self.with(move |c| {
            let tx = c.transaction()?;
            let before = q.at - crate::QUEUE_READS_KEPT_MS;
            tx.execute("DELETE FROM queue_reads WHERE at < ?1", params![before])?;
            tx.execute("DELETE FROM queue_answers WHERE at < ?1", params![before])?;
            tx.execute(
                "INSERT INTO queue_reads (at, node, kind, tenant, domain, sender, message, by_sender, max_rows)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![q.at, q.node, q.kind, q.tenant, q.domain, q.sender, q.message, q.by_sender, q.limit],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn queue_reads_after(&self, after: i64, n: usize) -> Result<Vec<QueueRead>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT id, at, node, kind, tenant, domain, sender, message, by_sender, max_rows
                 FROM queue_reads WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = st
                .query_map(params![after, i64::try_from(n).unwrap_or(i64::MAX)], |r| {
                    Ok(QueueRead {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        node: r.get(2)?,
                        kind: r.get(3)?,
                        tenant: r.get(4)?,
                        domain: r.get(5)?,
                        sender: r.get(6)?,
                        message: r.get(7)?,
                        by_sender: r.get(8)?,
                        limit: r.get(9)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn last_queue_read(&self) -> Result<i64> {
        self.with(|c| {
            Ok(
                c.query_row("SELECT COALESCE(MAX(id), 0) FROM queue_reads", [], |r| {
                    r.get(0)
                })?,
            )
        })
        .await
    }

    async fn answer_queue_read(&self, read: i64, node: &str, body: &str) -> Result<()> {
        let (node, body) = (node.to_string(), body.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT INTO queue_answers (read_id, node, at, body)
                 VALUES (?1, ?2, COALESCE((SELECT at FROM queue_reads WHERE id = ?1), 0), ?3)
                 ON CONFLICT (read_id, node) DO UPDATE SET at = excluded.at, body = excluded.body",
                params![read, node, body],
            )?;
            Ok(())
        })
        .await
    }

    async fn queue_read_answers(&self, read: i64) -> Result<Vec<(String, String)>> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT node, body FROM queue_answers WHERE read_id = ?1 ORDER BY node",
            )?;
            let rows = st
                .query_map(params![read], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn audit(&self, e: &AuditEntry) -> Result<()> {
        let e = e.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO audit (at, actor, role, tenant, action, client, mfa, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![e.at, e.actor, e.role, e.tenant, e.action, e.client, e.mfa, e.detail],
            )?;
            Ok(())
        })
        .await
    }

    async fn audit_log(&self, tenant: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut st = c.prepare(&format!(
                "SELECT at, actor, role, tenant, action, client, mfa, detail FROM audit
                 WHERE {which} ORDER BY at DESC, id DESC LIMIT ?2"
            ))?;
            let rows = st
                .query_map(params![tenant, limit as i64], |r| {
                    Ok(AuditEntry {
                        at: r.get(0)?,
                        actor: r.get(1)?,
                        role: r.get(2)?,
                        tenant: r.get(3)?,
                        action: r.get(4)?,
                        client: r.get(5)?,
                        mfa: r.get(6)?,
                        detail: r.get(7)?,
                    })
                })?
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn dismiss_domain(&self, tenant: &str, domain: &str, actor: &str, at: i64) -> Result<()> {
        let (t, d, a) = (
            tenant.to_string(),
            domain.to_ascii_lowercase(),
            actor.to_string(),
        );
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO dismissed_domains (tenant, domain, actor, at) VALUES (?1, ?2, ?3, ?4)",
                params![t, d, a, at],
            )?;
            Ok(())
        })
        .await
    }

    async fn dismissed_domains(&self, tenant: &str) -> Result<Vec<String>> {
        let t = tenant.to_string();
        self.with(move |c| {
            let mut st = c.prepare("SELECT domain FROM dismissed_domains WHERE tenant = ?1")?;
            let rows = st
                .query_map([t], |r| r.get(0))?
                .collect::<std::result::Result<Vec<String>, _>>()?;
            Ok(rows)
        })
        .await
    }

    async fn attest(&self, restriction_id: &str, actor: &str, at: i64) -> Result<()> {
        let (id, a) = (restriction_id.to_string(), actor.to_string());
        self.with(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO attestations (restriction_id, actor, at) VALUES (?1, ?2, ?3)",
                params![id, a, at],
            )?;
            Ok(())
        })
        .await
    }

    async fn attestation(&self, restriction_id: &str) -> Result<Option<(String, i64)>> {
        let id = restriction_id.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT actor, at FROM attestations WHERE restriction_id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
        })
        .await
    }

    async fn add_token(&self, t: &ApiToken) -> Result<()> {
        let t = t.clone();
        self.with(move |c| {
            if let Some(tenant) = &t.tenant {
                let known: Option<String> = c
                    .query_row("SELECT name FROM tenants WHERE name = ?1", [tenant], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if known.is_none() {
                    return Err(StoreError::NotFound {
                        what: "tenant",
                        name: tenant.clone(),
                    });
                }
            }
            c.execute(
                "INSERT INTO api_tokens (id, name, role, tenant, secret_hash, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![t.id, t.name, t.role, t.tenant, t.secret_hash, t.created_at, t.expires_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let id = id.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                token_row,
            )
            .optional()?)
        })
        .await
    }

    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<ApiToken>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut st = c.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE {which} ORDER BY created_at DESC, id"
            ))?;
            let rows = st.query_map([tenant], token_row)?;
            Ok(rows.collect::<std::result::Result<Vec<_>, _>>()?)
        })
        .await
    }

    async fn touch_token(&self, id: &str, at: i64) -> Result<()> {
        let id = id.to_string();
        self.with(move |c| {
            c.execute(
                "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                params![id, at],
            )?;
            Ok(())
        })
        .await
    }

    async fn revoke_token(&self, id: &str, at: i64) -> Result<()> {
        let id = id.to_string();
        self.with(move |c| {
            let n = c.execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                params![id, at],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "token",
                    name: id,
                });
            }
            Ok(())
        })
        .await
    }

    async fn dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>> {
        let domain = domain.map(|d| crate::domain_key(d).into_owned());
        self.with(move |c| {
            let which = one_or_all("domain", domain.is_some());
            let mut s = c.prepare(&format!("SELECT domain, selector, algorithm, private_key, public_key, created_at, state, state_since FROM dkim_keys WHERE {which} ORDER BY created_at, algorithm DESC"))?;
            let rows = s
                .query_map([domain], |r| {
                    Ok(DkimKey {
                        domain: r.get(0)?,
                        selector: r.get(1)?,
                        algorithm: r.get(2)?,
                        private_key: r.get(3)?,
                        public_key: r.get(4)?,
                        created_at: r.get(5)?,
                        state: DkimKeyState::parse(&r.get::<_, String>(6)?)
                            .unwrap_or(DkimKeyState::Retired),
                        state_since: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_dkim_keys(&self, keys: &[DkimKey]) -> Result<()> {
        let keys = keys.to_vec();
        self.with(move |c| {
            let tx = writing(c)?;
            for k in &keys {
                tx.execute(
                    "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, created_at, state, state_since) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![k.domain.to_ascii_lowercase(), k.selector, k.algorithm, k.private_key, k.public_key, k.created_at, k.state.as_str(), k.state_since],
                )
                .map_err(|e| unique(e, "DKIM selector", &k.selector))?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn set_dkim_states(
        &self,
        domain: &str,
        changes: &[(String, DkimKeyState)],
        at: i64,
    ) -> Result<()> {
        let domain = crate::domain_key(domain).into_owned();
        let changes = changes.to_vec();
        self.with(move |c| {
            let tx = writing(c)?;
            for (selector, state) in &changes {
                let n = tx.execute(
                    "UPDATE dkim_keys SET state = ?3, state_since = ?4 WHERE domain = ?1 AND selector = ?2",
                    params![domain, selector, state.as_str(), at],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound {
                        what: "DKIM selector",
                        name: format!("{selector} of {domain}"),
                    });
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn add_webhook(&self, webhook: &Webhook) -> Result<()> {
        let w = webhook.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO webhooks (id, tenant, url, secret, events, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![w.id, w.tenant, w.url, w.secret, json(&w.events), w.created_by, w.created_at],
            )
            .map_err(|e| unique(e, "webhook", &w.id))?;
            Ok(())
        })
        .await
    }

    async fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<Webhook>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut s = c.prepare(&format!("SELECT id, tenant, url, secret, events, created_by, created_at FROM webhooks WHERE {which} ORDER BY created_at, id"))?;
            let rows = s
                .query_map([tenant], |r| {
                    Ok(Webhook {
                        id: r.get(0)?,
                        tenant: r.get(1)?,
                        url: r.get(2)?,
                        secret: r.get(3)?,
                        events: from_json(r.get(4)?),
                        created_by: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delete_webhook(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.with(move |c| {
            let n = c.execute("DELETE FROM webhooks WHERE id = ?1", [&id])?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "webhook",
                    name: id,
                });
            }
            Ok(())
        })
        .await
    }

    async fn queue_webhook_event(
        &self,
        tenant: &str,
        event: &str,
        body: &str,
        at: i64,
    ) -> Result<usize> {
        let (tenant, event, body) = (tenant.to_string(), event.to_string(), body.to_string());
        self.with(move |c| {
            let tx = writing(c)?;
            let hooks: Vec<(String, String)> = {
                let mut s = tx.prepare("SELECT id, events FROM webhooks WHERE tenant = ?1")?;
                s.query_map([&tenant], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let mut n = 0;
            for (id, events) in hooks {
                let events: Vec<String> = from_json(events);
                if !events.contains(&event) {
                    continue;
                }
                tx.execute(
                    "INSERT INTO webhook_deliveries (webhook_id, event, body, state, next_attempt, created_at, updated_at) VALUES (?1, ?2, ?3, 'pending', ?4, ?4, ?4)",
                    params![id, event, body, at],
                )?;
                n += 1;
            }
            tx.commit()?;
            Ok(n)
        })
        .await
    }

    async fn add_webhook_delivery(&self, d: &WebhookDelivery) -> Result<()> {
        let d = d.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO webhook_deliveries (webhook_id, event, body, attempts, state, last_status, last_error, next_attempt, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![d.webhook_id, d.event, d.body, d.attempts, d.state, d.last_status, d.last_error, d.next_attempt, d.created_at, d.updated_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        self.with(move |c| {
            let mut s = c.prepare(&format!(
                "UPDATE webhook_deliveries SET next_attempt = ?3 WHERE id IN (
                   SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt <= ?1
                   ORDER BY next_attempt, id LIMIT ?2)
                 RETURNING {DELIVERY_COLUMNS}"
            ))?;
            let mut rows: Vec<WebhookDelivery> = s
                .query_map(
                    params![now, limit as i64, now.saturating_add(lease_ms)],
                    delivery_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            rows.sort_by_key(|d| d.id);
            Ok(rows)
        })
        .await
    }

    async fn update_webhook_delivery(&self, d: &WebhookDelivery) -> Result<()> {
        let d = d.clone();
        self.with(move |c| {
            c.execute(
                "UPDATE webhook_deliveries SET attempts = ?2, state = ?3, last_status = ?4, last_error = ?5, next_attempt = ?6, updated_at = ?7 WHERE id = ?1",
                params![d.id, d.attempts, d.state, d.last_status, d.last_error, d.next_attempt, d.updated_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn webhook_deliveries(
        &self,
        webhook_id: &str,
        limit: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        let id = webhook_id.to_string();
        self.with(move |c| {
            let mut s = c.prepare(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = ?1 ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = s
                .query_map(params![id, limit as i64], delivery_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn add_account(&self, account: &Account) -> Result<()> {
        let a = account.clone();
        self.with(move |c| {
            c.execute(
                &format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
                params![a.id, a.email.to_ascii_lowercase(), a.role, a.tenant, a.password_hash, a.totp_secret, json(&a.recovery_codes), a.setup_token_hash, a.setup_expires_at, a.failed_logins, a.locked_until, a.created_at, a.last_login_at, a.language],
            )
            .map_err(|e| unique(e, "account", &a.email))?;
            Ok(())
        })
        .await
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let id = id.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ?1"),
                [id],
                account_row,
            )
            .optional()?)
        })
        .await
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        let email = email.trim().to_ascii_lowercase();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = ?1"),
                [email],
                account_row,
            )
            .optional()?)
        })
        .await
    }

    async fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>> {
        let tenant = tenant.map(str::to_string);
        self.with(move |c| {
            let which = one_or_all("tenant", tenant.is_some());
            let mut s = c.prepare(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {which} ORDER BY email"
            ))?;
            let rows = s
                .query_map([tenant], account_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn update_account(&self, account: &Account) -> Result<()> {
        let a = account.clone();
        self.with(move |c| {
            let n = c.execute(
                "UPDATE accounts SET password_hash = ?2, totp_secret = ?3, recovery_codes = ?4, setup_token_hash = ?5, setup_expires_at = ?6, failed_logins = ?7, locked_until = ?8, last_login_at = ?9, language = ?10 WHERE id = ?1",
                params![a.id, a.password_hash, a.totp_secret, json(&a.recovery_codes), a.setup_token_hash, a.setup_expires_at, a.failed_logins, a.locked_until, a.last_login_at, a.language],
            )?;
            if n == 0 {
                return Err(StoreError::NotFound {
                    what: "account",
                    name: a.email,
                });
            }
            Ok(())
        })
        .await
    }

    async fn account_by_setup(&self, token_hash: &str) -> Result<Option<Account>> {
        let h = token_hash.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE setup_token_hash = ?1"),
                [h],
                account_row,
            )
            .optional()?)
        })
        .await
    }

    async fn add_session(&self, session: &Session) -> Result<()> {
        let s = session.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO sessions (id_hash, account_id, csrf, mfa, client, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![s.id_hash, s.account_id, s.csrf, s.mfa, s.client, s.created_at, s.expires_at],
            )?;
            // Expired sessions go as new ones come.
            c.execute("DELETE FROM sessions WHERE expires_at < ?1", [s.created_at])?;
            Ok(())
        })
        .await
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let h = id_hash.to_string();
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT id_hash, account_id, csrf, mfa, client, created_at, expires_at FROM sessions WHERE id_hash = ?1",
                [h],
                |r| {
                    Ok(Session {
                        id_hash: r.get(0)?,
                        account_id: r.get(1)?,
                        csrf: r.get(2)?,
                        mfa: r.get(3)?,
                        client: r.get(4)?,
                        created_at: r.get(5)?,
                        expires_at: r.get(6)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let h = id_hash.to_string();
        self.with(move |c| {
            c.execute("DELETE FROM sessions WHERE id_hash = ?1", [h])?;
            Ok(())
        })
        .await
    }

    async fn record_trace(&self, events: std::sync::Arc<[TraceEvent]>) -> Result<()> {
        self.with(move |c| {
            let tx = writing(c)?;
            {
                let mut msg = tx.prepare_cached(
                    "INSERT OR IGNORE INTO trace_messages (message_id, received_at, sender, tenant, origin, client_ip, size) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?;
                let mut rcpt = tx.prepare_cached(
                    "INSERT INTO trace_recipients (message_id, address, status) VALUES (?1, ?2, ?3)
                     ON CONFLICT (message_id, address) DO UPDATE SET status = excluded.status
                     WHERE status <> excluded.status",
                )?;
                let mut ev = tx.prepare_cached(
                    "INSERT INTO trace_events (message_id, at, kind, recipient, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in events.iter() {
                    if let Some(s) = &e.summary {
                        msg.execute(params![e.message_id, e.at, s.sender, s.tenant, s.origin, s.client_ip, s.size as i64])?;
                    }
                    ev.execute(params![e.message_id, e.at, e.kind.as_str(), e.recipient, e.detail])?;
                }
                // One upsert per recipient a batch, with the last status the batch gives it:
                // a message received, queued and delivered within one batch costs one row write.
                for (id, address, status) in &Recipients::of(&events).rows {
                    rcpt.execute(params![id, address, status])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn daily_traffic(&self, tenant: &str, since: i64) -> Result<Vec<DayTraffic>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT (m.received_at / 86400000) * 86400000 AS day, COUNT(*),
                        SUM((SELECT COUNT(*) FROM trace_recipients r WHERE r.message_id = m.message_id)),
                        SUM(EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = m.message_id
                                    AND e.kind = 'scanned'
                                    AND (e.detail LIKE 'verdict spam%' OR e.detail LIKE 'verdict bulk%')))
                 FROM trace_messages m WHERE m.tenant = ?1 AND m.received_at >= ?2
                 GROUP BY day ORDER BY day",
            )?;
            let rows = st.query_map(rusqlite::params![tenant, since], |r| {
                Ok(DayTraffic {
                    day_start: r.get(0)?,
                    messages: r.get::<_, i64>(1)?.max(0) as u64,
                    recipients: r.get::<_, Option<i64>>(2)?.unwrap_or(0).max(0) as u64,
                    suspicious: r.get::<_, Option<i64>>(3)?.unwrap_or(0).max(0) as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn replay_trace(&self, tenant: &str, since: i64, limit: usize) -> Result<Vec<ReplayRow>> {
        let tenant = tenant.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT m.received_at, m.message_id, m.sender, m.origin, m.client_ip,
                        (SELECT group_concat(r.address, ' ') FROM trace_recipients r WHERE r.message_id = m.message_id),
                        EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = m.message_id
                                AND e.kind = 'scanned'
                                AND (e.detail LIKE 'verdict spam%' OR e.detail LIKE 'verdict bulk%'))
                 FROM trace_messages m WHERE m.tenant = ?1 AND m.received_at >= ?2
                 ORDER BY m.received_at, m.message_id LIMIT ?3",
            )?;
            let rows = st.query_map(
                rusqlite::params![tenant, since, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    let rcpts: Option<String> = r.get(5)?;
                    Ok(ReplayRow {
                        at: r.get(0)?,
                        message_id: r.get(1)?,
                        sender: r.get(2)?,
                        origin: r.get(3)?,
                        client_ip: r.get(4)?,
                        recipients: rcpts
                            .unwrap_or_default()
                            .split(' ')
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect(),
                        suspicious: r.get(6)?,
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn search_trace(&self, query: &TraceQuery) -> Result<Vec<TraceMessage>> {
        let q = query.clone();
        self.read(move |c| {
            // Messages alone, newest first, with a recipient's address or status as a condition
            // on them rather than a join: over a join, every match was gathered and sorted
            // before the newest were taken (3.0 s for "Delivered" among two million messages).
            let mut sql = String::from(
                "SELECT m.message_id, m.received_at, m.sender, m.tenant, m.origin, m.client_ip, m.size
                 FROM trace_messages m WHERE 1=1",
            );
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut add = |clause: &str, v: rusqlite::types::Value| {
                args.push(v);
                sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
            };
            if let Some(v) = &q.message_id {
                add(" AND m.message_id = ?", v.clone().into());
            }
            if let Some([ascii, unicode]) = q.sender.as_deref().map(crate::address_forms) {
                add(" AND lower(m.sender) IN (lower(?)", ascii.into());
                add(", lower(?))", unicode.into());
            }
            if let Some(v) = &q.tenant {
                add(" AND m.tenant = ?", v.clone().into());
            }
            // A recipient: its messages through the address index. A status: the messages
            // already narrowed (a tenant's, a sender's, one id, a short time window), or all of
            // them for "Delivered" (most recipients' status), are walked newest first until the
            // limit (0.2 ms where the join took 3.0 s; a tenant's rare status 34 ms); a rarer
            // status on the whole trace or a long window is found by reading the recipients
            // once (0.1-0.3 s for two million, where the walk would read every message for a
            // status nobody has).
            let narrowed = q.message_id.is_some() || q.sender.is_some() || q.tenant.is_some();
            const TO: &str = " AND m.message_id IN (SELECT message_id FROM trace_recipients WHERE address IN (lower(?)";
            const WALKED: &str = " AND EXISTS (SELECT 1 FROM trace_recipients r WHERE r.message_id = m.message_id AND r.status = ?)";
            const READ: &str =
                " AND m.message_id IN (SELECT message_id FROM trace_recipients WHERE status = ?)";
            let recipient = q.recipient.as_deref().map(crate::address_forms);
            match (recipient, &q.status) {
                (Some([ascii, unicode]), Some(st)) => {
                    add(TO, ascii.into());
                    add(", lower(?))", unicode.into());
                    add(" AND status = ?)", st.clone().into());
                }
                (Some([ascii, unicode]), None) => {
                    add(TO, ascii.into());
                    add(", lower(?)))", unicode.into());
                }
                (None, Some(st))
                    if narrowed || st == "Delivered" || few_in_window(c, q.since, q.until)? =>
                {
                    add(WALKED, st.clone().into())
                }
                (None, Some(st)) => add(READ, st.clone().into()),
                (None, None) => {}
            }
            if let Some(v) = q.since {
                add(" AND m.received_at >= ?", v.into());
            }
            if let Some(v) = q.until {
                add(" AND m.received_at <= ?", v.into());
            }
            let limit = if q.limit == 0 { 100 } else { q.limit.min(10_000) };
            sql.push_str(&format!(
                " ORDER BY m.received_at DESC, m.message_id DESC LIMIT {limit}"
            ));
            let mut stmt = c.prepare(&sql)?;
            let mut found: Vec<TraceMessage> = stmt
                .query_map(rusqlite::params_from_iter(args), |r| {
                    Ok(TraceMessage {
                        message_id: r.get(0)?,
                        received_at: r.get(1)?,
                        sender: r.get(2)?,
                        tenant: r.get(3)?,
                        origin: r.get(4)?,
                        client_ip: r.get(5)?,
                        size: r.get::<_, i64>(6)? as u64,
                        recipients: Vec::new(),
                        events: Vec::new(),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut rs = c.prepare_cached("SELECT address, status FROM trace_recipients WHERE message_id = ?1 ORDER BY address")?;
            let mut es = c.prepare_cached("SELECT at, kind, recipient, detail FROM trace_events WHERE message_id = ?1 ORDER BY at, rowid")?;
            for m in &mut found {
                m.recipients = rs
                    .query_map([&m.message_id], |r| {
                        Ok(TraceRecipient {
                            address: r.get(0)?,
                            status: r.get(1)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                m.events = es
                    .query_map([&m.message_id], |r| {
                        Ok(TraceEventRow {
                            at: r.get(0)?,
                            kind: r.get(1)?,
                            recipient: r.get(2)?,
                            detail: r.get(3)?,
                        })
                    })?
                    .collect::<rusqlite::Result<_>>()?;
            }
            Ok(found)
        })
        .await
    }
}

/// Whether a trace search's time window holds few enough messages that walking them newest
/// first, looking each one's recipients up, costs less than reading every recipient once: a
/// look-up costs about as much as twelve rows read in order (two million messages: the whole
/// walk 1.9-3.0 s, the whole read 0.11-0.26 s). The count stops at the bound, so a wide window
/// costs no more than a narrow one to judge; the recipients are counted by their last row id.
fn few_in_window(c: &Connection, since: Option<i64>, until: Option<i64>) -> rusqlite::Result<bool> {
    let Some(since) = since else {
        return Ok(false);
    };
    let recipients: i64 = c.query_row(
        "SELECT COALESCE(max(rowid), 0) FROM trace_recipients",
        [],
        |r| r.get(0),
    )?;
    let bound = recipients / 12;
    let in_window: i64 = c.query_row(
        "SELECT count(*) FROM (SELECT 1 FROM trace_messages WHERE received_at >= ?1 AND received_at <= ?2 LIMIT ?3)",
        params![since, until.unwrap_or(i64::MAX), bound],
        |r| r.get(0),
    )?;
    Ok(in_window < bound)
}
