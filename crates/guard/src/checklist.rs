//! The tenant remediation checklist of SPEC section 8, computed from live facts the caller
//! gathers (domains, admins, connectors, flagged users, attestation, recent traffic). Each item
//! carries its evidence, so an admin sees what is still open and why, and an operator sees what
//! the request rests on.

use serde::{Deserialize, Serialize};

use crate::note::Note;
use crate::window::DAY_MS;

#[derive(Debug, Clone, Default)]
pub struct ConnectorFacts {
    pub name: String,
    pub created_at: i64,
    pub changed_at: i64,
    pub reviewed: bool,
    /// Why it looks unusual (new, very wide range, made without MFA, carried the traffic...).
    pub unusual: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct ChecklistInput {
    /// Sender domains seen in the restricted traffic, with whether each is now an accepted,
    /// verified domain of the tenant, and whether an admin dismissed it as not theirs.
    pub domains: Vec<(String, bool, bool)>,
    /// Admin accounts and whether each has MFA on.
    pub admins: Vec<(String, bool)>,
    pub connectors: Vec<ConnectorFacts>,
    /// Users flagged as possibly compromised, and whether each was reviewed.
    pub flagged_users: Vec<(String, bool)>,
    /// Who attested that the on-premises servers are locked down, and when.
    pub attested: Option<(String, i64)>,
    /// The tenant's traffic in the last hour: messages, suspicious messages, attempts refused.
    pub recent_messages: u64,
    pub recent_suspicious: u64,
    pub recent_refused: u64,
    /// The suspicious share above which traffic does not look legitimate.
    pub max_suspicious_ratio: f64,
    pub now: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ChecklistItem {
    pub number: u8,
    pub title: String,
    pub done: bool,
    /// The evidence in English (`notes`, written out).
    pub evidence: Vec<String>,
    /// The same evidence as data, for readers in other languages.
    #[serde(skip)]
    #[cfg_attr(feature = "schema", schemars(skip))]
    pub notes: Vec<Note>,
}

impl ChecklistItem {
    /// Replaces the evidence (English and data alike).
    pub fn set_evidence(&mut self, notes: Vec<Note>) {
        self.evidence = notes.iter().map(Note::english).collect();
        self.notes = notes;
    }
}

/// Connectors created or changed this recently must have been reviewed.
pub const REVIEW_WINDOW_MS: i64 = 30 * DAY_MS;

pub fn checklist(i: &ChecklistInput) -> Vec<ChecklistItem> {
    let mut items = Vec::new();
    let mut item = |number: u8, title: &str, open: Vec<Note>, fine: Note| {
        let done = open.is_empty();
        let mut it = ChecklistItem {
            number,
            title: title.to_string(),
            done,
            evidence: Vec::new(),
            notes: Vec::new(),
        };
        it.set_evidence(if done { vec![fine] } else { open });
        items.push(it);
    };

    let open: Vec<Note> = i
        .domains
        .iter()
        .filter(|(_, accepted, dismissed)| !accepted && !dismissed)
        .map(|(d, _, _)| Note::new("domain_open", &[("domain", d.clone())]))
        .collect();
    item(
        1,
        "Every domain seen in the restricted traffic is an accepted, verified domain or dismissed",
        open,
        Note::new("domains_done", &[("count", i.domains.len().to_string())]),
    );

    let open: Vec<Note> = i
        .admins
        .iter()
        .filter(|(_, mfa)| !mfa)
        .map(|(a, _)| Note::new("admin_open", &[("admin", a.clone())]))
        .collect();
    item(
        2,
        "Every admin of the tenant has MFA on",
        open,
        if i.admins.is_empty() {
            Note::new("admins_none", &[])
        } else {
            Note::new("admins_done", &[("count", i.admins.len().to_string())])
        },
    );

    let open: Vec<Note> = i
        .connectors
        .iter()
        .filter(|c| i.now - c.created_at.max(c.changed_at) < REVIEW_WINDOW_MS && !c.reviewed)
        .map(|c| {
            let why = if c.unusual.is_empty() {
                String::new()
            } else {
                format!(" (unusual: {})", c.unusual.join(", "))
            };
            Note::new(
                "connector_open",
                &[("connector", c.name.clone()), ("why", why)],
            )
        })
        .collect();
    item(
        3,
        "Every connector created or changed in the last 30 days was reviewed by an admin with MFA",
        open,
        Note::new(
            "connectors_done",
            &[("count", i.connectors.len().to_string())],
        ),
    );

    let open: Vec<Note> = i
        .flagged_users
        .iter()
        .filter(|(_, reviewed)| !reviewed)
        .map(|(u, _)| Note::new("user_open", &[("user", u.clone())]))
        .collect();
    item(
        4,
        "Every user flagged as possibly compromised was reviewed (credentials reset, released)",
        open,
        Note::new(
            "users_done",
            &[("count", i.flagged_users.len().to_string())],
        ),
    );

    let (open, fine) = match &i.attested {
        Some((who, at)) => (
            vec![],
            Note::new(
                "attested",
                &[("who", who.clone()), ("at", crate::note::utc(*at))],
            ),
        ),
        None => (
            vec![Note::new("attest_open", &[])],
            Note::new("attest_open", &[]),
        ),
    };
    item(
        5,
        "An admin attests that the on-premises servers are locked down",
        open,
        fine,
    );

    let share = if i.recent_messages == 0 {
        0.0
    } else {
        i.recent_suspicious as f64 / i.recent_messages as f64
    };
    let mut open = Vec::new();
    if share >= i.max_suspicious_ratio && i.recent_suspicious > 0 {
        open.push(Note::new(
            "traffic_suspicious",
            &[
                ("suspicious", i.recent_suspicious.to_string()),
                ("messages", i.recent_messages.to_string()),
                ("percent", format!("{:.0}", share * 100.0)),
            ],
        ));
    }
    if i.recent_refused > 0 {
        open.push(Note::new(
            "traffic_refused",
            &[("refused", i.recent_refused.to_string())],
        ));
    }
    item(
        6,
        "The tenant's traffic since the restriction looks legitimate",
        open,
        Note::new(
            "traffic_done",
            &[
                ("messages", i.recent_messages.to_string()),
                ("suspicious", i.recent_suspicious.to_string()),
            ],
        ),
    );
    items
}

/// The open items, in words, for a refused release request.
pub fn open_items(items: &[ChecklistItem]) -> Vec<String> {
    items
        .iter()
        .filter(|i| !i.done)
        .map(|i| format!("{}. {}: {}", i.number, i.title, i.evidence.join("; ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_is_open_until_its_fact_holds() {
        let mut i = ChecklistInput {
            domains: vec![("fabrikam.example".into(), false, false)],
            admins: vec![("admin@contoso.example".into(), false)],
            connectors: vec![ConnectorFacts {
                name: "rogue".into(),
                created_at: 0,
                changed_at: 0,
                reviewed: false,
                unusual: vec!["new".into()],
            }],
            flagged_users: vec![("bob@contoso.example".into(), false)],
            attested: None,
            recent_messages: 10,
            recent_suspicious: 9,
            recent_refused: 3,
            max_suspicious_ratio: 0.1,
            now: DAY_MS,
        };
        assert_eq!(open_items(&checklist(&i)).len(), 6);
        i.domains[0].2 = true;
        i.admins[0].1 = true;
        i.connectors[0].reviewed = true;
        i.flagged_users[0].1 = true;
        i.attested = Some(("admin@contoso.example".into(), 5));
        i.recent_suspicious = 0;
        i.recent_refused = 0;
        let items = checklist(&i);
        assert!(items.iter().all(|i| i.done), "{items:#?}");
        assert_eq!(items.len(), 6);
    }
}
