//! Scan cost per message with the built-in scanner: median and p99 for a 5 KB and a
//! 500 KB message, each scanned many times through one `Scanner` (so the bulk tracker fills as
//! it would on a relay). Prints the figures BENCHMARKS.md records.
//!
//!   cargo build --release -p relayward-bench && target/release/scanbench

use std::time::Instant;

use clap::Parser;
use relayward_scan::{Envelope, Scanner};

#[derive(Parser)]
struct Cli {
    /// Scans per message size.
    #[arg(long, default_value_t = 20_000)]
    runs: usize,
}

const PARAGRAPH: &str = "Thanks for the quick turnaround on the draft. I went through the \
    figures for the third quarter and the numbers for the northern region still look low to me; \
    could you check whether the returns from October were booked twice? Once that is settled I \
    would like to send the report to the board on Friday, together with the updated forecast and \
    the notes from our call with the auditors. ";

/// A business message of about `size` bytes: a text part and an HTML alternative, and past
/// 20 KB an attached file (base64) making up the rest, as large mail usually is.
fn message(size: usize, n: usize) -> Vec<u8> {
    let mut text = format!("Hello Dana,\r\n\r\nReference {n}.\r\n\r\n");
    let text_target = size.min(20_000) * 2 / 5;
    while text.len() < text_target {
        text.push_str(PARAGRAPH);
        text.push_str("\r\n\r\n");
    }
    let html = format!(
        "<html><body><p>{}</p><p>See <a href=\"https://www.contoso.example/q3\">the report</a>.</p></body></html>",
        text.replace("\r\n\r\n", "</p><p>")
    );
    let mut m = format!(
        "From: Alice Martin <alice@contoso.example>\r\nTo: Dana Lee <dana@fabrikam.example>\r\n\
         Subject: Q3 figures\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <q3-{n}@contoso.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n--mix\r\n\
         Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n--alt\r\n\
         Content-Type: text/html; charset=utf-8\r\n\r\n{html}\r\n--alt--\r\n"
    );
    if m.len() + 200 < size {
        m.push_str(
            "--mix\r\nContent-Type: application/pdf; name=\"q3.pdf\"\r\n\
             Content-Disposition: attachment; filename=\"q3.pdf\"\r\n\
             Content-Transfer-Encoding: base64\r\n\r\n",
        );
        let mut i = 0u32;
        while m.len() + 20 < size {
            // 76-character base64 lines of varied content.
            let line: String = (0..76)
                .map(|k| {
                    let v = (i.wrapping_mul(2_654_435_761).wrapping_add(k * 40_503) >> 7) % 64;
                    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[v as usize]
                        as char
                })
                .collect();
            m.push_str(&line);
            m.push_str("\r\n");
            i += 1;
        }
    }
    m.push_str("--mix--\r\n");
    m.into_bytes()
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

fn main() {
    let cli = Cli::parse();
    let accepted = |d: &str| d == "contoso.example";
    for size in [5_000usize, 500_000] {
        let scanner = Scanner::default();
        // Distinct messages (their reference differs), prepared before timing.
        let variants: Vec<Vec<u8>> = (0..64).map(|n| message(size, n)).collect();
        let runs = if size > 100_000 {
            cli.runs / 10
        } else {
            cli.runs
        };
        let mut times = Vec::with_capacity(runs);
        let mut verdicts = std::collections::BTreeMap::new();
        for r in 0..runs {
            let m = &variants[r % variants.len()];
            let env = Envelope {
                mail_from: "alice@contoso.example",
                recipients: 1,
                external_recipients: 1,
                accepted: Some(&accepted),
            };
            let t = Instant::now();
            let s = scanner.scan(m, &env, 1_795_000_000_000 + r as i64);
            times.push(t.elapsed().as_nanos() as u64);
            *verdicts.entry(s.verdict.as_str()).or_insert(0u64) += 1;
        }
        times.sort_unstable();
        println!(
            "{} KB message ({} bytes), {runs} scans: median {:.1} µs, p99 {:.1} µs, max {:.1} µs; verdicts {verdicts:?}",
            size / 1000,
            variants[0].len(),
            percentile(&times, 0.5) as f64 / 1000.0,
            percentile(&times, 0.99) as f64 / 1000.0,
            times.last().copied().unwrap_or(0) as f64 / 1000.0,
        );
    }
}
