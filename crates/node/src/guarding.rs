//! The guard engine wired into a running relay: one engine per process behind a mutex (every
//! call is a few map lookups, never an await), fed with the directory's facts, and a background
//! task that stores what it decides (restrictions, alerts, counters), mails alerts to tenant
//! admins through the relay itself, ticks its clock and takes changes made by admins and
//! operators (or another node) from the store.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use relayward_clock::now_ms;
use relayward_control::restrictions::{restriction_from_row, restriction_row};
use relayward_delivery::Queue;
use relayward_guard::{
    AlertKind, Event, Guard, Hint, Limits, MessageFacts, Origin, Refusal, TenantCounters,
};
use relayward_spool::{Envelope, Recipient, Spool, new_message_id};
use relayward_store::{AlertRow, Store};
use relayward_tenancy::{Directory, TenantKey, domain_of};

/// What the guard needs about the sending tenant and connector that does not change from one
/// message to the next: found once per connection, and again after the directory is reloaded
/// (a renewed subscription, a deleted connector), so each MAIL costs no lookups by name.
#[derive(Debug, Clone, Copy)]
pub struct SenderFacts {
    generation: u64,
    /// `None` when the tenant is gone from the directory.
    tenant: Option<TenantKey>,
    /// When a connector created by an admin was created (Unix ms); `None` for connectors
    /// declared in the configuration file, which are the operator's own: the new-connector
    /// trigger (aimed at connectors an attacker adds) leaves them alone.
    connector_created_at: Option<i64>,
    /// First instant after the subscription, Unix ms.
    subscription_end: Option<i64>,
}

impl SenderFacts {
    pub fn of(dir: &Directory, tenant: &str, connector: Option<&str>) -> SenderFacts {
        let key = dir.tenant_key(tenant);
        let connector_created_at = key.zip(connector).and_then(|(k, c)| {
            dir.connector_by_key(k, c)
                .filter(|c| !c.by_configuration)
                .map(|c| c.created_at * 1000)
        });
        SenderFacts {
            generation: dir.generation(),
            tenant: key,
            connector_created_at,
            subscription_end: key
                .and_then(|k| dir.tenant_by_key(k))
                .and_then(|t| t.subscription_ends)
                .and_then(relayward_clock::end_of_day_ms),
        }
    }

    /// Where the directory keeps the tenant, for finding its counters without hashing its name.
    pub fn hint(&self) -> Option<Hint> {
        self.tenant.map(|k| Hint {
            generation: self.generation,
            index: k.index(),
        })
    }

    /// Still true of this directory?
    pub fn current(&self, dir: &Directory) -> bool {
        self.generation == dir.generation()
    }

    /// These facts, or fresh ones when the directory changed since they were found.
    pub fn refresh(
        cached: &mut Option<SenderFacts>,
        dir: &Directory,
        tenant: &str,
        connector: Option<&str>,
    ) -> SenderFacts {
        match cached {
            Some(f) if f.current(dir) => *f,
            _ => *cached.insert(SenderFacts::of(dir, tenant, connector)),
        }
    }
}

/// An `Origin` that owns its strings, kept per SMTP transaction.
#[derive(Debug, Clone)]
pub struct OwnedOrigin {
    /// Shared with the connection (the tenant, connector, user and client address it was
    /// attributed to): a MAIL copies no strings it already has.
    pub tenant: Arc<str>,
    pub connector: Option<Arc<str>>,
    pub connector_created_at: Option<i64>,
    pub user: Option<Arc<str>>,
    pub client_ip: Arc<str>,
    pub sender_domain: String,
    pub registered: bool,
    pub subscription_end: Option<i64>,
    facts: SenderFacts,
}

impl OwnedOrigin {
    pub fn as_origin(&self) -> Origin<'_> {
        Origin {
            tenant: &self.tenant,
            connector: self.connector.as_deref(),
            connector_created_at: self.connector_created_at,
            user: self.user.as_deref(),
            client_ip: &self.client_ip,
            sender_domain: &self.sender_domain,
            registered: self.registered,
            subscription_end: self.subscription_end,
        }
    }

    /// Builds the origin of outbound mail from `sender` through a connector or as a user.
    /// `facts` come from `SenderFacts::refresh` for the same tenant and connector.
    pub fn new(
        dir: &Directory,
        facts: SenderFacts,
        tenant: &str,
        connector: Option<&str>,
        user: Option<&str>,
        client_ip: &str,
        sender: &str,
    ) -> OwnedOrigin {
        Self::warming(
            dir,
            facts,
            &Arc::from(tenant),
            connector.map(Arc::from).as_ref(),
            user.map(Arc::from).as_ref(),
            &Arc::from(client_ip),
            sender,
            || {},
        )
    }

    /// `new`, calling `warm` (the guard's `warm` for MAIL FROM) while the directory's reads
    /// of the sender's domain and address are under way, so the message waits for the
    /// directory's memory and its counters' together.
    #[allow(clippy::too_many_arguments)]
    pub fn warming(
        dir: &Directory,
        facts: SenderFacts,
        tenant: &Arc<str>,
        connector: Option<&Arc<str>>,
        user: Option<&Arc<str>>,
        client_ip: &Arc<str>,
        sender: &str,
        warm: impl FnOnce(),
    ) -> OwnedOrigin {
        let sender_domain = if sender.is_empty() {
            String::new()
        } else {
            domain_of(sender)
        };
        // Through a connector, the user is the sender when it is one of the tenant's users.
        let (registered, user) = match facts.tenant {
            Some(k) if facts.current(dir) => {
                let probe = dir.probe_sender(k, &sender_domain, user.is_none().then_some(sender));
                warm();
                let (registered, found) = dir.sender_of(k, &probe);
                (registered, user.cloned().or_else(|| found.map(Arc::from)))
            }
            _ => {
                warm();
                (
                    !sender_domain.is_empty() && dir.is_accepted_by(tenant, &sender_domain),
                    user.cloned(),
                )
            }
        };
        OwnedOrigin {
            tenant: Arc::clone(tenant),
            connector: connector.cloned(),
            connector_created_at: facts.connector_created_at,
            user,
            client_ip: Arc::clone(client_ip),
            registered,
            sender_domain,
            subscription_end: facts.subscription_end,
            facts,
        }
    }

    /// Whether `domain` is an accepted, verified domain of the sending tenant (recipients in
    /// one are internal).
    pub fn is_accepted(&self, dir: &Directory, domain: &str) -> bool {
        accepted_by(dir, &self.facts, &self.tenant, domain)
    }
}

/// Whether `domain` is an accepted, verified domain of `tenant`: by the tenant's key while the
/// facts belong to this directory, by name otherwise.
fn accepted_by(dir: &Directory, facts: &SenderFacts, tenant: &str, domain: &str) -> bool {
    match facts.tenant {
        Some(k) if facts.current(dir) => dir.is_accepted_by_key(k, domain),
        _ => dir.is_accepted_by(tenant, domain),
    }
}

/// What the delivery queue reports: trace events to the trace, remote answers to the guard.
pub struct QueueEvents {
    pub trace: crate::trace::TraceSink,
    pub guard: Arc<GuardHandle>,
}

impl relayward_delivery::Events for QueueEvents {
    fn event(&self, event: relayward_store::TraceEvent) {
        self.trace.send(event);
    }

    fn outcome(&self, env: &Envelope, refused: bool) {
        self.guard.delivery_outcome(env, refused);
    }
}

/// Tenants whose counters wait for the store to come back (a metric).
pub static UNSAVED_TENANTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct GuardHandle {
    engine: Mutex<Guard>,
    directory: Arc<RwLock<Arc<Directory>>>,
    /// This node's name: its counters are saved under it.
    node: String,
    /// Cluster mode: the other nodes' counts join this node's.
    others: Option<Mutex<crate::shared_counters::Others>>,
    /// Counters whose save failed (the database away), by tenant: saved with the next ones.
    /// One row per tenant at most, the newest, so this is bounded by the tenants.
    unsaved: Mutex<std::collections::BTreeMap<String, String>>,
}

impl GuardHandle {
    pub fn new(
        defaults: Limits,
        per_tenant: Vec<(String, Limits)>,
        directory: Arc<RwLock<Arc<Directory>>>,
        node: &str,
        clustered: bool,
    ) -> GuardHandle {
        let mut g = Guard::new(defaults);
        g.set_node(&format!("{:x}", now_ms() % 0xfff_ffff));
        for (t, l) in per_tenant {
            g.set_tenant_limits(&t, l);
        }
        GuardHandle {
            engine: Mutex::new(g),
            directory,
            node: node.to_string(),
            others: clustered.then(Mutex::default),
            unsaved: Mutex::default(),
        }
    }

    /// Raises an alert from outside the engine (mailed, stored and posted by the guard task).
    pub fn raise(&self, alert: relayward_guard::Alert) {
        self.with(|g| g.raise(alert));
    }

    fn with<T>(&self, f: impl FnOnce(&mut Guard) -> T) -> T {
        let mut g = self.engine.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    fn dir(&self) -> Arc<Directory> {
        self.directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Puts a tenant's limits in force (an override made through the API, or the defaults
    /// again when it was removed).
    pub fn set_tenant_limits(&self, tenant: &str, limits: Limits) {
        self.with(|g| g.set_tenant_limits(tenant, limits));
    }

    /// Starts loading a tenant's counters into the processor's caches while the directory
    /// lookups of MAIL FROM run (`Guard::warm`).
    pub fn warm(&self, tenant: &str, facts: &SenderFacts, connector: Option<&str>) {
        self.with(|g| g.warm(tenant, facts.hint(), connector));
    }

    pub fn check_mail(&self, o: &OwnedOrigin) -> Result<(), Refusal> {
        self.with(|g| g.check_mail(&o.as_origin(), now_ms()))
    }

    pub fn check_rcpt(
        &self,
        o: &OwnedOrigin,
        tx_internal: u32,
        tx_external: u32,
        external: bool,
    ) -> Result<(), Refusal> {
        self.with(|g| g.check_rcpt(&o.as_origin(), tx_internal, tx_external, external, now_ms()))
    }

    pub fn record(&self, o: &OwnedOrigin, m: &MessageFacts) -> Result<(), Refusal> {
        self.with(|g| g.record(&o.as_origin(), m, now_ms()))
    }

    /// The origin of a spooled message; `None` for inbound and system mail, which no tenant's
    /// restriction or habits cover.
    fn origin_of(&self, env: &Envelope) -> Option<OwnedOrigin> {
        let tenant = env.tenant.as_deref()?;
        let (connector, user) = if let Some(rest) = env.origin.strip_prefix("connector:") {
            (Some(rest.split(" (").next().unwrap_or(rest)), None)
        } else if let Some(u) = env.origin.strip_prefix("user:") {
            (None, Some(u))
        } else if env.origin.starts_with("forward:") {
            // Forwarded copies are the tenant's own traffic, no connector's or user's.
            (None, None)
        } else {
            return None;
        };
        let dir = self.dir();
        Some(OwnedOrigin::new(
            &dir,
            SenderFacts::of(&dir, tenant, connector),
            tenant,
            connector,
            user,
            &env.client_ip,
            &env.mail_from,
        ))
    }

    /// For the queue: the reply for a queued message a restriction now covers.
    pub fn refusal_for(&self, env: &Envelope) -> Option<String> {
        let o = self.origin_of(env)?;
        self.with(|g| g.blocked(&o.as_origin(), now_ms()))
            .map(|r| format!("{} {}", r.code, r.text))
    }

    /// A remote server's final answer for a recipient of `env` (the remote-rejection signal).
    pub fn delivery_outcome(&self, env: &Envelope, refused: bool) {
        if let Some(o) = self.origin_of(env) {
            self.with(|g| g.delivery_outcome(&o.as_origin(), refused, now_ms()));
        }
    }

    /// Cluster mode: puts counters other nodes saved beside this node's (rows of this node's
    /// own are left out). Nothing on a single node.
    fn take_others(&self, rows: Vec<relayward_store::CounterRow>) {
        let Some(others) = &self.others else {
            return;
        };
        let others = others.lock().unwrap_or_else(|p| p.into_inner());
        let mut others = others;
        let changed = others.take(rows, &self.node);
        if changed.is_empty() {
            return;
        }
        self.with(|g| {
            for tenant in &changed {
                g.set_others(tenant, &others.of(tenant));
            }
        });
    }

    /// Where the next read of other nodes' counters starts; `None` on a single node.
    fn others_since(&self) -> Option<i64> {
        let others = self.others.as_ref()?;
        Some(others.lock().unwrap_or_else(|p| p.into_inner()).since())
    }

    /// The counters changed since the last save (with any whose save failed), serialised
    /// for the store.
    fn dirty_counters(&self) -> Vec<(String, String)> {
        let fresh: Vec<(String, String)> = self.with(|g| {
            let dirty = relayward_guard::CounterStore::take_dirty(g.counters_mut());
            dirty
                .into_iter()
                .filter_map(|t| {
                    let c = relayward_guard::CounterStore::tenant(g.counters(), &t)?;
                    serde_json::to_string(c).ok().map(|s| (t, s))
                })
                .collect()
        });
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        if unsaved.is_empty() {
            return fresh;
        }
        UNSAVED_TENANTS.store(0, std::sync::atomic::Ordering::Relaxed);
        unsaved.extend(fresh);
        std::mem::take(&mut *unsaved).into_iter().collect()
    }

    /// Keeps counters whose save failed for the next save (newer ones replace them).
    fn unsaved(&self, rows: Vec<(String, String)>) {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        for (tenant, body) in rows {
            unsaved.entry(tenant).or_insert(body);
        }
        UNSAVED_TENANTS.store(unsaved.len() as u64, std::sync::atomic::Ordering::Relaxed);
    }
}

/// What the background task needs to mail alerts.
pub struct AlertMail {
    pub spool: Spool,
    pub queue: Queue,
    pub hostname: String,
    pub sender: String,
}

/// Loads what the store holds (counters, open restrictions) into the engine at start: this
/// node's own counters (and those saved before counters were kept per node), and in cluster
/// mode the other nodes' beside them.
pub async fn restore(handle: &GuardHandle, store: &dyn Store) {
    match store.counters(None).await {
        Ok(rows) => {
            let n = rows.len();
            let (mine, theirs): (Vec<_>, Vec<_>) = rows
                .into_iter()
                .partition(|r| r.node == handle.node || r.node.is_empty());
            handle.with(|g| {
                for r in mine {
                    if let Ok(c) = serde_json::from_str::<TenantCounters>(&r.body) {
                        relayward_guard::CounterStore::restore(g.counters_mut(), &r.tenant, c);
                    }
                }
            });
            handle.take_others(theirs);
            tracing::info!(rows = n, "guard counters restored");
        }
        Err(e) => tracing::warn!(error = %e, "cannot restore guard counters; starting from zero"),
    }
    match store.restrictions(None, true).await {
        Ok(rows) => handle.with(|g| {
            for r in rows.iter().filter_map(restriction_from_row) {
                g.sync(r);
            }
        }),
        Err(e) => tracing::error!(error = %e, "cannot load restrictions"),
    }
}

/// Runs until the process ends: about once a second it ticks the engine, stores its events,
/// mails alerts, saves changed counters and takes restriction changes from the store.
pub async fn run(handle: Arc<GuardHandle>, store: Arc<dyn Store>, mail: AlertMail) {
    let mut seen_version = store.restrictions_version().await.unwrap_or(0);
    let mut last_sync = now_ms();
    let mut last_pull = 0;
    let mut wait = crate::changes::ChangeWait::new(
        store.change_feed(),
        "restrictions",
        Duration::from_millis(500),
    );
    loop {
        wait.next().await;
        let now = now_ms();
        let dir = handle.dir();
        let events = handle.with(|g| {
            g.tick(now);
            for t in dir.tenants_with_subscription_end() {
                let end = t.subscription_ends.and_then(relayward_clock::end_of_day_ms);
                g.subscription(t.name, end, now);
            }
            g.take_events()
        });
        // Restrictions first: one another node started first (cluster mode) is not stored
        // again, and neither its alert nor its webhook goes out twice.
        let mut taken_elsewhere: Vec<(String, String)> = Vec::new();
        let mut alert_events = Vec::new();
        for e in events {
            let r = match e {
                Event::Restriction(r) => r,
                Event::Alert(a) => {
                    alert_events.push(a);
                    continue;
                }
            };
            tracing::warn!(restriction = %r.id, subject = %r.key, state = r.state.as_str(), reason = ?r.reason, "restriction changed");
            match store.save_restriction(&restriction_row(&r)).await {
                Ok(false) => {
                    tracing::info!(subject = %r.key, "another node restricted it first; its restriction holds here too");
                    let subject = if r.key.name.is_empty() {
                        r.key.tenant.clone()
                    } else {
                        r.key.name.clone()
                    };
                    taken_elsewhere.push((r.key.tenant.clone(), subject));
                    seen_version = -1;
                    continue;
                }
                Ok(true) => {}
                Err(e) => {
                    tracing::error!(error = %e, restriction = %r.id, "cannot store restriction");
                }
            }
            relayward_control::webhooks::emit(
                store.as_ref(),
                &r.key.tenant,
                "restriction",
                serde_json::to_value(&r).unwrap_or_default(),
            )
            .await;
        }
        let mut alerts = Vec::new();
        for a in alert_events {
            let restricted = matches!(
                a.kind,
                AlertKind::TenantRestricted
                    | AlertKind::TenantRestrictedUnprovisioned
                    | AlertKind::SuspiciousConnector
                    | AlertKind::UserRestricted
            );
            if restricted
                && taken_elsewhere
                    .iter()
                    .any(|(t, s)| *t == a.tenant && *s == a.subject)
            {
                continue;
            }
            // The warnings each node raises at most once a day per subject: in a cluster, the
            // first node to claim one sends it.
            let daily = matches!(
                a.kind,
                AlertKind::SendingLimitExceeded | AlertKind::SuspiciousSendingPatterns
            );
            if daily && handle.others.is_some() {
                let key = format!("alert:{}:{:?}:{}", a.tenant, a.kind, a.subject);
                if let Ok(Some(_)) = store.count_attempt(&key, 86_400_000, 1, a.at).await {
                    continue;
                }
            }
            tracing::warn!(tenant = %a.tenant, kind = ?a.kind, "{}", a.text);
            send_alert_mail(&mail, &dir, &a).await;
            relayward_control::webhooks::emit(
                store.as_ref(),
                &a.tenant,
                "alert",
                serde_json::to_value(&a).unwrap_or_default(),
            )
            .await;
            alerts.push(AlertRow {
                id: 0,
                tenant: a.tenant,
                at: a.at,
                severity: format!("{:?}", a.severity).to_lowercase(),
                kind: serde_json::to_value(a.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                subject: a.subject,
                text: a.text,
            });
        }
        if !alerts.is_empty()
            && let Err(e) = store.add_alerts(alerts).await
        {
            tracing::error!(error = %e, "cannot store alerts");
        }
        let counters = handle.dirty_counters();
        if !counters.is_empty()
            && let Err(e) = store
                .save_counters(&handle.node, counters.clone(), now)
                .await
        {
            tracing::warn!(error = %e, tenants = counters.len(), "cannot save guard counters; kept for the next save");
            handle.unsaved(counters);
        }
        if let Some(since) = handle.others_since()
            && now - last_pull >= 1_000
        {
            last_pull = now;
            match store.counters_since(since).await {
                Ok(rows) => handle.take_others(rows),
                Err(e) => tracing::warn!(error = %e, "cannot read the other nodes' counters"),
            }
        }
        match store.restrictions_version().await {
            Ok(v) if v != seen_version => {
                seen_version = v;
                match store.restrictions(None, false).await {
                    Ok(rows) => handle.with(|g| {
                        for row in rows.iter().filter(|r| r.updated_at >= last_sync - 60_000) {
                            if let Some(r) = restriction_from_row(row) {
                                g.sync(r);
                            }
                        }
                    }),
                    Err(e) => tracing::warn!(error = %e, "cannot reload restrictions"),
                }
                last_sync = now;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot read the restrictions version"),
        }
    }
}

/// Mails an alert to the tenant's admins from the system sender. The envelope sender is null
/// (nothing bounces back), the message belongs to no tenant (never counted, never held by the
/// tenant's own restriction).
async fn send_alert_mail(mail: &AlertMail, dir: &Directory, a: &relayward_guard::Alert) {
    let Some(t) = dir.tenant(&a.tenant) else {
        return;
    };
    if t.admins().next().is_none() {
        return;
    }
    let id = new_message_id();
    let now = now_ms();
    let body = format!(
        "From: Relayward alerts <{sender}>\r\nTo: {to}\r\nSubject: [Relayward] {title}: {subject}\r\nDate: {date}\r\nMessage-ID: <{id}@{host}>\r\nAuto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{title}\r\n\r\nTenant: {tenant}\r\nSeverity: {severity:?}\r\n\r\n{text}\r\n\r\nThe admin center and `relayward restrictions` show the cause, every counter beside its threshold and the remediation checklist.\r\n",
        sender = mail.sender,
        to = t.admins().collect::<Vec<_>>().join(", "),
        title = a.kind.title(),
        subject = a.subject,
        date = relayward_dsn::rfc5322_date(now / 1000),
        host = mail.hostname,
        tenant = a.tenant,
        severity = a.severity,
        text = a.text,
    );
    let env = Envelope {
        id: id.clone(),
        received_at: now / 1000,
        mail_from: String::new(),
        ret: None,
        env_id: None,
        smtputf8: false,
        body_8bit: false,
        tenant: None,
        origin: "system:alert".into(),
        client_ip: "127.0.0.1".into(),
        helo: mail.hostname.clone(),
        recipients: t.admins().map(|a| Recipient::new(a.to_string())).collect(),
        attempts: 0,
        next_attempt: 0,
        is_report: false,
        delay_notified: false,
        high_risk: String::new(),
        held: false,
    };
    match mail.spool.put(&env, body.as_bytes()).await {
        Ok(()) => mail.queue.enqueue(env),
        Err(e) => tracing::error!(error = %e, tenant = %a.tenant, "cannot spool alert mail"),
    }
}
