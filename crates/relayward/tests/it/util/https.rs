//! An HTTPS server on loopback with a certificate of the test's choosing: each request's head
//! and body are kept, and `answer` says the status and body to send back (HTTP/1.0, then the
//! connection is closed).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone)]
pub struct HttpsRequest {
    /// The request line and header fields.
    pub head: String,
    pub body: String,
}

impl HttpsRequest {
    pub fn header(&self, name: &str) -> &str {
        self.head
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.trim())
    }
}

type Answer = dyn Fn(&HttpsRequest) -> (u16, String) + Send + Sync;

pub struct HttpsServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<HttpsRequest>>>,
    _rt: tokio::runtime::Runtime,
}

impl HttpsServer {
    pub fn start(
        tls: Arc<rustls::ServerConfig>,
        answer: impl Fn(&HttpsRequest) -> (u16, String) + Send + Sync + 'static,
    ) -> HttpsServer {
        let (rt, listener) = super::serving_runtime("127.0.0.1:0".parse().expect("addr"));
        let addr = listener.local_addr().expect("addr");
        let requests: Arc<Mutex<Vec<HttpsRequest>>> = Arc::default();
        let seen = requests.clone();
        let answer: Arc<Answer> = Arc::new(answer);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (acceptor, seen, answer) = (acceptor.clone(), seen.clone(), answer.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(sock).await else {
                        return;
                    };
                    let Some(request) = read_request(&mut tls).await else {
                        return;
                    };
                    let (status, body) = answer(&request);
                    seen.lock().expect("lock").push(request);
                    let reply = format!(
                        "HTTP/1.0 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        HttpsServer {
            addr,
            requests,
            _rt: rt,
        }
    }

    pub fn requests(&self) -> Vec<HttpsRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

/// The head, then as much body as Content-Length says (at most 64 KiB in all).
async fn read_request(
    tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<HttpsRequest> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let request = HttpsRequest {
                head: head.to_string(),
                body: body.to_string(),
            };
            let len: usize = request.header("Content-Length").parse().unwrap_or(0);
            if body.len() >= len {
                return Some(request);
            }
        }
        if raw.len() > 64 * 1024 {
            return None;
        }
        match tls.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
}
