//! What the relay reads in a message it has received, whatever bytes the DATA decoder let
//! through: the scanner and the DKIM and ARC checks never panic, a report of its failure never
//! holds a bare CR or LF, and the relay's signature and seal on it verify.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use relayward_dkim::arc::ArcResult;
use relayward_dkim::{Algorithm, BodyHash, KeyAnswer, Keys, Outcome, Signer, SigningKey};
use relayward_dsn::{NdrInput, ReportKind, build_ndr};
use relayward_smtp::DataDecoder;
use relayward_spool::{Envelope, RcptState, Recipient};

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
    ndr(&message, data);

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

/// The report of a failure for this message, with the remote server's words taken from the
/// input's first line: never a bare CR or LF, however the original or the words are made.
fn ndr(message: &[u8], data: &[u8]) {
    let words = data.split(|&b| b == b'\n').next().unwrap_or_default();
    let words = String::from_utf8_lossy(&words[..words.len().min(512)]);
    let mut failed = Recipient::new("bob@remote.example");
    failed.orcpt = Some(format!("rfc822;{words}"));
    failed.state = RcptState::Failed {
        reply: format!("550 5.1.1 {words}"),
        remote: Some(words.to_string()),
    };
    let env = Envelope {
        id: "0190F3A2B4C5D6E7F8A9".into(),
        received_at: 1_700_000_000,
        mail_from: "ana@contoso.example".into(),
        ret: None,
        env_id: Some(words.to_string()),
        smtputf8: true,
        body_8bit: true,
        tenant: Some("contoso".into()),
        origin: "connector:fuzz".into(),
        client_ip: "192.0.2.1".into(),
        helo: words.to_string(),
        recipients: vec![failed],
        attempts: 1,
        next_attempt: 0,
        is_report: false,
        delay_notified: false,
        high_risk: String::new(),
        held: false,
    };
    let failed: Vec<&Recipient> = env.recipients.iter().collect();
    for language in ["en", "es"] {
        let report = build_ndr(&NdrInput {
            reporting_mta: "relay.example",
            env: &env,
            to: &env.mail_from,
            failed: &failed,
            original: message,
            date: "Mon, 13 Nov 2023 22:13:20 +0000".into(),
            arrival_date: "Mon, 13 Nov 2023 22:13:20 +0000".into(),
            message_id: "N1@relay.example".into(),
            language,
            expire_hours: 48,
            kind: ReportKind::Failure,
        });
        for (i, &b) in report.iter().enumerate() {
            let bare = match b {
                b'\r' => report.get(i + 1) != Some(&b'\n'),
                b'\n' => i == 0 || report[i - 1] != b'\r',
                _ => false,
            };
            assert!(!bare, "a bare CR or LF at {i} of the report");
        }
    }
}
