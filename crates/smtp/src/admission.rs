//! How many connections a listener holds: at most `total` at once, and at most `per_client` from
//! one client. A client is an IPv4 address or an IPv6 /64 (one host usually has a whole /64, so
//! counting its addresses one by one would bound nothing). The SMTP listeners and the HTTP
//! listener count the same way. A listener is *busy* from when three quarters of its places are
//! taken until fewer than half are: its SMTP sessions then wait less for a client's next command,
//! so that clients holding connections open without sending mail cannot keep the places from
//! those that do. (Busy until half, not until under three quarters: shedding the first idle
//! session must not end the shedding of the others.)

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The connection caps of one listener.
#[derive(Clone)]
pub struct Admission {
    slots: Arc<Semaphore>,
    total: usize,
    per_client: usize,
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    busy: Arc<Busy>,
}

/// Whether a listener is busy, kept up to date as connections come and go.
struct Busy {
    from: usize,
    slots: Arc<Semaphore>,
    total: usize,
    now: Arc<AtomicBool>,
}

impl Busy {
    fn update(&self) {
        let open = self.total - self.slots.available_permits();
        let _ = self
            .now
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |busy| {
                Some(if busy {
                    open * 2 >= self.total
                } else {
                    open >= self.from
                })
            });
    }
}

/// A listener's busy flag as its sessions read it.
#[derive(Clone, Default)]
pub struct BusyFlag(Arc<AtomicBool>);

impl BusyFlag {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The listener holds `total` connections.
    Full,
    /// This client holds `per_client` connections.
    Client,
}

/// One admitted connection; dropping it gives its place back.
pub struct Admitted {
    /// The client it is counted for; `None` until a balancer has said whom it is for.
    key: Option<IpAddr>,
    per_client: usize,
    clients: Arc<Mutex<HashMap<IpAddr, usize>>>,
    busy: Arc<Busy>,
    permit: Option<OwnedSemaphorePermit>,
}

/// The key a client's connections are counted under: an IPv4 address as it is (IPv4-mapped IPv6
/// addresses included), an IPv6 address's first 64 bits.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let mut o = v6.octets();
            o[8..].fill(0);
            IpAddr::from(o)
        }
        v4 => v4,
    }
}

impl Admission {
    /// Caps of at least one connection each (a cap of 0 would refuse everyone silently).
    pub fn new(total: usize, per_client: usize) -> Admission {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        let slots = Arc::new(Semaphore::new(total));
        Admission {
            busy: Arc::new(Busy {
                from: (total * 3).div_ceil(4).max(1),
                slots: slots.clone(),
                total,
                now: Arc::default(),
            }),
            slots,
            total,
            per_client: per_client.max(1),
            clients: Arc::default(),
        }
    }

    /// `true` from three quarters of the places taken until fewer than half are.
    pub fn busy(&self) -> BusyFlag {
        BusyFlag(self.busy.now.clone())
    }

    /// Admits a connection from `ip`, or says which cap it meets.
    pub fn try_admit(&self, ip: IpAddr) -> Result<Admitted, Refused> {
        let mut admitted = self.try_admit_unattributed()?;
        admitted.attribute(ip)?;
        Ok(admitted)
    }

    /// Admits a connection whose client is not known yet (a load balancer's, until its PROXY
    /// header): only the total cap applies until [`Admitted::attribute`].
    pub fn try_admit_unattributed(&self) -> Result<Admitted, Refused> {
        let permit = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Full)?;
        self.busy.update();
        Ok(Admitted {
            key: None,
            per_client: self.per_client,
            clients: self.clients.clone(),
            busy: self.busy.clone(),
            permit: Some(permit),
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.total - self.slots.available_permits()
    }

    /// Waits until every admitted connection has ended, at most `grace`.
    pub async fn drained(&self, grace: Duration) {
        let all = u32::try_from(self.total).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(grace, self.slots.acquire_many(all)).await;
    }
}

/// The next connection on `listener`, with the client's address in its canonical form: on a
/// dual-stack listener (`[::]`) an IPv4 client arrives as `::ffff:a.b.c.d`, and everything that
/// looks at the address (connector ranges, the AUTH limiter, these caps, the trace) must see
/// `a.b.c.d`. A failure to accept (out of file descriptors and the like) is logged and waited
/// out, the wait doubling up to a second, instead of spinning.
pub async fn accept(listener: &TcpListener, what: &str) -> (TcpStream, std::net::SocketAddr) {
    let mut backoff = Duration::from_millis(5);
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                return (
                    stream,
                    std::net::SocketAddr::new(addr.ip().to_canonical(), addr.port()),
                );
            }
            Err(e) => {
                tracing::warn!(listener = what, error = %e, "accept failed; backing off");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

impl Admitted {
    /// Counts the connection for the client at `ip` (once), or says it holds its cap already.
    pub fn attribute(&mut self, ip: IpAddr) -> Result<(), Refused> {
        if self.key.is_some() {
            return Ok(());
        }
        let key = client_key(ip);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let n = clients.entry(key).or_insert(0);
        if *n >= self.per_client {
            return Err(Refused::Client);
        }
        *n += 1;
        self.key = Some(key);
        Ok(())
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = self.key
            && let Some(n) = clients.get_mut(&key)
        {
            *n -= 1;
            if *n == 0 {
                clients.remove(&key);
            }
        }
        drop(clients);
        drop(self.permit.take());
        self.busy.update();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn one_ipv6_host_is_one_client_however_many_addresses_it_uses() {
        let a = Admission::new(100, 2);
        let first = a.try_admit(ip("2001:db8:1:2::1")).expect("first");
        let _second = a.try_admit(ip("2001:db8:1:2:ffff::9")).expect("second");
        assert_eq!(
            a.try_admit(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")).err(),
            Some(Refused::Client),
            "a third address of the same /64 is the same client"
        );
        assert!(
            a.try_admit(ip("2001:db8:1:3::1")).is_ok(),
            "the next /64 is another client"
        );
        drop(first);
        assert!(
            a.try_admit(ip("2001:db8:1:2::7")).is_ok(),
            "a place given back is free again"
        );
    }

    #[test]
    fn ipv4_clients_count_by_address_and_the_total_caps_them_all() {
        let a = Admission::new(3, 2);
        let _x = a.try_admit(ip("192.0.2.1")).expect("x");
        let _y = a
            .try_admit(ip("::ffff:192.0.2.1"))
            .expect("mapped is the same");
        assert_eq!(a.try_admit(ip("192.0.2.1")).err(), Some(Refused::Client));
        let _z = a.try_admit(ip("192.0.2.2")).expect("another address");
        assert_eq!(a.try_admit(ip("192.0.2.3")).err(), Some(Refused::Full));
        assert_eq!(a.open(), 3);
    }

    #[tokio::test]
    async fn a_dual_stack_listener_gives_an_ipv4_client_its_ipv4_address() {
        let Ok(listener) = TcpListener::bind("[::]:0").await else {
            eprintln!("no IPv6 on this machine: dual-stack accept not checked");
            return;
        };
        let port = listener.local_addr().expect("addr").port();
        let client = TcpStream::connect(("127.0.0.1", port));
        let ((_, peer), _) = tokio::join!(accept(&listener, "test"), client);
        assert_eq!(peer.ip(), ip("127.0.0.1"), "not ::ffff:127.0.0.1");
    }

    #[test]
    fn busy_from_three_quarters_of_the_places_until_under_half() {
        let a = Admission::new(8, 8);
        let busy = a.busy();
        let mut held: Vec<_> = (0..5)
            .map(|_| a.try_admit(ip("192.0.2.1")).expect("place"))
            .collect();
        assert!(!busy.get(), "5 of 8");
        held.push(a.try_admit(ip("192.0.2.1")).expect("place"));
        assert!(busy.get(), "6 of 8");
        held.truncate(4);
        assert!(busy.get(), "4 of 8: still busy");
        held.pop();
        assert!(!busy.get(), "3 of 8");
        held.push(a.try_admit(ip("192.0.2.1")).expect("place"));
        held.push(a.try_admit(ip("192.0.2.1")).expect("place"));
        assert!(!busy.get(), "5 of 8: not busy again before three quarters");
    }
}
