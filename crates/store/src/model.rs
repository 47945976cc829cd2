//! The data model shared by the store engines and the tenancy directory.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Tenant {
    pub name: String,
    /// `en` or `es`: NDRs and console.
    pub language: String,
    /// `YYYY-MM-DD`, inclusive.
    pub subscription_ends: Option<String>,
    pub admins: Vec<String>,
    pub managed_by_config: bool,
    /// Automatic forwarding of users' mail to outside addresses (SPEC section 5).
    #[serde(default)]
    pub forwarding: Forwarding,
    /// With `Forwarding::Listed`: the domains users may forward to.
    #[serde(default)]
    pub forwarding_domains: Vec<String>,
}

impl Tenant {
    /// A tenant with nothing set but its name, as one is made when only the name is given:
    /// English, no end to its subscription, no admins, forwarding as by default.
    pub fn named(name: impl Into<String>) -> Tenant {
        Tenant {
            name: name.into(),
            language: "en".into(),
            subscription_ends: None,
            admins: Vec::new(),
            managed_by_config: false,
            forwarding: Forwarding::default(),
            forwarding_domains: Vec::new(),
        }
    }
}

/// A tenant's automatic forwarding control, as large hosted services offer it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Forwarding {
    #[default]
    On,
    Off,
    /// Only to the domains in `forwarding_domains`.
    Listed,
}

impl Forwarding {
    pub fn as_str(self) -> &'static str {
        match self {
            Forwarding::On => "on",
            Forwarding::Off => "off",
            Forwarding::Listed => "listed",
        }
    }

    pub fn parse(s: &str) -> Option<Forwarding> {
        match s {
            "on" => Some(Forwarding::On),
            "off" => Some(Forwarding::Off),
            "listed" => Some(Forwarding::Listed),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DomainKind {
    /// All recipients are known users; unknown ones are refused.
    Authoritative,
    /// Unknown recipients are routed on to the tenant's own servers.
    InternalRelay,
}

impl DomainKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainKind::Authoritative => "authoritative",
            DomainKind::InternalRelay => "internal_relay",
        }
    }

    pub fn parse(s: &str) -> Option<DomainKind> {
        match s.replace('-', "_").as_str() {
            "authoritative" => Some(DomainKind::Authoritative),
            "internal_relay" => Some(DomainKind::InternalRelay),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Domain {
    pub tenant: String,
    pub name: String,
    pub kind: DomainKind,
    pub match_subdomains: bool,
    pub verified: bool,
    /// The token the tenant publishes in a TXT record to prove ownership.
    pub verification_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Connector {
    pub tenant: String,
    pub name: String,
    /// CIDR ranges (`192.0.2.0/24`, `2001:db8::/32`); a bare address means a single host.
    pub ips: Vec<String>,
    /// Name on the client certificate (`mail.contoso.example`, `*.contoso.example`).
    pub cert_name: Option<String>,
    pub require_tls: bool,
    /// May relay for sender domains that are not accepted domains of the tenant.
    pub relay_unregistered: bool,
    pub created_by: String,
    pub created_at: i64,
    pub reviewed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct User {
    pub tenant: String,
    pub address: String,
    pub aliases: Vec<String>,
    /// Argon2id PHC string for SMTP AUTH; `None` means the user cannot authenticate.
    pub password_hash: Option<String>,
    pub forward_to: Option<String>,
    /// Forward only (no copy to the tenant's own server); otherwise deliver and forward.
    #[serde(default)]
    pub forward_only: bool,
}

/// A user as the API and the audit log show it: whether it has a password, never the hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserView {
    pub address: String,
    pub aliases: Vec<String>,
    pub forward_to: Option<String>,
    pub forward_only: bool,
    pub has_password: bool,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            address: u.address.clone(),
            aliases: u.aliases.clone(),
            forward_to: u.forward_to.clone(),
            forward_only: u.forward_only,
            has_password: u.password_hash.is_some(),
        }
    }
}

/// Where a DKIM key is in its life: published and waiting, signing, kept published after a
/// rotation so mail in transit still verifies, or done with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum DkimKeyState {
    Pending,
    Active,
    Retiring,
    Retired,
}

impl DkimKeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            DkimKeyState::Pending => "pending",
            DkimKeyState::Active => "active",
            DkimKeyState::Retiring => "retiring",
            DkimKeyState::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<DkimKeyState> {
        match s {
            "pending" => Some(DkimKeyState::Pending),
            "active" => Some(DkimKeyState::Active),
            "retiring" => Some(DkimKeyState::Retiring),
            "retired" => Some(DkimKeyState::Retired),
            _ => None,
        }
    }
}

/// One DKIM signing key of an accepted domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DkimKey {
    pub domain: String,
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// PKCS#8, base64. Never leaves the store through the API.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub private_key: String,
    /// As published in the DNS record's `p=`, base64.
    pub public_key: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub state: DkimKeyState,
    /// Unix milliseconds.
    pub state_since: i64,
}

/// Where mail for one of a tenant's domains goes (its on-premises server), `host:port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Route {
    pub tenant: String,
    pub domain: String,
    pub host: String,
}

/// One tenant with everything of it, as configuration declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenantData {
    pub tenant: Option<Tenant>,
    pub domains: Vec<Domain>,
    pub connectors: Vec<Connector>,
    pub users: Vec<User>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Default)]
pub struct DirectoryData {
    pub tenants: Vec<Tenant>,
    pub domains: Vec<Domain>,
    pub connectors: Vec<Connector>,
    pub users: Vec<User>,
    pub routes: Vec<Route>,
}

/// One event in a message's life, for the trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceEvent {
    pub message_id: String,
    /// Unix milliseconds.
    pub at: i64,
    pub kind: TraceKind,
    pub recipient: Option<String>,
    pub detail: String,
    /// Set on `Received`: the message's summary row.
    pub summary: Option<TraceSummary>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceSummary {
    pub sender: String,
    pub tenant: Option<String>,
    pub origin: String,
    pub client_ip: String,
    pub size: u64,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum TraceKind {
    Received,
    Attributed,
    Scanned,
    Queued,
    Attempt,
    Delivered,
    Deferred,
    Failed,
    NdrSent,
    Expired,
    /// A copy made for a recipient's forwarding address (or refused).
    Forwarded,
    /// The recipient's mail left only as its forwarded copy (a forward-only user): the
    /// recipient's status is then `Expanded`, as a list's is when it became its members.
    Expanded,
    /// The message was refused at its end of data (the reply in the detail): its recipients
    /// are `Failed`.
    Refused,
    /// The message was refused at its end of data with a spam or bulk verdict: its
    /// recipients are `FilteredAsSpam`.
    FilteredAsSpam,
}

/// Every status a trace recipient can have, as searches name them.
pub const TRACE_STATUSES: &[&str] = &[
    "Delivered",
    "Failed",
    "Pending",
    "Deferred",
    "FilteredAsSpam",
    "Expanded",
];

impl TraceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TraceKind::Received => "received",
            TraceKind::Attributed => "attributed",
            TraceKind::Scanned => "scanned",
            TraceKind::Queued => "queued",
            TraceKind::Attempt => "attempt",
            TraceKind::Delivered => "delivered",
            TraceKind::Deferred => "deferred",
            TraceKind::Failed => "failed",
            TraceKind::NdrSent => "ndr_sent",
            TraceKind::Expired => "expired",
            TraceKind::Forwarded => "forwarded",
            TraceKind::Expanded => "expanded",
            TraceKind::Refused | TraceKind::FilteredAsSpam => "refused",
        }
    }

    /// The recipient status this event leaves behind, if it changes one.
    pub fn status(self) -> Option<&'static str> {
        match self {
            TraceKind::Queued => Some("Pending"),
            TraceKind::Delivered => Some("Delivered"),
            TraceKind::Deferred => Some("Deferred"),
            TraceKind::Failed | TraceKind::Expired | TraceKind::Refused => Some("Failed"),
            TraceKind::FilteredAsSpam => Some("FilteredAsSpam"),
            TraceKind::Expanded => Some("Expanded"),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct TraceQuery {
    pub message_id: Option<String>,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub tenant: Option<String>,
    /// `Delivered`, `Failed`, `Pending`, `Deferred`, `Expanded`.
    pub status: Option<String>,
    /// Unix milliseconds, inclusive.
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceMessage {
    pub message_id: String,
    pub received_at: i64,
    pub sender: String,
    pub tenant: Option<String>,
    pub origin: String,
    pub client_ip: String,
    pub size: u64,
    pub recipients: Vec<TraceRecipient>,
    pub events: Vec<TraceEventRow>,
}

/// One traced message of a tenant, as a what-if replay reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRow {
    pub at: i64,
    pub message_id: String,
    pub sender: String,
    /// `connector:<name> (<how>)`, `user:<address>`, `forward:…`.
    pub origin: String,
    pub client_ip: String,
    pub recipients: Vec<String>,
    /// The scanner judged it spam or bulk.
    pub suspicious: bool,
}

/// One UTC day of a tenant's traced mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DayTraffic {
    /// Unix ms of the day's midnight (UTC).
    pub day_start: i64,
    pub messages: u64,
    pub recipients: u64,
    /// Messages the scanner judged spam or bulk.
    pub suspicious: u64,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceRecipient {
    pub address: String,
    pub status: String,
}

#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TraceEventRow {
    pub at: i64,
    pub kind: String,
    pub recipient: Option<String>,
    pub detail: String,
}

/// A restriction as stored. The body is the guard's own record (JSON); the columns beside it
/// are what queries filter on.
/// One node's count of one bulk fingerprint band (cluster mode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkBandRow {
    pub node: String,
    /// The band's key (a 64-bit hash, kept as its signed bits).
    pub band: i64,
    /// When the node first saw the content (Unix ms).
    pub first: i64,
    /// External recipients the content reached on that node.
    pub recipients: i64,
    /// When it was saved (the store's clock).
    pub updated_at: i64,
}

/// A recipient domain's MTA-STS policy as last fetched (RFC 8461 section 5.1: a policy is
/// kept for its max_age, across restarts, and a cluster's nodes share it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtaStsRow {
    pub domain: String,
    /// The id of the TXT record it was fetched under.
    pub id: String,
    /// The policy file as fetched.
    pub policy: String,
    pub fetched_at: i64,
    /// When its max_age runs out (Unix ms).
    pub expires_at: i64,
}

/// One node's saved guard counters of one tenant (each node saves its own; a cluster's view of
/// a tenant is the sum of its nodes' rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterRow {
    pub node: String,
    pub tenant: String,
    /// The serialised counters.
    pub body: String,
    /// When it was saved (Unix ms; the database server's clock in cluster mode).
    pub updated_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RestrictionRow {
    pub id: String,
    pub tenant: String,
    pub kind: String,
    pub name: String,
    pub state: String,
    pub started_at: i64,
    pub updated_at: i64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AlertRow {
    pub id: i64,
    pub tenant: String,
    /// Unix milliseconds.
    pub at: i64,
    pub severity: String,
    pub kind: String,
    pub subject: String,
    pub text: String,
}

/// Rows one `Store::prune` call deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Pruned {
    pub trace_messages: usize,
    pub audit: usize,
    pub alerts: usize,
    pub webhook_deliveries: usize,
}

impl Pruned {
    pub fn total(&self) -> usize {
        self.trace_messages + self.audit + self.alerts + self.webhook_deliveries
    }
}

/// An account locked for SMTP AUTH after too many failed attempts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuthLockout {
    pub account: String,
    pub tenant: String,
    /// Unix milliseconds: when the lock started and when it ends.
    pub at: i64,
    pub until: i64,
    /// Failed attempts counted when it started.
    pub failures: u32,
    /// The client address of the last failed attempt.
    pub client: String,
}

/// One change by an admin, an operator or the relay itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub at: i64,
    pub actor: String,
    /// `admin`, `operator` or `system`.
    pub role: String,
    pub tenant: Option<String>,
    pub action: String,
    /// Where the change came from (`cli`, an IP address).
    pub client: String,
    pub mfa: bool,
    /// What changed (JSON: before and after where it applies).
    pub detail: String,
}

/// An API token for scripts: scoped to one tenant (admin or reader) or to the
/// operator role. Only a hash of its secret is kept; the secret is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiToken {
    /// Public part of the token (`rw_<id>_<secret>`), also its name in lists.
    pub id: String,
    pub name: String,
    /// `operator`, `admin` or `reader`.
    pub role: String,
    /// The tenant an admin or reader token belongs to; `None` for operator tokens.
    pub tenant: Option<String>,
    /// Hex SHA-256 of the secret part.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub secret_hash: String,
    /// Unix milliseconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// A tenant's webhook: alerts and restriction changes POSTed as JSON, signed with its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Webhook {
    pub id: String,
    pub tenant: String,
    pub url: String,
    /// The HMAC-SHA256 key; shown once at creation, kept to sign (it cannot be hashed).
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub secret: String,
    /// Event types it receives: `alert`, `restriction`.
    pub events: Vec<String>,
    pub created_by: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// One event on its way to one webhook, with what the last attempt got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WebhookDelivery {
    pub id: i64,
    pub webhook_id: String,
    /// `alert`, `restriction`, `ping`.
    pub event: String,
    /// The JSON body sent.
    pub body: String,
    pub attempts: u32,
    /// `pending`, `delivered` or `failed` (given up after the retry schedule).
    pub state: String,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// Unix milliseconds.
    pub next_attempt: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A person who signs in to the admin center (tenant admin or reader) or the support console
/// (operator): Argon2id password, TOTP second factor, recovery codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Account {
    pub id: String,
    pub email: String,
    /// `operator`, `admin` or `reader`.
    pub role: String,
    /// The tenant of an admin or reader; `None` for operators.
    pub tenant: Option<String>,
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub password_hash: Option<String>,
    /// Base32 TOTP key; set at setup (pending until the first code proves the authenticator).
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub totp_secret: Option<String>,
    /// SHA-256 hex of each unused recovery code.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub recovery_codes: Vec<String>,
    /// SHA-256 hex of the one-time setup token, until setup is done.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub setup_token_hash: Option<String>,
    pub setup_expires_at: Option<i64>,
    /// Not counted any more (failed sign-ins are counted in `attempts`, as an address's
    /// without an account are); kept for the stored rows, and no longer shown.
    #[serde(default, skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub failed_logins: u32,
    /// Unix milliseconds; sign-in is refused until then.
    pub locked_until: Option<i64>,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
    /// The console's language for this account (`en`, `es`); `None`: the tenant's, else the
    /// browser's.
    #[serde(default)]
    pub language: Option<String>,
}

/// A signed-in console session (the cookie value only as its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Session {
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub id_hash: String,
    pub account_id: String,
    /// Must come back in `X-CSRF-Token` with every change made with this session's cookie.
    #[serde(skip_serializing)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub csrf: String,
    pub mfa: bool,
    pub client: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An operator's action on a selection of the queue, made on one node of a cluster and passed
/// on to the others, each of which does it to its own queue (`queue_orders`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueOrder {
    /// Given by the store, in the order the orders were made.
    pub id: i64,
    /// When it was made (Unix ms).
    pub at: i64,
    /// The node it was made on (which has done it already).
    pub node: String,
    /// `retry` (a flush), `hold`, `release`, `bounce` or `purge`.
    pub action: String,
    pub tenant: Option<String>,
    pub domain: Option<String>,
    pub sender: Option<String>,
    /// Who asked, for the audit entries the other nodes write: name, role and client.
    pub actor: String,
    pub role: String,
    pub client: String,
    /// An action on one message: its queue id (then the selection names nothing). The node
    /// that holds it does it; the others have nothing to do.
    pub message: Option<String>,
}

/// An operator's look at the queue (a listing or its shape) asked of one node of a cluster,
/// which every other node answers with what its own queue holds (`queue_reads`,
/// `queue_answers`). Not audited: it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRead {
    /// Given by the store, in the order the reads were asked.
    pub id: i64,
    /// When it was asked (Unix ms).
    pub at: i64,
    /// The node asked, which reads its own queue itself.
    pub node: String,
    /// `list` or `shape`.
    pub kind: String,
    pub tenant: Option<String>,
    pub domain: Option<String>,
    pub sender: Option<String>,
    /// A listing of one message: its queue id.
    pub message: Option<String>,
    /// A shape by sender domain rather than by recipient domain.
    pub by_sender: bool,
    /// At most this many messages (a listing) or domains (a shape) in each node's answer.
    pub limit: i64,
}
