//! `authflood`: wrong SMTP AUTH passwords from many connections, as a password-guessing or
//! password-spraying attacker sends them (bench/authflood.sh, BENCHMARKS.md). Each connection
//! says EHLO, STARTTLS, EHLO, then AUTH PLAIN with a wrong password until the server closes
//! it, and connects again, until the time is up. It prints how the server answered, per
//! account: how many attempts it actually checked (535) and how many it refused unchecked
//! (454).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpSocket;

#[derive(Parser)]
struct Args {
    /// The submission listener.
    #[arg(long)]
    target: SocketAddr,
    #[arg(long, default_value_t = 40)]
    connections: usize,
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Accounts to guess (repeatable); each connection takes them in turn.
    #[arg(long)]
    account: Vec<String>,
    /// Local addresses to connect from, one per connection in turn (default: the system's).
    #[arg(long)]
    source: Vec<IpAddr>,
}

/// Answers per account: code → count.
type Tally = Arc<Mutex<HashMap<String, HashMap<u16, u64>>>>;

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if args.account.is_empty() {
        bail!("give at least one --account");
    }
    let tls = tls_config()?;
    let tally: Tally = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.connections {
        let source = (!args.source.is_empty()).then(|| args.source[i % args.source.len()]);
        let accounts = args.account.clone();
        let tally = tally.clone();
        let tls = tls.clone();
        let target = args.target;
        tasks.spawn(async move {
            let mut n = i;
            let mut connects = 0u64;
            while Instant::now() < deadline {
                connects += 1;
                let run = flood(target, source, &tls, &accounts, &mut n, deadline, &tally);
                if tokio::time::timeout_at(deadline.into(), run).await.is_err() {
                    break;
                }
            }
            connects
        });
    }
    let mut connects = 0;
    while let Some(r) = tasks.join_next().await {
        connects += r.unwrap_or(0);
    }
    let tally = tally.lock().map_err(|_| anyhow::anyhow!("lock"))?;
    let mut total: HashMap<u16, u64> = HashMap::new();
    let mut rows: Vec<_> = tally.iter().collect();
    rows.sort_by_key(|(a, _)| a.as_str());
    for (_, codes) in &rows {
        for (c, n) in codes.iter() {
            *total.entry(*c).or_default() += n;
        }
    }
    let get = |m: &HashMap<u16, u64>, c: u16| m.get(&c).copied().unwrap_or(0);
    println!(
        "connections={} seconds={} connects={connects} attempts={} checked_535={} refused_454={} accepted_235={}",
        args.connections,
        args.seconds,
        total.values().sum::<u64>(),
        get(&total, 535),
        get(&total, 454),
        get(&total, 235),
    );
    let checked: Vec<u64> = rows.iter().map(|(_, c)| get(c, 535)).collect();
    println!(
        "accounts={} checked_per_account_max={} checked_per_account_min={}",
        rows.len(),
        checked.iter().max().copied().unwrap_or(0),
        checked.iter().min().copied().unwrap_or(0)
    );
    for (account, codes) in rows.iter().take(5) {
        println!(
            "  {account}: checked={} refused={}",
            get(codes, 535),
            get(codes, 454)
        );
    }
    Ok(())
}

async fn flood(
    target: SocketAddr,
    source: Option<IpAddr>,
    tls: &tokio_rustls::TlsConnector,
    accounts: &[String],
    n: &mut usize,
    deadline: Instant,
    tally: &Tally,
) -> Result<()> {
    let socket = if target.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await.context("connect")?;
    let mut plain = BufReader::new(stream);
    expect(&mut plain, 220).await?;
    say(&mut plain, "EHLO flood.example").await?;
    expect(&mut plain, 250).await?;
    say(&mut plain, "STARTTLS").await?;
    expect(&mut plain, 220).await?;
    let name = rustls::pki_types::ServerName::try_from("relay.example")?;
    let stream = tls.connect(name, plain.into_inner()).await?;
    let mut s = BufReader::new(stream);
    say(&mut s, "EHLO flood.example").await?;
    expect(&mut s, 250).await?;
    while Instant::now() < deadline {
        let account = &accounts[*n % accounts.len()];
        *n += 1;
        let secret = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{account}\0wrong-guess-{n}"));
        say(&mut s, &format!("AUTH PLAIN {secret}")).await?;
        let code = reply(&mut s).await?;
        if let Ok(mut t) = tally.lock() {
            *t.entry(account.clone())
                .or_default()
                .entry(code)
                .or_default() += 1;
        }
        if code == 421 {
            break;
        }
    }
    Ok(())
}

async fn say<S: AsyncWrite + Unpin>(s: &mut S, line: &str) -> Result<()> {
    s.write_all(format!("{line}\r\n").as_bytes()).await?;
    Ok(())
}

/// The code of the next reply (all its lines read); 421 when the connection ended.
async fn reply<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<u16> {
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Ok(421);
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(code);
        }
    }
}

async fn expect<S: AsyncRead + Unpin>(s: &mut BufReader<S>, want: u16) -> Result<()> {
    let got = reply(s).await?;
    if got != want {
        bail!("expected {want}, got {got}");
    }
    Ok(())
}

fn tls_config() -> Result<tokio_rustls::TlsConnector> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// The relay's certificate is self-signed: the flood does not care who answers.
#[derive(Debug)]
struct AnyCert;

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
