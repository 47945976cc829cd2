//! The DKIM-Signature field: what a signer needs, writing one, and checking one against its key
//! record. ARC's message signature and seal (`arc`) are built from the same parts.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::canon::{self, Canon, Field};
use crate::error::DkimError;
use crate::keys::{self, Algorithm, SigningKey};

/// Header fields we sign when present (RFC 6376 5.4.1's list, less what changes in transit).
pub const SIGNED_HEADERS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "subject",
    "date",
    "message-id",
    "to",
    "cc",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-id",
    "content-description",
    "resent-date",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-message-id",
    "in-reply-to",
    "references",
    "list-id",
    "list-help",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "list-subscribe",
    "list-post",
    "list-owner",
    "list-archive",
];

/// Who signs: the `d=` domain, the selector and the key.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub domain: &'a str,
    pub selector: &'a str,
    pub key: &'a SigningKey,
}

/// The `bh=` of a message's body under relaxed canonicalisation: the same for every signature
/// of that body (each DKIM key's, and the ARC message signature), so a message is hashed once
/// however many signatures it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyHash(String);

impl BodyHash {
    pub fn of(message: &[u8]) -> BodyHash {
        let (_, body) = canon::split(message);
        BodyHash(B64.encode(canon::body_hash(Canon::Relaxed, body, None)))
    }
}

/// The `DKIM-Signature:` field, with its line end, to put on top of `message`.
pub fn sign(message: &[u8], signer: &Signer, now: i64) -> Result<String, DkimError> {
    sign_with(message, &BodyHash::of(message), signer, now)
}

/// `sign` with the body's hash already made (`bh` must be `BodyHash::of` this message's body).
pub fn sign_with(
    message: &[u8],
    bh: &BodyHash,
    signer: &Signer,
    now: i64,
) -> Result<String, DkimError> {
    signature_field("DKIM-Signature", "v=1", message, bh, signer, now)
}

/// Builds a DKIM-style signature field (`DKIM-Signature` or `ARC-Message-Signature`), relaxed
/// canonicalisation for header and body.
pub(crate) fn signature_field(
    name: &str,
    lead: &str,
    message: &[u8],
    bh: &BodyHash,
    signer: &Signer,
    now: i64,
) -> Result<String, DkimError> {
    let (fields, _) = canon::split(message);
    let bh = &bh.0;
    let mut names = Vec::new();
    let mut data = Vec::new();
    for wanted in SIGNED_HEADERS {
        // Each instance named once, up to `MOST_INSTANCES_SIGNED`: h= picks them bottom-up
        // (RFC 6376 5.4.2).
        for f in fields
            .iter()
            .rev()
            .filter(|f| f.is(wanted))
            .take(MOST_INSTANCES_SIGNED)
        {
            names.push(*wanted);
            data.extend_from_slice(&canon::header(Canon::Relaxed, f));
        }
    }
    let head = format!(
        "{name}: {lead}; a={}; c=relaxed/relaxed; d={}; s={};\r\n\tt={now}; h={};\r\n\tbh={bh};\r\n\tb=",
        signer.key.algorithm().as_str(),
        signer.domain,
        signer.selector,
        // The h= line starts with a tab (8 columns), then `t=<now>; h=`.
        fold_names(&names, 8 + "t=; h=".len() + now.to_string().len()),
    );
    let mut own = canon::relaxed_header(name, head.as_bytes());
    own.truncate(own.len() - 2);
    data.extend_from_slice(&own);
    let sig = signer.key.sign(&data)?;
    Ok(format!("{head}{}\r\n", fold(&B64.encode(sig))))
}

/// At most this many instances of one header field are signed, the bottom-most. A message
/// with hundreds of `To` fields (an application that writes one per recipient) would otherwise
/// get a signature naming every one, which a verifier may refuse to check (ours does above
/// `MAX_SIGNED_FIELDS` names). Every name of `SIGNED_HEADERS` this many times stays under it.
const MOST_INSTANCES_SIGNED: usize = 4;
const _: () = assert!(SIGNED_HEADERS.len() * MOST_INSTANCES_SIGNED <= MAX_SIGNED_FIELDS);

/// The `h=` value: the names joined by colons, folded after a colon where a line would pass
/// 78 columns (`column`: where the value starts on its first line). RFC 6376 3.5 allows
/// folding white space around each colon; unfolded, a long list could pass RFC 5322's 998
/// octets a line. A continuation line starts with a tab: 8 columns.
fn fold_names(names: &[&str], column: usize) -> String {
    let mut out = String::new();
    let mut col = column;
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.push(':');
            col += 1;
            if col + name.len() > 78 {
                out.push_str("\r\n\t");
                col = 8;
            }
        }
        out.push_str(name);
        col += name.len();
    }
    out
}

/// Breaks a long base64 value into folded lines.
pub(crate) fn fold(b64: &str) -> String {
    let mut out = String::with_capacity(b64.len() + b64.len() / 36);
    for (i, chunk) in b64.as_bytes().chunks(72).enumerate() {
        if i > 0 {
            out.push_str("\r\n\t ");
        }
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
    }
    out
}

/// What a key lookup said: the TXT records at the name, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAnswer {
    Records(Vec<String>),
    /// The name does not exist or holds no TXT record.
    Missing,
    /// DNS could not answer now.
    Temporary(String),
}

pub type Keys = HashMap<String, KeyAnswer>;

/// One check's result, in the words of RFC 8601.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    /// The signature or its key is unusable (RFC 8601 `permerror`).
    PermError(String),
    TempError(String),
}

impl Outcome {
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::PermError(_) => "permerror",
            Outcome::TempError(_) => "temperror",
        }
    }
}

/// One DKIM signature checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub domain: String,
    pub selector: String,
    pub outcome: Outcome,
}

/// A parsed signature field (DKIM-Signature or ARC-Message-Signature).
pub(crate) struct Sig<'a> {
    pub(crate) field: Field<'a>,
    pub(crate) tags: Vec<(String, String)>,
}

impl Sig<'_> {
    pub(crate) fn tag(&self, name: &str) -> Option<&str> {
        canon::tag(&self.tags, name)
    }

    pub(crate) fn key_name(&self) -> Option<String> {
        Some(format!(
            "{}._domainkey.{}",
            self.tag("s")?,
            self.tag("d")?.trim_end_matches('.')
        ))
    }
}

/// The tags of a signature field.
pub(crate) fn parse_sig<'a>(field: Field<'a>) -> Sig<'a> {
    Sig {
        tags: canon::tags(&field.value()),
        field,
    }
}

/// A signature naming more header fields than this is not checked (signers name a few dozen,
/// twice over when they oversign).
const MAX_SIGNED_FIELDS: usize = 150;

/// Checks one signature field at `index` among `fields`.
pub(crate) fn verify_sig(
    fields: &[Field],
    index: usize,
    body: &[u8],
    sig: &Sig,
    keys: &Keys,
    dkim: bool,
) -> Outcome {
    if dkim && sig.tag("v") != Some("1") {
        return Outcome::PermError("unknown signature version".into());
    }
    let Some(alg) = sig.tag("a").and_then(Algorithm::parse) else {
        return Outcome::PermError("unknown algorithm".into());
    };
    let Some((hc, bc)) = canon::parse_c(sig.tag("c")) else {
        return Outcome::PermError("unknown canonicalisation".into());
    };
    let (Some(h), Some(bh), Some(b), Some(key_name)) =
        (sig.tag("h"), sig.tag("bh"), sig.tag("b"), sig.key_name())
    else {
        return Outcome::PermError("a required tag is missing".into());
    };
    if h.split(':').count() > MAX_SIGNED_FIELDS {
        // Each name is looked for among all the message's fields.
        return Outcome::PermError("too many signed header fields".into());
    }
    let names: Vec<String> = h
        .split(':')
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    if dkim && !names.iter().any(|n| n == "from") {
        return Outcome::PermError("From is not signed".into());
    }
    if let Some(x) = sig.tag("x").and_then(|x| x.parse::<i64>().ok())
        && relayward_clock::now_secs() > x
    {
        return Outcome::Fail("signature expired".into());
    }
    let limit = sig.tag("l").and_then(|l| l.parse::<u64>().ok());
    let body_hash = canon::body_hash(bc, body, limit);
    let Ok(claimed) = B64.decode(canon::no_space(bh)) else {
        return Outcome::PermError("bh= is not base64".into());
    };
    if claimed != body_hash.as_ref() {
        return Outcome::Fail("body hash does not match (the body changed)".into());
    }
    let Ok(signature) = B64.decode(canon::no_space(b)) else {
        return Outcome::PermError("b= is not base64".into());
    };
    let public = match key_record(keys.get(&key_name), alg) {
        Ok(p) => p,
        Err(o) => return o,
    };
    // The signed header fields, bottom-up per name, then the signature field without b=.
    let mut used = vec![false; fields.len()];
    used[index] = true;
    let mut data = Vec::new();
    for n in &names {
        if let Some(j) = (0..fields.len())
            .rev()
            .find(|&j| !used[j] && fields[j].name.eq_ignore_ascii_case(n))
        {
            used[j] = true;
            data.extend_from_slice(&canon::header(hc, &fields[j]));
        }
    }
    let stripped = canon::without_b(sig.field.raw);
    let mut own = canon::header(
        hc,
        &Field {
            name: sig.field.name,
            raw: &stripped,
        },
    );
    if own.ends_with(b"\r\n") {
        own.truncate(own.len() - 2);
    }
    data.extend_from_slice(&own);
    match keys::verify(alg, &public, &data, &signature) {
        Ok(()) => Outcome::Pass,
        Err(e) => Outcome::Fail(e),
    }
}

/// The public key from a key record, or the outcome when there is none usable.
pub(crate) fn key_record(answer: Option<&KeyAnswer>, alg: Algorithm) -> Result<Vec<u8>, Outcome> {
    let records = match answer {
        Some(KeyAnswer::Records(r)) => r,
        Some(KeyAnswer::Missing) => return Err(Outcome::PermError("no key record".into())),
        Some(KeyAnswer::Temporary(e)) => return Err(Outcome::TempError(e.clone())),
        None => return Err(Outcome::TempError("key not looked up".into())),
    };
    let Some(record) = records.iter().find(|r| {
        r.contains("p=") && canon::tag(&canon::tags(r), "v").is_none_or(|v| v == "DKIM1")
    }) else {
        return Err(Outcome::PermError("no DKIM key record".into()));
    };
    let tags = canon::tags(record);
    let k = canon::tag(&tags, "k").unwrap_or("rsa");
    if !k.eq_ignore_ascii_case(alg.key_type()) {
        return Err(Outcome::PermError(format!(
            "key type {k} does not match {}",
            alg.as_str()
        )));
    }
    let p = canon::no_space(canon::tag(&tags, "p").unwrap_or(""));
    if p.is_empty() {
        return Err(Outcome::Fail("key revoked".into()));
    }
    B64.decode(p)
        .map_err(|_| Outcome::PermError("p= is not base64".into()))
}
