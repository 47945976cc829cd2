//! Test fixtures, by what they start: the relay as a real process (`relay`), a raw SMTP client
//! (`client`), a receiving SMTP server (`receiver`), a DNS server (`dns`) and a real Rspamd
//! (`rspamd`), all on loopback. Every wait is bounded.

mod client;
mod dns;
mod receiver;
mod relay;
mod rspamd;

pub use client::*;
pub use dns::*;
pub use receiver::*;
pub use relay::*;
pub use rspamd::*;

use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_relayward");

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
