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

pub use envelope::{Envelope, Notify, Recipient, RcptState, Ret};
pub use log::{Spool, SpoolError, SpoolStats};
