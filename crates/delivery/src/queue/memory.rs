//! The memory that delivery rounds hold for message bodies.
//!
//! A round holds its message whole while it is sent to every destination, so without a bound
//! the rounds at once (`max_concurrent_messages`, 512) times the largest message allowed (35
//! MiB) could hold gigabytes: 40 messages of 21 MB, each to 5 domains whose servers read
//! slowly, held 5.6 GiB before this bound and before bodies stopped being copied per
//! destination (BENCHMARKS.md, "Delivery memory"). A body of `FREE` bytes or less (most mail)
//! never waits. A larger one takes its size from the budget before its round starts (at most
//! the whole budget, so one message larger than the budget still goes, alone); when the budget
//! is spent the message is parked, holding no delivery slot, and memory given back wakes the
//! parked messages that fit, oldest first. A parked message also looks again by itself after a
//! while, as one parked for a busy destination does.

use std::collections::VecDeque;
use std::sync::Mutex;

/// Bodies this size or smaller never wait: the rounds at once hold at most 512 of them.
pub(super) const FREE: usize = 256 * 1024;

#[derive(Debug, Default)]
struct State {
    used: usize,
    /// Messages waiting for memory, oldest first, with what each needs. An entry leaves when
    /// its message gets memory, or is found gone from the queue when memory is given back.
    parked: VecDeque<(String, usize)>,
}

#[derive(Debug)]
pub(super) struct BodyMemory {
    limit: usize,
    state: Mutex<State>,
}

impl BodyMemory {
    pub(super) fn new(limit: usize) -> BodyMemory {
        BodyMemory {
            limit,
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
    /// is given back (false).
    pub(super) fn take_or_park(&self, id: &str, size: usize) -> bool {
        let need = self.need(size);
        if need == 0 {
            return true;
        }
        let mut s = self.state();
        let at = s.parked.iter().position(|(p, _)| p == id);
        if s.used + need <= self.limit {
            s.used += need;
            if let Some(at) = at {
                s.parked.remove(at);
            }
            return true;
        }
        if at.is_none() {
            s.parked.push_back((id.to_string(), need));
        }
        false
    }

    /// Gives back the memory of a body of `size` bytes. Returns the parked messages that now
    /// fit, oldest first; each is woken and takes its memory when its round starts.
    pub(super) fn give_back(&self, size: usize) -> Vec<String> {
        let need = self.need(size);
        if need == 0 {
            return Vec::new();
        }
        let mut s = self.state();
        s.used = s.used.saturating_sub(need);
        let mut free = self.limit - s.used.min(self.limit);
        let mut fit = Vec::new();
        for (id, n) in &s.parked {
            if *n <= free {
                free -= n;
                fit.push(id.clone());
            }
        }
        fit
    }

    /// Forgets a parked message that is no longer queued.
    pub(super) fn forget(&self, id: &str) {
        self.state().parked.retain(|(p, _)| p != id);
    }

    /// Bytes held now, the budget, and messages waiting for it.
    pub(super) fn figures(&self) -> (usize, usize, usize) {
        let s = self.state();
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
        // 20 MB back: c (10) fits, d (40) does not yet.
        assert_eq!(m.give_back(20 * MB), vec!["c".to_string()]);
        assert!(m.take_or_park("c", 10 * MB));
        assert_eq!(m.figures(), (40 * MB, 50 * MB, 1));
        // 30 MB back: d fits now.
        assert_eq!(m.give_back(30 * MB), vec!["d".to_string()]);
        assert!(m.take_or_park("d", 40 * MB));
        assert_eq!(m.figures(), (50 * MB, 50 * MB, 0));
    }

    #[test]
    fn a_body_larger_than_the_budget_goes_alone() {
        let m = BodyMemory::new(10 * MB);
        assert!(m.take_or_park("huge", 30 * MB));
        assert!(!m.take_or_park("next", MB));
        assert_eq!(m.give_back(30 * MB), vec!["next".to_string()]);
        m.forget("next");
        assert_eq!(m.figures(), (0, 10 * MB, 0));
    }
}
