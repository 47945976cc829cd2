//! `soak`: the relay under faults, from outside (bench/soak.sh, BENCHMARKS.md, RELIABILITY.md).
//!
//! `kill`: sends mail from several connections while the relay is killed with SIGKILL at
//! random moments, again and again; then lets a last start drain the queue and compares what
//! was acknowledged with what arrived: lost (must be 0) and duplicated.
//!
//! `dead`: the rate of mail to a healthy receiver alone, then beside a backlog for a
//! destination where nothing listens and one that accepts connections and never answers.
//!
//! Both run the relay binary given, with a configuration of their own, and their own receiving
//! server (each message carries `X-Soak: <n>`, which the receiver records).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Cli {
    /// The relayward binary to run.
    #[arg(long, default_value = "target/release/relayward")]
    relay: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Kill {
        #[arg(long, default_value_t = 20)]
        runs: u32,
        #[arg(long, default_value_t = 10)]
        connections: usize,
    },
    Dead {
        #[arg(long, default_value_t = 1500)]
        backlog: usize,
        #[arg(long, default_value_t = 5000)]
        messages: usize,
    },
    /// Queues messages while the receiver is down, brings it up, and reports the relay's
    /// memory before, at the peak and after the drain, and the database's size per message.
    Drain {
        #[arg(long, default_value_t = 100_000)]
        messages: usize,
    },
}

/// `X-Soak` numbers received, with how many times each came.
type Seen = Arc<Mutex<HashMap<u64, u32>>>;

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Kill { runs, connections } => kill(&cli.relay, runs, connections).await,
        Cmd::Dead { backlog, messages } => dead(&cli.relay, backlog, messages).await,
        Cmd::Drain { messages } => drain(&cli.relay, messages).await,
    }
}

/// A receiving SMTP server that takes everything and records each message's `X-Soak`.
async fn receiver() -> Result<(SocketAddr, Seen)> {
    receiver_on("127.0.0.1:0".parse()?).await
}

async fn receiver_on(at: SocketAddr) -> Result<(SocketAddr, Seen)> {
    let listener = TcpListener::bind(at).await?;
    let addr = listener.local_addr()?;
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let s = s.clone();
            tokio::spawn(async move {
                let _ = serve(sock, s).await;
            });
        }
    });
    Ok((addr, seen))
}

async fn serve(sock: TcpStream, seen: Seen) -> Result<()> {
    let _ = sock.set_nodelay(true);
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    w.write_all(b"220 soak\r\n").await?;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.to_ascii_uppercase();
        if cmd.starts_with("DATA") {
            w.write_all(b"354 go\r\n").await?;
            let mut tag = None;
            loop {
                line.clear();
                if r.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" {
                    break;
                }
                if let Some(v) = line.strip_prefix("X-Soak: ") {
                    tag = v.trim().parse::<u64>().ok();
                }
            }
            if let (Some(n), Ok(mut s)) = (tag, seen.lock()) {
                *s.entry(n).or_default() += 1;
            }
            w.write_all(b"250 ok\r\n").await?;
        } else if cmd.starts_with("EHLO") {
            w.write_all(b"250-soak\r\n250 8BITMIME\r\n").await?;
        } else if cmd.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            w.write_all(b"250 ok\r\n").await?;
        }
    }
}

struct Relay {
    child: Child,
    relay: SocketAddr,
}

fn write_config(dir: &Path, body: &str) -> Result<PathBuf> {
    let path = dir.join("relayward.toml");
    std::fs::write(
        &path,
        format!(
            "[smtp]\nrelay_listen = \"127.0.0.1:0\"\nsubmission_listen = \"127.0.0.1:0\"\nhostname = \"soak.example\"\n[http]\nlisten = \"127.0.0.1:0\"\n[storage]\ndata_dir = \"{}\"\n[scan]\nbulk_recipients = 100000000\n{body}",
            dir.join("data").display()
        ),
    )?;
    Ok(path)
}

fn start(bin: &Path, config: &Path) -> Result<Relay> {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .env("RELAYWARD_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(out));
    let line = lines.next().context("no ready line")??;
    std::thread::spawn(move || for _ in lines {});
    let relay = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("relay="))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no relay= in {line}"))?;
    Ok(Relay { child, relay })
}

async fn reply(r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>) -> Result<u16> {
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            bail!("closed");
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0));
        }
    }
}

/// Sends messages numbered from `next` to `rcpt` until `stop`, or the connection fails;
/// returns the numbers acknowledged with 250.
async fn sender(
    addr: SocketAddr,
    rcpt: String,
    next: Arc<AtomicU64>,
    until: Instant,
    limit: u64,
) -> Vec<u64> {
    let mut acked = Vec::new();
    let Ok(sock) = TcpStream::connect(addr).await else {
        return acked;
    };
    let _ = sock.set_nodelay(true);
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    let run = async {
        reply(&mut r).await?;
        w.write_all(b"EHLO soak.client\r\n").await?;
        reply(&mut r).await?;
        while Instant::now() < until {
            let n = next.fetch_add(1, Ordering::Relaxed);
            if n >= limit {
                break;
            }
            let msg = format!("MAIL FROM:<soak@contoso.example>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n");
            w.write_all(msg.as_bytes()).await?;
            for _ in 0..3 {
                reply(&mut r).await?;
            }
            let body = format!(
                "From: soak@contoso.example\r\nSubject: soak {n}\r\nX-Soak: {n}\r\n\r\n{}\r\n.\r\n",
                "s".repeat(1500)
            );
            w.write_all(body.as_bytes()).await?;
            if reply(&mut r).await? == 250 {
                acked.push(n);
            }
        }
        anyhow::Ok(())
    };
    let _ = run.await;
    acked
}

async fn send_for(
    addr: SocketAddr,
    rcpt: &str,
    connections: usize,
    next: Arc<AtomicU64>,
    until: Instant,
    limit: u64,
) -> Vec<u64> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..connections {
        tasks.spawn(sender(addr, rcpt.to_string(), next.clone(), until, limit));
    }
    let mut acked = Vec::new();
    while let Some(r) = tasks.join_next().await {
        acked.extend(r.unwrap_or_default());
    }
    acked
}

async fn kill(bin: &Path, runs: u32, connections: usize) -> Result<()> {
    let (rx, seen) = receiver().await?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            "[delivery]\nsmart_host = \"{rx}\"\nretry_schedule = [\"1s\"]\n[[tenants]]\nname = \"contoso\"\ndomains = [ {{ name = \"contoso.example\", kind = \"authoritative\", verified = true }} ]\nconnectors = [ {{ name = \"on-prem\", ips = [\"127.0.0.1/32\"] }} ]\n"
        ),
    )?;
    let next = Arc::new(AtomicU64::new(0));
    let mut acked: Vec<u64> = Vec::new();
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let started = Instant::now();
    let mut sending = Duration::ZERO;
    for run in 0..runs {
        let mut relay = start(bin, &config)?;
        // Kill it after 0.5 to 2.5 s of load, at a moment nobody chose.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = Duration::from_millis(500 + seed % 2000);
        let t = Instant::now();
        let until = t + Duration::from_secs(30);
        let load = tokio::spawn(send_for(
            relay.relay,
            "x@remote.example",
            connections,
            next.clone(),
            until,
            u64::MAX,
        ));
        tokio::time::sleep(after).await;
        relay.child.kill()?;
        let _ = relay.child.wait();
        sending += t.elapsed();
        let got = load.await.unwrap_or_default();
        println!(
            "run {}: killed after {:.2} s, {} acknowledged",
            run + 1,
            after.as_secs_f64(),
            got.len()
        );
        acked.extend(got);
    }
    // A last start delivers whatever is left.
    let mut relay = start(bin, &config)?;
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let all = seen
            .lock()
            .map(|s| acked.iter().all(|n| s.contains_key(n)))
            .unwrap_or(false);
        if all || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    relay.child.kill()?;
    let _ = relay.child.wait();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let lost = acked.iter().filter(|n| !seen.contains_key(n)).count();
    let duplicated: u32 = seen.values().map(|c| c.saturating_sub(1)).sum();
    println!(
        "kill -9 soak: runs={runs} connections={connections} acknowledged={} lost={lost} duplicated={duplicated} acceptance_rate={:.0}/s total_seconds={:.1}",
        acked.len(),
        acked.len() as f64 / sending.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if lost > 0 {
        bail!("{lost} acknowledged messages were lost");
    }
    Ok(())
}

async fn dead(bin: &Path, backlog: usize, messages: usize) -> Result<()> {
    let (rx, seen) = receiver().await?;
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let tarpit = TcpListener::bind("127.0.0.1:0").await?;
    let tarpit_addr = tarpit.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = tarpit.accept().await {
            held.push(s);
        }
    });
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            "[delivery]\nretry_schedule = [\"1s\"]\n[[tenants]]\nname = \"t\"\ndomains = [ {{ name = \"healthy.example\", kind = \"internal_relay\", verified = true }}, {{ name = \"dead.example\", kind = \"internal_relay\", verified = true }}, {{ name = \"tarpit.example\", kind = \"internal_relay\", verified = true }} ]\nroutes = [ {{ domain = \"healthy.example\", host = \"{rx}\" }}, {{ domain = \"dead.example\", host = \"{dead}\" }}, {{ domain = \"tarpit.example\", host = \"{tarpit_addr}\" }} ]\n"
        ),
    )?;
    let mut relay = start(bin, &config)?;
    let next = Arc::new(AtomicU64::new(0));
    let far = Instant::now() + Duration::from_secs(3600);
    let healthy = |limit: u64| {
        let next = next.clone();
        let seen = seen.clone();
        let addr = relay.relay;
        async move {
            let t = Instant::now();
            let acked = send_for(addr, "someone@healthy.example", 10, next, far, limit).await;
            let deadline = Instant::now() + Duration::from_secs(300);
            while Instant::now() < deadline {
                let done = seen
                    .lock()
                    .map(|s| acked.iter().all(|n| s.contains_key(n)))
                    .unwrap_or(false);
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            acked.len() as f64 / t.elapsed().as_secs_f64()
        }
    };
    let alone = healthy(messages as u64).await;
    let start_backlog = next.load(Ordering::Relaxed);
    for rcpt in ["someone@dead.example", "someone@tarpit.example"] {
        let limit = next.load(Ordering::Relaxed) + backlog as u64;
        send_for(relay.relay, rcpt, 10, next.clone(), far, limit).await;
    }
    let queued = next.load(Ordering::Relaxed) - start_backlog;
    let beside = healthy(next.load(Ordering::Relaxed) + messages as u64).await;
    relay.child.kill()?;
    let _ = relay.child.wait();
    println!(
        "dead-destination soak: healthy alone {alone:.0} msg/s; beside {queued} queued for a dead and a silent destination {beside:.0} msg/s ({:.0}%)",
        100.0 * beside / alone
    );
    Ok(())
}

/// Resident memory (VmRSS) and its peak (VmHWM) of a process, in MB.
fn memory(pid: u32) -> (f64, f64) {
    memory_parts(pid).0
}

/// (VmRSS, VmHWM) and (RssAnon, RssFile) in MB: the heap, and the database pages mapped in
/// (which the kernel can drop whenever it needs the memory).
fn memory_parts(pid: u32) -> ((f64, f64), (f64, f64)) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (
        (field("VmRSS:"), field("VmHWM:")),
        (field("RssAnon:"), field("RssFile:") + field("RssShmem:")),
    )
}

fn database_bytes(dir: &Path) -> u64 {
    ["relayward.sqlite", "relayward.sqlite-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join("data").join(f)).ok())
        .map(|m| m.len())
        .sum()
}

async fn drain(bin: &Path, messages: usize) -> Result<()> {
    // The receiver's port, kept free until it comes up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let dir = tempfile::tempdir()?;
    let config = write_config(
        dir.path(),
        &format!(
            "[delivery]\nsmart_host = \"{port}\"\nretry_schedule = [\"2s\"]\n[[tenants]]\nname = \"contoso\"\ndomains = [ {{ name = \"contoso.example\", kind = \"authoritative\", verified = true }} ]\nconnectors = [ {{ name = \"on-prem\", ips = [\"127.0.0.1/32\"] }} ]\n"
        ),
    )?;
    let mut relay = start(bin, &config)?;
    let pid = relay.child.id();
    let (fresh, _) = memory(pid);
    let db_before = database_bytes(dir.path());
    let next = Arc::new(AtomicU64::new(0));
    let far = Instant::now() + Duration::from_secs(3600);
    let t = Instant::now();
    let acked = send_for(
        relay.relay,
        "x@remote.example",
        20,
        next,
        far,
        messages as u64,
    )
    .await;
    let accept_s = t.elapsed().as_secs_f64();
    let (queued_rss, _) = memory(pid);
    let (_, seen) = receiver_on(port).await?;
    let t = Instant::now();
    let deadline = t + Duration::from_secs(900);
    loop {
        let n = seen.lock().map(|s| s.len()).unwrap_or(0);
        if n >= acked.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain_s = t.elapsed().as_secs_f64();
    // Let the writers settle, then read memory while idle.
    tokio::time::sleep(Duration::from_secs(15)).await;
    let ((idle_rss, peak), (anon, file)) = memory_parts(pid);
    let db_after = database_bytes(dir.path());
    relay.child.kill()?;
    let _ = relay.child.wait();
    let delivered = seen.lock().map(|s| s.len()).unwrap_or(0);
    println!(
        "drain: {} acknowledged in {accept_s:.1} s, {delivered} delivered in {drain_s:.1} s once the receiver came up",
        acked.len()
    );
    println!(
        "memory: fresh {fresh:.0} MB, with the backlog queued {queued_rss:.0} MB, peak {peak:.0} MB, idle after the drain {idle_rss:.0} MB ({anon:.0} MB heap, {file:.0} MB mapped database and files)"
    );
    println!(
        "database: {:.1} MB for {} messages traced = {:.2} KB per message",
        (db_after.saturating_sub(db_before)) as f64 / 1e6,
        acked.len(),
        (db_after.saturating_sub(db_before)) as f64 / 1e3 / acked.len().max(1) as f64
    );
    Ok(())
}
