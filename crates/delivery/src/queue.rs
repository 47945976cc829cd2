// Over 800 lines: the scheduler and one delivery round share the waiting set and its locks; destinations, the bodies' memory, where mail goes, reports and outbound connections already live in queue/destinations.rs, memory.rs, route.rs, reports.rs, idle.rs, and operators' actions in actions.rs.
//! The queue: which message is due when, and one delivery round for a message.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use relayward_clock::now_ms;
use relayward_spool::{Envelope, RcptState, Recipient, Ret, Spool};
use relayward_store::{TraceEvent, TraceKind};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;

use crate::client::{ClientError, ClientSettings, OutMessage, OutRcpt, SmtpReply};
use crate::dns::Resolver;

mod actions;
pub use actions::{QueueAction, QueueActionError, Selected, Selection};
pub use shape::{SHAPE_MINUTES, Shape, ShapeBy, ShapeRow};
mod delayed;
mod destinations;
mod idle;
mod memory;
mod mta_sts;
mod reports;
mod required_tls;
mod route;
mod shape;
pub use delayed::Delayed;
pub use destinations::DestinationView;
use destinations::{Health, WakeParked};
use memory::BodyMemory;
use route::domains_of;

/// Delivery settings; every default is in [`DeliveryConfig::new`].
#[derive(Clone)]
pub struct DeliveryConfig {
    /// EHLO name and Reporting-MTA.
    pub hostname: String,
    /// EHLO name used from the high-risk pool.
    pub high_risk_hostname: String,
    /// The name this relay's own SMTP server answers EHLO with, when the operator gave it one: a
    /// next hop that answers with it is this relay (`ClientError::Loop`). `None`: not checked.
    pub own_name: Option<String>,
    /// Send everything here (`host:port`) instead of looking up MX records.
    pub smart_host: Option<String>,
    /// Port used for MX hosts (25 in production; tests point it at their receiver).
    pub remote_port: u16,
    /// Networks off the public internet that DNS (a domain's MX, a route's host name) may still
    /// lead to (`reach.rs`); the smart host and routes written as addresses are reached wherever
    /// they are.
    pub private_destinations: Vec<ipnet::IpNet>,
    pub retry_schedule: Vec<Duration>,
    pub expire_after: Duration,
    pub normal_pool: Vec<PoolAddress>,
    pub high_risk_pool: Vec<PoolAddress>,
    /// Look up each sender domain's MX and A records and send mail from domains with neither
    /// through the high-risk pool. Off when a smart host carries everything and no resolver was
    /// configured (the relay then does no DNS of its own).
    pub check_sender_dns: bool,
    /// Tell the sender once when a message is still undelivered after this long (RFC 3461
    /// delay notice); `None`: never.
    pub delay_notice_after: Option<Duration>,
    pub max_per_destination: usize,
    pub max_concurrent_messages: usize,
    /// Bytes of message bodies that delivery rounds may hold together (`queue/memory.rs`).
    pub max_body_memory: usize,
    pub max_messages_per_connection: u32,
    /// Recipients in one transaction at most; a message to more of one destination takes
    /// several, one after the other on the same connection (`client/transactions.rs`).
    pub recipients_per_transaction: usize,
    pub idle_connection: Duration,
    pub connect_timeout: Duration,
    pub command_timeout: Duration,
    pub final_timeout: Duration,
    pub tls: bool,
    /// BDAT to next hops that offer CHUNKING (`client/bdat.rs`).
    pub chunking: bool,
    /// MTA-STS for MX delivery (`mta_sts.rs`); `None`: off.
    pub mta_sts: Option<crate::mta_sts::MtaStsConfig>,
    /// DANE for MX delivery (`dane.rs`), through this validating resolver (`Some(None)`: the
    /// system's); `None`: off.
    pub dane: Option<Option<std::net::SocketAddr>>,
}

/// A source address of a pool, with the EHLO name its connections use when it has one of its
/// own (else the pool's: `hostname` or `high_risk_hostname`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolAddress {
    pub ip: IpAddr,
    pub helo: Option<String>,
}

impl DeliveryConfig {
    pub fn new(hostname: impl Into<String>) -> DeliveryConfig {
        let hostname = hostname.into();
        DeliveryConfig {
            high_risk_hostname: hostname.clone(),
            own_name: Some(hostname.clone()),
            hostname,
            smart_host: None,
            remote_port: 25,
            private_destinations: Vec::new(),
            retry_schedule: [60, 300, 900, 1800, 3600, 7200, 14_400]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            expire_after: Duration::from_secs(48 * 3600),
            normal_pool: Vec::new(),
            high_risk_pool: Vec::new(),
            check_sender_dns: true,
            delay_notice_after: Some(Duration::from_secs(4 * 3600)),
            max_per_destination: 20,
            max_concurrent_messages: 512,
            max_body_memory: 1024 * 1024 * 1024,
            max_messages_per_connection: 100,
            recipients_per_transaction: 100,
            idle_connection: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            command_timeout: Duration::from_secs(300),
            final_timeout: Duration::from_secs(600),
            tls: true,
            chunking: true,
            mta_sts: Some(crate::mta_sts::MtaStsConfig::default()),
            dane: None,
        }
    }

    /// The wait before round `attempts + 1`; past the schedule's end its last step repeats.
    fn retry_delay(&self, attempts: u32) -> Duration {
        let i = (attempts.max(1) as usize - 1).min(self.retry_schedule.len().saturating_sub(1));
        self.retry_schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }
}

/// What the relay decides at delivery time: fixed next hops, and whether a queued message may
/// still go out at all.
pub trait Router: Send + Sync + 'static {
    /// A fixed next hop for a recipient domain (a tenant's own server), if it has one.
    fn route(&self, domain: &str) -> Option<String>;

    /// The full reply (`550 5.7.705 ...`) when a restriction that started after this message
    /// was queued now covers its sender: the message fails with that reply and its sender gets
    /// an NDR carrying it (SPEC section 3).
    fn refusal(&self, _env: &Envelope) -> Option<String> {
        None
    }

    /// Where a report about a message from `sender` goes: the original sender when `sender` is
    /// one of this relay's own SRS addresses (a forwarded copy's), else `sender`. Sent to the
    /// SRS address itself, the report would go to the forwarding tenant's own server, which
    /// knows nothing of it (SPEC section 5: bounces go back to the original sender).
    fn report_to(&self, sender: &str) -> String {
        sender.to_string()
    }

    /// The language of a tenant's reports (`en`, `es`).
    fn language(&self, _tenant: Option<&str>) -> String {
        "en".into()
    }
}

/// The message as it leaves, with header fields put on top (DKIM signatures, an ARC seal) or,
/// when a seal cannot be made, the incomplete ARC set taken off: keys may change between
/// attempts, so this runs at delivery, not at receipt. `None` sends the message as spooled.
pub trait Signer: Send + Sync + 'static {
    fn sign<'a>(
        &'a self,
        env: &'a Envelope,
        message: Arc<Vec<u8>>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<Outgoing>> + Send + 'a>>;
}

/// A message as it leaves: `head`, then the spooled message from `from` on. The body is never
/// copied: what changes at delivery is in the header section.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Header fields put on top and, when fields of the message's own header section were
    /// taken off, what is left of that section.
    pub head: Vec<u8>,
    pub message: Arc<Vec<u8>>,
    pub from: usize,
}

impl Outgoing {
    /// The message as spooled.
    pub fn unchanged(message: Arc<Vec<u8>>) -> Outgoing {
        Outgoing {
            head: Vec::new(),
            message,
            from: 0,
        }
    }

    /// What follows `head`.
    pub fn rest(&self) -> &[u8] {
        self.message.get(self.from..).unwrap_or_default()
    }
}

/// A queued message as operators see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct QueuedMessage {
    pub id: String,
    pub tenant: Option<String>,
    pub mail_from: String,
    /// Recipients still to deliver.
    pub pending: Vec<String>,
    /// The last temporary answer, if any.
    pub last_reply: Option<String>,
    pub attempts: u32,
    /// Unix seconds.
    pub received_at: i64,
    pub next_attempt: i64,
    pub held: bool,
    /// In a cluster, the node whose queue holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// Where delivery reports what happened (the message trace).
pub trait Events: Send + Sync + 'static {
    fn event(&self, event: TraceEvent);

    /// A recipient's final answer from a remote server: delivered, or refused for good (5xx).
    /// The sender's behavioural signals learn from it.
    fn outcome(&self, _env: &Envelope, _refused: bool) {}
}

/// Figures for `/metrics`.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub queued: AtomicU64,
    pub in_flight: AtomicU64,
    pub delivered: AtomicU64,
    pub deferred: AtomicU64,
    pub failed: AtomicU64,
    pub ndrs: AtomicU64,
    pub connections_opened: AtomicU64,
    pub connections_reused: AtomicU64,
    /// Connections that went on without the TLS their destination offered, its STARTTLS
    /// having failed (now or within the last hour).
    pub starttls_fallbacks: AtomicU64,
    /// Delivery attempts to a host that an enforced MTA-STS policy does not let mail reach
    /// (not one of its MX patterns, no TLS, or a certificate not for its name).
    pub mta_sts_refusals: AtomicU64,
    /// The same failures under policies in `testing` mode: the mail went all the same.
    pub mta_sts_testing_failures: AtomicU64,
    /// Delivery attempts that a host's signed TLSA records (DANE) did not let go there (no
    /// TLS, a certificate none of them names, or records that could not be had).
    pub dane_refusals: AtomicU64,
    /// Connections made under DANE: TLS with a certificate the host's TLSA records name.
    pub dane_connections: AtomicU64,
    pub normal_pool_messages: AtomicU64,
    pub high_risk_pool_messages: AtomicU64,
}

#[derive(Default)]
struct Sched {
    heap: BinaryHeap<Reverse<(i64, u64, String)>>,
    waiting: HashMap<String, Envelope>,
    seq: u64,
    /// Bodies of messages just received, kept for their first round so it does not read the
    /// spool again; at most `FRESH_BYTES` in all. A round takes its body out whatever happens
    /// next, so a message that waits gets read from the spool when its turn comes.
    fresh: HashMap<String, Arc<Vec<u8>>>,
    fresh_bytes: usize,
}

/// The most bytes of just-received bodies the queue holds for their first round.
const FRESH_BYTES: usize = 32 << 20;

impl Sched {
    fn take_fresh(&mut self, id: &str) -> Option<Arc<Vec<u8>>> {
        let body = self.fresh.remove(id)?;
        self.fresh_bytes -= body.len();
        Some(body)
    }
}

struct Inner {
    config: DeliveryConfig,
    spool: Spool,
    resolver: Arc<dyn Resolver>,
    router: Arc<dyn Router>,
    events: Arc<dyn Events>,
    sched: Mutex<Sched>,
    wake: Notify,
    workers: Arc<Semaphore>,
    /// What the bodies of the rounds under way hold, and the messages waiting for it.
    body_memory: BodyMemory,
    destinations: Mutex<HashMap<String, Arc<Semaphore>>>,
    /// Messages waiting for a busy destination's slot, by destination, oldest first: they hold
    /// no delivery slot of their own while they wait (a freed slot wakes the next one).
    parked: Mutex<HashMap<String, VecDeque<String>>>,
    /// Destinations that keep failing, backed off as a whole.
    health: Mutex<HashMap<String, Health>>,
    /// Places for outbound connections, in use or idle: `max_concurrent_messages` of them.
    connections: Arc<Semaphore>,
    /// Idle connections by next hop (address, source, EHLO name), each with its place.
    idle: Mutex<idle::Idle>,
    /// Sender domains with neither MX nor A records (true), as last looked up.
    sender_dns: Mutex<HashMap<String, (bool, Instant)>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Addresses whose STARTTLS failed lately, reached without TLS for a while.
    broken_tls: crate::starttls::BrokenTls,
    /// Recipient domains' MTA-STS policies; `None` with a smart host or when off.
    mta_sts: Option<crate::mta_sts::MtaSts>,
    /// DANE lookups; `None` with a smart host or when off.
    dane: Option<crate::dane::Dane>,
    stats: QueueStats,
    signer: std::sync::OnceLock<Arc<dyn Signer>>,
    /// Ids of the messages in a delivery round right now.
    delivering: Mutex<HashMap<String, delayed::InRound>>,
}

#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

impl Queue {
    pub fn new(
        config: DeliveryConfig,
        spool: Spool,
        resolver: Arc<dyn Resolver>,
        router: Arc<dyn Router>,
        events: Arc<dyn Events>,
    ) -> Queue {
        let tls = if config.tls {
            match crate::client::opportunistic_tls() {
                Ok(t) => Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "outbound TLS unavailable; delivering in clear text");
                    None
                }
            }
        } else {
            None
        };
        let mta_sts = config
            .mta_sts
            .as_ref()
            .filter(|_| config.smart_host.is_none())
            .and_then(|m| match crate::client::verifying_tls(&m.ca_file) {
                Ok(tls) => Some(crate::mta_sts::MtaSts::new(
                    crate::mta_sts::Settings {
                        tls,
                        port: m.port,
                        private_destinations: config.private_destinations.clone(),
                        timeout: m.timeout,
                    },
                    resolver.clone(),
                )),
                Err(e) => {
                    tracing::error!(error = %e, "MTA-STS is off: the CA bundle that certificates are checked against cannot be read ([delivery] tls_ca_file)");
                    None
                }
            });
        let dane = config
            .dane
            .filter(|_| config.smart_host.is_none())
            .and_then(|server| match crate::dane::Dane::new(server) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!(error = %e, "DANE is off: no resolver to ask");
                    None
                }
            });
        Queue {
            inner: Arc::new(Inner {
                workers: Arc::new(Semaphore::new(config.max_concurrent_messages.max(1))),
                connections: Arc::new(Semaphore::new(config.max_concurrent_messages.max(1))),
                body_memory: BodyMemory::new(config.max_body_memory),
                config,
                spool,
                resolver,
                router,
                events,
                sched: Mutex::default(),
                wake: Notify::new(),
                destinations: Mutex::default(),
                parked: Mutex::default(),
                health: Mutex::default(),
                idle: Mutex::default(),
                sender_dns: Mutex::default(),
                tls,
                broken_tls: Default::default(),
                mta_sts,
                dane,
                stats: QueueStats::default(),
                signer: std::sync::OnceLock::new(),
                delivering: Mutex::default(),
            }),
        }
    }

    pub fn stats(&self) -> &QueueStats {
        &self.inner.stats
    }

    /// Bytes of message bodies the rounds under way hold (past the ones too small to count),
    /// the budget (`max_body_memory`), and messages waiting for it.
    pub fn body_memory(&self) -> (usize, usize, usize) {
        self.inner.body_memory.figures()
    }

    /// Destinations with deliveries under way, messages waiting for them, or failures, the
    /// busiest first.
    pub fn destinations(&self) -> Vec<DestinationView> {
        self.inner.destinations()
    }

    /// Signs (and seals) messages as they leave; set once, at start.
    pub fn set_signer(&self, signer: Arc<dyn Signer>) {
        let _ = self.inner.signer.set(signer);
    }

    /// Keeps fetched MTA-STS policies in `store` (across restarts, shared by a cluster's
    /// nodes) and reads them from it for domains not seen since the start.
    pub fn keep_mta_sts_policies(&self, store: Arc<dyn relayward_store::Store>) {
        if let Some(sts) = &self.inner.mta_sts {
            sts.keep_in(store);
        }
    }

    /// Hands a spooled message to the queue; it is tried at its `next_attempt` (now if past).
    pub fn enqueue(&self, env: Envelope) {
        self.inner.schedule(env);
    }

    /// Hands a just-spooled message to the queue with its body, which its first round uses
    /// instead of reading the spool (while the bodies held so far stay under a bound).
    pub fn enqueue_with_body(&self, env: Envelope, body: Arc<Vec<u8>>) {
        {
            let mut s = self.inner.sched.lock().unwrap_or_else(|p| p.into_inner());
            if s.fresh_bytes + body.len() <= FRESH_BYTES {
                s.fresh_bytes += body.len();
                if let Some(old) = s.fresh.insert(env.id.clone(), body) {
                    s.fresh_bytes -= old.len();
                }
            }
        }
        self.inner.schedule(env);
    }

    /// Runs the scheduler until `stop` turns true; deliveries under way are then given `grace`.
    pub async fn run(&self, mut stop: watch::Receiver<bool>, grace: Duration) {
        let inner = &self.inner;
        let janitor = {
            let inner = inner.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    inner.sweep_idle();
                }
            })
        };
        loop {
            if *stop.borrow() {
                break;
            }
            let due = {
                let s = inner.sched.lock().unwrap_or_else(|p| p.into_inner());
                s.heap.peek().map(|Reverse((at, _, _))| *at)
            };
            let wait = match due {
                None => Duration::from_secs(3600),
                Some(at) => Duration::from_millis((at - now_ms()).max(0) as u64),
            };
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = inner.wake.notified() => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let (env, fresh) = {
                let mut s = inner.sched.lock().unwrap_or_else(|p| p.into_inner());
                match s.heap.pop() {
                    // An entry earlier than its message's time was left behind when the message
                    // was woken or retried: the message has its own, later entry.
                    Some(Reverse((at, _, id)))
                        if s.waiting
                            .get(&id)
                            .is_some_and(|e| e.next_attempt.saturating_mul(1000) <= at) =>
                    {
                        (s.waiting.remove(&id), s.take_fresh(&id))
                    }
                    _ => (None, None),
                }
            };
            let Some(env) = env else { continue };
            if env.held {
                // Held by an operator: it stays, unscheduled, until released.
                let mut s = inner.sched.lock().unwrap_or_else(|p| p.into_inner());
                s.waiting.insert(env.id.clone(), env);
                continue;
            }
            // A message for destinations that cannot take it now waits without holding one
            // of the delivery slots other destinations could use.
            let Some(env) = inner.admit(env) else {
                continue;
            };
            let permit = tokio::select! {
                p = inner.workers.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => {
                        inner.requeue(env);
                        break;
                    }
                },
                _ = stop.changed() => {
                    inner.requeue(env);
                    continue;
                }
            };
            // A large body waits for memory without holding the slot.
            let size = match &fresh {
                Some(body) => body.len(),
                None => inner.spool.body_len(&env.id).unwrap_or(0),
            };
            if !inner.body_memory.take_or_park(&env.id, size) {
                let mut env = env;
                env.next_attempt = now_ms() / 1000 + 30;
                inner.requeue(env);
                continue;
            }
            let body_share = BodyShare {
                inner: inner.clone(),
                size,
            };
            inner.stats.queued.fetch_sub(1, Ordering::Relaxed);
            inner.stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let id = env.id.clone();
            let in_round = delayed::InRound::of(&env);
            inner
                .delivering
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.clone(), in_round);
            let inner2 = inner.clone();
            // The round's state on the heap, as a connection's is (`smtp::server`): spawning
            // and ending the task copies a pointer, not the state.
            tokio::spawn(Box::pin(async move {
                inner2.clone().deliver(env, fresh).await;
                let ended = inner2
                    .delivering
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&id);
                inner2.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
                drop(body_share);
                drop(permit);
                if let Some(action) = ended.and_then(|r| r.after) {
                    Queue { inner: inner2 }.act_after_round(&id, action).await;
                }
            }));
        }
        janitor.abort();
        let all = inner.config.max_concurrent_messages.max(1) as u32;
        let _ = tokio::time::timeout(grace, inner.workers.acquire_many(all)).await;
        for c in inner.drain_idle() {
            c.quit().await;
        }
    }
}

/// A round's share of the body memory; given back when the round ends, waking the messages
/// that waited for it.
struct BodyShare {
    inner: Arc<Inner>,
    size: usize,
}

impl Drop for BodyShare {
    fn drop(&mut self) {
        let woken = self.inner.body_memory.give_back(self.size);
        self.inner.wake_for_memory(woken);
    }
}

impl Inner {
    /// Wakes the messages memory was reserved for; one no longer waiting passes its reservation
    /// on to the next in line.
    fn wake_for_memory(&self, mut woken: Vec<String>) {
        while let Some(id) = woken.pop() {
            if !self.due_now(&id) {
                woken.extend(self.body_memory.forget(&id));
            }
        }
    }

    /// Makes a waiting message due now (one that was parked); false when it is not waiting.
    fn due_now(&self, id: &str) -> bool {
        let mut s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms() / 1000;
        let Some(env) = s.waiting.get_mut(id) else {
            return false;
        };
        env.next_attempt = env.next_attempt.min(now);
        let at = env.next_attempt.saturating_mul(1000);
        s.seq += 1;
        let seq = s.seq;
        s.heap.push(Reverse((at, seq, id.to_string())));
        drop(s);
        self.wake.notify_one();
        true
    }

    /// Puts back a message taken off the heap but not delivered (still counted as queued).
    fn requeue(&self, env: Envelope) {
        let mut s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
        s.seq += 1;
        let seq = s.seq;
        let at = env.next_attempt.saturating_mul(1000);
        s.heap.push(Reverse((at, seq, env.id.clone())));
        s.waiting.insert(env.id.clone(), env);
        drop(s);
        self.wake.notify_one();
    }

    fn schedule(&self, env: Envelope) {
        let mut s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
        s.seq += 1;
        let seq = s.seq;
        let at = env.next_attempt.saturating_mul(1000);
        s.heap.push(Reverse((at, seq, env.id.clone())));
        if s.waiting.insert(env.id.clone(), env).is_none() {
            self.stats.queued.fetch_add(1, Ordering::Relaxed);
        }
        drop(s);
        self.wake.notify_one();
    }

    fn event(&self, id: &str, kind: TraceKind, recipient: Option<&str>, detail: String) {
        self.events.event(TraceEvent {
            message_id: id.to_string(),
            at: now_ms(),
            kind,
            recipient: recipient.map(str::to_string),
            detail,
            summary: None,
        });
    }

    /// One delivery round for a message; `fresh` is its body when it was just received.
    async fn deliver(self: Arc<Self>, mut env: Envelope, fresh: Option<Arc<Vec<u8>>>) {
        let read = match fresh {
            Some(body) => Ok(body),
            None => self.spool.body(&env.id).await.map(Arc::new),
        };
        let body = match read {
            Ok(b) => b,
            Err(e) => {
                // Without its body the message cannot go anywhere; retrying will not help unless
                // the disk comes back, so keep it scheduled and say so loudly.
                tracing::error!(id = %env.id, error = %e, "cannot read spooled body; retrying later");
                env.next_attempt = now_ms() / 1000 + 300;
                self.schedule(env);
                return;
            }
        };
        if let Some(reply) = self.router.refusal(&env) {
            for r in env.recipients.iter_mut().filter(|r| r.is_pending()) {
                self.stats.failed.fetch_add(1, Ordering::Relaxed);
                let detail = format!("relay: {reply} (restriction started while queued)");
                self.event(&env.id, TraceKind::Failed, Some(&r.address), detail);
                r.state = RcptState::Failed {
                    reply: reply.clone(),
                    remote: None,
                };
            }
            self.after_round(env).await;
            return;
        }
        let signed = match self.signer.get() {
            Some(signer) => signer.sign(&env, body.clone()).await,
            None => None,
        };
        let body = Arc::new(signed.unwrap_or_else(|| Outgoing::unchanged(body)));
        env.attempts += 1;
        // Recipients by destination: a domain's MX hosts, or one next hop for every domain a
        // route or the smart host sends there (their recipients share its transactions).
        let mut groups: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in env.recipients.iter().enumerate() {
            if r.is_pending() {
                groups
                    .entry(self.destination_of(&r.domain()))
                    .or_default()
                    .push(i);
            }
        }
        let snapshot = Arc::new(env.clone());
        let mut tasks = JoinSet::new();
        // One message does not take every outbound connection (nor hold a DNS lookup per
        // domain at once): past `ROUND_FAN_OUT` destinations, they take turns.
        let turns = (groups.len() > ROUND_FAN_OUT).then(|| Arc::new(Semaphore::new(ROUND_FAN_OUT)));
        for (destination, idxs) in groups {
            let inner = self.clone();
            let env = snapshot.clone();
            let body = body.clone();
            let turns = turns.clone();
            tasks.spawn(async move {
                let _turn = match turns {
                    Some(turns) => turns.acquire_owned().await.ok(),
                    None => None,
                };
                inner.deliver_to(&env, &destination, &idxs, &body).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            let Ok(outcomes) = done else { continue };
            for (i, state, taken) in outcomes {
                if let Some(r) = env.recipients.get_mut(i) {
                    r.relayed_without_dsn = taken.without_dsn;
                    let (kind, detail) = match &state {
                        RcptState::Delivered { reply, remote } => {
                            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
                            self.events.outcome(&snapshot, false);
                            let tls = if taken.tls { " over TLS" } else { "" };
                            (TraceKind::Delivered, format!("{remote}{tls}: {reply}"))
                        }
                        RcptState::Failed { reply, remote } => {
                            self.stats.failed.fetch_add(1, Ordering::Relaxed);
                            if remote.is_some() && reply.starts_with('5') {
                                self.events.outcome(&snapshot, true);
                            }
                            let at = remote.as_deref().unwrap_or("relay");
                            (TraceKind::Failed, format!("{at}: {reply}"))
                        }
                        RcptState::Pending { last_reply } => {
                            self.stats.deferred.fetch_add(1, Ordering::Relaxed);
                            (TraceKind::Deferred, last_reply.clone().unwrap_or_default())
                        }
                    };
                    self.event(&env.id, kind, Some(&r.address), detail);
                    r.state = state;
                }
            }
        }
        // A report reads what it returns from the spool; the round's copy is not needed.
        drop(body);
        self.after_round(env).await;
    }

    async fn after_round(&self, mut env: Envelope) {
        let now = now_ms() / 1000;
        if !env.is_finished() {
            let expired = now >= env.received_at + self.config.expire_after.as_secs() as i64;
            if !expired {
                if self.maybe_send_delay(&env, now).await {
                    env.delay_notified = true;
                }
                env.next_attempt = now + self.config.retry_delay(env.attempts).as_secs() as i64;
                self.spool.update(&env);
                self.schedule(env);
                return;
            }
            let hours = self.config.expire_after.as_secs() / 3600;
            for r in env.recipients.iter_mut().filter(|r| r.is_pending()) {
                let last = match &r.state {
                    RcptState::Pending {
                        last_reply: Some(l),
                    } => l.clone(),
                    _ => "no attempt succeeded".into(),
                };
                r.state = RcptState::Failed {
                    reply: format!(
                        "554 5.4.7 Delivery time expired after {hours} hours of retries; last error: {last}"
                    ),
                    remote: None,
                };
                self.event(&env.id, TraceKind::Expired, Some(&r.address), last);
            }
        }
        if let Err(e) = self.send_ndr(&env).await {
            // The NDR could not be spooled (disk full): keep the original and try again later
            // rather than finish it without the report its sender is owed.
            tracing::error!(id = %env.id, error = %e, "cannot spool NDR; keeping the message");
            env.next_attempt = now + 300;
            self.spool.update(&env);
            self.schedule(env);
            return;
        }
        self.spool.done(&env.id);
    }

    fn destination_slot(&self, key: &str) -> Arc<Semaphore> {
        let mut map = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(self.config.max_per_destination.max(1))))
            .clone()
    }

    /// Delivers the recipients `idxs` of `env`, all of one destination (`destination_of`).
    async fn deliver_to(
        &self,
        env: &Envelope,
        destination: &str,
        idxs: &[usize],
        body: &Outgoing,
    ) -> Vec<(usize, RcptState, Taken)> {
        let all = |state: RcptState| {
            idxs.iter()
                .map(|&i| (i, state.clone(), Taken::default()))
                .collect()
        };
        // Every recipient domain here has the same hosts: the first one's are looked up, and
        // what is said of them names the domains.
        let domains = domains_of(env, idxs);
        let Some(domain) = idxs.first().and_then(|&i| env.recipients.get(i)) else {
            return Vec::new();
        };
        let domain = &domain.domain();
        let hops = match self.hops(domain, &domains).await {
            Ok(h) => h,
            Err(state) => return all(state),
        };
        if let Some(failures) = self.backed_off(destination) {
            return all(pending(&format!(
                "451 4.4.1 {destination} did not answer {failures} times in a row; waiting before the next try"
            )));
        }
        let slot = self.destination_slot(destination);
        // Dropped after the slot: whoever waits for this destination goes next.
        let _next = WakeParked {
            inner: self,
            destination,
        };
        let Ok(_permit) = slot.acquire_owned().await else {
            return all(pending("451 4.3.0 Delivery is shutting down"));
        };
        let pool = self.pool_for(env).await;
        let rcpts: Vec<&Recipient> = idxs.iter().filter_map(|&i| env.recipients.get(i)).collect();
        let msg = OutMessage {
            mail_from: &env.mail_from,
            smtputf8: env.smtputf8,
            body_8bit: env.body_8bit,
            ret: env.ret.map(|r| match r {
                Ret::Full => "FULL",
                Ret::Hdrs => "HDRS",
            }),
            env_id: env.env_id.as_deref(),
            rcpts: rcpts
                .iter()
                .map(|r| OutRcpt {
                    address: &r.address,
                    notify: r.notify.map(notify_param),
                    orcpt: r.orcpt.as_deref(),
                })
                .collect(),
            head: &body.head,
            body: body.rest(),
        };
        let base = ClientSettings {
            helo: pool.helo.clone(),
            own_name: self.config.own_name.clone().unwrap_or_default(),
            connect_timeout: self.config.connect_timeout,
            command_timeout: self.config.command_timeout,
            final_timeout: self.config.final_timeout,
            tls: self.tls.clone(),
            chunking: self.config.chunking,
        };
        let mut last_error: Option<ClientError> = None;
        for hop in hops.iter().take(8) {
            let (source, helo) = match pool.source_for(hop.addr.ip()) {
                Ok(Some(s)) => (
                    Some(s.ip),
                    s.helo.clone().unwrap_or_else(|| pool.helo.clone()),
                ),
                Ok(None) => (None, pool.helo.clone()),
                Err(why) => {
                    self.event(
                        &env.id,
                        TraceKind::Attempt,
                        None,
                        format!("{domain} via {} [{}] not tried: {why}", hop.name, hop.addr),
                    );
                    last_error = Some(ClientError::Connect {
                        addr: hop.addr,
                        reason: why,
                    });
                    continue;
                }
            };
            let settings = ClientSettings {
                helo,
                ..base.clone()
            };
            let required = match self.required_tls(domain, hop) {
                Ok(r) => r,
                Err(e) => {
                    self.event(&env.id, TraceKind::Attempt, None, e.to_string());
                    last_error = Some(e);
                    continue;
                }
            };
            // A connection whose certificate was not checked for this host's name is not one
            // for a policy (one address may serve several names).
            let key = format!(
                "{}|{:?}|{}{}",
                hop.addr,
                source,
                settings.helo,
                match &required {
                    Some(r) => format!("|{}:{}", r.rule, hop.name),
                    None => String::new(),
                }
            );
            self.event(
                &env.id,
                TraceKind::Attempt,
                None,
                format!(
                    "{domains} via {} [{}] from the {} pool{}",
                    hop.name,
                    hop.addr,
                    if pool.high_risk.is_some() {
                        "high-risk"
                    } else {
                        "normal"
                    },
                    match (&pool.high_risk, source) {
                        (Some(why), Some(ip)) => format!(" ({why}) [{ip}]"),
                        (Some(why), None) => format!(" ({why})"),
                        (None, Some(ip)) => format!(" [{ip}]"),
                        (None, None) => String::new(),
                    }
                ),
            );
            // A reused connection may have been closed by the remote meanwhile: one fresh try.
            let mut reused = self.take_idle(&key);
            loop {
                let was_reused = reused.is_some();
                let (mut client, place) = match reused.take() {
                    Some(c) => {
                        self.stats
                            .connections_reused
                            .fetch_add(1, Ordering::Relaxed);
                        c
                    }
                    None => {
                        let Some(place) = self.connection_place().await else {
                            return all(pending("451 4.3.0 Delivery is shutting down"));
                        };
                        let connected = if let Some(required) = &required {
                            self.connect_requiring(domain, hop, source, &settings, required)
                                .await
                                .map(|c| (c, None))
                        } else {
                            crate::starttls::connect(
                                hop.addr,
                                source,
                                &hop.name,
                                settings.clone(),
                                &self.broken_tls,
                            )
                            .await
                        };
                        match connected {
                            Ok((c, fallback)) => {
                                self.stats
                                    .connections_opened
                                    .fetch_add(1, Ordering::Relaxed);
                                if hop.sts == Some(crate::mta_sts::Mode::Testing)
                                    && required.is_none()
                                {
                                    self.report_testing(&env.id, domain, hop, &c);
                                }
                                if let Some(why) = fallback {
                                    self.stats
                                        .starttls_fallbacks
                                        .fetch_add(1, Ordering::Relaxed);
                                    let detail = format!(
                                        "{} [{}] offers STARTTLS; sending without TLS: {}",
                                        hop.name, hop.addr, why
                                    );
                                    self.event(&env.id, TraceKind::Attempt, None, detail);
                                }
                                (c, place)
                            }
                            Err(e) => {
                                tracing::info!(id = %env.id, hop = %hop.addr, error = %e, "connect failed");
                                last_error = Some(e);
                                break;
                            }
                        }
                    }
                };
                let sent = client
                    .send_all(&msg, self.config.recipients_per_transaction)
                    .await;
                let remote = format!("{} [{}]", hop.name, hop.addr.ip());
                let took = Taken {
                    without_dsn: !client.caps.dsn,
                    tls: client.tls,
                };
                let failure = match sent.error {
                    None => {
                        self.reached(destination);
                        if client.messages_sent < self.config.max_messages_per_connection {
                            self.put_idle(key, client, place);
                        } else {
                            Inner::close(client, place);
                        }
                        None
                    }
                    // Nothing sent yet on a reused connection the remote may have closed.
                    Some(e) if was_reused && !sent.any_known() => {
                        tracing::debug!(hop = %hop.addr, error = %e, "reused connection failed; reconnecting");
                        continue;
                    }
                    Some(e) if !sent.any_known() => {
                        tracing::info!(id = %env.id, hop = %hop.addr, error = %e, "delivery attempt failed");
                        last_error = Some(e);
                        break;
                    }
                    // Some transactions ended before the connection failed: theirs are done.
                    Some(e) => {
                        tracing::info!(id = %env.id, hop = %hop.addr, error = %e, "connection failed after some recipients' transactions");
                        self.reached(destination);
                        Some(e.as_reply().to_string())
                    }
                };
                return idxs
                    .iter()
                    .zip(sent.replies)
                    .map(|(&i, reply)| match reply {
                        Some(reply) => (i, state_of(reply, &remote), took),
                        None => (
                            i,
                            pending(failure.as_deref().unwrap_or("451 4.4.2 no reply")),
                            took,
                        ),
                    })
                    .collect();
            }
            // A 5xx greeting or HELO refusal means this host will not take it: try the next.
        }
        if let Some(e @ ClientError::Loop { .. }) = &last_error {
            // Trying again finds the same host: the sender hears at once (RFC 5321 5.1).
            tracing::warn!(id = %env.id, destination, error = %e, "mail not delivered: it would loop back to this relay (route the domain to the tenant's own server)");
            return all(RcptState::Failed {
                reply: e.as_reply().to_string(),
                remote: None,
            });
        }
        self.unreachable(destination);
        let reply = last_error
            .map(|e| e.as_reply().to_string())
            .unwrap_or_else(|| "451 4.4.1 No mail host could be reached".into());
        all(pending(&reply))
    }
}

/// The most destinations one message's round delivers to at once.
const ROUND_FAN_OUT: usize = 32;

fn pending(reply: &str) -> RcptState {
    RcptState::Pending {
        last_reply: Some(reply.to_string()),
    }
}

/// How the next hop took a message, for its trace and its success notices.
#[derive(Debug, Clone, Copy, Default)]
struct Taken {
    /// It does not speak DSN: a sender who asked for success notices hears it from us.
    without_dsn: bool,
    /// The message went over TLS.
    tls: bool,
}

fn state_of(reply: SmtpReply, remote: &str) -> RcptState {
    if reply.is_positive() {
        RcptState::Delivered {
            reply: reply.to_string(),
            remote: remote.to_string(),
        }
    } else if reply.is_permanent() {
        RcptState::Failed {
            reply: reply.to_string(),
            remote: Some(remote.to_string()),
        }
    } else {
        pending(&reply.to_string())
    }
}

fn notify_param(n: relayward_spool::Notify) -> String {
    if n.never {
        return "NEVER".into();
    }
    let mut parts = Vec::new();
    if n.success {
        parts.push("SUCCESS");
    }
    if n.failure {
        parts.push("FAILURE");
    }
    if n.delay {
        parts.push("DELAY");
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedule_repeats_its_last_step() {
        let c = DeliveryConfig::new("h");
        assert_eq!(c.retry_delay(1), Duration::from_secs(60));
        assert_eq!(c.retry_delay(2), Duration::from_secs(300));
        assert_eq!(c.retry_delay(7), Duration::from_secs(14_400));
        assert_eq!(c.retry_delay(30), Duration::from_secs(14_400));
    }
}
