//! SMTP AUTH as a bounded resource. A password check is Argon2id: deliberately expensive in
//! time (about 25 ms) and memory (19 MiB). Before anyone is authenticated nobody may make the
//! relay spend more than a fixed share of either, so:
//!
//! - checks run on a fixed set of threads (one per core), each keeping one Argon2 buffer for
//!   all its checks: the memory is threads × 19 MiB whatever the traffic, never freed and
//!   regrown in per-thread allocator arenas;
//! - a short queue stands in front of them; when it is full the client hears "try later"
//!   instead of waiting in memory;
//! - failures are counted across connections per account (known or not, the same answer for
//!   both) and per client address, and past the limits the answer is a temporary lockout
//!   before any hashing.
//!
//! Must never: keep a password, or let the tables of counts grow without bound.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use relayward_config::AuthLimits;

/// Names the directory does not know, and client addresses, tracked at most (each map); past
/// it, expired entries are dropped. A full map is swept at most once a second: a flood of new
/// names costs a look-up each, not a pass over the whole map each. Between sweeps, a new
/// address is not tracked until room returns, and a new made-up name takes the place of the
/// made-up name tracked longest: so each name, made up or not, still locks at its own fifth
/// failure, and a flood cannot tell which names are real by which ones stop locking.
const MAX_TRACKED: usize = 100_000;
/// Users the directory knows, tracked at most. Kept apart from the names nobody has, so that a
/// flood of made-up names, which anyone can send, never takes a real account's place: were it
/// untracked, guesses at its password would go uncounted.
const MAX_KNOWN_TRACKED: usize = 1_000_000;
const SWEEP_EVERY_MS: i64 = 1000;
/// Longest account name kept as a key.
const MAX_ACCOUNT_LEN: usize = 320;

struct Job {
    password: String,
    phc: Arc<str>,
    reply: tokio::sync::oneshot::Sender<bool>,
}

/// The fixed pool that checks passwords.
pub struct Checker {
    jobs: SyncSender<Job>,
    /// A real hash of nothing anyone knows: unknown accounts are checked against it so that
    /// an answer takes as long whether the account exists or not.
    decoy: Arc<str>,
    pub busy: AtomicU64,
}

impl Checker {
    /// `threads` checkers (at least one) behind a queue of `queue` waiting checks.
    pub fn start(threads: usize, queue: usize) -> crate::error::Result<Checker> {
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("password-check-{i}"))
                .spawn(move || work(&rx))
                .map_err(|e| {
                    crate::error::ControlError::Internal(format!(
                        "cannot start a password checker: {e}"
                    ))
                })?;
        }
        let decoy = relayward_tenancy::password::hash(&crate::random_hex(16))
            .map_err(crate::error::ControlError::Internal)?;
        Ok(Checker {
            jobs,
            decoy: Arc::from(decoy),
            busy: AtomicU64::new(0),
        })
    }

    /// Whether `password` matches `phc` (`None`: an unknown account, checked against the
    /// decoy and never matching). `None` back when every checker is busy and the queue full.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> Option<bool> {
        let (known, phc) = match phc {
            Some(p) => (true, Arc::from(p)),
            None => (false, self.decoy.clone()),
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job {
            password: password.to_string(),
            phc,
            reply,
        };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.busy.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
        let ok = answer.await.unwrap_or(false);
        Some(known && ok)
    }
}

fn work(rx: &Mutex<Receiver<Job>>) {
    let mut blocks = Vec::new();
    loop {
        let job = match rx.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        let ok = relayward_tenancy::password::verify_with(&job.password, &job.phc, &mut blocks);
        let _ = job.reply.send(ok);
    }
}

/// Failures of one account or one address within the window, oldest first.
#[derive(Default)]
pub(crate) struct Failures {
    pub(crate) at: VecDeque<i64>,
    pub(crate) locked_until: i64,
    /// Its place in its table's order of arrival (`Table::arrivals`).
    arrival: u64,
}

impl Failures {
    pub(crate) fn expire(&mut self, now: i64, window: i64) {
        while self.at.front().is_some_and(|t| *t <= now - window) {
            self.at.pop_front();
        }
    }
}

/// Why an attempt is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Account { until: i64 },
    Address { until: i64 },
}

/// Failures by key, at most `cap` keys.
pub(crate) struct Table<K> {
    pub(crate) map: HashMap<K, Failures>,
    cap: usize,
    /// When the full map was last swept.
    swept: i64,
    /// A full map gives a new key the place of the one that arrived first (else the new key
    /// waits for room).
    evicts: bool,
    /// The keys in their order of arrival, with their `Failures::arrival` (an evicting table's
    /// only): a key removed and come back is there again under its new number.
    arrivals: VecDeque<(K, u64)>,
    next_arrival: u64,
}

impl<K: std::hash::Hash + Eq + Clone> Table<K> {
    pub(crate) fn new(cap: usize, evicts: bool) -> Mutex<Table<K>> {
        Mutex::new(Table {
            map: HashMap::new(),
            cap,
            swept: i64::MIN,
            evicts,
            arrivals: VecDeque::new(),
            next_arrival: 0,
        })
    }

    /// Whether `key` has (or now gets) a place: a full map is swept of entries `live` no longer
    /// keeps, at most once a second; then an evicting table drops the key that arrived first.
    pub(crate) fn room_for(
        &mut self,
        key: &K,
        now: i64,
        mut live: impl FnMut(&mut Failures) -> bool,
    ) -> bool {
        if self.map.len() < self.cap || self.map.contains_key(key) {
            return true;
        }
        if now.saturating_sub(self.swept) >= SWEEP_EVERY_MS {
            self.swept = now;
            self.map.retain(|_, f| live(f));
            let map = &self.map;
            self.arrivals
                .retain(|(k, n)| map.get(k).is_some_and(|f| f.arrival == *n));
            if self.map.len() < self.cap {
                return true;
            }
        }
        if !self.evicts {
            return false;
        }
        while let Some((k, n)) = self.arrivals.pop_front() {
            if self.map.get(&k).is_some_and(|f| f.arrival == n) {
                self.map.remove(&k);
                return true;
            }
        }
        false
    }

    /// The failures of `key`, a place made for it by `room_for`.
    pub(crate) fn entry(&mut self, key: K) -> &mut Failures {
        let (arrivals, next) = (&mut self.arrivals, &mut self.next_arrival);
        let evicts = self.evicts;
        self.map.entry(key).or_insert_with_key(|k| {
            *next += 1;
            if evicts {
                arrivals.push_back((k.clone(), *next));
            }
            Failures {
                arrival: *next,
                ..Failures::default()
            }
        })
    }
}

/// The account an attempt names: a user the directory knows, by its primary address (so that
/// its aliases count as one account), or a name nobody has. Both get the same answers; they
/// are only counted apart (`MAX_KNOWN_TRACKED`).
#[derive(Debug, Clone, Copy)]
pub enum Account<'a> {
    Known(&'a str),
    Unknown(&'a str),
}

/// Failed attempts across connections, per account and per client address.
pub struct Limiter {
    limits: AuthLimits,
    known: Mutex<Table<Box<str>>>,
    unknown: Mutex<Table<Box<str>>>,
    addresses: Mutex<Table<IpAddr>>,
    /// Attempts answered with the lockout, accounts locked, failures counted.
    pub refused_locked: AtomicU64,
    pub lockouts: AtomicU64,
    pub failures: AtomicU64,
}

/// IPv6 clients are counted per /64 (one host usually has a whole one).
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
    }
}

/// The account an attempt counts against: the name as the directory finds its user (its
/// domain as `tenancy::address_key` gives it, in any ASCII letter case), so every way of
/// writing one account is one count. A domain written in Unicode is looked up as its A-labels,
/// and IDNA maps many strings to one (`contoso\u{200b}.example` is `contoso.example`): were
/// they counted apart, each would get its own five guesses at the same password.
pub fn account_key(account: &str) -> Box<str> {
    let mut a = relayward_tenancy::address_key(account.trim()).to_ascii_lowercase();
    if a.len() > MAX_ACCOUNT_LEN {
        let mut cut = MAX_ACCOUNT_LEN;
        while !a.is_char_boundary(cut) {
            cut -= 1;
        }
        a.truncate(cut);
    }
    a.into_boxed_str()
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Limiter {
    pub fn new(limits: AuthLimits) -> Limiter {
        Limiter {
            limits,
            known: Table::new(MAX_KNOWN_TRACKED, false),
            unknown: Table::new(MAX_TRACKED, true),
            addresses: Table::new(MAX_TRACKED, false),
            refused_locked: AtomicU64::new(0),
            lockouts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    fn accounts(&self, account: Account<'_>) -> (&Mutex<Table<Box<str>>>, Box<str>) {
        match account {
            Account::Known(name) => (&self.known, account_key(name)),
            Account::Unknown(name) => (&self.unknown, account_key(name)),
        }
    }

    /// Whether an attempt for `account` from `ip` is refused without a check.
    pub fn locked(&self, account: Account<'_>, ip: IpAddr, now: i64) -> Option<Locked> {
        let window = ms(self.limits.address_window);
        if let Ok(mut table) = self.addresses.lock()
            && let Some(f) = table.map.get_mut(&address_key(ip))
        {
            f.expire(now, window);
            if f.at.len() >= self.limits.per_address as usize
                && let Some(first) = f.at.front()
            {
                self.refused_locked.fetch_add(1, Ordering::Relaxed);
                return Some(Locked::Address {
                    until: first + window,
                });
            }
        }
        let (accounts, key) = self.accounts(account);
        if let Ok(table) = accounts.lock()
            && let Some(f) = table.map.get(&key)
            && f.locked_until > now
        {
            self.refused_locked.fetch_add(1, Ordering::Relaxed);
            return Some(Locked::Account {
                until: f.locked_until,
            });
        }
        None
    }

    /// Counts a wrong password. `Some((until, failures))` when this failure locks the account.
    pub fn failed(&self, account: Account<'_>, ip: IpAddr, now: i64) -> Option<(i64, u32)> {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let window = ms(self.limits.address_window);
        if let Ok(mut table) = self.addresses.lock() {
            let key = address_key(ip);
            let room = table.room_for(&key, now, |f| {
                f.expire(now, window);
                !f.at.is_empty()
            });
            if room {
                let f = table.entry(key);
                f.expire(now, window);
                if f.at.len() < self.limits.per_address as usize {
                    f.at.push_back(now);
                }
            }
        }
        let lockout = ms(self.limits.lockout);
        let (accounts, key) = self.accounts(account);
        let mut table = accounts.lock().ok()?;
        let room = table.room_for(&key, now, |f| {
            f.expire(now, lockout);
            !f.at.is_empty() || f.locked_until > now
        });
        if !room {
            return None;
        }
        let f = table.entry(key);
        f.expire(now, lockout);
        f.at.push_back(now);
        if f.at.len() >= self.limits.per_account as usize && f.locked_until <= now {
            let failures = u32::try_from(f.at.len()).unwrap_or(u32::MAX);
            f.locked_until = now + lockout;
            f.at.clear();
            self.lockouts.fetch_add(1, Ordering::Relaxed);
            return Some((f.locked_until, failures));
        }
        None
    }

    /// A right password clears the account's count (`account`, a user's primary address).
    pub fn succeeded(&self, account: &str) {
        if let Ok(mut table) = self.known.lock() {
            table.map.remove(&account_key(account));
        }
    }
}

/// Addresses counted in memory at most.
const MAX_NAMES: usize = 100_000;

/// The failures of console and API sign-ins on one node while the store is away
/// (`sign_in_failures.rs`): a table with a bound, a new address past it taking the place of the
/// one counted longest.
pub struct SignInFailures {
    table: Mutex<Table<Box<str>>>,
}

impl Default for SignInFailures {
    fn default() -> SignInFailures {
        SignInFailures {
            table: Table::new(MAX_NAMES, true),
        }
    }
}

/// Seconds left of a lock that ends at `until`, as a real account's lock says them.
pub(crate) fn seconds_left(until: i64, now: i64) -> i64 {
    (until - now) / 1000 + 1
}

impl SignInFailures {
    pub(crate) fn locked(&self, key: &str, now: i64) -> Option<i64> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .map
            .get(key)
            .filter(|f| f.locked_until > now)
            .map(|f| seconds_left(f.locked_until, now))
    }

    /// Counts a failure; the `most`-th locks the address for `lockout_ms`: then when the lock
    /// ends.
    pub(crate) fn failed(
        &self,
        key: Box<str>,
        now: i64,
        most: usize,
        lockout_ms: i64,
    ) -> Option<i64> {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let room = table.room_for(&key, now, |f| {
            f.expire(now, relayward_store::ATTEMPTS_KEPT_MS);
            !f.at.is_empty() || f.locked_until > now
        });
        if !room {
            return None;
        }
        let f = table.entry(key);
        f.expire(now, relayward_store::ATTEMPTS_KEPT_MS);
        f.at.push_back(now);
        if f.at.len() < most {
            return None;
        }
        f.locked_until = now + lockout_ms;
        f.at.clear();
        Some(f.locked_until)
    }

    /// A successful sign-in: the address's count starts again.
    pub(crate) fn forget(&self, key: &str) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        // Emptied, not removed: its place in the order of arrival stays the table's to sweep.
        if let Some(f) = table.map.get_mut(key) {
            f.at.clear();
            f.locked_until = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Account::{Known, Unknown};
    use super::*;
    use std::time::Duration;

    fn limits() -> AuthLimits {
        AuthLimits {
            per_account: 5,
            lockout: Duration::from_secs(900),
            per_address: 20,
            address_window: Duration::from_secs(600),
        }
    }

    #[test]
    fn the_fifth_failure_locks_the_account_for_the_lockout() {
        let l = Limiter::new(limits());
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for i in 0..4 {
            assert_eq!(l.failed(Known("Bob@x.example"), ip, i), None);
            assert_eq!(l.locked(Known("bob@x.example"), ip, i), None);
        }
        assert_eq!(l.failed(Known("bob@x.example"), ip, 10), Some((900_010, 5)));
        let other: IpAddr = "198.51.100.7".parse().expect("ip");
        assert_eq!(
            l.locked(Known("BOB@x.example"), other, 11),
            Some(Locked::Account { until: 900_010 }),
            "from any address, in any letter case"
        );
        assert_eq!(
            l.locked(Known("bob@x.example"), other, 900_010),
            None,
            "then it ends"
        );
        assert_eq!(l.locked(Known("carol@x.example"), other, 11), None);
    }

    /// Every string the directory takes for one account counts against it: IDNA maps a
    /// zero-width space away, a fullwidth full stop to a dot, and a domain written in Unicode
    /// to its A-labels.
    #[test]
    fn every_way_of_writing_an_account_counts_against_it() {
        let l = Limiter::new(limits());
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let ways = [
            "bob@x.example",
            "bob@x\u{200b}.example",
            "bob@X\u{ff0e}example",
            "bob@x.example\u{200b}",
        ];
        for (i, way) in ways.iter().enumerate() {
            assert_eq!(l.failed(Known(way), ip, i as i64), None, "{way}");
        }
        assert!(l.failed(Known("BOB@x.example"), ip, 10).is_some());
        for way in ways {
            assert!(l.locked(Known(way), ip, 11).is_some(), "{way}");
        }
        for _ in 0..4 {
            l.failed(Known("anna@bücher.example"), ip, 20);
        }
        assert!(
            l.failed(Known("anna@xn--bcher-kva.example"), ip, 21)
                .is_some()
        );
        assert!(l.locked(Known("anna@BÜCHER.example"), ip, 22).is_some());
    }

    #[test]
    fn old_failures_age_out_and_a_right_password_clears_them() {
        let l = Limiter::new(limits());
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for i in 0..4 {
            l.failed(Known("bob"), ip, i);
        }
        assert_eq!(
            l.failed(Known("bob"), ip, 900_001),
            None,
            "the first four expired"
        );
        for i in 0..3 {
            l.failed(Known("carol"), ip, i);
        }
        l.succeeded("carol");
        assert_eq!(l.failed(Known("carol"), ip, 5), None);
    }

    /// A flood of made-up names fills the table of names nobody has. A real account is counted
    /// apart, so guesses at its password lock it whatever the flood; and a new made-up name
    /// takes the place of the oldest, so it too locks at its fifth failure: who floods first
    /// cannot tell real names from made-up ones by which stop locking.
    #[test]
    fn a_flood_of_made_up_names_never_takes_a_real_accounts_count_nor_tells_them_apart() {
        let l = Limiter::new(AuthLimits {
            lockout: Duration::from_secs(100),
            per_address: 1_000_000,
            ..limits()
        });
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let tracked = MAX_TRACKED as i64;
        for i in 0..tracked {
            l.failed(Unknown(&format!("made-up{i}@x.example")), ip, i);
        }
        let guesses = |account: Account<'_>, now: i64| {
            (0..5).filter_map(|_| l.failed(account, ip, now)).count()
        };
        assert_eq!(
            guesses(Known("bob@x.example"), 99_000),
            1,
            "a real account locks after five guesses"
        );
        assert!(l.locked(Known("bob@x.example"), ip, 99_001).is_some());
        assert_eq!(
            guesses(Unknown("late@x.example"), 99_000),
            1,
            "full, nothing aged out: a made-up name locks all the same"
        );
        assert!(l.locked(Unknown("late@x.example"), ip, 99_001).is_some());
        for i in 0..3 {
            assert_eq!(guesses(Unknown(&format!("later{i}@x.example")), 99_500), 1);
        }
        let unknown = l.unknown.lock().expect("lock");
        assert_eq!(unknown.map.len(), MAX_TRACKED, "never more than the cap");
        assert!(
            !unknown.map.contains_key("made-up0@x.example")
                && unknown.map.contains_key("late@x.example"),
            "the oldest made room"
        );
        assert!(unknown.arrivals.len() <= MAX_TRACKED);
    }

    /// A full table that does not evict (client addresses) makes room from failures that aged
    /// out, sweeping at most once a second; between sweeps a new key waits.
    #[test]
    fn a_full_table_is_swept_at_most_once_a_second() {
        let table = Table::<u32>::new(3, false);
        let mut t = table.lock().expect("lock");
        let live = |now: i64| {
            move |f: &mut Failures| {
                f.expire(now, 100);
                !f.at.is_empty()
            }
        };
        for k in 0..3 {
            assert!(t.room_for(&k, i64::from(k), live(i64::from(k))));
            t.entry(k).at.push_back(i64::from(k));
        }
        assert!(
            t.room_for(&1, 50, live(50)),
            "a key already there keeps its place"
        );
        assert!(!t.room_for(&7, 50, live(50)), "full, nothing aged out");
        assert!(
            t.room_for(&7, 1_100, live(1_100)),
            "a sweep frees the places of those that aged out"
        );
        t.entry(7).at.push_back(1_100);
        t.entry(8).at.push_back(1_100);
        t.entry(9).at.push_back(1_100);
        t.map.get_mut(&7).expect("7").at.clear();
        assert!(
            !t.room_for(&10, 1_500, live(1_500)),
            "places freed since wait for the next sweep"
        );
        assert!(
            t.room_for(&10, 2_100, live(2_100)),
            "a second later, the next sweep"
        );
    }

    #[test]
    fn one_address_gets_twenty_failures_per_window_whatever_the_accounts() {
        let l = Limiter::new(limits());
        let ip: IpAddr = "2001:db8::1".parse().expect("ip");
        for i in 0..20 {
            assert_eq!(l.locked(Unknown(&format!("user{i}")), ip, i), None);
            l.failed(Unknown(&format!("user{i}")), ip, i);
        }
        let same_net: IpAddr = "2001:db8::ffff".parse().expect("ip");
        assert_eq!(
            l.locked(Known("someone-new"), same_net, 30),
            Some(Locked::Address { until: 600_000 })
        );
        assert_eq!(l.locked(Known("someone-new"), same_net, 600_000), None);
    }
}
