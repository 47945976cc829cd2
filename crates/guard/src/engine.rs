// Over 800 lines: one state machine (counters, triggers, restrictions, alerts) whose steps share its private state; splitting would make that state public.
//! The guard: for each sender, may it send now? It counts what the relay accepted, starts
//! restrictions when a trigger of SPEC section 4 is reached, answers with the exact replies of
//! SPEC section 3, raises alerts (80 % early warnings included) and hands every change out as an
//! event for the caller to store and deliver. No clock, no I/O: `now` (Unix milliseconds) is an
//! argument of every call, so a test replays a week of traffic in milliseconds.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::counters::{
    CounterStore, Hint, MemoryCounters, Sample, SubjectCounters, TenantCounters,
};
use crate::limits::{Limits, OutboundAction, on_probation};
use crate::restriction::{
    Cause, CounterValue, DAILY_RECIPIENTS_REPLY, Key, Kind, RATE_REPLY, Reason, Refusal,
    Restriction, State,
};
use crate::signals::{Behaviour, Client, Signal, compromised};
use crate::window::{Counts, DAY_MS};

/// Who is sending, as the relay attributed it.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub tenant: &'a str,
    pub connector: Option<&'a str>,
    /// When the connector was created (Unix ms), for the new-connector trigger.
    pub connector_created_at: Option<i64>,
    /// The tenant's user this mail is from, when known.
    pub user: Option<&'a str>,
    pub client_ip: &'a str,
    /// Envelope sender domain; empty for the null sender (not classified, still counted).
    pub sender_domain: &'a str,
    /// The sender domain is an accepted, verified domain of the tenant (or the mail is a
    /// forwarded copy whose sender was rewritten into one).
    pub registered: bool,
    /// First instant after the subscription (Unix ms); `None` when it does not end.
    pub subscription_end: Option<i64>,
}

impl Origin<'_> {
    fn unregistered(&self) -> bool {
        !self.registered && !self.sender_domain.is_empty()
    }
}

/// What the relay knows about an accepted message at the end of DATA.
#[derive(Debug, Clone, Copy)]
pub struct MessageFacts<'a> {
    pub id: &'a str,
    pub recipients: u32,
    /// Recipients outside the tenant's accepted domains.
    pub external: u32,
    /// Scan verdict spam or bulk.
    pub suspicious: bool,
    /// `signals::key_hash` of each recipient (for the never-written-to-before signal).
    pub recipient_hashes: &'a [u64],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Medium,
    High,
}

/// SPEC section 9's alert kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    UserRestricted,
    SendingLimitExceeded,
    SuspiciousSendingPatterns,
    TenantRestricted,
    TenantRestrictedUnprovisioned,
    SuspiciousConnector,
    MessagesDelayed,
    PossiblyCompromised,
    /// A user's SMTP AUTH was locked after repeated wrong passwords.
    AccountLocked,
}

impl AlertKind {
    pub fn title(self) -> &'static str {
        match self {
            AlertKind::UserRestricted => "User restricted from sending email",
            AlertKind::SendingLimitExceeded => "Sending limit exceeded",
            AlertKind::SuspiciousSendingPatterns => "Suspicious sending patterns detected",
            AlertKind::TenantRestricted => "Tenant restricted from sending email",
            AlertKind::TenantRestrictedUnprovisioned => {
                "Tenant restricted from sending unprovisioned email"
            }
            AlertKind::SuspiciousConnector => "Suspicious connector activity",
            AlertKind::MessagesDelayed => "Messages have been delayed",
            AlertKind::PossiblyCompromised => "Sender possibly compromised",
            AlertKind::AccountLocked => "Account locked after failed sign-ins",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Alert {
    pub tenant: String,
    pub at: i64,
    pub severity: Severity,
    pub kind: AlertKind,
    /// The user, connector or tenant concerned.
    pub subject: String,
    pub text: String,
}

/// What the caller must store or send after a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A restriction started or moved; the whole restriction as it now stands.
    Restriction(Box<Restriction>),
    Alert(Alert),
}

#[derive(Debug, Default)]
struct TenantState {
    unregistered: Option<Restriction>,
    threshold: Option<Restriction>,
    connectors: HashMap<String, Restriction>,
    users: HashMap<String, Restriction>,
    /// Early warnings and limit alerts already raised: key → when (one per 24 h).
    warned: HashMap<String, i64>,
    /// Users and connectors flagged "possibly compromised" by behavioural signals: when.
    flagged: HashMap<String, i64>,
}

impl TenantState {
    fn get(&self, kind: Kind, name: &str) -> Option<&Restriction> {
        match kind {
            Kind::TenantUnregistered => self.unregistered.as_ref(),
            Kind::TenantThreshold => self.threshold.as_ref(),
            Kind::Connector => self.connectors.get(name),
            Kind::User => self.users.get(name),
        }
    }

    fn slot(&mut self, kind: Kind, name: &str) -> Option<&mut Restriction> {
        match kind {
            Kind::TenantUnregistered => self.unregistered.as_mut(),
            Kind::TenantThreshold => self.threshold.as_mut(),
            Kind::Connector => self.connectors.get_mut(name),
            Kind::User => self.users.get_mut(name),
        }
    }

    fn put(&mut self, r: Restriction) {
        match r.key.kind {
            Kind::TenantUnregistered => self.unregistered = Some(r),
            Kind::TenantThreshold => self.threshold = Some(r),
            Kind::Connector => {
                self.connectors.insert(r.key.name.clone(), r);
            }
            Kind::User => {
                self.users.insert(r.key.name.clone(), r);
            }
        }
    }

    fn remove(&mut self, kind: Kind, name: &str) {
        match kind {
            Kind::TenantUnregistered => self.unregistered = None,
            Kind::TenantThreshold => self.threshold = None,
            Kind::Connector => {
                self.connectors.remove(name);
            }
            Kind::User => {
                self.users.remove(name);
            }
        }
    }

    fn blocks(&self, kind: Kind, name: &str) -> bool {
        self.get(kind, name).is_some_and(Restriction::blocks)
    }

    fn probation(&self, kind: Kind, name: &str) -> bool {
        self.get(kind, name).is_some_and(Restriction::on_probation)
    }

    fn all(&self) -> impl Iterator<Item = &Restriction> {
        self.unregistered
            .iter()
            .chain(self.threshold.iter())
            .chain(self.connectors.values())
            .chain(self.users.values())
    }
}

pub struct Guard<C: CounterStore = MemoryCounters> {
    defaults: Limits,
    overrides: HashMap<String, Limits, ahash::RandomState>,
    counters: C,
    /// Restriction state of tenants that have any (most have none).
    tenants: HashMap<String, TenantState, ahash::RandomState>,
    events: Vec<Event>,
    node: String,
    seq: u64,
}

/// The first instant of the next UTC day.
pub fn next_utc_midnight(now: i64) -> i64 {
    (now.div_euclid(DAY_MS) + 1) * DAY_MS
}

impl Guard<MemoryCounters> {
    pub fn new(defaults: Limits) -> Self {
        Guard::with_counters(defaults, MemoryCounters::default())
    }
}

impl<C: CounterStore> Guard<C> {
    pub fn with_counters(defaults: Limits, counters: C) -> Self {
        Guard {
            defaults,
            overrides: HashMap::default(),
            counters,
            tenants: HashMap::default(),
            events: Vec::new(),
            node: String::new(),
            seq: 0,
        }
    }

    /// Makes restriction ids unique across nodes and restarts (the caller passes something
    /// unique to this process, e.g. its start time).
    pub fn set_node(&mut self, node: &str) {
        self.node = node.to_string();
    }

    /// Per-tenant limits (SPEC section 4: "operators change them globally and per tenant").
    pub fn set_tenant_limits(&mut self, tenant: &str, limits: Limits) {
        self.overrides.insert(tenant.to_string(), limits);
    }

    pub fn clear_tenant_limits(&mut self) {
        self.overrides.clear();
    }

    pub fn limits(&self, tenant: &str) -> &Limits {
        self.overrides.get(tenant).unwrap_or(&self.defaults)
    }

    pub fn counters(&self) -> &C {
        &self.counters
    }

    pub fn counters_mut(&mut self) -> &mut C {
        &mut self.counters
    }

    /// An alert raised outside the engine's own triggers (SMTP AUTH lockouts), to be stored,
    /// mailed and posted with the rest.
    pub fn raise(&mut self, alert: Alert) {
        self.events.push(Event::Alert(alert));
    }

    /// Events since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Restrictions not yet lifted.
    pub fn restrictions(&self) -> Vec<&Restriction> {
        self.tenants.values().flat_map(TenantState::all).collect()
    }

    pub fn restriction(&self, key: &Key) -> Option<&Restriction> {
        self.tenants.get(&key.tenant)?.get(key.kind, &key.name)
    }

    fn new_id(&mut self, now: i64) -> String {
        self.seq += 1;
        format!("R{}{:x}{:04x}", self.node, now, self.seq)
    }

    /// The refusal for mail from `o` under the restrictions in force, in the order of SPEC
    /// section 3 (tenant, connector, user, unregistered domain).
    fn restricted(&self, o: &Origin) -> Option<Refusal> {
        let ts = self.tenants.get(o.tenant)?;
        if ts.blocks(Kind::TenantThreshold, "") {
            return Some(Kind::TenantThreshold.refusal());
        }
        if let Some(c) = o.connector
            && ts.blocks(Kind::Connector, c)
        {
            return Some(Kind::Connector.refusal());
        }
        if let Some(u) = o.user
            && ts.blocks(Kind::User, u)
        {
            return Some(Kind::User.refusal());
        }
        if o.unregistered() && ts.blocks(Kind::TenantUnregistered, "") {
            return Some(Kind::TenantUnregistered.refusal());
        }
        None
    }

    /// For mail already queued: is it caught by a restriction now in force?
    pub fn blocked(&mut self, o: &Origin, now: i64) -> Option<Refusal> {
        self.subscription(o.tenant, o.subscription_end, now);
        self.restricted(o)
    }

    /// Starts or lifts the subscription restriction for `tenant` as its end date says.
    /// Returns whether the tenant is lapsed.
    pub fn subscription(&mut self, tenant: &str, end: Option<i64>, now: i64) -> bool {
        let lapsed = end.is_some_and(|e| now >= e);
        let current = self
            .tenants
            .get(tenant)
            .and_then(|t| t.threshold.as_ref())
            .map(|r| (r.reason, r.blocks()));
        match current {
            Some((Reason::SubscriptionLapsed, true)) if !lapsed => {
                if let Some(r) = self.state(tenant).threshold.as_mut() {
                    r.renewed(now);
                    let r = r.clone();
                    self.state(tenant).threshold = None;
                    self.events.push(Event::Restriction(Box::new(r)));
                }
            }
            Some((_, true)) => {}
            _ if lapsed => {
                let cause = Cause {
                    counters: vec![CounterValue {
                        name: "subscription_end".into(),
                        value: end.unwrap_or(0).max(0) as u64,
                        threshold: now.max(0) as u64,
                    }],
                    ..Cause::default()
                };
                self.start(
                    Key::tenant(tenant, Kind::TenantThreshold),
                    Reason::SubscriptionLapsed,
                    cause,
                    None,
                    now,
                );
            }
            _ => {}
        }
        lapsed
    }

    fn state(&mut self, tenant: &str) -> &mut TenantState {
        if !self.tenants.contains_key(tenant) {
            self.tenants
                .insert(tenant.to_string(), TenantState::default());
        }
        // Inserted just above when missing.
        self.tenants.entry(tenant.to_string()).or_default()
    }

    /// Starts loading a tenant's counters into the processor's caches. Called as soon as a
    /// transaction's tenant is known (before the directory lookups of MAIL FROM), so the
    /// counters arrive while those run instead of one cache miss at a time in the checks;
    /// `check_mail` then does the same for what they point to on the heap. `hint` is where
    /// the relay's directory keeps the tenant, when it knows; `connector` the one the mail
    /// comes through.
    pub fn warm(&mut self, tenant: &str, hint: Option<Hint>, connector: Option<&str>) {
        self.counters.warm(tenant, hint, connector);
    }

    /// MAIL FROM: may this sender start a transaction?
    pub fn check_mail(&mut self, o: &Origin, now: i64) -> Result<(), Refusal> {
        if self.subscription(o.tenant, o.subscription_end, now) {
            self.note_refusal(o, now);
            return Err(Kind::TenantThreshold.refusal());
        }
        if let Some(r) = self.restricted(o) {
            self.note_refusal(o, now);
            return Err(r);
        }
        let lim = self.limits(o.tenant);
        let (allowance, per_minute) = (
            lim.unregistered_allowance_per_day,
            lim.user_messages_per_minute,
        );
        if o.unregistered() {
            let probation = self.tenants.get(o.tenant).is_some_and(|t| {
                t.probation(Kind::TenantUnregistered, "") || t.probation(Kind::TenantThreshold, "")
            });
            let allowance = on_probation(allowance, probation);
            let sent = self
                .counters
                .tenant_mut(o.tenant)
                .tenant
                .day
                .total(now)
                .unregistered as u64;
            if sent >= allowance {
                let cause = self.cause(
                    o.tenant,
                    vec![CounterValue {
                        name: "unregistered_messages_24h".into(),
                        value: sent + 1,
                        threshold: allowance,
                    }],
                    None,
                );
                self.start(
                    Key::tenant(o.tenant, Kind::TenantUnregistered),
                    Reason::UnregisteredAllowance,
                    cause,
                    None,
                    now,
                );
                self.note_refusal(o, now);
                return Err(Kind::TenantUnregistered.refusal());
            }
        }
        if let Some(user) = o.user {
            let probation = self.user_probation(o.tenant, user);
            let per_minute = on_probation(per_minute, probation) as usize;
            let tc = self.counters.tenant_mut(o.tenant);
            let sent = tc.users.get_mut(user).map_or(0, |u| {
                // In a cluster, with the other nodes' messages of about the last minute
                // (their hour window's minute buckets).
                let theirs = u.hour.others_within(now, 60_000).messages as usize;
                u.minute.count(now, 60_000) + theirs
            });
            if sent >= per_minute {
                return Err(Refusal {
                    code: 451,
                    text: RATE_REPLY,
                });
            }
        }
        self.counters.warm_heap(o.tenant, o.connector, o.user);
        Ok(())
    }

    fn user_probation(&self, tenant: &str, user: &str) -> bool {
        self.tenants.get(tenant).is_some_and(|t| {
            t.probation(Kind::User, user) || t.probation(Kind::TenantThreshold, "")
        })
    }

    /// RCPT TO: may this recipient be added? `tx_internal` and `tx_external` count the
    /// recipients already accepted in this transaction; `external` says where this one goes.
    pub fn check_rcpt(
        &mut self,
        o: &Origin,
        tx_internal: u32,
        tx_external: u32,
        external: bool,
        now: i64,
    ) -> Result<(), Refusal> {
        let Some(user) = o.user else {
            return Ok(());
        };
        let probation = self.user_probation(o.tenant, user);
        let lim = self.limits(o.tenant).clone();
        let (day, hour) = {
            let tc = self.counters.tenant_mut(o.tenant);
            match tc.users.get_mut(user) {
                Some(u) => (u.day.total(now), u.hour.total(now)),
                None => (Counts::default(), Counts::default()),
            }
        };
        let in_tx = u64::from(tx_internal + tx_external);
        let daily = on_probation(lim.user_recipients_per_day, probation);
        if u64::from(day.recipients) + in_tx + 1 > daily {
            self.alert_once(
                o.tenant,
                &format!("limit:rcpt_day:{user}"),
                AlertKind::SendingLimitExceeded,
                Severity::Medium,
                user,
                format!(
                    "{user} reached the limit of {daily} recipients in 24 hours; further mail is refused with 5.1.90 until the window moves on"
                ),
                now,
            );
            return Err(Refusal {
                code: 550,
                text: DAILY_RECIPIENTS_REPLY,
            });
        }
        let mut passed = None;
        if external
            && let Some(max) = lim.outbound_external_per_hour
            && u64::from(hour.external + tx_external) + 1 > on_probation(max, probation)
        {
            passed = Some(("external recipients per hour", max));
        }
        if !external
            && let Some(max) = lim.outbound_internal_per_hour
            && u64::from(hour.internal + tx_internal) + 1 > on_probation(max, probation)
        {
            passed = Some(("internal recipients per hour", max));
        }
        if let Some(max) = lim.outbound_per_day
            && u64::from(day.recipients) + in_tx + 1 > on_probation(max, probation)
        {
            passed = Some(("recipients per day", max));
        }
        let Some((which, max)) = passed else {
            return Ok(());
        };
        let text = format!("{user} passed the outbound policy limit of {max} {which}");
        match lim.outbound_action {
            OutboundAction::AlertOnly => {
                self.alert_once(
                    o.tenant,
                    &format!("limit:policy:{which}:{user}"),
                    AlertKind::SendingLimitExceeded,
                    Severity::Medium,
                    user,
                    format!("{text}; the policy only alerts, mail still flows"),
                    now,
                );
                Ok(())
            }
            action => {
                let until =
                    (action == OutboundAction::BlockUntilTomorrow).then(|| next_utc_midnight(now));
                let cause = self.cause(
                    o.tenant,
                    vec![CounterValue {
                        name: which.replace(' ', "_"),
                        value: u64::from(day.recipients) + in_tx + 1,
                        threshold: max,
                    }],
                    Some((Kind::User, user)),
                );
                self.start(
                    Key {
                        tenant: o.tenant.to_string(),
                        kind: Kind::User,
                        name: user.to_string(),
                    },
                    Reason::OutboundPolicy,
                    cause,
                    until,
                    now,
                );
                Err(Kind::User.refusal())
            }
        }
    }

    /// Counts a refused attempt as evidence (what the checklist's "traffic since the
    /// restriction" and "domains seen" read).
    fn note_refusal(&mut self, o: &Origin, now: i64) {
        let tc = self.counters.tenant_mut(o.tenant);
        tc.sample(Sample {
            at: now,
            message_id: String::new(),
            sender_domain: o.sender_domain.to_string(),
            user: o.user.map(str::to_string),
            connector: o.connector.map(str::to_string),
            client_ip: o.client_ip.to_string(),
            suspicious: false,
            unregistered: o.unregistered(),
            refused: true,
        });
    }

    /// End of DATA: counts the message and runs the triggers. `Err` means a restriction now
    /// covers this very message: the relay refuses it with that reply instead of queueing it.
    pub fn record(&mut self, o: &Origin, m: &MessageFacts, now: i64) -> Result<(), Refusal> {
        let unregistered = o.unregistered();
        let external = m.external.min(m.recipients);
        let counts = Counts {
            messages: 1,
            recipients: m.recipients,
            suspicious: u32::from(m.suspicious),
            unregistered: u32::from(unregistered),
            unregistered_suspicious: u32::from(unregistered && m.suspicious),
            external,
            internal: m.recipients - external,
        };
        let per_minute = self.limits(o.tenant).user_messages_per_minute as usize;
        let signals = {
            let tc = self.counters.tenant_mut(o.tenant);
            add(&mut tc.tenant, now, &counts);
            let mut habits = None;
            if let Some(c) = o.connector {
                let cc = tc.connectors.entry(c);
                add(cc, now, &counts);
                if o.user.is_none() {
                    habits = Some(&mut cc.habits);
                }
            }
            if let Some(u) = o.user {
                let uc = tc.users.entry(u);
                add(uc, now, &counts);
                uc.minute.push(now, per_minute.max(1));
                habits = Some(&mut uc.habits);
            }
            let client = Client::new(o.connector, o.client_ip);
            let judge = |b: &mut Behaviour| {
                let mut signals = b.message(now, client, m.recipient_hashes);
                if let Some(s) = b.standing(now)
                    && !signals.iter().any(|x| x.name == s.name)
                {
                    signals.push(s);
                }
                signals
            };
            let signals = habits.map(judge);
            // The tenant as a whole learns too: a connector or address none of its senders
            // ever used, a tenant-wide burst to strangers.
            let tenant_signals = judge(&mut tc.tenant.habits);
            if m.suspicious || unregistered {
                tc.sample(Sample {
                    at: now,
                    message_id: m.id.to_string(),
                    sender_domain: o.sender_domain.to_string(),
                    user: o.user.map(str::to_string),
                    connector: o.connector.map(str::to_string),
                    client_ip: o.client_ip.to_string(),
                    suspicious: m.suspicious,
                    unregistered,
                    refused: false,
                });
            }
            (signals, tenant_signals)
        };
        let (signals, tenant_signals) = signals;
        if compromised(&tenant_signals) {
            self.flag(
                o.tenant,
                Kind::TenantThreshold,
                o.tenant,
                &tenant_signals,
                now,
            );
        }
        if let Some(signals) = signals
            && compromised(&signals)
        {
            match (o.user, o.connector) {
                (Some(u), _) => self.flag(o.tenant, Kind::User, u, &signals, now),
                (None, Some(c)) => self.flag(o.tenant, Kind::Connector, c, &signals, now),
                (None, None) => {}
            }
        }
        self.triggers(o, now);
        match self.restricted(o) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }

    fn flag(&mut self, tenant: &str, kind: Kind, name: &str, signals: &[Signal], now: i64) {
        let ts = self.state(tenant);
        let key = flag_key(kind, name);
        if ts.flagged.get(&key).is_some_and(|at| now - at < DAY_MS) {
            return;
        }
        ts.flagged.insert(key, now);
        let evidence: Vec<String> = signals
            .iter()
            .map(|s| format!("{} ({})", s.name, s.evidence))
            .collect();
        self.events.push(Event::Alert(Alert {
            tenant: tenant.to_string(),
            at: now,
            severity: Severity::High,
            kind: AlertKind::PossiblyCompromised,
            subject: name.to_string(),
            text: if kind.is_tenant() {
                format!(
                    "{name}'s outbound mail as a whole breaks its habits: {}. Look for a compromised account, device or server: the users and connectors in its counters, and connectors or addresses nobody set up",
                    evidence.join("; ")
                )
            } else {
                format!(
                    "{name} is possibly compromised: {}. For 24 hours its suspicious-mail limit is halved; check the account (password, forwarding rules, recent sign-ins) and the devices that use it",
                    evidence.join("; ")
                )
            },
        }));
    }

    /// Whether a user or connector was flagged "possibly compromised" in the last 24 hours.
    pub fn flagged(&self, tenant: &str, kind: Kind, name: &str, now: i64) -> bool {
        // Asked for every message with a user: build the key only for a tenant with flags.
        self.tenants
            .get(tenant)
            .filter(|t| !t.flagged.is_empty())
            .and_then(|t| t.flagged.get(&flag_key(kind, name)))
            .is_some_and(|at| now - at < DAY_MS)
    }

    /// A remote server's final answer for a recipient of mail from this sender (the
    /// remote-rejection signal).
    pub fn delivery_outcome(&mut self, o: &Origin, refused: bool, now: i64) {
        let Some(tc) = self.counters.tenant_mut_existing(o.tenant) else {
            return;
        };
        let subject = match (o.user, o.connector) {
            (Some(u), _) => tc.users.get_mut(u),
            (None, Some(c)) => tc.connectors.get_mut(c),
            (None, None) => None,
        };
        if let Some(b) = subject.map(|s| &mut s.habits).filter(|b| b.has_history()) {
            b.outcome(now, refused);
        }
        let b = &mut tc.tenant.habits;
        if b.has_history() {
            b.outcome(now, refused);
        }
    }

    fn triggers(&mut self, o: &Origin, now: i64) {
        let lim = self.limits(o.tenant).clone();
        let ts_probation = |g: &Self, kind: Kind, name: &str| {
            g.tenants
                .get(o.tenant)
                .is_some_and(|t| t.probation(kind, name))
        };
        let tenant_probation = ts_probation(self, Kind::TenantThreshold, "");
        let unreg_probation = tenant_probation || ts_probation(self, Kind::TenantUnregistered, "");
        let (t, c, u) = {
            let tc = self.counters.tenant_mut(o.tenant);
            let t = (tc.tenant.day.total(now), tc.tenant.hour.total(now));
            let c = o.connector.and_then(|name| {
                tc.connectors
                    .get_mut(name)
                    .map(|s| (name, s.day.total(now), s.hour.total(now)))
            });
            let u = o
                .user
                .and_then(|name| tc.users.get_mut(name).map(|s| (name, s.day.total(now))));
            (t, c, u)
        };
        let (tday, _) = t;

        // Unregistered domains: the allowance itself is enforced at MAIL FROM; warn here.
        let allowance = on_probation(lim.unregistered_allowance_per_day, unreg_probation);
        let sent = u64::from(tday.unregistered);
        if o.unregistered()
            && sent < allowance
            && sent as f64 >= allowance as f64 * lim.early_warning_ratio
        {
            self.alert_once(
                o.tenant,
                "warn:unregistered_messages_24h",
                AlertKind::SuspiciousSendingPatterns,
                Severity::Medium,
                o.tenant,
                format!(
                    "{}: {sent} messages from unregistered sender domains in 24 hours, {}% of the {allowance} allowed; past it, mail from unregistered domains is refused with 5.7.750",
                    o.tenant,
                    sent * 100 / allowance.max(1)
                ),
                now,
            );
        }

        // Unregistered domains: suspicious ones.
        let max = on_probation(lim.unregistered_suspicious_per_day, unreg_probation);
        self.check(
            o.tenant,
            Kind::TenantUnregistered,
            "",
            Reason::UnregisteredSuspicious,
            "unregistered_suspicious_24h",
            u64::from(tday.unregistered_suspicious),
            max,
            None,
            &lim,
            now,
        );

        // Tenant threshold: count and share.
        let max = on_probation(lim.tenant_suspicious_per_day, tenant_probation);
        let share_ok = ratio(tday.suspicious, tday.messages) >= lim.tenant_suspicious_ratio;
        self.check(
            o.tenant,
            Kind::TenantThreshold,
            "",
            Reason::TenantSuspicious,
            "suspicious_messages_24h",
            u64::from(tday.suspicious),
            max,
            Some(share_ok),
            &lim,
            now,
        );

        if let Some((name, cday, chour)) = c {
            let probation = tenant_probation || ts_probation(self, Kind::Connector, name);
            let max = on_probation(lim.connector_suspicious_per_day, probation);
            let share_ok = ratio(cday.suspicious, cday.messages) >= lim.connector_suspicious_ratio;
            self.check(
                o.tenant,
                Kind::Connector,
                name,
                Reason::ConnectorSuspicious,
                "connector_suspicious_24h",
                u64::from(cday.suspicious),
                max,
                Some(share_ok),
                &lim,
                now,
            );
            if let Some(created) = o.connector_created_at
                && now - created < DAY_MS
            {
                let others = u64::from(tday.messages.saturating_sub(cday.messages));
                let usual = (others / 24).max(lim.new_connector_baseline_floor);
                let max = on_probation(usual * lim.new_connector_volume_factor, probation);
                self.check(
                    o.tenant,
                    Kind::Connector,
                    name,
                    Reason::ConnectorNewVolume,
                    "new_connector_messages_1h",
                    u64::from(chour.messages),
                    max,
                    None,
                    &lim,
                    now,
                );
            }
        }

        if let Some((name, uday)) = u {
            let probation = tenant_probation
                || ts_probation(self, Kind::User, name)
                || self.flagged(o.tenant, Kind::User, name, now);
            let max = on_probation(lim.user_suspicious_per_day, probation);
            self.check(
                o.tenant,
                Kind::User,
                name,
                Reason::UserSuspicious,
                "user_suspicious_24h",
                u64::from(uday.suspicious),
                max,
                None,
                &lim,
                now,
            );
        }
    }

    /// One trigger: at `max` the restriction starts (when `extra`, the share condition, holds
    /// too); at the early-warning share of it, one alert per 24 h.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &mut self,
        tenant: &str,
        kind: Kind,
        name: &str,
        reason: Reason,
        counter: &str,
        value: u64,
        max: u64,
        extra: Option<bool>,
        lim: &Limits,
        now: i64,
    ) {
        if self
            .tenants
            .get(tenant)
            .is_some_and(|t| t.blocks(kind, name))
        {
            return;
        }
        let share_ok = extra.unwrap_or(true);
        if value >= max && share_ok {
            let cause = self.cause(
                tenant,
                vec![CounterValue {
                    name: counter.to_string(),
                    value,
                    threshold: max,
                }],
                (!kind.is_tenant()).then_some((kind, name)),
            );
            let key = Key {
                tenant: tenant.to_string(),
                kind,
                name: name.to_string(),
            };
            self.start(key, reason, cause, None, now);
        } else if value as f64 >= max as f64 * lim.early_warning_ratio && share_ok && value > 0 {
            let who = if name.is_empty() { tenant } else { name };
            self.alert_once(
                tenant,
                &format!("warn:{counter}:{name}"),
                AlertKind::SuspiciousSendingPatterns,
                Severity::Medium,
                who,
                format!(
                    "{who}: {counter} is {value}, {}% of the {max} at which {} is restricted",
                    value * 100 / max.max(1),
                    match kind {
                        Kind::TenantUnregistered => "mail from unregistered domains",
                        Kind::TenantThreshold => "all outbound mail of the tenant",
                        Kind::Connector => "the connector",
                        Kind::User => "the user",
                    }
                ),
                now,
            );
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn alert_once(
        &mut self,
        tenant: &str,
        key: &str,
        kind: AlertKind,
        severity: Severity,
        subject: &str,
        text: String,
        now: i64,
    ) {
        let ts = self.state(tenant);
        if ts.warned.get(key).is_some_and(|at| now - at < DAY_MS) {
            return;
        }
        ts.warned.insert(key.to_string(), now);
        self.events.push(Event::Alert(Alert {
            tenant: tenant.to_string(),
            at: now,
            severity,
            kind,
            subject: subject.to_string(),
            text,
        }));
    }

    /// Starts a restriction (or re-restricts one on probation) and raises its alert.
    fn start(&mut self, key: Key, reason: Reason, cause: Cause, until: Option<i64>, now: i64) {
        let id = self.new_id(now);
        let tenant = key.tenant.clone();
        let ts = self.state(&tenant);
        let r = match ts.slot(key.kind, &key.name) {
            Some(existing) if existing.blocks() => return,
            Some(existing) => {
                existing.retrigger(reason, cause, now);
                existing.until = until;
                existing.clone()
            }
            None => {
                let mut r = Restriction::start(id, key, reason, cause, now);
                r.until = until;
                ts.put(r.clone());
                r
            }
        };
        let (kind, severity) = match r.key.kind {
            Kind::TenantUnregistered => (AlertKind::TenantRestrictedUnprovisioned, Severity::High),
            Kind::TenantThreshold => (AlertKind::TenantRestricted, Severity::High),
            Kind::Connector => (AlertKind::SuspiciousConnector, Severity::High),
            Kind::User => (AlertKind::UserRestricted, Severity::High),
        };
        let text = format!(
            "{} is restricted: {}. Mail is refused with \"{}\" until it is released.",
            r.key,
            r.reason.describe(),
            r.key.kind.refusal().text
        );
        self.events.push(Event::Alert(Alert {
            tenant: r.key.tenant.clone(),
            at: now,
            severity,
            kind,
            subject: if r.key.name.is_empty() {
                r.key.tenant.clone()
            } else {
                r.key.name.clone()
            },
            text,
        }));
        self.events.push(Event::Restriction(Box::new(r)));
    }

    /// The evidence behind a restriction: counters, then the top domains, users, connectors and
    /// client IPs of the tenant's suspicious and unregistered mail, and sample message ids.
    /// For a connector or user restriction, only that subject's samples count.
    fn cause(
        &self,
        tenant: &str,
        counters: Vec<CounterValue>,
        only: Option<(Kind, &str)>,
    ) -> Cause {
        let mut cause = Cause {
            counters,
            ..Cause::default()
        };
        let Some(tc) = self.counters.tenant(tenant) else {
            return cause;
        };
        let mut domains: HashMap<&str, u64> = HashMap::new();
        let mut users: HashMap<&str, u64> = HashMap::new();
        let mut connectors: HashMap<&str, u64> = HashMap::new();
        let mut ips: HashMap<&str, u64> = HashMap::new();
        for s in tc.samples.iter().rev() {
            let mine = match only {
                Some((Kind::Connector, n)) => s.connector.as_deref() == Some(n),
                Some((Kind::User, n)) => s.user.as_deref() == Some(n),
                _ => true,
            };
            if !mine {
                continue;
            }
            if !s.sender_domain.is_empty() {
                *domains.entry(&s.sender_domain).or_default() += 1;
            }
            if let Some(u) = &s.user {
                *users.entry(u).or_default() += 1;
            }
            if let Some(c) = &s.connector {
                *connectors.entry(c).or_default() += 1;
            }
            *ips.entry(&s.client_ip).or_default() += 1;
            if !s.message_id.is_empty() && cause.sample_message_ids.len() < 10 {
                cause.sample_message_ids.push(s.message_id.clone());
            }
        }
        cause.top_sender_domains = top(domains);
        cause.top_users = top(users);
        cause.top_connectors = top(connectors);
        cause.top_client_ips = top(ips);
        cause
    }

    /// Time-driven transitions (timed blocks ending, probation ending). Call about once a
    /// second.
    pub fn tick(&mut self, now: i64) {
        let mut done = Vec::new();
        for ts in self.tenants.values_mut() {
            let slots = ts
                .unregistered
                .iter_mut()
                .chain(ts.threshold.iter_mut())
                .chain(ts.connectors.values_mut())
                .chain(ts.users.values_mut());
            for r in slots {
                if r.tick(now) {
                    done.push(r.clone());
                }
            }
        }
        for r in done {
            if r.state == State::Lifted
                && let Some(ts) = self.tenants.get_mut(&r.key.tenant)
            {
                ts.remove(r.key.kind, &r.key.name);
            }
            self.events.push(Event::Restriction(Box::new(r)));
        }
    }

    /// Takes a restriction as stored (changed by an admin or operator, or by another node).
    /// A release starts the subject's counters afresh, so the traffic that caused the
    /// restriction does not restart it at once.
    pub fn sync(&mut self, r: Restriction) {
        let tenant = r.key.tenant.clone();
        let (kind, name) = (r.key.kind, r.key.name.clone());
        let ts = self.state(&tenant);
        let local = ts.get(kind, &name);
        if let Some(l) = local
            && l.id == r.id
            && l.history.len() > r.history.len()
        {
            return; // ours is newer
        }
        let was_blocking = local.is_some_and(Restriction::blocks);
        let released = matches!(r.state, State::Probation | State::Lifted)
            && r.history.iter().any(|t| t.to == State::Probation);
        let released_now = released && (was_blocking || local.is_none_or(|l| l.id != r.id));
        // The release's own time, the same on every node of a cluster.
        let released_at = history_end(&r);
        if r.state == State::Lifted {
            ts.remove(kind, &name);
        } else {
            ts.put(r);
        }
        if released_now && was_blocking {
            let tc = self.counters.tenant_mut(&tenant);
            let subject = match kind {
                Kind::TenantThreshold | Kind::TenantUnregistered => {
                    tc.samples.clear();
                    Some(&mut tc.tenant)
                }
                Kind::Connector => tc.connectors.get_mut(&name),
                Kind::User => tc.users.get_mut(&name),
            };
            if let Some(s) = subject {
                s.clear();
                s.cleared_at = released_at;
            }
        }
    }

    /// Cluster mode: the other nodes' counts of `tenant` (as they saved them) join this node's.
    pub fn set_others(&mut self, tenant: &str, others: &[&TenantCounters]) {
        if let Some(tc) = self.counters.tenant_mut_existing(tenant) {
            tc.set_others(others);
            return;
        }
        let mut tc = TenantCounters::default();
        tc.set_others(others);
        self.counters.restore(tenant, tc);
    }

    /// Every counter of a tenant beside its threshold, as admins see them.
    pub fn view(&self, tenant: &str, now: i64) -> Vec<CounterView> {
        view(self.counters.tenant(tenant), self.limits(tenant), now)
    }
}

fn flag_key(kind: Kind, name: &str) -> String {
    match kind {
        Kind::User => format!("user:{name}"),
        Kind::Connector => format!("connector:{name}"),
        Kind::TenantThreshold | Kind::TenantUnregistered => "tenant".to_string(),
    }
}

fn add(s: &mut SubjectCounters, now: i64, c: &Counts) {
    s.day.add(now, c);
    s.hour.add(now, c);
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

fn top(map: HashMap<&str, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().map(|(k, n)| (k.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(10);
    v
}

/// One counter beside its threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CounterView {
    /// `tenant`, `connector:NAME` or `user:ADDRESS`.
    pub subject: String,
    pub counter: String,
    pub value: u64,
    /// `None` where no limit is set.
    pub threshold: Option<u64>,
}

/// Every counter of a tenant beside its threshold (no undisclosed limits). Works on counters
/// read back from the store as well as on a live guard's.
pub fn view(tc: Option<&TenantCounters>, lim: &Limits, now: i64) -> Vec<CounterView> {
    let mut out = Vec::new();
    let empty = TenantCounters::default();
    let tc = tc.unwrap_or(&empty);
    let row =
        |out: &mut Vec<CounterView>, subject: &str, counter: &str, value: u32, t: Option<u64>| {
            out.push(CounterView {
                subject: subject.to_string(),
                counter: counter.to_string(),
                value: u64::from(value),
                threshold: t,
            })
        };
    let t = tc.tenant.day.peek(now);
    row(&mut out, "tenant", "messages_24h", t.messages, None);
    row(&mut out, "tenant", "recipients_24h", t.recipients, None);
    row(
        &mut out,
        "tenant",
        "unregistered_messages_24h",
        t.unregistered,
        Some(lim.unregistered_allowance_per_day),
    );
    row(
        &mut out,
        "tenant",
        "unregistered_suspicious_24h",
        t.unregistered_suspicious,
        Some(lim.unregistered_suspicious_per_day),
    );
    row(
        &mut out,
        "tenant",
        "suspicious_messages_24h",
        t.suspicious,
        Some(lim.tenant_suspicious_per_day),
    );
    row(
        &mut out,
        "tenant",
        "suspicious_share_24h_percent",
        (ratio(t.suspicious, t.messages) * 100.0) as u32,
        Some((lim.tenant_suspicious_ratio * 100.0) as u64),
    );
    let mut connectors: Vec<(&str, &SubjectCounters)> = tc.connectors.iter().collect();
    connectors.sort_by_key(|(n, _)| *n);
    for (n, c) in connectors {
        let c = c.day.peek(now);
        let s = format!("connector:{n}");
        row(&mut out, &s, "messages_24h", c.messages, None);
        row(
            &mut out,
            &s,
            "suspicious_messages_24h",
            c.suspicious,
            Some(lim.connector_suspicious_per_day),
        );
        row(
            &mut out,
            &s,
            "suspicious_share_24h_percent",
            (ratio(c.suspicious, c.messages) * 100.0) as u32,
            Some((lim.connector_suspicious_ratio * 100.0) as u64),
        );
    }
    let mut users: Vec<(&str, &SubjectCounters)> = tc.users.iter().collect();
    users.sort_by_key(|(n, _)| *n);
    for (n, u) in users {
        let d = u.day.peek(now);
        let h = u.hour.peek(now);
        let s = format!("user:{n}");
        row(&mut out, &s, "messages_24h", d.messages, None);
        row(
            &mut out,
            &s,
            "recipients_24h",
            d.recipients,
            Some(
                lim.outbound_per_day
                    .map_or(lim.user_recipients_per_day, |p| {
                        p.min(lim.user_recipients_per_day)
                    }),
            ),
        );
        row(
            &mut out,
            &s,
            "suspicious_messages_24h",
            d.suspicious,
            Some(lim.user_suspicious_per_day),
        );
        row(
            &mut out,
            &s,
            "external_recipients_1h",
            h.external,
            lim.outbound_external_per_hour,
        );
        row(
            &mut out,
            &s,
            "internal_recipients_1h",
            h.internal,
            lim.outbound_internal_per_hour,
        );
    }
    out
}

/// When a restriction's last release happened: its latest move to probation.
fn history_end(r: &Restriction) -> i64 {
    r.history
        .iter()
        .rev()
        .find(|t| t.to == State::Probation)
        .map_or(0, |t| t.at)
}
