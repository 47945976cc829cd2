//! The durable spool: where an accepted message lives until every recipient has a final outcome.
//!
//! A `250` after DATA is a promise, so [`Spool::put`] returns only once the envelope and body are on
//! disk and `fdatasync` has returned. The spool is an append-only log split into segment files;
//! one writer thread appends whatever records are waiting and makes them durable with a single
//! `fdatasync` (group commit), so a hundred concurrent sessions pay for one disk flush, not a
//! hundred. State changes (`update`, `done`) ride along in the same log; they are not awaited,
//! because losing one can only cause a duplicate delivery, never a lost message.
//!
//! The spool must never: acknowledge a record that is not durable, leave a half-written record in
//! front of later acknowledged ones (a failed batch is cut off again), or delete a segment while an
//! older one may still hold state its records depend on (segments are removed oldest first).

mod envelope;
mod log;
mod record;

pub use envelope::{Envelope, Notify, RcptState, Recipient, Ret, quoted_address, unquoted_address};
pub use log::{Spool, SpoolError, SpoolStats};

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// A new message id: time-ordered (Unix milliseconds in hex), then a per-process random part and
/// a counter, so ids from different runs and nodes do not collide. 20 characters, `[0-9A-F]`.
pub fn new_message_id() -> String {
    static NODE: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let node = *NODE.get_or_init(|| {
        // A random part per process: the standard library seeds each RandomState at random.
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32;
        (seed ^ std::process::id().rotate_left(16)) & 0xFFFF
    });
    let millis = relayward_clock::now_ms().max(0) as u64;
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFFFF;
    format!("{millis:011X}{node:04X}{n:05X}")
}
