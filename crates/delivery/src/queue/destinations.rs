//! Destinations as a whole: how busy each is, which keep failing, and the messages waiting for
//! them. A message for destinations that cannot take it now waits here without holding one of
//! the delivery slots other destinations could use; a destination that fails again and again is
//! backed off as a whole rather than tried by each of its messages.

use std::collections::HashMap;

use relayward_spool::Envelope;

use super::{Inner, now_ms};

/// Consecutive failures to reach a destination (no connection, no greeting, a broken
/// session), and until when it is left alone.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Health {
    failures: u32,
    /// Unix ms; 0 when not backed off.
    down_until: i64,
    /// Unix ms of the last failure.
    last: i64,
}

/// A destination is backed off after this many failures in a row...
const BREAK_AFTER: u32 = 3;
/// ...for 30 s, doubling with each further failure, at most this long.
const MAX_BACKOFF_MS: i64 = 15 * 60 * 1000;

impl Health {
    fn backoff_ms(failures: u32) -> i64 {
        let steps = failures.saturating_sub(BREAK_AFTER).min(10);
        (30_000_i64 << steps).min(MAX_BACKOFF_MS)
    }
}

/// One destination as `/metrics` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestinationView {
    pub destination: String,
    pub in_flight: usize,
    /// Messages parked until one of its slots frees.
    pub waiting: usize,
    /// Failures in a row.
    pub failures: u32,
    /// Unix ms until which it is backed off, if it is.
    pub down_until: Option<i64>,
}

/// Wakes the next message parked for a destination when a round there ends.
pub(super) struct WakeParked<'a> {
    pub(super) inner: &'a Inner,
    pub(super) destination: &'a str,
}

impl Drop for WakeParked<'_> {
    fn drop(&mut self) {
        self.inner.unpark(self.destination);
    }
}

impl Inner {
    /// Whether a due message can start a round now. Not when every destination it still has
    /// is backed off (it comes back when the first one is tried again, no attempt counted)
    /// or busy to its last slot (it is parked until a slot of one frees). An expired message
    /// always gets its round, which fails it with its NDR.
    pub(super) fn admit(&self, mut env: Envelope) -> Option<Envelope> {
        let now = now_ms();
        let mut destinations: Vec<String> = env
            .recipients
            .iter()
            .filter(|r| r.is_pending())
            .map(|r| self.destination_of(&r.domain()))
            .collect();
        destinations.sort_unstable();
        destinations.dedup();
        let expired = now / 1000 >= env.received_at + self.config.expire_after.as_secs() as i64;
        if destinations.is_empty() || expired {
            return Some(env);
        }
        let down: Vec<Option<i64>> = {
            let h = self.health.lock().unwrap_or_else(|p| p.into_inner());
            destinations
                .iter()
                .map(|d| h.get(d).map(|x| x.down_until).filter(|&t| t > now))
                .collect()
        };
        if down.iter().all(Option::is_some) {
            let at = down.iter().flatten().min().copied().unwrap_or(now);
            // Spread the return over a few seconds so a backlog does not arrive at once.
            let spread = (env.id.bytes().map(u64::from).sum::<u64>() % 5_000) as i64;
            env.next_attempt = (at + spread) / 1000 + 1;
            self.requeue(env);
            return None;
        }
        let open: Vec<&String> = destinations
            .iter()
            .zip(&down)
            .filter(|(_, d)| d.is_none())
            .map(|(name, _)| name)
            .collect();
        let busy = open
            .iter()
            .all(|d| self.destination_slot(d).available_permits() == 0);
        if !busy {
            return Some(env);
        }
        // Parked: a freed slot of `first` wakes it; after 30 s it looks again by itself.
        let first = open.first().map(|d| d.to_string()).unwrap_or_default();
        let id = env.id.clone();
        env.next_attempt = now / 1000 + 30;
        self.requeue(env);
        self.parked
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(first)
            .or_default()
            .push_back(id);
        None
    }

    /// A slot of `destination` was freed: the message parked longest for it is due now.
    pub(super) fn unpark(&self, destination: &str) {
        let next = {
            let mut parked = self.parked.lock().unwrap_or_else(|p| p.into_inner());
            let Some(list) = parked.get_mut(destination) else {
                return;
            };
            let s = self.sched.lock().unwrap_or_else(|p| p.into_inner());
            let mut next = None;
            while let Some(id) = list.pop_front() {
                if s.waiting.contains_key(&id) {
                    next = Some(id);
                    break;
                }
            }
            drop(s);
            if list.is_empty() {
                parked.remove(destination);
            }
            next
        };
        if let Some(id) = next {
            self.due_now(&id);
        }
    }

    /// Failures in a row of a destination that is backed off now.
    pub(super) fn backed_off(&self, destination: &str) -> Option<u32> {
        let now = now_ms();
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(destination)
            .filter(|h| h.down_until > now)
            .map(|h| h.failures)
    }

    /// An operator says `destination` (every destination, with `None`) is worth trying now: its
    /// failures in a row are forgotten, and a backoff under way ends.
    pub(super) fn lift_backoff(&self, destination: Option<&str>) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match destination {
            Some(d) => {
                h.remove(d);
            }
            None => h.clear(),
        }
    }

    /// Failures older than the longest backoff say nothing any more.
    pub(super) fn forget_old_failures(&self) {
        let now = now_ms();
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, h| h.down_until.max(h.last) + MAX_BACKOFF_MS > now);
    }

    /// A round reached `destination` (whatever it answered): it is healthy.
    pub(super) fn reached(&self, destination: &str) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(was) = h.remove(destination)
            && was.down_until > 0
        {
            tracing::info!(destination, "destination answers again");
        }
    }

    /// No host of `destination` could be reached (or none kept a session up).
    pub(super) fn unreachable(&self, destination: &str) {
        let now = now_ms();
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let e = h.entry(destination.to_string()).or_default();
        if e.down_until > now {
            // Rounds that were already under way when it was backed off: the backoff stands,
            // it does not grow with each of them (only a failed try after it does).
            return;
        }
        e.failures = e.failures.saturating_add(1);
        e.last = now;
        if e.failures >= BREAK_AFTER {
            let wait = Health::backoff_ms(e.failures);
            e.down_until = now + wait;
            tracing::warn!(
                destination,
                failures = e.failures,
                seconds = wait / 1000,
                "destination keeps failing: its queued mail waits before the next try"
            );
        }
    }

    pub(super) fn destinations(&self) -> Vec<DestinationView> {
        let now = now_ms();
        let mut out: HashMap<String, DestinationView> = HashMap::new();
        let view = |name: &str| DestinationView {
            destination: name.to_string(),
            in_flight: 0,
            waiting: 0,
            failures: 0,
            down_until: None,
        };
        for (name, slot) in self
            .destinations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let used = self
                .config
                .max_per_destination
                .max(1)
                .saturating_sub(slot.available_permits());
            if used > 0 {
                out.entry(name.clone())
                    .or_insert_with(|| view(name))
                    .in_flight = used;
            }
        }
        for (name, list) in self.parked.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            out.entry(name.clone())
                .or_insert_with(|| view(name))
                .waiting = list.len();
        }
        for (name, h) in self.health.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let v = out.entry(name.clone()).or_insert_with(|| view(name));
            v.failures = h.failures;
            v.down_until = (h.down_until > now).then_some(h.down_until);
        }
        let mut v: Vec<DestinationView> = out.into_values().collect();
        v.sort_by(|a, b| {
            (b.in_flight + b.waiting, b.failures).cmp(&(a.in_flight + a.waiting, a.failures))
        });
        v
    }
}
