//! Which addresses mail may be delivered to. Whoever holds a domain's DNS chooses where mail to
//! it goes (its MX records, or the name in a route): an address on the provider's own networks
//! there would have the relay open connections, speak SMTP and report what answered, inside the
//! network it runs in, for any tenant's user who sends there. So an address that is not on the
//! public internet, found in DNS, is reached only when the operator lists its network in
//! `[delivery] private_destinations`. The operator's own choices are always reached: the smart
//! host, and a route written as an address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Whether mail may go to `ip`: a public address, or one in a network the operator allowed.
pub fn may_reach(ip: IpAddr, allowed: &[IpNet]) -> bool {
    let ip = ip.to_canonical();
    is_public(ip) || allowed.iter().any(|n| n.contains(&ip))
}

/// Whether `ip` is an address on the public internet (so neither loopback, private, shared,
/// link-local, multicast nor reserved; IPv6 addresses that carry an IPv4 address are judged by
/// it).
pub fn is_public(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => public_v6(v6),
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || a >= 240
        // Shared address space (RFC 6598), the inside of carrier and cloud networks.
        || (a == 100 && (64..128).contains(&b)))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) addresses stand for an IPv4 address.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return public_v4(embedded_v4(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        return public_v4(embedded_v4(s[1], s[2]));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local (fc00::/7), link-local (fe80::/10) and the old site-local (fec0::/10).
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        // The rest of ::/8 (IPv4-compatible and other reserved forms).
        || s[0] == 0)
}

fn embedded_v4(hi: u16, lo: u16) -> Ipv4Addr {
    Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn the_providers_own_networks_are_not_public() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            assert!(!is_public(ip(s)), "{s} is not public");
        }
        for s in [
            "192.0.2.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "2a00:1450::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn the_operator_allows_networks_by_name() {
        let allowed: Vec<IpNet> = vec!["10.20.0.0/16".parse().expect("net")];
        assert!(may_reach(ip("10.20.5.5"), &allowed));
        assert!(!may_reach(ip("10.21.5.5"), &allowed));
        assert!(may_reach(ip("::ffff:10.20.5.5"), &allowed));
        assert!(may_reach(ip("8.8.8.8"), &[]));
    }
}
