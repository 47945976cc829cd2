//! Where the guard keeps its counts. The engine reads and writes them through `CounterStore`, so
//! tests run on memory with a fake clock and a cluster can put deltas into a shared database.
//! Counts are grouped per tenant (the tenant's own windows, its connectors', its users') and
//! serialise whole, which is how a node saves them and how the command line reads them.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

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
}

impl Default for SubjectCounters {
    fn default() -> Self {
        SubjectCounters {
            day: Window::day(),
            hour: Window::hour(),
            minute: Recent::default(),
        }
    }
}

impl SubjectCounters {
    pub fn clear(&mut self) {
        self.day.clear();
        self.hour.clear();
        self.minute.clear();
    }
}

/// One message (or refused attempt) as evidence for a restriction's cause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Boxed: a map's table holds a pointer per slot, not a whole set of windows, which
    /// matters with a million quiet tenants.
    pub connectors: HashMap<String, Box<SubjectCounters>>,
    pub users: HashMap<String, Box<SubjectCounters>>,
    pub samples: VecDeque<Sample>,
}

impl TenantCounters {
    pub fn sample(&mut self, s: Sample) {
        if self.samples.len() >= SAMPLES_KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }
}

pub trait CounterStore {
    fn tenant(&self, tenant: &str) -> Option<&TenantCounters>;
    fn tenant_mut(&mut self, tenant: &str) -> &mut TenantCounters;
    /// Replaces a tenant's counters (restored from disk or another node).
    fn restore(&mut self, tenant: &str, counters: TenantCounters);
    /// Tenants changed since the last call.
    fn take_dirty(&mut self) -> Vec<String>;
}

/// Counters in this process's memory: an index per tenant name into one vector, so the hot path
/// allocates nothing once a tenant has been seen.
#[derive(Debug, Default)]
pub struct MemoryCounters {
    index: HashMap<String, usize>,
    slots: Vec<(String, TenantCounters, bool)>,
    dirty: Vec<usize>,
}

impl MemoryCounters {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&mut self, tenant: &str) -> usize {
        match self.index.get(tenant) {
            Some(&i) => i,
            None => {
                self.slots
                    .push((tenant.to_string(), TenantCounters::default(), false));
                let i = self.slots.len() - 1;
                self.index.insert(tenant.to_string(), i);
                i
            }
        }
    }
}

impl CounterStore for MemoryCounters {
    fn tenant(&self, tenant: &str) -> Option<&TenantCounters> {
        self.index.get(tenant).map(|&i| &self.slots[i].1)
    }

    fn tenant_mut(&mut self, tenant: &str) -> &mut TenantCounters {
        let i = self.slot(tenant);
        if !self.slots[i].2 {
            self.slots[i].2 = true;
            self.dirty.push(i);
        }
        &mut self.slots[i].1
    }

    fn restore(&mut self, tenant: &str, counters: TenantCounters) {
        let i = self.slot(tenant);
        self.slots[i].1 = counters;
    }

    fn take_dirty(&mut self) -> Vec<String> {
        let dirty = std::mem::take(&mut self.dirty);
        dirty
            .into_iter()
            .map(|i| {
                self.slots[i].2 = false;
                self.slots[i].0.clone()
            })
            .collect()
    }
}
