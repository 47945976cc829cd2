//! Recipients refused to clients that nobody here vouches for (no connector claims their
//! address, no user authenticated), counted per client address across connections, in a window
//! of `[smtp] refused_recipients_window` from the address's first refusal: past
//! `refused_recipients_per_address` in it, the address gets `421` for every recipient until the
//! window ends. A few dozen bytes per address, whatever the limit. An inbound sender that guesses
//! addresses of a tenant's domain (a directory harvest: each `550 5.1.1` tells it which exist)
//! or probes for an open relay learns a bounded number of answers, however many connections it
//! opens.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use relayward_smtp::admission::client_key as key;

/// Addresses followed at once (each takes a few dozen bytes, so at most a few MB in all); past
/// it, those whose window has ended are dropped, and a new address is not counted while every
/// place holds a live one (an attacker with more addresses than this gets only the per-session
/// bound). The full table is swept at most once a second: many new addresses cost a look-up
/// each, not a pass over the table each.
const MAX_TRACKED: usize = 100_000;
const SWEEP_EVERY_MS: i64 = 1000;

pub struct Probes {
    per_address: u32,
    window_ms: i64,
    /// Per client (an IPv4 address or an IPv6 /64): its window's start and its refusals in it.
    refusals: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_client: HashMap<IpAddr, Window>,
    /// When the full table was last swept of ended windows.
    swept: i64,
}

/// Refusals counted from an address's first refusal for one window's length.
#[derive(Clone, Copy)]
struct Window {
    start: i64,
    refused: u32,
}

impl Probes {
    /// `[smtp] refused_recipients_per_address` within `refused_recipients_window`.
    pub fn of(config: &relayward_config::Config) -> Probes {
        Probes::new(
            config.refused_recipients_per_address,
            config.refused_recipients_window,
        )
    }

    pub fn new(per_address: u32, window: Duration) -> Probes {
        Probes {
            per_address: per_address.max(1),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            refusals: Mutex::default(),
        }
    }

    fn live(&self, w: &Window, now: i64) -> bool {
        now < w.start.saturating_add(self.window_ms)
    }

    /// Whether `ip` has had its share of refusals in its window at `now` (ms).
    pub fn over(&self, ip: IpAddr, now: i64) -> bool {
        let Ok(table) = self.refusals.lock() else {
            return false;
        };
        table
            .by_client
            .get(&key(ip))
            .is_some_and(|w| self.live(w, now) && w.refused >= self.per_address)
    }

    /// Counts a recipient refused to `ip`; true when this one reaches the limit.
    pub fn refused(&self, ip: IpAddr, now: i64) -> bool {
        let Ok(mut table) = self.refusals.lock() else {
            return false;
        };
        let k = key(ip);
        if table.by_client.len() >= MAX_TRACKED && !table.by_client.contains_key(&k) {
            if now.saturating_sub(table.swept) < SWEEP_EVERY_MS {
                return false;
            }
            table.swept = now;
            table.by_client.retain(|_, w| self.live(w, now));
            if table.by_client.len() >= MAX_TRACKED {
                return false;
            }
        }
        let w = table.by_client.entry(k).or_insert(Window {
            start: now,
            refused: 0,
        });
        if !self.live(w, now) {
            *w = Window {
                start: now,
                refused: 0,
            };
        }
        if w.refused >= self.per_address {
            return false;
        }
        w.refused += 1;
        w.refused == self.per_address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_share_of_refusals_per_window() {
        let p = Probes::new(3, Duration::from_secs(600));
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        assert!(!p.refused(ip, 0));
        assert!(!p.refused(ip, 1));
        assert!(!p.over(ip, 2));
        assert!(p.refused(ip, 3), "the third reaches the limit");
        assert!(p.over(ip, 4));
        assert!(!p.refused(ip, 5), "counted once past it, not again");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        assert!(!p.over(other, 6), "another address is counted apart");
        assert!(
            p.over(ip, 599_999),
            "until the first refusal leaves the window"
        );
        assert!(!p.over(ip, 600_000));
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64() {
        let p = Probes::new(2, Duration::from_secs(600));
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        p.refused(a, 0);
        p.refused(b, 1);
        assert!(p.over(a, 2));
        assert!(!p.over(c, 2));
    }
}
