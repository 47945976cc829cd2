//! Recipients refused to clients that nobody here vouches for (no connector claims their
//! address, no user authenticated), counted per client address across connections: past
//! `[smtp] refused_recipients_per_address` within `refused_recipients_window`, the address gets
//! `421` for every recipient until the window moves on. An inbound sender that guesses
//! addresses of a tenant's domain (a directory harvest: each `550 5.1.1` tells it which exist)
//! or probes for an open relay learns a bounded number of answers, however many connections it
//! opens.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use relayward_smtp::admission::client_key as key;

/// Addresses followed at once; past it, those whose refusals all left the window are dropped,
/// and a new address is not counted while every place holds a live one (an attacker with more
/// addresses than this gets only the per-session bound).
const MAX_TRACKED: usize = 100_000;

pub struct Probes {
    per_address: usize,
    window_ms: i64,
    /// Refusal times per client (an IPv4 address or an IPv6 /64), oldest first.
    refusals: Mutex<HashMap<IpAddr, VecDeque<i64>>>,
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
            per_address: usize::try_from(per_address).unwrap_or(usize::MAX).max(1),
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX),
            refusals: Mutex::default(),
        }
    }

    /// Whether `ip` has had its share of refusals within the window at `now` (ms).
    pub fn over(&self, ip: IpAddr, now: i64) -> bool {
        let Ok(mut map) = self.refusals.lock() else {
            return false;
        };
        let Some(at) = map.get_mut(&key(ip)) else {
            return false;
        };
        expire(at, now, self.window_ms);
        at.len() >= self.per_address
    }

    /// Counts a recipient refused to `ip`; true when this one reaches the limit.
    pub fn refused(&self, ip: IpAddr, now: i64) -> bool {
        let Ok(mut map) = self.refusals.lock() else {
            return false;
        };
        let k = key(ip);
        if map.len() >= MAX_TRACKED && !map.contains_key(&k) {
            map.retain(|_, at| {
                expire(at, now, self.window_ms);
                !at.is_empty()
            });
            if map.len() >= MAX_TRACKED {
                return false;
            }
        }
        let at = map.entry(k).or_default();
        expire(at, now, self.window_ms);
        if at.len() >= self.per_address {
            return false;
        }
        at.push_back(now);
        at.len() == self.per_address
    }
}

fn expire(at: &mut VecDeque<i64>, now: i64, window: i64) {
    while at.front().is_some_and(|t| *t <= now.saturating_sub(window)) {
        at.pop_front();
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
