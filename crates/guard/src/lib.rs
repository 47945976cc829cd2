//! Relayward's outbound protection engine (SPEC sections 3, 4 and 8): rolling counters per
//! tenant, connector and user; the triggers that restrict them; one restriction state machine
//! with its release workflow; the remediation checklist.
//!
//! Pure logic: no sockets, no SQL, no clock. Time is an argument, the counter store a trait. The
//! relay asks it at MAIL, RCPT and end of DATA, the queue asks it before delivering, and the
//! caller stores the events it hands out.

pub mod checklist;
pub mod counters;
pub mod engine;
pub mod limits;
pub mod note;
mod prefetch;
pub mod replay;
pub mod restriction;
pub mod signals;
pub mod window;

pub use counters::{CounterStore, Hint, MemoryCounters, Sample, SubjectCounters, TenantCounters};
pub use engine::{
    Alert, AlertKind, CounterView, Event, Guard, MessageFacts, Origin, Severity, next_utc_midnight,
    view,
};
pub use limits::{Limits, OutboundAction};
pub use restriction::{
    Cause, CounterValue, Key, Kind, Reason, Refusal, ReleaseError, Restriction, Role, State,
    Transition,
};
pub use window::{Counts, Window};
