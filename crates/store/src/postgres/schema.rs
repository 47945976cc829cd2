//! The PostgreSQL schema, in steps applied in order (the index + 1 is the schema version). The
//! first step is the embedded engine's schema as of its eleventh step, in PostgreSQL's types:
//! times are Unix milliseconds in `BIGINT`, flags are `BOOLEAN`, lists are JSON text (as in
//! SQLite, so both engines read and write the same values).

pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO meta VALUES ('directory_version', 1), ('restrictions_version', 1);
CREATE TABLE tenants (
    name TEXT PRIMARY KEY,
    language TEXT NOT NULL DEFAULT 'en',
    subscription_ends TEXT,
    admins TEXT NOT NULL DEFAULT '[]',
    managed_by_config BOOLEAN NOT NULL DEFAULT FALSE,
    forwarding TEXT NOT NULL DEFAULT 'on' CHECK (forwarding IN ('on', 'off', 'listed')),
    forwarding_domains TEXT NOT NULL DEFAULT '[]',
    limits TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX tenants_subscription ON tenants (subscription_ends) WHERE subscription_ends IS NOT NULL;
CREATE TABLE domains (
    name TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    match_subdomains BOOLEAN NOT NULL DEFAULT FALSE,
    verified BOOLEAN NOT NULL DEFAULT FALSE,
    verification_token TEXT NOT NULL
);
CREATE INDEX domains_tenant ON domains (tenant);
-- Suffix searches (a new domain's subdomains already claimed) read this index.
CREATE INDEX domains_reversed ON domains (reverse(name) text_pattern_ops);
CREATE TABLE connectors (
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    ips TEXT NOT NULL DEFAULT '[]',
    cert_name TEXT,
    require_tls BOOLEAN NOT NULL DEFAULT FALSE,
    relay_unregistered BOOLEAN NOT NULL DEFAULT FALSE,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    reviewed BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE users (
    address TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    aliases TEXT NOT NULL DEFAULT '[]',
    password_hash TEXT,
    forward_to TEXT,
    forward_only BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX users_tenant ON users (tenant);
CREATE TABLE routes (
    domain TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    host TEXT NOT NULL
);
CREATE INDEX routes_tenant ON routes (tenant);
CREATE TABLE trace_messages (
    message_id TEXT PRIMARY KEY,
    received_at BIGINT NOT NULL,
    sender TEXT NOT NULL,
    tenant TEXT,
    origin TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    size BIGINT NOT NULL
);
CREATE INDEX trace_messages_received ON trace_messages (received_at);
CREATE INDEX trace_messages_sender ON trace_messages (lower(sender));
CREATE INDEX trace_messages_tenant ON trace_messages (tenant, received_at);
CREATE TABLE trace_recipients (
    message_id TEXT NOT NULL,
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (message_id, address)
);
CREATE INDEX trace_recipients_address ON trace_recipients (address);
CREATE TABLE trace_events (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    recipient TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX trace_events_message ON trace_events (message_id);
CREATE TABLE restrictions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX restrictions_tenant ON restrictions (tenant, state);
CREATE TABLE alerts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant TEXT NOT NULL,
    at BIGINT NOT NULL,
    severity TEXT NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX alerts_tenant ON alerts (tenant, at);
-- Each node's own counts of each tenant; a tenant's cluster-wide counts are the sum.
CREATE TABLE counters (
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node, tenant)
);
CREATE INDEX counters_updated ON counters (updated_at);
-- Attempts counted per key over a window (sign-ins per client address, on every node).
CREATE TABLE attempts (key TEXT NOT NULL, at BIGINT NOT NULL);
CREATE INDEX attempts_key ON attempts (key, at);
-- Each node's counts of bulk fingerprint bands (content seen by two recipients or more).
CREATE TABLE bulk_bands (
    node TEXT NOT NULL,
    band BIGINT NOT NULL,
    first BIGINT NOT NULL,
    recipients BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node, band)
);
CREATE INDEX bulk_bands_updated ON bulk_bands (updated_at);
CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT,
    action TEXT NOT NULL,
    client TEXT NOT NULL,
    mfa BOOLEAN NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX audit_tenant ON audit (tenant, at);
CREATE TABLE dismissed_domains (
    tenant TEXT NOT NULL,
    domain TEXT NOT NULL,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (tenant, domain)
);
CREATE TABLE attestations (
    restriction_id TEXT PRIMARY KEY,
    actor TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'reader')),
    tenant TEXT REFERENCES tenants(name) ON DELETE CASCADE,
    secret_hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    last_used_at BIGINT,
    revoked_at BIGINT,
    CHECK ((role = 'operator') = (tenant IS NULL))
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant);
-- Not tied to the domains table: a configuration-managed tenant is re-provisioned at every
-- start, and its published keys must survive that.
CREATE TABLE dkim_keys (
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL CHECK (algorithm IN ('rsa-sha256', 'ed25519-sha256')),
    private_key TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'active', 'retiring', 'retired')),
    state_since BIGINT NOT NULL,
    PRIMARY KEY (domain, selector)
);
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants(name) ON DELETE CASCADE,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX webhooks_tenant ON webhooks (tenant);
CREATE TABLE webhook_deliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook_id TEXT NOT NULL REFERENCES webhooks(id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    last_status BIGINT,
    last_error TEXT,
    next_attempt BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);
CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL CHECK (role IN ('operator', 'admin', 'reader')),
    tenant TEXT REFERENCES tenants(name) ON DELETE CASCADE,
    password_hash TEXT,
    totp_secret TEXT,
    recovery_codes TEXT NOT NULL DEFAULT '[]',
    setup_token_hash TEXT UNIQUE,
    setup_expires_at BIGINT,
    failed_logins BIGINT NOT NULL DEFAULT 0,
    locked_until BIGINT,
    created_at BIGINT NOT NULL,
    last_login_at BIGINT,
    language TEXT,
    CHECK ((role = 'operator') = (tenant IS NULL))
);
CREATE INDEX accounts_tenant ON accounts (tenant);
CREATE TABLE sessions (
    id_hash TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf TEXT NOT NULL,
    mfa BOOLEAN NOT NULL,
    client TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE TABLE auth_lockouts (
    account TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    at BIGINT NOT NULL,
    until BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    client TEXT NOT NULL
);
CREATE INDEX auth_lockouts_tenant ON auth_lockouts (tenant, until);
"#,
    // 2: attempts of every key older than the longest window go at each count (by time).
    r#"
CREATE INDEX attempts_at ON attempts (at);
"#,
    // 3: each node's count of long-waiting messages per tenant; the "messages delayed" alert
    // reads the sum.
    r#"
CREATE TABLE delayed (
    node TEXT NOT NULL,
    tenant TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (node, tenant)
);
CREATE INDEX delayed_updated ON delayed (updated_at);
"#,
    // 4: recipient domains' MTA-STS policies, kept for their max_age.
    r#"
CREATE TABLE mta_sts_policies (
    domain TEXT PRIMARY KEY,
    id TEXT NOT NULL,
    policy TEXT NOT NULL,
    fetched_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX mta_sts_policies_expires ON mta_sts_policies (expires_at);
"#,
    // 5: every connector's source-address ranges as spans (crate::spans), so a new connector's
    // overlap check reads two index ranges instead of every connector; rows written before are
    // indexed by `claims::index_claims` in the same step. One tenant's counters by tenant.
    r#"
CREATE TABLE connector_ranges (
    tenant TEXT NOT NULL,
    connector TEXT NOT NULL,
    lo TEXT COLLATE "C" NOT NULL,
    hi TEXT COLLATE "C" NOT NULL,
    FOREIGN KEY (tenant, connector) REFERENCES connectors (tenant, name) ON DELETE CASCADE
);
CREATE INDEX connector_ranges_lo ON connector_ranges (lo, hi);
CREATE INDEX connector_ranges_connector ON connector_ranges (tenant, connector);
CREATE INDEX counters_tenant ON counters (tenant, node);
"#,
    // 6: tenant names in any letter case, so that a new tenant whose name differs from
    // another's only in case is refused. Not UNIQUE: a database may hold such a pair from
    // before, and must still open.
    r#"
CREATE INDEX IF NOT EXISTS tenants_name_lower ON tenants (lower(name));
"#,
    // 7: operators' actions on a selection of the queue, or on one message by its id, passed
    // on to every node.
    // IF NOT EXISTS: a test rolls the version back past earlier steps and opens the store again.
    r#"
CREATE TABLE IF NOT EXISTS queue_orders (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
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
    // 8: the nodes running (each notes itself every few seconds), and operators' looks at the
    // queue asked of one node and answered by every other, each from its own queue.
    // IF NOT EXISTS: a test rolls the version back past earlier steps and opens the store again.
    r#"
CREATE TABLE IF NOT EXISTS cluster_nodes (
    name TEXT PRIMARY KEY,
    seen_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS queue_reads (
    id BIGSERIAL PRIMARY KEY,
    at BIGINT NOT NULL,
    node TEXT NOT NULL,
    kind TEXT NOT NULL,
    tenant TEXT,
    domain TEXT,
    sender TEXT,
    message TEXT,
    by_sender BOOLEAN NOT NULL,
    max_rows BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_reads_at ON queue_reads (at);
CREATE TABLE IF NOT EXISTS queue_answers (
    read_id BIGINT NOT NULL,
    node TEXT NOT NULL,
    at BIGINT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (read_id, node)
);
CREATE INDEX IF NOT EXISTS queue_answers_at ON queue_answers (at);
"#,
];
