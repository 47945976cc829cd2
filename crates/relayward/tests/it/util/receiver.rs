//! A receiving SMTP server: replies by recipient local part, keeps what it received.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader as TokioBufReader};

use super::*;

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
    /// Sent with BDAT, not DATA.
    pub chunked: bool,
    /// Its BDAT command was already here, sent with MAIL, when MAIL was read: the whole
    /// transaction came in one write.
    pub with_commands: bool,
}

#[derive(Default)]
struct ReceiverState {
    messages: Vec<Received>,
    seen_flaky: std::collections::HashSet<String>,
    connections: usize,
    /// Connections open now, and the most open at once.
    open: usize,
    peak: usize,
    /// How long each end of data waits before its reply (a next hop that takes its time).
    data_delay: Duration,
    /// Do not offer the DSN extension.
    no_dsn: bool,
    /// Recipients one transaction takes, and the reply to the next ones.
    rcpt_limit: Option<(usize, &'static str)>,
    /// Close the first connection that starts a second transaction, at its MAIL.
    hang_up_once: bool,
    /// Offer CHUNKING and take BDAT.
    chunking: bool,
    /// Offer SMTPUTF8 (RFC 6531).
    smtputf8: bool,
    /// The name its EHLO reply gives (`mx.test` when unset).
    name: Option<String>,
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
        Receiver::start_at(SocketAddr::new(ip, 0), starttls.then(receiver_tls))
    }

    /// A receiver at `addr` (port 0: any) offering STARTTLS with `tls` when given.
    pub fn start_at(addr: SocketAddr, tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let (rt, listener) = serving_runtime(addr);
        let addr = listener.local_addr().expect("addr");
        let state: Arc<Mutex<ReceiverState>> = Arc::default();
        let st = state.clone();
        rt.spawn(async move {
            while let Ok((sock, peer)) = listener.accept().await {
                {
                    let mut st = st.lock().expect("lock");
                    st.connections += 1;
                    st.open += 1;
                    st.peak = st.peak.max(st.open);
                }
                let st = st.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let _ = serve_receiver(sock, peer.ip(), st.clone(), tls).await;
                    st.lock().expect("lock").open -= 1;
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

    /// From now on the receiver does not offer DSN in its EHLO reply.
    pub fn without_dsn(self) -> Receiver {
        self.state.lock().expect("lock").no_dsn = true;
        self
    }

    /// From now on a transaction takes `n` recipients; the next ones get `reply`.
    pub fn with_recipient_limit(self, n: usize, reply: &'static str) -> Receiver {
        self.state.lock().expect("lock").rcpt_limit = Some((n, reply));
        self
    }

    /// From now on the receiver's EHLO reply names it `name` (as a relay's own name would).
    pub fn answering_as(self, name: &str) -> Receiver {
        self.state.lock().expect("lock").name = Some(name.to_string());
        self
    }

    /// From now on the receiver offers CHUNKING (RFC 3030) and takes BDAT.
    pub fn with_chunking(self) -> Receiver {
        self.state.lock().expect("lock").chunking = true;
        self
    }

    /// From now on the receiver offers SMTPUTF8 (RFC 6531): addresses in UTF-8.
    pub fn with_smtputf8(self) -> Receiver {
        self.state.lock().expect("lock").smtputf8 = true;
        self
    }

    /// The first connection to start a second transaction is closed at its MAIL command
    /// (a server going away between two transactions).
    pub fn hanging_up_once(self) -> Receiver {
        self.state.lock().expect("lock").hang_up_once = true;
        self
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.lock().expect("lock").connections
    }

    /// The most connections that were open at once so far.
    pub fn peak_connections(&self) -> usize {
        self.state.lock().expect("lock").peak
    }

    /// From now on each end of data waits `delay` before its reply.
    pub fn with_data_delay(self, delay: Duration) -> Receiver {
        self.state.lock().expect("lock").data_delay = delay;
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
        rustls::crypto::aws_lc_rs::default_provider(),
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
    let mut stored_here = 0;
    let (mut chunks, mut with_commands) = (Vec::<u8>::new(), false);
    // As real servers do: a transaction is open from its MAIL to its end of data or RSET, and
    // a MAIL inside one is out of sequence.
    let mut open = false;
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            helo = line[5..].trim().to_string();
            let name = state.lock().expect("lock").name.clone();
            let mut r = format!(
                "250-{}\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 100000000\r\n",
                name.as_deref().unwrap_or("mx.test")
            );
            if tls.is_some() && !is_tls {
                r.push_str("250-STARTTLS\r\n");
            }
            if state.lock().expect("lock").chunking {
                r.push_str("250-CHUNKING\r\n");
            }
            if state.lock().expect("lock").smtputf8 {
                r.push_str("250-SMTPUTF8\r\n");
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
        } else if (upper.starts_with("MAIL FROM:") || upper.starts_with("RCPT TO:"))
            && !state.lock().expect("lock").smtputf8
            && (!line.is_ascii() || upper.contains(" SMTPUTF8"))
        {
            // As a server without SMTPUTF8 answers an address in UTF-8, or the parameter.
            "555 5.6.7 this server does not offer SMTPUTF8: addresses here are ASCII\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            if stored_here > 0 {
                let mut st = state.lock().expect("lock");
                if st.hang_up_once {
                    st.hang_up_once = false;
                    return Ok(());
                }
            }
            if open {
                stream
                    .get_mut()
                    .write_all(b"503 5.5.1 sender already given\r\n")
                    .await?;
                continue;
            }
            open = true;
            from = line[10..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            rcpts.clear();
            params.clear();
            chunks.clear();
            with_commands = stream.buffer().windows(5).any(|w| w == b"BDAT ");
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let addr = line[8..]
                .trim()
                .trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string();
            let local = addr
                .split('@')
                .next()
                .unwrap_or("")
                .trim_start_matches('"')
                .to_ascii_lowercase();
            let limit = state.lock().expect("lock").rcpt_limit;
            if let Some((_, reply)) = limit.filter(|(n, _)| rcpts.len() >= *n) {
                format!("{reply}\r\n")
            } else if local.starts_with("reject") {
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
                let delay = state.lock().expect("lock").data_delay;
                tokio::time::sleep(delay).await;
                state.lock().expect("lock").messages.push(Received {
                    mail_from: from.clone(),
                    rcpts: rcpts.clone(),
                    rcpt_params: params.clone(),
                    data,
                    peer,
                    helo: helo.clone(),
                    tls: is_tls,
                    chunked: false,
                    with_commands: false,
                });
                stored_here += 1;
                open = false;
                "250 2.0.0 stored\r\n".into()
            }
        } else if upper.starts_with("BDAT ") && state.lock().expect("lock").chunking {
            let mut words = upper[5..].split_whitespace();
            let size: usize = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let last = words.next() == Some("LAST");
            let mut chunk = vec![0; size];
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut chunk).await?;
            chunks.extend_from_slice(&chunk);
            if rcpts.is_empty() {
                chunks.clear();
                "554 5.5.1 no valid recipients\r\n".into()
            } else if !last {
                format!("250 2.0.0 {size} octets\r\n")
            } else {
                state.lock().expect("lock").messages.push(Received {
                    mail_from: from.clone(),
                    rcpts: rcpts.clone(),
                    rcpt_params: params.clone(),
                    data: String::from_utf8_lossy(&std::mem::take(&mut chunks)).into_owned(),
                    peer,
                    helo: helo.clone(),
                    tls: is_tls,
                    chunked: true,
                    with_commands,
                });
                stored_here += 1;
                rcpts.clear();
                open = false;
                "250 2.0.0 stored\r\n".into()
            }
        } else if upper.starts_with("RSET") {
            open = false;
            rcpts.clear();
            params.clear();
            "250 2.0.0 ok\r\n".into()
        } else if upper.starts_with("NOOP") {
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
