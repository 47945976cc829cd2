//! The embedded engine's schema, in steps applied in order (the index + 1 is the schema version,
//! kept in SQLite's `user_version`).

/// Schema steps, applied in order; the index + 1 is the schema version.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('directory_version', 1);
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    language TEXT NOT NULL DEFAULT 'en',
    subscription_ends TEXT,
    admins TEXT NOT NULL DEFAULT '[]',
    managed_by_config INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    match_subdomains INTEGER NOT NULL DEFAULT 0,
    verified INTEGER NOT NULL DEFAULT 0,
    verification_token TEXT NOT NULL
);
CREATE TABLE connectors (
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    ips TEXT NOT NULL DEFAULT '[]',
    cert_name TEXT,
    require_tls INTEGER NOT NULL DEFAULT 0,
    relay_unregistered INTEGER NOT NULL DEFAULT 0,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    reviewed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE users (
    address TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    aliases TEXT NOT NULL DEFAULT '[]',
    password_hash TEXT,
    forward_to TEXT
);
CREATE TABLE routes (
    domain TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    host TEXT NOT NULL
);
CREATE TABLE trace_messages (
    message_id TEXT PRIMARY KEY,
    received_at INTEGER NOT NULL,
    sender TEXT NOT NULL,
    tenant TEXT,
    origin TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX trace_messages_received ON trace_messages(received_at);
CREATE INDEX trace_messages_sender ON trace_messages(sender);
CREATE TABLE trace_recipients (
    message_id TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX trace_recipients_address ON trace_recipients(address);
CREATE TABLE trace_events (
    message_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX trace_events_message ON trace_events(message_id);
"#,
    r#"
INSERT INTO meta VALUES ('restrictions_version', 1);
CREATE TABLE restrictions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX restrictions_tenant ON restrictions(tenant, state);
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    at INTEGER NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX alerts_tenant ON alerts(tenant, at);
CREATE TABLE counters (
    tenant TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    client TEXT NOT NULL,
    mfa INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_tenant ON audit(tenant, at);
CREATE TABLE dismissed_domains (
    tenant TEXT NOT NULL,
    domain TEXT NOT NULL,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (tenant, domain)
);
CREATE TABLE attestations (
    restriction_id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL
);
"#,
    // 3: API tokens.
    r#"
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'reader')),
    tenant TEXT REFERENCES tenants(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    last_used_at INTEGER,
    revoked_at INTEGER,
    CHECK ((role = 'operator') = (tenant IS NULL))
);
CREATE INDEX api_tokens_tenant ON api_tokens(tenant);
"#,
    // 4: forwarding controls and DKIM keys. Keys are not tied to the domains table: a
    // configuration-managed tenant is re-provisioned at every start, and its published keys must
    // survive that.
    r#"
ALTER TABLE tenants ADD COLUMN forwarding TEXT NOT NULL DEFAULT 'on' CHECK (forwarding IN ('on', 'off', 'listed'));
ALTER TABLE tenants ADD COLUMN forwarding_domains TEXT NOT NULL DEFAULT '[]';
ALTER TABLE users ADD COLUMN forward_only INTEGER NOT NULL DEFAULT 0;
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    state_since INTEGER NOT NULL,
    PRIMARY KEY (domain, selector)
);
"#,
    // 5: webhooks and their delivery log (the log doubles as the durable retry queue).
    r#"
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks(tenant);
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_status INTEGER,
    last_error TEXT,
    next_attempt INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_attempt);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries(webhook_id, id);
"#,
    // 6: accounts (admin center, support console) and their sessions.
    r#"
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'reader')),
    tenant TEXT REFERENCES tenants(name) ON DELETE CASCADE,
    password_hash TEXT,
    totp_secret TEXT,
    recovery_codes TEXT NOT NULL DEFAULT '[]',
    setup_token_hash TEXT UNIQUE,
    setup_expires_at INTEGER,
    failed_logins INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER,
    CHECK ((role = 'operator') = (tenant IS NULL))
);
CREATE INDEX accounts_tenant ON accounts(tenant);
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    mfa INTEGER NOT NULL,
    client TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
"#,
    // 7: per-tenant limit overrides set through the API (configured tenants keep theirs in
    // the configuration file).
    r#"
ALTER TABLE tenants ADD COLUMN limits TEXT NOT NULL DEFAULT '{}';
"#,
    // 8: SMTP AUTH lockouts of known accounts, for the counters view and the API.
    r#"
CREATE TABLE auth_lockouts (
    account TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    at INTEGER NOT NULL,
    until INTEGER NOT NULL,
    failures INTEGER NOT NULL,
    client TEXT NOT NULL
);
CREATE INDEX auth_lockouts_tenant ON auth_lockouts (tenant, until);
"#,
    // 9: a tenant's traced messages by time (traffic charts, what-if replays).
    r#"
CREATE INDEX trace_messages_tenant ON trace_messages (tenant, received_at);
"#,
    // 10: an account's own console language (`en`, `es`; none: the tenant's, else the browser's).
    r#"
ALTER TABLE accounts ADD COLUMN language TEXT;
"#,
    // 11: tenants whose subscription has ended (the support console's filter).
    r#"
CREATE INDEX tenants_subscription ON tenants (subscription_ends) WHERE subscription_ends IS NOT NULL;
"#,
    // 12: counters per node and tenant (cluster mode sums the nodes'); rows saved before keep
    // the name '' and age out of the windows like any other.
    r#"
ALTER TABLE counters RENAME TO counters_before_nodes;
CREATE TABLE counters (
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (node, tenant)
);
CREATE INDEX counters_updated ON counters (updated_at);
INSERT INTO counters (node, tenant, body, updated_at) SELECT '', tenant, body, updated_at FROM counters_before_nodes;
DROP TABLE counters_before_nodes;
"#,
    // 13: attempts counted per key over a window (sign-ins per client address).
    r#"
CREATE TABLE attempts (key TEXT NOT NULL, at INTEGER NOT NULL);
CREATE INDEX attempts_key ON attempts (key, at);
"#,
    // 14: bulk fingerprint bands per node (cluster mode; kept here so both engines are alike).
    r#"
CREATE TABLE bulk_bands (
    node TEXT NOT NULL,
    band INTEGER NOT NULL,
    first INTEGER NOT NULL,
    recipients INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (node, band)
);
CREATE INDEX bulk_bands_updated ON bulk_bands (updated_at);
"#,
    // 15: attempts of every key older than the longest window go at each count (by time).
    r#"
CREATE INDEX attempts_at ON attempts (at);
"#,
    // 16: each node's count of long-waiting messages per tenant (cluster mode; kept here so
    // both engines are alike).
    r#"
CREATE TABLE delayed (
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (node, tenant)
);
CREATE INDEX delayed_updated ON delayed (updated_at);
"#,
    // 17: recipient domains' MTA-STS policies, kept for their max_age.
    r#"
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    policy TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX mta_sts_policies_expires ON mta_sts_policies (expires_at);
"#,
    // 18: one tenant's requests and the claim checks read indexes instead of every tenant's
    // rows: a tenant's domains, users, routes and counters by tenant; names below a new domain
    // by their reversed spelling; the source-address ranges of every connector as spans
    // (crate::spans). Rows written before are indexed by `index_claims` in the same step.
    r#"
CREATE INDEX domains_tenant ON domains (tenant);
CREATE INDEX users_tenant ON users (tenant);
CREATE INDEX routes_tenant ON routes (tenant);
CREATE INDEX counters_tenant ON counters (tenant, node);
ALTER TABLE domains ADD COLUMN reversed TEXT NOT NULL DEFAULT '';
CREATE INDEX domains_reversed ON domains (reversed);
CREATE TABLE connector_ranges (
    tenant TEXT NOT NULL,
    connector TEXT NOT NULL,
    lo TEXT NOT NULL,
    hi TEXT NOT NULL,
    FOREIGN KEY (tenant, connector) REFERENCES connectors (tenant, name) ON DELETE CASCADE
);
CREATE INDEX connector_ranges_lo ON connector_ranges (lo, hi);
CREATE INDEX connector_ranges_connector ON connector_ranges (tenant, connector);
"#,
    // 19: a trace search by sender compares lowercased senders, which the index of senders as
    // written could not serve: every message of the trace was read (1.4 s for two million,
    // holding the store's one connection). PostgreSQL's index was of lower(sender) from the
    // start.
    r#"
DROP INDEX trace_messages_sender;
CREATE INDEX trace_messages_sender ON trace_messages (lower(sender));
"#,
    // 20: tenant names in any letter case, so that a new tenant whose name differs from
    // another's only in case is refused (names are ASCII: SQLite's lower() is enough). Not
    // UNIQUE: a database may hold such a pair from before, and must still open.
    r#"
CREATE INDEX IF NOT EXISTS tenants_name_lower ON tenants (lower(name));
"#,
    // 21: operators' actions on a selection of the queue, as a cluster keeps them (one node on
    // SQLite has no other node to pass them on to; the table keeps the two engines alike).
    // IF NOT EXISTS: a test rolls the version back past earlier steps and opens the store again.
    r#"
CREATE TABLE IF NOT EXISTS queue_orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    node TEXT NOT NULL,
    action TEXT NOT NULL,
    tenant TEXT,
    domain TEXT,
    sender TEXT,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    client TEXT NOT NULL,
    message TEXT
);
CREATE INDEX IF NOT EXISTS queue_orders_at ON queue_orders (at);
"#,
    // 22: the nodes running (each notes itself every few seconds), and operators' looks at the
    // queue asked of one node and answered by every other, each from its own queue (one node on
    // SQLite has no other to ask; the tables keep the two engines alike).
    // IF NOT EXISTS: a test rolls the version back past earlier steps and opens the store again.
    r#"
CREATE TABLE IF NOT EXISTS cluster_nodes (
    name TEXT PRIMARY KEY,
    seen_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_reads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant TEXT,
    domain TEXT,
    sender TEXT,
    message TEXT,
    by_sender INTEGER NOT NULL,
    max_rows INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_reads_at ON queue_reads (at);
CREATE TABLE IF NOT EXISTS queue_answers (
    read_id INTEGER NOT NULL,
    node TEXT NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (read_id, node)
);
CREATE INDEX IF NOT EXISTS queue_answers_at ON queue_answers (at);
"#,
];

/// The schema version whose step made the claim indexes; rows written before it are indexed
/// when it runs.
pub(super) const CLAIM_INDEXES: usize = 18;
