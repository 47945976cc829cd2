//! Forwarding at the end of DATA (SPEC section 5): for each recipient who is a user with a
//! forwarding address, decide whether a copy may go out (loop, the tenant's forwarding control,
//! the guard), and build it: SRS envelope sender in the user's domain, the authentication
//! results we saw for the ARC seal added at delivery, and our loop marker. A copy that may not
//! go out becomes an NDR to the user, and the user's own copy is kept, so nothing is lost.

use std::sync::atomic::Ordering;
use std::time::Duration;

use relayward_delivery::dns::DnsError;
use relayward_dkim::{KeyAnswer, Keys};
use relayward_scan::Scan;
use relayward_smtp::Reply;
use relayward_spool::{Envelope, RcptState, Recipient};
use relayward_tenancy::{Directory, domain_of};

use super::{ConnState, RelayPolicy};
use crate::guarding::{OwnedOrigin, SenderFacts};

/// Our own trace header: one per forwarding hop, naming the user it forwarded for.
pub const LOOP_HEADER: &str = "X-Relayward-Loop";

/// The reply when a tenant's control forbids forwarding to the target's domain.
pub const FORWARDING_REFUSED: &str = "550 5.7.520 Access denied, Your organization does not allow external forwarding. Please contact your administrator for further assistance.";

/// The reply refusing a copy past `[forwarding] max_bytes_per_message`.
pub const TOO_MUCH_TO_FORWARD: &str = "552 5.3.4 Forwarding refused: this message is too large to forward to so many addresses at once";

/// Bodies of forwarded copies handed to the queue with them, together (the rest are read from
/// the spool when delivered).
pub const BODIES_KEPT: usize = 16 * 1024 * 1024;

/// Longest wait for the DNS answers the authentication results need.
const AUTH_DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// One forwarded copy, decided.
pub struct Forward {
    pub user: String,
    pub tenant: String,
    pub target: String,
    /// The SRS envelope sender, or the full reply that refused the copy.
    pub outcome: Result<String, String>,
    /// Whether the user's own copy still goes to the tenant's server.
    pub keep_copy: bool,
}

/// Users named by our loop headers in the message's header block.
fn forwarded_for(body: &[u8]) -> Vec<String> {
    let end = relayward_dsn::find_headers_end(body);
    let (fields, _) = relayward_dkim::canon::split(&body[..end]);
    fields
        .iter()
        .filter(|f| f.is(LOOP_HEADER))
        .map(|f| f.value().to_ascii_lowercase())
        .collect()
}

/// The message being forwarded, as the end of DATA knows it.
pub struct Incoming<'a> {
    /// Its recipients as spooled.
    pub recipients: &'a [String],
    pub sender: &'a str,
    pub body: &'a [u8],
    pub scan: &'a Scan,
    pub id: &'a str,
    pub now_secs: i64,
}

impl RelayPolicy {
    /// Decides the forwarded copies of a message for its recipients; `Err` is the reply
    /// refusing the whole message (a forwarding loop).
    pub(crate) fn plan_forwards(
        &self,
        conn: &ConnState,
        dir: &Directory,
        m: &Incoming,
    ) -> Result<Vec<Forward>, Reply> {
        let Incoming {
            recipients,
            sender,
            body,
            scan,
            id,
            now_secs,
        } = *m;
        let mut out = Vec::new();
        let mut seen_loop_headers = None;
        for rcpt in recipients {
            let Some(user) = dir.user(rcpt) else { continue };
            let Some(target) = user.forward_to else {
                continue;
            };
            let looped = seen_loop_headers.get_or_insert_with(|| forwarded_for(body));
            if looped.iter().any(|u| u.eq_ignore_ascii_case(user.address)) {
                return Err(Reply::new(
                    554,
                    format!(
                        "5.4.6 Forwarding loop detected: this message was already forwarded for {}",
                        user.address
                    ),
                ));
            }
            if out.iter().any(|f: &Forward| f.user == user.address) {
                continue; // the same user by two of its addresses
            }
            let tenant = user.tenant.to_string();
            let target_domain = domain_of(target);
            let internal = dir.is_accepted_by(&tenant, &target_domain);
            let outcome = if !internal
                && !dir
                    .tenant(&tenant)
                    .is_some_and(|t| t.may_forward_to(&target_domain))
            {
                Err(FORWARDING_REFUSED.to_string())
            } else {
                let srs_sender = self.srs.forward(sender, user.address, now_secs);
                let origin = OwnedOrigin::new(
                    dir,
                    SenderFacts::of(dir, &tenant, None),
                    &tenant,
                    None,
                    None,
                    conn.ip_text(),
                    &srs_sender,
                );
                let hashes = [relayward_guard::signals::key_hash(target)];
                let facts = relayward_guard::MessageFacts {
                    id,
                    recipients: 1,
                    external: u32::from(!internal),
                    suspicious: scan.verdict.suspicious(),
                    recipient_hashes: &hashes,
                };
                match self
                    .guard
                    .check_mail(&origin)
                    .and_then(|()| self.guard.record(&origin, &facts))
                {
                    Ok(()) => Ok(srs_sender),
                    Err(r) => {
                        self.stats.guard_refusals.fetch_add(1, Ordering::Relaxed);
                        Err(format!("{} {}", r.code, r.text))
                    }
                }
            };
            out.push(Forward {
                keep_copy: !user.forward_only || outcome.is_err(),
                user: user.address.to_string(),
                tenant,
                target: target.to_string(),
                outcome,
            });
        }
        Ok(out)
    }

    /// What we find of the message's own authentication, as an ARC results field of the
    /// instance our seal will take: its DKIM signatures and the ARC chain it came with.
    pub(crate) async fn arc_results(&self, body: &[u8]) -> String {
        let names = relayward_dkim::key_names(body);
        let mut keys = Keys::new();
        let lookups = async {
            for name in names {
                let answer = match self.resolver.txt(&name).await {
                    Ok(r) if r.is_empty() => KeyAnswer::Missing,
                    Ok(r) => KeyAnswer::Records(r),
                    Err(DnsError::NotFound(_)) => KeyAnswer::Missing,
                    Err(DnsError::Temporary(e)) => KeyAnswer::Temporary(e),
                };
                keys.insert(name, answer);
            }
        };
        // Unanswered names count as temporary errors (`check` says temperror for them).
        let _ = tokio::time::timeout(AUTH_DNS_TIMEOUT, lookups).await;
        let dkim = relayward_dkim::check(body, &keys);
        let arc = relayward_dkim::arc::validate(body, &keys);
        let instance = relayward_dkim::arc::next_instance(body);
        relayward_dkim::arc::results_field(
            instance,
            &self.hostname,
            &format!(
                "{};\r\n\tarc={}",
                relayward_dkim::results_text(&dkim),
                arc.word()
            ),
        )
    }
}

/// Refuses the copies of a message of `size` bytes past `limit` bytes together, in recipient
/// order (`[forwarding] max_bytes_per_message`, 512 MB: about 15 copies of a message of the
/// largest size, 500 of 1 MB). Each copy is spooled on its own, so without a bound one message
/// of 35 MB to 500 forwarding users would write 17 GB, holding up every other message's
/// spooling meanwhile. A copy refused here is refused like any other: the user keeps the
/// message and is told.
pub fn bound_copies(forwards: &mut [Forward], size: usize, limit: usize) {
    let mut total = 0usize;
    for f in forwards.iter_mut().filter(|f| f.outcome.is_ok()) {
        total = total.saturating_add(size);
        if total > limit {
            f.outcome = Err(TOO_MUCH_TO_FORWARD.to_string());
            f.keep_copy = true;
        }
    }
}

/// One forwarded copy, spooled.
pub struct Copy {
    pub envelope: Envelope,
    pub size: usize,
    /// Its body for the queue's first round, when it was kept.
    pub body: Option<std::sync::Arc<Vec<u8>>>,
}

/// A forwarded copy of `full` (the message as spooled): its envelope and its body. A copy
/// that goes out carries the authentication results and our loop marker; a refused copy only
/// serves the user's NDR, so past `FULL_RETURN_LIMIT` it keeps the header section alone and
/// its NDR returns that.
pub fn copy(
    f: &Forward,
    id: String,
    base: &Envelope,
    full: &[u8],
    arc_results: Option<&str>,
) -> (Envelope, Vec<u8>) {
    let mut env = envelope(f, id, base);
    let kept = if f.outcome.is_err() && full.len() > relayward_dsn::FULL_RETURN_LIMIT {
        env.ret = Some(relayward_spool::Ret::Hdrs);
        &full[..relayward_dsn::find_headers_end(full)]
    } else {
        full
    };
    let mut b = Vec::with_capacity(kept.len() + 512);
    if let (Ok(_), Some(aar)) = (&f.outcome, arc_results) {
        b.extend_from_slice(aar.as_bytes());
    }
    b.extend_from_slice(format!("{LOOP_HEADER}: {}\r\n", f.user).as_bytes());
    b.extend_from_slice(kept);
    (env, b)
}

/// The envelope of one forwarded copy: leaving with its SRS sender, or, when refused, already
/// failed with the reply so the queue sends the forwarding user an NDR.
pub fn envelope(f: &Forward, id: String, base: &Envelope) -> Envelope {
    let mut rcpt = Recipient::new(f.target.clone());
    let mail_from = match &f.outcome {
        Ok(srs) => srs.clone(),
        Err(reply) => {
            rcpt.state = RcptState::Failed {
                reply: reply.clone(),
                remote: None,
            };
            f.user.clone()
        }
    };
    Envelope {
        id,
        mail_from,
        ret: None,
        env_id: None,
        tenant: Some(f.tenant.clone()),
        origin: format!("forward:{}", f.user),
        recipients: vec![rcpt],
        delay_notified: false,
        ..base.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_headers_are_read_from_the_header_block_only() {
        let m = b"X-Relayward-Loop: Ana@Contoso.example\r\nSubject: x\r\n\r\nX-Relayward-Loop: bob@b.example\r\n";
        assert_eq!(forwarded_for(m), vec!["ana@contoso.example".to_string()]);
    }
}
