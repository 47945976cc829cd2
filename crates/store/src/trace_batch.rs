//! What the engines share when they write a batch of trace events.

use crate::model::TraceEvent;

/// A trace batch's recipient rows: one per (message, address), with the last status the batch
/// gives it (as one upsert after another would leave it; a statement may touch a row once).
#[derive(Default)]
pub(crate) struct Recipients<'a> {
    pub(crate) rows: Vec<(&'a str, String, &'static str)>,
    at: std::collections::HashMap<(&'a str, String), usize>,
}

impl<'a> Recipients<'a> {
    /// The batch's recipient rows: `Pending` for the recipients a message is received for, then
    /// each event's status for its recipient, in the batch's order.
    pub(crate) fn of(events: &'a [TraceEvent]) -> Recipients<'a> {
        let mut rows = Recipients::default();
        for e in events {
            if let Some(s) = &e.summary {
                for r in &s.recipients {
                    rows.set(&e.message_id, r.to_ascii_lowercase(), "Pending");
                }
            }
            if let (Some(r), Some(status)) = (&e.recipient, e.kind.status()) {
                rows.set(&e.message_id, r.to_ascii_lowercase(), status);
            }
        }
        rows
    }

    fn set(&mut self, message_id: &'a str, address: String, status: &'static str) {
        use std::collections::hash_map::Entry;
        match self.at.entry((message_id, address)) {
            Entry::Occupied(o) => self.rows[*o.get()].2 = status,
            Entry::Vacant(v) => {
                let address = v.key().1.clone();
                v.insert(self.rows.len());
                self.rows.push((message_id, address, status));
            }
        }
    }
}
