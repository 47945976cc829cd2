//! `smtpload steps`: one client sending messages one after another, a new connection for each
//! and every command waiting for its reply (no pipelining), as Postfix's `smtp-source` sends
//! without `-d`. It times each step of the dialogue and prints, per step, the median, mean and
//! 90th percentile in microseconds: where one session's time per message goes. Blocking
//! sockets on one thread, so the client adds no wake-ups of its own.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const STEPS: [&str; 7] = [
    "connect+220",
    "EHLO",
    "MAIL",
    "RCPT",
    "DATA",
    "body",
    "QUIT",
];

pub fn steps(target: SocketAddr, messages: u64, size: usize, from: &str, to: &str) -> Result<()> {
    let commands: [(String, u16); 6] = [
        ("EHLO bench.example\r\n".into(), 250),
        (format!("MAIL FROM:<{from}>\r\n"), 250),
        (format!("RCPT TO:<{to}>\r\n"), 250),
        ("DATA\r\n".into(), 354),
        (crate::message(size, from), 250),
        ("QUIT\r\n".into(), 221),
    ];
    let mut took: Vec<Vec<Duration>> = vec![Vec::new(); STEPS.len()];
    let start = Instant::now();
    for _ in 0..messages {
        let t = Instant::now();
        let s = TcpStream::connect(target).with_context(|| format!("connect {target}"))?;
        s.set_nodelay(true)?;
        let mut w = s.try_clone()?;
        let mut r = BufReader::new(s);
        expect(&mut r, 220, STEPS[0])?;
        took[0].push(t.elapsed());
        for (i, (command, code)) in commands.iter().enumerate() {
            let t = Instant::now();
            w.write_all(command.as_bytes())?;
            expect(&mut r, *code, STEPS[i + 1])?;
            took[i + 1].push(t.elapsed());
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mut line = format!("msg/s={:.0}", messages as f64 / elapsed);
    let mut mean_sum = 0.0;
    for (name, mut t) in STEPS.iter().zip(took) {
        t.sort();
        let mean = t.iter().map(|&d| us(d)).sum::<f64>() / t.len().max(1) as f64;
        mean_sum += mean;
        let at = |p: usize| {
            t.get((t.len() * p / 100).min(t.len().saturating_sub(1)))
                .map_or(0.0, |&d| us(d))
        };
        line.push_str(&format!(" {name}={:.0}/{mean:.0}/{:.0}", at(50), at(90)));
    }
    println!("{line} (µs: p50/mean/p90) steps_mean_sum_us={mean_sum:.0}");
    Ok(())
}

/// Reads one reply (all its lines) and checks its code.
fn expect(r: &mut BufReader<TcpStream>, code: u16, step: &str) -> Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            bail!("{step}: connection closed");
        }
        if line.len() < 4 {
            bail!("{step}: bad reply {line:?}");
        }
        if line.as_bytes()[3] == b' ' {
            let got: u16 = line[..3]
                .parse()
                .with_context(|| format!("{step}: {line:?}"))?;
            if got != code {
                bail!("{step} answered {got}, expected {code}");
            }
            return Ok(());
        }
    }
}
