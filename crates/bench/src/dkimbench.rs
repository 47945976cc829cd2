//! What signing costs in the delivery path: one DKIM signature with RSA-2048 and
//! with Ed25519, an ARC seal (message signature and seal, RSA), what a message costs (both
//! signatures, with a body hash each or one shared), and checking a signature, over a 1 KB, a
//! 5 KB and a 100 KB message. Median, mean and p99 per operation (the mean is the figure to set
//! against a relay's CPU per message: the slow runs lift it above the median); BENCHMARKS.md
//! records them.
//!
//!   cargo build --release -p relayward-bench && target/release/dkimbench

use std::time::Instant;

use clap::Parser;
use relayward_dkim::{
    Algorithm, BodyHash, KeyAnswer, Keys, Signer, SigningKey, arc, check, dns_record, generate,
    sign, sign_with,
};

#[derive(Parser)]
struct Cli {
    /// Runs per operation and size.
    #[arg(long, default_value_t = 2_000)]
    runs: usize,
}

fn message(size: usize) -> Vec<u8> {
    let mut m = String::from(
        "From: Ext Sender <ext@outside.example>\r\nTo: Ana <ana@contoso.example>\r\n\
         Subject: Minutes of the meeting\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <m1@outside.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    let mut i = 0;
    while m.len() < size {
        m.push_str(&format!(
            "Line {i} of the minutes: the budget for the next quarter was agreed as proposed.\r\n"
        ));
        i += 1;
    }
    m.into_bytes()
}

fn report(what: &str, mut times: Vec<u128>) {
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let mean = times.iter().sum::<u128>() as f64 / times.len().max(1) as f64;
    println!(
        "{what:<44} median {:>7.1} µs   mean {:>7.1} µs   p99 {:>7.1} µs",
        at(0.5) as f64 / 1000.0,
        mean / 1000.0,
        at(0.99) as f64 / 1000.0
    );
}

fn time(runs: usize, mut f: impl FnMut()) -> Vec<u128> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_nanos()
        })
        .collect()
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rsa = generate(Algorithm::RsaSha256)?;
    let ed = generate(Algorithm::Ed25519Sha256)?;
    let rsa_key = SigningKey::from_pkcs8(rsa.algorithm, &rsa.private_pkcs8)?;
    let ed_key = SigningKey::from_pkcs8(ed.algorithm, &ed.private_pkcs8)?;
    let rsa_signer = Signer {
        domain: "contoso.example",
        selector: "r",
        key: &rsa_key,
    };
    let ed_signer = Signer {
        domain: "contoso.example",
        selector: "e",
        key: &ed_key,
    };
    let mut keys = Keys::new();
    keys.insert(
        "r._domainkey.contoso.example".into(),
        KeyAnswer::Records(vec![dns_record(rsa.algorithm, &rsa.public)]),
    );
    let t = Instant::now();
    let n = 5;
    for _ in 0..n {
        generate(Algorithm::RsaSha256)?;
    }
    println!(
        "RSA-2048 key generation: {:.0} ms each ({n} keys)",
        t.elapsed().as_secs_f64() * 1000.0 / n as f64
    );
    for size in [1_000, 5_000, 100_000] {
        let m = message(size);
        println!("-- {} KB message", size / 1000);
        report(
            "DKIM sign, RSA-2048",
            time(cli.runs, || {
                let _ = sign(&m, &rsa_signer, 1_795_000_000);
            }),
        );
        report(
            "DKIM sign, Ed25519",
            time(cli.runs, || {
                let _ = sign(&m, &ed_signer, 1_795_000_000);
            }),
        );
        let with_aar = [
            arc::results_field(1, "relay.test", "dkim=none;\r\n\tarc=none").as_bytes(),
            &m,
        ]
        .concat();
        report(
            "ARC seal (message signature + seal, RSA)",
            time(cli.runs, || {
                let _ = arc::seal(&with_aar, &rsa_signer, 1_795_000_000);
            }),
        );
        // What the relay does per outbound message: both keys' signatures; each hashing the
        // body itself (before session 11), or one body hash for both (now).
        report(
            "message: RSA + Ed25519, a body hash each",
            time(cli.runs, || {
                let _ = sign(&m, &rsa_signer, 1_795_000_000);
                let _ = sign(&m, &ed_signer, 1_795_000_000);
            }),
        );
        report(
            "message: RSA + Ed25519, one body hash",
            time(cli.runs, || {
                let bh = BodyHash::of(&m);
                let _ = sign_with(&m, &bh, &rsa_signer, 1_795_000_000);
                let _ = sign_with(&m, &bh, &ed_signer, 1_795_000_000);
            }),
        );
        report(
            "forwarded copy: seal + 2 signatures, one hash",
            time(cli.runs, || {
                let bh = BodyHash::of(&with_aar);
                let _ = arc::seal_with(&with_aar, &bh, &rsa_signer, 1_795_000_000);
                let _ = sign_with(&with_aar, &bh, &rsa_signer, 1_795_000_000);
                let _ = sign_with(&with_aar, &bh, &ed_signer, 1_795_000_000);
            }),
        );
        let signed = [sign(&m, &rsa_signer, 1_795_000_000)?.as_bytes(), &m].concat();
        report(
            "DKIM check, RSA-2048 (key record given)",
            time(cli.runs, || {
                let _ = check(&signed, &keys);
            }),
        );
    }
    Ok(())
}
