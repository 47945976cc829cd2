//! Test fixtures: the relay as a real process, a receiving SMTP server, a DNS server and a raw
//! SMTP client, all on loopback. Every wait is bounded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};

pub const BIN: &str = env!("CARGO_BIN_EXE_relayward");

/// Polls `f` until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// The relay process

pub struct Relay {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub relay: SocketAddr,
    pub submission: SocketAddr,
    pub http: SocketAddr,
    child: Option<Child>,
}

/// A configuration with loopback listeners on free ports and the given extra TOML.
pub fn config_text(data_dir: &Path, storage: &str, extra: &str) -> String {
    // Keys of an `[smtp]` table in `extra` join the one written here (TOML allows one).
    let mut smtp = String::new();
    let mut rest = String::new();
    let mut in_smtp = false;
    for line in extra.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_smtp = t == "[smtp]";
            if in_smtp {
                continue;
            }
        }
        let to = if in_smtp { &mut smtp } else { &mut rest };
        to.push_str(line);
        to.push('\n');
    }
    let extra = rest;
    format!(
        r#"
[smtp]
relay_listen = "127.0.0.1:0"
submission_listen = "127.0.0.1:0"
hostname = "relay.test"
{smtp}
[http]
listen = "127.0.0.1:0"
[storage]
data_dir = "{}"
{storage}
{extra}
"#,
        data_dir.display()
    )
}

impl Relay {
    pub fn start(extra: &str) -> Relay {
        Relay::start_with_storage("", extra)
    }

    /// `storage` holds extra keys of the `[storage]` table.
    pub fn start_with_storage(storage: &str, extra: &str) -> Relay {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("relayward.toml");
        std::fs::write(
            &config,
            config_text(&dir.path().join("data"), storage, extra),
        )
        .expect("config");
        let mut r = Relay {
            dir,
            config,
            relay: "0.0.0.0:0".parse().expect("addr"),
            submission: "0.0.0.0:0".parse().expect("addr"),
            http: "0.0.0.0:0".parse().expect("addr"),
            child: None,
        };
        r.spawn();
        r
    }

    /// Starts the process and waits for its ready line (ports are learnt from it).
    pub fn spawn(&mut self) {
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&self.config)
            .env(
                "RELAYWARD_LOG",
                std::env::var("TEST_RELAYWARD_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start relayward");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("relayward printed its ready line");
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {line}"))
        };
        self.relay = field("relay");
        self.submission = field("submission");
        self.http = field("http");
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status once it stopped.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(40),
                "relayward did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a CLI command against this relay's configuration.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RELAYWARD_LOG", "warn")
            .output()
            .expect("run relayward");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "relayward {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Runs a CLI command that may fail: (succeeded, stdout and stderr).
    pub fn cli_status(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(BIN)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("RELAYWARD_LOG", "warn")
            .output()
            .expect("run relayward");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    pub fn http_get(&self, path: &str) -> String {
        let mut s = TcpStream::connect(self.http).expect("http");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    }

    /// One API call: (status, JSON body or Null).
    pub fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(self.http).expect("http");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let body = body.unwrap_or("");
        let ctype = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}{ctype}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .expect("write");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no HTTP status in {out:?}"));
        let json = out
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null);
        (status, json)
    }

    pub fn metric(&self, name: &str) -> u64 {
        let page = self.http_get("/metrics");
        page.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    /// Waits until the running relay has loaded the directory as the store now holds it (after
    /// changes made on the command line or through the API).
    pub fn wait_directory(&self) {
        let db = rusqlite::Connection::open(self.dir.path().join("data/relayward.sqlite"))
            .expect("open the relay's database");
        let want: i64 = db
            .query_row(
                "SELECT value FROM meta WHERE key = 'directory_version'",
                [],
                |r| r.get(0),
            )
            .expect("directory version");
        let want = want.max(0) as u64;
        wait_for(Duration::from_secs(20), || {
            (self.metric("relayward_directory_version") >= want).then_some(())
        })
        .expect("the relay reloads its directory");
    }

    /// `relayward token create ARGS`: the new token.
    pub fn token(&self, args: &[&str]) -> String {
        let mut a = vec!["token", "create"];
        a.extend_from_slice(args);
        self.cli(&a).trim().to_string()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.relay, None)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A tenant `contoso` with an on-premises connector for 127.0.0.1 and a user, delivering
/// everything to `smart_host`.
pub fn contoso(smart_host: SocketAddr, extra: &str) -> String {
    format!(
        r#"
[delivery]
smart_host = "{smart_host}"
retry_schedule = ["1s"]
expire_after = "1h"
{extra}
[[tenants]]
name = "contoso"
domains = [ {{ name = "contoso.example", kind = "authoritative", verified = true }} ]
connectors = [ {{ name = "on-prem", ips = ["127.0.0.1/32"] }} ]
users = [ {{ address = "alice@contoso.example", password = "change-me", aliases = ["sales@contoso.example"] }} ]
"#
    )
}

// ---------------------------------------------------------------------------------------------
// A raw SMTP client

pub struct Client {
    reader: BufReader<Box<dyn ReadWrite>>,
}

pub trait ReadWrite: Read + Write + Send {}
impl<T: Read + Write + Send> ReadWrite for T {}

#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.last().cloned().unwrap_or_default()
        )
    }
}

impl Client {
    pub fn connect(addr: SocketAddr, source: Option<IpAddr>) -> Client {
        let stream = match source {
            None => TcpStream::connect(addr).expect("connect"),
            Some(ip) => bind_and_connect(ip, addr),
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        // Commands go out as they are written (no 40 ms waits for delayed ACKs).
        stream.set_nodelay(true).expect("nodelay");
        let mut c = Client {
            reader: BufReader::new(Box::new(stream)),
        };
        let greeting = c.read();
        assert_eq!(greeting.code, 220, "{greeting:?}");
        c
    }

    pub fn read(&mut self) -> Reply {
        let mut lines = Vec::new();
        loop {
            let mut l = String::new();
            let n = self.reader.read_line(&mut l).expect("read reply");
            assert!(
                n > 0,
                "connection closed while waiting for a reply (got {lines:?})"
            );
            let code: u16 = l[..3].parse().expect("reply code");
            lines.push(l[4..].trim_end().to_string());
            if l.as_bytes()[3] == b' ' {
                return Reply { code, lines };
            }
        }
    }

    /// Reads until the server closes; true when it did.
    pub fn closed(&mut self) -> bool {
        let mut l = String::new();
        matches!(self.reader.read_line(&mut l), Ok(0))
    }

    pub fn send(&mut self, bytes: &[u8]) {
        let w = self.reader.get_mut();
        w.write_all(bytes).expect("write");
        w.flush().expect("flush");
    }

    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(format!("{line}\r\n").as_bytes());
        self.read()
    }

    /// A whole transaction with DATA; returns the final reply.
    pub fn mail(&mut self, from: &str, rcpts: &[&str], body: &str) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if r.code != 250 {
            return r;
        }
        let mut accepted = 0;
        for rc in rcpts {
            if self.cmd(&format!("RCPT TO:<{rc}>")).code == 250 {
                accepted += 1;
            }
        }
        if accepted == 0 {
            self.cmd("RSET");
            return Reply {
                code: 554,
                lines: vec!["no recipient accepted (test client)".into()],
            };
        }
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "{r:?}");
        // Dot-stuff as every real client does.
        let stuffed = body.replace("\r\n.", "\r\n..");
        let stuffed = if stuffed.starts_with('.') {
            format!(".{stuffed}")
        } else {
            stuffed
        };
        self.send(stuffed.as_bytes());
        self.send(b"\r\n.\r\n");
        self.read()
    }

    /// A whole transaction; returns the first reply that is not a success (MAIL, RCPT or the
    /// end of DATA), or the final 250.
    pub fn transaction(&mut self, from: &str, rcpts: &[&str], body: &str) -> Reply {
        let r = self.cmd(&format!("MAIL FROM:<{from}>"));
        if r.code != 250 {
            return r;
        }
        for rc in rcpts {
            let r = self.cmd(&format!("RCPT TO:<{rc}>"));
            if r.code != 250 {
                self.cmd("RSET");
                return r;
            }
        }
        let r = self.cmd("DATA");
        assert_eq!(r.code, 354, "{r:?}");
        let stuffed = body.replace("\r\n.", "\r\n..");
        self.send(stuffed.as_bytes());
        self.send(b"\r\n.\r\n");
        self.read()
    }

    /// STARTTLS, trusting any certificate (the relay's is self-signed).
    pub fn starttls(mut self) -> Client {
        let r = self.cmd("STARTTLS");
        assert_eq!(r.code, 220, "{r:?}");
        self.upgrade()
    }

    /// Starts the TLS handshake on a connection whose STARTTLS was already answered with 220.
    pub fn upgrade(self) -> Client {
        let stream = self.reader.into_inner();
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
        let conn =
            rustls::ClientConnection::new(Arc::new(config), "relay.test".try_into().expect("name"))
                .expect("tls");
        let tls = rustls::StreamOwned::new(conn, stream);
        Client {
            reader: BufReader::new(Box::new(tls)),
        }
    }
}

fn bind_and_connect(ip: IpAddr, addr: SocketAddr) -> TcpStream {
    // std cannot bind before connect; tokio's TcpSocket can, on a throwaway runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let s = if ip.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .expect("socket");
        s.bind(SocketAddr::new(ip, 0)).expect("bind source");
        let t = s.connect(addr).await.expect("connect");
        let std = t.into_std().expect("std");
        std.set_nonblocking(false).expect("blocking");
        std
    })
}

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
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &rustls::crypto::ring::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// ---------------------------------------------------------------------------------------------
// A receiving SMTP server

#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    /// What followed each accepted RCPT's address (DSN parameters), in order.
    pub rcpt_params: Vec<String>,
    pub data: String,
    pub peer: IpAddr,
    pub helo: String,
    pub tls: bool,
}

#[derive(Default)]
struct ReceiverState {
    messages: Vec<Received>,
    seen_flaky: std::collections::HashSet<String>,
    connections: usize,
    /// Do not offer the DSN extension.
    no_dsn: bool,
}

/// Replies by recipient local part: `reject*` 550 5.1.1, `defer*` always 451, `flaky*` 451 the
/// first time then 250; everything else 250.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
    _rt: tokio::runtime::Runtime,
}

impl Receiver {
    pub fn start(starttls: bool) -> Receiver {
        Receiver::start_on("127.0.0.1".parse().expect("ip"), starttls)
    }

    pub fn start_on(ip: IpAddr, starttls: bool) -> Receiver {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("rt");
        let listener = rt
            .block_on(tokio::net::TcpListener::bind(SocketAddr::new(ip, 0)))
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        let tls = starttls.then(receiver_tls);
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((sock, peer)) = listener.accept().await {
                st.lock().expect("lock").connections += 1;
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = serve_receiver(sock, peer.ip(), st, tls).await;
                });
            }
        });
        Receiver {
            addr,
            state,
            _rt: rt,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().expect("lock").messages.clone()
    }

    pub fn connections(&self) -> usize {
        self.state.lock().expect("lock").connections
    }

    /// From now on the receiver does not offer DSN in its EHLO reply.
    pub fn without_dsn(self) -> Receiver {
        self.state.lock().expect("lock").no_dsn = true;
        self
    }

    /// Waits until `n` messages arrived (at most `limit`); returns them all.
    pub fn wait(&self, n: usize, limit: Duration) -> Vec<Received> {
        wait_for(limit, || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| {
            panic!(
                "expected {n} messages at the receiver, got {:?}",
                self.messages()
            )
        })
    }
}

fn receiver_tls() -> tokio_rustls::TlsAcceptor {
    let made = rcgen::generate_simple_self_signed(vec!["mx.test".to_string()]).expect("cert");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der()).expect("key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(vec![made.cert.der().clone()], key)
    .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

trait AsyncStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> AsyncStream for T {}

async fn serve_receiver(
    sock: tokio::net::TcpStream,
    peer: IpAddr,
    state: Arc<Mutex<ReceiverState>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> std::io::Result<()> {
    let mut stream: TokioBufReader<Box<dyn AsyncStream>> = TokioBufReader::new(Box::new(sock));
    let mut is_tls = false;
    stream
        .get_mut()
        .write_all(b"220 mx.test ESMTP test receiver\r\n")
        .await?;
    let (mut from, mut rcpts, mut helo) = (String::new(), Vec::<String>::new(), String::new());
    let mut params = Vec::<String>::new();
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            helo = line[5..].trim().to_string();
            let mut r = String::from(
                "250-mx.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 100000000\r\n",
            );
            if tls.is_some() && !is_tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if state.lock().expect("lock").no_dsn {
                r.push_str("250 HELP\r\n");
            } else {
                r.push_str("250 DSN\r\n");
            }
            r
        } else if upper.starts_with("STARTTLS") {
            stream.get_mut().write_all(b"220 go ahead\r\n").await?;
            let Some(acceptor) = tls.clone() else {
                continue;
            };
            let inner = stream.into_inner();
            // Only the plain TCP stream is ever boxed before TLS in this fixture.
            let tcp: Box<dyn AsyncStream> = inner;
            let tls_stream = acceptor.accept(tcp).await?;
            stream = TokioBufReader::new(Box::new(tls_stream));
            is_tls = true;
            continue;
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            rcpts.clear();
            params.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let local = addr.split('@').next().unwrap_or("").to_ascii_lowercase();
            if local.starts_with("reject") {
                "550 5.1.1 no such user here\r\n".into()
            } else if local.starts_with("defer") {
                "451 4.2.0 mailbox busy, try later\r\n".into()
            } else if local.starts_with("flaky")
                && state.lock().expect("lock").seen_flaky.insert(addr.clone())
            {
                "451 4.3.0 temporary trouble\r\n".into()
            } else {
                rcpts.push(addr);
                params.push(
                    line.split_once('>')
                        .map_or("", |(_, rest)| rest)
                        .trim()
                        .to_string(),
                );
                "250 2.1.5 ok\r\n".into()
            }
        } else if upper.starts_with("DATA") {
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                stream.get_mut().write_all(b"354 go\r\n").await?;
                let mut data = String::new();
                loop {
                    let mut l = String::new();
                    if stream.read_line(&mut l).await? == 0 {
                        return Ok(());
                    }
                    if l == ".\r\n" {
                        break;
                    }
                    let l = l.strip_prefix('.').map(str::to_string).unwrap_or(l);
                    data.push_str(&l);
                }
                state.lock().expect("lock").messages.push(Received {
                    mail_from: from.clone(),
                    rcpts: rcpts.clone(),
                    rcpt_params: params.clone(),
                    data,
                    peer,
                    helo: helo.clone(),
                    tls: is_tls,
                });
                "250 2.0.0 stored\r\n".into()
            }
        } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
            rcpts.clear();
            params.clear();
            "250 2.0.0 ok\r\n".into()
        } else if upper.starts_with("QUIT") {
            stream.get_mut().write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            "500 5.5.1 what?\r\n".into()
        };
        stream.get_mut().write_all(reply.as_bytes()).await?;
    }
}

// ---------------------------------------------------------------------------------------------
// A DNS server answering MX and A queries from a table

type Zone = Arc<Mutex<HashMap<(String, String), Answer>>>;

pub struct Dns {
    pub addr: SocketAddr,
    zone: Zone,
}

pub enum Answer {
    Mx(Vec<(u16, &'static str)>),
    A(Vec<std::net::Ipv4Addr>),
    Txt(Vec<String>),
    NxDomain,
}

impl Dns {
    /// `zone` maps (name, "MX"|"A") to an answer; anything else is an empty NOERROR answer.
    pub fn start(zone: Vec<(&'static str, &'static str, Answer)>) -> Dns {
        use hickory_proto::op::{Message, MessageType, ResponseCode};
        use hickory_proto::rr::{Name, RData, Record, rdata};
        let sock = UdpSocket::bind("127.0.0.1:0").expect("dns bind");
        let addr = sock.local_addr().expect("addr");
        let table: HashMap<(String, String), Answer> = zone
            .into_iter()
            .map(|(n, t, a)| ((n.to_ascii_lowercase(), t.to_string()), a))
            .collect();
        let zone: Zone = Arc::new(Mutex::new(table));
        let shared = zone.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = sock.recv_from(&mut buf) {
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut resp = Message::new();
                resp.set_id(q.id())
                    .set_message_type(MessageType::Response)
                    .set_recursion_available(true);
                for query in q.queries() {
                    resp.add_query(query.clone());
                    let name = query
                        .name()
                        .to_utf8()
                        .trim_end_matches('.')
                        .to_ascii_lowercase();
                    let kind = query.query_type().to_string();
                    let table = shared.lock().expect("zone");
                    match table.get(&(name.clone(), kind)) {
                        Some(Answer::Mx(list)) => {
                            for (pref, host) in list {
                                let exch = Name::from_ascii(format!("{host}.")).expect("name");
                                resp.add_answer(Record::from_rdata(
                                    query.name().clone(),
                                    60,
                                    RData::MX(rdata::MX::new(*pref, exch)),
                                ));
                            }
                        }
                        Some(Answer::A(ips)) => {
                            for ip in ips {
                                resp.add_answer(Record::from_rdata(
                                    query.name().clone(),
                                    60,
                                    RData::A(rdata::A(*ip)),
                                ));
                            }
                        }
                        Some(Answer::Txt(texts)) => {
                            for t in texts {
                                resp.add_answer(Record::from_rdata(
                                    query.name().clone(),
                                    60,
                                    // A record's strings hold 255 octets each (RFC 1035
                                    // 3.3); longer texts (DKIM keys) are split, as published.
                                    RData::TXT(rdata::TXT::new(
                                        t.as_bytes()
                                            .chunks(255)
                                            .map(|c| String::from_utf8_lossy(c).into_owned())
                                            .collect(),
                                    )),
                                ));
                            }
                        }
                        Some(Answer::NxDomain) => {
                            resp.set_response_code(ResponseCode::NXDomain);
                        }
                        None => {
                            let known = table.keys().any(|(n, _)| *n == name);
                            if !known {
                                resp.set_response_code(ResponseCode::NXDomain);
                            }
                        }
                    }
                }
                if let Ok(bytes) = resp.to_vec() {
                    let _ = sock.send_to(&bytes, from);
                }
            }
        });
        Dns { addr, zone }
    }

    /// Adds or replaces one answer while the server runs (`kind` "MX", "A" or "TXT").
    pub fn set(&self, name: &str, kind: &str, answer: Answer) {
        self.zone
            .lock()
            .expect("zone")
            .insert((name.to_ascii_lowercase(), kind.to_string()), answer);
    }
}

// ---------------------------------------------------------------------------------------------
// A real Rspamd (Debian's package, installed by scripts/test), started on a loopback port of
// its own with network lookups off (there is no internet here) and one test rule of ours.

pub struct RspamdServer {
    pub addr: SocketAddr,
    child: Option<Child>,
    dir: tempfile::TempDir,
}

/// Scores 20 when the message holds `relayward-rspamd-marker`: a message Rspamd calls spam and
/// our built-in rules call clean, to show whose verdict is whose.
const RSPAMD_TEST_RULE: &str = r#"
rspamd_config.RELAYWARD_TEST_MARKER = {
  callback = function(task)
    local content = task:get_content()
    return content ~= nil and tostring(content):find('relayward%-rspamd%-marker') ~= nil
  end,
  score = 20.0,
  description = 'Relayward test marker',
}
"#;

impl RspamdServer {
    /// `None` (after saying so loudly) when rspamd is not installed, outside CI; in CI
    /// (`CI=true`) a missing rspamd fails the test.
    pub fn start() -> Option<RspamdServer> {
        if Command::new("rspamd").arg("--version").output().is_err() {
            let msg = "rspamd is not installed: scripts/test installs Debian's package";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("\n!!!!! SKIPPED: {msg} !!!!!\n");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let local = dir.path();
        for sub in ["local.d", "db", "run"] {
            std::fs::create_dir_all(local.join(sub)).expect("mkdir");
        }
        let put = |name: &str, text: &str| {
            std::fs::write(local.join(name), text).expect("write rspamd config");
        };
        put(
            "local.d/worker-normal.inc",
            &format!("bind_socket = \"127.0.0.1:{port}\";\ncount = 1;\n"),
        );
        put("local.d/worker-controller.inc", "enabled = false;\n");
        put("local.d/worker-proxy.inc", "enabled = false;\n");
        put(
            "local.d/options.inc",
            "dns {\n  nameserver = [\"127.0.0.1:1\"];\n  timeout = 0.2s;\n  retransmits = 1;\n}\n",
        );
        put(
            "local.d/logging.inc",
            "type = \"console\";\nlevel = \"error\";\n",
        );
        for module in [
            "rbl",
            "spf",
            "dkim",
            "dmarc",
            "surbl",
            "fuzzy_check",
            "asn",
            "hfilter",
            "phishing",
            "greylist",
            "ratelimit",
            "replies",
            "neural",
            "url_reputation",
            "mx_check",
        ] {
            put(&format!("local.d/{module}.conf"), "enabled = false;\n");
        }
        put("rspamd.local.lua", RSPAMD_TEST_RULE);
        let log = std::fs::File::create(local.join("rspamd.log")).expect("log");
        let child = Command::new("rspamd")
            .args(["-f", "-i", "-c", "/etc/rspamd/rspamd.conf"])
            .arg(format!("--var=LOCAL_CONFDIR={}", local.display()))
            .arg(format!("--var=DBDIR={}", local.join("db").display()))
            .arg(format!("--var=RUNDIR={}", local.join("run").display()))
            .arg(format!("--var=LOGDIR={}", local.display()))
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start rspamd");
        let server = RspamdServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: Some(child),
            dir,
        };
        // Loading its configuration takes Rspamd some seconds.
        let up = wait_for(Duration::from_secs(120), || server.ping().then_some(()));
        if up.is_none() {
            let log =
                std::fs::read_to_string(server.dir.path().join("rspamd.log")).unwrap_or_default();
            panic!("rspamd did not answer /ping within 120 s: {log}");
        }
        Some(server)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"GET /ping HTTP/1.0\r\n\r\n").is_err() {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.contains("pong")
    }

    /// Stops Rspamd (its main process and workers) and waits until its port is closed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM lets the main process take its workers down with it.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let gone = wait_for(Duration::from_secs(20), || {
                c.try_wait().ok().flatten().map(|_| ())
            });
            if gone.is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        wait_for(Duration::from_secs(20), || {
            TcpStream::connect_timeout(&self.addr, Duration::from_millis(200))
                .is_err()
                .then_some(())
        });
    }
}

impl Drop for RspamdServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `AUTH PLAIN` with the credentials in its initial response.
pub fn auth_plain(user: &str, password: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    format!("AUTH PLAIN {b}")
}

/// A new submission connection after EHLO and STARTTLS, and the relay's answer to AUTH PLAIN.
pub fn submission_auth(relay: &Relay, user: &str, password: &str) -> (Client, Reply) {
    let mut c = Client::connect(relay.submission, None);
    c.cmd("EHLO device");
    let mut c = c.starttls();
    c.cmd("EHLO device");
    let r = c.cmd(&auth_plain(user, password));
    (c, r)
}
