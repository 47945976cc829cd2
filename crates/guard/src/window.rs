//! Rolling windows. A window is a fixed number of equal buckets ending with the bucket that holds
//! "now"; an event leaves the window the moment "now" moves into the bucket `len` places after
//! its own. Windows are sparse (a quiet subject holds one bucket, not 288; the bucket taking
//! counts lives inside the window itself, so counting a message touches no other memory) and
//! keep a running total, so reading a window is O(1) plus the buckets that just expired.

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

/// The stored form of a window: its buckets oldest first (what nodes save and restore).
#[derive(Serialize, Deserialize)]
struct StoredWindow {
    bucket_ms: i64,
    len: i64,
    slots: Vec<(i64, Counts)>,
    total: Counts,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "StoredWindow", into = "StoredWindow")]
pub struct Window {
    bucket_ms: i64,
    len: i64,
    /// The bucket that takes new counts (index, counts); `None` when the window is empty.
    /// Inline, so counting a message in the current bucket touches no other memory.
    newest: Option<(i64, Counts)>,
    /// Closed buckets, oldest first: written when a bucket closes, read when one expires. A
    /// quiet subject's one closed bucket sits inline.
    older: SmallVec<[(i64, Counts); 3]>,
    total: Counts,
    /// The instant the oldest bucket leaves (0: not yet known), so a read that expires
    /// nothing is one comparison.
    next_expiry: i64,
    /// The same subject's counts on the other nodes of a cluster, kept apart so this node
    /// saves only its own; every read adds them. `None` on a single node.
    others: Option<Box<Window>>,
}

impl From<StoredWindow> for Window {
    fn from(s: StoredWindow) -> Window {
        let mut w = Window::new(s.bucket_ms, u32::try_from(s.len.max(1)).unwrap_or(u32::MAX));
        let mut slots = s.slots;
        slots.sort_by_key(|(i, _)| *i);
        w.newest = slots.pop();
        w.older = SmallVec::from_vec(slots);
        // The stored total is recomputed from the buckets, so a damaged one cannot stick.
        let mut total = Counts::default();
        for (_, c) in w.older.iter().chain(w.newest.iter()) {
            total.add(c);
        }
        w.total = total;
        w
    }
}

impl From<Window> for StoredWindow {
    fn from(w: Window) -> StoredWindow {
        let mut slots: Vec<(i64, Counts)> = w.older.into_vec();
        slots.extend(w.newest);
        StoredWindow {
            bucket_ms: w.bucket_ms,
            len: w.len,
            slots,
            total: w.total,
        }
    }
}

/// 5-minute buckets.
pub const FIVE_MINUTES: i64 = 300_000;
pub const DAY_MS: i64 = 86_400_000;
pub const HOUR_MS: i64 = 3_600_000;

impl Window {
    /// Starts loading the closed buckets' ends (see `prefetch`).
    pub(crate) fn prefetch(&self) {
        crate::prefetch::ends(&self.older);
    }

    /// A window of `len` buckets of `bucket_ms` milliseconds.
    pub fn new(bucket_ms: i64, len: u32) -> Window {
        Window {
            bucket_ms: bucket_ms.max(1),
            len: i64::from(len.max(1)),
            newest: None,
            older: SmallVec::new(),
            total: Counts::default(),
            next_expiry: 0,
            others: None,
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

    fn oldest(&self) -> Option<i64> {
        self.older.first().or(self.newest.as_ref()).map(|(i, _)| *i)
    }

    fn expire(&mut self, now_ms: i64) {
        if now_ms < self.next_expiry {
            return;
        }
        let oldest_kept = self.bucket(now_ms) - self.len + 1;
        let gone = self
            .older
            .iter()
            .take_while(|(i, _)| *i < oldest_kept)
            .count();
        for (_, c) in &self.older[..gone] {
            self.total.sub(c);
        }
        self.older.drain(..gone);
        if let Some((i, c)) = &self.newest
            && *i < oldest_kept
        {
            self.total.sub(c);
            self.newest = None;
        }
        if self.older.is_empty() && self.older.spilled() {
            // A subject that went quiet gives its buckets back.
            self.older = SmallVec::new();
        }
        self.next_expiry = match self.oldest() {
            Some(i) => (i + self.len).saturating_mul(self.bucket_ms),
            None => i64::MAX,
        };
    }

    /// Counts `c` at `now_ms`. A clock that steps back adds to the newest bucket instead, so
    /// buckets stay in order.
    pub fn add(&mut self, now_ms: i64, c: &Counts) {
        self.expire(now_ms);
        let idx = self.bucket(now_ms);
        self.total.add(c);
        match &mut self.newest {
            Some((last, counts)) if *last >= idx => counts.add(c),
            Some(_) => {
                if let Some(closed) = self.newest.replace((idx, *c)) {
                    self.older.push(closed);
                }
            }
            None => {
                self.newest = Some((idx, *c));
                if self.older.is_empty() {
                    self.next_expiry = (idx + self.len).saturating_mul(self.bucket_ms);
                }
            }
        }
    }

    /// The window's total at `now_ms`, dropping buckets that have left it.
    pub fn total(&mut self, now_ms: i64) -> Counts {
        self.expire(now_ms);
        let mut t = self.total;
        if let Some(o) = &mut self.others {
            t.add(&o.total(now_ms));
        }
        t
    }

    /// The total at `now_ms` without changing the window (for read-only views).
    pub fn peek(&self, now_ms: i64) -> Counts {
        let oldest_kept = self.bucket(now_ms) - self.len + 1;
        let mut t = self.total;
        for (i, c) in self.older.iter().chain(self.newest.iter()) {
            if *i >= oldest_kept {
                break;
            }
            t.sub(c);
        }
        if let Some(o) = &self.others {
            t.add(&o.peek(now_ms));
        }
        t
    }

    /// The window at `now_ms` in `points` equal steps, oldest first: (start of the step in
    /// Unix ms, its counts). For charts; the buckets are summed into the step they start in.
    pub fn series(&self, now_ms: i64, points: u32) -> Vec<(i64, Counts)> {
        let points = i64::from(points.max(1));
        let span = self.len * self.bucket_ms;
        let step = (span / points).max(self.bucket_ms);
        let end = (self.bucket(now_ms) + 1) * self.bucket_ms;
        let start = end - step * points;
        let mut out: Vec<(i64, Counts)> = (0..points)
            .map(|k| (start + k * step, Counts::default()))
            .collect();
        let others = self.others.iter().flat_map(|o| o.buckets());
        for (i, c) in self.buckets().chain(others) {
            let at = i * self.bucket_ms;
            if at < start || at >= end {
                continue;
            }
            let k = usize::try_from((at - start) / step).unwrap_or(0);
            if let Some((_, slot)) = out.get_mut(k) {
                slot.add(c);
            }
        }
        out
    }

    pub fn clear(&mut self) {
        self.newest = None;
        self.older = SmallVec::new();
        self.total = Counts::default();
        self.next_expiry = 0;
        self.others = None;
    }

    /// This node's own buckets, oldest first (not the other nodes').
    fn buckets(&self) -> impl Iterator<Item = &(i64, Counts)> {
        self.older.iter().chain(self.newest.iter())
    }

    /// The other nodes' counts in the buckets that started within the last `span_ms` (cluster
    /// mode; nothing on a single node). Bucket-grained: a bucket that began a little before
    /// the span is left out, one that began inside it counts whole.
    pub fn others_within(&self, now_ms: i64, span_ms: i64) -> Counts {
        let mut t = Counts::default();
        if let Some(o) = &self.others {
            for (i, c) in o.buckets() {
                if i * o.bucket_ms > now_ms - span_ms {
                    t.add(c);
                }
            }
        }
        t
    }

    /// Puts the other nodes' counts of this subject beside this node's (see `others`).
    pub fn set_others(&mut self, others: Option<Window>) {
        self.others = others.map(Box::new);
    }

    /// The bucket-by-bucket sum of windows of this one's shape (their own buckets only);
    /// `None` when they hold nothing.
    pub fn sum_of<'a>(&self, windows: impl Iterator<Item = &'a Window>) -> Option<Window> {
        let mut buckets = std::collections::BTreeMap::<i64, Counts>::new();
        for w in windows.filter(|w| w.bucket_ms == self.bucket_ms && w.len == self.len) {
            for (i, c) in w.buckets() {
                buckets.entry(*i).or_default().add(c);
            }
        }
        if buckets.is_empty() {
            return None;
        }
        Some(Window::from(StoredWindow {
            bucket_ms: self.bucket_ms,
            len: self.len,
            slots: buckets.into_iter().collect(),
            total: Counts::default(),
        }))
    }

    /// Buckets held; a quiet window holds none.
    pub fn buckets_held(&self) -> usize {
        self.older.len() + usize::from(self.newest.is_some())
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
    pub(crate) fn prefetch(&self) {
        crate::prefetch::ends(&self.times);
    }

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
    fn a_day_in_24_hourly_points_sums_every_bucket_once() {
        let mut w = Window::day();
        let day = 86_400_000;
        let t0 = 20_000 * day;
        // Three messages an hour ago, one now, one the day before (gone).
        w.add(t0 - day - 1, &one());
        for _ in 0..3 {
            w.add(t0 - 3_600_000, &one());
        }
        w.add(t0, &one());
        let series = w.series(t0, 24);
        assert_eq!(series.len(), 24);
        assert_eq!(series.iter().map(|(_, c)| c.messages).sum::<u32>(), 4);
        assert_eq!(
            series.last().map(|(_, c)| c.messages),
            Some(1),
            "now is in the last point"
        );
        assert_eq!(series[22].1.messages, 3, "an hour ago is the point before");
        assert!(series.windows(2).all(|p| p[1].0 - p[0].0 == 3_600_000));
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

    #[test]
    fn other_nodes_counts_join_every_read_but_not_what_is_saved() {
        let one = Counts {
            messages: 1,
            ..Counts::default()
        };
        let mut here = Window::hour();
        here.add(120_000, &one);
        let mut there = Window::hour();
        there.add(30_000, &one);
        there.add(125_000, &one);
        there.add(126_000, &one);
        here.set_others(here.sum_of([&there].into_iter()));
        assert_eq!(here.total(130_000).messages, 4);
        assert_eq!(here.peek(130_000).messages, 4);
        // The last minute's buckets of the others: the two sent from 125 s on.
        assert_eq!(here.others_within(130_000, 60_000).messages, 2);
        let saved: Window =
            serde_json::from_str(&serde_json::to_string(&here).expect("save")).expect("back");
        let mut saved = saved;
        assert_eq!(
            saved.total(130_000).messages,
            1,
            "only this node's own count is saved"
        );
    }
}
