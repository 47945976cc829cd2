//! The HTTP listener's connections, plain or TLS, bounded before anything is authenticated: in
//! number (overall and per client, counted like the SMTP listeners), and in time (the TLS
//! handshake, each request's head and the wait for the next one, each request's body, and a
//! response the client does not read). Without these bounds, connections that send nothing
//! would be kept forever and take the file descriptors the SMTP listeners and the spool need.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use hyper::body::{Body as HttpBody, Bytes, Frame, SizeHint};
use relayward_smtp::admission::{Admission, accept};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Sleep;

/// The bounds of one HTTP listener.
#[derive(Clone, Debug)]
pub struct Bounds {
    /// Connections at once; beyond them a new connection is answered 503 and closed.
    pub max_connections: usize,
    /// Connections at once from one client (an IPv4 address, an IPv6 /64).
    pub max_connections_per_ip: usize,
    /// The TLS handshake.
    pub handshake: Duration,
    /// A request's head, counted from when the connection is ready for it: an idle kept-alive
    /// connection is closed after this long too.
    pub head: Duration,
    /// A request's whole body, however slowly it trickles.
    pub body: Duration,
    /// A response write that makes no progress (the client reads nothing).
    pub stalled_write: Duration,
    /// Open connections after the stop: the longest they are waited for.
    pub grace: Duration,
    /// Reverse proxies (`[http] trusted_proxies`): their requests are for the client their
    /// `X-Forwarded-For` names, and their connections are not capped per client.
    pub trusted_proxies: Arc<Vec<ipnet::IpNet>>,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            max_connections: 1024,
            max_connections_per_ip: 64,
            handshake: Duration::from_secs(10),
            head: Duration::from_secs(30),
            body: Duration::from_secs(60),
            stalled_write: Duration::from_secs(30),
            grace: Duration::from_secs(10),
            trusted_proxies: Arc::default(),
        }
    }
}

/// What a connection over a cap is told before it is closed (plain HTTP only: over TLS nothing
/// can be said before a handshake, which is not spent on a refused connection).
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n\
Content-Length: 37\r\nRetry-After: 5\r\nConnection: close\r\n\r\ntoo many connections, try again later\n";

/// Serves `app` on `listener` (over TLS when `tls` is given) until `stop`, then lets open
/// connections finish their requests (at most `bounds.grace`). Handlers see the client's
/// address as `ConnectInfo`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    bounds: Bounds,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let admission = Admission::new(bounds.max_connections, bounds.max_connections_per_ip);
    let (stopping, _) = watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut stop => break,
            a = accept(&listener, "http") => a,
        };
        let proxy = is_trusted(&bounds.trusted_proxies, peer.ip());
        let admitted = if proxy {
            admission.try_admit_unattributed()
        } else {
            admission.try_admit(peer.ip())
        };
        let admitted = match admitted {
            Ok(a) => a,
            Err(why) => {
                tracing::debug!(%peer, ?why, "HTTP connection refused: connection limit");
                if acceptor.is_none() {
                    tokio::spawn(refuse(tcp));
                }
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let bounds = bounds.clone();
        let stopping = stopping.subscribe();
        tokio::spawn(async move {
            match acceptor {
                None => connection(tcp, peer, proxy, app, &bounds, stopping).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(bounds.handshake, acceptor.accept(tcp));
                    if let Ok(Ok(stream)) = handshake.await {
                        connection(stream, peer, proxy, app, &bounds, stopping).await;
                    }
                }
            }
            drop(admitted);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    admission.drained(bounds.grace).await;
}

fn is_trusted(proxies: &[ipnet::IpNet], ip: std::net::IpAddr) -> bool {
    proxies.iter().any(|n| n.contains(&ip))
}

/// Hops of `X-Forwarded-For` looked at, from the right.
const MAX_FORWARDED_HOPS: usize = 20;

/// The client a trusted proxy's request is for: walking `X-Forwarded-For` from the right (the
/// hop the proxy added last), the first address that is not itself a trusted proxy. Entries to
/// its left were written by whoever sent the request and prove nothing. Without the header, or
/// when an entry is not an address, the proxy nearest that entry is taken as the client.
fn forwarded_client(
    headers: &axum::http::HeaderMap,
    proxy: std::net::IpAddr,
    trusted: &[ipnet::IpNet],
) -> std::net::IpAddr {
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = proxy;
    for hop in hops.iter().rev().take(MAX_FORWARDED_HOPS) {
        let hop = hop.trim();
        // A port may follow an IPv4 address, and brackets may hold an IPv6 one.
        let bare = hop
            .strip_prefix('[')
            .and_then(|h| h.split(']').next())
            .unwrap_or_else(|| match hop.split_once(':') {
                Some((v4, _)) if !hop[v4.len() + 1..].contains(':') => v4,
                _ => hop,
            });
        let Ok(ip) = bare.parse::<std::net::IpAddr>() else {
            return client;
        };
        let ip = ip.to_canonical();
        if !is_trusted(trusted, ip) {
            return ip;
        }
        client = ip;
    }
    client
}

async fn refuse(mut tcp: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.write_all(REFUSED)).await;
}

/// One connection's requests until the client leaves, a bound ends it, or the listener stops
/// (then the request under way is finished and the connection closed).
/// `proxy`: the peer is one of the trusted proxies (looked up once, at accept).
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    proxy: bool,
    app: Router,
    bounds: &Bounds,
    mut stopping: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let body_limit = bounds.body;
    let trusted = bounds.trusted_proxies.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let mut app = app.clone();
        let (mut parts, body) = req.into_parts();
        let client = if proxy {
            SocketAddr::new(forwarded_client(&parts.headers, peer.ip(), &trusted), 0)
        } else {
            peer
        };
        parts.extensions.insert(axum::extract::ConnectInfo(client));
        let body = Body::new(Deadline {
            inner: body,
            sleep: Box::pin(tokio::time::sleep(body_limit)),
        });
        async move { tower_service::Service::call(&mut app, Request::from_parts(parts, body)).await }
    });
    let io = hyper_util::rt::TokioIo::new(StallBound::new(stream, bounds.stalled_write));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(bounds.head)
        .serve_connection(io, service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopping.wait_for(|s| *s) => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// A request body that ends in an error once its time is up, however slowly it trickles.
struct Deadline {
    inner: hyper::body::Incoming,
    sleep: Pin<Box<Sleep>>,
}

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err("the request body took too long".into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A stream whose writes fail once one of them has made no progress for `limit`: a client that
/// asks and never reads cannot hold its connection by filling the socket's buffers.
struct StallBound<S> {
    inner: S,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallBound<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallBound {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After a write-side poll: progress clears the clock, a wait starts it (once) and fails
    /// when it runs out.
    fn watch<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if r.is_ready() {
            self.stalled = None;
            return r;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of the response",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallBound<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallBound<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::AsyncReadExt;
    use tokio::sync::oneshot;

    const SHORT: Duration = Duration::from_millis(300);

    #[test]
    fn the_client_is_the_nearest_hop_that_is_not_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/24".parse().expect("net")];
        let proxy: std::net::IpAddr = "10.0.0.7".parse().expect("ip");
        let client = |values: &[&str]| {
            let mut h = axum::http::HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", v.parse().expect("value"));
            }
            forwarded_client(&h, proxy, &trusted).to_string()
        };
        assert_eq!(client(&[]), "10.0.0.7");
        assert_eq!(client(&["203.0.113.5"]), "203.0.113.5");
        // What the client wrote itself, left of the hop the proxy added, proves nothing.
        assert_eq!(client(&["198.51.100.1, 203.0.113.5"]), "203.0.113.5");
        assert_eq!(client(&["198.51.100.1", "203.0.113.5"]), "203.0.113.5");
        // Through two proxies of ours.
        assert_eq!(client(&["203.0.113.5, 10.0.0.9"]), "203.0.113.5");
        // Ports and brackets.
        assert_eq!(client(&["203.0.113.5:4711"]), "203.0.113.5");
        assert_eq!(client(&["[2001:db8::5]:4711"]), "2001:db8::5");
        assert_eq!(client(&["2001:db8::5"]), "2001:db8::5");
        assert_eq!(client(&["::ffff:203.0.113.5"]), "203.0.113.5");
        // Garbage stops the walk at the last proxy.
        assert_eq!(client(&["unknown"]), "10.0.0.7");
        assert_eq!(client(&["203.0.113.5, junk, 10.0.0.9"]), "10.0.0.9");
    }

    async fn start(
        bounds: Bounds,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let app = Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/echo",
                post(|body: String| async move { body.len().to_string() }),
            )
            .route("/big", get(|| async { "x".repeat(16 << 20) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel();
        let stop = async move {
            let _ = rx.await;
        };
        let task = tokio::spawn(serve(listener, app, None, bounds, stop));
        (addr, tx, task)
    }

    fn short() -> Bounds {
        Bounds {
            head: SHORT,
            body: SHORT,
            stalled_write: SHORT,
            grace: SHORT,
            ..Bounds::default()
        }
    }

    /// Reads until the server closes the connection (at most 5 s): what it sent.
    async fn until_closed(s: &mut TcpStream) -> String {
        let mut got = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
        assert!(r.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&got).into_owned()
    }

    #[tokio::test]
    async fn connections_that_send_nothing_or_drip_their_head_are_closed() {
        let (addr, _stop, _task) = start(short()).await;
        let mut silent = TcpStream::connect(addr).await.expect("connect");
        assert_eq!(until_closed(&mut silent).await, "", "a silent client");

        let mut dripping = TcpStream::connect(addr).await.expect("connect");
        dripping
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        for _ in 0..20 {
            if dripping.write_all(b"X-Drip: 1\r\n").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let answer = until_closed(&mut dripping).await;
        assert!(!answer.contains("hello"), "{answer}");

        let mut kept = TcpStream::connect(addr).await.expect("connect");
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let answer = until_closed(&mut kept).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
            "{answer}"
        );
    }

    #[tokio::test]
    async fn a_trickled_body_ends_at_the_body_bound() {
        let (addr, _stop, _task) = start(short()).await;
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n")
            .await
            .expect("write");
        for _ in 0..30 {
            if s.write_all(b"ab").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let answer = until_closed(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nabcd")
            .await
            .expect("write");
        assert!(
            until_closed(&mut s).await.ends_with("\r\n\r\n4"),
            "a prompt body is read"
        );
    }

    #[tokio::test]
    async fn clients_over_their_cap_get_503_and_an_unread_answer_frees_its_place() {
        let (addr, _stop, _task) = start(Bounds {
            max_connections_per_ip: 1,
            ..short()
        })
        .await;
        // 16 MB asked for and never read: the socket's buffers fill and the write stalls.
        let mut greedy = TcpStream::connect(addr).await.expect("connect");
        greedy
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut second = TcpStream::connect(addr).await.expect("connect");
        let answer = until_closed(&mut second).await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(
            answer.ends_with("too many connections, try again later\n"),
            "{answer}"
        );

        // After the stall bound the greedy connection is dropped and its place is free.
        let mut served = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut s = TcpStream::connect(addr).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .expect("write");
            if until_closed(&mut s).await.starts_with("HTTP/1.1 200") {
                served = true;
                break;
            }
        }
        assert!(served, "the stalled connection kept its place");
        drop(greedy);
    }

    #[tokio::test]
    async fn a_stop_closes_idle_connections_and_returns() {
        let (addr, stop, task) = start(Bounds {
            head: Duration::from_secs(60),
            grace: Duration::from_secs(5),
            ..Bounds::default()
        })
        .await;
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let done = tokio::time::timeout(Duration::from_secs(3), task).await;
        assert!(done.is_ok(), "the listener waited out an idle connection");
        assert_eq!(until_closed(&mut idle).await, "");
    }
}
