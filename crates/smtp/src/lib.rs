//! The server side of SMTP (RFC 5321) for Relayward's listeners.
//!
//! This crate speaks the protocol and enforces the protocol's own limits (line length, sizes,
//! recipients per message, timeouts, error counts, connection caps). It knows nothing of tenants,
//! domains or restrictions: at each step it asks a [`Policy`] and writes the reply it is given.
//! It must never accept a message without the policy's `data` answer, and never let bytes sent
//! before STARTTLS completed be read as commands after it.

pub mod admission;
mod command;
mod config;
mod data;
mod io;
pub mod memory;
mod proxy;
mod reply;
mod server;
mod session;

pub use command::parse_command;
pub use config::{ListenerKind, ServerConfig, TlsConfig};
pub use data::DataDecoder;
pub use data::normalise_line_ends;
pub use reply::Reply;
pub use server::{Listener, Shutdown};
pub use session::{MailParams, Peer, Rcpt, Transaction};

use std::future::Future;
use std::net::IpAddr;

/// The decisions the protocol needs from the rest of the relay. One `Conn` value lives as long as
/// the SMTP connection and carries whatever the policy learnt about the client (attribution).
pub trait Policy: Send + Sync + 'static {
    type Conn: Send + 'static;

    /// A client connected. `Err` refuses it with that reply (sent instead of the greeting).
    fn connect(&self, ip: IpAddr, kind: ListenerKind) -> Result<Self::Conn, Reply>;

    /// TLS is up; `cert_names` are the verified names (CN, SANs) of the client certificate, if one
    /// was presented and verified.
    fn tls_established(&self, conn: &mut Self::Conn, cert_names: &[String]);

    /// SMTP AUTH with a user name and password (PLAIN or LOGIN).
    fn authenticate(
        &self,
        conn: &mut Self::Conn,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<(), Reply>> + Send;

    /// `MAIL FROM`; the address is empty for the null sender.
    fn mail(
        &self,
        conn: &mut Self::Conn,
        peer: &Peer,
        from: &str,
        params: &MailParams,
    ) -> Result<(), Reply>;

    /// `RCPT TO`, with the transaction as it stands before this recipient.
    fn rcpt(
        &self,
        conn: &mut Self::Conn,
        peer: &Peer,
        tx: &Transaction,
        rcpt: &Rcpt,
    ) -> Result<(), Reply>;

    /// Whether the client is greeted without `greet_pause` (a tenant's own server, known by
    /// its address, which opens a connection per message and follows the protocol); it is
    /// still checked for words already sent.
    fn greet_at_once(&self, _conn: &Self::Conn) -> bool {
        false
    }

    /// The client broke SMTP's turn-taking (`after`: `CONNECT` for the greeting, or `EHLO`,
    /// `HELO` or `DATA`) and is being disconnected with a 554; for the operator's counts and
    /// log.
    fn improper_pipelining(&self, _conn: &mut Self::Conn, _peer: &Peer, _after: &'static str) {}

    /// The whole message arrived. The reply is final for the transaction: a 250 must mean the
    /// message is durably queued.
    fn data(
        &self,
        conn: &mut Self::Conn,
        peer: &Peer,
        tx: Transaction,
        body: Vec<u8>,
    ) -> impl Future<Output = Reply> + Send;
}
