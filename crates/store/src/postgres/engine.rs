// Over 800 lines: one Store implementation for PostgreSQL (a trait impl cannot span files), method for method beside the SQLite one.
//! `Store` on PostgreSQL: the same behaviour as the embedded engine, statement for statement.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use super::{
    CHANGES_CHANNEL, PgStore, claims, each, exec, from_json, json, limit, one_or_all, row, rows,
    unique, unsigned,
};
use crate::model::*;
use crate::spans::Span;
use crate::trace_batch::Recipients;
use crate::{Result, Store, StoreError};

const TENANT_COLUMNS: &str =
    "name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains";

fn tenant_row(r: &Row) -> Result<Tenant> {
    Ok(Tenant {
        name: r.try_get(0)?,
        language: r.try_get(1)?,
        subscription_ends: r.try_get(2)?,
        admins: from_json(r.try_get(3)?),
        managed_by_config: r.try_get(4)?,
        forwarding: Forwarding::parse(r.try_get::<_, &str>(5)?).unwrap_or_default(),
        forwarding_domains: from_json(r.try_get(6)?),
    })
}

const DOMAIN_COLUMNS: &str = "name, tenant, kind, match_subdomains, verified, verification_token";

fn domain_row(r: &Row) -> Result<Domain> {
    Ok(Domain {
        name: r.try_get(0)?,
        tenant: r.try_get(1)?,
        kind: DomainKind::parse(r.try_get::<_, &str>(2)?).unwrap_or(DomainKind::Authoritative),
        match_subdomains: r.try_get(3)?,
        verified: r.try_get(4)?,
        verification_token: r.try_get(5)?,
    })
}

pub(super) const CONNECTOR_COLUMNS: &str = "tenant, name, ips, cert_name, require_tls, relay_unregistered, created_by, created_at, reviewed";

pub(super) fn connector_row(r: &Row) -> Result<Connector> {
    Ok(Connector {
        tenant: r.try_get(0)?,
        name: r.try_get(1)?,
        ips: from_json(r.try_get(2)?),
        cert_name: r.try_get(3)?,
        require_tls: r.try_get(4)?,
        relay_unregistered: r.try_get(5)?,
        created_by: r.try_get(6)?,
        created_at: r.try_get(7)?,
        reviewed: r.try_get(8)?,
    })
}

fn user_row(r: &Row) -> Result<User> {
    Ok(User {
        address: r.try_get(0)?,
        tenant: r.try_get(1)?,
        aliases: from_json(r.try_get(2)?),
        password_hash: r.try_get(3)?,
        forward_to: r.try_get(4)?,
        forward_only: r.try_get(5)?,
    })
}

const TOKEN_COLUMNS: &str =
    "id, name, role, tenant, secret_hash, created_at, expires_at, last_used_at, revoked_at";

fn token_row(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        role: r.try_get(2)?,
        tenant: r.try_get(3)?,
        secret_hash: r.try_get(4)?,
        created_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        last_used_at: r.try_get(7)?,
        revoked_at: r.try_get(8)?,
    })
}

fn counter_row(r: &Row) -> Result<CounterRow> {
    Ok(CounterRow {
        node: r.try_get(0)?,
        tenant: r.try_get(1)?,
        body: r.try_get(2)?,
        updated_at: r.try_get(3)?,
    })
}

const QUEUE_ORDER_COLUMNS: &str =
    "id, at, node, action, tenant, domain, sender, actor, role, client, message";

fn queue_order(r: &Row) -> Result<QueueOrder> {
    Ok(QueueOrder {
        id: r.try_get(0)?,
        at: r.try_get(1)?,
        node: r.try_get(2)?,
        action: r.try_get(3)?,
        tenant: r.try_get(4)?,
        domain: r.try_get(5)?,
        sender: r.try_get(6)?,
        actor: r.try_get(7)?,
        role: r.try_get(8)?,
        client: r.try_get(9)?,
        message: r.try_get(10)?,
    })
}

const RESTRICTION_COLUMNS: &str = "id, tenant, kind, name, state, started_at, updated_at, body";

fn restriction_row(r: &Row) -> Result<RestrictionRow> {
    Ok(RestrictionRow {
        id: r.try_get(0)?,
        tenant: r.try_get(1)?,
        kind: r.try_get(2)?,
        name: r.try_get(3)?,
        state: r.try_get(4)?,
        started_at: r.try_get(5)?,
        updated_at: r.try_get(6)?,
        body: r.try_get(7)?,
    })
}

const ACCOUNT_COLUMNS: &str = "id, email, role, tenant, password_hash, totp_secret, recovery_codes, setup_token_hash, setup_expires_at, failed_logins, locked_until, created_at, last_login_at, language";

fn account_row(r: &Row) -> Result<Account> {
    Ok(Account {
        id: r.try_get(0)?,
        email: r.try_get(1)?,
        role: r.try_get(2)?,
        tenant: r.try_get(3)?,
        password_hash: r.try_get(4)?,
        totp_secret: r.try_get(5)?,
        recovery_codes: from_json(r.try_get(6)?),
        setup_token_hash: r.try_get(7)?,
        setup_expires_at: r.try_get(8)?,
        failed_logins: unsigned(r.try_get(9)?),
        locked_until: r.try_get(10)?,
        created_at: r.try_get(11)?,
        last_login_at: r.try_get(12)?,
        language: r.try_get(13)?,
    })
}

const DELIVERY_COLUMNS: &str = "id, webhook_id, event, body, attempts, state, last_status, last_error, next_attempt, created_at, updated_at";

fn delivery_row(r: &Row) -> Result<WebhookDelivery> {
    Ok(WebhookDelivery {
        id: r.try_get(0)?,
        webhook_id: r.try_get(1)?,
        event: r.try_get(2)?,
        body: r.try_get(3)?,
        attempts: unsigned(r.try_get(4)?),
        state: r.try_get(5)?,
        last_status: r.try_get::<_, Option<i64>>(6)?.map(unsigned),
        last_error: r.try_get(7)?,
        next_attempt: r.try_get(8)?,
        created_at: r.try_get(9)?,
        updated_at: r.try_get(10)?,
    })
}

/// Grows the directory's version and tells the other nodes, on the caller's commit.
async fn bump(c: &impl GenericClient) -> Result<()> {
    exec(
        c,
        "UPDATE meta SET value = value + 1 WHERE key = 'directory_version'",
        &[],
    )
    .await?;
    exec(c, &format!("NOTIFY {CHANGES_CHANNEL}, 'directory'"), &[]).await?;
    Ok(())
}

async fn version_of(c: &impl GenericClient, key: &str) -> Result<i64> {
    let r = row(c, "SELECT value FROM meta WHERE key = $1", &[&key]).await?;
    Ok(match r {
        Some(r) => r.try_get(0)?,
        None => 0,
    })
}

/// Every object of the directory, or one tenant's (`only`).
async fn load(c: &impl GenericClient, only: Option<&str>) -> Result<DirectoryData> {
    let one = only.is_some();
    let only = &only;
    Ok(DirectoryData {
        tenants: each(
            rows(
                c,
                &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE {}", one_or_all("name", one)),
                &[only],
            )
            .await?,
            tenant_row,
        )?,
        domains: each(
            rows(
                c,
                &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE {}", one_or_all("tenant", one)),
                &[only],
            )
            .await?,
            domain_row,
        )?,
        connectors: connectors_of(c, *only).await?,
        users: each(
            rows(
                c,
                &format!("SELECT address, tenant, aliases, password_hash, forward_to, forward_only FROM users WHERE {}", one_or_all("tenant", one)),
                &[only],
            )
            .await?,
            user_row,
        )?,
        routes: each(
            rows(
                c,
                &format!("SELECT domain, tenant, host FROM routes WHERE {}", one_or_all("tenant", one)),
                &[only],
            )
            .await?,
            |r| {
                Ok(Route {
                    domain: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    host: r.try_get(2)?,
                })
            },
        )?,
    })
}

async fn connectors_of(c: &impl GenericClient, only: Option<&str>) -> Result<Vec<Connector>> {
    each(
        rows(
            c,
            &format!(
                "SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE {}",
                one_or_all("tenant", only.is_some())
            ),
            &[&only],
        )
        .await?,
        connector_row,
    )
}

async fn insert_tenant(c: &impl GenericClient, t: &Tenant) -> Result<()> {
    // One name, whatever its letter case: "Contoso" beside "contoso" is another's name.
    if let Some(row) = c
        .query_opt(
            "SELECT name FROM tenants WHERE lower(name) = lower($1) LIMIT 1",
            &[&t.name],
        )
        .await?
    {
        return Err(StoreError::Exists {
            what: "tenant",
            name: row.get(0),
        });
    }
    exec(
        c,
        "INSERT INTO tenants (name, language, subscription_ends, admins, managed_by_config, forwarding, forwarding_domains) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[&t.name, &t.language, &t.subscription_ends, &json(&t.admins), &t.managed_by_config, &t.forwarding.as_str(), &json(&t.forwarding_domains)],
    )
    .await
    .map_err(|e| reunique(e, "tenant", &t.name))?;
    Ok(())
}

async fn insert_domain(c: &impl GenericClient, d: &Domain) -> Result<()> {
    exec(
        c,
        "INSERT INTO domains (name, tenant, kind, match_subdomains, verified, verification_token) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&d.name.to_ascii_lowercase(), &d.tenant, &d.kind.as_str(), &d.match_subdomains, &d.verified, &d.verification_token],
    )
    .await
    .map_err(|e| reunique(e, "domain", &d.name))?;
    Ok(())
}

async fn insert_connector(c: &impl GenericClient, k: &Connector) -> Result<()> {
    exec(
        c,
        &format!("INSERT INTO connectors ({CONNECTOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        &[&k.tenant, &k.name, &json(&k.ips), &k.cert_name, &k.require_tls, &k.relay_unregistered, &k.created_by, &k.created_at, &k.reviewed],
    )
    .await
    .map_err(|e| reunique(e, "connector", &k.name))?;
    claims::index_connector(c, k).await
}

async fn insert_user(c: &impl GenericClient, u: &User) -> Result<()> {
    exec(
        c,
        "INSERT INTO users (address, tenant, aliases, password_hash, forward_to, forward_only) VALUES ($1, $2, $3, $4, $5, $6)",
        &[&u.address.to_ascii_lowercase(), &u.tenant, &json(&u.aliases), &u.password_hash, &u.forward_to, &u.forward_only],
    )
    .await
    .map_err(|e| reunique(e, "user", &u.address))?;
    Ok(())
}

async fn insert_route(c: &impl GenericClient, r: &Route) -> Result<()> {
    exec(
        c,
        "INSERT INTO routes (domain, tenant, host) VALUES ($1, $2, $3)",
        &[&r.domain.to_ascii_lowercase(), &r.tenant, &r.host],
    )
    .await
    .map_err(|e| reunique(e, "route", &r.domain))?;
    Ok(())
}

/// `unique` for an error already converted (the helpers convert).
fn reunique(e: StoreError, what: &'static str, name: &str) -> StoreError {
    match e {
        StoreError::Postgres(e) => unique(e, what, name),
        other => other,
    }
}

/// Refuses changes through the CLI/API to tenants that configuration manages.
async fn check_unmanaged(c: &impl GenericClient, tenant: &str) -> Result<()> {
    let managed = row(
        c,
        "SELECT managed_by_config FROM tenants WHERE name = $1",
        &[&tenant],
    )
    .await?;
    match managed {
        None => Err(StoreError::NotFound {
            what: "tenant",
            name: tenant.to_string(),
        }),
        Some(r) if r.try_get::<_, bool>(0)? => Err(StoreError::ManagedByConfig(tenant.to_string())),
        Some(_) => Ok(()),
    }
}

/// "Not found" when a statement touched no row.
fn touched(n: u64, what: &'static str, name: String) -> Result<()> {
    if n == 0 {
        Err(StoreError::NotFound { what, name })
    } else {
        Ok(())
    }
}

/// The suspicious-verdict test of the trace (the scanner's event detail).
const SUSPICIOUS: &str = "EXISTS (SELECT 1 FROM trace_events e WHERE e.message_id = m.message_id
     AND e.kind = 'scanned' AND (e.detail LIKE 'verdict spam%' OR e.detail LIKE 'verdict bulk%'))";

/// Runs `$body` in one transaction on a tenant that configuration does not manage, then grows
/// the directory's version: the shape of every directory change made through the API.
macro_rules! change {
    ($store:expr, $tenant:expr, |$tx:ident| $body:block) => {{
        let mut c = $store.client().await?;
        let $tx = c.transaction().await?;
        check_unmanaged(&$tx, $tenant).await?;
        let done: Result<()> = $body;
        done?;
        bump(&$tx).await?;
        $tx.commit().await?;
        Ok(())
    }};
}

#[async_trait]
impl Store for PgStore {
    fn change_feed(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.listen())
    }

    async fn directory(&self) -> Result<DirectoryData> {
        let mut c = self.client().await?;
        // One snapshot: every table as of the same moment.
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let d = load(&tx, None).await?;
        tx.commit().await?;
        Ok(d)
    }

    async fn directory_version(&self) -> Result<i64> {
        version_of(&self.client().await?, "directory_version").await
    }

    async fn tenant(&self, name: &str) -> Result<Option<Tenant>> {
        let c = self.client().await?;
        row(
            &c,
            &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"),
            &[&name],
        )
        .await?
        .map(|r| tenant_row(&r))
        .transpose()
    }

    async fn tenant_data(&self, tenant: &str) -> Result<Option<TenantData>> {
        let mut c = self.client().await?;
        let tx = c
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let d = load(&tx, Some(tenant)).await?;
        tx.commit().await?;
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
    }

    async fn tenants(&self, after: Option<&str>, n: usize) -> Result<Vec<Tenant>> {
        let c = self.client().await?;
        let after = after.unwrap_or("");
        each(
            rows(
                &c,
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants WHERE name > $1 ORDER BY name LIMIT $2"
                ),
                &[&after, &limit(n.min(10_000))],
            )
            .await?,
            tenant_row,
        )
    }

    async fn lapsed_tenants(
        &self,
        today: &str,
        after: Option<&str>,
        n: usize,
    ) -> Result<Vec<Tenant>> {
        let c = self.client().await?;
        let after = after.unwrap_or("");
        each(
            rows(
                &c,
                &format!(
                    "SELECT {TENANT_COLUMNS} FROM tenants
                     WHERE subscription_ends IS NOT NULL AND subscription_ends < $1 AND name > $2 ORDER BY name LIMIT $3"
                ),
                &[&today, &after, &limit(n.min(10_000))],
            )
            .await?,
            tenant_row,
        )
    }

    async fn add_tenant(&self, tenant: &Tenant) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        insert_tenant(&tx, tenant).await?;
        bump(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_domain(&self, domain: &Domain) -> Result<()> {
        change!(self, &domain.tenant, |tx| {
            insert_domain(&tx, domain).await
        })
    }

    async fn add_connector(&self, connector: &Connector) -> Result<()> {
        change!(self, &connector.tenant, |tx| {
            insert_connector(&tx, connector).await
        })
    }

    async fn add_user(&self, user: &User) -> Result<()> {
        change!(self, &user.tenant, |tx| { insert_user(&tx, user).await })
    }

    async fn add_route(&self, route: &Route) -> Result<()> {
        change!(self, &route.tenant, |tx| { insert_route(&tx, route).await })
    }

    async fn provision(&self, data: &TenantData) -> Result<()> {
        let Some(t) = data.tenant.as_ref() else {
            return Err(StoreError::Invalid("provisioning needs a tenant".into()));
        };
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Nodes provision the same tenants as they start: one at a time.
        exec(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext('provision:' || $1))",
            &[&t.name],
        )
        .await?;
        let existing = row(
            &tx,
            "SELECT managed_by_config FROM tenants WHERE name = $1",
            &[&t.name],
        )
        .await?
        .map(|r| r.try_get::<_, bool>(0))
        .transpose()?;
        if existing == Some(false) {
            return Err(StoreError::Exists {
                what: "tenant (created through the CLI or API, not by configuration)",
                name: t.name.clone(),
            });
        }
        // The tenant row stays (what hangs on it — tokens, webhooks, restrictions — must
        // survive a restart); its directory objects are replaced.
        if existing.is_some() {
            exec(
                &tx,
                "UPDATE tenants SET language = $2, subscription_ends = $3, admins = $4, managed_by_config = TRUE, forwarding = $5, forwarding_domains = $6 WHERE name = $1",
                &[&t.name, &t.language, &t.subscription_ends, &json(&t.admins), &t.forwarding.as_str(), &json(&t.forwarding_domains)],
            )
            .await?;
            for table in ["domains", "connectors", "users", "routes"] {
                exec(
                    &tx,
                    &format!("DELETE FROM {table} WHERE tenant = $1"),
                    &[&t.name],
                )
                .await?;
            }
        } else {
            insert_tenant(&tx, t).await?;
        }
        for d in &data.domains {
            insert_domain(&tx, d).await?;
        }
        for k in &data.connectors {
            insert_connector(&tx, k).await?;
        }
        for u in &data.users {
            insert_user(&tx, u).await?;
        }
        for r in &data.routes {
            insert_route(&tx, r).await?;
        }
        bump(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn update_tenant(&self, t: &Tenant) -> Result<()> {
        change!(self, &t.name, |tx| {
            exec(
                &tx,
                "UPDATE tenants SET language = $2, subscription_ends = $3, admins = $4, forwarding = $5, forwarding_domains = $6 WHERE name = $1",
                &[&t.name, &t.language, &t.subscription_ends, &json(&t.admins), &t.forwarding.as_str(), &json(&t.forwarding_domains)],
            )
            .await
            .map(drop)
        })
    }

    async fn delete_connector(&self, tenant: &str, name: &str) -> Result<()> {
        change!(self, tenant, |tx| {
            let n = exec(
                &tx,
                "DELETE FROM connectors WHERE tenant = $1 AND name = $2",
                &[&tenant, &name],
            )
            .await?;
            touched(n, "connector", format!("{name} of {tenant}"))
        })
    }

    async fn update_user(&self, u: &User) -> Result<()> {
        change!(self, &u.tenant, |tx| {
            let n = exec(
                &tx,
                "UPDATE users SET aliases = $3, password_hash = $4, forward_to = $5, forward_only = $6 WHERE tenant = $1 AND address = $2",
                &[&u.tenant, &u.address.to_ascii_lowercase(), &json(&u.aliases), &u.password_hash, &u.forward_to, &u.forward_only],
            )
            .await?;
            touched(n, "user", u.address.clone())
        })
    }

    async fn delete_user(&self, tenant: &str, address: &str) -> Result<()> {
        let address = address.to_ascii_lowercase();
        let address = &address;
        change!(self, tenant, |tx| {
            let n = exec(
                &tx,
                "DELETE FROM users WHERE tenant = $1 AND address = $2",
                &[&tenant, address],
            )
            .await?;
            touched(n, "user", address.clone())
        })
    }

    async fn set_tenant_limits(&self, tenant: &str, overrides: &str) -> Result<()> {
        change!(self, tenant, |tx| {
            exec(
                &tx,
                "UPDATE tenants SET limits = $2 WHERE name = $1",
                &[&tenant, &overrides],
            )
            .await
            .map(drop)
        })
    }

    async fn tenant_limits(&self) -> Result<Vec<(String, String)>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT name, limits FROM tenants WHERE limits <> '{}'",
                &[],
            )
            .await?,
            |r| Ok((r.try_get(0)?, r.try_get(1)?)),
        )
    }

    async fn set_forwarding(
        &self,
        tenant: &str,
        forwarding: Forwarding,
        domains: &[String],
    ) -> Result<()> {
        let domains = json(&domains);
        let domains = &domains;
        change!(self, tenant, |tx| {
            exec(
                &tx,
                "UPDATE tenants SET forwarding = $2, forwarding_domains = $3 WHERE name = $1",
                &[&tenant, &forwarding.as_str(), domains],
            )
            .await
            .map(drop)
        })
    }

    async fn domain(&self, name: &str) -> Result<Domain> {
        let name = crate::domain_key(name).into_owned();
        let c = self.client().await?;
        match row(
            &c,
            &format!("SELECT {DOMAIN_COLUMNS} FROM domains WHERE name = $1"),
            &[&name],
        )
        .await?
        {
            Some(r) => domain_row(&r),
            None => Err(StoreError::NotFound {
                what: "domain",
                name,
            }),
        }
    }

    async fn related_domains(&self, name: &str) -> Result<Vec<Domain>> {
        let name = crate::domain_key(name).into_owned();
        // The name and its parents (not the top-level label), then everything below it: a
        // prefix search on reversed names.
        let mut exact = vec![name.clone()];
        let mut at = name.as_str();
        while let Some((_, rest)) = at.split_once('.') {
            if !rest.contains('.') {
                break;
            }
            exact.push(rest.to_string());
            at = rest;
        }
        // The names below, reversed, are those from `<reversed name>.` up to `<reversed name>/`
        // ('/' follows '.'), compared byte for byte as the index keeps them (`~>=~`, `~<~`): a
        // range the index serves under any plan, where `LIKE $2` has no prefix in a generic
        // plan and reads every domain.
        let reversed: String = name.chars().rev().collect();
        let (from, to) = (format!("{reversed}."), format!("{reversed}/"));
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT {DOMAIN_COLUMNS} FROM domains WHERE name = ANY($1)
                     UNION ALL
                     SELECT {DOMAIN_COLUMNS} FROM domains
                     WHERE reverse(name) ~>=~ $2 AND reverse(name) ~<~ $3"
                ),
                &[&exact, &from, &to],
            )
            .await?,
            domain_row,
        )
    }

    async fn all_connectors(&self) -> Result<Vec<Connector>> {
        connectors_of(&self.client().await?, None).await
    }

    async fn connectors_touching(&self, spans: &[Span]) -> Result<Vec<Connector>> {
        claims::connectors_touching(&self.client().await?, spans).await
    }

    async fn set_domain_verified(&self, tenant: &str, name: &str, verified: bool) -> Result<()> {
        let name = name.to_ascii_lowercase();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = exec(
            &tx,
            "UPDATE domains SET verified = $3 WHERE tenant = $1 AND name = $2",
            &[&tenant, &name, &verified],
        )
        .await?;
        touched(n, "domain", format!("{name} of {tenant}"))?;
        bump(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_connector_reviewed(&self, tenant: &str, name: &str, reviewed: bool) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let n = exec(
            &tx,
            "UPDATE connectors SET reviewed = $3 WHERE tenant = $1 AND name = $2",
            &[&tenant, &name, &reviewed],
        )
        .await?;
        touched(n, "connector", format!("{name} of {tenant}"))?;
        bump(&tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn save_restriction(&self, r: &RestrictionRow) -> Result<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // Nodes starting a restriction of the same subject take turns here.
        exec(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext('restriction:' || $1 || ':' || $2 || ':' || $3))",
            &[&r.tenant, &r.kind, &r.name],
        )
        .await?;
        let known = row(&tx, "SELECT 1 FROM restrictions WHERE id = $1", &[&r.id]).await?;
        if known.is_none() && r.state != "lifted" {
            let open = row(
                &tx,
                "SELECT 1 FROM restrictions WHERE tenant = $1 AND kind = $2 AND name = $3 AND state <> 'lifted'",
                &[&r.tenant, &r.kind, &r.name],
            )
            .await?;
            if open.is_some() {
                return Ok(false);
            }
        }
        exec(
            &tx,
            &format!(
                "INSERT INTO restrictions ({RESTRICTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state,
                   updated_at = excluded.updated_at, body = excluded.body"
            ),
            &[&r.id, &r.tenant, &r.kind, &r.name, &r.state, &r.started_at, &r.updated_at, &r.body],
        )
        .await?;
        exec(
            &tx,
            "UPDATE meta SET value = value + 1 WHERE key = 'restrictions_version'",
            &[],
        )
        .await?;
        exec(
            &tx,
            &format!("NOTIFY {CHANGES_CHANNEL}, 'restrictions'"),
            &[],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn restrictions(
        &self,
        tenant: Option<&str>,
        open_only: bool,
    ) -> Result<Vec<RestrictionRow>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT {RESTRICTION_COLUMNS} FROM restrictions
                     WHERE {} AND (NOT $2 OR state <> 'lifted')
                     ORDER BY started_at DESC, id",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant, &open_only],
            )
            .await?,
            restriction_row,
        )
    }

    async fn restriction(&self, id: &str) -> Result<RestrictionRow> {
        let c = self.client().await?;
        match row(
            &c,
            &format!("SELECT {RESTRICTION_COLUMNS} FROM restrictions WHERE id = $1"),
            &[&id],
        )
        .await?
        {
            Some(r) => restriction_row(&r),
            None => Err(StoreError::NotFound {
                what: "restriction",
                name: id.to_string(),
            }),
        }
    }

    async fn restrictions_version(&self) -> Result<i64> {
        version_of(&self.client().await?, "restrictions_version").await
    }

    async fn add_alerts(&self, alerts: Vec<AlertRow>) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for a in &alerts {
            exec(
                &tx,
                "INSERT INTO alerts (tenant, at, severity, kind, subject, text) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&a.tenant, &a.at, &a.severity, &a.kind, &a.subject, &a.text],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn alerts(&self, tenant: Option<&str>, n: usize) -> Result<Vec<AlertRow>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT id, tenant, at, severity, kind, subject, text FROM alerts
                     WHERE {} ORDER BY at DESC, id DESC LIMIT $2",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant, &limit(n)],
            )
            .await?,
            |r| {
                Ok(AlertRow {
                    id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    at: r.try_get(2)?,
                    severity: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    subject: r.try_get(5)?,
                    text: r.try_get(6)?,
                })
            },
        )
    }

    async fn record_auth_lockout(&self, l: &AuthLockout) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO auth_lockouts (account, tenant, at, until, failures, client) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (account) DO UPDATE SET tenant = $2, at = $3, until = $4, failures = $5, client = $6",
            &[&l.account, &l.tenant, &l.at, &l.until, &i64::from(l.failures), &l.client],
        )
        .await?;
        Ok(())
    }

    async fn auth_lockouts(&self, tenant: &str, since: i64) -> Result<Vec<AuthLockout>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT account, tenant, at, until, failures, client FROM auth_lockouts
                 WHERE tenant = $1 AND until >= $2 ORDER BY at DESC LIMIT 1000",
                &[&tenant, &since],
            )
            .await?,
            |r| {
                Ok(AuthLockout {
                    account: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    at: r.try_get(2)?,
                    until: r.try_get(3)?,
                    failures: unsigned(r.try_get(4)?),
                    client: r.try_get(5)?,
                })
            },
        )
    }

    async fn save_bulk_bands(
        &self,
        node: &str,
        bands: Vec<(i64, i64, i64)>,
        _at: i64,
    ) -> Result<()> {
        let (b, f, r): (Vec<i64>, Vec<i64>, Vec<i64>) = (
            bands.iter().map(|x| x.0).collect(),
            bands.iter().map(|x| x.1).collect(),
            bands.iter().map(|x| x.2).collect(),
        );
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // One statement for the whole set, stamped with the server's clock.
        exec(
            &tx,
            "INSERT INTO bulk_bands (node, band, first, recipients, updated_at)
             SELECT $1, band, first, recipients, (extract(epoch from clock_timestamp()) * 1000)::bigint
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS t(band, first, recipients)
             ON CONFLICT (node, band) DO UPDATE SET first = excluded.first,
               recipients = excluded.recipients, updated_at = excluded.updated_at",
            &[&node, &b, &f, &r],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM bulk_bands WHERE first < (extract(epoch from clock_timestamp()) * 1000)::bigint - 86400000",
            &[],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bulk_bands_since(&self, since: i64) -> Result<Vec<BulkBandRow>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT node, band, first, recipients, updated_at FROM bulk_bands WHERE updated_at >= $1",
                &[&since],
            )
            .await?,
            |r| {
                Ok(BulkBandRow {
                    node: r.try_get(0)?,
                    band: r.try_get(1)?,
                    first: r.try_get(2)?,
                    recipients: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                })
            },
        )
    }

    async fn attempts_since(&self, key: &str, since: i64) -> Result<(usize, Option<i64>)> {
        let c = self.client().await?;
        let counted = row(
            &c,
            "SELECT COUNT(*), MIN(at) FROM attempts WHERE key = $1 AND at >= $2",
            &[&key, &since],
        )
        .await?
        .map(|r| -> Result<(i64, Option<i64>)> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .transpose()?
        .unwrap_or((0, None));
        Ok((usize::try_from(counted.0).unwrap_or(0), counted.1))
    }

    async fn attempts_counted(&self, asked: &[(&str, i64)]) -> Result<Vec<usize>> {
        let keys: Vec<&str> = asked.iter().map(|(key, _)| *key).collect();
        let since: Vec<i64> = asked.iter().map(|(_, since)| *since).collect();
        let c = self.client().await?;
        rows(
            &c,
            "SELECT (SELECT COUNT(*) FROM attempts a WHERE a.key = k.key AND a.at >= k.since)
             FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS k(key, since, n)
             ORDER BY k.n",
            &[&keys, &since],
        )
        .await?
        .iter()
        .map(|r| Ok(usize::try_from(r.try_get::<_, i64>(0)?).unwrap_or(0)))
        .collect()
    }

    async fn count_attempt(
        &self,
        key: &str,
        window_ms: i64,
        n: usize,
        now: i64,
    ) -> Result<Option<i64>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        exec(
            &tx,
            "SELECT pg_advisory_xact_lock(hashtext('attempt:' || $1))",
            &[&key],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM attempts WHERE key = $1 AND at <= $2",
            &[&key, &(now - window_ms.min(crate::ATTEMPTS_KEPT_MS))],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM attempts WHERE at < $1",
            &[&(now - crate::ATTEMPTS_KEPT_MS)],
        )
        .await?;
        let counted = row(
            &tx,
            "SELECT COUNT(*), MIN(at) FROM attempts WHERE key = $1",
            &[&key],
        )
        .await?
        .map(|r| -> Result<(i64, Option<i64>)> { Ok((r.try_get(0)?, r.try_get(1)?)) })
        .transpose()?
        .unwrap_or((0, None));
        if counted.0 >= limit(n) {
            return Ok(Some(counted.1.unwrap_or(now)));
        }
        exec(
            &tx,
            "INSERT INTO attempts (key, at) VALUES ($1, $2)",
            &[&key, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(None)
    }

    async fn save_counters(
        &self,
        node: &str,
        counters: Vec<(String, String)>,
        _at: i64,
    ) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        // The server's clock, so that readers on other machines compare like with like.
        let st = tx
            .prepare_cached(
                "INSERT INTO counters (node, tenant, body, updated_at)
                 VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint)
                 ON CONFLICT (node, tenant) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at",
            )
            .await?;
        for (tenant, body) in &counters {
            super::counted();
            tx.execute(&st, &[&node, tenant, body]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn counters(&self, tenant: Option<&str>) -> Result<Vec<CounterRow>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT node, tenant, body, updated_at FROM counters WHERE {} ORDER BY tenant, node",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant],
            )
            .await?,
            counter_row,
        )
    }

    async fn mta_sts_policy(&self, domain: &str, now: i64) -> Result<Option<MtaStsRow>> {
        let c = self.client().await?;
        row(
            &c,
            "SELECT domain, id, policy, fetched_at, expires_at FROM mta_sts_policies
             WHERE domain = $1 AND expires_at > $2",
            &[&domain, &now],
        )
        .await?
        .map(|r| {
            Ok(MtaStsRow {
                domain: r.try_get(0)?,
                id: r.try_get(1)?,
                policy: r.try_get(2)?,
                fetched_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    async fn save_mta_sts_policy(&self, p: &MtaStsRow, now: i64) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        exec(
            &tx,
            "INSERT INTO mta_sts_policies (domain, id, policy, fetched_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (domain) DO UPDATE SET id = excluded.id, policy = excluded.policy,
                 fetched_at = excluded.fetched_at, expires_at = excluded.expires_at",
            &[&p.domain, &p.id, &p.policy, &p.fetched_at, &p.expires_at],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM mta_sts_policies WHERE expires_at <= $1",
            &[&now],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn share_delayed(
        &self,
        node: &str,
        mine: Vec<(String, String)>,
        fresh_ms: i64,
        _at: i64,
    ) -> Result<Vec<CounterRow>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        exec(&tx, "DELETE FROM delayed WHERE node = $1", &[&node]).await?;
        // The server's clock, so that every node reads the others' rows by one clock.
        let st = tx
            .prepare_cached(
                "INSERT INTO delayed (node, tenant, body, updated_at)
                 VALUES ($1, $2, $3, (extract(epoch from clock_timestamp()) * 1000)::bigint)",
            )
            .await?;
        for (tenant, body) in &mine {
            super::counted();
            tx.execute(&st, &[&node, tenant, body]).await?;
        }
        exec(
            &tx,
            "DELETE FROM delayed WHERE updated_at < (extract(epoch from clock_timestamp()) * 1000)::bigint - 86400000",
            &[],
        )
        .await?;
        let found = rows(
            &tx,
            "SELECT node, tenant, body, updated_at FROM delayed
             WHERE updated_at >= (extract(epoch from clock_timestamp()) * 1000)::bigint - $1",
            &[&fresh_ms],
        )
        .await?;
        tx.commit().await?;
        each(found, counter_row)
    }

    async fn counters_since(&self, since: i64) -> Result<Vec<CounterRow>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT node, tenant, body, updated_at FROM counters WHERE updated_at >= $1",
                &[&since],
            )
            .await?,
            counter_row,
        )
    }

    async fn add_queue_order(&self, o: &QueueOrder) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        exec(
            &tx,
            "DELETE FROM queue_orders WHERE at < $1",
            &[&(o.at - crate::QUEUE_ORDERS_KEPT_MS)],
        )
        .await?;
        let id: i64 = row(
            &tx,
            "INSERT INTO queue_orders (at, node, action, tenant, domain, sender, actor, role, client, message)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            &[&o.at, &o.node, &o.action, &o.tenant, &o.domain, &o.sender, &o.actor, &o.role, &o.client, &o.message],
        )
        .await?
        .ok_or_else(|| StoreError::Task("no id for the queue order".into()))?
        .try_get(0)?;
        exec(&tx, &format!("NOTIFY {CHANGES_CHANNEL}, 'queue'"), &[]).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn queue_orders_after(&self, after: i64, n: usize) -> Result<Vec<QueueOrder>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!("SELECT {QUEUE_ORDER_COLUMNS} FROM queue_orders WHERE id > $1 ORDER BY id LIMIT $2"),
                &[&after, &limit(n)],
            )
            .await?,
            queue_order,
        )
    }

    async fn last_queue_order(&self) -> Result<i64> {
        let c = self.client().await?;
        Ok(
            row(&c, "SELECT COALESCE(MAX(id), 0) FROM queue_orders", &[])
                .await?
                .map(|r| r.try_get(0))
                .transpose()?
                .unwrap_or(0),
        )
    }

    async fn nodes_seen(&self, node: &str, _at: i64) -> Result<Vec<(String, i64)>> {
        let c = self.client().await?;
        // The server's clock, so that every node reads the others' marks by one clock.
        let found = rows(
            &c,
            "WITH now AS (SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms),
                  noted AS (
                      INSERT INTO cluster_nodes (name, seen_at) SELECT $1, ms FROM now
                      ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at
                  ),
                  forgotten AS (
                      DELETE FROM cluster_nodes
                      WHERE seen_at < (SELECT ms FROM now) - 86400000 AND name <> $1
                  )
             SELECT name, GREATEST(now.ms - seen_at, 0) FROM cluster_nodes, now
             WHERE seen_at >= now.ms - 86400000 AND name <> $1
             UNION ALL SELECT $1, 0::bigint ORDER BY 1",
            &[&node],
        )
        .await?;
        each(found, |r| Ok((r.try_get(0)?, r.try_get(1)?)))
    }

    async fn cluster_nodes(&self, _at: i64) -> Result<Vec<(String, i64)>> {
        let c = self.client().await?;
        let found = rows(
            &c,
            "WITH now AS (SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint AS ms)
             SELECT name, GREATEST(now.ms - seen_at, 0) FROM cluster_nodes, now
             WHERE seen_at >= now.ms - 86400000 ORDER BY name",
            &[],
        )
        .await?;
        each(found, |r| Ok((r.try_get(0)?, r.try_get(1)?)))
    }

    async fn forget_node(&self, node: &str) -> Result<bool> {
        let c = self.client().await?;
        let n = c
            .execute("DELETE FROM cluster_nodes WHERE name = $1", &[&node])
            .await?;
        Ok(n > 0)
    }

    async fn add_queue_read(&self, q: &QueueRead) -> Result<i64> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let before = q.at - crate::QUEUE_READS_KEPT_MS;
        exec(&tx, "DELETE FROM queue_reads WHERE at < $1", &[&before]).await?;
        exec(&tx, "DELETE FROM queue_answers WHERE at < $1", &[&before]).await?;
        let id: i64 = row(
            &tx,
            "INSERT INTO queue_reads (at, node, kind, tenant, domain, sender, message, by_sender, max_rows)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[&q.at, &q.node, &q.kind, &q.tenant, &q.domain, &q.sender, &q.message, &q.by_sender, &q.limit],
        )
        .await?
        .ok_or_else(|| StoreError::Task("no id for the queue read".into()))?
        .try_get(0)?;
        exec(&tx, &format!("NOTIFY {CHANGES_CHANNEL}, 'queue'"), &[]).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn queue_reads_after(&self, after: i64, n: usize) -> Result<Vec<QueueRead>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT id, at, node, kind, tenant, domain, sender, message, by_sender, max_rows
                 FROM queue_reads WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit(n)],
            )
            .await?,
            |r| {
                Ok(QueueRead {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    node: r.try_get(2)?,
                    kind: r.try_get(3)?,
                    tenant: r.try_get(4)?,
                    domain: r.try_get(5)?,
                    sender: r.try_get(6)?,
                    message: r.try_get(7)?,
                    by_sender: r.try_get(8)?,
                    limit: r.try_get(9)?,
                })
            },
        )
    }

    async fn last_queue_read(&self) -> Result<i64> {
        let c = self.client().await?;
        Ok(row(&c, "SELECT COALESCE(MAX(id), 0) FROM queue_reads", &[])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?
            .unwrap_or(0))
    }

    async fn answer_queue_read(&self, read: i64, node: &str, body: &str) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO queue_answers (read_id, node, at, body)
             VALUES ($1, $2, COALESCE((SELECT at FROM queue_reads WHERE id = $1), 0), $3)
             ON CONFLICT (read_id, node) DO UPDATE SET at = excluded.at, body = excluded.body",
            &[&read, &node, &body],
        )
        .await?;
        Ok(())
    }

    async fn queue_read_answers(&self, read: i64) -> Result<Vec<(String, String)>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT node, body FROM queue_answers WHERE read_id = $1 ORDER BY node",
                &[&read],
            )
            .await?,
            |r| Ok((r.try_get(0)?, r.try_get(1)?)),
        )
    }

    async fn audit(&self, e: &AuditEntry) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO audit (at, actor, role, tenant, action, client, mfa, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[&e.at, &e.actor, &e.role, &e.tenant, &e.action, &e.client, &e.mfa, &e.detail],
        )
        .await?;
        Ok(())
    }

    async fn audit_log(&self, tenant: Option<&str>, n: usize) -> Result<Vec<AuditEntry>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT at, actor, role, tenant, action, client, mfa, detail FROM audit
                     WHERE {} ORDER BY at DESC, id DESC LIMIT $2",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant, &limit(n)],
            )
            .await?,
            |r| {
                Ok(AuditEntry {
                    at: r.try_get(0)?,
                    actor: r.try_get(1)?,
                    role: r.try_get(2)?,
                    tenant: r.try_get(3)?,
                    action: r.try_get(4)?,
                    client: r.try_get(5)?,
                    mfa: r.try_get(6)?,
                    detail: r.try_get(7)?,
                })
            },
        )
    }

    async fn dismiss_domain(&self, tenant: &str, domain: &str, actor: &str, at: i64) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO dismissed_domains (tenant, domain, actor, at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant, domain) DO UPDATE SET actor = excluded.actor, at = excluded.at",
            &[&tenant, &domain.to_ascii_lowercase(), &actor, &at],
        )
        .await?;
        Ok(())
    }

    async fn dismissed_domains(&self, tenant: &str) -> Result<Vec<String>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                "SELECT domain FROM dismissed_domains WHERE tenant = $1",
                &[&tenant],
            )
            .await?,
            |r| Ok(r.try_get(0)?),
        )
    }

    async fn attest(&self, restriction_id: &str, actor: &str, at: i64) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO attestations (restriction_id, actor, at) VALUES ($1, $2, $3)
             ON CONFLICT (restriction_id) DO UPDATE SET actor = excluded.actor, at = excluded.at",
            &[&restriction_id, &actor, &at],
        )
        .await?;
        Ok(())
    }

    async fn attestation(&self, restriction_id: &str) -> Result<Option<(String, i64)>> {
        let c = self.client().await?;
        row(
            &c,
            "SELECT actor, at FROM attestations WHERE restriction_id = $1",
            &[&restriction_id],
        )
        .await?
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .transpose()
    }

    async fn add_token(&self, t: &ApiToken) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO api_tokens (id, name, role, tenant, secret_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&t.id, &t.name, &t.role, &t.tenant, &t.secret_hash, &t.created_at, &t.expires_at],
        )
        .await
        .map_err(|e| reunique(e, "token", t.tenant.as_deref().unwrap_or(&t.id)))?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<ApiToken>> {
        let c = self.client().await?;
        row(
            &c,
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|r| token_row(&r))
        .transpose()
    }

    async fn tokens(&self, tenant: Option<&str>) -> Result<Vec<ApiToken>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE {} ORDER BY created_at DESC, id",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant],
            )
            .await?,
            token_row,
        )
    }

    async fn touch_token(&self, id: &str, at: i64) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
            &[&id, &at],
        )
        .await?;
        Ok(())
    }

    async fn revoke_token(&self, id: &str, at: i64) -> Result<()> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1",
            &[&id, &at],
        )
        .await?;
        touched(n, "token", id.to_string())
    }

    async fn dkim_keys(&self, domain: Option<&str>) -> Result<Vec<DkimKey>> {
        let domain = domain.map(|d| crate::domain_key(d).into_owned());
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT domain, selector, algorithm, private_key, public_key, created_at, state, state_since FROM dkim_keys WHERE {} ORDER BY created_at, algorithm DESC",
                    one_or_all("domain", domain.is_some())
                ),
                &[&domain],
            )
            .await?,
            |r| {
                Ok(DkimKey {
                    domain: r.try_get(0)?,
                    selector: r.try_get(1)?,
                    algorithm: r.try_get(2)?,
                    private_key: r.try_get(3)?,
                    public_key: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    state: DkimKeyState::parse(r.try_get::<_, &str>(6)?).unwrap_or(DkimKeyState::Retired),
                    state_since: r.try_get(7)?,
                })
            },
        )
    }

    async fn add_dkim_keys(&self, keys: &[DkimKey]) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for k in keys {
            exec(
                &tx,
                "INSERT INTO dkim_keys (domain, selector, algorithm, private_key, public_key, created_at, state, state_since) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&k.domain.to_ascii_lowercase(), &k.selector, &k.algorithm, &k.private_key, &k.public_key, &k.created_at, &k.state.as_str(), &k.state_since],
            )
            .await
            .map_err(|e| reunique(e, "DKIM selector", &k.selector))?;
        }
        exec(&tx, &format!("NOTIFY {CHANGES_CHANNEL}, 'dkim'"), &[]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn set_dkim_states(
        &self,
        domain: &str,
        changes: &[(String, DkimKeyState)],
        at: i64,
    ) -> Result<()> {
        let domain = crate::domain_key(domain).into_owned();
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        for (selector, state) in changes {
            let n = exec(
                &tx,
                "UPDATE dkim_keys SET state = $3, state_since = $4 WHERE domain = $1 AND selector = $2",
                &[&domain, selector, &state.as_str(), &at],
            )
            .await?;
            touched(n, "DKIM selector", format!("{selector} of {domain}"))?;
        }
        exec(&tx, &format!("NOTIFY {CHANGES_CHANNEL}, 'dkim'"), &[]).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn add_webhook(&self, w: &Webhook) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO webhooks (id, tenant, url, secret, events, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&w.id, &w.tenant, &w.url, &w.secret, &json(&w.events), &w.created_by, &w.created_at],
        )
        .await
        .map_err(|e| reunique(e, "webhook", &w.id))?;
        Ok(())
    }

    async fn webhooks(&self, tenant: Option<&str>) -> Result<Vec<Webhook>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT id, tenant, url, secret, events, created_by, created_at FROM webhooks WHERE {} ORDER BY created_at, id",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant],
            )
            .await?,
            |r| {
                Ok(Webhook {
                    id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    url: r.try_get(2)?,
                    secret: r.try_get(3)?,
                    events: from_json(r.try_get(4)?),
                    created_by: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                })
            },
        )
    }

    async fn delete_webhook(&self, id: &str) -> Result<()> {
        let c = self.client().await?;
        let n = exec(&c, "DELETE FROM webhooks WHERE id = $1", &[&id]).await?;
        touched(n, "webhook", id.to_string())
    }

    async fn queue_webhook_event(
        &self,
        tenant: &str,
        event: &str,
        body: &str,
        at: i64,
    ) -> Result<usize> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let hooks = rows(
            &tx,
            "SELECT id, events FROM webhooks WHERE tenant = $1",
            &[&tenant],
        )
        .await?;
        let mut n = 0;
        for h in hooks {
            let id: String = h.try_get(0)?;
            let events = from_json(h.try_get(1)?);
            if !events.iter().any(|e| e == event) {
                continue;
            }
            exec(
                &tx,
                "INSERT INTO webhook_deliveries (webhook_id, event, body, state, next_attempt, created_at, updated_at) VALUES ($1, $2, $3, 'pending', $4, $4, $4)",
                &[&id, &event, &body, &at],
            )
            .await?;
            n += 1;
        }
        tx.commit().await?;
        Ok(n)
    }

    async fn add_webhook_delivery(&self, d: &WebhookDelivery) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO webhook_deliveries (webhook_id, event, body, attempts, state, last_status, last_error, next_attempt, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &[&d.webhook_id, &d.event, &d.body, &i64::from(d.attempts), &d.state, &d.last_status.map(i64::from), &d.last_error, &d.next_attempt, &d.created_at, &d.updated_at],
        )
        .await?;
        Ok(())
    }

    async fn claim_webhook_deliveries(
        &self,
        now: i64,
        lease_ms: i64,
        n: usize,
    ) -> Result<Vec<WebhookDelivery>> {
        let c = self.client().await?;
        // Rows another node is claiming right now are skipped, not waited for.
        let mut claimed = each(
            rows(
                &c,
                &format!(
                    "UPDATE webhook_deliveries SET next_attempt = $3 WHERE id IN (
                       SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt <= $1
                       ORDER BY next_attempt, id LIMIT $2 FOR UPDATE SKIP LOCKED)
                     RETURNING {DELIVERY_COLUMNS}"
                ),
                &[&now, &limit(n), &now.saturating_add(lease_ms)],
            )
            .await?,
            delivery_row,
        )?;
        claimed.sort_by_key(|d| d.id);
        Ok(claimed)
    }

    async fn update_webhook_delivery(&self, d: &WebhookDelivery) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE webhook_deliveries SET attempts = $2, state = $3, last_status = $4, last_error = $5, next_attempt = $6, updated_at = $7 WHERE id = $1",
            &[&d.id, &i64::from(d.attempts), &d.state, &d.last_status.map(i64::from), &d.last_error, &d.next_attempt, &d.updated_at],
        )
        .await?;
        Ok(())
    }

    async fn webhook_deliveries(&self, webhook_id: &str, n: usize) -> Result<Vec<WebhookDelivery>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!("SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2"),
                &[&webhook_id, &limit(n)],
            )
            .await?,
            delivery_row,
        )
    }

    async fn add_account(&self, a: &Account) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            &format!("INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"),
            &[&a.id, &a.email.to_ascii_lowercase(), &a.role, &a.tenant, &a.password_hash, &a.totp_secret, &json(&a.recovery_codes), &a.setup_token_hash, &a.setup_expires_at, &i64::from(a.failed_logins), &a.locked_until, &a.created_at, &a.last_login_at, &a.language],
        )
        .await
        .map_err(|e| reunique(e, "account", &a.email))?;
        Ok(())
    }

    async fn account(&self, id: &str) -> Result<Option<Account>> {
        let c = self.client().await?;
        row(
            &c,
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1"),
            &[&id],
        )
        .await?
        .map(|r| account_row(&r))
        .transpose()
    }

    async fn account_by_email(&self, email: &str) -> Result<Option<Account>> {
        let email = email.trim().to_ascii_lowercase();
        let c = self.client().await?;
        row(
            &c,
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE email = $1"),
            &[&email],
        )
        .await?
        .map(|r| account_row(&r))
        .transpose()
    }

    async fn accounts(&self, tenant: Option<&str>) -> Result<Vec<Account>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE {} ORDER BY email",
                    one_or_all("tenant", tenant.is_some())
                ),
                &[&tenant],
            )
            .await?,
            account_row,
        )
    }

    async fn update_account(&self, a: &Account) -> Result<()> {
        let c = self.client().await?;
        let n = exec(
            &c,
            "UPDATE accounts SET password_hash = $2, totp_secret = $3, recovery_codes = $4, setup_token_hash = $5, setup_expires_at = $6, failed_logins = $7, locked_until = $8, last_login_at = $9, language = $10 WHERE id = $1",
            &[&a.id, &a.password_hash, &a.totp_secret, &json(&a.recovery_codes), &a.setup_token_hash, &a.setup_expires_at, &i64::from(a.failed_logins), &a.locked_until, &a.last_login_at, &a.language],
        )
        .await?;
        touched(n, "account", a.email.clone())
    }

    async fn account_by_setup(&self, token_hash: &str) -> Result<Option<Account>> {
        let c = self.client().await?;
        row(
            &c,
            &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE setup_token_hash = $1"),
            &[&token_hash],
        )
        .await?
        .map(|r| account_row(&r))
        .transpose()
    }

    async fn add_session(&self, s: &Session) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO sessions (id_hash, account_id, csrf, mfa, client, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[&s.id_hash, &s.account_id, &s.csrf, &s.mfa, &s.client, &s.created_at, &s.expires_at],
        )
        .await?;
        // Expired sessions go as new ones come.
        exec(
            &c,
            "DELETE FROM sessions WHERE expires_at < $1",
            &[&s.created_at],
        )
        .await?;
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<Session>> {
        let c = self.client().await?;
        row(
            &c,
            "SELECT id_hash, account_id, csrf, mfa, client, created_at, expires_at FROM sessions WHERE id_hash = $1",
            &[&id_hash],
        )
        .await?
        .map(|r| {
            Ok(Session {
                id_hash: r.try_get(0)?,
                account_id: r.try_get(1)?,
                csrf: r.try_get(2)?,
                mfa: r.try_get(3)?,
                client: r.try_get(4)?,
                created_at: r.try_get(5)?,
                expires_at: r.try_get(6)?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        let c = self.client().await?;
        exec(&c, "DELETE FROM sessions WHERE id_hash = $1", &[&id_hash]).await?;
        Ok(())
    }

    async fn record_trace(&self, events: std::sync::Arc<[TraceEvent]>) -> Result<()> {
        // Three statements a batch, whatever its size: each table's rows go as arrays.
        let mut msg: (
            Vec<&str>,
            Vec<i64>,
            Vec<&str>,
            Vec<Option<&str>>,
            Vec<&str>,
            Vec<&str>,
            Vec<i64>,
        ) = Default::default();
        // A recipient's status is the last one the batch gives it (as one upsert after
        // another would leave it); one row per recipient, since a statement may touch a row once.
        let rcpt = Recipients::of(&events);
        let mut ev: (Vec<&str>, Vec<i64>, Vec<&str>, Vec<Option<&str>>, Vec<&str>) =
            Default::default();
        for e in events.iter() {
            if let Some(s) = &e.summary {
                msg.0.push(&e.message_id);
                msg.1.push(e.at);
                msg.2.push(&s.sender);
                msg.3.push(s.tenant.as_deref());
                msg.4.push(&s.origin);
                msg.5.push(&s.client_ip);
                msg.6.push(i64::try_from(s.size).unwrap_or(i64::MAX));
            }
            ev.0.push(&e.message_id);
            ev.1.push(e.at);
            ev.2.push(e.kind.as_str());
            ev.3.push(e.recipient.as_deref());
            ev.4.push(&e.detail);
        }
        let (r_ids, r_addrs, r_status): (Vec<&str>, Vec<&str>, Vec<&str>) = (
            rcpt.rows.iter().map(|r| r.0).collect(),
            rcpt.rows.iter().map(|r| r.1.as_str()).collect(),
            rcpt.rows.iter().map(|r| r.2).collect(),
        );
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        if !msg.0.is_empty() {
            exec(
                &tx,
                "INSERT INTO trace_messages (message_id, received_at, sender, tenant, origin, client_ip, size)
                 SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
                 ON CONFLICT (message_id) DO NOTHING",
                &[&msg.0, &msg.1, &msg.2, &msg.3, &msg.4, &msg.5, &msg.6],
            )
            .await?;
        }
        if !r_ids.is_empty() {
            exec(
                &tx,
                "INSERT INTO trace_recipients (message_id, address, status)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
                 ON CONFLICT (message_id, address) DO UPDATE SET status = excluded.status",
                &[&r_ids, &r_addrs, &r_status],
            )
            .await?;
        }
        if !ev.0.is_empty() {
            exec(
                &tx,
                "INSERT INTO trace_events (message_id, at, kind, recipient, detail)
                 SELECT m, a, k, r, d
                 FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS e(m, a, k, r, d, n)
                 ORDER BY n",
                &[&ev.0, &ev.1, &ev.2, &ev.3, &ev.4],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn prune(&self, trace_before: i64, audit_before: i64, n: usize) -> Result<Pruned> {
        let n = limit(n.max(1));
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        let ids: Vec<String> = each(
            rows(
                &tx,
                "SELECT message_id FROM trace_messages WHERE received_at < $1 ORDER BY received_at LIMIT $2",
                &[&trace_before, &n],
            )
            .await?,
            |r| Ok(r.try_get(0)?),
        )?;
        for table in ["trace_events", "trace_recipients", "trace_messages"] {
            exec(
                &tx,
                &format!("DELETE FROM {table} WHERE message_id = ANY($1)"),
                &[&ids],
            )
            .await?;
        }
        let mut deleted = [0usize; 3];
        for (i, sql) in [
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < $1 ORDER BY id LIMIT $2)",
            "DELETE FROM alerts WHERE id IN (SELECT id FROM alerts WHERE at < $1 ORDER BY id LIMIT $2)",
            "DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries WHERE created_at < $1 AND state <> 'pending' ORDER BY id LIMIT $2)",
        ]
        .into_iter()
        .enumerate()
        {
            deleted[i] = unsigned(i64::try_from(exec(&tx, sql, &[&audit_before, &n]).await?).unwrap_or(i64::MAX));
        }
        tx.commit().await?;
        Ok(Pruned {
            trace_messages: ids.len(),
            audit: deleted[0],
            alerts: deleted[1],
            webhook_deliveries: deleted[2],
        })
    }

    async fn search_trace(&self, q: &TraceQuery) -> Result<Vec<TraceMessage>> {
        // Messages alone, with a recipient's address or status as a condition on them (as in
        // the SQLite engine): the planner can then walk the newest messages and stop at the
        // limit. Over the join, two million messages: a tenant's newest 127 ms -> 0.5 ms,
        // status Delivered 20 ms -> 0.8 ms; rare statuses 70-160 ms -> 95-105 ms.
        let mut sql = String::from(
            "SELECT m.message_id, m.received_at, m.sender, m.tenant, m.origin, m.client_ip, m.size
             FROM trace_messages m WHERE TRUE",
        );
        let mut clauses: Vec<(&str, &(dyn ToSql + Sync))> = Vec::new();
        if let Some(v) = &q.message_id {
            clauses.push((" AND m.message_id = ?", v));
        }
        let sender = q.sender.as_deref().map(crate::address_forms);
        if let Some([ascii, unicode]) = &sender {
            clauses.push((" AND lower(m.sender) IN (lower(?)", ascii));
            clauses.push((", lower(?))", unicode));
        }
        if let Some(v) = &q.tenant {
            clauses.push((" AND m.tenant = ?", v));
        }
        const TO: &str = " AND m.message_id IN (SELECT message_id FROM trace_recipients WHERE address IN (lower(?)";
        let recipient = q.recipient.as_deref().map(crate::address_forms);
        match (&recipient, &q.status) {
            (Some([ascii, unicode]), Some(st)) => {
                clauses.push((TO, ascii));
                clauses.push((", lower(?))", unicode));
                clauses.push((" AND status = ?)", st));
            }
            (Some([ascii, unicode]), None) => {
                clauses.push((TO, ascii));
                clauses.push((", lower(?)))", unicode));
            }
            (None, Some(st)) => clauses.push((
                " AND EXISTS (SELECT 1 FROM trace_recipients r WHERE r.message_id = m.message_id AND r.status = ?)",
                st,
            )),
            (None, None) => {}
        }
        if let Some(v) = &q.since {
            clauses.push((" AND m.received_at >= ?", v));
        }
        if let Some(v) = &q.until {
            clauses.push((" AND m.received_at <= ?", v));
        }
        let mut args = Vec::with_capacity(clauses.len());
        for (clause, v) in clauses {
            args.push(v);
            sql.push_str(&clause.replace('?', &format!("${}", args.len())));
        }
        let n = if q.limit == 0 {
            100
        } else {
            q.limit.min(10_000)
        };
        sql.push_str(&format!(
            " ORDER BY m.received_at DESC, m.message_id DESC LIMIT {n}"
        ));
        let c = self.client().await?;
        let mut found = each(rows(&c, &sql, &args).await?, |r| {
            Ok(TraceMessage {
                message_id: r.try_get(0)?,
                received_at: r.try_get(1)?,
                sender: r.try_get(2)?,
                tenant: r.try_get(3)?,
                origin: r.try_get(4)?,
                client_ip: r.try_get(5)?,
                size: unsigned(r.try_get(6)?),
                recipients: Vec::new(),
                events: Vec::new(),
            })
        })?;
        for m in &mut found {
            m.recipients = each(
                rows(
                    &c,
                    "SELECT address, status FROM trace_recipients WHERE message_id = $1 ORDER BY address",
                    &[&m.message_id],
                )
                .await?,
                |r| {
                    Ok(TraceRecipient {
                        address: r.try_get(0)?,
                        status: r.try_get(1)?,
                    })
                },
            )?;
            m.events = each(
                rows(
                    &c,
                    "SELECT at, kind, recipient, detail FROM trace_events WHERE message_id = $1 ORDER BY at, id",
                    &[&m.message_id],
                )
                .await?,
                |r| {
                    Ok(TraceEventRow {
                        at: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        recipient: r.try_get(2)?,
                        detail: r.try_get(3)?,
                    })
                },
            )?;
        }
        Ok(found)
    }

    async fn daily_traffic(&self, tenant: &str, since: i64) -> Result<Vec<DayTraffic>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT (m.received_at / 86400000) * 86400000 AS day, COUNT(*),
                            COALESCE(SUM((SELECT COUNT(*) FROM trace_recipients r WHERE r.message_id = m.message_id)), 0)::bigint,
                            COUNT(*) FILTER (WHERE {SUSPICIOUS})
                     FROM trace_messages m WHERE m.tenant = $1 AND m.received_at >= $2
                     GROUP BY day ORDER BY day"
                ),
                &[&tenant, &since],
            )
            .await?,
            |r| {
                Ok(DayTraffic {
                    day_start: r.try_get(0)?,
                    messages: unsigned(r.try_get(1)?),
                    recipients: unsigned(r.try_get(2)?),
                    suspicious: unsigned(r.try_get(3)?),
                })
            },
        )
    }

    async fn replay_trace(&self, tenant: &str, since: i64, n: usize) -> Result<Vec<ReplayRow>> {
        let c = self.client().await?;
        each(
            rows(
                &c,
                &format!(
                    "SELECT m.received_at, m.message_id, m.sender, m.origin, m.client_ip,
                            (SELECT string_agg(r.address, ' ') FROM trace_recipients r WHERE r.message_id = m.message_id),
                            {SUSPICIOUS}
                     FROM trace_messages m WHERE m.tenant = $1 AND m.received_at >= $2
                     ORDER BY m.received_at, m.message_id LIMIT $3"
                ),
                &[&tenant, &since, &limit(n)],
            )
            .await?,
            |r| {
                let rcpts: Option<String> = r.try_get(5)?;
                Ok(ReplayRow {
                    at: r.try_get(0)?,
                    message_id: r.try_get(1)?,
                    sender: r.try_get(2)?,
                    origin: r.try_get(3)?,
                    client_ip: r.try_get(4)?,
                    recipients: rcpts
                        .unwrap_or_default()
                        .split(' ')
                        .filter(|a| !a.is_empty())
                        .map(str::to_string)
                        .collect(),
                    suspicious: r.try_get(6)?,
                })
            },
        )
    }
}
