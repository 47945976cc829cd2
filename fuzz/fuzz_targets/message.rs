//! What the relay reads in a message it has received, whatever bytes the DATA decoder let
//! through: the scanner, the DKIM and ARC checks and the NDR's look at the original header never
//! panic, and a message the relay signs verifies with the key that signed it.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use relayward_dkim::arc::ArcResult;
use relayward_dkim::{Algorithm, BodyHash, KeyAnswer, Keys, Outcome, Signer, SigningKey};
use relayward_smtp::DataDecoder;

struct RunKeys {
    ed25519: SigningKey,
    ed25519_record: String,
    rsa: SigningKey,
    rsa_record: String,
}

/// One key of each kind for the whole run: Ed25519 for the DKIM signature (an RSA one would
/// make each input many times slower and check the same canonicalisation), RSA for the ARC
/// seal (the only kind a seal takes).
fn keys() -> &'static RunKeys {
    static KEYS: OnceLock<RunKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let load = |alg| {
            let made = relayward_dkim::generate(alg).expect("a key");
            let key = SigningKey::from_pkcs8(alg, &made.private_pkcs8).expect("the key just made");
            (key, relayward_dkim::dns_record(alg, &made.public))
        };
        let (ed25519, ed25519_record) = load(Algorithm::Ed25519Sha256);
        let (rsa, rsa_record) = load(Algorithm::RsaSha256);
        RunKeys {
            ed25519,
            ed25519_record,
            rsa,
            rsa_record,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The message as the relay spools it: through the DATA decoder (dot-unstuffed, every line
    // ending in CRLF).
    let mut wire = data.to_vec();
    wire.extend_from_slice(b"\r\n.\r\n");
    let mut decoder = DataDecoder::new(1 << 20);
    if decoder.feed(&wire).is_none() {
        return;
    }
    // With the relay's Received field on top, as every spooled message has it (a first line
    // that starts with a space or a tab continues that field, not a signature put above it).
    let mut message =
        b"Received: from client.example ([192.0.2.1])\r\n\tby relay.example (Relayward) \
        with ESMTP id 0190F3A2B4C5D6E7F8A9;\r\n\tFri, 04 Dec 2026 18:00:00 +0000\r\n"
            .to_vec();
    message.extend_from_slice(&decoder.into_body());

    let _ = relayward_scan::scan(&message);
    // Every key a signature names answers with one key: signatures that name it may pass,
    // others fail, none panics.
    let record = |r: &String| KeyAnswer::Records(vec![r.clone()]);
    let k = keys();
    let answers: Keys = relayward_dkim::key_names(&message)
        .into_iter()
        .map(|name| (name, record(&k.ed25519_record)))
        .collect();
    let _ = relayward_dkim::check(&message, &answers);
    let _ = relayward_dkim::arc::validate(&message, &answers);
    // A message that came with ARC fields of its own, whole or broken, has a chain our seal
    // carries on or cannot mend; one without any gets a chain of our seal alone.
    let (fields, _) = relayward_dkim::canon::split(&message);
    let arc_fields = [
        "ARC-Seal",
        "ARC-Message-Signature",
        "ARC-Authentication-Results",
    ];
    let first_seal = !fields.iter().any(|f| arc_fields.iter().any(|n| f.is(n)));
    let _ = relayward_dkim::arc::without_unsealed_results(&message);
    let end = relayward_dsn::find_headers_end(&message);
    assert!(end <= message.len());
    let _ = relayward_dsn::original_header(&message[..end], "subject");

    // Signed as the relay signs it (the node's `sign_blocking`): the body hashed once, the
    // header section signed, the signature put on top; then it verifies. The relay signs only
    // a message with a From field in its header section (the node's `signing_domain`): a
    // signature must cover From, and verifiers fail one that does not.
    let (fields, _) = relayward_dkim::canon::split(&message[..end]);
    if !fields.iter().any(|f| f.is("From")) {
        return;
    }
    let now = 1_700_000_000;
    let bh = BodyHash::of(&message);
    let signer = Signer {
        domain: "example.com",
        selector: "fuzz",
        key: &k.ed25519,
    };
    let field = relayward_dkim::sign_with(&message[..end], &bh, &signer, now).expect("a signature");
    let signed = [field.as_bytes(), &message].concat();
    let answers: Keys = [(
        "fuzz._domainkey.example.com".to_string(),
        record(&k.ed25519_record),
    )]
    .into();
    let checked = relayward_dkim::check(&signed, &answers);
    assert!(
        matches!(checked.first().map(|c| &c.outcome), Some(Outcome::Pass)),
        "{checked:?}"
    );

    // A forwarded copy of a message that came without ARC fields: results at receipt, a seal at
    // delivery; the chain validates.
    if first_seal {
        let with_results = [
            relayward_dkim::arc::results_field(1, "relay.example", "dkim=none; arc=none")
                .as_bytes(),
            &message,
        ]
        .concat();
        let sealer = Signer {
            domain: "example.com",
            selector: "arc",
            key: &k.rsa,
        };
        let seal =
            relayward_dkim::arc::seal_with(&with_results, &bh, &sealer, now).expect("a seal");
        let sealed = [seal.as_bytes(), &with_results].concat();
        let answers: Keys = [(
            "arc._domainkey.example.com".to_string(),
            record(&k.rsa_record),
        )]
        .into();
        assert_eq!(
            relayward_dkim::arc::validate(&sealed, &answers),
            ArcResult::Pass
        );
    }
});
