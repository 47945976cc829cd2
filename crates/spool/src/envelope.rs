//! What the spool keeps beside a message body: the SMTP envelope, where the message came from,
//! and the delivery state of each recipient.

use serde::{Deserialize, Serialize};

/// An address as SMTP commands and header fields write it. The relay holds an address with its
/// quoting taken off (`"a b"@contoso.example` is held as `a b@contoso.example`, as the SMTP
/// parser gives it), so whatever writes one out puts the quotes back: a local part that is not a
/// dot-atom (RFC 5321 4.1.2; RFC 6531 lets its atoms hold UTF-8) is written as a quoted
/// string, with `"` and `\` escaped. The domain is whatever follows the last `@`.
pub fn quoted_address(address: &str) -> std::borrow::Cow<'_, str> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.into();
    };
    if is_dot_atom(local) {
        return address.into();
    }
    let mut out = String::with_capacity(address.len() + 4);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push_str("\"@");
    out.push_str(domain);
    out.into()
}

/// The address as held, from one written with a quoted local part (`"a b"@contoso.example` →
/// `a b@contoso.example`): what a search typed by a person is matched against. Anything else
/// comes back as it is.
pub fn unquoted_address(address: &str) -> std::borrow::Cow<'_, str> {
    let Some((local, domain)) = address.rsplit_once('@') else {
        return address.into();
    };
    let Some(inner) = local
        .strip_prefix('"')
        .and_then(|l| l.strip_suffix('"'))
        .filter(|_| local.len() >= 2)
    else {
        return address.into();
    };
    let mut out = String::with_capacity(address.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        out.push(if c == '\\' {
            chars.next().unwrap_or(c)
        } else {
            c
        });
    }
    out.push('@');
    out.push_str(domain);
    out.into()
}

fn is_dot_atom(local: &str) -> bool {
    !local.is_empty()
        && local.split('.').all(|atom| {
            !atom.is_empty()
                && atom.chars().all(|c| {
                    c.is_ascii_alphanumeric() || !c.is_ascii() || "!#$%&'*+-/=?^_`{|}~".contains(c)
                })
        })
}

/// DSN `RET` parameter (RFC 3461): what an NDR should carry of the original message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ret {
    Full,
    Hdrs,
}

/// DSN `NOTIFY` parameter of one recipient. `None` in [`Recipient::notify`] means the client did
/// not say, which RFC 3461 treats as "failure (and maybe delay)".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Notify {
    pub never: bool,
    pub success: bool,
    pub failure: bool,
    pub delay: bool,
}

/// Where one recipient stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RcptState {
    /// Not tried yet, or tried and deferred (`last_reply` holds the remote's words).
    Pending { last_reply: Option<String> },
    /// The next hop accepted it.
    Delivered { reply: String, remote: String },
    /// Permanent failure or expiry; `reply` is the reason an NDR reports.
    Failed {
        reply: String,
        remote: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    /// DSN `ORCPT`, as given (`rfc822;user@example.org`).
    pub orcpt: Option<String>,
    pub notify: Option<Notify>,
    pub state: RcptState,
    /// Delivered to a next hop that does not speak DSN: a sender who asked NOTIFY=SUCCESS
    /// hears it from us ("relayed"), not from the final server.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relayed_without_dsn: bool,
}

impl Recipient {
    pub fn new(address: impl Into<String>) -> Self {
        Recipient {
            address: address.into(),
            orcpt: None,
            notify: None,
            state: RcptState::Pending { last_reply: None },
            relayed_without_dsn: false,
        }
    }

    pub fn is_pending(&self) -> bool {
        matches!(self.state, RcptState::Pending { .. })
    }

    /// The domain part as it is compared (`relayward_names::domain_key`: lower case, an IDN
    /// written in Unicode as its A-labels, so that both forms are one destination, looked up in
    /// DNS and matched against MTA-STS policies in the form they use); empty for an address
    /// without one.
    pub fn domain(&self) -> String {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| relayward_names::domain_key(d).into_owned())
            .unwrap_or_default()
    }

    /// Whether the sender wants to hear that this recipient is delayed: asked with
    /// NOTIFY=DELAY, or said nothing (RFC 3461 leaves that to us; we tell).
    pub fn wants_delay_notice(&self) -> bool {
        match self.notify {
            None => true,
            Some(n) => !n.never && n.delay,
        }
    }

    /// Whether the sender asked for a success notice (NOTIFY=SUCCESS) and this recipient was
    /// handed to a next hop that will not send one.
    pub fn wants_success_notice(&self) -> bool {
        self.notify.is_some_and(|n| n.success && !n.never)
            && self.relayed_without_dsn
            && matches!(self.state, RcptState::Delivered { .. })
    }

    /// Whether the sender asked (or by default wants) to hear about a failure of this recipient.
    pub fn wants_failure_notice(&self) -> bool {
        match self.notify {
            None => true,
            Some(n) => !n.never && n.failure,
        }
    }
}

/// A message's envelope and delivery state, as spooled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The id shown in the `250` reply and in the trace.
    pub id: String,
    /// Unix seconds when the message was accepted.
    pub received_at: i64,
    /// Envelope sender; empty for the null sender (`MAIL FROM:<>`).
    pub mail_from: String,
    pub ret: Option<Ret>,
    pub env_id: Option<String>,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// The tenant the message is attributed to, when it is.
    pub tenant: Option<String>,
    /// How the message came in: `connector:<name>`, `user:<address>`, `inbound`, `system`.
    pub origin: String,
    pub client_ip: String,
    pub helo: String,
    pub recipients: Vec<Recipient>,
    /// Delivery rounds tried so far.
    pub attempts: u32,
    /// Unix seconds of the next delivery round.
    pub next_attempt: i64,
    /// True for the reports Relayward writes itself (NDRs): they are never answered by NDRs.
    pub is_report: bool,
    /// A delay notice went to the sender already (at most one per message).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delay_notified: bool,
    /// Why the message must leave from the high-risk pool (its scan verdict), if it must;
    /// empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub high_risk: String,
    /// Held by an operator: kept, not delivered, until released.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
}

impl Envelope {
    pub fn pending(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients.iter().filter(|r| r.is_pending())
    }

    pub fn is_finished(&self) -> bool {
        !self.recipients.iter().any(Recipient::is_pending)
    }
}

#[cfg(test)]
mod tests {
    use super::{quoted_address, unquoted_address};

    #[test]
    fn addresses_are_written_with_their_quotes_put_back_where_needed() {
        for (held, written) in [
            ("alice@contoso.example", "alice@contoso.example"),
            (
                "first.last+tag@contoso.example",
                "first.last+tag@contoso.example",
            ),
            ("jörg@bücher.example", "jörg@bücher.example"),
            ("postmaster", "postmaster"),
            ("", ""),
            ("a b@contoso.example", "\"a b\"@contoso.example"),
            ("a\"b@contoso.example", "\"a\\\"b\"@contoso.example"),
            ("a\\b@contoso.example", "\"a\\\\b\"@contoso.example"),
            ("a@b@contoso.example", "\"a@b\"@contoso.example"),
            (".a@contoso.example", "\".a\"@contoso.example"),
            ("a..b@contoso.example", "\"a..b\"@contoso.example"),
            ("@contoso.example", "\"\"@contoso.example"),
        ] {
            assert_eq!(quoted_address(held), written, "{held}");
            if !held.is_empty() && held.contains('@') {
                assert_eq!(unquoted_address(written), held, "{written}");
            }
        }
        assert_eq!(unquoted_address("\"@contoso.example"), "\"@contoso.example");
    }
}
