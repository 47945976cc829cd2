//! Listeners: accept connections, enforce connection caps, run one session task per client, and
//! shut down gracefully (stop accepting, let sessions finish, bounded by a grace period).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::Policy;
use crate::admission::{Admission, Refused, accept};
use crate::config::ServerConfig;
use crate::io::{Conn, Stream};
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
}

impl<P: Policy> Listener<P> {
    pub fn new(listener: TcpListener, config: ServerConfig, policy: Arc<P>) -> Self {
        Listener {
            listener,
            config: Arc::new(config),
            policy,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts until shutdown, then waits for open sessions (at most `grace`).
    pub async fn run(self, shutdown: Shutdown, grace: Duration) {
        let config = self.config;
        let admission = Admission::new(config.max_connections, config.max_connections_per_ip);
        let tls = config.tls.clone().map(TlsAcceptor::from);
        let mut stop = shutdown.subscribe();
        loop {
            let (socket, addr) = tokio::select! {
                a = accept(&self.listener, config.kind.as_str()) => a,
                _ = stop.changed() => break,
            };
            let _ = socket.set_nodelay(true);
            let ip = addr.ip();
            let refusal = match admission.try_admit(ip) {
                Err(Refused::Full) => {
                    Reply::new(421, "4.7.0 Too many connections, try again later")
                }
                Err(Refused::Client) => Reply::new(
                    421,
                    "4.7.0 Too many connections from your address, try again later",
                ),
                Ok(admitted) => {
                    let session = Session::new(
                        Conn::new(Stream::Plain(socket)),
                        addr,
                        config.clone(),
                        self.policy.clone(),
                        tls.clone(),
                        shutdown.subscribe(),
                        admission.busy(),
                    );
                    tokio::spawn(async move {
                        session.run().await;
                        drop(admitted);
                    });
                    continue;
                }
            };
            metrics_refused(&config, ip);
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

fn metrics_refused(config: &ServerConfig, ip: IpAddr) {
    tracing::info!(listener = config.kind.as_str(), %ip, "connection refused: connection limit");
}
