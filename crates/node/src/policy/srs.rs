//! The Sender Rewriting Scheme for forwarded mail (SPEC section 5). A copy forwarded for
//! `ana@contoso.example` from `ext@outside.example` leaves with the envelope sender
//!
//! `ana+SRS=<hash>=<time>=outside.example=ext@contoso.example`
//!
//! (`bounces+SRS=…` when the local part would pass 64 characters), so it is the tenant's own
//! domain that sends, and a bounce to it finds its way back to `ext@outside.example`. A sender
//! that is already rewritten by a forwarder (ours or another's) is wrapped whole, SRS1 style:
//!
//! `ana+SRS1=<hash>=<its domain>==<its local part>@contoso.example`
//!
//! The hash is an HMAC-SHA256 under the relay's secret over the lower-cased parts, so letter
//! case changed in transit does not break it; the time is the day number modulo 1024 in two
//! base-32 letters, and addresses older than the maximum age are refused.

use aws_lc_rs::hmac;

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
/// Characters of hash kept in the address: 40 bits.
const HASH_LEN: usize = 8;
/// The longest local part RFC 5321 4.5.3.1.1 promises to carry.
const MAX_LOCAL: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrsError {
    /// The hash does not match: made up or altered.
    Forged,
    /// Older than the maximum age.
    Expired,
    /// Looks like SRS but does not parse.
    Malformed,
}

impl SrsError {
    /// The reply refusing a bounce to such an address.
    pub fn reply_text(&self) -> &'static str {
        match self {
            SrsError::Forged => {
                "5.7.1 Invalid forwarding address: its SRS hash does not match (forged or altered)"
            }
            SrsError::Expired => "5.7.1 Forwarding address expired: this SRS address is too old",
            SrsError::Malformed => "5.1.3 Malformed forwarding (SRS) address",
        }
    }
}

pub struct Srs {
    key: hmac::Key,
    max_age_days: i64,
}

fn split(address: &str) -> Option<(&str, &str)> {
    address.rsplit_once('@')
}

fn day(now_secs: i64) -> i64 {
    now_secs.div_euclid(86_400)
}

fn timestamp(day: i64) -> String {
    let t = day.rem_euclid(1024) as usize;
    [BASE32[t >> 5] as char, BASE32[t & 31] as char]
        .iter()
        .collect()
}

fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let v = |c: u8| {
        BASE32
            .iter()
            .position(|&x| x == c.to_ascii_lowercase())
            .map(|p| p as i64)
    };
    Some(v(b[0])? << 5 | v(b[1])?)
}

/// Where `+SRS=` / `+SRS1=` starts in a local part (any letter case).
fn find_tag(local: &str, tag: &str) -> Option<usize> {
    local.to_ascii_lowercase().find(tag)
}

/// Whether a local part already carries a rewriting (ours, or the common `SRS0=`/`SRS1=`).
fn is_rewritten(local: &str) -> bool {
    let l = local.to_ascii_lowercase();
    l.starts_with("srs0=") || l.starts_with("srs1=") || l.contains("+srs=") || l.contains("+srs1=")
}

impl Srs {
    pub fn new(secret: &[u8], max_age_days: i64) -> Srs {
        Srs {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            max_age_days: max_age_days.max(1),
        }
    }

    fn hash(&self, parts: &[&str]) -> String {
        let mut ctx = hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(p.to_ascii_lowercase().as_bytes());
            ctx.update(b"\0");
        }
        let tag = ctx.sign();
        tag.as_ref()
            .iter()
            .take(HASH_LEN)
            .map(|b| BASE32[usize::from(b & 31)] as char)
            .collect()
    }

    /// The envelope sender of a copy of mail from `sender` forwarded for the user `forwarder`.
    /// The null sender stays null (nothing may bounce back to it).
    pub fn forward(&self, sender: &str, forwarder: &str, now_secs: i64) -> String {
        let (Some((s_local, s_domain)), Some((f_local, f_domain))) =
            (split(sender), split(forwarder))
        else {
            return sender.to_string();
        };
        let tail = if is_rewritten(s_local) {
            format!(
                "SRS1={}={s_domain}=={s_local}",
                self.hash(&[s_domain, s_local])
            )
        } else {
            let t = timestamp(day(now_secs));
            format!(
                "SRS={}={t}={s_domain}={s_local}",
                self.hash(&[&t, s_domain, s_local])
            )
        };
        let local = if f_local.len() + 1 + tail.len() <= MAX_LOCAL {
            format!("{f_local}+{tail}")
        } else {
            format!("bounces+{tail}")
        };
        format!("{local}@{f_domain}")
    }

    /// For a recipient address: `Ok(None)` when it is no SRS address of ours, the address to
    /// send back to when it is a valid one, and why not otherwise.
    pub fn reverse(&self, address: &str, now_secs: i64) -> Result<Option<String>, SrsError> {
        let Some((local, _domain)) = split(address) else {
            return Ok(None);
        };
        if let Some(i) = find_tag(local, "+srs1=") {
            let rest = &local[i + 6..];
            let (hash, rest) = rest.split_once('=').ok_or(SrsError::Malformed)?;
            let (host, orig_local) = rest.split_once("==").ok_or(SrsError::Malformed)?;
            if host.is_empty() || orig_local.is_empty() {
                return Err(SrsError::Malformed);
            }
            if !self.hash(&[host, orig_local]).eq_ignore_ascii_case(hash) {
                return Err(SrsError::Forged);
            }
            return Ok(Some(format!("{orig_local}@{host}")));
        }
        let Some(i) = find_tag(local, "+srs=") else {
            return Ok(None);
        };
        let mut parts = local[i + 5..].splitn(4, '=');
        let (Some(hash), Some(t), Some(domain), Some(orig_local)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SrsError::Malformed);
        };
        if domain.is_empty() || orig_local.is_empty() {
            return Err(SrsError::Malformed);
        }
        if !self
            .hash(&[t, domain, orig_local])
            .eq_ignore_ascii_case(hash)
        {
            return Err(SrsError::Forged);
        }
        let then = parse_timestamp(t).ok_or(SrsError::Malformed)?;
        let age = (day(now_secs).rem_euclid(1024) - then).rem_euclid(1024);
        if age > self.max_age_days {
            return Err(SrsError::Expired);
        }
        Ok(Some(format!("{orig_local}@{domain}")))
    }

    /// `reverse`, then the same again while the address found is still a valid one of ours
    /// (a copy forwarded twice by this relay wraps one of our addresses in another): where the
    /// sender of the first copy is, rather than the address of the hop before. Four at most.
    pub fn reverse_all(&self, address: &str, now_secs: i64) -> Result<Option<String>, SrsError> {
        let Some(mut to) = self.reverse(address, now_secs)? else {
            return Ok(None);
        };
        for _ in 0..3 {
            match self.reverse(&to, now_secs) {
                Ok(Some(inner)) => to = inner,
                _ => break,
            }
        }
        Ok(Some(to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000;

    #[test]
    fn a_forwarded_sender_is_in_the_forwarders_domain_and_comes_back() {
        let srs = Srs::new(b"secret", 21);
        let f = srs.forward("ext@outside.example", "ana@contoso.example", NOW);
        assert!(f.starts_with("ana+SRS="), "{f}");
        assert!(f.ends_with("=outside.example=ext@contoso.example"), "{f}");
        assert_eq!(
            srs.reverse(&f, NOW + 86_400 * 3),
            Ok(Some("ext@outside.example".into()))
        );
        // Letter case changed by a mail system on the way does not matter.
        assert_eq!(
            srs.reverse(&f.to_uppercase(), NOW),
            Ok(Some("EXT@OUTSIDE.EXAMPLE".into()))
        );
        assert_eq!(srs.forward("", "ana@contoso.example", NOW), "");
        assert_eq!(srs.reverse("ana@contoso.example", NOW), Ok(None));
    }

    #[test]
    fn forged_altered_expired_and_other_keys_are_refused() {
        let srs = Srs::new(b"secret", 21);
        let f = srs.forward("ext@outside.example", "ana@contoso.example", NOW);
        let altered = f.replace("=ext@", "=boss@");
        assert_eq!(srs.reverse(&altered, NOW), Err(SrsError::Forged));
        let other = Srs::new(b"another secret", 21);
        assert_eq!(other.reverse(&f, NOW), Err(SrsError::Forged));
        assert_eq!(
            srs.reverse("ana+SRS=aaaaaaaa=zz=victim.example=x@contoso.example", NOW),
            Err(SrsError::Forged)
        );
        assert_eq!(srs.reverse(&f, NOW + 86_400 * 22), Err(SrsError::Expired));
        assert_eq!(
            srs.reverse("ana+SRS=broken@contoso.example", NOW),
            Err(SrsError::Malformed)
        );
    }

    #[test]
    fn a_rewritten_sender_is_wrapped_once_more_and_unwraps_step_by_step() {
        let srs = Srs::new(b"secret", 21);
        let first = srs.forward("ext@outside.example", "ana@a.example", NOW);
        let second = srs.forward(&first, "bob@b.example", NOW);
        assert!(second.contains("+SRS1=") || second.starts_with("bounces+SRS1="));
        assert!(second.ends_with("@b.example"));
        let back = srs.reverse(&second, NOW).expect("valid").expect("srs");
        assert_eq!(back, first);
        assert_eq!(
            srs.reverse(&back, NOW),
            Ok(Some("ext@outside.example".into()))
        );
    }

    #[test]
    fn reverse_all_unwraps_every_rewriting_of_ours_and_stops_at_anothers() {
        let srs = Srs::new(b"secret", 21);
        let first = srs.forward("ext@outside.example", "ana@a.example", NOW);
        let second = srs.forward(&first, "bob@b.example", NOW);
        assert_eq!(
            srs.reverse_all(&second, NOW),
            Ok(Some("ext@outside.example".into()))
        );
        // Another forwarder's rewriting inside ours goes back to that forwarder.
        let theirs = "SRS0=abcd=zz=outside.example=ext@forwarder.example";
        let wrapped = srs.forward(theirs, "ana@a.example", NOW);
        assert_eq!(srs.reverse_all(&wrapped, NOW), Ok(Some(theirs.into())));
        assert_eq!(srs.reverse_all("ana@a.example", NOW), Ok(None));
        let forged = second.replace("@b.example", "x@b.example");
        assert!(srs.reverse_all(&forged, NOW).is_err());
    }

    #[test]
    fn long_local_parts_use_the_bounces_form() {
        let srs = Srs::new(b"secret", 21);
        let f = srs.forward(
            "a.rather.long.sender.name@a-long-domain-name.example",
            "someone.with.a.long.name@contoso.example",
            NOW,
        );
        assert!(f.starts_with("bounces+SRS="), "{f}");
        assert_eq!(
            srs.reverse(&f, NOW),
            Ok(Some(
                "a.rather.long.sender.name@a-long-domain-name.example".into()
            ))
        );
    }
}
