//! Outbound TLS as opportunistic TLS has it (RFC 7435): tried whenever a destination offers it,
//! never a reason for mail to wait. Servers on the internet offer STARTTLS that then fails:
//! only old protocol versions or ciphers, a handshake that breaks, an EHLO over TLS that never
//! comes. Such a server gets its mail over a new connection without TLS in the same attempt,
//! and its address is remembered for an hour so the next connections go without TLS at once
//! (a STARTTLS the server refuses with a reply just lets the session go on without it).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::{Client, ClientError, ClientSettings};

/// How long an address whose STARTTLS failed is reached without trying TLS.
const REMEMBER: Duration = Duration::from_secs(3600);
/// Addresses remembered at most: past this, a failing address costs a second connection each
/// time instead of memory.
const MAX_REMEMBERED: usize = 10_000;

/// Addresses whose STARTTLS failed lately.
#[derive(Default)]
pub struct BrokenTls {
    until: Mutex<HashMap<IpAddr, Instant>>,
}

impl BrokenTls {
    fn is_broken(&self, ip: IpAddr) -> bool {
        let map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&ip).is_some_and(|until| *until > Instant::now())
    }

    fn remember(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut map = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_REMEMBERED && !map.contains_key(&ip) {
            map.retain(|_, until| *until > now);
            if map.len() >= MAX_REMEMBERED {
                return;
            }
        }
        map.insert(ip, now + REMEMBER);
    }
}

/// Connects as `Client::connect` does; when the destination's STARTTLS fails, connects again
/// without TLS. Returns the client and, when it goes without the TLS its destination offers,
/// why.
pub async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
    remote_name: &str,
    settings: ClientSettings,
    broken: &BrokenTls,
) -> Result<(Client, Option<String>), ClientError> {
    let plain = ClientSettings {
        tls: None,
        ..settings.clone()
    };
    if settings.tls.is_some() && broken.is_broken(addr.ip()) {
        let client = Client::connect(addr, source, remote_name, plain).await?;
        let fallback = client
            .caps
            .starttls
            .then(|| "its STARTTLS failed within the last hour".to_string());
        return Ok((client, fallback));
    }
    match Client::connect(addr, source, remote_name, settings).await {
        Ok(client) => {
            let fallback = client.starttls_refused.as_ref().map(|reply| {
                broken.remember(addr.ip());
                format!("it refused STARTTLS: {reply}")
            });
            Ok((client, fallback))
        }
        Err(e @ ClientError::Starttls { .. }) => {
            tracing::info!(addr = %addr, error = %e, "STARTTLS failed; connecting again without TLS");
            broken.remember(addr.ip());
            let client = Client::connect(addr, source, remote_name, plain).await?;
            Ok((client, Some(e.to_string())))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_remembered_for_a_while_and_the_memory_is_bounded() {
        let b = BrokenTls::default();
        let ip = |n: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n));
        assert!(!b.is_broken(ip(1)));
        b.remember(ip(1));
        assert!(b.is_broken(ip(1)));
        assert!(!b.is_broken(ip(2)));
        for n in 0..MAX_REMEMBERED as u32 + 50 {
            b.remember(ip(n));
        }
        let len = b.until.lock().expect("lock").len();
        assert_eq!(len, MAX_REMEMBERED);
        // An expired entry makes room.
        b.until
            .lock()
            .expect("lock")
            .insert(ip(1), Instant::now() - Duration::from_secs(1));
        assert!(!b.is_broken(ip(1)));
        b.remember(ip(MAX_REMEMBERED as u32 + 100));
        assert!(b.is_broken(ip(MAX_REMEMBERED as u32 + 100)));
    }
}
