//! The PROXY protocol (HAProxy's, versions 1 and 2): a load balancer in front of the relay
//! opens each connection with one header naming the client it speaks for, so that connector
//! ranges, connection caps, AUTH limits and the trace see the client and not the balancer. Only
//! connections from the addresses an operator lists (`[smtp] proxy_protocol_from`) are read so:
//! from anyone else such a header would let a client claim a connector's address. A header is
//! read within a few seconds and at most `MAX_HEADER` bytes, before anything else.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The wait for a balancer's header (it sends it as soon as it connects).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// A version 2 header longer than this (with its extensions) is refused; version 1's own limit
/// is 107 bytes.
const MAX_HEADER: usize = 1024;
const V1_MAX: usize = 107;
const V1_START: &[u8] = b"PROXY ";
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Whom a connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A client, as the balancer saw it.
    Client(SocketAddr),
    /// The balancer itself (a health check: version 2's LOCAL, version 1's UNKNOWN, or an
    /// address family that is not IP).
    Balancer,
}

/// Reads the header at the start of `tcp`, and not a byte past it: what follows may be a TLS
/// handshake (implicit TLS), which must reach the TLS layer whole. The header is looked at
/// with `peek` until it is complete (a balancer sends it in one write), then read off.
/// `None` when the balancer closed without a byte: a health check that only connects.
pub async fn read_header(tcp: &mut TcpStream) -> io::Result<Option<Source>> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        // 0 only when nothing was sent before the close (a part of a header sent before it
        // stays there to peek at, until the caller's time runs out).
        let n = tcp.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        match parse(&buf[..n]) {
            Ok(Some((source, used))) => {
                tcp.read_exact(&mut buf[..used]).await?;
                return Ok(Some(source));
            }
            // Part of it so far: the rest comes with the next segment.
            Ok(None) => tokio::time::sleep(Duration::from_millis(5)).await,
            Err(why) => return Err(io::Error::new(io::ErrorKind::InvalidData, why)),
        }
    }
}

/// A whole header at the start of `buf` and its length; `None` while more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Source, usize)>, &'static str> {
    let starts = |sig: &[u8]| buf[..buf.len().min(sig.len())] == sig[..buf.len().min(sig.len())];
    if buf.is_empty() {
        Ok(None)
    } else if starts(V1_START) {
        v1(buf)
    } else if starts(&V2_SIGNATURE) {
        v2(buf)
    } else {
        Err("no PROXY header")
    }
}

fn v1(buf: &[u8]) -> Result<Option<(Source, usize)>, &'static str> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(end) = memchr::memmem::find(window, b"\r\n") else {
        return if buf.len() >= V1_MAX {
            Err("PROXY header longer than 107 bytes")
        } else {
            Ok(None)
        };
    };
    let line = std::str::from_utf8(&buf[..end]).map_err(|_| "PROXY header is not text")?;
    let fields: Vec<&str> = line.split(' ').collect();
    let source = match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Source::Balancer,
        ["PROXY", family, src, dst, sport, dport] => {
            // The destination is checked for form only: the relay knows its own address.
            let src: IpAddr = match *family {
                "TCP4" => {
                    dst.parse::<Ipv4Addr>().map_err(|_| "bad destination")?;
                    src.parse::<Ipv4Addr>().map_err(|_| "bad source")?.into()
                }
                "TCP6" => {
                    dst.parse::<Ipv6Addr>().map_err(|_| "bad destination")?;
                    src.parse::<Ipv6Addr>().map_err(|_| "bad source")?.into()
                }
                _ => return Err("unknown PROXY family"),
            };
            let sport: u16 = sport.parse().map_err(|_| "bad source port")?;
            let _: u16 = dport.parse().map_err(|_| "bad destination port")?;
            Source::Client(SocketAddr::new(src.to_canonical(), sport))
        }
        _ => return Err("malformed PROXY header"),
    };
    Ok(Some((source, end + 2)))
}

fn v2(buf: &[u8]) -> Result<Option<(Source, usize)>, &'static str> {
    if buf.len() < 16 {
        return Ok(None);
    }
    let (version, command) = (buf[12] >> 4, buf[12] & 0x0f);
    if version != 2 {
        return Err("PROXY version 2 header of another version");
    }
    let len = 16 + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_HEADER {
        return Err("PROXY header too long");
    }
    if buf.len() < len {
        return Ok(None);
    }
    let body = &buf[16..len];
    let source = match (command, buf[13]) {
        // LOCAL: the balancer's own connection, whatever the family says.
        (0, _) => Source::Balancer,
        // PROXY, TCP over IPv4: source, destination, source port, destination port.
        (1, 0x11) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let port = u16::from_be_bytes([body[8], body[9]]);
            Source::Client(SocketAddr::new(ip.into(), port))
        }
        (1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            let ip = IpAddr::from(Ipv6Addr::from(octets)).to_canonical();
            let port = u16::from_be_bytes([body[32], body[33]]);
            Source::Client(SocketAddr::new(ip, port))
        }
        (1, 0x11 | 0x21) => return Err("PROXY addresses cut short"),
        // Unspecified, or a stream over a Unix socket: no client address to take.
        (1, 0x00 | 0x31) => Source::Balancer,
        (1, _) => return Err("PROXY header for a transport that is not a stream"),
        _ => return Err("unknown PROXY command"),
    };
    Ok(Some((source, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(s: &str) -> Source {
        Source::Client(s.parse().expect("address"))
    }

    #[test]
    fn version_1_names_the_client() {
        let h = b"PROXY TCP4 198.51.100.7 192.0.2.1 40123 25\r\nEHLO x\r\n";
        assert_eq!(parse(h), Ok(Some((client("198.51.100.7:40123"), 44))));
        let h = b"PROXY TCP6 2001:db8::7 2001:db8::1 40123 25\r\n";
        assert_eq!(parse(h), Ok(Some((client("[2001:db8::7]:40123"), h.len()))));
        let h = b"PROXY TCP6 ::ffff:198.51.100.7 ::1 1 25\r\n";
        assert_eq!(parse(h), Ok(Some((client("198.51.100.7:1"), h.len()))));
        let h = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(h), Ok(Some((Source::Balancer, h.len()))));
    }

    #[test]
    fn version_2_names_the_client_or_the_balancer() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 192, 0, 2, 1, 0x9c, 0x7b, 0, 25,
        ]);
        h.extend_from_slice(b"EHLO x\r\n");
        assert_eq!(parse(&h), Ok(Some((client("198.51.100.7:40059"), 28))));
        // Extensions (TLVs) after the addresses are skipped with them.
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x21, 0, 40]);
        h.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().expect("v6").octets());
        h.extend_from_slice(&[0; 16]);
        h.extend_from_slice(&[0, 80, 0, 25, 0x04, 0, 1, 0]);
        assert_eq!(parse(&h), Ok(Some((client("[2001:db8::7]:80"), 56))));
        // A health check.
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&h), Ok(Some((Source::Balancer, 16))));
    }

    #[test]
    fn a_header_in_pieces_waits_for_the_rest() {
        let whole = b"PROXY TCP4 198.51.100.7 192.0.2.1 40123 25\r\n";
        for cut in 0..whole.len() {
            assert_eq!(parse(&whole[..cut]), Ok(None), "cut at {cut}");
        }
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 192, 0, 2, 1, 0, 1, 0, 25,
        ]);
        for cut in 0..h.len() {
            assert_eq!(parse(&h[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            &b"EHLO client.example\r\n"[..],
            b"PROXY TCP4 198.51.100.7\r\n",
            b"PROXY TCP4 2001:db8::7 192.0.2.1 1 25\r\n",
            b"PROXY TCP4 198.51.100.7 192.0.2.1 99999 25\r\n",
            b"PROXY SCTP 198.51.100.7 192.0.2.1 1 25\r\n",
            &[b'P'; 200],
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let v1_long = format!("PROXY TCP4 {}", "1".repeat(120));
        assert!(parse(v1_long.as_bytes()).is_err());
        let v2 = |tail: &[u8]| {
            let mut h = V2_SIGNATURE.to_vec();
            h.extend_from_slice(tail);
            h
        };
        // Too long, cut-short addresses, UDP, version 1 in a version 2 signature.
        assert!(parse(&v2(&[0x21, 0x11, 0xff, 0xff])).is_err());
        assert!(parse(&v2(&[0x21, 0x11, 0, 4, 1, 2, 3, 4])).is_err());
        assert!(
            parse(&v2(&[
                0x21, 0x12, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2
            ]))
            .is_err()
        );
        assert!(parse(&v2(&[0x11, 0x11, 0, 0])).is_err());
    }
}
