// Over 800 lines: 360 are its tests; the directory's arena layout and every lookup over it belong together.
//! Who is who: an in-memory directory of tenants, accepted domains, connectors, users and
//! routes, built from the store and swapped whole when the store changes. Lookups here run per
//! SMTP command, so they are map lookups, never queries.
//!
//! The directory answers questions; it decides nothing about whether mail may pass (that is the
//! relay policy's and the guard's job).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use ahash::RandomState;
use std::net::IpAddr;

use hashbrown::HashTable;
use ipnet::IpNet;
use relayward_store::{DirectoryData, Domain, DomainKind, Forwarding, Route};

pub mod claims;
mod flat;
pub mod password;

use flat::FlatIndex;

/// A string in the directory's arena.
#[derive(Debug, Clone, Copy, Default)]
struct StrId {
    off: u32,
    len: u32,
}

/// All the directory's names in one buffer: a million tenants' names, domains and addresses
/// cost their bytes, not a heap allocation each.
#[derive(Debug, Default)]
struct Arena(String);

impl Arena {
    fn push(&mut self, s: &str) -> StrId {
        let off = self.0.len();
        self.0.push_str(s);
        // Past 4 GiB of names the offsets would wrap; no directory comes near that, and a
        // wrapped name only fails to match.
        StrId {
            off: off as u32,
            len: s.len() as u32,
        }
    }

    /// `parts` joined by `\n`, written straight into the arena.
    fn push_lines(&mut self, parts: &[String]) -> StrId {
        let off = self.0.len();
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                self.0.push('\n');
            }
            self.0.push_str(p);
        }
        StrId {
            off: off as u32,
            len: (self.0.len() - off) as u32,
        }
    }

    fn get(&self, id: StrId) -> &str {
        let start = id.off as usize;
        self.0.get(start..start + id.len as usize).unwrap_or("")
    }
}

/// A name as an index entry holds it: its arena id and its first `N` bytes. Comparing a name
/// that fits reads only the entry (with millions of names, the arena is one more cache miss
/// per lookup); a longer one goes to the arena only when length and start match.
#[derive(Debug, Clone, Copy)]
struct Inline<const N: usize> {
    id: StrId,
    head: [u8; N],
}

impl<const N: usize> Default for Inline<N> {
    fn default() -> Self {
        Inline {
            id: StrId::default(),
            head: [0; N],
        }
    }
}

impl<const N: usize> Inline<N> {
    fn new(id: StrId, s: &str) -> Self {
        let mut head = [0u8; N];
        let n = s.len().min(N);
        head[..n].copy_from_slice(&s.as_bytes()[..n]);
        Inline { id, head }
    }

    fn head_len(&self) -> usize {
        (self.id.len as usize).min(N)
    }

    fn is(&self, arena: &Arena, s: &str) -> bool {
        let n = self.head_len();
        s.len() == self.id.len as usize
            && self.head[..n] == s.as_bytes()[..n]
            && (s.len() <= N || arena.get(self.id) == s)
    }

    /// The same, without regard to ASCII case.
    fn is_folded(&self, arena: &Arena, s: &str) -> bool {
        let n = self.head_len();
        s.len() == self.id.len as usize
            && self.head[..n].eq_ignore_ascii_case(&s.as_bytes()[..n])
            && (s.len() <= N || arena.get(self.id).eq_ignore_ascii_case(s))
    }

    fn get<'a>(&'a self, arena: &'a Arena) -> &'a str {
        if self.id.len as usize <= N {
            // Copied from a `&str` whole, so it is one.
            std::str::from_utf8(&self.head[..self.head_len()]).unwrap_or_default()
        } else {
            arena.get(self.id)
        }
    }
}

/// One address in the user index: the text (primary address or alias), whose it is, and
/// whether it is the primary address (then it is also what `user_of` answers).
#[derive(Debug, Clone, Copy, Default)]
struct AddressEntry {
    key: Inline<30>,
    user: u32,
    tenant: u32,
    primary: bool,
}

/// Hash of a name compared without regard to ASCII case.
fn hash_folded(state: &RandomState, s: &str) -> u64 {
    let mut h = state.build_hasher();
    for chunk in s.as_bytes().chunks(32) {
        let mut buf = [0u8; 32];
        for (b, c) in buf.iter_mut().zip(chunk) {
            *b = c.to_ascii_lowercase();
        }
        h.write(&buf[..chunk.len()]);
    }
    h.write_u8(0xff);
    h.finish()
}

/// Hash of a connector's key, (tenant, name).
fn connector_key_hash(state: &RandomState, tenant: u32, name: &str) -> u64 {
    let mut h = state.build_hasher();
    tenant.hash(&mut h);
    name.hash(&mut h);
    h.finish()
}

#[derive(Debug)]
struct TenantRow {
    name: StrId,
    domains: DomainList,
    language: u8,
    subscription_ends: Option<StrId>,
    /// Admin addresses joined by `\n` (an address never holds one).
    admins: Option<StrId>,
    managed_by_config: bool,
    forwarding: Forwarding,
    /// With `Forwarding::Listed`: the allowed domains joined by `\n`.
    forwarding_domains: Option<StrId>,
}

#[derive(Debug, Clone, Copy)]
struct DomainRow {
    name: Inline<22>,
    tenant: u32,
    kind: DomainKind,
    match_subdomains: bool,
}

impl Default for DomainRow {
    fn default() -> Self {
        DomainRow {
            name: Inline::default(),
            tenant: 0,
            kind: DomainKind::Authoritative,
            match_subdomains: false,
        }
    }
}

#[derive(Debug)]
struct ConnectorRow {
    tenant: u32,
    name: StrId,
    nets_start: u32,
    nets_len: u32,
    cert_name: Option<StrId>,
    created_at: i64,
    require_tls: bool,
    relay_unregistered: bool,
    by_configuration: bool,
    reviewed: bool,
}

#[derive(Debug)]
struct UserRow {
    tenant: u32,
    address: StrId,
    password_hash: Option<StrId>,
    forward_to: Option<StrId>,
    forward_only: bool,
}

/// A tenant, as the directory answers for it.
#[derive(Debug, Clone, Copy)]
pub struct TenantRef<'a> {
    pub name: &'a str,
    /// `en` or `es`: NDRs and console.
    pub language: &'a str,
    /// `YYYY-MM-DD`, inclusive.
    pub subscription_ends: Option<&'a str>,
    admins: &'a str,
    pub managed_by_config: bool,
    pub forwarding: Forwarding,
    forwarding_domains: &'a str,
}

impl<'a> TenantRef<'a> {
    /// The tenant's admin addresses (alerts go to them).
    pub fn admins(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.admins.split('\n').filter(|a| !a.is_empty())
    }

    /// Whether the tenant lets its users' mail be forwarded automatically to `domain`.
    pub fn may_forward_to(&self, domain: &str) -> bool {
        match self.forwarding {
            Forwarding::On => true,
            Forwarding::Off => false,
            Forwarding::Listed => {
                let domain = domain_key(domain);
                self.forwarding_domains
                    .split('\n')
                    .any(|d| !d.is_empty() && d.eq_ignore_ascii_case(&domain))
            }
        }
    }
}

/// A verified accepted domain.
#[derive(Debug, Clone, Copy)]
pub struct DomainRef<'a> {
    pub name: &'a str,
    pub tenant: &'a str,
    pub kind: DomainKind,
    pub match_subdomains: bool,
}

/// A connector with its ranges parsed.
#[derive(Debug, Clone, Copy)]
pub struct ConnectorRef<'a> {
    pub tenant: &'a str,
    pub name: &'a str,
    pub nets: &'a [IpNet],
    /// Name on the client certificate (`mail.contoso.example`, `*.contoso.example`).
    pub cert_name: Option<&'a str>,
    pub require_tls: bool,
    /// May relay for sender domains that are not accepted domains of the tenant.
    pub relay_unregistered: bool,
    /// Declared in the configuration file (the operator's own), not added through the CLI/API.
    pub by_configuration: bool,
    /// Unix seconds.
    pub created_at: i64,
    pub reviewed: bool,
}

/// A user, found by primary address or alias.
#[derive(Debug, Clone, Copy)]
pub struct UserRef<'a> {
    pub tenant: &'a str,
    pub address: &'a str,
    /// Argon2id PHC string for SMTP AUTH; `None` means the user cannot authenticate.
    pub password_hash: Option<&'a str>,
    pub forward_to: Option<&'a str>,
    /// Forward only, without a copy to the tenant's own server.
    pub forward_only: bool,
}

/// Who is who: tenants, verified accepted domains, connectors, users and routes, laid out for
/// a million tenants (names in one arena, indexes holding small integers).
#[derive(Debug, Default)]
pub struct Directory {
    /// Different for every directory built in this process (see `TenantKey`).
    generation: u64,
    arena: Arena,
    /// The accepted domains' names (built apart, on a thread of their own).
    domain_arena: Arena,
    /// Keyed with a random seed per process (names come from clients), and much faster than
    /// SipHash on short names.
    hasher: RandomState,
    languages: Vec<String>,
    tenants: Vec<TenantRow>,
    tenant_index: HashTable<u32>,
    /// Verified domains only: an unverified domain is not accepted for anything.
    domains: FlatIndex<DomainRow>,
    /// The same domains' names again, grouped by tenant (`TenantRow::domains`).
    tenant_domains: Vec<Inline<22>>,
    /// The internal-relay domains that match subdomains, again: the parents of a name that is
    /// no accepted domain are looked for here, in a table small enough to stay in the cache
    /// (every external recipient and unregistered sender domain walks its parents).
    subdomain_roots: HashTable<DomainRow>,
    connectors: Vec<ConnectorRow>,
    nets: Vec<IpNet>,
    /// (tenant, connector name) → connector.
    connector_names: HashTable<u32>,
    /// Per prefix length, longest first: network → connector.
    connector_nets: Vec<(u8, HashMap<IpNet, u32>)>,
    /// Certificate name pattern (lower case, `*.` kept) → connector.
    connector_certs: HashMap<String, u32>,
    users: Vec<UserRow>,
    /// Primary addresses and aliases (their text, the user).
    user_index: FlatIndex<AddressEntry>,
    routes: HashMap<String, Route>,
}

/// A sender's domain and address with their hashes, their lookups under way
/// (`Directory::probe_sender`).
#[derive(Debug)]
pub struct SenderProbe<'a> {
    domain: std::borrow::Cow<'a, str>,
    /// `None` when the tenant's own list decides (no index lookup to prepare).
    domain_hash: Option<u64>,
    address: Option<(std::borrow::Cow<'a, str>, u64)>,
}

/// Parses `192.0.2.0/24`, `2001:db8::/32` or a bare address (one host). IPv4 written as
/// IPv6 (a range inside `::ffff:0:0/96`) is the IPv4 range it names: clients are matched by
/// their canonical address (on a dual-stack listener too), and a claim written so must meet
/// the IPv4 claims it overlaps and the IPv4 width limit.
pub fn parse_net(s: &str) -> Option<IpNet> {
    let net = relayward_store::spans::parse_range(s)?;
    if let IpNet::V6(v6) = net
        && let Some(v4) = v6.addr().to_ipv4_mapped()
        && let Some(len) = v6.prefix_len().checked_sub(96)
        && let Ok(v4) = ipnet::Ipv4Net::new(v4, len)
    {
        return Some(IpNet::V4(v4));
    }
    Some(net)
}

/// A tenant as one directory numbers it, for the per-message path: found once per connection,
/// then used for lookups without hashing the tenant's name again. Valid only with the directory
/// that gave it; a connection that holds one checks `Directory::generation` and asks again after
/// a reload.
///
/// It also says where the tenant's own accepted domains are listed: a tenant with a few and
/// none that matches subdomains has its sender and recipient domains checked against that
/// short list (one cache line, read once per message) instead of the index of all domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantKey {
    index: u32,
    domains: DomainList,
}

/// Where a tenant's verified accepted domains sit in `Directory::tenant_domains`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct DomainList {
    start: u32,
    len: u32,
    /// Whether the list alone answers "is this an accepted domain of the tenant": none of its
    /// domains matches subdomains (those are found through their parents in the whole index),
    /// and there are few enough to compare one by one.
    decides: bool,
}

/// A tenant's own list answers for it up to this many domains; beyond, the index does.
const SHORT_LIST: u32 = 8;

impl TenantKey {
    /// The tenant's place in this directory (dense, from 0): what another part keeps its own
    /// per-tenant state by, alongside `Directory::generation`.
    pub fn index(self) -> u32 {
        self.index
    }
}

/// Tenant names to their places, for a thread that builds beside the directory.
struct TenantIds {
    index: HashTable<u32>,
    names: Vec<StrId>,
    arena: Arena,
    hasher: RandomState,
}

impl TenantIds {
    /// The tenant's place, remembering the last answer (rows usually come grouped by tenant).
    fn id(&self, last: &mut Option<(String, u32)>, name: &str) -> Option<u32> {
        remembered(last, name, |name| {
            self.index
                .find(self.hasher.hash_one(name), |&j| {
                    self.names
                        .get(j as usize)
                        .is_some_and(|&n| self.arena.get(n) == name)
                })
                .copied()
        })
    }
}

/// `find(name)`, or the last answer when `name` was the last one asked: the store's rows
/// usually come grouped by tenant.
fn remembered(
    last: &mut Option<(String, u32)>,
    name: &str,
    find: impl FnOnce(&str) -> Option<u32>,
) -> Option<u32> {
    if let Some((n, id)) = last
        && n == name
    {
        return Some(*id);
    }
    let id = find(name)?;
    *last = Some((name.to_string(), id));
    Some(id)
}

/// The accepted domains' part of a directory.
struct DomainTables {
    arena: Arena,
    domains: FlatIndex<DomainRow>,
    subdomain_roots: HashTable<DomainRow>,
    /// The rows indexed, in the order given, for the tenants' own lists.
    kept: Vec<DomainRow>,
}

impl DomainTables {
    fn build(domains: &[Domain], ids: &TenantIds) -> DomainTables {
        let mut t = DomainTables {
            arena: Arena::default(),
            domains: FlatIndex::default(),
            subdomain_roots: HashTable::new(),
            kept: Vec::with_capacity(domains.len()),
        };
        let bytes: usize = domains.iter().map(|x| x.name.len()).sum();
        t.arena.0.reserve(bytes + bytes / 8);
        t.domains.reserve(domains.len(), |_| 0);
        let state = &ids.hasher;
        let mut last = None;
        for dom in domains {
            if !dom.verified {
                continue;
            }
            let Some(tenant) = ids.id(&mut last, &dom.tenant) else {
                tracing::warn!(domain = %dom.name, tenant = %dom.tenant, "domain of an unknown tenant ignored");
                continue;
            };
            let name = domain_key(&dom.name);
            let hash = state.hash_one(&*name);
            let arena = &t.arena;
            if t.domains.find(hash, |r| r.name.is(arena, &name)).is_some() {
                tracing::warn!(domain = %name, tenant = %dom.tenant, "domain listed twice; the first one is kept");
                continue;
            }
            let id = t.arena.push(&name);
            let row = DomainRow {
                name: Inline::new(id, &name),
                tenant,
                kind: dom.kind,
                match_subdomains: dom.match_subdomains,
            };
            let arena = &t.arena;
            t.domains
                .insert(hash, row, |r| state.hash_one(r.name.get(arena)));
            t.kept.push(row);
            if row.match_subdomains && row.kind == DomainKind::InternalRelay {
                t.subdomain_roots
                    .insert_unique(hash, row, |r| state.hash_one(r.name.get(arena)));
            }
        }
        t
    }
}

static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Directory {
    /// Builds the directory from the store's rows. The rows are read, not consumed: freeing
    /// millions of strings takes about a second, so it happens on a thread of its own after
    /// the directory is ready.
    pub fn build(data: DirectoryData) -> Directory {
        let d = Directory::build_from(&data);
        let drop_later = std::thread::Builder::new()
            .name("directory-input".into())
            .spawn(move || drop(data));
        if let Err(e) = drop_later {
            tracing::debug!(error = %e, "freeing the directory's input on this thread");
        }
        d
    }

    fn build_from(data: &DirectoryData) -> Directory {
        let mut d = Directory {
            generation: GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            ..Directory::default()
        };
        let bytes: usize = data.tenants.iter().map(|t| t.name.len()).sum::<usize>()
            + data.users.iter().map(|u| u.address.len()).sum::<usize>();
        d.arena.0.reserve(bytes + bytes / 4);
        d.tenants.reserve(data.tenants.len());
        d.tenant_index.reserve(data.tenants.len(), |_| 0);
        for t in &data.tenants {
            if d.tenant_id(&t.name).is_some() {
                tracing::warn!(tenant = %t.name, "tenant listed twice; the first one is kept");
                continue;
            }
            let language = match d.languages.iter().position(|l| *l == t.language) {
                Some(i) => i as u8,
                None if d.languages.len() < 255 => {
                    d.languages.push(t.language.clone());
                    (d.languages.len() - 1) as u8
                }
                None => 0,
            };
            let row = TenantRow {
                name: d.arena.push(&t.name),
                domains: DomainList::default(),
                language,
                subscription_ends: t.subscription_ends.as_deref().map(|s| d.arena.push(s)),
                admins: (!t.admins.is_empty()).then(|| d.arena.push_lines(&t.admins)),
                managed_by_config: t.managed_by_config,
                forwarding: t.forwarding,
                forwarding_domains: (!t.forwarding_domains.is_empty())
                    .then(|| d.arena.push_lines(&t.forwarding_domains)),
            };
            let i = d.tenants.len() as u32;
            let hash = d.hasher.hash_one(t.name.as_str());
            d.tenants.push(row);
            let (tenants, arena, state) = (&d.tenants, &d.arena, &d.hasher);
            d.tenant_index.insert_unique(hash, i, |&j| {
                state.hash_one(arena.get(tenants[j as usize].name))
            });
        }
        // The domains are indexed on a thread of their own (their own arena, the tenants'
        // names copied for it) while this one does connectors and users.
        let ids = TenantIds {
            index: d.tenant_index.clone(),
            names: d.tenants.iter().map(|t| t.name).collect(),
            arena: Arena(d.arena.0.clone()),
            hasher: d.hasher.clone(),
        };
        let mut last: Option<(String, u32)> = None;
        let tables = std::thread::scope(|scope| {
            let domains = std::thread::Builder::new()
                .name("directory-domains".into())
                .spawn_scoped(scope, || DomainTables::build(&data.domains, &ids));
            d.add_connectors_and_users(data, &mut last);
            match domains {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                Err(e) => {
                    tracing::debug!(error = %e, "indexing the domains on this thread");
                    DomainTables::build(&data.domains, &ids)
                }
            }
        });
        d.domain_arena = tables.arena;
        d.domains = tables.domains;
        d.subdomain_roots = tables.subdomain_roots;
        d.list_domains(&tables.kept);
        drop(tables.kept);
        for r in &data.routes {
            d.routes.insert(r.domain.to_ascii_lowercase(), r.clone());
        }
        d
    }

    fn add_connectors_and_users(&mut self, data: &DirectoryData, last: &mut Option<(String, u32)>) {
        let d = self;
        d.connectors.reserve(data.connectors.len());
        for c in &data.connectors {
            let Some(tenant) = d.tenant_id_cached(last, &c.tenant) else {
                tracing::warn!(connector = %c.name, tenant = %c.tenant, "connector of an unknown tenant ignored");
                continue;
            };
            let nets_start = d.nets.len() as u32;
            for s in &c.ips {
                match parse_net(s) {
                    Some(n) => d.nets.push(n),
                    None => {
                        tracing::warn!(connector = %c.name, tenant = %c.tenant, range = %s, "connector range ignored: not an address or CIDR range")
                    }
                }
            }
            let row = ConnectorRow {
                tenant,
                name: d.arena.push(&c.name),
                nets_start,
                nets_len: d.nets.len() as u32 - nets_start,
                cert_name: c.cert_name.as_deref().map(|n| d.arena.push(n)),
                created_at: c.created_at,
                require_tls: c.require_tls,
                relay_unregistered: c.relay_unregistered,
                by_configuration: c.created_by == "configuration",
                reviewed: c.reviewed,
            };
            d.index_connector(row, c.cert_name.as_deref());
        }
        d.connector_nets.sort_by_key(|n| std::cmp::Reverse(n.0));
        d.users.reserve(data.users.len());
        let addresses = data.users.iter().map(|u| 1 + u.aliases.len()).sum();
        d.user_index.reserve(addresses, |_| 0);
        for u in &data.users {
            let Some(tenant) = d.tenant_id_cached(last, &u.tenant) else {
                tracing::warn!(user = %u.address, tenant = %u.tenant, "user of an unknown tenant ignored");
                continue;
            };
            let i = d.users.len() as u32;
            let row = UserRow {
                tenant,
                address: d.arena.push(&u.address),
                password_hash: u.password_hash.as_deref().map(|h| d.arena.push(h)),
                forward_to: u.forward_to.as_deref().map(|f| d.arena.push(f)),
                forward_only: u.forward_only,
            };
            let address = row.address;
            d.users.push(row);
            d.index_address(address, i, tenant, true);
            for a in &u.aliases {
                let alias = d.arena.push(a);
                d.index_address(alias, i, tenant, false);
            }
        }
    }

    /// Groups the accepted domains by tenant (a counting sort: the rows need not come grouped)
    /// and tells each tenant where its own are and whether they alone decide.
    fn list_domains(&mut self, kept: &[DomainRow]) {
        let mut counts = vec![0u32; self.tenants.len()];
        let mut roots = vec![false; self.tenants.len()];
        for r in kept {
            counts[r.tenant as usize] += 1;
            roots[r.tenant as usize] |= r.match_subdomains;
        }
        let mut start = 0u32;
        for (t, row) in self.tenants.iter_mut().enumerate() {
            row.domains = DomainList {
                start,
                len: 0,
                decides: !roots[t] && counts[t] <= SHORT_LIST,
            };
            start += counts[t];
        }
        self.tenant_domains = vec![Inline::default(); kept.len()];
        for r in kept {
            let list = &mut self.tenants[r.tenant as usize].domains;
            self.tenant_domains[(list.start + list.len) as usize] = r.name;
            list.len += 1;
        }
    }

    /// Whether the tenant's own list holds `lower`, when the list alone decides; `None` when
    /// the whole index must be asked.
    fn in_own_list(&self, key: TenantKey, lower: &str) -> Option<bool> {
        let list = key.domains;
        if !list.decides {
            return None;
        }
        let start = list.start as usize;
        let names = self.tenant_domains.get(start..start + list.len as usize)?;
        Some(names.iter().any(|n| n.is(&self.domain_arena, lower)))
    }

    fn index_address(&mut self, key: StrId, user: u32, tenant: u32, primary: bool) {
        let text = self.arena.get(key);
        if self.user_slot(text).is_some() {
            tracing::warn!(address = %text, "address belongs to two users; the first one keeps it");
            return;
        }
        let hash = hash_folded(&self.hasher, text);
        let entry = AddressEntry {
            key: Inline::new(key, text),
            user,
            tenant,
            primary,
        };
        let (arena, state) = (&self.arena, &self.hasher);
        self.user_index
            .insert(hash, entry, |e| hash_folded(state, e.key.get(arena)));
    }

    fn address_entry(&self, address: &str) -> Option<&AddressEntry> {
        let address = address_key(address);
        self.address_entry_hashed(hash_folded(&self.hasher, &address), &address)
    }

    fn address_entry_hashed(&self, hash: u64, address: &str) -> Option<&AddressEntry> {
        self.user_index
            .find(hash, |e| e.key.is_folded(&self.arena, address))
    }

    fn user_slot(&self, address: &str) -> Option<u32> {
        self.address_entry(address).map(|e| e.user)
    }

    fn index_connector(&mut self, row: ConnectorRow, cert_name: Option<&str>) {
        let i = self.connectors.len() as u32;
        let hash = self.connector_hash(row.tenant, self.arena.get(row.name));
        if self
            .connector_slot(row.tenant, self.arena.get(row.name))
            .is_some()
        {
            tracing::warn!(connector = %self.arena.get(row.name), "connector listed twice; the first one is kept");
            return;
        }
        let nets = &self.nets[row.nets_start as usize..(row.nets_start + row.nets_len) as usize];
        for net in nets {
            let len = net.prefix_len();
            let slot = match self.connector_nets.iter().position(|(l, _)| *l == len) {
                Some(p) => p,
                None => {
                    self.connector_nets.push((len, HashMap::new()));
                    self.connector_nets.len() - 1
                }
            };
            let map = &mut self.connector_nets[slot].1;
            let net = net.trunc();
            if let Some(&other) = map.get(&net) {
                let other = &self.connectors[other as usize];
                tracing::warn!(connector = %self.arena.get(row.name), range = %net, other_connector = %self.arena.get(other.name), "range already belongs to another connector; the first one keeps it");
            } else {
                map.insert(net, i);
            }
        }
        if let Some(pattern) = cert_name {
            self.connector_certs
                .entry(pattern.to_ascii_lowercase())
                .or_insert(i);
        }
        self.connectors.push(row);
        let (connectors, arena, state) = (&self.connectors, &self.arena, &self.hasher);
        self.connector_names.insert_unique(hash, i, |&j| {
            let c = &connectors[j as usize];
            connector_key_hash(state, c.tenant, arena.get(c.name))
        });
    }

    fn connector_hash(&self, tenant: u32, name: &str) -> u64 {
        connector_key_hash(&self.hasher, tenant, name)
    }

    fn connector_slot(&self, tenant: u32, name: &str) -> Option<u32> {
        self.connector_names
            .find(self.connector_hash(tenant, name), |&j| {
                let c = &self.connectors[j as usize];
                c.tenant == tenant && self.arena.get(c.name) == name
            })
            .copied()
    }

    fn tenant_id(&self, name: &str) -> Option<u32> {
        self.tenant_index
            .find(self.hasher.hash_one(name), |&j| {
                self.arena.get(self.tenants[j as usize].name) == name
            })
            .copied()
    }

    /// `tenant_id`, remembering the last answer: rows usually come grouped by tenant.
    fn tenant_id_cached(&self, last: &mut Option<(String, u32)>, name: &str) -> Option<u32> {
        remembered(last, name, |n| self.tenant_id(n))
    }

    fn tenant_name(&self, id: u32) -> &str {
        self.tenants
            .get(id as usize)
            .map_or("", |t| self.arena.get(t.name))
    }

    fn tenant_ref(&self, t: &TenantRow) -> TenantRef<'_> {
        TenantRef {
            name: self.arena.get(t.name),
            language: self
                .languages
                .get(usize::from(t.language))
                .map_or("en", String::as_str),
            subscription_ends: t.subscription_ends.map(|s| self.arena.get(s)),
            admins: t.admins.map_or("", |a| self.arena.get(a)),
            managed_by_config: t.managed_by_config,
            forwarding: t.forwarding,
            forwarding_domains: t.forwarding_domains.map_or("", |f| self.arena.get(f)),
        }
    }

    fn connector_ref(&self, i: u32) -> Option<ConnectorRef<'_>> {
        let c = self.connectors.get(i as usize)?;
        let start = c.nets_start as usize;
        Some(ConnectorRef {
            tenant: self.tenant_name(c.tenant),
            name: self.arena.get(c.name),
            nets: self
                .nets
                .get(start..start + c.nets_len as usize)
                .unwrap_or(&[]),
            cert_name: c.cert_name.map(|n| self.arena.get(n)),
            require_tls: c.require_tls,
            relay_unregistered: c.relay_unregistered,
            by_configuration: c.by_configuration,
            created_at: c.created_at,
            reviewed: c.reviewed,
        })
    }

    pub fn tenant(&self, name: &str) -> Option<TenantRef<'_>> {
        let id = self.tenant_id(name)?;
        self.tenants.get(id as usize).map(|t| self.tenant_ref(t))
    }

    /// Which build this is: `TenantKey`s from another generation mean nothing here.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn tenant_key(&self, name: &str) -> Option<TenantKey> {
        let index = self.tenant_id(name)?;
        let row = self.tenants.get(index as usize)?;
        Some(TenantKey {
            index,
            domains: row.domains,
        })
    }

    pub fn tenant_by_key(&self, key: TenantKey) -> Option<TenantRef<'_>> {
        self.tenants
            .get(key.index as usize)
            .map(|t| self.tenant_ref(t))
    }

    /// A tenant's connector by name, the tenant already found.
    pub fn connector_by_key(&self, key: TenantKey, name: &str) -> Option<ConnectorRef<'_>> {
        self.connector_ref(self.connector_slot(key.index, name)?)
    }

    /// The primary address of the tenant's user with this address or alias; `None` when the
    /// address is no user of this tenant.
    pub fn user_of(&self, key: TenantKey, address: &str) -> Option<&str> {
        self.user_of_entry(key, self.address_entry(address)?)
    }

    fn user_of_entry<'a>(&'a self, key: TenantKey, e: &'a AddressEntry) -> Option<&'a str> {
        if e.tenant != key.index {
            return None;
        }
        if e.primary {
            // The entry holds the address itself: no row to read.
            return Some(e.key.get(&self.arena));
        }
        self.users
            .get(e.user as usize)
            .map(|u| self.arena.get(u.address))
    }

    /// Whether `domain` is an accepted, verified domain of the tenant: one lookup, no names
    /// compared beyond the domain's own.
    pub fn is_accepted_by_key(&self, key: TenantKey, domain: &str) -> bool {
        self.accepted_by_key(key, &domain_key(domain), None)
    }

    /// `is_accepted_by_key` for a name as `domain_key` gives it: the tenant's own list when it
    /// decides, else the index (with `hash`, when already made).
    fn accepted_by_key(&self, key: TenantKey, lower: &str, hash: Option<u64>) -> bool {
        if let Some(own) = self.in_own_list(key, lower) {
            return own;
        }
        let hash = hash.unwrap_or_else(|| self.hasher.hash_one(lower));
        self.find_accepted_hashed(lower, hash)
            .is_some_and(|d| d.tenant == key.index)
    }

    /// Starts loading the tenant's own list of domains, when it decides (see `TenantKey`), so
    /// the recipients' domains of a transaction are checked without waiting for memory.
    fn prefetch_domains(&self, key: TenantKey) {
        let list = key.domains;
        if list.decides && list.len > 0 {
            let start = list.start as usize;
            if let Some(names) = self.tenant_domains.get(start..start + list.len as usize) {
                relayward_prefetch::line(names.as_ptr());
                relayward_prefetch::line(names.as_ptr_range().end.wrapping_sub(1));
            }
        }
    }

    /// Starts the directory's part of MAIL FROM: hashes the sender's domain and address and
    /// asks for the memory their lookups will read (see `sender_of`), so that work done
    /// before the answer is needed (finding the tenant's counters) waits for memory
    /// alongside them.
    pub fn probe_sender<'a>(
        &self,
        key: TenantKey,
        domain: &'a str,
        address: Option<&'a str>,
    ) -> SenderProbe<'a> {
        let domain = domain_key(domain);
        let domain_hash = if key.domains.decides {
            self.prefetch_domains(key);
            None
        } else {
            let h = self.hasher.hash_one(&*domain);
            self.domains.prefetch(h);
            Some(h)
        };
        // Looked up as `user` looks it up: a domain written in Unicode as its A-labels.
        let address = address.map(|a| {
            let a = address_key(a);
            let h = hash_folded(&self.hasher, &a);
            self.user_index.prefetch(h);
            (a, h)
        });
        SenderProbe {
            domain,
            domain_hash,
            address,
        }
    }

    /// What MAIL FROM asks of the directory about a tenant's sender, both lookups at once (their
    /// memory reads were started together by `probe_sender`, so the message waits for memory
    /// once, not twice): whether the sender's domain is an accepted, verified domain of the
    /// tenant (`is_accepted_by_key`), and, when the probe has an address, the tenant's user
    /// with that address or alias (`user_of`).
    pub fn sender_of(&self, key: TenantKey, probe: &SenderProbe) -> (bool, Option<&str>) {
        let registered =
            !probe.domain.is_empty() && self.accepted_by_key(key, &probe.domain, probe.domain_hash);
        let user = probe
            .address
            .as_ref()
            .and_then(|(a, h)| self.address_entry_hashed(*h, a))
            .and_then(|e| self.user_of_entry(key, e));
        (registered, user)
    }

    /// Tenants whose subscription has an end date.
    pub fn tenants_with_subscription_end(&self) -> impl Iterator<Item = TenantRef<'_>> {
        self.tenants
            .iter()
            .filter(|t| t.subscription_ends.is_some())
            .map(|t| self.tenant_ref(t))
    }

    /// A tenant's connector by name.
    pub fn connector(&self, tenant: &str, name: &str) -> Option<ConnectorRef<'_>> {
        let t = self.tenant_id(tenant)?;
        self.connector_ref(self.connector_slot(t, name)?)
    }

    pub fn tenant_count(&self) -> usize {
        self.tenants.len()
    }

    /// The connector whose ranges hold `ip`, the narrowest range winning. One hash lookup per
    /// distinct prefix length in use, so the cost does not grow with the number of connectors.
    pub fn connector_for_ip(&self, ip: IpAddr) -> Option<ConnectorRef<'_>> {
        self.connector_nets
            .iter()
            .find_map(|(len, map)| {
                // A v6 prefix length longer than 32 is no v4 network: `new` refuses it.
                let net = IpNet::new(ip, *len).ok()?.trunc();
                map.get(&net)
            })
            .and_then(|&i| self.connector_ref(i))
    }

    /// The connector whose certificate name matches one of `names` (verified certificate names).
    pub fn connector_for_cert(&self, names: &[String]) -> Option<ConnectorRef<'_>> {
        names
            .iter()
            .find_map(|n| {
                let n = n.to_ascii_lowercase();
                let wildcard = n.split_once('.').map(|(_, parent)| format!("*.{parent}"));
                self.connector_certs
                    .get(&n)
                    .or_else(|| wildcard.as_ref().and_then(|w| self.connector_certs.get(w)))
            })
            .and_then(|&i| self.connector_ref(i))
    }

    fn find_domain_hashed(&self, lower: &str, hash: u64) -> Option<&DomainRow> {
        self.domains
            .find(hash, |r| r.name.is(&self.domain_arena, lower))
    }

    fn find_subdomain_root(&self, lower: &str) -> Option<&DomainRow> {
        self.subdomain_roots.find(self.hasher.hash_one(lower), |r| {
            r.name.is(&self.domain_arena, lower)
        })
    }

    /// The verified accepted domain that covers `domain` (itself, or a parent with "match
    /// subdomains"). Unverified domains do not count.
    pub fn accepted_domain(&self, domain: &str) -> Option<DomainRef<'_>> {
        let found = self.find_accepted(domain)?;
        Some(DomainRef {
            name: found.name.get(&self.domain_arena),
            tenant: self.tenant_name(found.tenant),
            kind: found.kind,
            match_subdomains: found.match_subdomains,
        })
    }

    fn find_accepted(&self, domain: &str) -> Option<&DomainRow> {
        let domain = domain_key(domain);
        self.find_accepted_hashed(&domain, self.hasher.hash_one(&*domain))
    }

    /// `find_accepted` for a name as `domain_key` gives it, and its hash.
    fn find_accepted_hashed(&self, domain: &str, hash: u64) -> Option<&DomainRow> {
        self.find_domain_hashed(domain, hash).or_else(|| {
            if self.subdomain_roots.is_empty() {
                return None;
            }
            let mut rest = domain;
            while let Some((_, parent)) = rest.split_once('.') {
                if let Some(d) = self.find_subdomain_root(parent) {
                    return Some(d);
                }
                rest = parent;
            }
            None
        })
    }

    /// Whether `domain` is an accepted, verified domain of `tenant`.
    pub fn is_accepted_by(&self, tenant: &str, domain: &str) -> bool {
        self.accepted_domain(domain)
            .is_some_and(|d| d.tenant == tenant)
    }

    /// The tenant whose verified accepted domain `domain` is or lies under, with or without
    /// "match subdomains": a subdomain is its parent's namespace (DMARC takes it as aligned
    /// with it), so mail from it speaks for that tenant. Each parent is one lookup, up to the
    /// last two labels.
    pub fn domain_holder(&self, domain: &str) -> Option<&str> {
        let lower = domain_key(domain);
        let mut name: &str = &lower;
        loop {
            if let Some(d) = self.find_domain_hashed(name, self.hasher.hash_one(name)) {
                return Some(self.tenant_name(d.tenant));
            }
            match name.split_once('.') {
                Some((_, parent)) if parent.contains('.') => name = parent,
                _ => return None,
            }
        }
    }

    /// The user with this primary address or alias (any letter case).
    pub fn user(&self, address: &str) -> Option<UserRef<'_>> {
        let u = self.users.get(self.user_slot(address)? as usize)?;
        Some(UserRef {
            tenant: self.tenant_name(u.tenant),
            address: self.arena.get(u.address),
            password_hash: u.password_hash.map(|h| self.arena.get(h)),
            forward_to: u.forward_to.map(|f| self.arena.get(f)),
            forward_only: u.forward_only,
        })
    }

    /// The tenant's own server for this recipient domain, if it has one. A route takes every
    /// tenant's mail for the domain, so it counts only while the domain is a verified accepted
    /// domain of the route's own tenant (the name itself, or a parent with "match
    /// subdomains", whose subdomains go where it goes): a route for a domain its tenant has
    /// not proven, or no longer holds, is not followed.
    pub fn route(&self, domain: &str) -> Option<&Route> {
        let accepted = self.accepted_domain(domain)?;
        let r = self
            .routes
            .get(&*domain_key(domain))
            .or_else(|| self.routes.get(accepted.name))?;
        (r.tenant == accepted.tenant).then_some(r)
    }
}

/// Certificate name matching: exact, or a `*.` wildcard standing for exactly one label.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == name,
    }
}

/// A domain name, and an address's domain, as the directory keeps and looks them up (the
/// store's own rule: see there).
pub use relayward_store::{address_key, domain_key, stored_address};

/// The domain of an address, lower-cased (empty when there is none).
pub fn domain_of(address: &str) -> String {
    domain_key(domain_part(address)).into_owned()
}

/// The domain of an address as written, without a final dot (empty when there is none): for
/// lookups, which ignore letter case themselves, without making a lower-case copy. A byte scan
/// from the end: addresses are short, and this runs for every sender and recipient.
pub fn domain_part(address: &str) -> &str {
    let bytes = address.as_bytes();
    let mut i = bytes.len();
    while i > 0 {
        i -= 1;
        if bytes[i] == b'@' {
            // Just after an ASCII '@', so a character boundary.
            return address
                .get(i + 1..)
                .unwrap_or_default()
                .trim_end_matches('.');
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;
    use relayward_store::{Connector, Domain, Tenant, User};

    fn data() -> DirectoryData {
        let domain = |name: &str, kind, sub, verified| Domain {
            tenant: "contoso".into(),
            name: name.into(),
            kind,
            match_subdomains: sub,
            verified,
            verification_token: String::new(),
        };
        let connector = |name: &str, ips: &[&str]| Connector {
            tenant: "contoso".into(),
            name: name.into(),
            ips: ips.iter().map(|s| s.to_string()).collect(),
            cert_name: Some("*.mail.contoso.example".into()),
            require_tls: false,
            relay_unregistered: false,
            created_by: "test".into(),
            created_at: 0,
            reviewed: false,
        };
        DirectoryData {
            tenants: vec![Tenant {
                name: "contoso".into(),
                language: "es".into(),
                subscription_ends: None,
                admins: vec!["a@contoso.example".into(), "b@contoso.example".into()],
                managed_by_config: false,
                forwarding: Default::default(),
                forwarding_domains: Vec::new(),
            }],
            users: vec![User {
                tenant: "contoso".into(),
                address: "Ana@contoso.example".into(),
                aliases: vec!["ana.lopez@contoso.example".into()],
                password_hash: None,
                forward_to: Some("ana@elsewhere.example".into()),
                forward_only: false,
            }],
            domains: vec![
                domain("contoso.example", DomainKind::Authoritative, false, true),
                domain(
                    "relay.contoso.example",
                    DomainKind::InternalRelay,
                    true,
                    true,
                ),
                domain("pending.example", DomainKind::Authoritative, false, false),
            ],
            connectors: vec![
                connector("wide", &["10.0.0.0/8"]),
                connector("narrow", &["10.1.2.0/24", "not-an-ip"]),
                connector("v6", &["2001:db8::/32", "2001:db8:1::5"]),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn domains_need_verification_and_subdomains_need_the_flag() {
        let d = Directory::build(data());
        assert!(d.accepted_domain("CONTOSO.example").is_some());
        assert!(d.accepted_domain("sub.contoso.example").is_none());
        assert!(d.accepted_domain("a.b.relay.contoso.example").is_some());
        assert!(d.accepted_domain("pending.example").is_none());
        assert!(d.accepted_domain("example").is_none());
    }

    /// Adds a verified authoritative domain of contoso's and a user of contoso's.
    fn add_domain_and_user(
        data: &mut DirectoryData,
        domain: &str,
        address: &str,
        aliases: &[&str],
    ) {
        data.domains.push(Domain {
            tenant: "contoso".into(),
            name: domain.into(),
            kind: DomainKind::Authoritative,
            match_subdomains: false,
            verified: true,
            verification_token: String::new(),
        });
        data.users.push(User {
            tenant: "contoso".into(),
            address: address.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            password_hash: None,
            forward_to: None,
            forward_only: false,
        });
    }

    /// An internationalised domain is stored as its A-labels; SMTPUTF8 clients write it in
    /// Unicode, and either form is the same domain, user and route (RFC 5890).
    #[test]
    fn a_domain_written_in_unicode_is_its_a_label_form() {
        assert_eq!(domain_key("Bücher.Example."), "xn--bcher-kva.example");
        assert_eq!(domain_key("XN--BCHER-KVA.example"), "xn--bcher-kva.example");
        assert!(matches!(
            domain_key("contoso.example"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(domain_of("Anna@BÜCHER.example"), "xn--bcher-kva.example");
        assert_eq!(
            address_key("anna@bücher.example"),
            "anna@xn--bcher-kva.example"
        );
        assert_eq!(address_key("ånna@contoso.example"), "ånna@contoso.example");
        let mut data = data();
        add_domain_and_user(
            &mut data,
            "xn--bcher-kva.example",
            "anna@xn--bcher-kva.example",
            &[],
        );
        data.routes = vec![relayward_store::Route {
            tenant: "contoso".into(),
            domain: "xn--bcher-kva.example".into(),
            host: "mail.contoso.example:25".into(),
        }];
        let d = Directory::build(data);
        for name in ["bücher.example", "BÜCHER.EXAMPLE.", "xn--bcher-kva.example"] {
            let found = d.accepted_domain(name).map(|a| (a.name, a.tenant));
            assert_eq!(found, Some(("xn--bcher-kva.example", "contoso")), "{name}");
            assert_eq!(d.domain_holder(name), Some("contoso"), "{name}");
            assert!(d.route(name).is_some(), "{name}");
        }
        assert_eq!(
            d.user("anna@bücher.example").map(|u| u.address),
            Some("anna@xn--bcher-kva.example")
        );
        // MAIL FROM through a connector finds the user the same way.
        let key = d.tenant_key("contoso").expect("contoso");
        for a in ["anna@bücher.example", "ana@contoso\u{200b}.example"] {
            let domain = domain_of(a);
            let probe = d.probe_sender(key, &domain, Some(a));
            let (registered, user) = d.sender_of(key, &probe);
            assert!(registered && user.is_some(), "{a}");
        }
        // Another name that looks alike is another domain.
        assert!(d.accepted_domain("bucher.example").is_none());
    }

    /// A route takes every sender's mail for its domain: it is followed only for a verified
    /// domain of its own tenant (or a subdomain of one that matches subdomains).
    #[test]
    fn a_route_is_followed_only_for_its_tenants_verified_domain() {
        let mut data = data();
        data.tenants.push(Tenant::named("fabrikam"));
        let route = |tenant: &str, domain: &str| relayward_store::Route {
            tenant: tenant.into(),
            domain: domain.into(),
            host: format!("mail.{domain}:25"),
        };
        data.routes = vec![
            route("contoso", "contoso.example"),
            route("contoso", "relay.contoso.example"),
            route("contoso", "pending.example"),
            route("fabrikam", "partner.example"),
        ];
        // Another tenant's route for contoso's own domain, as a store might still hold one.
        data.routes
            .push(route("fabrikam", "sub.relay.contoso.example"));
        let d = Directory::build(data);
        let host = |domain: &str| d.route(domain).map(|r| r.host.clone());
        assert_eq!(
            host("Contoso.Example").as_deref(),
            Some("mail.contoso.example:25")
        );
        assert_eq!(
            host("a.relay.contoso.example").as_deref(),
            Some("mail.relay.contoso.example:25")
        );
        assert_eq!(host("pending.example"), None, "not verified");
        assert_eq!(host("partner.example"), None, "no tenant's verified domain");
        assert_eq!(
            host("sub.relay.contoso.example"),
            None,
            "another tenant's domain"
        );
        assert_eq!(host("elsewhere.example"), None);
    }

    #[test]
    fn narrowest_connector_range_wins() {
        let d = Directory::build(data());
        let c = |ip: &str| {
            d.connector_for_ip(ip.parse().expect("ip"))
                .map(|c| c.name.to_string())
        };
        assert_eq!(c("10.1.2.3").as_deref(), Some("narrow"));
        assert_eq!(c("10.9.9.9").as_deref(), Some("wide"));
        assert_eq!(c("192.0.2.1"), None);
        assert_eq!(c("2001:db8:1::5").as_deref(), Some("v6"));
        assert_eq!(c("2001:db8:ffff::1").as_deref(), Some("v6"));
        assert_eq!(c("2001:db9::1"), None);
        assert_eq!(
            d.connector("contoso", "narrow").map(|c| c.nets.len()),
            Some(1)
        );
        assert!(d.connector("fabrikam", "narrow").is_none());
    }

    #[test]
    fn certificate_names_find_their_connector() {
        let d = Directory::build(data());
        let c = |n: &str| {
            d.connector_for_cert(&[n.to_string()])
                .map(|c| c.name.to_string())
        };
        assert_eq!(c("MX1.mail.contoso.example").as_deref(), Some("wide"));
        assert_eq!(c("a.mx1.mail.contoso.example"), None);
        assert_eq!(c("mail.contoso.example"), None);
    }

    #[test]
    fn users_tenants_and_strangers() {
        let mut data = data();
        // Objects of a tenant the directory does not know are left out, not attributed.
        data.users.push(User {
            tenant: "ghost".into(),
            address: "x@ghost.example".into(),
            aliases: Vec::new(),
            password_hash: None,
            forward_to: None,
            forward_only: false,
        });
        let d = Directory::build(data);
        let u = d.user("ANA@CONTOSO.EXAMPLE").expect("by address, any case");
        assert_eq!((u.tenant, u.address), ("contoso", "Ana@contoso.example"));
        assert_eq!(u.forward_to, Some("ana@elsewhere.example"));
        assert_eq!(
            d.user("ana.lopez@contoso.example").map(|u| u.address),
            Some("Ana@contoso.example")
        );
        assert!(d.user("x@ghost.example").is_none());
        assert!(d.user("nobody@contoso.example").is_none());
        let t = d.tenant("contoso").expect("tenant");
        assert_eq!(t.language, "es");
        assert_eq!(
            t.admins().collect::<Vec<_>>(),
            ["a@contoso.example", "b@contoso.example"]
        );
        assert!(d.tenant("fabrikam").is_none());
        assert!(d.is_accepted_by("contoso", "Contoso.Example."));
        assert!(!d.is_accepted_by("fabrikam", "contoso.example"));
    }

    #[test]
    fn the_sender_lookups_made_together_answer_as_the_single_ones() {
        let mut data = data();
        data.tenants.push(Tenant::named("fabrikam"));
        data.domains.push(Domain {
            tenant: "fabrikam".into(),
            name: "fabrikam.example".into(),
            kind: DomainKind::Authoritative,
            match_subdomains: false,
            verified: true,
            verification_token: String::new(),
        });
        let d = Directory::build(data);
        let contoso = d.tenant_key("contoso").expect("contoso");
        let fabrikam = d.tenant_key("fabrikam").expect("fabrikam");
        let ask = |key, sender: &str, with_user: bool| {
            let domain = domain_of(sender);
            let probe = d.probe_sender(key, &domain, with_user.then_some(sender));
            let (registered, user) = d.sender_of(key, &probe);
            (registered, user.map(str::to_string))
        };
        let ana = Some("Ana@contoso.example".to_string());
        assert_eq!(ask(contoso, "ANA.LOPEZ@Contoso.Example", true), (true, ana));
        assert_eq!(ask(contoso, "ana@contoso.example", false), (true, None));
        // Another tenant's domain and user are neither registered nor a user for this one.
        assert_eq!(ask(fabrikam, "ana@contoso.example", true), (false, None));
        assert_eq!(ask(fabrikam, "x@fabrikam.example", true), (true, None));
        // A subdomain of a "match subdomains" domain; an unverified one; none at all.
        assert_eq!(
            ask(contoso, "dev@a.relay.contoso.example", true),
            (true, None)
        );
        assert_eq!(ask(contoso, "x@pending.example", true), (false, None));
        assert_eq!(ask(contoso, "", true), (false, None));
    }

    #[test]
    fn a_tenants_own_list_and_the_whole_index_agree() {
        let mut data = data();
        let domain = |tenant: &str, name: &str, sub: bool| Domain {
            tenant: tenant.into(),
            name: name.into(),
            kind: DomainKind::InternalRelay,
            match_subdomains: sub,
            verified: true,
            verification_token: String::new(),
        };
        data.tenants.push(Tenant::named("fabrikam"));
        data.tenants.push(Tenant::named("hoster"));
        // Rows not grouped by tenant; one domain listed twice (the first keeps it); one
        // exact name under contoso's subdomain-matching domain, owned by another tenant.
        data.domains
            .push(domain("fabrikam", "Fabrikam.Example.", false));
        data.domains
            .push(domain("fabrikam", "x.relay.contoso.example", false));
        for i in 0..12 {
            data.domains
                .push(domain("hoster", &format!("site{i}.example"), false));
        }
        data.domains
            .push(domain("fabrikam", "contoso.example", false));
        data.domains.push(domain(
            "fabrikam",
            "a-name-longer-than-the-inline-head.example",
            false,
        ));
        let d = Directory::build(data);
        let names = [
            "contoso.example",
            "CONTOSO.EXAMPLE",
            "relay.contoso.example",
            "deep.relay.contoso.example",
            "x.relay.contoso.example",
            "y.x.relay.contoso.example",
            "fabrikam.example",
            "fabrikam.example.",
            "a-name-longer-than-the-inline-head.example",
            "a-name-longer-than-the-inline-head.exampl",
            "site0.example",
            "site11.example",
            "site12.example",
            "pending.example",
            "nowhere.example",
            "",
        ];
        let mut own_lists = 0;
        for t in ["contoso", "fabrikam", "hoster"] {
            let key = d.tenant_key(t).expect("tenant");
            own_lists += usize::from(key.domains.decides);
            for n in names {
                let by_index = d.accepted_domain(n).is_some_and(|a| a.tenant == t);
                assert_eq!(d.is_accepted_by_key(key, n), by_index, "{t} and {n}");
            }
        }
        // Only fabrikam's list decides: contoso matches subdomains, hoster has twelve.
        assert_eq!(own_lists, 1);
        let fabrikam = d.tenant_key("fabrikam").expect("fabrikam");
        assert!(d.is_accepted_by_key(fabrikam, "x.relay.contoso.example"));
        assert!(!d.is_accepted_by_key(fabrikam, "contoso.example"));
    }

    #[test]
    fn long_and_short_names_are_found_whole_and_only_whole() {
        let mut data = data();
        let long_domain = "a-rather-long-accepted-domain-name.contoso.example";
        let long_address = "someone.with.a.long.name@department.contoso.example";
        add_domain_and_user(
            &mut data,
            long_domain,
            long_address,
            &["Short@contoso.example"],
        );
        let d = Directory::build(data);
        let key = d.tenant_key("contoso").expect("tenant");
        assert!(d.is_accepted_by_key(key, long_domain));
        assert!(d.is_accepted_by_key(key, &long_domain.to_uppercase()));
        // Same length and the same start as the long name, different end.
        assert!(!d.is_accepted_by_key(key, "a-rather-long-accepted-domain-name.contoso.exampl3"));
        assert!(!d.is_accepted_by_key(key, "contoso.exampl"));
        assert_eq!(
            d.accepted_domain(long_domain).map(|x| x.name),
            Some(long_domain)
        );
        // `user_of` answers the primary address as stored, for the address or an alias.
        assert_eq!(
            d.user_of(key, "ana@CONTOSO.example"),
            Some("Ana@contoso.example")
        );
        assert_eq!(
            d.user_of(key, "ANA.LOPEZ@contoso.example"),
            Some("Ana@contoso.example")
        );
        assert_eq!(
            d.user_of(key, &long_address.to_uppercase()),
            Some(long_address)
        );
        assert_eq!(d.user_of(key, "short@contoso.example"), Some(long_address));
        assert_eq!(
            d.user_of(key, "someone.with.a.long.name@department.contoso.exampl3"),
            None
        );
        assert_eq!(d.user_of(key, "ana@contoso.exampl"), None);
    }

    #[test]
    fn wildcards_match_one_label() {
        assert!(name_matches(
            "*.mail.contoso.example",
            "mx1.mail.contoso.example"
        ));
        assert!(!name_matches(
            "*.mail.contoso.example",
            "a.mx1.mail.contoso.example"
        ));
        assert!(!name_matches(
            "*.mail.contoso.example",
            "mail.contoso.example"
        ));
        assert!(name_matches(
            "Relay.Contoso.example",
            "relay.contoso.EXAMPLE"
        ));
    }
}
