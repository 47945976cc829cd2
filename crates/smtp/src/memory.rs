//! The memory that messages being received hold, shared by every session of the relay.
//!
//! A message is gathered in memory until its end of data (up to `max_message_size`, 35 MiB by
//! default), so without a common bound the sessions one client may open (500 by default) could
//! hold gigabytes between them: 40 unfinished messages of 30 MB held 1.4 GiB before this bound
//! (BENCHMARKS.md, "Connections held without mail"). Each message's first `FREE` bytes (most
//! mail) are its own; past them it takes its memory from the shared budget in steps of `STEP`.
//! A message that finds the budget spent is read to its end and dropped, and the client is told
//! to try again later (452), as for a full spool: nothing already accepted is lost, and the
//! memory held is at most the sessions times `FREE`, plus the budget, plus one read each. At its
//! end a message whose buffer has no room left for the relay's `Received:` field counts twice:
//! making room may move it, and for a moment both are held.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes of each message that do not count against the budget.
pub const FREE: usize = 256 * 1024;
/// The most the relay adds in front of a message at its end (its `Received:` field).
pub const END_ROOM: usize = 1024;
/// Past `FREE`, memory is taken from the budget this much at a time.
const STEP: usize = 1024 * 1024;

/// The budget: bytes that messages being received may hold past their first `FREE`.
#[derive(Debug)]
pub struct DataMemory {
    limit: usize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl DataMemory {
    pub fn new(limit: usize) -> Arc<DataMemory> {
        Arc::new(DataMemory {
            limit,
            used: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Bytes taken from the budget now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget's size (`[smtp] max_data_memory`).
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Messages dropped (answered 452) because the budget was spent, since the relay started.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Counts a message dropped for want of memory.
    pub(crate) fn count_refusal(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    fn take(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }
}

/// One message's part of the budget, given back when it is dropped.
pub struct Share {
    memory: Arc<DataMemory>,
    held: usize,
}

impl Share {
    pub fn new(memory: &Arc<DataMemory>) -> Share {
        Share {
            memory: memory.clone(),
            held: 0,
        }
    }

    /// Whether `bytes` held by this message are covered: its own `FREE`, what it took before,
    /// or more taken now; false when the budget cannot give it.
    pub fn cover(&mut self, bytes: usize) -> bool {
        let covered = FREE + self.held;
        if bytes <= covered {
            return true;
        }
        let want = (bytes - covered).div_ceil(STEP) * STEP;
        if !self.memory.take(want) {
            return false;
        }
        self.held += want;
        true
    }

    /// Whether the message's end is covered: the relay puts its `Received:` field (at most
    /// `END_ROOM` bytes) in front of the body in the body's own buffer, and spools it from
    /// there. With the room in the buffer that is the buffer; without, a larger buffer is
    /// taken and the body moved into it, both held for a moment.
    pub fn cover_end_of_data(&mut self, body: &Vec<u8>) -> bool {
        if body.capacity() - body.len() >= END_ROOM {
            self.cover(body.capacity())
        } else {
            self.cover(body.capacity() + body.len() + END_ROOM)
        }
    }

    /// Gives back what this message took: it has dropped what it held.
    pub fn release(&mut self) {
        self.memory
            .used
            .fetch_sub(std::mem::take(&mut self.held), Ordering::AcqRel);
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_share_the_budget_past_their_own_part_and_give_it_back() {
        let memory = DataMemory::new(3 * STEP);
        let mut a = Share::new(&memory);
        // Its own part costs the budget nothing.
        assert!(a.cover(FREE));
        assert_eq!(memory.used(), 0);
        // Past it, whole steps.
        assert!(a.cover(FREE + 1));
        assert_eq!(memory.used(), STEP);
        assert!(a.cover(FREE + 2 * STEP));
        assert_eq!(memory.used(), 2 * STEP);
        let mut b = Share::new(&memory);
        assert!(b.cover(FREE + STEP));
        // The budget is spent: a third message gets nothing past its own part.
        let mut c = Share::new(&memory);
        assert!(c.cover(FREE));
        assert!(!c.cover(FREE + 1));
        assert_eq!(memory.used(), 3 * STEP);
        // A message that ends gives its part back, and the next can have it.
        drop(a);
        assert_eq!(memory.used(), STEP);
        assert!(c.cover(FREE + 2 * STEP));
        drop(b);
        drop(c);
        assert_eq!(memory.used(), 0);
    }

    #[test]
    fn a_message_counts_twice_at_its_end_only_without_room_and_gives_back_what_it_drops() {
        let memory = DataMemory::new(STEP);
        // 64 KiB in a 128 KiB buffer, copied once at its end: still within its own part.
        let mut small = Vec::with_capacity(128 * 1024);
        small.resize(64 * 1024, b'x');
        let mut a = Share::new(&memory);
        assert!(a.cover_end_of_data(&small));
        assert_eq!(memory.used(), 0);
        // 900 KiB in a 1 MiB buffer: the field fits in front, the message counts once.
        let mut roomy = Vec::with_capacity(1024 * 1024);
        roomy.resize(900 * 1024, b'x');
        let mut r = Share::new(&memory);
        assert!(r.cover(roomy.capacity()));
        assert!(r.cover_end_of_data(&roomy));
        assert_eq!(memory.used(), STEP);
        drop(r);
        // 700 KiB in a buffer just as large fits in the budget while it is read, but not
        // twice at its end.
        let mut large = Vec::with_capacity(700 * 1024);
        large.resize(700 * 1024, b'x');
        let mut b = Share::new(&memory);
        assert!(b.cover(large.capacity()));
        assert_eq!(memory.used(), STEP);
        assert!(!b.cover_end_of_data(&large));
        // Dropping its body, it gives its part back at once, though it lives on.
        b.release();
        assert_eq!(memory.used(), 0);
        assert!(b.cover(FREE));
        drop(b);
        assert_eq!(memory.used(), 0);
    }
}
