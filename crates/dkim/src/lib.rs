//! DKIM (RFC 6376, with Ed25519 from RFC 8463) and ARC (RFC 8617) for the relay: signing
//! outbound mail from accepted domains, sealing forwarded mail, and checking what arrives so the
//! seal can carry the original authentication results.
//!
//! Checking is split in two so this crate needs no resolver: `key_names` says which TXT
//! records a message's signatures need, the caller looks them up however it resolves names,
//! and `check` decides with the answers.

pub mod arc;
pub mod canon;
mod error;
pub(crate) mod keys;
mod sig;

pub use error::DkimError;
pub use keys::{Algorithm, Generated, SigningKey, dns_record, generate};
pub use sig::{
    BodyHash, Checked, KeyAnswer, Keys, Outcome, SIGNED_HEADERS, Signer, sign, sign_with,
};
use sig::{parse_sig, verify_sig};

/// At most this many DKIM signatures of a message are checked, the topmost (newest) first; RFC
/// 6376 6.1 lets a verifier limit them. Each costs a hash of the whole body and a key lookup,
/// and a header section can carry thousands: 10,000 took 11 s of one core on a 1 MB body.
pub const MAX_SIGNATURES_CHECKED: usize = 8;

/// The TXT names whose answers `check` needs: every checked DKIM signature's key and the ARC
/// chain's.
pub fn key_names(message: &[u8]) -> Vec<String> {
    let (fields, _) = canon::split(message);
    let mut names: Vec<String> = fields
        .iter()
        .filter(|f| f.is("DKIM-Signature"))
        .take(MAX_SIGNATURES_CHECKED)
        .filter_map(|f| parse_sig(*f).key_name())
        .collect();
    names.extend(arc::key_names(&fields));
    names.sort();
    names.dedup();
    names
}

/// The DKIM signatures of `message` (the first `MAX_SIGNATURES_CHECKED`), checked with the key
/// records in `keys`.
pub fn check(message: &[u8], keys: &Keys) -> Vec<Checked> {
    let (fields, body) = canon::split(message);
    fields
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is("DKIM-Signature"))
        .take(MAX_SIGNATURES_CHECKED)
        .map(|(i, f)| {
            let sig = parse_sig(*f);
            Checked {
                domain: sig.tag("d").unwrap_or("").to_string(),
                selector: sig.tag("s").unwrap_or("").to_string(),
                outcome: verify_sig(&fields, i, body, &sig, keys, true),
            }
        })
        .collect()
}

/// `dkim=pass header.d=example.com header.s=sel; ...` for an Authentication-Results value.
pub fn results_text(checked: &[Checked]) -> String {
    if checked.is_empty() {
        return "dkim=none".into();
    }
    checked
        .iter()
        .map(|c| {
            let reason = match &c.outcome {
                Outcome::Pass => String::new(),
                Outcome::Fail(r) | Outcome::PermError(r) | Outcome::TempError(r) => {
                    format!(" reason=\"{}\"", r.replace('"', "'"))
                }
            };
            format!(
                "dkim={}{reason} header.d={} header.s={}",
                c.outcome.word(),
                c.domain,
                c.selector
            )
        })
        .collect::<Vec<_>>()
        .join(";\r\n\t")
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn keys_for(domain: &str, selector: &str, g: &Generated) -> Keys {
        let mut keys = Keys::new();
        keys.insert(
            format!("{selector}._domainkey.{domain}"),
            KeyAnswer::Records(vec![dns_record(g.algorithm, &g.public)]),
        );
        keys
    }

    /// A new Ed25519 key, as generated and as loaded for signing.
    fn ed25519_key() -> (Generated, SigningKey) {
        let g = generate(Algorithm::Ed25519Sha256).expect("key");
        let key = SigningKey::from_pkcs8(g.algorithm, &g.private_pkcs8).expect("load");
        (g, key)
    }

    fn contoso_signer(key: &SigningKey) -> Signer<'_> {
        Signer {
            domain: "contoso.example",
            selector: "s1",
            key,
        }
    }

    const MESSAGE: &[u8] = b"From: Ana <ana@contoso.example>\r\nTo: bob@remote.example\r\nSubject: Quarterly  figures\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@contoso.example>\r\n\r\nHello Bob,\r\n\r\nthe figures are attached.  \r\n\r\n\r\n";

    #[test]
    fn both_algorithms_sign_what_they_verify_and_a_changed_body_fails() {
        for alg in [Algorithm::Ed25519Sha256, Algorithm::RsaSha256] {
            let g = generate(alg).expect("key");
            let key = SigningKey::from_pkcs8(alg, &g.private_pkcs8).expect("load");
            let signer = Signer {
                domain: "contoso.example",
                selector: "s1",
                key: &key,
            };
            let field = sign(MESSAGE, &signer, 1_790_000_000).expect("sign");
            let mut signed = field.into_bytes();
            signed.extend_from_slice(MESSAGE);
            let keys = keys_for("contoso.example", "s1", &g);
            assert_eq!(key_names(&signed), vec!["s1._domainkey.contoso.example"]);
            let checked = check(&signed, &keys);
            assert_eq!(checked.len(), 1);
            assert_eq!(checked[0].outcome, Outcome::Pass, "{alg:?}");

            // Relaxed canonicalisation forgives refolding and trailing spaces...
            let text = String::from_utf8(signed.clone()).expect("utf8");
            let refolded = text.replace(
                "Subject: Quarterly  figures",
                "Subject:  Quarterly\r\n figures",
            );
            assert_eq!(check(refolded.as_bytes(), &keys)[0].outcome, Outcome::Pass);
            // ...but not a changed word in the body or a changed subject.
            let changed = text.replace("attached", "enclosed");
            assert!(matches!(
                check(changed.as_bytes(), &keys)[0].outcome,
                Outcome::Fail(_)
            ));
            let changed = text.replace("Quarterly", "Annual");
            assert!(matches!(
                check(changed.as_bytes(), &keys)[0].outcome,
                Outcome::Fail(_)
            ));
            // Without the key record there is no verdict but an error.
            assert!(matches!(
                check(&signed, &Keys::new())[0].outcome,
                Outcome::TempError(_)
            ));
        }
    }

    #[test]
    fn a_message_with_many_signatures_has_only_its_topmost_checked() {
        let (g, key) = ed25519_key();
        let signer = contoso_signer(&key);
        let good = sign(MESSAGE, &signer, 1_790_000_000).expect("sign");
        // The good signature on top, then a thousand from a thousand domains.
        let mut m = good.into_bytes();
        for i in 0..1000 {
            m.extend_from_slice(
                format!("DKIM-Signature: v=1; a=rsa-sha256; d=d{i}.example; s=s; h=from; bh=AAAA; b=AAAA\r\n")
                    .as_bytes(),
            );
        }
        m.extend_from_slice(MESSAGE);
        let names = key_names(&m);
        assert_eq!(
            names.len(),
            MAX_SIGNATURES_CHECKED,
            "one lookup per checked signature"
        );
        assert_eq!(names.iter().filter(|n| n.contains("d999.")).count(), 0);
        let checked = check(&m, &keys_for("contoso.example", "s1", &g));
        assert_eq!(checked.len(), MAX_SIGNATURES_CHECKED);
        assert_eq!(checked[0].outcome, Outcome::Pass);
        assert_eq!(checked[1].domain, "d0.example");
    }

    #[test]
    fn a_signature_naming_too_many_fields_is_a_permanent_error() {
        let names = vec!["from"; 151].join(":");
        let m = format!(
            "DKIM-Signature: v=1; a=rsa-sha256; d=o.example; s=s; h={names}; bh=AAAA; b=AAAA\r\nFrom: a@o.example\r\n\r\nhi\r\n"
        );
        let checked = check(m.as_bytes(), &Keys::new());
        assert_eq!(
            checked[0].outcome,
            Outcome::PermError("too many signed header fields".into())
        );
    }

    #[test]
    fn a_message_with_hundreds_of_to_fields_gets_a_signature_that_verifies() {
        // An application that writes a To field per recipient: found by the message fuzz
        // target, whose signature named every field and failed our own check (over 150 names).
        let mut text = String::from("From: Ana <ana@contoso.example>\r\n");
        for i in 0..300 {
            text.push_str(&format!("To: user{i}@remote.example\r\n"));
            text.push_str(&format!(
                "List-Unsubscribe-Post: List-Unsubscribe=One-Click {i}\r\n"
            ));
        }
        text.push_str("Subject: hello\r\n\r\nbody\r\n");
        let (g, key) = ed25519_key();
        let field = sign(text.as_bytes(), &contoso_signer(&key), 1_790_000_000).expect("sign");
        let signed = format!("{field}{text}");
        let keys = keys_for("contoso.example", "s1", &g);
        assert_eq!(check(signed.as_bytes(), &keys)[0].outcome, Outcome::Pass);
        // Each field at most four times, the bottom-most, folded into lines of at most 78 columns.
        let h = field
            .split("h=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .expect("h=");
        let names: Vec<&str> = h.split(':').map(str::trim).collect();
        assert_eq!(names.iter().filter(|n| **n == "to").count(), 4, "{h}");
        assert_eq!(names.len(), 1 + 4 + 1 + 4, "{h}");
        let h_lines = field
            .split("\r\n")
            .skip_while(|l| !l.contains(" h="))
            .take_while(|l| !l.contains("bh="));
        assert!(h_lines.clone().count() > 1, "{field}");
        for line in h_lines {
            assert!(line.replace('\t', "        ").len() <= 78, "{line:?}");
        }
        // The last To is signed: changed, the signature fails; the first is not.
        let last = signed.replace("To: user299@", "To: eve@");
        assert!(matches!(
            check(last.as_bytes(), &keys)[0].outcome,
            Outcome::Fail(_)
        ));
        let first = signed.replace("To: user0@", "To: eve@");
        assert_eq!(check(first.as_bytes(), &keys)[0].outcome, Outcome::Pass);
    }

    #[test]
    fn one_body_hash_serves_every_signature_of_the_body() {
        let (g, key) = ed25519_key();
        let signer = contoso_signer(&key);
        let bh = BodyHash::of(MESSAGE);
        // Another header above the same body (an ARC seal, say) has the same body hash.
        let sealed = [&b"ARC-Seal: i=1; a=rsa-sha256; cv=none\r\n"[..], MESSAGE].concat();
        assert_eq!(BodyHash::of(&sealed), bh);
        let shared = sign_with(&sealed, &bh, &signer, 1_790_000_000).expect("sign");
        assert_eq!(shared, sign(&sealed, &signer, 1_790_000_000).expect("sign"));
        let mut signed = shared.into_bytes();
        signed.extend_from_slice(&sealed);
        let keys = keys_for("contoso.example", "s1", &g);
        assert_eq!(check(&signed, &keys)[0].outcome, Outcome::Pass);
        let other = BodyHash::of(b"From: a@b.example\r\n\r\nAnother body\r\n");
        assert_ne!(other, bh);
    }

    #[test]
    fn a_key_of_another_domain_does_not_verify() {
        let g = generate(Algorithm::Ed25519Sha256).expect("key");
        let other = generate(Algorithm::Ed25519Sha256).expect("key");
        let key = SigningKey::from_pkcs8(g.algorithm, &g.private_pkcs8).expect("load");
        let field = sign(
            MESSAGE,
            &Signer {
                domain: "contoso.example",
                selector: "s1",
                key: &key,
            },
            1,
        )
        .expect("sign");
        let signed = [field.as_bytes(), MESSAGE].concat();
        let keys = keys_for("contoso.example", "s1", &other);
        assert!(matches!(check(&signed, &keys)[0].outcome, Outcome::Fail(_)));
        assert!(results_text(&check(&signed, &keys)).starts_with("dkim=fail"));
    }
}
