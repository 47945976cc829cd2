//! Rolling windows. A window is a fixed number of equal buckets ending with the bucket that holds
//! "now"; an event leaves the window the moment "now" moves into the bucket `len` places after
//! its own. Windows are sparse (a quiet subject holds one bucket, not 288, and holds it inside
//! the window itself, so reading it touches no other memory) and keep a running total, so reading
//! a window is O(1) plus the buckets that just expired.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// What a window counts. Each limit reads the field it is defined on (messages or recipients).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub messages: u32,
    pub recipients: u32,
    /// Messages whose scan verdict was spam or bulk.
    pub suspicious: u32,
    /// Messages from sender domains that are not accepted domains of the tenant.
    pub unregistered: u32,
    pub unregistered_suspicious: u32,
    /// Recipients outside the tenant's accepted domains.
    pub external: u32,
    /// Recipients inside them.
    pub internal: u32,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.messages = self.messages.saturating_add(o.messages);
        self.recipients = self.recipients.saturating_add(o.recipients);
        self.suspicious = self.suspicious.saturating_add(o.suspicious);
        self.unregistered = self.unregistered.saturating_add(o.unregistered);
        self.unregistered_suspicious = self
            .unregistered_suspicious
            .saturating_add(o.unregistered_suspicious);
        self.external = self.external.saturating_add(o.external);
        self.internal = self.internal.saturating_add(o.internal);
    }

    /// Saturating: a total can never go below zero, whatever order buckets leave in.
    fn sub(&mut self, o: &Counts) {
        self.messages = self.messages.saturating_sub(o.messages);
        self.recipients = self.recipients.saturating_sub(o.recipients);
        self.suspicious = self.suspicious.saturating_sub(o.suspicious);
        self.unregistered = self.unregistered.saturating_sub(o.unregistered);
        self.unregistered_suspicious = self
            .unregistered_suspicious
            .saturating_sub(o.unregistered_suspicious);
        self.external = self.external.saturating_sub(o.external);
        self.internal = self.internal.saturating_sub(o.internal);
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Window {
    bucket_ms: i64,
    len: i64,
    /// Buckets oldest first; the first one lives inline.
    slots: SmallVec<[(i64, Counts); 1]>,
    total: Counts,
    /// The instant the oldest bucket leaves (0: not yet known), so a read that expires
    /// nothing is one comparison.
    #[serde(skip)]
    next_expiry: i64,
}

/// 5-minute buckets.
pub const FIVE_MINUTES: i64 = 300_000;
pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

impl Window {
    /// A window of `len` buckets of `bucket_ms` milliseconds.
    pub fn new(bucket_ms: i64, len: u32) -> Window {
        Window {
            bucket_ms: bucket_ms.max(1),
            len: i64::from(len.max(1)),
            slots: SmallVec::new(),
            total: Counts::default(),
            next_expiry: 0,
        }
    }

    /// 24 hours in 5-minute buckets (SPEC section 4).
    pub fn day() -> Window {
        Window::new(FIVE_MINUTES, 288)
    }

    /// One hour in 1-minute buckets.
    pub fn hour() -> Window {
        Window::new(60_000, 60)
    }

    fn bucket(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.bucket_ms)
    }

    fn expire(&mut self, now_ms: i64) {
        if now_ms < self.next_expiry {
            return;
        }
        self.expire_slow(now_ms);
        self.next_expiry = match self.slots.first() {
            Some((i, _)) => (i + self.len).saturating_mul(self.bucket_ms),
            None => i64::MAX,
        };
    }

    fn expire_slow(&mut self, now_ms: i64) {
        let oldest_kept = self.bucket(now_ms) - self.len + 1;
        let gone = self
            .slots
            .iter()
            .take_while(|(i, _)| *i < oldest_kept)
            .count();
        for (_, c) in &self.slots[..gone] {
            self.total.sub(c);
        }
        self.slots.drain(..gone);
        if self.slots.is_empty() && self.slots.spilled() {
            // A subject that went quiet gives its buckets back.
            self.slots.shrink_to_fit();
        }
    }

    /// Counts `c` at `now_ms`. A clock that steps back adds to the newest bucket instead, so
    /// buckets stay in order.
    pub fn add(&mut self, now_ms: i64, c: &Counts) {
        self.expire(now_ms);
        let idx = self.bucket(now_ms);
        if let Some((last, counts)) = self.slots.last_mut()
            && *last >= idx
        {
            counts.add(c);
            self.total.add(c);
            return;
        }
        self.slots.push((idx, *c));
        self.total.add(c);
        if self.slots.len() == 1 {
            self.next_expiry = (idx + self.len).saturating_mul(self.bucket_ms);
        }
    }

    /// The window's total at `now_ms`, dropping buckets that have left it.
    pub fn total(&mut self, now_ms: i64) -> Counts {
        self.expire(now_ms);
        self.total
    }

    /// The total at `now_ms` without changing the window (for read-only views).
    pub fn peek(&self, now_ms: i64) -> Counts {
        let oldest_kept = self.bucket(now_ms) - self.len + 1;
        let mut t = self.total;
        for (i, c) in &self.slots {
            if *i >= oldest_kept {
                break;
            }
            t.sub(c);
        }
        t
    }

    pub fn clear(&mut self) {
        self.slots.clear();
        self.total = Counts::default();
        self.next_expiry = 0;
    }

    /// Buckets held; a quiet window holds none.
    pub fn buckets_held(&self) -> usize {
        self.slots.len()
    }
}

/// An exact sliding count of events over a short span (the per-minute message limit): keeps at
/// most `limit` timestamps, so memory is bounded by the limit, not by the traffic. The first two
/// live inline.
#[derive(Debug, Clone, Default)]
pub struct Recent {
    times: SmallVec<[i64; 2]>,
}

impl Recent {
    /// How many events happened in `(now - span, now]`.
    pub fn count(&mut self, now_ms: i64, span_ms: i64) -> usize {
        let gone = self
            .times
            .iter()
            .take_while(|t| **t <= now_ms - span_ms)
            .count();
        self.times.drain(..gone);
        self.times.len()
    }

    pub fn push(&mut self, now_ms: i64, keep: usize) {
        self.times.push(now_ms);
        let over = self.times.len().saturating_sub(keep.max(1));
        self.times.drain(..over);
    }

    pub fn clear(&mut self) {
        self.times.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one() -> Counts {
        Counts {
            messages: 1,
            ..Counts::default()
        }
    }

    #[test]
    fn an_event_leaves_the_day_window_when_its_bucket_is_288_buckets_old() {
        let mut w = Window::day();
        let t0 = 1_000 * FIVE_MINUTES + 17; // inside bucket 1000
        w.add(t0, &one());
        let bucket_start = 1_000 * FIVE_MINUTES;
        assert_eq!(w.total(bucket_start + 288 * FIVE_MINUTES - 1).messages, 1);
        assert_eq!(w.total(bucket_start + 288 * FIVE_MINUTES).messages, 0);
    }

    #[test]
    fn peek_agrees_with_total_and_changes_nothing() {
        let mut w = Window::hour();
        for m in 0..90 {
            w.add(m * 60_000, &one());
        }
        let now = 95 * 60_000;
        let p = w.peek(now);
        assert_eq!(p, w.clone().total(now));
        assert_eq!(p.messages, 54, "minutes 36 to 89");
    }

    #[test]
    fn recent_counts_exactly_the_last_span() {
        let mut r = Recent::default();
        for s in 0..30 {
            r.push(s * 1000, 30);
        }
        assert_eq!(r.count(29_000, 60_000), 30);
        assert_eq!(r.count(60_000, 60_000), 29, "the event at 0 s left at 60 s");
    }
}
