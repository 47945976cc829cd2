//! The SMTP client that hands messages to the next hop: EHLO (HELO fallback), opportunistic
//! STARTTLS, pipelined MAIL/RCPT/DATA when offered (BDAT where CHUNKING is, `bdat.rs`),
//! per-recipient results, and connections that can be reused for the next message to the same
//! place.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

mod bdat;
mod data;
mod downgrade;
mod transactions;
use data::{Step, write_stuffed};
use downgrade::ascii_envelope;
use relayward_spool::quoted_address;
pub use transactions::Sent;

/// Longest reply line and most lines in one reply we accept from a remote server.
const MAX_REPLY_LINE: usize = 4096;
const MAX_REPLY_LINES: usize = 128;
/// Room made in the reply buffer before each read.
const READ_ROOM: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpReply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl SmtpReply {
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    pub fn is_permanent(&self) -> bool {
        self.code >= 500
    }

    fn synthetic(code: u16, text: &str) -> SmtpReply {
        SmtpReply {
            code,
            lines: vec![text.to_string()],
        }
    }
}

impl fmt::Display for SmtpReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code, self.lines.join(" "))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection to {addr} failed: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error("connection lost during {stage}: {reason}")]
    Io { stage: &'static str, reason: String },
    #[error("timeout during {0}")]
    Timeout(&'static str),
    #[error("remote refused {stage}: {reply}")]
    Refused {
        stage: &'static str,
        reply: SmtpReply,
    },
    #[error("remote spoke no SMTP during {0}")]
    Protocol(&'static str),
    /// STARTTLS was answered 220 and then TLS could not be set up (the handshake, or the EHLO
    /// over it, failed): the connection is lost, and one without TLS may work.
    #[error("STARTTLS failed during {stage}: {reason}")]
    Starttls { stage: &'static str, reason: String },
    /// The recipient domain's MTA-STS policy is not met by this host (no TLS, or a
    /// certificate not for its name): the mail waits rather than go without.
    #[error("{0}")]
    Policy(String),
    /// The next hop answered EHLO with this relay's own name: it is this relay (a domain whose
    /// MX host is the relay itself, with no route to the tenant's own server).
    #[error("{host} answers as {name}, this relay's own name: mail sent there loops back here")]
    Loop { host: String, name: String },
}

impl ClientError {
    /// The reply an NDR or the trace should show for this failure.
    pub fn as_reply(&self) -> SmtpReply {
        match self {
            ClientError::Refused { reply, .. } => reply.clone(),
            ClientError::Policy(why) => SmtpReply::synthetic(451, &format!("4.7.5 {why}")),
            ClientError::Loop { .. } => SmtpReply::synthetic(554, &format!("5.4.6 {self}")),
            other => SmtpReply::synthetic(451, &format!("4.4.2 {other}")),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Caps {
    pub pipelining: bool,
    pub starttls: bool,
    pub size: Option<usize>,
    pub dsn: bool,
    pub smtputf8: bool,
    pub eight_bit: bool,
    pub chunking: bool,
}

impl Caps {
    fn parse(reply: &SmtpReply) -> Caps {
        let mut caps = Caps::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or("").to_ascii_uppercase();
            match key.as_str() {
                "PIPELINING" => caps.pipelining = true,
                "STARTTLS" => caps.starttls = true,
                "SIZE" => caps.size = words.next().and_then(|s| s.parse().ok()).filter(|&n| n > 0),
                "DSN" => caps.dsn = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "8BITMIME" => caps.eight_bit = true,
                "CHUNKING" => caps.chunking = true,
                _ => {}
            }
        }
        caps
    }
}

#[derive(Clone)]
pub struct ClientSettings {
    pub helo: String,
    /// The name this relay's own SMTP server answers EHLO with: a next hop that answers with
    /// it is this relay, and mail sent there would come back (`ClientError::Loop`).
    pub own_name: String,
    pub connect_timeout: Duration,
    /// RFC 5321 4.5.3.2: 5 minutes for greeting, MAIL and RCPT; shorter is fine for tests.
    pub command_timeout: Duration,
    /// Waiting for the reply to the final dot (RFC: 10 minutes).
    pub final_timeout: Duration,
    /// Opportunistic TLS: used when offered, certificate not checked (RFC 7435).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// BDAT where the remote offers CHUNKING; DATA always when false.
    pub chunking: bool,
}

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Closed,
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

/// What one transaction is to send.
pub struct OutMessage<'a> {
    pub mail_from: &'a str,
    pub smtputf8: bool,
    pub body_8bit: bool,
    /// `RET=` value when the remote speaks DSN.
    pub ret: Option<&'static str>,
    pub env_id: Option<&'a str>,
    pub rcpts: Vec<OutRcpt<'a>>,
    /// Header fields put on top at delivery (DKIM signatures, an ARC set); sent before `body`.
    pub head: &'a [u8],
    /// The message as spooled (or with an incomplete ARC set taken off).
    pub body: &'a [u8],
}

impl OutMessage<'_> {
    /// The size of the message as it leaves, before dot-stuffing.
    pub fn size(&self) -> usize {
        self.head.len() + self.body.len()
    }
}

pub struct OutRcpt<'a> {
    pub address: &'a str,
    /// `NOTIFY=` value when the remote speaks DSN.
    pub notify: Option<String>,
    pub orcpt: Option<&'a str>,
}

pub struct Client {
    stream: Stream,
    buf: Vec<u8>,
    pub caps: Caps,
    pub remote: String,
    pub tls: bool,
    /// The remote's answer when it offered STARTTLS and then refused it: the session went on
    /// without TLS (RFC 3207 leaves that to the client).
    pub starttls_refused: Option<SmtpReply>,
    settings: ClientSettings,
    /// False when a transaction was left half way: the next one starts with RSET.
    clean: bool,
    pub messages_sent: u32,
}

impl Client {
    /// Connects, reads the greeting, says EHLO and starts TLS when the remote offers it.
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        remote_name: &str,
        settings: ClientSettings,
    ) -> Result<Client, ClientError> {
        let connect_err = |reason: String| ClientError::Connect { addr, reason };
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| connect_err(e.to_string()))?;
        if let Some(ip) = source {
            socket
                .bind(SocketAddr::new(ip, 0))
                .map_err(|e| connect_err(format!("cannot bind source address {ip}: {e}")))?;
        }
        let tcp = match tokio::time::timeout(settings.connect_timeout, socket.connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(connect_err(e.to_string())),
            Err(_) => return Err(connect_err("timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let mut client = Client {
            stream: Stream::Plain(tcp),
            buf: Vec::with_capacity(4096),
            caps: Caps::default(),
            remote: remote_name.to_string(),
            tls: false,
            starttls_refused: None,
            settings,
            clean: true,
            messages_sent: 0,
        };
        let greeting = client.read_reply("greeting").await?;
        if !greeting.is_positive() {
            return Err(ClientError::Refused {
                stage: "the connection",
                reply: greeting,
            });
        }
        client.hello().await?;
        if client.caps.starttls
            && let Some(tls) = client.settings.tls.clone()
        {
            let reply = client.command("STARTTLS\r\n", "STARTTLS").await?;
            if reply.code != 220 {
                // Nothing changed on the server's side: the session goes on in clear text.
                client.starttls_refused = Some(reply);
                return Ok(client);
            }
            let name = ServerName::try_from(remote_name.to_string())
                .or_else(|_| ServerName::try_from(addr.ip().to_string()))
                .map_err(|_| ClientError::Protocol("STARTTLS server name"))?;
            let Stream::Plain(tcp) = std::mem::replace(&mut client.stream, Stream::Closed) else {
                return Err(ClientError::Protocol("STARTTLS"));
            };
            let failed = |stage, reason: String| ClientError::Starttls { stage, reason };
            let tls = tokio::time::timeout(
                client.settings.command_timeout,
                TlsConnector::from(tls).connect(name, tcp),
            )
            .await
            .map_err(|_| failed("the TLS handshake", "timed out".into()))?
            .map_err(|e| failed("the TLS handshake", e.to_string()))?;
            client.stream = Stream::Tls(Box::new(tls));
            client.tls = true;
            client.buf.clear();
            client
                .hello()
                .await
                .map_err(|e| failed("EHLO over TLS", e.to_string()))?;
        }
        Ok(client)
    }

    async fn hello(&mut self) -> Result<(), ClientError> {
        let ehlo = format!("EHLO {}\r\n", self.settings.helo);
        let reply = self.command(&ehlo, "EHLO").await?;
        if reply.is_positive() {
            self.not_ourselves(&reply)?;
            self.caps = Caps::parse(&reply);
            return Ok(());
        }
        let helo = format!("HELO {}\r\n", self.settings.helo);
        let reply = self.command(&helo, "HELO").await?;
        if reply.is_positive() {
            self.not_ourselves(&reply)?;
            self.caps = Caps::default();
            Ok(())
        } else {
            Err(ClientError::Refused {
                stage: "HELO",
                reply,
            })
        }
    }

    /// `ClientError::Loop` when the EHLO (or HELO) reply names this relay itself.
    fn not_ourselves(&self, reply: &SmtpReply) -> Result<(), ClientError> {
        let name = reply
            .lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        if !self.settings.own_name.is_empty() && name.eq_ignore_ascii_case(&self.settings.own_name)
        {
            return Err(ClientError::Loop {
                host: self.remote.clone(),
                name: name.to_string(),
            });
        }
        Ok(())
    }

    async fn command(&mut self, line: &str, stage: &'static str) -> Result<SmtpReply, ClientError> {
        self.write(line.as_bytes(), stage).await?;
        self.read_reply(stage).await
    }

    async fn write(&mut self, bytes: &[u8], stage: &'static str) -> Result<(), ClientError> {
        let io = |e: std::io::Error| ClientError::Io {
            stage,
            reason: e.to_string(),
        };
        tokio::time::timeout(self.settings.command_timeout, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .map_err(|_| ClientError::Timeout(stage))?
        .map_err(io)
    }

    async fn read_reply(&mut self, stage: &'static str) -> Result<SmtpReply, ClientError> {
        let timeout = if stage == "end of data" {
            self.settings.final_timeout
        } else {
            self.settings.command_timeout
        };
        tokio::time::timeout(timeout, self.read_reply_inner(stage))
            .await
            .map_err(|_| ClientError::Timeout(stage))?
    }

    async fn read_reply_inner(&mut self, stage: &'static str) -> Result<SmtpReply, ClientError> {
        let mut lines = Vec::new();
        loop {
            let line = self.read_line(stage).await?;
            let line = line.trim_end_matches(['\r', '\n']);
            let (code, rest) = line
                .split_at_checked(3)
                .ok_or(ClientError::Protocol(stage))?;
            let code: u16 = code.parse().map_err(|_| ClientError::Protocol(stage))?;
            if !(200..600).contains(&code) {
                return Err(ClientError::Protocol(stage));
            }
            let (more, text) = match rest.as_bytes().first() {
                Some(b'-') => (true, &rest[1..]),
                Some(b' ') => (false, &rest[1..]),
                None => (false, ""),
                Some(_) => return Err(ClientError::Protocol(stage)),
            };
            lines.push(text.to_string());
            if !more {
                return Ok(SmtpReply { code, lines });
            }
            if lines.len() >= MAX_REPLY_LINES {
                return Err(ClientError::Protocol(stage));
            }
        }
    }

    async fn read_line(&mut self, stage: &'static str) -> Result<String, ClientError> {
        loop {
            if let Some(pos) = memchr::memchr(b'\n', &self.buf) {
                let line = String::from_utf8_lossy(&self.buf[..=pos]).into_owned();
                self.buf.drain(..=pos);
                return Ok(line);
            }
            if self.buf.len() > MAX_REPLY_LINE {
                return Err(ClientError::Protocol(stage));
            }
            // Straight into the buffer's spare room: no chunk to zero and copy for each read.
            self.buf.reserve(READ_ROOM);
            let n = self
                .stream
                .read_buf(&mut self.buf)
                .await
                .map_err(|e| ClientError::Io {
                    stage,
                    reason: e.to_string(),
                })?;
            if n == 0 {
                return Err(ClientError::Io {
                    stage,
                    reason: "closed by the remote server".into(),
                });
            }
        }
    }

    /// Sends one message. Returns one reply per recipient (the RCPT refusal, or the final reply
    /// of the transaction for accepted recipients). Errors mean the connection is unusable and
    /// nothing is known to be delivered.
    pub async fn send(&mut self, msg: &OutMessage<'_>) -> Result<Vec<SmtpReply>, ClientError> {
        let ascii;
        let downgraded;
        let msg = if msg.smtputf8 && !self.caps.smtputf8 {
            let Some(envelope) = ascii_envelope(msg) else {
                let reply = SmtpReply::synthetic(
                    550,
                    "5.6.7 The remote server does not support SMTPUTF8, which this message needs",
                );
                return Ok(vec![reply; msg.rcpts.len()]);
            };
            ascii = envelope;
            downgraded = OutMessage {
                mail_from: &ascii.0,
                smtputf8: false,
                rcpts: msg
                    .rcpts
                    .iter()
                    .zip(&ascii.1)
                    .map(|(r, address)| OutRcpt {
                        address,
                        notify: r.notify.clone(),
                        orcpt: r.orcpt,
                    })
                    .collect(),
                ..*msg
            };
            &downgraded
        } else {
            msg
        };
        if let Some(max) = self.caps.size
            && msg.size() > max
        {
            let reply = SmtpReply::synthetic(
                552,
                &format!("5.3.4 Message is bigger than the {max} bytes the remote server accepts"),
            );
            return Ok(vec![reply; msg.rcpts.len()]);
        }
        if !self.clean {
            let r = self.command("RSET\r\n", "RSET").await?;
            if !r.is_positive() {
                return Err(ClientError::Refused {
                    stage: "RSET",
                    reply: r,
                });
            }
        }
        self.clean = false;
        let mut mail = format!("MAIL FROM:<{}>", quoted_address(msg.mail_from));
        if self.caps.size.is_some() {
            mail.push_str(&format!(" SIZE={}", msg.size()));
        }
        if msg.body_8bit && self.caps.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if msg.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if self.caps.dsn {
            if let Some(ret) = msg.ret {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(id) = msg.env_id {
                mail.push_str(&format!(" ENVID={}", xtext(id)));
            }
        }
        mail.push_str("\r\n");
        let rcpt_lines: Vec<String> = msg
            .rcpts
            .iter()
            .map(|r| {
                let mut l = format!("RCPT TO:<{}>", quoted_address(r.address));
                if self.caps.dsn {
                    if let Some(n) = &r.notify {
                        l.push_str(&format!(" NOTIFY={n}"));
                    }
                    if let Some(o) = r.orcpt {
                        l.push_str(&format!(" ORCPT={}", xtext_orcpt(o)));
                    }
                }
                l.push_str("\r\n");
                l
            })
            .collect();
        if self.caps.chunking && self.settings.chunking {
            return self.send_chunked(msg, &mail, &rcpt_lines).await;
        }

        let (mail_reply, rcpt_replies, data_reply) = if self.caps.pipelining {
            let mut batch = mail.clone();
            for l in &rcpt_lines {
                batch.push_str(l);
            }
            batch.push_str("DATA\r\n");
            self.write(batch.as_bytes(), "MAIL").await?;
            let mail_reply = self.read_reply("MAIL").await?;
            let mut rcpt_replies = Vec::with_capacity(rcpt_lines.len());
            for _ in &rcpt_lines {
                rcpt_replies.push(self.read_reply("RCPT").await?);
            }
            let data_reply = self.read_reply("DATA").await?;
            (mail_reply, rcpt_replies, Some(data_reply))
        } else {
            let (mail_reply, rcpt_replies) = self.envelope(&mail, &rcpt_lines).await?;
            let data_reply = if rcpt_replies.iter().any(SmtpReply::is_positive) {
                Some(self.command("DATA\r\n", "DATA").await?)
            } else {
                None
            };
            (mail_reply, rcpt_replies, data_reply)
        };

        if !mail_reply.is_positive() {
            if data_reply.as_ref().is_some_and(|r| r.code == 354) {
                self.write(b".\r\n", "end of data").await?;
                self.read_reply("end of data").await?;
            }
            return Ok(vec![mail_reply; msg.rcpts.len()]);
        }
        let accepted = rcpt_replies.iter().filter(|r| r.is_positive()).count();
        // Only an end of data ends the transaction: after a DATA refused (no recipient taken)
        // the server may still hold the MAIL, and the next MAIL would be out of sequence.
        let ended = data_reply.as_ref().is_some_and(|r| r.code == 354);
        let final_reply = match data_reply {
            Some(r) if r.code == 354 => {
                if accepted == 0 {
                    // A pipelining server said 354 with no recipient: end the empty message.
                    self.write(b".\r\n", "end of data").await?;
                    self.read_reply("end of data").await?;
                    None
                } else {
                    self.write_data(&[msg.head, msg.body]).await?;
                    Some(self.read_reply("end of data").await?)
                }
            }
            Some(r) => Some(r),
            None => None,
        };
        self.clean = ended;
        self.messages_sent += 1;
        Ok(per_recipient(rcpt_replies, final_reply))
    }

    /// Writes one message, given in parts, dot-stuffed and with its end-of-data mark, through
    /// a buffer of at most `STUFF_CHUNK` and a little more: a large message is never copied
    /// whole (once per destination it goes to, it was).
    ///
    /// Each write must finish within `command_timeout` (RFC 5321 4.5.3.2.5: a data block, 3
    /// minutes at least), and the whole message within that plus a second per
    /// `SLOWEST_RATE` bytes. A server on a slow but steady link gets a large message (one
    /// timeout for the whole write failed 3 MB at 300 KB/s with a 2 s timeout, and so 35 MB
    /// at 100 KB/s with the default 5 minutes, on every retry until it expired); one that
    /// trickles cannot hold the connection for days.
    async fn write_data(&mut self, parts: &[&[u8]]) -> Result<(), ClientError> {
        let step = self.settings.command_timeout;
        write_stuffed(&mut self.stream, parts, step)
            .await
            .map_err(Step::into_error)
    }

    /// Why this connection's certificate would not pass `verifier` for `name`, if it would
    /// not (a connection without TLS has none).
    pub fn certificate_problem(
        &self,
        verifier: &rustls::client::WebPkiServerVerifier,
        name: &str,
    ) -> Option<String> {
        use rustls::client::danger::ServerCertVerifier;
        let Stream::Tls(tls) = &self.stream else {
            return Some("no TLS".into());
        };
        let Some((end, rest)) = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.split_first())
        else {
            return Some("no certificate".into());
        };
        let server = match ServerName::try_from(name.to_string()) {
            Ok(s) => s,
            Err(e) => return Some(format!("{name} is not a host name: {e}")),
        };
        verifier
            .verify_server_cert(end, rest, &server, &[], rustls::pki_types::UnixTime::now())
            .err()
            .map(|e| e.to_string())
    }

    pub async fn quit(mut self) {
        let _ =
            tokio::time::timeout(Duration::from_secs(2), self.command("QUIT\r\n", "QUIT")).await;
    }
}

/// Each recipient's outcome: the end of data's reply for those RCPT accepted, their RCPT
/// reply for the others.
fn per_recipient(rcpt_replies: Vec<SmtpReply>, final_reply: Option<SmtpReply>) -> Vec<SmtpReply> {
    rcpt_replies
        .into_iter()
        .map(|r| match (&final_reply, r.is_positive()) {
            (Some(f), true) => f.clone(),
            _ => r,
        })
        .collect()
}

/// RFC 3461 xtext: `+XX` for `+`, `=`, and anything outside printable ASCII.
fn xtext(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (33..=126).contains(&b) && b != b'+' && b != b'=' {
            out.push(b as char);
        } else {
            out.push_str(&format!("+{b:02X}"));
        }
    }
    out
}

/// ORCPT is `addr-type;xtext`: keep the type, encode the address (RFC 6533's `\x{HEX}` form
/// for an address in UTF-8, `utf-8;`).
fn xtext_orcpt(orcpt: &str) -> String {
    if let Some(ascii) = relayward_names::utf8_orcpt_ascii(orcpt) {
        return ascii;
    }
    match orcpt.split_once(';') {
        Some((kind, addr)) => format!("{kind};{}", xtext(addr)),
        None => format!("rfc822;{}", xtext(orcpt)),
    }
}

/// Certificates checked against a CA bundle, for the name the client asks for: a client
/// configuration that refuses others at the handshake (MTA-STS enforced, webhooks), and the
/// same check for a connection made without it (MTA-STS in testing mode).
#[derive(Clone)]
pub struct Verifying {
    pub config: Arc<rustls::ClientConfig>,
    pub verifier: Arc<rustls::client::WebPkiServerVerifier>,
}

/// Checks against the CAs in `ca_file` (PEM).
pub fn verifying_tls(ca_file: &std::path::Path) -> Result<Verifying, String> {
    let roots = Arc::new(ca_bundle(ca_file)?);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| e.to_string())?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_webpki_verifier(verifier.clone())
        .with_no_client_auth();
    Ok(Verifying {
        config: Arc::new(config),
        verifier,
    })
}

/// The CAs in a PEM bundle; an error when it cannot be read or holds none.
pub fn ca_bundle(ca_file: &std::path::Path) -> Result<rustls::RootCertStore, String> {
    let pem = std::fs::read(ca_file).map_err(|e| format!("{}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(format!("{}: no CA certificate in it", ca_file.display()));
    }
    Ok(roots)
}

/// A TLS client configuration that encrypts without checking the certificate, as opportunistic
/// SMTP TLS does (RFC 7435): most MX certificates do not match their names, and refusing them
/// would only push the mail back to clear text. It is the DANE verifier with no TLSA record,
/// which asks for TLS and checks nothing (RFC 7672 2.2).
pub fn opportunistic_tls() -> Result<Arc<rustls::ClientConfig>, String> {
    crate::dane::DaneVerifier::client_config(Vec::new(), &None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xtext_encodes_plus_and_equals() {
        assert_eq!(xtext("a+b=c d"), "a+2Bb+3Dc+20d");
        assert_eq!(xtext_orcpt("rfc822;x+y@z"), "rfc822;x+2By@z");
        assert_eq!(
            xtext_orcpt("utf-8;b\u{f6}b@m\u{fc}ller.example"),
            "utf-8;b\\x{F6}b@m\\x{FC}ller.example"
        );
    }
}
