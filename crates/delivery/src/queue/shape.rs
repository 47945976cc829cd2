//! The queue's shape, as Postfix's `qshape` draws it: the queued messages a selection picks,
//! waiting or in a delivery round, counted by recipient domain (or by sender domain) and by how
//! long they have waited, so an operator sees at a glance which destinations hold the queue and
//! since when.

use std::collections::HashMap;

use super::actions::Selection;
use super::{Queue, now_ms};

/// The age columns' bounds in minutes, as `qshape` has them: a message counts in the first
/// column whose bound it has not reached, and in the last (past 1,280) when it has reached all.
pub const SHAPE_MINUTES: [i64; 9] = [5, 10, 20, 40, 80, 160, 320, 640, 1280];

/// The row of the messages waiting for one domain.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShapeRow {
    /// A recipient domain (a sender domain when shaped by sender; `<>` for the relay's own
    /// reports); `TOTAL` for the row of every message.
    pub domain: String,
    pub messages: usize,
    /// Of them, held by an operator.
    pub held: usize,
    /// Messages by how long they have waited since they arrived: one count for each bound of
    /// `minutes` (under it, and not under the one before), then one for those past the last.
    pub by_age: Vec<usize>,
}

impl ShapeRow {
    fn new(domain: String) -> ShapeRow {
        ShapeRow {
            domain,
            by_age: vec![0; SHAPE_MINUTES.len() + 1],
            ..ShapeRow::default()
        }
    }

    fn count(&mut self, held: bool, column: usize) {
        self.messages += 1;
        self.held += usize::from(held);
        if let Some(n) = self.by_age.get_mut(column) {
            *n += 1;
        }
    }
}

/// What the queue's shape shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Shape {
    /// The columns' bounds in minutes (`SHAPE_MINUTES`).
    pub minutes: Vec<i64>,
    /// Every message the selection picks, each once.
    pub total: ShapeRow,
    /// The domains with the most messages first, at most the limit asked for. A message to
    /// several domains counts in each of their rows.
    pub rows: Vec<ShapeRow>,
    /// Domains left out by the limit.
    pub more: usize,
}

/// Which domain a row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeBy {
    /// Each pending recipient's domain, a message once per domain.
    Recipient,
    /// The sender's domain.
    Sender,
}

/// The column of a message that arrived `waited` seconds ago.
fn column(waited: i64) -> usize {
    SHAPE_MINUTES
        .iter()
        .position(|&m| waited < m * 60)
        .unwrap_or(SHAPE_MINUTES.len())
}

/// The sender's domain as a row names it.
fn sender_domain(mail_from: &str) -> String {
    match mail_from.rsplit_once('@') {
        Some((_, domain)) => relayward_names::domain_key(domain.trim_end_matches('>')).into_owned(),
        None if mail_from.is_empty() => "<>".to_string(),
        None => mail_from.to_lowercase(),
    }
}

impl Queue {
    /// How many queued messages a selection picks: waiting (held ones too) or in a delivery
    /// round, each once.
    pub fn queued_count(&self, selection: &Selection) -> usize {
        let picker = selection.picker();
        self.read_queued(|q| {
            q.waiting.values().filter(|e| picker.envelope(e)).count()
                + q.in_rounds().filter(|m| picker.in_round(m)).count()
        })
    }

    /// The shape of the queued messages a selection picks (held ones, and those in a delivery
    /// round, too: a destination that hangs keeps its mail in rounds), by recipient or sender
    /// domain, the `limit` busiest domains.
    pub fn shape(&self, selection: &Selection, by: ShapeBy, limit: usize) -> Shape {
        let picker = selection.picker();
        let now = now_ms() / 1000;
        let mut total = ShapeRow::new("TOTAL".to_string());
        let mut rows: HashMap<String, ShapeRow> = HashMap::new();
        let mut tally = |received_at: i64, held: bool, mut domains: Vec<String>| {
            let at = column(now - received_at);
            total.count(held, at);
            domains.sort_unstable();
            domains.dedup();
            for d in domains {
                rows.entry(d.clone())
                    .or_insert_with(|| ShapeRow::new(d))
                    .count(held, at);
            }
        };
        self.read_queued(|q| {
            for e in q.waiting.values().filter(|e| picker.envelope(e)) {
                let domains = match by {
                    ShapeBy::Recipient => e.pending().map(|r| r.domain()).collect(),
                    ShapeBy::Sender => vec![sender_domain(&e.mail_from)],
                };
                tally(e.received_at, e.held, domains);
            }
            for m in q.in_rounds().filter(|m| picker.in_round(m)) {
                let domains = match by {
                    ShapeBy::Recipient => m.domains.clone(),
                    ShapeBy::Sender => vec![sender_domain(&m.mail_from)],
                };
                tally(m.received_at, false, domains);
            }
        });
        let mut rows: Vec<ShapeRow> = rows.into_values().collect();
        rows.sort_by(|a, b| {
            b.messages
                .cmp(&a.messages)
                .then_with(|| a.domain.cmp(&b.domain))
        });
        let more = rows.len().saturating_sub(limit);
        rows.truncate(limit);
        Shape {
            minutes: SHAPE_MINUTES.to_vec(),
            total,
            rows,
            more,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_counts_in_the_first_column_whose_bound_it_has_not_reached() {
        assert_eq!(column(0), 0);
        assert_eq!(column(5 * 60 - 1), 0);
        assert_eq!(
            column(5 * 60),
            1,
            "five minutes on the dot is past the first bound"
        );
        assert_eq!(column(39 * 60), 3);
        assert_eq!(column(1280 * 60 - 1), 8);
        assert_eq!(column(1280 * 60), 9, "past the last bound");
        assert_eq!(column(-30), 0, "a clock stepped back counts as new");
    }
}
