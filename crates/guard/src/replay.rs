//! What-if: recorded traffic replayed through a fresh engine with other limits, to show an
//! operator, before saving new limits for a tenant, on which days and at which message they
//! would have restricted it. The engine is the relay's own, so the answer is the relay's.
//!
//! A replay starts with empty counters and no restrictions, and releases nothing: after a
//! restriction starts, the replay counts the messages it would have refused.

use std::collections::HashSet;

use crate::engine::{Event, Guard, MessageFacts, Origin};
use crate::limits::Limits;
use crate::restriction::{Key, Reason};

/// One recorded message, as the engine needs it.
#[derive(Debug, Clone)]
pub struct Replayed {
    pub at: i64,
    pub id: String,
    pub connector: Option<String>,
    pub user: Option<String>,
    pub client_ip: String,
    pub sender_domain: String,
    /// The sender domain is an accepted, verified domain of the tenant.
    pub registered: bool,
    pub recipients: u32,
    pub external: u32,
    pub suspicious: bool,
}

/// A restriction the limits would have started.
#[derive(Debug, Clone, PartialEq)]
pub struct Trigger {
    pub at: i64,
    /// Which message of the replay started it (1 = the first).
    pub message: usize,
    /// Which message of its UTC day (1 = the day's first).
    pub day_message: usize,
    pub message_id: String,
    pub key: Key,
    pub reason: Reason,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Day {
    /// Unix ms of the day's midnight (UTC).
    pub day_start: i64,
    pub messages: u64,
    /// Messages the limits would have refused (a restriction in force, or the message that
    /// started one).
    pub refused: u64,
    pub triggers: Vec<Trigger>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub messages: u64,
    pub refused: u64,
    /// Days with mail, oldest first.
    pub days: Vec<Day>,
}

const DAY: i64 = 86_400_000;

/// Replays `messages` (oldest first) of `tenant` under `limits`.
pub fn replay(limits: &Limits, tenant: &str, messages: &[Replayed]) -> Outcome {
    let mut g: Guard = Guard::new(limits.clone());
    let mut out = Outcome::default();
    let mut started: HashSet<Key> = HashSet::new();
    for (i, m) in messages.iter().enumerate() {
        let day_start = m.at.div_euclid(DAY) * DAY;
        if out.days.last().is_none_or(|d| d.day_start != day_start) {
            out.days.push(Day {
                day_start,
                ..Day::default()
            });
        }
        g.tick(m.at);
        let o = Origin {
            tenant,
            connector: m.connector.as_deref(),
            connector_created_at: None,
            user: m.user.as_deref(),
            client_ip: &m.client_ip,
            sender_domain: &m.sender_domain,
            registered: m.registered,
            subscription_end: None,
        };
        let facts = MessageFacts {
            id: &m.id,
            recipients: m.recipients,
            external: m.external,
            suspicious: m.suspicious,
            recipient_hashes: &[],
        };
        let refused = g
            .check_mail(&o, m.at)
            .and_then(|()| g.record(&o, &facts, m.at))
            .is_err();
        out.messages += 1;
        let Some(day) = out.days.last_mut() else {
            continue;
        };
        day.messages += 1;
        if refused {
            out.refused += 1;
            day.refused += 1;
        }
        for e in g.take_events() {
            if let Event::Restriction(r) = e
                && started.insert(r.key.clone())
            {
                day.triggers.push(Trigger {
                    at: m.at,
                    message: i + 1,
                    day_message: day.messages as usize,
                    message_id: m.id.clone(),
                    key: r.key.clone(),
                    reason: r.reason,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restriction::Kind;

    fn msg(at: i64, n: usize, registered: bool, suspicious: bool) -> Replayed {
        Replayed {
            at,
            id: format!("m{n}"),
            connector: Some("on-prem".into()),
            user: None,
            client_ip: "192.0.2.1".into(),
            sender_domain: if registered {
                "contoso.example"
            } else {
                "fabrikam.example"
            }
            .into(),
            registered,
            recipients: 1,
            external: 1,
            suspicious,
        }
    }

    #[test]
    fn a_lower_allowance_restricts_on_the_day_and_at_the_message_it_is_passed() {
        let day0 = 20_000 * DAY;
        let mut msgs = Vec::new();
        // Day 1: 5 unregistered in the evening; day 2: 20 registered, then 5 unregistered
        // in the morning (within 24 hours of the first day's).
        for n in 0..5 {
            msgs.push(msg(
                day0 + 20 * 3_600_000 + n as i64 * 60_000,
                n,
                false,
                false,
            ));
        }
        for n in 0..20 {
            msgs.push(msg(day0 + DAY + n as i64 * 60_000, 100 + n, true, false));
        }
        for n in 0..5 {
            msgs.push(msg(
                day0 + DAY + 7_200_000 + n as i64 * 60_000,
                200 + n,
                false,
                false,
            ));
        }
        let defaults = Limits::default();
        let today = replay(&defaults, "contoso", &msgs);
        assert_eq!(today.refused, 0, "the default allowance holds all of it");
        assert!(today.days.iter().all(|d| d.triggers.is_empty()));

        let strict = Limits {
            unregistered_allowance_per_day: 8,
            ..Limits::default()
        };
        let out = replay(&strict, "contoso", &msgs);
        assert_eq!(out.messages, 30);
        assert_eq!(out.days.len(), 2);
        assert!(out.days[0].triggers.is_empty(), "5 in the first day's 24 h");
        let t = &out.days[1].triggers;
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!(t[0].key.kind, Kind::TenantUnregistered);
        assert_eq!(t[0].reason, Reason::UnregisteredAllowance);
        // The window is 24 h rolling: the first day's 5 plus 3 of the second fill the 8;
        // the fourth unregistered message of day 2 (its 24th message) is refused.
        assert_eq!(t[0].day_message, 24, "{t:?}");
        assert_eq!(t[0].message, 29);
        assert_eq!(out.refused, 2, "the 9th and 10th unregistered messages");
    }
}
