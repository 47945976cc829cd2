//! A sentence of evidence as data: a key and its values. The English text is made here, from
//! one table, for the API, the command line and the logs; the console puts the same key and
//! values into the reader's language from its words files.

/// One piece of evidence: `key` names the sentence, `args` fill its `{placeholders}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub key: &'static str,
    pub args: Vec<(&'static str, String)>,
}

/// Every sentence in English, by key.
pub const ENGLISH: &[(&str, &str)] = &[
    (
        "domain_open",
        "{domain} is not an accepted, verified domain (add and verify it, or dismiss it as not yours)",
    ),
    (
        "domains_done",
        "{count} domain(s) seen, all accepted or dismissed",
    ),
    ("admin_open", "admin {admin} has no second factor"),
    ("admins_none", "the tenant has no admin accounts"),
    ("admins_done", "{count} admin(s), all with MFA"),
    (
        "connector_open",
        "connector {connector} was created or changed in the last 30 days and is not reviewed{why}",
    ),
    (
        "connectors_done",
        "{count} connector(s), none waiting for review",
    ),
    (
        "user_open",
        "user {user} is flagged as possibly compromised and not reviewed",
    ),
    ("users_done", "{count} flagged user(s), all reviewed"),
    ("attested", "attested by {who} at {at}"),
    (
        "attest_open",
        "no admin has attested that the on-premises servers are locked down",
    ),
    (
        "traffic_suspicious",
        "{suspicious} of {messages} messages in the last hour were suspicious ({percent}%)",
    ),
    (
        "traffic_refused",
        "{refused} attempts were refused under the restriction in the last hour",
    ),
    (
        "traffic_done",
        "last hour: {messages} messages, {suspicious} suspicious, no refused attempts",
    ),
    (
        "traffic_wait",
        "traffic is judged from the attestation (item 5) on; none yet",
    ),
    ("flag_new", "created in the last 7 days"),
    ("flag_wide", "accepts a very wide range ({range})"),
    ("flag_carried", "carried the restricted traffic"),
    (
        "flag_ip_only",
        "may relay for unregistered sender domains by IP address alone",
    ),
    ("flag_restricted", "restricted ({state}, restriction {id})"),
    (
        "flag_compromised",
        "possibly compromised (behaviour signals in the last 24 h)",
    ),
];

/// A moment (Unix ms) as `YYYY-MM-DD HH:MM UTC`, for the sentences.
pub fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = relayward_clock::civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        t / 3600,
        (t % 3600) / 60
    )
}

impl Note {
    pub fn new(key: &'static str, args: &[(&'static str, String)]) -> Note {
        Note {
            key,
            args: args.to_vec(),
        }
    }

    /// `template` with this note's values in its placeholders.
    pub fn fill(&self, template: &str) -> String {
        let mut s = template.to_string();
        for (k, v) in &self.args {
            s = s.replace(&format!("{{{k}}}"), v);
        }
        s
    }

    pub fn english(&self) -> String {
        let template = ENGLISH
            .iter()
            .find(|(k, _)| *k == self.key)
            .map_or(self.key, |(_, t)| *t);
        self.fill(template)
    }
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.english())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_written_once_and_fills_its_placeholders() {
        let mut keys: Vec<&str> = ENGLISH.iter().map(|(k, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "a key twice");
        let note = Note::new("flag_wide", &[("range", "10.0.0.0/8".into())]);
        assert_eq!(note.english(), "accepts a very wide range (10.0.0.0/8)");
    }
}
