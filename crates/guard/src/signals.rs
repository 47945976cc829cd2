//! Behavioural compromise signals (SPEC section 6): how a sender's mail today compares
//! with its own past. Each user (and each tenant as a whole) learns its usual hours, volume,
//! recipients and client addresses; a compromised mailbox breaks several of those habits at once.
//!
//! | signal | fires when |
//! |---|---|
//! | `volume_spike` | the last hour's messages pass both 20 and 10 × the sender's own hourly average |
//! | `new_recipients` | 20+ recipients in the last hour, 90 %+ of them never written to before |
//! | `remote_rejections` | 10+ remote answers in 24 h (counted per hour), 30 %+ of them permanent refusals (5xx) |
//! | `unusual_hour` | the hour of day (UTC) carried under 1 % of the sender's past mail |
//! | `new_client` | a client IP or connector the sender never used before |
//!
//! Habits count once the sender has a week of history and 50 messages (before that nothing is
//! "unusual"). One signal alone is a trip or a new project; two or more at once, one of them about
//! the mail itself (volume, recipients or refusals, not only the hour or the address), flag the
//! sender as *possibly compromised*, with the evidence (`compromised`). A flag lasts 24 hours; meanwhile the guard holds
//! a flagged user to half its suspicious-mail limit.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::window::{DAY_MS, HOUR_MS};

/// History needed before habits count.
pub const LEARNING_MS: i64 = 7 * DAY_MS;
pub const LEARNING_MESSAGES: u64 = 50;
/// Recipients remembered per sender, at most (a table that grows from 64 slots).
const KNOWN_RECIPIENTS: usize = 2048;
/// Client addresses and connectors remembered per sender.
const KNOWN_CLIENTS: usize = 32;
/// Past mail per hour of day decays by this factor per day (a two-week memory, roughly).
const DAILY_DECAY: f32 = 0.93;
/// Signals needed at once to flag a sender.
pub const FLAG_AT: usize = 2;

/// Whether these signals together flag the sender: `FLAG_AT` of them, at least one about the
/// mail itself (someone travelling sends at odd hours from new addresses, but to the usual
/// people at the usual pace).
pub fn compromised(signals: &[Signal]) -> bool {
    signals.len() >= FLAG_AT
        && signals.iter().any(|s| {
            matches!(
                s.name,
                "volume_spike" | "new_recipients" | "remote_rejections"
            )
        })
}

/// A signal that fired, with the figures behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Signal {
    pub name: &'static str,
    pub evidence: String,
}

/// What one sender usually does. Fixed-size but for the recipient table, so learning from a
/// message touches one block of memory and that table, nothing found through further pointers.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Behaviour {
    first_seen: i64,
    messages: u64,
    /// Past messages per UTC hour of day, decayed daily.
    hours: [f32; 24],
    decayed_day: i64,
    recipients: Seen,
    clients: Clients,
    recent: LastHour,
    /// Remote outcomes per hour over 24 h: (hour since 1970, answers, permanent refusals);
    /// made at the first answer (most messages are judged long before any comes back).
    outcomes: Option<Box<[(u32, u16, u16); 24]>>,
    /// Cluster mode: what the other nodes learned of the same sender (as they saved it), read
    /// beside this node's habits when a message is judged; never saved with them.
    #[serde(skip)]
    others: Box<[Behaviour]>,
}

/// The last hour per minute: (minute, [messages, recipients, new recipients]) for the minutes
/// that had mail, oldest first, with their running sums. A quiet sender's few minutes sit inline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct LastHour {
    minutes: SmallVec<[(u32, [u16; 3]); 2]>,
    sum: [u32; 3],
}

impl LastHour {
    /// The sums over the minutes still in the hour at `minute` (for habits read, not kept).
    fn sum_at(&self, minute: i64) -> [u32; 3] {
        let minute = u32::try_from(minute.max(0)).unwrap_or(u32::MAX);
        let mut out = [0u32; 3];
        for (m, v) in &self.minutes {
            if minute.saturating_sub(*m) < 60 {
                for (o, v) in out.iter_mut().zip(v) {
                    *o += u32::from(*v);
                }
            }
        }
        out
    }

    /// Counts a message at `minute` (minutes since 1970), after dropping the minutes that left
    /// the hour. A clock that stepped back counts into the newest minute.
    fn add(&mut self, minute: i64, add: [u32; 3]) {
        let minute = u32::try_from(minute.max(0)).unwrap_or(u32::MAX);
        let gone = self
            .minutes
            .iter()
            .take_while(|(m, _)| minute.saturating_sub(*m) >= 60)
            .count();
        for (_, v) in &self.minutes[..gone] {
            for (sum, v) in self.sum.iter_mut().zip(v) {
                *sum -= u32::from(*v);
            }
        }
        self.minutes.drain(..gone);
        let slot = match self.minutes.last_mut() {
            Some((m, v)) if *m >= minute => v,
            _ => {
                self.minutes.push((minute, [0; 3]));
                match self.minutes.last_mut() {
                    Some((_, v)) => v,
                    None => return,
                }
            }
        };
        for ((v, sum), a) in slot.iter_mut().zip(self.sum.iter_mut()).zip(add) {
            // Saturating per minute; the sum follows what the minute really holds.
            let new = v.saturating_add(u16::try_from(a).unwrap_or(u16::MAX));
            *sum += u32::from(new - *v);
            *v = new;
        }
    }
}

/// Client addresses and connectors used, as 32-bit hashes, the last `KNOWN_CLIENTS` of them
/// (oldest first). A sender's usual one or two sit inline.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Clients(SmallVec<[u32; 3]>);

impl Clients {
    fn contains(&self, key: u32) -> bool {
        self.0.contains(&key)
    }

    fn insert(&mut self, key: u32) {
        if self.contains(key) {
            return;
        }
        if self.0.len() >= KNOWN_CLIENTS {
            self.0.remove(0);
        }
        self.0.push(key);
    }
}

/// Recipients written to: a direct-mapped table of their hashes (a newer recipient may take an
/// older one's slot, so the memory is of recent correspondents), growing to `KNOWN_RECIPIENTS`.
/// A sender's first few recipients sit inline, so a quiet sender's table costs no allocation
/// and no further memory read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
struct Seen {
    /// Until the table exists: the first `INLINE_RECIPIENTS` tags (0: free).
    first: [u32; INLINE_RECIPIENTS],
    /// 32 bits of each hash (never 0, which marks a free slot). The slot is found from these
    /// bits too (so the table can grow), which makes a stranger pass for a known recipient
    /// with odds of recipients held to 2^32; with 16 bits it would be 1.5 % at a full table.
    slots: Vec<u32>,
    filled: usize,
}

const INLINE_RECIPIENTS: usize = 4;

impl Seen {
    fn tag(h: u64) -> u32 {
        ((h ^ (h >> 32)) as u32).max(1)
    }

    fn slot(&self, tag: u32) -> usize {
        // Fibonacci hashing spreads the tag's bits over the slot number.
        (u64::from(tag).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & (self.slots.len() - 1)
    }

    fn contains(&self, h: u64) -> bool {
        let tag = Seen::tag(h);
        if self.slots.is_empty() {
            return self.first.contains(&tag);
        }
        self.slots[self.slot(tag)] == tag
    }

    fn insert(&mut self, h: u64) {
        let tag = Seen::tag(h);
        if self.slots.is_empty() {
            if self.first.contains(&tag) {
                return;
            }
            if let Some(free) = self.first.iter_mut().find(|t| **t == 0) {
                *free = tag;
                return;
            }
            self.slots = vec![0; 16];
            for t in std::mem::take(&mut self.first) {
                self.put(t);
            }
        } else if self.filled * 2 >= self.slots.len() && self.slots.len() < KNOWN_RECIPIENTS {
            let bigger = vec![0; self.slots.len() * 2];
            let old = std::mem::replace(&mut self.slots, bigger);
            self.filled = 0;
            for t in old.into_iter().filter(|t| *t != 0) {
                self.put(t);
            }
        }
        self.put(tag);
    }

    fn put(&mut self, tag: u32) {
        let i = self.slot(tag);
        if self.slots[i] == 0 {
            self.filled += 1;
        }
        self.slots[i] = tag;
    }
}

/// Where a message came from: the client address, and the connector when there is one.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub connector: Option<&'a str>,
    pub ip: &'a str,
    /// What the habits remember of it (made once per message, asked by the sender's and the
    /// tenant's habits).
    key: u32,
}

impl<'a> Client<'a> {
    pub fn new(connector: Option<&'a str>, ip: &'a str) -> Client<'a> {
        let h = word_hash(ip) ^ connector.map_or(0, |c| word_hash(c).rotate_left(17));
        Client {
            connector,
            ip,
            key: (h ^ (h >> 32)) as u32,
        }
    }

    fn key(&self) -> u32 {
        self.key
    }

    fn label(&self) -> String {
        match self.connector {
            Some(c) => format!("connector {c} at {}", self.ip),
            None => self.ip.to_string(),
        }
    }
}

/// A 64-bit hash of a client address or connector name as given, eight bytes at a step (the
/// relay writes both the same way every time; nothing stores it).
fn word_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ s.len() as u64;
    let mut chunks = s.as_bytes().chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    let mut w = [0u8; 8];
    w[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    h = (h ^ u64::from_le_bytes(w)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 32)
}

/// A stable 64-bit hash of an address or name, lower-cased (FNV-1a).
pub fn key_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Behaviour {
    /// Starts loading what a message reads on the heap (see `prefetch`), but for the
    /// recipient table, whose slot depends on the recipient.
    pub(crate) fn prefetch(&self) {
        crate::prefetch::ends(&self.recent.minutes);
        crate::prefetch::ends(&self.clients.0);
    }

    /// Whether this sender has sent anything yet (habits are kept with every user's and
    /// connector's counters; a connector whose mail always names a user learns none).
    pub fn has_history(&self) -> bool {
        self.messages > 0
    }

    /// Cluster mode: the other nodes' habits of this sender, read beside this node's.
    pub fn set_others(&mut self, others: Vec<Behaviour>) {
        self.others = others.into_boxed_slice();
    }

    fn theirs(&self) -> &[Behaviour] {
        &self.others
    }

    /// Messages learned from, on every node.
    fn all_messages(&self) -> u64 {
        self.messages + self.theirs().iter().map(|o| o.messages).sum::<u64>()
    }

    /// When any node first saw this sender.
    fn first_seen_anywhere(&self) -> i64 {
        self.theirs()
            .iter()
            .filter(|o| o.messages > 0)
            .map(|o| o.first_seen)
            .chain((self.messages > 0).then_some(self.first_seen))
            .min()
            .unwrap_or(self.first_seen)
    }

    fn knows_recipient(&self, r: u64) -> bool {
        self.recipients.contains(r) || self.theirs().iter().any(|o| o.recipients.contains(r))
    }

    fn knows_client(&self, key: u32) -> bool {
        self.clients.contains(key) || self.theirs().iter().any(|o| o.clients.contains(key))
    }

    fn learned(&self, now: i64) -> bool {
        self.all_messages() >= LEARNING_MESSAGES && now - self.first_seen_anywhere() >= LEARNING_MS
    }

    fn decay(&mut self, now: i64) {
        let day = now.div_euclid(DAY_MS);
        if self.decayed_day == 0 {
            self.decayed_day = day;
        }
        let days = (day - self.decayed_day).clamp(0, 60);
        if days > 0 {
            let f = DAILY_DECAY.powi(days as i32);
            for h in &mut self.hours {
                *h *= f;
            }
            self.decayed_day = day;
        }
    }

    /// One accepted message: returns the signals it fires (judged against the habits as they
    /// were before it), then learns from it.
    pub fn message(&mut self, now: i64, client: Client, recipients: &[u64]) -> Vec<Signal> {
        if self.messages == 0 {
            self.first_seen = now;
        }
        self.decay(now);
        let new_rcpts = recipients
            .iter()
            .filter(|r| !self.knows_recipient(**r))
            .count() as u32;
        self.recent.add(
            now.div_euclid(60_000),
            [1, recipients.len() as u32, new_rcpts],
        );
        let mut signals = Vec::new();
        if self.learned(now) {
            signals.extend(self.judge(now, client));
        }
        // Learn.
        self.messages += 1;
        let hour = (now.div_euclid(HOUR_MS) % 24) as usize;
        self.hours[hour] += 1.0;
        for r in recipients {
            self.recipients.insert(*r);
        }
        self.clients.insert(client.key());
        signals
    }

    fn judge(&self, now: i64, client: Client) -> Vec<Signal> {
        let mut out = Vec::new();
        let [mut in_hour, mut rcpts, mut new] = self.recent.sum;
        for o in self.theirs() {
            let [a, b, c] = o.recent.sum_at(now.div_euclid(60_000));
            (in_hour, rcpts, new) = (in_hour + a, rcpts + b, new + c);
        }
        let span_hours =
            ((now - self.first_seen_anywhere()) as f64 / HOUR_MS as f64).clamp(1.0, 14.0 * 24.0);
        let average = self.all_messages() as f64 / span_hours;
        let spike_at = (average * 10.0).max(20.0);
        if f64::from(in_hour) > spike_at {
            out.push(Signal {
                name: "volume_spike",
                evidence: format!(
                    "{in_hour} messages in the last hour against an average of {average:.1} per hour"
                ),
            });
        }
        if rcpts >= 20 && f64::from(new) >= 0.9 * f64::from(rcpts) {
            out.push(Signal {
                name: "new_recipients",
                evidence: format!(
                    "{new} of {rcpts} recipients in the last hour never written to before"
                ),
            });
        }
        out.extend(self.rejections(now));
        let mut hours = self.hours;
        for o in self.theirs() {
            for (h, theirs) in hours.iter_mut().zip(o.hours) {
                *h += theirs;
            }
        }
        let all: f32 = hours.iter().sum();
        let hour = (now.div_euclid(HOUR_MS) % 24) as usize;
        if all > 0.0 && hours[hour] < all * 0.01 {
            out.push(Signal {
                name: "unusual_hour",
                evidence: format!(
                    "sending at {hour:02}:00 UTC, an hour that carried {:.1} % of its past mail",
                    hours[hour] * 100.0 / all
                ),
            });
        }
        if !self.knows_client(client.key()) {
            out.push(Signal {
                name: "new_client",
                evidence: format!("first mail from {}", client.label()),
            });
        }
        out
    }

    fn rejections(&self, now: i64) -> Option<Signal> {
        let hour_now = now.div_euclid(HOUR_MS);
        let (total, refused) = self
            .outcomes
            .iter()
            .chain(self.theirs().iter().flat_map(|o| o.outcomes.iter()))
            .flat_map(|o| o.iter())
            .filter(|(h, _, _)| hour_now - i64::from(*h) < 24)
            .fold((0u32, 0u32), |(t, r), (_, a, b)| {
                (t + u32::from(*a), r + u32::from(*b))
            });
        (total >= 10 && refused * 10 >= total * 3).then(|| Signal {
            name: "remote_rejections",
            evidence: format!(
                "{refused} of {total} remote answers in 24 hours were permanent refusals"
            ),
        })
    }

    /// A remote server's final answer for one of this sender's recipients.
    pub fn outcome(&mut self, now: i64, refused: bool) {
        let hour = now.div_euclid(HOUR_MS).clamp(0, i64::from(u32::MAX)) as u32;
        let outcomes = self.outcomes.get_or_insert_with(Default::default);
        let slot = &mut outcomes[(hour % 24) as usize];
        if slot.0 != hour {
            *slot = (hour, 0, 0);
        }
        slot.1 = slot.1.saturating_add(1);
        slot.2 = slot.2.saturating_add(u16::from(refused));
    }

    /// Signals that stand without a message (remote rejections), for a sender already known.
    pub fn standing(&self, now: i64) -> Option<Signal> {
        if !self.learned(now) {
            return None;
        }
        self.rejections(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn ip(ip: &str) -> Client<'_> {
        Client::new(None, ip)
    }

    /// Two weeks of an office worker: 20 messages a day between 09:00 and 17:00 UTC to 30
    /// regular correspondents, from the office's address.
    fn office_worker() -> (Behaviour, i64) {
        let mut b = Behaviour::default();
        let start = 20_000 * DAY_MS;
        let known: Vec<u64> = (0..30)
            .map(|i| key_hash(&format!("colleague{i}@fabrikam.example")))
            .collect();
        for day in 0..14 {
            for m in 0..20 {
                let at = start + day * DAY_MS + 9 * HOUR_MS + m * 24 * MINUTE;
                let rcpt = known[((day * 20 + m) % 30) as usize];
                assert!(
                    b.message(at, ip("192.0.2.10"), &[rcpt]).is_empty(),
                    "day {day}"
                );
            }
        }
        (b, start + 14 * DAY_MS)
    }

    #[test]
    fn the_last_hour_keeps_exactly_sixty_minutes() {
        let mut h = LastHour::default();
        for m in 0..90 {
            h.add(1_000 + m, [1, 2, 1]);
        }
        assert_eq!(h.sum, [60, 120, 60], "minutes 1030 to 1089");
        h.add(1_000 + 89 + 59, [0, 0, 0]);
        assert_eq!(h.sum, [1, 2, 1], "only minute 1089 is left");
        h.add(1_000 + 200, [0, 0, 0]);
        assert_eq!(h.sum, [0, 0, 0]);
        // A clock that steps back counts into the newest minute.
        h.add(1_000, [1, 1, 0]);
        assert_eq!(h.sum, [1, 1, 0]);
    }

    #[test]
    fn the_recipient_table_remembers_and_rarely_mistakes_a_stranger() {
        let mut seen = Seen::default();
        let first: Vec<u64> = (0..4)
            .map(|i| key_hash(&format!("r{i}@a.example")))
            .collect();
        for k in &first {
            seen.insert(*k);
            seen.insert(*k);
        }
        assert!(seen.slots.is_empty(), "four recipients fit inline");
        assert!(first.iter().all(|k| seen.contains(*k)));
        assert!(!seen.contains(key_hash("r4@a.example")));
        seen.insert(key_hash("r4@a.example"));
        assert_eq!(seen.slots.len(), 16, "the fifth makes the table");
        assert!(
            first.iter().all(|k| seen.contains(*k)),
            "the first four moved into it"
        );
        let known: Vec<u64> = (0..1000)
            .map(|i| key_hash(&format!("friend{i}@partner.example")))
            .collect();
        for k in &known {
            seen.insert(*k);
        }
        assert_eq!(seen.slots.len(), KNOWN_RECIPIENTS);
        // Direct-mapped: a later recipient may take an earlier one's slot, so most (not all)
        // of a thousand are remembered (645 with these names).
        let remembered = known.iter().filter(|k| seen.contains(**k)).count();
        assert!(remembered > 600, "{remembered}");
        let mistaken = (0..100_000)
            .filter(|i| seen.contains(key_hash(&format!("stranger{i}@far.example"))))
            .count();
        assert!(
            mistaken < 2,
            "{mistaken} strangers taken for known recipients"
        );
    }

    #[test]
    fn clients_remember_the_last_thirty_two() {
        let mut c = Clients::default();
        for k in 1..=40u32 {
            c.insert(k);
            c.insert(k);
        }
        assert!(!c.contains(8), "the oldest gave way");
        assert!((9..=40).all(|k| c.contains(k)));
    }

    #[test]
    fn an_ordinary_day_fires_nothing() {
        let (mut b, day) = office_worker();
        let rcpt = key_hash("colleague3@fabrikam.example");
        for m in 0..20 {
            let s = b.message(
                day + 10 * HOUR_MS + m * 20 * MINUTE,
                ip("192.0.2.10"),
                &[rcpt],
            );
            assert!(s.is_empty(), "{s:?}");
        }
    }

    #[test]
    fn habits_survive_a_save_and_a_restart() {
        let (b, day) = office_worker();
        let saved = serde_json::to_string(&b).expect("save");
        let mut back: Behaviour = serde_json::from_str(&saved).expect("restore");
        // What was learned is there: the usual day is quiet, a night burst to strangers from a
        // new address is flagged at once (a sender still learning is never judged).
        let rcpt = key_hash("colleague3@fabrikam.example");
        assert!(
            back.message(day + 10 * HOUR_MS, ip("192.0.2.10"), &[rcpt])
                .is_empty()
        );
        let stranger = key_hash("stranger@far.example");
        let s = back.message(day + 3 * HOUR_MS, ip("203.0.113.66"), &[stranger]);
        assert!(s.iter().any(|s| s.name == "new_client"), "{s:?}");
    }

    #[test]
    fn in_a_cluster_what_other_nodes_learned_of_a_sender_counts_here() {
        let (there, day) = office_worker();
        // This node has never seen the sender: on its own it would still be learning.
        let mut here = Behaviour::default();
        here.set_others(vec![there]);
        let colleague = key_hash("colleague3@fabrikam.example");
        let s = here.message(day + 10 * HOUR_MS, ip("192.0.2.10"), &[colleague]);
        assert!(
            s.is_empty(),
            "the usual correspondent, address and hour: {s:?}"
        );
        let mut seen = Vec::new();
        for m in 0..30 {
            let rcpt = key_hash(&format!("stranger{m}@far.example"));
            let s = here.message(
                day + 3 * HOUR_MS + m * MINUTE / 2,
                ip("203.0.113.66"),
                &[rcpt],
            );
            seen.extend(s.into_iter().map(|s| s.name));
        }
        for n in [
            "volume_spike",
            "new_recipients",
            "unusual_hour",
            "new_client",
        ] {
            assert!(seen.contains(&n), "{n} missing from {seen:?}");
        }
    }

    #[test]
    fn a_night_burst_to_strangers_from_a_new_address_fires_four_signals() {
        let (mut b, day) = office_worker();
        let mut seen = Vec::new();
        let mut flagged_at = None;
        for m in 0..60 {
            let rcpt = key_hash(&format!("stranger{m}@far.example"));
            let s = b.message(
                day + 3 * HOUR_MS + m * MINUTE / 2,
                ip("203.0.113.66"),
                &[rcpt],
            );
            if compromised(&s) && flagged_at.is_none() {
                flagged_at = Some(m + 1);
            }
            seen.extend(s.into_iter().map(|s| s.name));
        }
        for n in [
            "volume_spike",
            "new_recipients",
            "unusual_hour",
            "new_client",
        ] {
            assert!(seen.contains(&n), "{n} missing from {seen:?}");
        }
        // The first message (odd hour, new address) is not enough; the 21st is: more than 20
        // messages in the hour (a spike) and all to people never written to before.
        assert_eq!(flagged_at, Some(21));
    }

    #[test]
    fn a_traveller_at_odd_hours_writing_to_the_usual_people_is_not_flagged() {
        let (mut b, day) = office_worker();
        let rcpt = key_hash("colleague7@fabrikam.example");
        for m in 0..5 {
            let s = b.message(
                day + 2 * HOUR_MS + m * 10 * MINUTE,
                ip("198.51.100.200"),
                &[rcpt],
            );
            assert!(!compromised(&s), "{s:?}");
        }
    }

    #[test]
    fn remote_refusals_stand_as_a_signal_and_leave_after_a_day() {
        let (mut b, day) = office_worker();
        for i in 0..12 {
            b.outcome(day + i * MINUTE, i % 2 == 0);
        }
        let s = b.standing(day + HOUR_MS);
        assert!(
            s.as_ref().is_some_and(|s| s.evidence.contains("6 of 12")),
            "{s:?}"
        );
        b.outcome(day + DAY_MS + HOUR_MS, false);
        assert!(b.standing(day + DAY_MS + HOUR_MS).is_none());
    }

    #[test]
    fn nothing_is_unusual_while_a_sender_is_still_learning() {
        let mut b = Behaviour::default();
        for m in 0..200 {
            let rcpt = key_hash(&format!("r{m}@far.example"));
            let addr = format!("198.51.100.{}", m % 250);
            let s = b.message(m * MINUTE / 4, ip(&addr), &[rcpt]);
            assert!(s.is_empty(), "{s:?}");
        }
    }
}
