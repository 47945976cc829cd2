//! Listeners: accept connections, enforce connection caps, run one session task per client, and
//! shut down gracefully (stop accepting, let sessions finish, bounded by a grace period).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Policy;
use crate::admission::{Admission, Admitted, Refused, accept};
use crate::config::ServerConfig;
use crate::io::{Conn, Stream};
use crate::proxy;
use crate::reply::Reply;
use crate::session::Session;

/// Sender side of the shutdown signal; dropping it or calling `trigger` starts the shutdown.
#[derive(Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
        }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }

    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.tx.subscribe()
    }
}

pub struct Listener<P: Policy> {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    policy: Arc<P>,
    /// Whether accepted connections come with `TCP_NODELAY` already set (see `nodelay_inherited`).
    nodelay_inherited: bool,
}

impl<P: Policy> Listener<P> {
    pub fn new(listener: TcpListener, config: ServerConfig, policy: Arc<P>) -> Self {
        let nodelay_inherited = nodelay_inherited(&listener);
        Listener {
            listener,
            config: Arc::new(config),
            policy,
            nodelay_inherited,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until shutdown, then waits for open sessions (at most `grace`).
    pub async fn run(self, shutdown: Shutdown, grace: Duration) {
        let config = self.config;
        let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
        let mut stop = shutdown.subscribe();
        loop {
            let (socket, addr) = tokio::select! {
                a = accept(&self.listener, config.kind.as_str()) => a,
                _ = stop.changed() => break,
            };
            if !self.nodelay_inherited {
                let _ = socket.set_nodelay(true);
            }
            let ip = addr.ip();
            let balancer = config.proxy_from.iter().any(|n| n.contains(&ip));
            let admitted = if balancer {
                admission.try_admit_unattributed()
            } else {
                admission.try_admit(ip)
            };
            let refusal = match admitted {
                Err(Refused::Full) => {
                    Reply::new(421, "4.7.0 Too many connections, try again later")
                }
                Err(Refused::Client) => too_many_from_client(),
                Ok(admitted) => {
                    let session = Start {
                        socket,
                        addr,
                        balancer,
                        admitted,
                        config: config.clone(),
                        policy: self.policy.clone(),
                        stop: shutdown.subscribe(),
                        busy: admission.busy(),
                    };
                    // The connection's state (KBs) is put on the heap once: spawned inline,
                    // tokio would move all of it several times as it spawns the task and ends
                    // it (five copies and three more, callgrind).
                    tokio::spawn(Box::pin(session.run()));
                    continue;
                }
            };
            metrics_refused(&config, ip);
            // A client of the implicit-TLS listener cannot read a clear-text reply: it is
            // closed, as a handshake per refusal would cost what the caps are there to save.
            if config.implicit_tls {
                continue;
            }
            tokio::spawn(async move {
                let mut conn = Conn::new(Stream::Plain(socket));
                refusal.write_to(&mut conn.out);
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.flush()).await;
            });
        }
        // Stop accepting, then give the open sessions time to finish their transactions.
        drop(self.listener);
        admission.drained(grace).await;
    }
}

/// Replies go out as they are written (`TCP_NODELAY`): a reply written while an earlier one is
/// not yet acknowledged must not wait for the client's acknowledgement. Linux gives an accepted
/// connection the listening socket's setting, so setting it once here saves a system call per
/// connection (a relay whose clients open a connection per message makes one per message);
/// elsewhere each connection is set as it is accepted.
fn nodelay_inherited(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

fn too_many_from_client() -> Reply {
    Reply::new(
        421,
        "4.7.0 Too many connections from your address, try again later",
    )
}

/// An admitted connection on its way to its session: through a load balancer, its PROXY
/// header is read first and the connection counted for the client it names.
struct Start<P: Policy> {
    socket: tokio::net::TcpStream,
    addr: SocketAddr,
    balancer: bool,
    admitted: Admitted,
    config: Arc<ServerConfig>,
    policy: Arc<P>,
    stop: watch::Receiver<bool>,
    busy: crate::admission::BusyFlag,
}

impl<P: Policy> Start<P> {
    async fn run(mut self) {
        let mut peer = self.addr;
        if self.balancer {
            let header =
                tokio::time::timeout(proxy::HEADER_TIMEOUT, proxy::read_header(&mut self.socket))
                    .await;
            match header {
                Ok(Ok(Some(proxy::Source::Client(client)))) => peer = client,
                Ok(Ok(Some(proxy::Source::Balancer))) => {}
                Ok(Ok(None)) => {
                    tracing::debug!(balancer = %self.addr, "a load balancer connected and closed without a word (a health check)");
                    return;
                }
                Ok(Err(e)) => {
                    tracing::warn!(listener = self.config.kind.as_str(), balancer = %self.addr, error = %e, "connection from a load balancer closed: no usable PROXY header ([smtp] proxy_protocol_from lists it; the balancer must send one)");
                    return;
                }
                Err(_) => {
                    tracing::warn!(listener = self.config.kind.as_str(), balancer = %self.addr, "connection from a load balancer closed: no PROXY header within 5 s ([smtp] proxy_protocol_from lists it; the balancer must send one)");
                    return;
                }
            }
        }
        let mut conn = Conn::new(Stream::Plain(self.socket));
        if self.balancer && self.admitted.attribute(peer.ip()).is_err() {
            metrics_refused(&self.config, peer.ip());
            if self.config.implicit_tls {
                return;
            }
            too_many_from_client().write_to(&mut conn.out);
            let _ = tokio::time::timeout(Duration::from_secs(5), conn.flush()).await;
            return;
        }
        let session = Session::new(conn, peer, self.config, self.policy, self.stop, self.busy);
        session.run().await;
        drop(self.admitted);
    }
}

fn metrics_refused(config: &ServerConfig, ip: IpAddr) {
    tracing::info!(listener = config.kind.as_str(), %ip, "connection refused: connection limit");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_send_small_writes_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let inherited = nodelay_inherited(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let addr = listener.local_addr().expect("address");
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (accepted, _) = listener.accept().await.expect("accept");
        // Where the listener's setting is inherited, the session never sets it itself.
        assert_eq!(accepted.nodelay().expect("read TCP_NODELAY"), inherited);
    }
}
