//! Test fixtures, by what they start: the relay as a real process (`relay`), a raw SMTP client
//! (`client`), a receiving SMTP server (`receiver`), a DNS server (`dns`), an HTTPS server (`https`) and a
//! real Rspamd
//! (`rspamd`), all on loopback, and a headless Chromium (`browser`); a CA made at run time
//! (`ca`). Every wait is bounded.

mod browser;
mod ca;
mod client;
mod dns;
mod https;
mod receiver;
mod relay;
mod rspamd;

pub use browser::*;
pub use ca::*;
pub use client::*;
pub use dns::*;
pub use https::*;
pub use receiver::*;
pub use relay::*;
pub use rspamd::*;

use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_relayward");

/// A real peer a test needs is missing (`why`): in CI (`CI=true`) the test fails; elsewhere it
/// says loudly that it is skipped, and the caller returns.
pub fn skip_or_fail(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}");
    }
    eprintln!("\n!!!!! SKIPPED: {why} !!!!!\n");
}

/// A one-thread runtime for a peer the test serves itself (a receiver, an HTTPS server), with
/// its listener bound at `addr` (port 0: any).
pub fn serving_runtime(
    addr: std::net::SocketAddr,
) -> (tokio::runtime::Runtime, tokio::net::TcpListener) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("rt");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    (rt, listener)
}

/// A loopback port free now, for a peer the test starts (Postfix, HAProxy, Rspamd, a browser).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A loopback port for a peer the test starts (Postfix, haproxy, Rspamd, chromedriver), which
/// binds it some time after it is chosen. A port from the kernel's ephemeral range could be
/// taken meanwhile by any test's outgoing connection, so this one comes from below that range,
/// checked free; where the range starts too low to leave room, it is any free port.
pub fn peer_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(0);
    if low < 12_000 {
        return free_port();
    }
    for _ in 0..100 {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let port = 10_000 + (random % u64::from(low - 10_000)) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// A loopback port where connections are refused, for as long as the returned socket lives: it
/// is bound without listening (and without SO_REUSEADDR), so no other test's listener can be
/// given the same port while this one counts on nothing answering there.
pub fn refusing_port() -> (socket2::Socket, std::net::SocketAddr) {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&any.into()).expect("bind a loopback port");
    let addr = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("the bound address");
    (socket, addr)
}

/// Polls `f` until it returns `Some`, for at most `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// RFC 6238 with SHA-1, 30-second steps, six digits: what an authenticator app shows.
pub fn totp_now(secret_b32: &str) -> String {
    const B32: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut key, mut buf, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in secret_b32.bytes() {
        let v = B32.iter().position(|&x| x == c).expect("base32") as u32;
        buf = (buf << 5) | v;
        bits += 5;
        if bits >= 8 {
            key.push((buf >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    let step = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        / 30;
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &key);
    let h = aws_lc_rs::hmac::sign(&k, &step.to_be_bytes());
    let h = h.as_ref();
    let o = usize::from(h[19] & 0x0f);
    let bin = (u32::from(h[o]) & 0x7f) << 24
        | u32::from(h[o + 1]) << 16
        | u32::from(h[o + 2]) << 8
        | u32::from(h[o + 3]);
    format!("{:06}", bin % 1_000_000)
}
