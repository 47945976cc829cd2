//! The memory that delivery rounds hold for message bodies.
//!
//! A round holds its message whole while it is sent to every destination, so without a bound
//! the rounds at once (`max_concurrent_messages`, 512) times the largest message allowed (35
//! MiB) could hold gigabytes: 40 messages of 21 MB, each to 5 domains whose servers read
//! slowly, held 5.6 GiB before this bound and before bodies stopped being copied per
//! destination (BENCHMARKS.md, "Delivery memory"). A body of `FREE` bytes or less (most mail)
//! never waits. A larger one takes its size from the budget before its round starts (at most
//! the whole budget, so one message larger than the budget still goes, alone); when the budget
//! is spent the message is parked, holding no delivery slot.
//!
//! Parked messages get memory in the order they parked: a message that would fit does not pass
//! one parked before it, so a large message cannot be kept waiting for ever by smaller ones that
//! keep fitting in what is given back. Memory given back is *reserved* for the messages at the
//! head of the line that now fit, and they are woken; a reservation its message does not come
//! for within `RESERVE_FOR` is given back. A parked message looks again by itself every 30
//! seconds (the queue's retry); one not seen for `STALE_AFTER` (deleted, or waiting for its
//! destination instead) leaves the line, so that it cannot hold up the messages behind it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bodies this size or smaller never wait: the rounds at once hold at most 512 of them.
pub(super) const FREE: usize = 256 * 1024;
/// How long memory reserved for a woken message waits for its round to start.
const RESERVE_FOR: Duration = Duration::from_secs(60);
/// A parked message that has not asked again for this long leaves the line (it asks every 30
/// seconds while it waits).
const STALE_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug)]
struct Parked {
    id: String,
    need: usize,
    seen: Instant,
}

#[derive(Debug, Default)]
struct State {
    /// Held by rounds under way, and reserved for woken messages.
    used: usize,
    /// Messages waiting for memory, in the order they parked.
    parked: VecDeque<Parked>,
    /// Memory set aside for woken messages: what, and until when.
    reserved: HashMap<String, (usize, Instant)>,
}

impl State {
    /// Gives back reservations nobody came for, and drops parked messages that stopped asking.
    fn tidy(&mut self, now: Instant) {
        let mut returned = 0;
        self.reserved.retain(|_, (need, until)| {
            let keep = *until > now;
            if !keep {
                returned += *need;
            }
            keep
        });
        self.used = self.used.saturating_sub(returned);
        self.parked.retain(|p| now < p.seen + STALE_AFTER);
    }
}

#[derive(Debug)]
pub(super) struct BodyMemory {
    limit: usize,
    reserve_for: Duration,
    state: Mutex<State>,
}

impl BodyMemory {
    pub(super) fn new(limit: usize) -> BodyMemory {
        BodyMemory {
            limit,
            reserve_for: RESERVE_FOR,
            state: Mutex::default(),
        }
    }

    fn need(&self, size: usize) -> usize {
        if size <= FREE {
            0
        } else {
            size.min(self.limit)
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the memory for a body of `size` bytes (true), or parks message `id` until memory
    /// is given back (false). Memory reserved for `id` is its own; otherwise it takes only when
    /// no message parked before it waits.
    pub(super) fn take_or_park(&self, id: &str, size: usize) -> bool {
        let need = self.need(size);
        if need == 0 {
            return true;
        }
        let now = Instant::now();
        let mut s = self.state();
        s.tidy(now);
        if let Some((reserved, _)) = s.reserved.remove(id) {
            // Counted in `used` since it was reserved; a body that grew takes the difference.
            s.used = s.used - reserved + need;
            return true;
        }
        let at = s.parked.iter().position(|p| p.id == id);
        let first = at.map_or(s.parked.is_empty(), |at| at == 0);
        if first && s.used + need <= self.limit {
            s.used += need;
            if at.is_some() {
                s.parked.pop_front();
            }
            return true;
        }
        match at {
            Some(at) => s.parked[at].seen = now,
            None => s.parked.push_back(Parked {
                id: id.to_string(),
                need,
                seen: now,
            }),
        }
        false
    }

    /// Gives back the memory of a body of `size` bytes, and reserves what is free for the
    /// parked messages at the head of the line that fit, in order. Returns those messages: each
    /// is to be woken, and takes its reservation when its round starts.
    pub(super) fn give_back(&self, size: usize) -> Vec<String> {
        let need = self.need(size);
        if need == 0 {
            return Vec::new();
        }
        let mut s = self.state();
        s.used = s.used.saturating_sub(need);
        self.reserve_for_head(&mut s)
    }

    /// Forgets a message that is no longer queued: out of the line, its reservation given back
    /// (and reserved for the next in line, which are returned, as `give_back` does).
    pub(super) fn forget(&self, id: &str) -> Vec<String> {
        let mut s = self.state();
        s.parked.retain(|p| p.id != id);
        if let Some((need, _)) = s.reserved.remove(id) {
            s.used = s.used.saturating_sub(need);
        }
        self.reserve_for_head(&mut s)
    }

    fn reserve_for_head(&self, s: &mut State) -> Vec<String> {
        let now = Instant::now();
        s.tidy(now);
        let mut woken = Vec::new();
        while let Some(head) = s.parked.front() {
            if s.used + head.need > self.limit {
                break;
            }
            let Some(head) = s.parked.pop_front() else {
                break;
            };
            s.used += head.need;
            s.reserved
                .insert(head.id.clone(), (head.need, now + self.reserve_for));
            woken.push(head.id);
        }
        woken
    }

    /// Bytes held or reserved now, the budget, and messages waiting for it.
    pub(super) fn figures(&self) -> (usize, usize, usize) {
        let mut s = self.state();
        s.tidy(Instant::now());
        (s.used, self.limit, s.parked.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1024 * 1024;

    #[test]
    fn large_bodies_wait_for_the_budget_and_small_ones_never_do() {
        let m = BodyMemory::new(50 * MB);
        assert!(m.take_or_park("a", 30 * MB));
        assert!(m.take_or_park("b", 20 * MB));
        // Spent: a large body parks, a small one goes.
        assert!(!m.take_or_park("c", 10 * MB));
        assert!(!m.take_or_park("d", 40 * MB));
        assert!(m.take_or_park("small", FREE));
        assert_eq!(m.figures(), (50 * MB, 50 * MB, 2));
        // Parking twice keeps one place in the line.
        assert!(!m.take_or_park("c", 10 * MB));
        assert_eq!(m.figures().2, 2);
        // 20 MB back: c (10) is reserved and woken; d (40) does not fit yet.
        assert_eq!(m.give_back(20 * MB), vec!["c".to_string()]);
        assert_eq!(m.figures(), (40 * MB, 50 * MB, 1));
        assert!(m.take_or_park("c", 10 * MB));
        assert_eq!(m.figures(), (40 * MB, 50 * MB, 1));
        // 30 MB back: d fits now.
        assert_eq!(m.give_back(30 * MB), vec!["d".to_string()]);
        assert!(m.take_or_park("d", 40 * MB));
        assert_eq!(m.figures(), (50 * MB, 50 * MB, 0));
    }

    #[test]
    fn a_message_that_fits_does_not_pass_one_parked_before_it() {
        let m = BodyMemory::new(50 * MB);
        assert!(m.take_or_park("a", 30 * MB));
        assert!(m.take_or_park("b", 20 * MB));
        assert!(!m.take_or_park("large", 40 * MB));
        // 30 MB free: not enough for the large one, enough for a newcomer, which waits anyway.
        assert_eq!(m.give_back(30 * MB), Vec::<String>::new());
        assert!(!m.take_or_park("newcomer", 10 * MB));
        // Nor can the newcomer take it by asking again.
        assert!(!m.take_or_park("newcomer", 10 * MB));
        // The rest back: both fit, and are reserved in their order.
        assert_eq!(
            m.give_back(20 * MB),
            vec!["large".to_string(), "newcomer".to_string()]
        );
        // A third comer finds the memory reserved.
        assert!(!m.take_or_park("third", MB + FREE));
        // Forgetting one woken message passes its memory on to the next in line.
        assert_eq!(m.forget("newcomer"), vec!["third".to_string()]);
        assert!(m.take_or_park("third", MB + FREE));
        assert!(m.take_or_park("large", 40 * MB));
        assert_eq!(m.figures(), (40 * MB + MB + FREE, 50 * MB, 0));
    }

    #[test]
    fn a_body_larger_than_the_budget_goes_alone() {
        let m = BodyMemory::new(10 * MB);
        assert!(m.take_or_park("huge", 30 * MB));
        assert!(!m.take_or_park("next", MB));
        assert_eq!(m.give_back(30 * MB), vec!["next".to_string()]);
        // Gone from the queue before its round: its reservation comes back.
        assert!(m.forget("next").is_empty());
        assert_eq!(m.figures(), (0, 10 * MB, 0));
    }

    #[test]
    fn a_reservation_nobody_comes_for_is_given_back() {
        let mut m = BodyMemory::new(10 * MB);
        m.reserve_for = Duration::ZERO;
        assert!(m.take_or_park("a", 10 * MB));
        assert!(!m.take_or_park("b", 10 * MB));
        assert_eq!(m.give_back(10 * MB), vec!["b".to_string()]);
        // b's round never starts (its destination got busy, say): the memory is free again.
        assert_eq!(m.figures(), (0, 10 * MB, 0));
        assert!(m.take_or_park("c", 10 * MB));
        // b asking later waits like anyone else.
        assert!(!m.take_or_park("b", 10 * MB));
    }

    #[test]
    fn a_parked_message_that_stops_asking_leaves_the_line() {
        let m = BodyMemory::new(10 * MB);
        assert!(m.take_or_park("a", 8 * MB));
        assert!(!m.take_or_park("gone", 10 * MB));
        assert!(!m.take_or_park("behind", 2 * MB));
        // Deleted by an operator, say: it never asks again.
        let seen = m.state().parked[0].seen;
        m.state().parked[0].seen = seen
            .checked_sub(STALE_AFTER)
            .expect("the clock has run that long");
        assert!(m.take_or_park("behind", 2 * MB));
        assert_eq!(m.figures(), (10 * MB, 10 * MB, 0));
    }
}
