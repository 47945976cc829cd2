//! One state machine for the four restricted subjects (tenant unregistered-domain mail, tenant
//! outbound mail, a connector, a user):
//!
//! ```text
//!   (active) ──trigger──► restricted ──request (checklist complete)──► release requested
//!                            ▲   │                                        │        │
//!                            │   └──release (admin ≤3/24h, or operator)───┼──┐     │ refuse
//!                            └────────────────────────────────────────────┼──┼─────┘
//!                                                 approve (operator) ─────┘  ▼
//!                                                              released on probation ──24 h──► lifted
//! ```
//! Every transition is appended to the restriction's history with who, when and why; nothing
//! lifts except through one of these functions, each of which records itself.

use serde::{Deserialize, Serialize};

pub const UNREGISTERED_REPLY: &str =
    "5.7.750 Service unavailable. Client blocked from sending from unregistered domains";
pub const TENANT_REPLY: &str = "5.7.705 Access denied, tenant has exceeded threshold";
pub const CONNECTOR_REPLY: &str = "5.7.711 Access denied, bad inbound connector";
pub const USER_REPLY: &str = "5.1.8 Access denied, bad outbound sender";
pub const DAILY_RECIPIENTS_REPLY: &str = "5.1.90 Your message can't be sent because you've reached your daily limit for message recipients";
pub const RATE_REPLY: &str = "4.7.500 Access denied, please try again later";

/// Admins may release one user or connector this many times in 24 h; past that, operators only.
pub const ADMIN_RELEASES_PER_DAY: usize = 3;
/// How long a released subject runs at half its limits.
pub const PROBATION_MS: i64 = 24 * 3_600_000;

/// An SMTP refusal: code and text (the text starts with the enhanced status code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub text: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    TenantUnregistered,
    TenantThreshold,
    Connector,
    User,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::TenantUnregistered => "tenant_unregistered",
            Kind::TenantThreshold => "tenant_threshold",
            Kind::Connector => "connector",
            Kind::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        match s {
            "tenant_unregistered" => Some(Kind::TenantUnregistered),
            "tenant_threshold" => Some(Kind::TenantThreshold),
            "connector" => Some(Kind::Connector),
            "user" => Some(Kind::User),
            _ => None,
        }
    }

    /// The reply for mail caught by this restriction.
    pub fn refusal(self) -> Refusal {
        let text = match self {
            Kind::TenantUnregistered => UNREGISTERED_REPLY,
            Kind::TenantThreshold => TENANT_REPLY,
            Kind::Connector => CONNECTOR_REPLY,
            Kind::User => USER_REPLY,
        };
        Refusal { code: 550, text }
    }

    pub fn is_tenant(self) -> bool {
        matches!(self, Kind::TenantUnregistered | Kind::TenantThreshold)
    }
}

/// Which subject: the tenant, and for connectors and users their name or address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Key {
    pub tenant: String,
    pub kind: Kind,
    /// Connector name or user address; empty for the tenant kinds.
    pub name: String,
}

impl Key {
    pub fn tenant(tenant: &str, kind: Kind) -> Key {
        Key {
            tenant: tenant.to_string(),
            kind,
            name: String::new(),
        }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            Kind::TenantUnregistered => write!(f, "tenant {} (unregistered domains)", self.tenant),
            Kind::TenantThreshold => write!(f, "tenant {}", self.tenant),
            Kind::Connector => write!(f, "connector {} of {}", self.name, self.tenant),
            Kind::User => write!(f, "user {} of {}", self.name, self.tenant),
        }
    }
}

/// Why a restriction started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    UnregisteredAllowance,
    UnregisteredSuspicious,
    TenantSuspicious,
    SubscriptionLapsed,
    ConnectorSuspicious,
    ConnectorNewVolume,
    UserSuspicious,
    OutboundPolicy,
    Operator,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::UnregisteredAllowance => {
                "more mail from unregistered sender domains than the daily allowance"
            }
            Reason::UnregisteredSuspicious => "too much suspicious mail from unregistered domains",
            Reason::TenantSuspicious => "too much suspicious outbound mail",
            Reason::SubscriptionLapsed => "the subscription has ended",
            Reason::ConnectorSuspicious => "the connector carried too much suspicious mail",
            Reason::ConnectorNewVolume => {
                "a connector created less than 24 h ago sent far more than the tenant's usual volume"
            }
            Reason::UserSuspicious => "the user sent too much suspicious mail",
            Reason::OutboundPolicy => "the user passed an outbound-policy sending limit",
            Reason::Operator => "restricted by an operator",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum State {
    Restricted,
    ReleaseRequested,
    Probation,
    Lifted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Restricted => "restricted",
            State::ReleaseRequested => "release_requested",
            State::Probation => "probation",
            State::Lifted => "lifted",
        }
    }
}

/// Who acts on a restriction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    Operator,
    /// The engine itself (triggers, day end, probation end, subscription renewal).
    System,
}

/// A counter beside its threshold, as it stood when something happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CounterValue {
    pub name: String,
    pub value: u64,
    pub threshold: u64,
}

/// What a restriction's cause records (SPEC section 4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Cause {
    pub counters: Vec<CounterValue>,
    pub top_sender_domains: Vec<(String, u64)>,
    pub top_users: Vec<(String, u64)>,
    pub top_connectors: Vec<(String, u64)>,
    pub top_client_ips: Vec<(String, u64)>,
    pub sample_message_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Transition {
    pub at: i64,
    pub from: Option<State>,
    pub to: State,
    pub actor: String,
    pub role: Role,
    pub note: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Restriction {
    pub id: String,
    pub key: Key,
    pub reason: Reason,
    pub state: State,
    pub started_at: i64,
    /// Lifts by itself at this time (outbound policy: end of the UTC day).
    pub until: Option<i64>,
    /// End of probation, once released.
    pub probation_until: Option<i64>,
    pub cause: Cause,
    pub history: Vec<Transition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseError {
    /// The transition does not start from this state.
    WrongState { state: State, wanted: &'static str },
    /// An admin already released this subject 3 times in 24 h.
    AdminLimit,
    /// Tenants are released through a request and an operator's approval.
    NeedsApproval,
    /// The checklist has open items.
    ChecklistIncomplete(Vec<String>),
    /// Only operators do this.
    OperatorOnly,
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseError::WrongState { state, wanted } => write!(
                f,
                "the restriction is {}; this needs it {wanted}",
                state.as_str()
            ),
            ReleaseError::AdminLimit => write!(
                f,
                "admins released this subject {ADMIN_RELEASES_PER_DAY} times in the last 24 hours; only an operator can release it now"
            ),
            ReleaseError::NeedsApproval => write!(
                f,
                "a tenant restriction is lifted by requesting release (checklist complete) and an operator's approval"
            ),
            ReleaseError::ChecklistIncomplete(open) => {
                write!(
                    f,
                    "the remediation checklist is not complete: {}",
                    open.join("; ")
                )
            }
            ReleaseError::OperatorOnly => write!(f, "only an operator can do this"),
        }
    }
}

impl std::error::Error for ReleaseError {}

impl Restriction {
    pub fn start(id: String, key: Key, reason: Reason, cause: Cause, now: i64) -> Restriction {
        let note = reason.describe().to_string();
        Restriction {
            id,
            key,
            reason,
            state: State::Restricted,
            started_at: now,
            until: None,
            probation_until: None,
            cause,
            history: vec![Transition {
                at: now,
                from: None,
                to: State::Restricted,
                actor: "relayward".into(),
                role: Role::System,
                note,
            }],
        }
    }

    /// Mail is refused while this holds.
    pub fn blocks(&self) -> bool {
        matches!(self.state, State::Restricted | State::ReleaseRequested)
    }

    pub fn on_probation(&self) -> bool {
        self.state == State::Probation
    }

    pub fn updated_at(&self) -> i64 {
        self.history.last().map(|t| t.at).unwrap_or(self.started_at)
    }

    fn go(&mut self, to: State, actor: &str, role: Role, note: &str, now: i64) {
        self.history.push(Transition {
            at: now,
            from: Some(self.state),
            to,
            actor: actor.to_string(),
            role,
            note: note.to_string(),
        });
        self.state = to;
    }

    fn start_probation(&mut self, actor: &str, role: Role, note: &str, now: i64) {
        self.probation_until = Some(now + PROBATION_MS);
        self.until = None;
        self.go(State::Probation, actor, role, note, now);
    }

    /// Direct release of a user or connector (SPEC section 8). `admin_releases_last_day` counts
    /// this subject's releases by admins in the 24 h before `now`. Operators may also release a
    /// tenant directly (an emergency path; it is recorded like every other).
    pub fn release(
        &mut self,
        actor: &str,
        role: Role,
        admin_releases_last_day: usize,
        note: &str,
        now: i64,
    ) -> Result<(), ReleaseError> {
        if !self.blocks() {
            return Err(ReleaseError::WrongState {
                state: self.state,
                wanted: "restricted",
            });
        }
        match role {
            Role::Admin if self.key.kind.is_tenant() => return Err(ReleaseError::NeedsApproval),
            Role::Admin if admin_releases_last_day >= ADMIN_RELEASES_PER_DAY => {
                return Err(ReleaseError::AdminLimit);
            }
            _ => {}
        }
        self.start_probation(actor, role, note, now);
        Ok(())
    }

    /// A tenant admin asks for release; only with the checklist complete.
    pub fn request_release(
        &mut self,
        actor: &str,
        open_items: Vec<String>,
        note: &str,
        now: i64,
    ) -> Result<(), ReleaseError> {
        if self.state != State::Restricted {
            return Err(ReleaseError::WrongState {
                state: self.state,
                wanted: "restricted",
            });
        }
        if !open_items.is_empty() {
            return Err(ReleaseError::ChecklistIncomplete(open_items));
        }
        self.go(State::ReleaseRequested, actor, Role::Admin, note, now);
        Ok(())
    }

    /// An operator approves a release request: the subject goes on probation.
    pub fn approve(
        &mut self,
        actor: &str,
        role: Role,
        note: &str,
        now: i64,
    ) -> Result<(), ReleaseError> {
        if role == Role::Admin {
            return Err(ReleaseError::OperatorOnly);
        }
        if self.state != State::ReleaseRequested {
            return Err(ReleaseError::WrongState {
                state: self.state,
                wanted: "release_requested",
            });
        }
        self.start_probation(actor, role, note, now);
        Ok(())
    }

    /// An operator refuses a release request, with a reason; the restriction stays.
    pub fn refuse(
        &mut self,
        actor: &str,
        role: Role,
        reason: &str,
        now: i64,
    ) -> Result<(), ReleaseError> {
        if role != Role::Operator {
            return Err(ReleaseError::OperatorOnly);
        }
        if self.state != State::ReleaseRequested {
            return Err(ReleaseError::WrongState {
                state: self.state,
                wanted: "release_requested",
            });
        }
        self.go(State::Restricted, actor, role, reason, now);
        Ok(())
    }

    /// Time-driven transitions: a timed block ends, probation ends. Returns whether it moved.
    pub fn tick(&mut self, now: i64) -> bool {
        if self.blocks()
            && let Some(until) = self.until
            && now >= until
        {
            self.until = None;
            self.go(
                State::Lifted,
                "relayward",
                Role::System,
                "the block ran until the end of the UTC day",
                now,
            );
            return true;
        }
        if self.state == State::Probation
            && let Some(end) = self.probation_until
            && now >= end
        {
            self.go(
                State::Lifted,
                "relayward",
                Role::System,
                "probation ended without a new trigger",
                now,
            );
            return true;
        }
        false
    }

    /// A trigger fired again while on probation: back to restricted, with the new cause.
    pub fn retrigger(&mut self, reason: Reason, cause: Cause, now: i64) {
        self.reason = reason;
        self.cause = cause;
        self.probation_until = None;
        let note = format!("triggered again on probation: {}", reason.describe());
        self.go(State::Restricted, "relayward", Role::System, &note, now);
    }

    /// Subscription renewed: the lapse restriction lifts at once (no probation: nothing was
    /// wrong with the traffic).
    pub fn renewed(&mut self, now: i64) {
        if self.blocks() {
            self.go(
                State::Lifted,
                "relayward",
                Role::System,
                "subscription renewed",
                now,
            );
        }
    }
}
