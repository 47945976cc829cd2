//! `smtpload`: a small SMTP load generator for the benchmarks (BENCHMARKS.md).
//!
//! `send` drives N connections that each send messages back to back (pipelined MAIL/RCPT/DATA)
//! and reports throughput and the time from the end of DATA to the server's reply. `idle` opens
//! N connections, says EHLO, and holds them so the server's memory can be read. `steps` times
//! each step of one client's dialogue (see `steps.rs`).

mod steps;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Send messages and report throughput and latency.
    Send {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 20)]
        connections: usize,
        #[arg(long, default_value_t = 10_000)]
        messages: u64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 5_000)]
        size: usize,
        /// Messages per second over all connections; 0 means as fast as possible.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
        #[arg(long, default_value = "bench@contoso.example")]
        from: String,
        #[arg(long, default_value = "sink@remote.example")]
        to: String,
        /// Recipients per message: `to`, then `to` with 2, 3, … after its local part.
        #[arg(long, default_value_t = 1)]
        recipients: usize,
        /// A new connection for every message (QUIT after each), as most devices and
        /// applications send; without it each connection sends its messages back to back.
        #[arg(long)]
        connect_each: bool,
        /// Write one line per message to this file: seconds since the start at the end of
        /// DATA, then milliseconds until the reply (to see when slow replies come).
        #[arg(long)]
        trace: Option<std::path::PathBuf>,
    },
    /// One client, a connection per message, each command waiting for its reply: the time
    /// each step of the dialogue takes (p50/mean/p90 in µs).
    Steps {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 3_000)]
        messages: u64,
        /// Body size in bytes.
        #[arg(long, default_value_t = 1_000)]
        size: usize,
        #[arg(long, default_value = "bench@contoso.example")]
        from: String,
        #[arg(long, default_value = "sink@remote.example")]
        to: String,
    },
    /// Open idle connections and hold them.
    Idle {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long, default_value_t = 10_000)]
        connections: usize,
        /// Seconds to hold them once all are open.
        #[arg(long, default_value_t = 10)]
        hold: u64,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Send {
            target,
            connections,
            messages,
            size,
            rate,
            from,
            to,
            recipients,
            connect_each,
            trace,
        } => {
            let load = Load {
                target,
                connections,
                messages,
                size,
                rate,
                recipients: recipients.max(1),
                connect_each,
            };
            send(load, &from, &to, trace.as_deref()).await
        }
        Cmd::Steps {
            target,
            messages,
            size,
            from,
            to,
        } => steps::steps(target, messages, size, &from, &to),
        Cmd::Idle {
            target,
            connections,
            hold,
        } => idle(target, connections, hold).await,
    }
}

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
}

impl Conn {
    async fn open(target: SocketAddr) -> Result<Conn> {
        let s = TcpStream::connect(target)
            .await
            .with_context(|| format!("connect {target}"))?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        let mut c = Conn {
            r: BufReader::new(r),
            w,
        };
        c.expect(220).await?;
        c.w.write_all(b"EHLO bench.example\r\n").await?;
        c.expect(250).await?;
        Ok(c)
    }

    async fn reply(&mut self) -> Result<u16> {
        let mut line = String::new();
        loop {
            line.clear();
            if self.r.read_line(&mut line).await? == 0 {
                bail!("connection closed");
            }
            if line.len() < 4 {
                bail!("bad reply {line:?}");
            }
            if line.as_bytes()[3] == b' ' {
                return Ok(line[..3].parse()?);
            }
        }
    }

    async fn expect(&mut self, code: u16) -> Result<()> {
        let got = self.reply().await?;
        if got != code {
            bail!("expected {code}, got {got}");
        }
        Ok(())
    }
}

/// The shape of a `send` run.
#[derive(Clone, Copy)]
struct Load {
    target: SocketAddr,
    connections: usize,
    messages: u64,
    size: usize,
    rate: f64,
    recipients: usize,
    connect_each: bool,
}

async fn send(load: Load, from: &str, to: &str, trace: Option<&std::path::Path>) -> Result<()> {
    let Load {
        target,
        connections,
        messages,
        size,
        rate,
        recipients,
        connect_each,
    } = load;
    let body = message(size, from);
    let mut envelope = format!("MAIL FROM:<{from}>\r\n");
    let (local, domain) = to.rsplit_once('@').unwrap_or((to, "remote.example"));
    for i in 1..=recipients {
        let n = if i == 1 { String::new() } else { i.to_string() };
        envelope.push_str(&format!("RCPT TO:<{local}{n}@{domain}>\r\n"));
    }
    envelope.push_str("DATA\r\n");
    let body = Arc::new(body);
    let envelope = Arc::new(envelope);
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (body, envelope, next, failed) =
            (body.clone(), envelope.clone(), next.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut kept = if connect_each {
                None
            } else {
                Some(Conn::open(target).await?)
            };
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= messages {
                    break;
                }
                if rate > 0.0 {
                    let due = start + Duration::from_secs_f64(n as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let mut fresh = None;
                let c = match kept.as_mut() {
                    Some(c) => c,
                    None => fresh.insert(Conn::open(target).await?),
                };
                c.w.write_all(envelope.as_bytes()).await?;
                let mut replies = Vec::with_capacity(recipients + 2);
                for _ in 0..recipients + 2 {
                    replies.push(c.reply().await?);
                }
                let accepted = replies[..recipients + 1].iter().all(|&r| r == 250);
                if !accepted || replies[recipients + 1] != 354 {
                    failed.fetch_add(1, Ordering::Relaxed);
                    c.w.write_all(b"RSET\r\n").await?;
                    c.reply().await?;
                    continue;
                }
                c.w.write_all(body.as_bytes()).await?;
                let t = Instant::now();
                let code = c.reply().await?;
                latencies.push((t - start, t.elapsed()));
                if code != 250 {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(mut c) = fresh {
                    c.w.write_all(b"QUIT\r\n").await?;
                    c.reply().await?;
                }
            }
            if let Some(mut c) = kept {
                let _ = c.w.write_all(b"QUIT\r\n").await;
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed();
    if let Some(path) = trace {
        let mut by_time = all.clone();
        by_time.sort();
        let lines: String = by_time
            .iter()
            .map(|(at, took)| {
                format!(
                    "{:.4} {:.3}\n",
                    at.as_secs_f64(),
                    took.as_secs_f64() * 1000.0
                )
            })
            .collect();
        std::fs::write(path, lines).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut all: Vec<Duration> = all.into_iter().map(|(_, took)| took).collect();
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1000.0
    };
    let ok = all.len() as u64 - failed.load(Ordering::Relaxed).min(all.len() as u64);
    println!(
        "sent={} accepted={} failed={} seconds={:.3} rate={:.1}/s p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        all.len(),
        ok,
        failed.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        ok as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// A message of about `size` bytes from `from` (its header's From as well as its envelope's:
/// what the relay signs for follows it), ending with the end-of-data mark.
fn message(size: usize, from: &str) -> String {
    let mut body = format!("Subject: benchmark\r\nFrom: {from}\r\n\r\n");
    while body.len() < size {
        body.push_str("The quick brown fox jumps over the lazy dog, again and again.\r\n");
    }
    body.push_str(".\r\n");
    body
}

/// Opens up to `connections` and holds them for `hold` seconds. A relay that refuses one (a
/// `421` once its listener's cap is reached, as where the open-file limit is low) ends the
/// opening: the ones already open are held and measured, and the refusal is reported.
async fn idle(target: SocketAddr, connections: usize, hold: u64) -> Result<()> {
    let mut conns = Vec::with_capacity(connections);
    let start = Instant::now();
    let mut stopped = String::new();
    for i in 0..connections {
        match Conn::open(target).await {
            Ok(c) => conns.push(c),
            Err(e) if i > 0 => {
                stopped = format!(" stopped_at={} reason={:?}", i + 1, format!("{e:#}"));
                break;
            }
            Err(e) => bail!("connection {i} failed: {e:#}"),
        }
    }
    println!(
        "idle_connections={} opened_in_s={:.2}{stopped}",
        conns.len(),
        start.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(hold)).await;
    Ok(())
}
