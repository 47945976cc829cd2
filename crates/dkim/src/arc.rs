//! ARC (RFC 8617): validating the chain a message arrives with, and sealing it when we forward
//! it, so the next receiver can trust the authentication results we saw.
//!
//! Sealing happens in two steps, as the relay works: at receipt the forwarded copy gets its
//! `ARC-Authentication-Results` (what we checked, with `arc=` for the chain so far); at delivery
//! `seal` adds the `ARC-Message-Signature` and `ARC-Seal` of that instance.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::canon::{self, Canon, Field};
use crate::error::DkimError;
use crate::keys::Algorithm;
use crate::sig::{self, Keys, Outcome, Signer};

/// Most ARC sets a chain may hold (RFC 8617 4.2.1).
const MAX_INSTANCES: u32 = 50;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArcResult {
    /// The message carries no ARC sets.
    None,
    Pass,
    Fail(String),
}

impl ArcResult {
    pub fn word(&self) -> &'static str {
        match self {
            ArcResult::None => "none",
            ArcResult::Pass => "pass",
            ArcResult::Fail(_) => "fail",
        }
    }
}

const AAR: &str = "ARC-Authentication-Results";
const AMS: &str = "ARC-Message-Signature";
const SEAL: &str = "ARC-Seal";

fn instance(field: &Field) -> Option<u32> {
    canon::tag(&canon::tags(&field.value()), "i")?.parse().ok()
}

/// One instance: indexes of its three fields.
#[derive(Debug, Clone, Copy)]
struct Set {
    aar: usize,
    ams: usize,
    seal: usize,
}

/// The complete sets 1..=N in order; an error when parts are missing, doubled or out of range.
fn sets(fields: &[Field]) -> Result<Vec<Set>, String> {
    let mut found: Vec<[Option<usize>; 3]> = Vec::new();
    for (i, f) in fields.iter().enumerate() {
        let slot = if f.is(AAR) {
            0
        } else if f.is(AMS) {
            1
        } else if f.is(SEAL) {
            2
        } else {
            continue;
        };
        let Some(n) = instance(f).filter(|n| (1..=MAX_INSTANCES).contains(n)) else {
            return Err(format!("{} with a bad instance number", f.name));
        };
        let n = n as usize;
        if found.len() < n {
            found.resize(n, [None; 3]);
        }
        if found[n - 1][slot].replace(i).is_some() {
            return Err(format!("two {} fields for instance {n}", f.name));
        }
    }
    found
        .iter()
        .enumerate()
        .map(|(k, s)| match s {
            [Some(aar), Some(ams), Some(seal)] => Ok(Set {
                aar: *aar,
                ams: *ams,
                seal: *seal,
            }),
            _ => Err(format!("instance {} is incomplete", k + 1)),
        })
        .collect()
}

fn key_name(field: &Field) -> Option<String> {
    let tags = canon::tags(&field.value());
    Some(format!(
        "{}._domainkey.{}",
        canon::tag(&tags, "s")?,
        canon::tag(&tags, "d")?.trim_end_matches('.')
    ))
}

/// The key records validating the chain needs: every seal's and the newest message signature's.
pub(crate) fn key_names(fields: &[Field]) -> Vec<String> {
    let Ok(sets) = sets(fields) else {
        return Vec::new();
    };
    let mut names: Vec<String> = sets
        .iter()
        .filter_map(|s| key_name(&fields[s.seal]))
        .collect();
    if let Some(last) = sets.last()
        && let Some(n) = key_name(&fields[last.ams])
    {
        names.push(n);
    }
    names
}

/// Validates the chain `message` arrived with (RFC 8617 5.2).
pub fn validate(message: &[u8], keys: &Keys) -> ArcResult {
    let (fields, body) = canon::split(message);
    let sets = match sets(&fields) {
        Ok(s) if s.is_empty() => return ArcResult::None,
        Ok(s) => s,
        Err(e) => return ArcResult::Fail(e),
    };
    for (k, s) in sets.iter().enumerate() {
        let cv = canon::tag(&canon::tags(&fields[s.seal].value()), "cv")
            .unwrap_or("")
            .to_ascii_lowercase();
        let expected = if k == 0 { "none" } else { "pass" };
        if cv != expected {
            return ArcResult::Fail(format!("instance {} says cv={cv}", k + 1));
        }
    }
    let Some(last) = sets.last() else {
        return ArcResult::None;
    };
    let ams = sig::Sig {
        field: fields[last.ams],
        tags: canon::tags(&fields[last.ams].value()),
    };
    match sig::verify_sig(&fields, last.ams, body, &ams, keys, false) {
        Outcome::Pass => {}
        other => {
            return ArcResult::Fail(format!("newest message signature: {}", other.word()));
        }
    }
    for k in (0..sets.len()).rev() {
        let seal = &fields[sets[k].seal];
        let tags = canon::tags(&seal.value());
        if canon::tag(&tags, "a").and_then(Algorithm::parse) != Some(Algorithm::RsaSha256) {
            return ArcResult::Fail(format!("seal {} uses an unknown algorithm", k + 1));
        }
        let Some(b) = canon::tag(&tags, "b").and_then(|b| B64.decode(canon::no_space(b)).ok())
        else {
            return ArcResult::Fail(format!("seal {} has no signature", k + 1));
        };
        let answer = key_name(seal).and_then(|n| keys.get(&n));
        let public = match sig::key_record(answer, Algorithm::RsaSha256) {
            Ok(p) => p,
            Err(o) => return ArcResult::Fail(format!("seal {} key: {}", k + 1, o.word())),
        };
        let data = seal_data(
            sets[..k]
                .iter()
                .flat_map(|s| [s.aar, s.ams, s.seal])
                .map(|i| &fields[i]),
            &fields[sets[k].aar],
            &fields[sets[k].ams],
            &canon::without_b(seal.raw),
        );
        if crate::keys::verify(Algorithm::RsaSha256, &public, &data, &b).is_err() {
            return ArcResult::Fail(format!("seal {} does not verify", k + 1));
        }
    }
    ArcResult::Pass
}

/// What a seal signs: the earlier sets, then this instance's results, message signature and
/// seal (its `b=` empty, without its line end).
fn seal_data<'a>(
    earlier: impl Iterator<Item = &'a Field<'a>>,
    aar: &Field,
    ams: &Field,
    seal_without_b: &[u8],
) -> Vec<u8> {
    let mut data = Vec::new();
    for f in earlier {
        data.extend_from_slice(&canon::header(Canon::Relaxed, f));
    }
    data.extend_from_slice(&canon::header(Canon::Relaxed, aar));
    data.extend_from_slice(&canon::header(Canon::Relaxed, ams));
    let mut own = canon::relaxed_header(SEAL, seal_without_b);
    own.truncate(own.len() - 2);
    data.extend_from_slice(&own);
    data
}

/// The instance number the next seal on `message` takes.
pub fn next_instance(message: &[u8]) -> u32 {
    let (fields, _) = canon::split(message);
    fields
        .iter()
        .filter(|f| f.is(SEAL))
        .filter_map(instance)
        .max()
        .unwrap_or(0)
        + 1
}

/// The `ARC-Authentication-Results` field of instance `n`: `results` is what we checked
/// (`dkim=... ; arc=...`), `authserv` our host name.
pub fn results_field(n: u32, authserv: &str, results: &str) -> String {
    format!("{AAR}: i={n}; {authserv};\r\n\t{results}\r\n")
}

/// The `ARC-Seal` and `ARC-Message-Signature` fields (with line ends) completing the newest
/// instance, whose results field the message already carries. The chain's state comes from
/// that results field's `arc=`: none for instance 1, pass when it says pass, else fail.
pub fn seal(message: &[u8], signer: &Signer, now: i64) -> Result<String, DkimError> {
    seal_with(message, &sig::BodyHash::of(message), signer, now)
}

/// `seal` with the body's hash already made (the one the message's DKIM signatures use).
pub fn seal_with(
    message: &[u8],
    bh: &sig::BodyHash,
    signer: &Signer,
    now: i64,
) -> Result<String, DkimError> {
    if signer.key.algorithm() != Algorithm::RsaSha256 {
        return Err(DkimError::Seal("ARC seals are RSA-SHA256 only".into()));
    }
    let (fields, _) = canon::split(message);
    let n = fields
        .iter()
        .filter(|f| f.is(AAR))
        .filter_map(instance)
        .max()
        .ok_or_else(|| DkimError::Seal("no ARC-Authentication-Results to seal".into()))?;
    let find = |name: &str, k: u32| fields.iter().find(|f| f.is(name) && instance(f) == Some(k));
    if find(SEAL, n).is_some() || find(AMS, n).is_some() {
        return Err(DkimError::Seal(format!("instance {n} is already sealed")));
    }
    let Some(aar) = find(AAR, n) else {
        return Err(DkimError::Seal("results field vanished".into()));
    };
    let cv = if n == 1 {
        "none"
    } else if canon::tags(&aar.value())
        .iter()
        .any(|(k, v)| k.trim() == "arc" && v.split_whitespace().next() == Some("pass"))
    {
        "pass"
    } else {
        "fail"
    };
    let mut earlier = Vec::new();
    if cv != "fail" {
        for k in 1..n {
            match (find(AAR, k), find(AMS, k), find(SEAL, k)) {
                (Some(a), Some(m), Some(s)) => earlier.extend([*a, *m, *s]),
                _ => return Err(DkimError::Seal(format!("instance {k} is incomplete"))),
            }
        }
    }
    let ams_text = sig::signature_field(AMS, &format!("i={n}"), message, bh, signer, now)?;
    let ams = Field {
        name: AMS,
        raw: ams_text.as_bytes(),
    };
    let head = format!(
        "{SEAL}: i={n}; a=rsa-sha256; t={now}; cv={cv};\r\n\td={}; s={};\r\n\tb=",
        signer.domain, signer.selector
    );
    let data = seal_data(earlier.iter(), aar, &ams, head.as_bytes());
    let b = signer.key.sign(&data)?;
    Ok(format!("{head}{}\r\n{ams_text}", sig::fold(&B64.encode(b))))
}

/// The message without the `ARC-Authentication-Results` fields of instances that have no
/// seal: what to send when a forwarded copy cannot be sealed, because a results field alone is
/// an incomplete set that receivers take for a broken chain. Everything else stays byte for
/// byte.
pub fn without_unsealed_results(message: &[u8]) -> Vec<u8> {
    let (fields, _) = canon::split(message);
    let sealed: Vec<u32> = fields
        .iter()
        .filter(|f| f.is(SEAL))
        .filter_map(instance)
        .collect();
    let drop: Vec<&Field> = fields
        .iter()
        .filter(|f| f.is(AAR) && instance(f).is_none_or(|i| !sealed.contains(&i)))
        .collect();
    if drop.is_empty() {
        return message.to_vec();
    }
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    for f in drop {
        // `raw` is a slice of `message`: its place is found from the pointers.
        let start = (f.raw.as_ptr() as usize).saturating_sub(message.as_ptr() as usize);
        if start < at || start + f.raw.len() > message.len() {
            continue;
        }
        out.extend_from_slice(&message[at..start]);
        at = start + f.raw.len();
    }
    out.extend_from_slice(&message[at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Generated, KeyAnswer, SigningKey, dns_record, generate};

    const MESSAGE: &[u8] = b"From: Ext <ext@outside.example>\r\nTo: ana@contoso.example\r\nSubject: Hello\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <9@outside.example>\r\n\r\nHi Ana.\r\n";

    fn add(keys: &mut Keys, name: &str, g: &Generated) {
        keys.insert(
            name.to_string(),
            KeyAnswer::Records(vec![dns_record(g.algorithm, &g.public)]),
        );
    }

    fn seal_once(message: &[u8], domain: &str, key: &SigningKey, results: &str) -> Vec<u8> {
        let n = next_instance(message);
        let with_aar = [results_field(n, "relay.test", results).as_bytes(), message].concat();
        let signer = Signer {
            domain,
            selector: "arc",
            key,
        };
        let sealed = seal(&with_aar, &signer, 1_790_000_000 + n as i64).expect("seal");
        [sealed.as_bytes(), &with_aar].concat()
    }

    #[test]
    fn an_unsealed_results_field_is_removed_and_sealed_sets_stay() {
        let g = generate(Algorithm::RsaSha256).expect("key");
        let k = SigningKey::from_pkcs8(g.algorithm, &g.private_pkcs8).expect("load");
        let once = seal_once(MESSAGE, "a.example", &k, "dkim=pass");
        assert_eq!(
            without_unsealed_results(&once),
            once,
            "a complete set stays"
        );
        let open = [
            results_field(2, "relay.test", "dkim=none").as_bytes(),
            &once,
        ]
        .concat();
        assert_eq!(without_unsealed_results(&open), once);
        let bare = [
            results_field(1, "relay.test", "dkim=none").as_bytes(),
            MESSAGE,
        ]
        .concat();
        assert_eq!(without_unsealed_results(&bare), MESSAGE);
    }

    #[test]
    fn a_sealed_chain_validates_and_grows_and_tampering_breaks_it() {
        let g1 = generate(Algorithm::RsaSha256).expect("key");
        let k1 = SigningKey::from_pkcs8(g1.algorithm, &g1.private_pkcs8).expect("load");
        let g2 = generate(Algorithm::RsaSha256).expect("key");
        let k2 = SigningKey::from_pkcs8(g2.algorithm, &g2.private_pkcs8).expect("load");
        let mut keys = Keys::new();
        add(&mut keys, "arc._domainkey.first.example", &g1);
        add(&mut keys, "arc._domainkey.second.example", &g2);

        assert_eq!(validate(MESSAGE, &keys), ArcResult::None);
        let once = seal_once(MESSAGE, "first.example", &k1, "dkim=none; arc=none");
        assert_eq!(validate(&once, &keys), ArcResult::Pass);
        assert_eq!(next_instance(&once), 2);
        let text = String::from_utf8(once.clone()).expect("utf8");
        assert!(text.contains("cv=none"));

        let twice = seal_once(&once, "second.example", &k2, "dkim=none; arc=pass");
        assert_eq!(validate(&twice, &keys), ArcResult::Pass);
        assert!(String::from_utf8_lossy(&twice).contains("i=2; a=rsa-sha256"));

        let tampered = String::from_utf8(twice.clone())
            .expect("utf8")
            .replace("Hi Ana.", "Hi Ana, send money.");
        assert!(matches!(
            validate(tampered.as_bytes(), &keys),
            ArcResult::Fail(_)
        ));
        let forged_results = String::from_utf8(twice).expect("utf8").replace(
            "i=1; relay.test;\r\n\tdkim=none",
            "i=1; relay.test;\r\n\tdkim=pass",
        );
        assert!(matches!(
            validate(forged_results.as_bytes(), &keys),
            ArcResult::Fail(_)
        ));
    }

    #[test]
    fn an_incomplete_chain_fails_and_ed25519_cannot_seal() {
        let with_aar = [
            results_field(1, "relay.test", "arc=none").as_bytes(),
            MESSAGE,
        ]
        .concat();
        assert!(matches!(
            validate(&with_aar, &Keys::new()),
            ArcResult::Fail(_)
        ));
        let g = generate(Algorithm::Ed25519Sha256).expect("key");
        let k = SigningKey::from_pkcs8(g.algorithm, &g.private_pkcs8).expect("load");
        let signer = Signer {
            domain: "x.example",
            selector: "s",
            key: &k,
        };
        assert!(seal(&with_aar, &signer, 1).is_err());
    }
}
