//! Our signatures and seals, checked by dkimpy (PyPI), a verifier written independently of ours.
//! Outside CI a machine without dkimpy skips loudly; with `CI=true` that is a failure.

use relayward_dkim::{Algorithm, Signer, SigningKey, arc, dns_record, generate, sign};

const MESSAGE: &str = "From: Ext Sender <ext@outside.example>\r\nTo: Ana <ana@contoso.example>\r\nSubject: Minutes of   the meeting\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m1@outside.example>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Ana,\r\n\r\nthe minutes are below.\t \r\n\r\n-- \r\nExt\r\n\r\n";

fn dkimpy_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import dkim, nacl"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "dkimpy and PyNaCl are required in CI (scripts/test installs them)"
        );
        eprintln!(
            "SKIPPED: python3 with dkimpy and PyNaCl is not installed (pip install dkimpy pynacl)"
        );
    }
    ok
}

/// The same head with a body that needs no change to be canonical (the signer's one-pass way);
/// `MESSAGE`'s body has a tab and a space at a line's end (the line-by-line way).
const PLAIN: &str = "From: Ext Sender <ext@outside.example>\r\nTo: Ana <ana@contoso.example>\r\nSubject: Minutes\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m2@outside.example>\r\n\r\nHello Ana,\r\n\r\nthe minutes are below.\r\n.leading dot\r\n\r\n\r\n";

#[test]
fn dkimpy_verifies_both_signatures_and_the_arc_seal() {
    if !dkimpy_available() {
        return;
    }
    // And a head with a To field per recipient and long repeated names: the signatures name
    // the bottom-most four of each, in an h= folded over several lines.
    let mut repeated = String::from("From: Ext Sender <ext@outside.example>\r\n");
    for i in 0..40 {
        repeated.push_str(&format!(
            "To: user{i}@contoso.example\r\nContent-Description: part {i}\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ));
    }
    repeated.push_str("Subject: many\r\n\r\nHello.\r\n");
    for (n, message) in [MESSAGE, PLAIN, &repeated].into_iter().enumerate() {
        check(message, n);
    }
}

fn check(original: &str, n: usize) {
    let rsa = generate(Algorithm::RsaSha256).expect("rsa key");
    let ed = generate(Algorithm::Ed25519Sha256).expect("ed25519 key");
    let rsa_key = SigningKey::from_pkcs8(rsa.algorithm, &rsa.private_pkcs8).expect("load");
    let ed_key = SigningKey::from_pkcs8(ed.algorithm, &ed.private_pkcs8).expect("load");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;

    // As the relay forwards: results at receipt, then seal and signatures at delivery.
    let with_aar = format!(
        "{}{original}",
        arc::results_field(1, "relay.test", "dkim=none; arc=none")
    );
    let rsa_signer = Signer {
        domain: "contoso.example",
        selector: "rw-rsa",
        key: &rsa_key,
    };
    let sealed = arc::seal(with_aar.as_bytes(), &rsa_signer, now).expect("seal");
    let message = format!("{sealed}{with_aar}");
    let d1 = sign(message.as_bytes(), &rsa_signer, now).expect("rsa sign");
    let ed_signer = Signer {
        domain: "contoso.example",
        selector: "rw-ed",
        key: &ed_key,
    };
    let d2 = sign(message.as_bytes(), &ed_signer, now).expect("ed sign");
    let message = format!("{d2}{d1}{message}");

    let dir = std::env::temp_dir().join(format!("rw-dkimpy-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let msg_path = dir.join("message.eml");
    let rec_path = dir.join("records.json");
    std::fs::write(&msg_path, &message).expect("write message");
    let records = format!(
        "{{\"rw-rsa._domainkey.contoso.example\": \"{}\", \"rw-ed._domainkey.contoso.example\": \"{}\"}}",
        dns_record(rsa.algorithm, &rsa.public),
        dns_record(ed.algorithm, &ed.public)
    );
    std::fs::write(&rec_path, records).expect("write records");
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dkimpy_check.py"
        ))
        .arg(&msg_path)
        .arg(&rec_path)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dkimpy_check failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        stdout.contains(r#"{"ok": true, "d": "contoso.example", "a": "ed25519-sha256"}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains(r#"{"ok": true, "d": "contoso.example", "a": "rsa-sha256"}"#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""cv": "pass""#), "{stdout}");
}
