//! A raw SMTP client, with STARTTLS that trusts any certificate (the relay's is self-signed), and
//! the submission helpers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use super::*;

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
    /// The queue id in a `250 2.0.0 OK queued as <id>` reply.
    pub fn queued_id(&self) -> String {
        self.text()
            .split_whitespace()
            .last()
            .expect("an id in the reply")
            .to_string()
    }

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
        Client::over(stream)
    }

    /// A client on a connection already open (after a PROXY header, say): reads the greeting.
    pub fn over(stream: TcpStream) -> Client {
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
        let conn = rustls::ClientConnection::new(
            tls_client_config(),
            "relay.test".try_into().expect("name"),
        )
        .expect("tls");
        let tls = rustls::StreamOwned::new(conn, stream);
        Client {
            reader: BufReader::new(Box::new(tls)),
        }
    }
}

/// A session on `addr` that STARTTLS'd presenting a client certificate (`chain`, `key`) and
/// said EHLO over TLS; `None` when the relay refused the certificate (the handshake or the
/// first reply after it failed).
pub fn starttls_with_certificate(
    addr: SocketAddr,
    chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
) -> Option<Client> {
    let config = trusting_any_server()
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    let mut tls = starttls_handshake(addr, Arc::new(config)).ok()?;
    // TLS 1.3: a refused client certificate shows on the first read after the handshake.
    tls.write_all(b"EHLO client.test\r\n").ok()?;
    let mut reader = BufReader::new(Box::new(tls) as Box<dyn ReadWrite>);
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).ok()? < 4 || !l.starts_with("250") {
            return None;
        }
        if l.as_bytes()[3] == b' ' {
            return Some(Client { reader });
        }
    }
}

/// EHLO and STARTTLS on a new session on `addr`, then the TLS handshake with `config`.
fn starttls_handshake(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, Box<dyn ReadWrite>>> {
    let mut c = Client::connect(addr, None);
    c.cmd("EHLO client.test");
    let r = c.cmd("STARTTLS");
    assert_eq!(r.code, 220, "{r:?}");
    let conn =
        rustls::ClientConnection::new(config, "relay.test".try_into().expect("name")).expect("tls");
    let mut tls = rustls::StreamOwned::new(conn, c.reader.into_inner());
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// The certificate the relay serves after STARTTLS on `addr` (DER), and the client on the
/// encrypted connection.
pub fn starttls_certificate(addr: SocketAddr) -> (Vec<u8>, Client) {
    let tls = starttls_handshake(addr, tls_client_config()).expect("TLS handshake");
    let der = tls
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .expect("a certificate");
    (
        der,
        Client {
            reader: BufReader::new(Box::new(tls)),
        },
    )
}

/// A TLS connection to `addr` with its handshake done, trusting any certificate.
pub fn tls_connect(addr: SocketAddr) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).expect("connect");
    tcp.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let conn =
        rustls::ClientConnection::new(tls_client_config(), "relay.test".try_into().expect("name"))
            .expect("tls");
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// `GET path` over TLS; the whole response.
pub fn https_get(addr: SocketAddr, path: &str) -> String {
    let mut tls = tls_connect(addr);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: relay.test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .expect("write");
    let mut out = String::new();
    let _ = tls.read_to_string(&mut out);
    out
}

/// A TLS client that trusts any certificate (the relay's are self-signed in tests).
pub fn tls_client_config() -> Arc<rustls::ClientConfig> {
    Arc::new(trusting_any_server().with_no_client_auth())
}

fn trusting_any_server()
-> rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert> {
    rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(AnyCert))
}

pub fn bind_and_connect(ip: IpAddr, addr: SocketAddr) -> TcpStream {
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
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
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
            &rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A client of the implicit-TLS submission listener: TLS from the first byte, then the
/// greeting over it.
pub fn implicit_tls(addr: SocketAddr) -> Client {
    let mut c = Client {
        reader: BufReader::new(Box::new(tls_connect(addr))),
    };
    let greeting = c.read();
    assert_eq!(greeting.code, 220, "{greeting:?}");
    c
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
