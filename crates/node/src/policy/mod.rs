//! The relay policy: SPEC section 2 made concrete. It attributes each connection (connector by
//! IP range or client certificate, SMTP AUTH user) and each recipient (accepted domains for
//! inbound mail), refuses everything else with the exact replies mail administrators know, and
//! spools what it accepts. This is where "never an open relay" is decided: a recipient outside
//! every accepted domain is only taken from an attributed client.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use relayward_control::passwords::Account;
use relayward_delivery::Queue;
use relayward_smtp::{ListenerKind, MailParams, Peer, Policy, Rcpt, Reply, Transaction};
use relayward_spool::{Envelope, Notify, Recipient, Ret, Spool, SpoolError, new_message_id};
use relayward_store::{DomainKind, TraceEvent, TraceKind, TraceSummary};
use relayward_tenancy::{Directory, domain_of, domain_part};

use relayward_scan::rspamd::{Meta, Rspamd};
use relayward_scan::{Envelope as ScanEnvelope, Scan, Scanner, Verdict};

pub mod auth;
mod data;
pub mod forward;
pub mod probes;
pub mod srs;

use relayward_clock::now_ms;
use relayward_config::ScanFailure;

use crate::guarding::{GuardHandle, OwnedOrigin, SenderFacts};
use crate::trace::TraceSink;
use srs::Srs;

/// Most `Received:` headers a message may carry before we call it a loop (RFC 5321 6.3).
const MAX_HOPS: usize = 50;

pub const RELAY_DENIED: &str = "5.7.64 TenantAttribution; Relay Access Denied";
pub const NOT_AUTHENTICATED: &str =
    "5.7.57 Client was not authenticated to send anonymous mail during MAIL FROM";
pub const NOT_YOUR_SENDER: &str = "5.7.60 Client does not have permissions to send as this sender";
/// RFC 4954's temporary failure, for locked accounts and addresses (known accounts or not).
pub const AUTH_LOCKED: &str =
    "4.7.0 Temporary authentication failure: too many failed attempts, try again later";
pub const AUTH_BUSY: &str = "4.7.0 Temporary authentication failure, try again later";
/// The answer at MAIL FROM to a session whose user's password changed (or whose user went)
/// since it signed in; the session then closes.
pub const SIGN_IN_AGAIN: &str =
    "4.7.0 The credentials this session signed in with are no longer valid; sign in again";
/// The answer at MAIL FROM to a session whose connector went, or no longer claims the client,
/// since it connected; the session then closes.
pub const CONNECT_AGAIN: &str =
    "4.7.0 The connector this session was recognised by has changed; connect again";

#[derive(Default)]
pub struct PolicyStats {
    /// The store's directory version the running directory was built from.
    pub directory_version: std::sync::atomic::AtomicI64,
    pub accepted: AtomicU64,
    pub refused_rcpt: AtomicU64,
    pub refused_mail: AtomicU64,
    pub spool_errors: AtomicU64,
    pub sessions: AtomicU64,
    /// SMTP sessions open now (with at most one, the signer uses its quiet thread).
    pub open_sessions: AtomicU64,
    /// Refused by the guard (restrictions and limits), at any step.
    pub guard_refusals: AtomicU64,
    pub scanned_suspicious: AtomicU64,
    pub scanned_bulk: AtomicU64,
    pub scanned_spam: AtomicU64,
    /// Messages Rspamd could not scan (the configured fallback applied).
    pub rspamd_failures: AtomicU64,
    /// Sessions ended for improper pipelining (a client that did not wait for a reply).
    pub improper_pipelining: AtomicU64,
    /// Recipients answered 421: their client's address had too many refused (`probes.rs`).
    pub recipients_blocked: AtomicU64,
}

pub struct RelayPolicy {
    pub directory: Arc<RwLock<Arc<Directory>>>,
    pub spool: Spool,
    pub queue: Queue,
    pub trace: TraceSink,
    pub hostname: String,
    /// Where mail for postmaster@`hostname` goes (`None`: to that address itself).
    pub postmaster: Option<String>,
    pub stats: Arc<PolicyStats>,
    pub guard: Arc<GuardHandle>,
    pub scanner: Arc<Scanner>,
    pub rspamd: Option<Rspamd>,
    pub rspamd_failure: ScanFailure,
    pub srs: Arc<Srs>,
    /// What one message's forwarded copies may add up to (`forward::bound_copies`).
    pub forwarded_bytes: usize,
    /// For the DKIM keys of forwarded mail's signatures (the ARC results).
    pub resolver: Arc<dyn relayward_delivery::dns::Resolver>,
    /// SMTP AUTH: the bounded password checkers and the failure counts across connections.
    pub passwords: Arc<relayward_control::passwords::Checker>,
    pub auth_limits: Arc<relayward_control::passwords::Limiter>,
    /// Where lockouts of known accounts are recorded (for counters and the API).
    pub store: Arc<dyn relayward_store::Store>,
    /// Cluster mode: SMTP AUTH failures counted for every node (`auth.rs`).
    pub shared_auth: Option<auth::SharedAuth>,
    /// Recipients refused to clients nobody vouches for, per client address.
    pub probes: Arc<probes::Probes>,
}

/// The answer to every recipient from an address past `[smtp] refused_recipients_per_address`.
pub const TOO_MANY_REFUSED: &str =
    "4.7.1 Too many recipients refused to your address lately, try again later";

/// Who the client is, as far as this connection has shown.
#[derive(Debug, Clone)]
pub enum Attribution {
    None,
    Connector {
        tenant: Arc<str>,
        name: Arc<str>,
        relay_unregistered: bool,
        require_tls: bool,
        by_cert: bool,
    },
    User {
        tenant: Arc<str>,
        address: Arc<str>,
        /// The password hash the session signed in against. Once the user's password is set
        /// anew or removed (a leaked one, say), the session ends at its next MAIL FROM.
        credential: Arc<str>,
    },
}

pub struct ConnState {
    ip: IpAddr,
    /// `ip` as text, made once per connection (the guard and scans take it per message).
    ip_text: Arc<str>,
    tls: bool,
    attribution: Attribution,
    /// The directory's version when `attribution` was decided (`PolicyStats::directory_version`,
    /// read before the directory itself): MAIL looks again only when it has moved on.
    attributed_at: i64,
    /// The client certificate's verified names, kept when they attributed the session.
    cert_names: Vec<String>,
    /// Tenant of the inbound recipients accepted in the current transaction.
    inbound_tenant: Option<String>,
    /// Outbound transactions: who sends, for the guard; recipients so far by kind.
    origin: Option<OwnedOrigin>,
    /// The sending tenant's facts for the guard, found at the first MAIL.
    facts: Option<SenderFacts>,
    tx_internal: u32,
    tx_external: u32,
    /// Recipients spooled under another address in this transaction: bounces to our SRS
    /// addresses (to the original sender) and mail for our postmaster (to `smtp.postmaster`).
    rewrites: Vec<(String, String)>,
    /// Counted in `open_sessions` while the session lasts.
    _open: OpenSession,
}

/// One open session in `PolicyStats::open_sessions`, from `connect` until the session ends.
struct OpenSession(Arc<PolicyStats>);

impl OpenSession {
    fn new(stats: &Arc<PolicyStats>) -> OpenSession {
        stats.open_sessions.fetch_add(1, Ordering::Relaxed);
        OpenSession(stats.clone())
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.open_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnState {
    pub fn ip_text(&self) -> &str {
        &self.ip_text
    }
}

impl RelayPolicy {
    fn dir(&self) -> Arc<Directory> {
        self.directory
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The directory's version now. The reload stores it after it puts the new directory in
    /// place, so a version read before the directory is never newer than it.
    fn dir_version(&self) -> i64 {
        self.stats.directory_version.load(Ordering::Acquire)
    }

    /// Whether the session is still whom it was attributed to, once the directory has changed
    /// since: a connector session's connector must still claim the client (and its settings are
    /// taken as they are now), a user session's password must be the one it signed in with.
    /// Otherwise 421, which closes the session, so that the client connects (and signs in)
    /// again as the directory is now: a connector removed, or a leaked password set anew, stops
    /// a session opened before. Costs an atomic read while the directory stays as it was.
    fn still_attributed(&self, conn: &mut ConnState) -> Result<(), Reply> {
        let now = self.dir_version();
        if now == conn.attributed_at || matches!(conn.attribution, Attribution::None) {
            conn.attributed_at = now;
            return Ok(());
        }
        let dir = self.dir();
        match &mut conn.attribution {
            Attribution::None => {}
            Attribution::Connector {
                tenant,
                name,
                relay_unregistered,
                require_tls,
                by_cert,
            } => {
                let current = if *by_cert {
                    dir.connector_for_cert(&conn.cert_names)
                } else {
                    dir.connector_for_ip(conn.ip)
                };
                match current {
                    Some(c) if c.tenant == &**tenant && c.name == &**name => {
                        *relay_unregistered = c.relay_unregistered;
                        *require_tls = c.require_tls;
                    }
                    _ => {
                        tracing::info!(ip = %conn.ip, tenant = %tenant, connector = %name, "the connector this session was attributed to no longer claims it: closing it");
                        return Err(refuse(421, CONNECT_AGAIN));
                    }
                }
            }
            Attribution::User {
                address,
                credential,
                ..
            } => {
                // Set anew, removed, or the user gone: whoever holds the old password sends
                // no more on this session.
                let current = dir.user(address).and_then(|u| u.password_hash);
                if current != Some(&**credential) {
                    tracing::info!(ip = %conn.ip, user = %address, "the user's password changed since this session signed in: closing it");
                    return Err(refuse(421, SIGN_IN_AGAIN));
                }
            }
        }
        conn.attributed_at = now;
        Ok(())
    }
}

impl RelayPolicy {
    /// A known account was just locked: recorded for the counters view and the API, and its
    /// tenant's admins alerted through the guard's alert path.
    fn account_locked(
        &self,
        tenant: &str,
        account: &str,
        until: i64,
        failures: u32,
        ip: IpAddr,
        now: i64,
    ) {
        tracing::warn!(tenant, account, %ip, failures, "SMTP AUTH locked after failed attempts");
        let secs = (until - now).max(0) / 1000;
        let span = if secs < 120 {
            format!("{secs} seconds")
        } else {
            format!("{} minutes", secs / 60)
        };
        self.guard.raise(relayward_guard::Alert {
            tenant: tenant.to_string(),
            at: now,
            severity: relayward_guard::Severity::Medium,
            kind: relayward_guard::AlertKind::AccountLocked,
            subject: account.to_string(),
            text: format!(
                "{failures} wrong passwords for {account} (the last from {ip}); SMTP AUTH for it is locked for {span}. If these were not your own devices, the password is being guessed: change it and check the devices that use it."
            ),
        });
        let lockout = relayward_store::AuthLockout {
            account: account.to_string(),
            tenant: tenant.to_string(),
            at: now,
            until,
            failures,
            client: ip.to_string(),
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.record_auth_lockout(&lockout).await {
                tracing::warn!(error = %e, "cannot record an SMTP AUTH lockout");
            }
        });
    }
}

impl RelayPolicy {
    async fn shared_auth_locked(&self, account: Account<'_>, ip: IpAddr, now: i64) -> bool {
        match &self.shared_auth {
            Some(shared) => shared.locked(account, ip, now).await,
            None => false,
        }
    }
}

fn refuse(code: u16, text: &str) -> Reply {
    Reply::new(code, text)
}

/// Address forms that ask a server to route mail onward by itself: `%` and `!` hacks, quoted
/// local parts holding an `@`, source routes, IP-literal domains. None are taken.
fn hostile_address(address: &str) -> Option<Reply> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Some(refuse(501, "5.1.3 Recipient address needs a domain"));
    };
    if address.starts_with('@') || address.contains(':') && address.starts_with('@') {
        return Some(refuse(550, "5.7.1 Source routes are not accepted"));
    }
    if local.contains(['%', '!', '@']) || local.starts_with('"') {
        return Some(refuse(
            550,
            "5.7.1 Routing addresses (%, !, quoted @) are not accepted",
        ));
    }
    if domain.starts_with('[') || domain.parse::<IpAddr>().is_ok() {
        return Some(refuse(
            550,
            "5.7.1 IP-literal recipient domains are not accepted",
        ));
    }
    if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '\\') {
        return Some(refuse(501, "5.1.3 Bad recipient address syntax"));
    }
    None
}

impl Policy for RelayPolicy {
    type Conn = ConnState;

    fn connect(&self, ip: IpAddr, kind: ListenerKind) -> Result<ConnState, Reply> {
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        let attributed_at = self.dir_version();
        let attribution = match kind {
            ListenerKind::Relay => match self.dir().connector_for_ip(ip) {
                Some(c) => Attribution::Connector {
                    tenant: Arc::from(c.tenant),
                    name: Arc::from(c.name),
                    relay_unregistered: c.relay_unregistered,
                    require_tls: c.require_tls,
                    by_cert: false,
                },
                None => Attribution::None,
            },
            ListenerKind::Submission => Attribution::None,
        };
        Ok(ConnState {
            ip,
            attributed_at,
            cert_names: Vec::new(),
            ip_text: Arc::from(ip.to_string()),
            tls: false,
            attribution,
            inbound_tenant: None,
            origin: None,
            facts: None,
            tx_internal: 0,
            tx_external: 0,
            rewrites: Vec::new(),
            _open: OpenSession::new(&self.stats),
        })
    }

    fn greet_at_once(&self, conn: &ConnState) -> bool {
        matches!(conn.attribution, Attribution::Connector { .. })
    }

    fn improper_pipelining(&self, conn: &mut ConnState, peer: &Peer, after: &'static str) {
        self.stats
            .improper_pipelining
            .fetch_add(1, Ordering::Relaxed);
        let (tenant, by) = match &conn.attribution {
            Attribution::None => ("", ""),
            Attribution::Connector { tenant, name, .. } => (&**tenant, &**name),
            Attribution::User {
                tenant, address, ..
            } => (&**tenant, &**address),
        };
        tracing::info!(ip = %conn.ip, listener = peer.kind.as_str(), after, tenant, by, "improper command pipelining: the client sent more before the reply it had to wait for; disconnected");
    }

    fn tls_established(&self, conn: &mut ConnState, cert_names: &[String]) {
        conn.tls = true;
        let at = self.dir_version();
        if matches!(conn.attribution, Attribution::None)
            && !cert_names.is_empty()
            && let Some(c) = self.dir().connector_for_cert(cert_names)
        {
            conn.attribution = Attribution::Connector {
                tenant: Arc::from(c.tenant),
                name: Arc::from(c.name),
                relay_unregistered: c.relay_unregistered,
                require_tls: c.require_tls,
                by_cert: true,
            };
            conn.attributed_at = at;
            conn.cert_names = cert_names.to_vec();
        }
    }

    async fn authenticate(
        &self,
        conn: &mut ConnState,
        user: &str,
        password: &str,
    ) -> Result<(), Reply> {
        let denied = || refuse(535, "5.7.8 Authentication credentials invalid");
        let now = now_ms();
        let at = self.dir_version();
        let dir = self.dir();
        let found = dir.user(user);
        // A user is counted by its primary address, whichever alias it signs in with.
        let account = match &found {
            Some(u) => Account::Known(u.address),
            None => Account::Unknown(user),
        };
        // Locked accounts and addresses are answered before any hashing, the same way whether
        // the account exists or not; in a cluster, by the count of every node too.
        let locked_here = self.auth_limits.locked(account, conn.ip, now).is_some();
        if locked_here || self.shared_auth_locked(account, conn.ip, now).await {
            return Err(refuse(454, AUTH_LOCKED));
        }
        let hash = found.as_ref().and_then(|u| u.password_hash);
        let Some(ok) = self.passwords.verify(password, hash).await else {
            return Err(refuse(454, AUTH_BUSY));
        };
        let Some(u) = found.filter(|_| ok) else {
            tracing::info!(ip = %conn.ip, user, "SMTP AUTH failed");
            let here = self.auth_limits.failed(account, conn.ip, now);
            // In a cluster, the lockout is the cluster's (and alerted once, by the node whose
            // failure reached it); with the database away, this node's.
            let lock = match &self.shared_auth {
                Some(shared) => shared.failed(account, conn.ip, now).await.unwrap_or(here),
                None => here,
            };
            if let Some((until, failures)) = lock
                && let Account::Known(address) = account
                && let Some(u) = dir.user(address)
            {
                self.account_locked(u.tenant, u.address, until, failures, conn.ip, now);
            }
            return Err(denied());
        };
        self.auth_limits.succeeded(u.address);
        conn.attribution = Attribution::User {
            tenant: Arc::from(u.tenant),
            address: Arc::from(u.address),
            credential: Arc::from(hash.unwrap_or_default()),
        };
        conn.attributed_at = at;
        Ok(())
    }

    fn mail(
        &self,
        conn: &mut ConnState,
        peer: &Peer,
        from: &str,
        _params: &MailParams,
    ) -> Result<(), Reply> {
        conn.inbound_tenant = None;
        conn.origin = None;
        conn.tx_internal = 0;
        conn.tx_external = 0;
        conn.rewrites.clear();
        if let Err(r) = self.still_attributed(conn) {
            self.stats.refused_mail.fetch_add(1, Ordering::Relaxed);
            return Err(r);
        }
        let result = match (&conn.attribution, peer.kind) {
            (
                Attribution::User {
                    address, tenant, ..
                },
                _,
            ) => {
                let dir = self.dir();
                // The address must be the user's own and in its tenant's accepted domains: an
                // alias in another tenant's domain never lets it send as that tenant.
                let mine = !from.is_empty()
                    && dir
                        .user(from)
                        .is_some_and(|u| u.address.eq_ignore_ascii_case(address))
                    && dir.is_accepted_by(tenant, domain_part(from));
                if mine {
                    Ok(())
                } else {
                    Err(refuse(550, NOT_YOUR_SENDER))
                }
            }
            (_, ListenerKind::Submission) => Err(refuse(530, NOT_AUTHENTICATED)),
            (
                Attribution::Connector {
                    require_tls: true, ..
                },
                _,
            ) if !conn.tls => Err(refuse(
                530,
                "5.7.10 This connector requires TLS: issue STARTTLS first",
            )),
            _ => Ok(()),
        };
        if result.is_err() {
            self.stats.refused_mail.fetch_add(1, Ordering::Relaxed);
            return result;
        }
        // Outbound mail asks the guard (restrictions, unregistered allowance, rate).
        let (tenant, connector, user) = match &conn.attribution {
            Attribution::Connector { tenant, name, .. } => (tenant, Some(name), None),
            Attribution::User {
                tenant, address, ..
            } => (tenant, None, Some(address)),
            Attribution::None => {
                conn.origin = None;
                return Ok(());
            }
        };
        let dir = self.dir();
        let connector_name = connector.map(|c| &**c);
        let facts = SenderFacts::refresh(&mut conn.facts, &dir, tenant, connector_name);
        let origin = Some(OwnedOrigin::warming(
            &dir,
            facts,
            tenant,
            connector,
            user,
            &conn.ip_text,
            from,
            || self.guard.warm(tenant, &facts, connector_name),
        ));
        if let Some(o) = &origin
            && let Err(r) = self.guard.check_mail(o)
        {
            self.stats.guard_refusals.fetch_add(1, Ordering::Relaxed);
            tracing::info!(ip = %conn.ip, tenant = %o.tenant, sender = from, reply = r.text, "MAIL refused by the guard");
            return Err(refuse(r.code, r.text));
        }
        conn.origin = origin;
        Ok(())
    }

    fn rcpt(
        &self,
        conn: &mut ConnState,
        _peer: &Peer,
        tx: &Transaction,
        rcpt: &Rcpt,
    ) -> Result<(), Reply> {
        // A client nobody vouches for gets a bounded number of refusals (`probes.rs`).
        let unvouched = matches!(conn.attribution, Attribution::None);
        if unvouched && self.probes.over(conn.ip, now_ms()) {
            self.stats.refused_rcpt.fetch_add(1, Ordering::Relaxed);
            self.stats
                .recipients_blocked
                .fetch_add(1, Ordering::Relaxed);
            return Err(refuse(421, TOO_MANY_REFUSED));
        }
        let result = self.check_rcpt(conn, tx, rcpt);
        if let Err(r) = &result {
            self.stats.refused_rcpt.fetch_add(1, Ordering::Relaxed);
            if unvouched && r.code >= 500 && self.probes.refused(conn.ip, now_ms()) {
                tracing::warn!(ip = %conn.ip, recipient = rcpt.address, "a client no connector claims has had [smtp] refused_recipients_per_address recipients refused within refused_recipients_window (guessing addresses, or probing for an open relay): its recipients are answered 421 until the window moves on");
            }
            return result;
        }
        if let Some(o) = &conn.origin {
            let external = !o.is_accepted(&self.dir(), domain_part(&rcpt.address));
            if let Err(r) = self
                .guard
                .check_rcpt(o, conn.tx_internal, conn.tx_external, external)
            {
                self.stats.guard_refusals.fetch_add(1, Ordering::Relaxed);
                return Err(refuse(r.code, r.text));
            }
            if external {
                conn.tx_external += 1;
            } else {
                conn.tx_internal += 1;
            }
        }
        Ok(())
    }

    async fn data(
        &self,
        conn: &mut ConnState,
        peer: &Peer,
        tx: Transaction,
        body: Vec<u8>,
    ) -> Reply {
        self.end_of_data(conn, peer, tx, body).await
    }
}

impl RelayPolicy {
    fn check_rcpt(&self, conn: &mut ConnState, tx: &Transaction, rcpt: &Rcpt) -> Result<(), Reply> {
        if let Some(reply) = hostile_address(&rcpt.address) {
            return Err(reply);
        }
        // The relay's own postmaster takes mail from anyone (RFC 5321 4.5.1), delivered to
        // `smtp.postmaster` when set; it belongs to no tenant unless the client is attributed.
        if let Some((local, domain)) = rcpt.address.rsplit_once('@')
            && local.eq_ignore_ascii_case("postmaster")
            && domain.eq_ignore_ascii_case(&self.hostname)
        {
            if let Some(to) = &self.postmaster {
                conn.rewrites
                    .push((rcpt.address.to_ascii_lowercase(), to.clone()));
            }
            return Ok(());
        }
        let dir = self.dir();
        let domain = domain_of(&rcpt.address);
        let accepted = dir.accepted_domain(&domain);
        // A bounce to the rewritten sender of a forwarded copy goes back to the original
        // sender, whoever hands it to us (through every rewriting of ours: a copy forwarded
        // twice here); forged and expired addresses are refused.
        if let Some(d) = accepted {
            match self.srs.reverse_all(&rcpt.address, now_ms() / 1000) {
                Ok(Some(original)) => {
                    if matches!(conn.attribution, Attribution::None) {
                        inbound_tenant(conn, d.tenant)?;
                    }
                    conn.rewrites
                        .push((rcpt.address.to_ascii_lowercase(), original));
                    return Ok(());
                }
                Ok(None) => {}
                Err(e) => return Err(refuse(550, e.reply_text())),
            }
        }
        // Recipients in an authoritative domain must exist, whoever sends.
        if let Some(d) = accepted
            && d.kind == DomainKind::Authoritative
            && dir.user(&rcpt.address).is_none()
        {
            return Err(refuse(
                550,
                "5.1.1 Recipient address rejected: user unknown in the recipient's organisation",
            ));
        }
        match &conn.attribution {
            Attribution::User { .. } => Ok(()),
            Attribution::Connector {
                tenant,
                relay_unregistered,
                ..
            } => {
                if accepted.is_some() {
                    return Ok(());
                }
                let sender_domain = domain_of(&tx.mail_from);
                if tx.mail_from.is_empty() || dir.is_accepted_by(tenant, &sender_domain) {
                    return Ok(());
                }
                // "Relay unregistered" is for domains nobody here holds: another tenant's
                // verified domain, or one under it, is that tenant's to send as (the relay's
                // addresses are in its SPF record, so its receivers would take the mail as its).
                let other = dir
                    .domain_holder(&sender_domain)
                    .filter(|h| **h != **tenant);
                if let Some(holder) = other {
                    tracing::info!(tenant = %tenant, sender_domain, holder, "relay refused: the sender's domain belongs to another tenant");
                    Err(refuse(550, RELAY_DENIED))
                } else if *relay_unregistered {
                    Ok(())
                } else {
                    Err(refuse(550, RELAY_DENIED))
                }
            }
            Attribution::None => {
                let Some(d) = accepted else {
                    return Err(refuse(550, RELAY_DENIED));
                };
                inbound_tenant(conn, d.tenant)
            }
        }
    }
}

/// Inbound recipients of one transaction belong to one tenant (its message is attributed to it).
fn inbound_tenant(conn: &mut ConnState, tenant: &str) -> Result<(), Reply> {
    match &conn.inbound_tenant {
        Some(t) if t != tenant => Err(refuse(
            452,
            "4.5.3 Recipients of another organisation must be sent in a separate transaction",
        )),
        _ => {
            conn.inbound_tenant = Some(tenant.to_string());
            Ok(())
        }
    }
}

fn recipient(r: &Rcpt) -> Recipient {
    let mut out = Recipient::new(r.address.clone());
    out.orcpt = r.orcpt.clone();
    if r.notify != 0 {
        out.notify = Some(Notify {
            never: r.notify & smtp_proto::RCPT_NOTIFY_NEVER != 0,
            success: r.notify & smtp_proto::RCPT_NOTIFY_SUCCESS != 0,
            failure: r.notify & smtp_proto::RCPT_NOTIFY_FAILURE != 0,
            delay: r.notify & smtp_proto::RCPT_NOTIFY_DELAY != 0,
        });
    }
    out
}

/// Counts `Received:` header fields in the header block.
fn count_received(body: &[u8]) -> usize {
    let end = relayward_dsn::find_headers_end(body);
    body[..end]
        .split(|&b| b == b'\n')
        .filter(|l| l.len() >= 9 && l[..9].eq_ignore_ascii_case(b"received:"))
        .count()
}

/// Keeps client-supplied text safe to place in a header.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(255)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_tricks_are_named_hostile() {
        for a in [
            "user%evil.example@contoso.example",
            "evil.example!user@contoso.example",
            "\"user@evil.example\"@contoso.example",
            "@hop.example:user@evil.example",
            "user@[192.0.2.1]",
            "user@192.0.2.1",
        ] {
            assert!(hostile_address(a).is_some(), "{a} must be refused");
        }
        assert!(hostile_address("first.last+tag@contoso.example").is_none());
    }

    #[test]
    fn received_headers_are_counted_in_the_header_block_only() {
        let m = b"Received: a\r\nreceived: b\r\nSubject: x\r\n\r\nReceived: in body\r\n";
        assert_eq!(count_received(m), 2);
    }
}
