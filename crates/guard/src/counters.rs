//! Where the guard keeps its counts. The engine reads and writes them through `CounterStore`, so
//! tests run on memory with a fake clock and a cluster can put deltas into a shared database.
//! Counts are grouped per tenant (the tenant's own windows, its connectors', its users') and
//! serialise whole, which is how a node saves them and how the command line reads them.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::OnceLock;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::signals::Behaviour;
use crate::window::{Recent, Window};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SubjectCounters {
    /// 24 h in 5-minute buckets.
    pub day: Window,
    /// 1 h in 1-minute buckets (outbound policy per hour, new-connector volume).
    pub hour: Window,
    /// Exact send times over the last minute (users' messages-per-minute limit).
    #[serde(skip)]
    pub minute: Recent,
    /// What this user or connector usually does (behavioural signals); saved with the
    /// counters, so a restart goes on from what was learned.
    #[serde(default)]
    pub habits: Behaviour,
    /// When a release last started these counts afresh (the release's own time, the same on
    /// every node): another node's counts from before it has applied that release are not
    /// added (see `set_others`).
    #[serde(default)]
    pub cleared_at: i64,
}

impl Default for SubjectCounters {
    fn default() -> Self {
        SubjectCounters {
            day: Window::day(),
            hour: Window::hour(),
            minute: Recent::default(),
            habits: Behaviour::default(),
            cleared_at: 0,
        }
    }
}

impl SubjectCounters {
    fn prefetch(&self) {
        self.day.prefetch();
        self.hour.prefetch();
        self.minute.prefetch();
        self.habits.prefetch();
    }

    pub fn clear(&mut self) {
        self.day.clear();
        self.hour.clear();
        self.minute.clear();
    }

    /// Sets the other nodes' counts of this subject: the sum of theirs, leaving out a node
    /// that has not yet applied a release this node has (its counts are from before it).
    fn set_others<'a>(&mut self, others: impl Iterator<Item = &'a SubjectCounters> + Clone) {
        // Habits are not cleared by a release: every node's count.
        self.habits
            .set_others(others.clone().map(|o| o.habits.clone()).collect());
        let current = others.filter(|o| o.cleared_at >= self.cleared_at);
        let day = self.day.sum_of(current.clone().map(|o| &o.day));
        let hour = self.hour.sum_of(current.map(|o| &o.hour));
        self.day.set_others(day);
        self.hour.set_others(hour);
    }
}

/// One message (or refused attempt) as evidence for a restriction's cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Sample {
    pub at: i64,
    pub message_id: String,
    pub sender_domain: String,
    pub user: Option<String>,
    pub connector: Option<String>,
    pub client_ip: String,
    pub suspicious: bool,
    pub unregistered: bool,
    /// Refused in the SMTP dialogue (no message id was given).
    pub refused: bool,
}

/// Evidence kept per tenant; the oldest goes first.
pub const SAMPLES_KEPT: usize = 256;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TenantCounters {
    pub tenant: SubjectCounters,
    pub connectors: SubjectMap,
    pub users: SubjectMap,
    pub samples: VecDeque<Sample>,
}

/// One hasher for the process, seeded at random once: tenant, user and connector names come
/// from outside, so their hashes must not be predictable.
fn hasher() -> &'static ahash::RandomState {
    static STATE: OnceLock<ahash::RandomState> = OnceLock::new();
    STATE.get_or_init(ahash::RandomState::new)
}

fn hash(name: &str) -> u64 {
    hasher().hash_one(name)
}

/// A name kept beside what it names: up to 32 bytes sit inline, so comparing it reads memory
/// that is being read anyway (with a million tenants, every separate allocation is another
/// cache miss per message).
#[derive(Debug, Clone)]
struct Name(SmallVec<[u8; 32]>);

impl Name {
    fn new(s: &str) -> Name {
        Name(SmallVec::from_slice(s.as_bytes()))
    }

    fn is(&self, s: &str) -> bool {
        self.0.as_slice() == s.as_bytes()
    }

    fn as_str(&self) -> &str {
        // Always built from a `&str`.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// A tenant's connectors' or users' counters by name. Most tenants have a handful of each, so
/// they sit in one vector, found by comparing stored hashes; a hash index is added once there
/// are many. Serialised as a map from name to counters.
#[derive(Debug, Clone, Default)]
pub struct SubjectMap {
    /// The first one inline: most tenants send through one connector, and a small one's
    /// first user is found without another memory read.
    entries: SmallVec<[SubjectEntry; 1]>,
    index: Option<HashTable<u32>>,
    /// The entry found last: one message asks for the same user or connector several times
    /// (MAIL, RCPT, end of DATA), and a name compare costs less than hashing it again.
    last: Cell<u32>,
}

#[derive(Debug, Clone)]
struct SubjectEntry {
    hash: u64,
    name: Name,
    counters: SubjectCounters,
}

/// Past this many subjects, a tenant's map gets a hash index.
const INDEX_FROM: usize = 8;

impl SubjectMap {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn position(&self, name: &str) -> Option<usize> {
        let last = self.last.get() as usize;
        if self.entries.get(last).is_some_and(|e| e.name.is(name)) {
            return Some(last);
        }
        let h = hash(name);
        let entries = &self.entries;
        let found = match &self.index {
            Some(index) => index
                .find(h, |&i| entries[i as usize].name.is(name))
                .map(|&i| i as usize),
            None => entries.iter().position(|e| e.hash == h && e.name.is(name)),
        };
        if let Some(i) = found {
            self.last.set(i as u32);
        }
        found
    }

    pub fn get(&self, name: &str) -> Option<&SubjectCounters> {
        self.position(name).map(|i| &self.entries[i].counters)
    }

    pub fn get_mut(&mut self, name: &str) -> Option<&mut SubjectCounters> {
        self.position(name).map(|i| &mut self.entries[i].counters)
    }

    /// The subject's counters, created empty when it has none yet. A subject already counted
    /// costs no allocation.
    pub fn entry(&mut self, name: &str) -> &mut SubjectCounters {
        let i = match self.position(name) {
            Some(i) => i,
            None => self.insert(name, SubjectCounters::default()),
        };
        &mut self.entries[i].counters
    }

    fn insert(&mut self, name: &str, counters: SubjectCounters) -> usize {
        let h = hash(name);
        if self.entries.capacity() == self.entries.len() {
            // Grow by little: most tenants stay at one or two subjects.
            self.entries.reserve_exact(self.entries.len().clamp(1, 64));
        }
        self.entries.push(SubjectEntry {
            hash: h,
            name: Name::new(name),
            counters,
        });
        let i = self.entries.len() - 1;
        self.last.set(i as u32);
        if let Some(index) = &mut self.index {
            let entries = &self.entries;
            index.insert_unique(h, i as u32, |&j| entries[j as usize].hash);
        } else if self.entries.len() > INDEX_FROM {
            let mut index = HashTable::with_capacity(self.entries.len() * 2);
            for (j, e) in self.entries.iter().enumerate() {
                let entries = &self.entries;
                index.insert_unique(e.hash, j as u32, |&k| entries[k as usize].hash);
            }
            self.index = Some(index);
        }
        i
    }

    /// Name and counters, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SubjectCounters)> {
        self.entries.iter().map(|e| (e.name.as_str(), &e.counters))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }
}

impl Serialize for SubjectMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for SubjectMap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let pairs = std::collections::BTreeMap::<String, SubjectCounters>::deserialize(d)?;
        let mut map = SubjectMap::default();
        for (name, counters) in pairs {
            map.insert(&name, counters);
        }
        Ok(map)
    }
}

impl TenantCounters {
    /// Cluster mode: puts the other nodes' counts of this tenant (their own, as they saved
    /// them) beside this node's, subject by subject, so every limit reads the tenant's
    /// traffic on all nodes. Subjects only other nodes have seen are added here.
    pub fn set_others(&mut self, others: &[&TenantCounters]) {
        self.tenant.set_others(others.iter().map(|o| &o.tenant));
        set_map_others(&mut self.connectors, others.iter().map(|o| &o.connectors));
        set_map_others(&mut self.users, others.iter().map(|o| &o.users));
    }

    pub fn sample(&mut self, s: Sample) {
        if self.samples.len() >= SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
}

/// `TenantCounters::set_others` for a tenant's connectors or users.
fn set_map_others<'a>(
    local: &mut SubjectMap,
    theirs: impl Iterator<Item = &'a SubjectMap> + Clone,
) {
    let mut names: Vec<String> = theirs
        .clone()
        .flat_map(|m| m.names().map(str::to_string))
        .chain(local.names().map(str::to_string))
        .collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        local
            .entry(&name)
            .set_others(theirs.clone().filter_map(|m| m.get(&name)));
    }
}

pub trait CounterStore {
    fn tenant(&self, tenant: &str) -> Option<&TenantCounters>;
    fn tenant_mut(&mut self, tenant: &str) -> &mut TenantCounters;
    /// A tenant's counters for changing, only when it has some already (not marked changed).
    fn tenant_mut_existing(&mut self, tenant: &str) -> Option<&mut TenantCounters>;
    /// Replaces a tenant's counters (restored from disk or another node).
    fn restore(&mut self, tenant: &str, counters: TenantCounters);
    /// Tenants changed since the last call.
    fn take_dirty(&mut self) -> Vec<String>;
    /// Starts loading a tenant's counters into the processor's caches, so that a message's
    /// checks find them there (see `prefetch`). A store without such a notion does nothing.
    fn warm(&mut self, _tenant: &str, _hint: Option<Hint>, _connector: Option<&str>) {}
    /// After `warm`, once the counters have arrived: starts loading the ends of their vectors
    /// on the heap, which the end of DATA reads.
    fn warm_heap(&self, _tenant: &str, _connector: Option<&str>, _user: Option<&str>) {}
}

/// Where the relay's directory keeps a tenant: its build (`generation`) and its place in it.
/// Finding a tenant's counters by this reads one integer instead of probing a hash table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    pub generation: u64,
    pub index: u32,
}

/// Counters in this process's memory: a hash index per tenant name into one vector, so the
/// hot path allocates nothing once a tenant has been seen.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    index: HashTable<u32>,
    /// The tenant found last (see `SubjectMap::last`).
    last: Cell<u32>,
    /// In chunks of `CHUNK` that never move: growing never copies every tenant's counters
    /// (hundreds of megabytes with a million tenants) in the middle of a message.
    chunks: Vec<Vec<Slot>>,
    len: usize,
    dirty: Vec<u32>,
    /// Slots by the directory's place of the tenant (`NO_SLOT` where not known yet), for the
    /// directory build `hinted_generation`; forgotten when another build's hints arrive.
    by_hint: Vec<u32>,
    hinted_generation: u64,
}

const NO_SLOT: u32 = u32::MAX;

const CHUNK: usize = 4096;

#[derive(Debug)]
struct Slot {
    hash: u64,
    name: Name,
    dirty: bool,
    counters: TenantCounters,
}

impl MemoryCounters {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn at(&self, i: usize) -> &Slot {
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    fn at_mut(&mut self, i: usize) -> &mut Slot {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }

    fn find(&self, tenant: &str) -> Option<usize> {
        let last = self.last.get() as usize;
        if last < self.len && self.at(last).name.is(tenant) {
            return Some(last);
        }
        let found = self
            .index
            .find(hash(tenant), |&i| self.at(i as usize).name.is(tenant))
            .map(|&i| i as usize);
        if let Some(i) = found {
            self.last.set(i as u32);
        }
        found
    }

    /// `find`, through the directory's hint when it has one: one read of `by_hint` and a name
    /// compare on the slot, instead of a hash table probe.
    fn find_hinted(&mut self, tenant: &str, hint: Option<Hint>) -> Option<usize> {
        let Some(hint) = hint else {
            return self.find(tenant);
        };
        if hint.generation != self.hinted_generation {
            self.by_hint.clear();
            self.hinted_generation = hint.generation;
        }
        let at = hint.index as usize;
        if let Some(&i) = self.by_hint.get(at)
            && i != NO_SLOT
            && (i as usize) < self.len
        {
            // Written only by a find by name under this build, so it is this tenant's slot;
            // not compared here (that would wait for the slot's memory), but `find` compares
            // `last` by name before anything uses it.
            self.last.set(i);
            return Some(i as usize);
        }
        let i = self.find(tenant)?;
        if self.by_hint.len() <= at {
            self.by_hint.resize(at + 1, NO_SLOT);
        }
        self.by_hint[at] = i as u32;
        Some(i)
    }

    fn slot(&mut self, tenant: &str) -> usize {
        if let Some(i) = self.find(tenant) {
            return i;
        }
        let h = hash(tenant);
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(chunk) = self.chunks.last_mut() {
            chunk.push(Slot {
                hash: h,
                name: Name::new(tenant),
                dirty: false,
                counters: TenantCounters::default(),
            });
        }
        let i = self.len;
        self.len += 1;
        self.last.set(i as u32);
        let chunks = &self.chunks;
        self.index.insert_unique(h, i as u32, |&j| {
            chunks[j as usize / CHUNK][j as usize % CHUNK].hash
        });
        i
    }
}

impl CounterStore for MemoryCounters {
    fn tenant(&self, tenant: &str) -> Option<&TenantCounters> {
        self.find(tenant).map(|i| &self.at(i).counters)
    }

    fn tenant_mut(&mut self, tenant: &str) -> &mut TenantCounters {
        let i = self.slot(tenant);
        let newly_dirty = !self.at(i).dirty;
        if newly_dirty {
            self.dirty.push(i as u32);
        }
        let slot = self.at_mut(i);
        slot.dirty = true;
        &mut slot.counters
    }

    fn tenant_mut_existing(&mut self, tenant: &str) -> Option<&mut TenantCounters> {
        let i = self.find(tenant)?;
        Some(&mut self.at_mut(i).counters)
    }

    fn warm(&mut self, tenant: &str, hint: Option<Hint>, connector: Option<&str>) {
        let Some(i) = self.find_hinted(tenant, hint) else {
            return;
        };
        // Addresses only, nothing read: the slot's name, the tenant's own counters, and its
        // first user's and first connector's (inline in the slot); not the rest of the slot.
        let slot = self.at(i);
        crate::prefetch::value(&slot.name);
        let c = &slot.counters;
        crate::prefetch::value(&c.tenant);
        // A connector's mail may come from one of the tenant's users (known only after the
        // directory lookup this overlaps), so the users' first entry is loaded either way.
        crate::prefetch::value(&c.users);
        if connector.is_some() {
            crate::prefetch::value(&c.connectors);
        }
    }

    fn warm_heap(&self, tenant: &str, connector: Option<&str>, user: Option<&str>) {
        let Some(i) = self.find(tenant) else {
            return;
        };
        let c = &self.at(i).counters;
        c.tenant.prefetch();
        for s in [
            connector.and_then(|n| c.connectors.get(n)),
            user.and_then(|n| c.users.get(n)),
        ]
        .into_iter()
        .flatten()
        {
            s.prefetch();
        }
    }

    fn restore(&mut self, tenant: &str, counters: TenantCounters) {
        let i = self.slot(tenant);
        self.at_mut(i).counters = counters;
    }

    fn take_dirty(&mut self) -> Vec<String> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|i| {
                let slot = self.at_mut(i as usize);
                slot.dirty = false;
                slot.name.as_str().to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::Counts;

    fn one() -> Counts {
        Counts {
            messages: 1,
            ..Counts::default()
        }
    }

    #[test]
    fn a_stale_or_wrong_directory_hint_never_lends_one_tenant_anothers_counters() {
        let mut store = MemoryCounters::default();
        store.tenant_mut("alpha").tenant.day.add(0, &one());
        store.tenant_mut("beta").tenant.day.add(0, &one());
        store.tenant_mut("beta").tenant.day.add(0, &one());
        let first = Hint {
            generation: 1,
            index: 0,
        };
        // Place 0 is alpha's in build 1; then beta comes with the same place (a reloaded
        // directory that renumbered, a caller's mistake), then build 2 gives place 0 to beta.
        store.warm("alpha", Some(first), None);
        store.warm("beta", Some(first), None);
        assert_eq!(store.tenant_mut("beta").tenant.day.total(0).messages, 2);
        store.warm("alpha", Some(first), None);
        assert_eq!(store.tenant_mut("alpha").tenant.day.total(0).messages, 1);
        let second = Hint {
            generation: 2,
            index: 0,
        };
        store.warm("beta", Some(second), None);
        store.warm("alpha", Some(second), None);
        assert_eq!(store.tenant_mut("alpha").tenant.day.total(0).messages, 1);
        // A tenant with no counters yet gets none from warming.
        store.warm("gamma", Some(second), Some("c"));
        assert!(store.tenant("gamma").is_none());
        assert_eq!(store.len(), 2);
    }

    #[test]
    fn subjects_are_found_by_name_before_and_after_the_index_is_built() {
        let mut m = SubjectMap::default();
        for i in 0..100u32 {
            let name = format!("user{i}@contoso.example");
            for _ in 0..=i % 3 {
                m.entry(&name).day.add(1_000, &one());
            }
            // Every name counted so far is still found with its own count.
            for j in 0..=i {
                let got = m.get(&format!("user{j}@contoso.example"));
                assert_eq!(got.map(|c| c.day.peek(1_000).messages), Some(j % 3 + 1));
            }
        }
        assert_eq!(m.len(), 100);
        assert!(m.get("nobody@contoso.example").is_none());
        assert!(m.get("user1@contoso.exampl").is_none());
    }

    #[test]
    fn counters_survive_a_round_trip_through_their_stored_form() {
        let mut t = TenantCounters::default();
        t.tenant.day.add(5_000, &one());
        for i in 0..20 {
            t.users
                .entry(&format!("u{i}@fabrikam.example"))
                .hour
                .add(5_000 + i, &one());
        }
        t.connectors.entry("on-premises").day.add(7_000, &one());
        let json = serde_json::to_string(&t).expect("serialises");
        let mut back: TenantCounters = serde_json::from_str(&json).expect("parses");
        assert_eq!(back.tenant.day.total(8_000).messages, 1);
        assert_eq!(back.users.len(), 20);
        assert_eq!(
            back.users
                .get_mut("u7@fabrikam.example")
                .map(|c| c.hour.total(8_000).messages),
            Some(1)
        );
        assert_eq!(
            back.connectors
                .get("on-premises")
                .map(|c| c.day.peek(8_000).messages),
            Some(1)
        );
    }

    #[test]
    fn every_tenant_keeps_its_own_counters_across_chunks() {
        let mut store = MemoryCounters::default();
        let n = CHUNK * 2 + 10;
        for i in 0..n {
            store.tenant_mut(&format!("tenant{i}")).tenant.day.add(
                0,
                &Counts {
                    messages: i as u32,
                    ..Counts::default()
                },
            );
        }
        assert_eq!(store.len(), n);
        for i in [0, CHUNK - 1, CHUNK, n - 1] {
            let c = store
                .tenant(&format!("tenant{i}"))
                .map(|t| t.tenant.day.peek(0));
            assert_eq!(c.map(|c| c.messages), Some(i as u32));
        }
        assert_eq!(store.take_dirty().len(), n);
        assert!(store.take_dirty().is_empty());
    }
}
