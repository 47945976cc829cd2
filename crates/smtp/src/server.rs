//! Listeners: accept connections, enforce connection caps, run one session task per client, and
//! shut down gracefully (stop accepting, let sessions finish, bounded by a grace period).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;

use crate::Policy;
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
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let per_ip: Arc<Mutex<HashMap<IpAddr, usize>>> = Arc::default();
        let tls = config.tls.clone().map(TlsAcceptor::from);
        let mut stop = shutdown.subscribe();
        let mut backoff = Duration::from_millis(5);
        loop {
            let accepted = tokio::select! {
                r = self.listener.accept() => r,
                _ = stop.changed() => break,
            };
            let (socket, addr) = match accepted {
                Ok(a) => {
                    backoff = Duration::from_millis(5);
                    a
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    continue;
                }
            };
            let _ = socket.set_nodelay(true);
            let ip = addr.ip();
            let refusal = match slots.clone().try_acquire_owned() {
                Err(_) => Some((
                    None,
                    Reply::new(421, "4.7.0 Too many connections, try again later"),
                )),
                Ok(permit) => {
                    let mut map = per_ip.lock().unwrap_or_else(|p| p.into_inner());
                    let n = map.entry(ip).or_insert(0);
                    if *n >= config.max_connections_per_ip {
                        Some((
                            Some(permit),
                            Reply::new(
                                421,
                                "4.7.0 Too many connections from your address, try again later",
                            ),
                        ))
                    } else {
                        *n += 1;
                        drop(map);
                        let guard = IpGuard {
                            ip,
                            map: per_ip.clone(),
                            _permit: permit,
                        };
                        let session = Session::new(
                            Conn::new(Stream::Plain(socket)),
                            addr,
                            config.clone(),
                            self.policy.clone(),
                            tls.clone(),
                            shutdown.subscribe(),
                        );
                        tokio::spawn(async move {
                            session.run().await;
                            drop(guard);
                        });
                        continue;
                    }
                }
            };
            if let Some((_permit, reply)) = refusal {
                metrics_refused(&config, ip);
                tokio::spawn(async move {
                    let mut conn = Conn::new(Stream::Plain(socket));
                    reply.write_to(&mut conn.out);
                    let _ = tokio::time::timeout(Duration::from_secs(5), conn.flush()).await;
                });
            }
        }
        // Stop accepting, then give the open sessions time to finish their transactions.
        drop(self.listener);
        let all = config.max_connections as u32;
        let _ = tokio::time::timeout(grace, slots.acquire_many(all)).await;
    }
}

fn metrics_refused(config: &ServerConfig, ip: IpAddr) {
    tracing::info!(listener = config.kind.as_str(), %ip, "connection refused: connection limit");
}

struct IpGuard {
    ip: IpAddr,
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
