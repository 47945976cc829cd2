//! What the API answers, as types: every success body is one of these, serialised as is, and
//! the OpenAPI document's response schemas are derived from them (the operation table names
//! each operation's answer type). Objects of the store and the guard appear as they are, minus
//! what they never show (secrets are skipped in both the JSON and the schema).

use relayward_delivery::QueuedMessage;
use relayward_guard::checklist::ChecklistItem;
use relayward_guard::{CounterView, Limits, Restriction};
use relayward_store::{
    Account, AlertRow, ApiToken, AuditEntry, AuthLockout, Connector, DkimKey, Domain, Route,
    Tenant, TraceMessage, UserView, Webhook, WebhookDelivery,
};
use schemars::JsonSchema;
use schemars::r#gen::SchemaGenerator;
use schemars::schema::Schema;
use serde::Serialize;

/// The schema of an answer type, for the operation table.
pub(crate) fn answer<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// How an operation's answer is described in the table.
pub(crate) type AnswerSchema = fn(&mut SchemaGenerator) -> Schema;

/// The calling token or session.
#[derive(Serialize, JsonSchema)]
pub struct Whoami {
    pub id: Option<String>,
    pub name: String,
    /// `operator`, `admin` or `reader`.
    pub role: String,
    pub tenant: Option<String>,
    pub mfa: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// A DNS record to publish.
#[derive(Serialize, JsonSchema)]
pub struct TxtRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub value: String,
}

/// An accepted domain with the TXT record that proves it is the tenant's.
#[derive(Serialize, JsonSchema)]
pub struct DomainAnswer {
    pub name: String,
    /// `authoritative` or `internal_relay`.
    pub kind: String,
    pub match_subdomains: bool,
    pub verified: bool,
    pub txt_record: TxtRecord,
}

impl From<&Domain> for DomainAnswer {
    fn from(d: &Domain) -> DomainAnswer {
        DomainAnswer {
            name: d.name.clone(),
            kind: d.kind.as_str().to_string(),
            match_subdomains: d.match_subdomains,
            verified: d.verified,
            txt_record: TxtRecord {
                name: d.name.clone(),
                kind: "TXT".into(),
                value: format!("relayward-verification={}", d.verification_token),
            },
        }
    }
}

/// A user as the API shows it (the store's view: never the password's hash).
pub type UserAnswer = UserView;

/// One tenant with everything of it.
#[derive(Serialize, JsonSchema)]
pub struct TenantDetail {
    pub tenant: Option<Tenant>,
    pub domains: Vec<DomainAnswer>,
    pub connectors: Vec<Connector>,
    pub users: Vec<UserAnswer>,
    pub routes: Vec<Route>,
}

#[derive(Serialize, JsonSchema)]
pub struct ForwardingAnswer {
    pub tenant: String,
    /// `on`, `off` or `listed`.
    pub forwarding: String,
    pub domains: Vec<String>,
}

/// The limits in force for a tenant, and the overrides an operator set (`{}` for none).
#[derive(Serialize, JsonSchema)]
pub struct LimitsAnswer {
    pub effective: Limits,
    pub overrides: serde_json::Value,
}

#[derive(Serialize, JsonSchema)]
pub struct DomainList {
    pub domains: Vec<DomainAnswer>,
}

/// What a domain ownership check found.
#[derive(Serialize, JsonSchema)]
pub struct Verification {
    pub domain: String,
    pub verified: bool,
    /// It was verified before this check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already: Option<bool>,
    /// The TXT record looked for, when it was not found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// The TXT records found instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub found: Option<Vec<String>>,
}

/// One DKIM key: its selector and state, and the record to publish.
#[derive(Serialize, JsonSchema)]
pub struct DkimKeyAnswer {
    pub selector: String,
    /// `rsa-sha256` or `ed25519-sha256`.
    pub algorithm: String,
    /// `pending`, `active`, `retiring` or `retired`.
    pub state: String,
    pub since: i64,
    pub created_at: i64,
    pub record: TxtRecord,
}

#[derive(Serialize, JsonSchema)]
pub struct DkimKeys {
    pub domain: String,
    pub keys: Vec<DkimKeyAnswer>,
}

impl DkimKeys {
    pub fn of(domain: &str, keys: &[DkimKey]) -> DkimKeys {
        DkimKeys {
            domain: domain.to_string(),
            keys: keys
                .iter()
                .map(|k| {
                    let (name, value) = relayward_control::dkim_keys::record(k);
                    DkimKeyAnswer {
                        selector: k.selector.clone(),
                        algorithm: k.algorithm.clone(),
                        state: k.state.as_str().to_string(),
                        since: k.state_since,
                        created_at: k.created_at,
                        record: TxtRecord {
                            name,
                            kind: "TXT".into(),
                            value,
                        },
                    }
                })
                .collect(),
        }
    }
}

/// A connector with why it looks unusual, if it does.
#[derive(Serialize, JsonSchema)]
pub struct ConnectorListed {
    #[serde(flatten)]
    pub connector: Connector,
    pub unusual: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct ConnectorList {
    pub connectors: Vec<ConnectorListed>,
}

#[derive(Serialize, JsonSchema)]
pub struct Reviewed {
    pub connector: String,
    pub reviewed: bool,
}

/// A user with its flags (possibly compromised, restricted).
#[derive(Serialize, JsonSchema)]
pub struct UserListed {
    #[serde(flatten)]
    pub user: UserAnswer,
    pub flags: Vec<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct UserList {
    pub users: Vec<UserListed>,
}

#[derive(Serialize, JsonSchema)]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// A new webhook, with its signing secret (shown this once).
#[derive(Serialize, JsonSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: Webhook,
    pub secret: String,
}

#[derive(Serialize, JsonSchema)]
pub struct Deliveries {
    pub webhook: String,
    pub deliveries: Vec<WebhookDelivery>,
}

#[derive(Serialize, JsonSchema)]
pub struct Pinged {
    pub webhook: String,
    pub queued: String,
}

#[derive(Serialize, JsonSchema)]
pub struct RestrictionList {
    pub restrictions: Vec<Restriction>,
}

/// One restriction; for a tenant's, its remediation checklist with evidence.
#[derive(Serialize, JsonSchema)]
pub struct RestrictionDetail {
    pub restriction: Restriction,
    pub checklist: Option<Vec<ChecklistItem>>,
}

#[derive(Serialize, JsonSchema)]
pub struct RestrictionAnswer {
    pub restriction: Restriction,
}

#[derive(Serialize, JsonSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertRow>,
}

/// Every counter beside its threshold, and recent SMTP AUTH lockouts.
#[derive(Serialize, JsonSchema)]
pub struct Counters {
    pub counters: Vec<CounterView>,
    pub auth_lockouts: Vec<AuthLockout>,
}

#[derive(Serialize, JsonSchema)]
pub struct AuditList {
    pub audit: Vec<AuditEntry>,
}

/// One page of the message trace; `next` continues it.
#[derive(Serialize, JsonSchema)]
pub struct TracePage {
    pub messages: Vec<TraceMessage>,
    pub next: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

/// A new account and its one-time setup link.
#[derive(Serialize, JsonSchema)]
pub struct AccountCreated {
    pub account: Account,
    /// The setup through the API (GET for the key, POST the password and a code).
    pub setup_link: String,
    /// The same setup as a page of the console, for a person with a browser.
    pub setup_page: String,
    pub expires_at: Option<i64>,
}

/// The authenticator key of an account being set up.
#[derive(Serialize, JsonSchema)]
pub struct SetupBegun {
    pub email: String,
    pub role: String,
    pub tenant: Option<String>,
    pub totp_secret: String,
    pub otpauth_uri: String,
    pub expires_at: Option<i64>,
    pub next: String,
}

/// A finished setup: the recovery codes, shown this once.
#[derive(Serialize, JsonSchema)]
pub struct SetupDone {
    pub recovery_codes: Vec<String>,
    pub note: String,
}

/// A session: its CSRF token goes with every change.
#[derive(Serialize, JsonSchema)]
pub struct SignedIn {
    pub account: Account,
    pub csrf_token: String,
    pub expires_at: i64,
    pub recovery_codes_left: usize,
}

#[derive(Serialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<ApiToken>,
}

/// Queued messages; in a cluster, of every node that answered (each message names its node).
#[derive(Serialize, JsonSchema)]
pub struct QueueList {
    pub messages: Vec<QueuedMessage>,
    /// In a cluster: each running node, whether it answered within 3 seconds, and how many
    /// messages the selection picks there. Absent on one node.
    #[serde(flatten)]
    pub nodes: relayward_control::queue_reads::Nodes,
}

/// The queue's shape; in a cluster, every answering node's shape added up.
#[derive(Serialize, JsonSchema)]
pub struct QueueShape {
    #[serde(flatten)]
    pub shape: relayward_delivery::Shape,
    /// In a cluster: each running node, whether it answered within 3 seconds, and how many
    /// messages the selection picks there. Absent on one node.
    #[serde(flatten)]
    pub nodes: relayward_control::queue_reads::Nodes,
}

/// How many waiting messages a flush made due now.
#[derive(Serialize, JsonSchema)]
pub struct QueueFlushed {
    /// Messages made due now on the node asked.
    pub messages: usize,
    /// In a cluster: the flush was passed on to the other nodes, each of which does it to its
    /// own queue within seconds.
    pub other_nodes: bool,
}

/// What an action on every message of a selection did.
#[derive(Serialize, JsonSchema)]
pub struct QueueSelectedDone {
    /// hold, release, bounce or purge.
    pub done: String,
    /// How many messages it was done to.
    pub messages: usize,
    /// Selected messages in a delivery round at that instant: the action is done to each as
    /// its round ends, if it is still queued then (one delivered in its round is gone).
    pub in_flight: usize,
    /// In a cluster: the action was passed on to the other nodes, each of which does it to its
    /// own queue within seconds (these counts are the node asked).
    pub other_nodes: bool,
}

#[derive(Serialize, JsonSchema)]
pub struct QueueDone {
    pub message: String,
    pub done: String,
    /// In a cluster: the message is not queued on the node asked, and the action was passed
    /// on to the other nodes; the one that holds it does it within seconds (audited there).
    pub other_nodes: bool,
}
