//! Source-address claims as the stores index them: every connector range as the first and last
//! address it covers, both written as IPv6 (an IPv4 range as the IPv4-mapped range it is, so
//! `192.0.2.0/24` and `::ffff:192.0.2.0/120` are the same span) in 32 lower-case hex digits,
//! which sort as the addresses do in both engines.
//!
//! A claim check then reads two index ranges instead of every connector: the spans that start
//! inside the new range, and the spans that start at one of the new range's enclosing network
//! addresses and reach past its end (CIDR ranges nest or do not meet, so a range that starts
//! before the new one and overlaps it must contain it, and starts at one of those addresses).

use std::net::IpAddr;

use ipnet::IpNet;

/// A CIDR range as the claim index keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The network address, IPv6 (IPv4 mapped), as a number.
    lo: u128,
    /// The prefix length in IPv6 terms (an IPv4 /24 is /120).
    len: u8,
}

impl Span {
    /// A range written as an address or a CIDR range (`192.0.2.7`, `2001:db8::/48`); what a
    /// connector's `ips` hold. `None` for anything else.
    pub fn parse(s: &str) -> Option<Span> {
        let net = parse_range(s)?;
        Some(Span::of(net.addr(), net.prefix_len()))
    }

    /// The range of `len` bits around `addr` (an IPv4 length for an IPv4 address).
    pub fn of(addr: IpAddr, len: u8) -> Span {
        let (bits, len) = match addr {
            IpAddr::V4(v4) => (u128::from(v4.to_ipv6_mapped()), len.min(32) + 96),
            IpAddr::V6(v6) => (u128::from(v6), len.min(128)),
        };
        Span {
            lo: bits & mask(len),
            len,
        }
    }

    /// The first address, as the index keeps it.
    pub fn lo(&self) -> String {
        hex(self.lo)
    }

    /// The last address, as the index keeps it.
    pub fn hi(&self) -> String {
        hex(self.lo | !mask(self.len))
    }

    /// The network addresses of every range that encloses this one (wider prefixes), without
    /// repeats: where a span that starts before this one and overlaps it must start.
    pub fn enclosing_starts(&self) -> Vec<String> {
        let mut starts: Vec<u128> = (0..self.len).map(|l| self.lo & mask(l)).collect();
        starts.dedup();
        // A wider range with this very start is found by the "starts inside" half.
        starts.retain(|s| *s != self.lo);
        starts.into_iter().map(hex).collect()
    }
}

fn mask(len: u8) -> u128 {
    match len {
        0 => 0,
        l => u128::MAX << (128 - u32::from(l.min(128))),
    }
}

fn hex(v: u128) -> String {
    format!("{v:032x}")
}

/// An address or a CIDR range as connectors and the configuration write them (`192.0.2.7`,
/// `2001:db8::/48`), spaces around it ignored: the one grammar the claim index and the
/// directory (`relayward_tenancy::parse_net`) read.
pub fn parse_range(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// The spans of a connector's `ips`; entries that are not ranges are skipped (the directory
/// skips them too).
pub fn spans_of(ips: &[String]) -> Vec<Span> {
    ips.iter().filter_map(|ip| Span::parse(ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv4_range_and_its_mapped_form_are_one_span() {
        let a = Span::parse("192.0.2.0/24").expect("v4");
        let b = Span::parse("::ffff:192.0.2.0/120").expect("mapped");
        assert_eq!(a, b);
        assert_eq!(a.lo(), "00000000000000000000ffffc0000200");
        assert_eq!(a.hi(), "00000000000000000000ffffc00002ff");
        let host = Span::parse(" 192.0.2.77 ").expect("host");
        assert_eq!(host.lo(), host.hi());
        assert_eq!(host.lo(), "00000000000000000000ffffc000024d");
        // Host bits of a range are dropped, as the claim checks drop them.
        assert_eq!(Span::parse("192.0.2.77/24"), Some(a));
    }

    #[test]
    fn enclosing_starts_are_the_wider_networks_start_addresses() {
        let s = Span::parse("10.1.2.0/24").expect("range");
        let starts = s.enclosing_starts();
        assert!(starts.contains(&Span::parse("10.0.0.0/8").expect("8").lo()));
        assert!(starts.contains(&Span::parse("10.1.0.0/16").expect("16").lo()));
        assert!(starts.contains(&Span::parse("::/0").expect("0").lo()));
        assert!(!starts.contains(&s.lo()));
        let mut sorted = starts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), starts.len(), "no repeats");
        assert!(
            Span::parse("::/0")
                .expect("all")
                .enclosing_starts()
                .is_empty()
        );
    }

    #[test]
    fn hex_sorts_as_the_addresses_do() {
        let order = [
            "::1",
            "10.0.0.1",
            "10.0.0.255",
            "192.0.2.1",
            "2001:db8::1",
            "ffff::",
        ];
        let hexes: Vec<String> = order
            .iter()
            .map(|s| Span::parse(s).expect("address").lo())
            .collect();
        let mut sorted = hexes.clone();
        sorted.sort();
        assert_eq!(hexes, sorted);
        assert!(Span::parse("not an address").is_none());
        assert!(Span::parse("10.0.0.0/33").is_none());
    }
}
