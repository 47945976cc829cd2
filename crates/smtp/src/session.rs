//! One SMTP session: the command loop, the transaction state and the replies.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use smtp_proto::Request;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::Policy;
use crate::admission::BusyFlag;
use crate::command::parse_command;
use crate::config::{ListenerKind, ServerConfig};
use crate::io::{Conn, Line, Stream};
use crate::reply::Reply;

mod message;
mod turns;

/// What the session knows about its client.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub kind: ListenerKind,
    pub helo: Option<String>,
    pub tls: bool,
    pub auth_user: Option<String>,
}

/// Parameters of `MAIL FROM` that travel with the message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<usize>,
    pub body_8bit: bool,
    pub smtputf8: bool,
    /// DSN `RET`: `Some(true)` for FULL, `Some(false)` for HDRS.
    pub ret_full: Option<bool>,
    pub env_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    pub address: String,
    pub orcpt: Option<String>,
    /// DSN `NOTIFY` as smtp-proto's `RCPT_NOTIFY_*` bits; 0 when not given.
    pub notify: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub mail_from: String,
    pub params: MailParams,
    pub rcpts: Vec<Rcpt>,
    /// Bare CR or LF line ends normalised to CRLF in the body.
    pub bare_line_ends: usize,
    pub chunked: bool,
}

enum Flow {
    Continue,
    Close,
}

/// What waiting for a command came to.
enum Wait {
    Line(std::io::Result<Line>),
    TimedOut,
    /// The listener is stopping.
    Stopping,
}

pub(crate) struct Session<P: Policy> {
    conn: Conn,
    peer: Peer,
    config: Arc<ServerConfig>,
    policy: Arc<P>,
    stop: watch::Receiver<bool>,
    /// Whether the listener is busy (`admission.rs`): then a command is waited for less long.
    busy: BusyFlag,
    tx: Option<Transaction>,
    /// The message being sent in BDAT chunks, from its first chunk to its last.
    bdat: Option<message::Chunked>,
    errors: u32,
    /// Commands that move no mail (`max_junk_commands`) since the session began or the last
    /// message was accepted.
    junk: u32,
    commands_unauthenticated: u32,
    auth_failures: u32,
    /// The session ends while the client may still be sending (improper pipelining, a 421 from
    /// the policy, too many errors): what it sends is read and dropped before the close.
    drain_on_close: bool,
}

impl<P: Policy> Session<P> {
    pub(crate) fn new(
        conn: Conn,
        addr: SocketAddr,
        config: Arc<ServerConfig>,
        policy: Arc<P>,
        stop: watch::Receiver<bool>,
        busy: BusyFlag,
    ) -> Self {
        Session {
            conn,
            peer: Peer {
                addr,
                kind: config.kind,
                helo: None,
                tls: false,
                auth_user: None,
            },
            config,
            policy,
            stop,
            busy,
            tx: None,
            bdat: None,
            errors: 0,
            junk: 0,
            commands_unauthenticated: 0,
            auth_failures: 0,
            drain_on_close: false,
        }
    }

    pub(crate) async fn run(mut self) {
        // Implicit TLS: the handshake comes first, and everything after it is encrypted.
        let names = if self.config.implicit_tls {
            match self.handshake().await {
                Some(names) => Some(names),
                None => return,
            }
        } else {
            None
        };
        let mut state = match self.policy.connect(self.peer.addr.ip(), self.peer.kind) {
            Ok(s) => s,
            Err(reply) => {
                self.reply(reply);
                let _ = self.conn.flush().await;
                return;
            }
        };
        if let Some(names) = names {
            self.policy.tls_established(&mut state, &names);
        }
        if self.spoke_first(&mut state).await {
            self.conn.close_draining().await;
            return;
        }
        let greeting = Reply::new(220, format!("{} ESMTP Relayward", self.config.hostname));
        self.reply(greeting);
        if let Err(e) = self.serve(&mut state).await {
            tracing::debug!(peer = %self.peer.addr, error = %e, "session ended by I/O error");
        }
        if self.drain_on_close {
            self.conn.close_draining().await;
        }
        let _ = self.conn.flush().await;
    }

    fn reply(&mut self, reply: Reply) {
        reply.write_to(&mut self.conn.out);
    }

    fn idle(&self) -> bool {
        self.tx.is_none() && self.bdat.is_none()
    }

    async fn serve(&mut self, state: &mut P::Conn) -> std::io::Result<()> {
        loop {
            if *self.stop.borrow() && self.idle() {
                self.reply(Reply::new(
                    421,
                    "4.3.2 Service shutting down, try again later",
                ));
                return Ok(());
            }
            let wait = if self.idle() && self.conn.buffered().is_empty() {
                self.wait_for_command().await
            } else {
                let limit = self.command_limit();
                match tokio::time::timeout(limit, self.conn.read_line(self.config.max_line)).await {
                    Ok(r) => Wait::Line(r),
                    Err(_) => Wait::TimedOut,
                }
            };
            let line = match wait {
                Wait::Stopping => continue,
                Wait::TimedOut => {
                    self.reply(Reply::new(
                        421,
                        "4.4.2 Timeout waiting for a command, closing connection",
                    ));
                    return Ok(());
                }
                Wait::Line(r) => r?,
            };
            let line = match line {
                Line::Eof => return Ok(()),
                Line::TooLong => {
                    if let Flow::Close = self.error(Reply::new(500, "5.5.2 Line too long")) {
                        return Ok(());
                    }
                    continue;
                }
                Line::Ok(l) => l,
            };
            if self.peer.kind == ListenerKind::Submission && self.peer.auth_user.is_none() {
                self.commands_unauthenticated += 1;
                if self.commands_unauthenticated > self.config.max_commands_unauthenticated {
                    self.reply(Reply::new(
                        421,
                        "4.7.0 Too many commands before authentication, closing connection",
                    ));
                    return Ok(());
                }
            }
            let flow = match parse_command(&line) {
                Ok(req) => self.command(state, req).await?,
                Err(reply) => self.error(reply),
            };
            if let Flow::Close = flow {
                return Ok(());
            }
        }
    }

    /// How long the next command is waited for: less while the listener is busy.
    fn command_limit(&self) -> Duration {
        if self.busy.get() {
            self.config
                .busy_command_timeout
                .min(self.config.command_timeout)
        } else {
            self.config.command_timeout
        }
    }

    /// Waits for the next command between transactions (`Stopping`: the loop then says
    /// goodbye). While the listener is not busy the wait looks again every
    /// `busy_command_timeout`, so that a session waiting longer than that when the listener gets
    /// busy is closed within that time (a busy flag read now and then costs a message nothing,
    /// where a wake-up on every change would cost each wait).
    async fn wait_for_command(&mut self) -> Wait {
        let started = tokio::time::Instant::now();
        let mut stop = self.stop.clone();
        loop {
            let now = tokio::time::Instant::now();
            let deadline = started + self.command_limit();
            if now >= deadline {
                return Wait::TimedOut;
            }
            let look = (now + self.config.busy_command_timeout).min(deadline);
            tokio::select! {
                r = tokio::time::timeout_at(look, self.conn.read_line(self.config.max_line)) => {
                    if let Ok(r) = r {
                        return Wait::Line(r);
                    }
                }
                _ = stop.changed() => return Wait::Stopping,
            }
        }
    }

    /// Counts a command that moves no mail; past `max_junk_commands` it counts as an error.
    fn junk(&mut self, flow: Flow) -> Flow {
        self.junk += 1;
        if self.junk <= self.config.max_junk_commands || matches!(flow, Flow::Close) {
            return flow;
        }
        self.errors += 1;
        if self.errors >= self.config.max_errors {
            return self.too_many_errors();
        }
        flow
    }

    /// The 421 that ends a session past `max_errors`. A client sending that much is likely
    /// still sending: what it sends meanwhile is read and dropped, so that the close is not a
    /// reset and the client reads why instead of "connection reset".
    fn too_many_errors(&mut self) -> Flow {
        self.reply(Reply::new(421, "4.7.0 Too many errors, closing connection"));
        self.drain_on_close = true;
        Flow::Close
    }

    /// Sends a protocol error and counts it; closes after too many.
    fn error(&mut self, reply: Reply) -> Flow {
        self.errors += 1;
        self.reply(reply);
        if self.errors >= self.config.max_errors {
            return self.too_many_errors();
        }
        Flow::Continue
    }

    async fn command(
        &mut self,
        state: &mut P::Conn,
        req: Request<String>,
    ) -> std::io::Result<Flow> {
        if let Some(close) = self.out_of_turn(state, &req).await {
            return Ok(close);
        }
        let flow = match req {
            Request::Ehlo { host } => {
                self.reset();
                self.peer.helo = Some(host);
                let reply = self.ehlo_reply();
                self.reply(reply);
                self.junk(Flow::Continue)
            }
            Request::Helo { host } => {
                self.reset();
                self.peer.helo = Some(host);
                let text = format!("{} Hello", self.config.hostname);
                self.reply(Reply::new(250, text));
                self.junk(Flow::Continue)
            }
            Request::StartTls => return self.starttls(state).await,
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(state, mechanism, initial_response).await,
            Request::Mail { from } => {
                let reply = self.mail(state, from);
                self.answer(reply)
            }
            Request::Rcpt { to } => {
                let reply = self.rcpt(state, to);
                self.answer(reply)
            }
            Request::Data => return self.data(state).await,
            Request::Bdat {
                chunk_size,
                is_last,
            } => return self.bdat(state, chunk_size, is_last).await,
            Request::Rset => {
                self.reset();
                self.reply(Reply::ok());
                self.junk(Flow::Continue)
            }
            Request::Noop { .. } => {
                self.reply(Reply::ok());
                self.junk(Flow::Continue)
            }
            Request::Quit => {
                self.reply(Reply::new(221, "2.0.0 Bye"));
                Flow::Close
            }
            Request::Vrfy { .. } => {
                self.reply(Reply::new(502, "5.5.1 VRFY command is disabled"));
                self.junk(Flow::Continue)
            }
            Request::Expn { .. } => {
                self.reply(Reply::new(502, "5.5.1 EXPN command is disabled"));
                self.junk(Flow::Continue)
            }
            Request::Help { .. } => {
                self.reply(Reply::new(214, "2.0.0 Relayward: see RFC 5321"));
                self.junk(Flow::Continue)
            }
            Request::Lhlo { .. } => self.error(Reply::new(500, "5.5.1 Command unrecognized")),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => {
                self.error(Reply::new(502, "5.5.1 Command not implemented"))
            }
        };
        Ok(flow)
    }

    /// Writes a reply; a 5xx to a command counts as a protocol error only for sequence and
    /// syntax problems, which the helpers below report through `Err`.
    fn answer(&mut self, reply: Result<Reply, Reply>) -> Flow {
        match reply {
            // RFC 5321 3.8: the relay closes the connection after it.
            Ok(r) if r.code == 421 => {
                self.reply(r);
                self.drain_on_close = true;
                Flow::Close
            }
            Ok(r) => {
                self.reply(r);
                Flow::Continue
            }
            Err(r) => self.error(r),
        }
    }

    /// The answer at the end of a message; a message taken starts the junk count again.
    fn accepted(&mut self, reply: Reply) {
        if reply.is_positive() {
            self.junk = 0;
        }
        self.reply(reply);
    }

    fn reset(&mut self) {
        self.tx = None;
        self.bdat = None;
    }

    fn ehlo_reply(&self) -> Reply {
        let mut lines = vec![
            format!("{} Hello [{}]", self.config.hostname, self.peer.addr.ip()),
            "PIPELINING".to_string(),
            format!("SIZE {}", self.config.max_message_size),
            "8BITMIME".to_string(),
            "SMTPUTF8".to_string(),
            "ENHANCEDSTATUSCODES".to_string(),
            "CHUNKING".to_string(),
            "DSN".to_string(),
        ];
        if self.config.tls.is_some() && !self.peer.tls {
            lines.push("STARTTLS".to_string());
        }
        if self.peer.kind == ListenerKind::Submission
            && self.peer.tls
            && self.peer.auth_user.is_none()
        {
            lines.push("AUTH PLAIN LOGIN".to_string());
        }
        Reply::new(250, lines.join("\n"))
    }

    async fn starttls(&mut self, state: &mut P::Conn) -> std::io::Result<Flow> {
        if self.config.tls.is_none() {
            return Ok(self.error(Reply::new(502, "5.5.1 STARTTLS not available")));
        }
        if self.peer.tls {
            return Ok(self.error(Reply::new(503, "5.5.1 TLS already active")));
        }
        if !self.idle() {
            return Ok(self.error(Reply::new(
                503,
                "5.5.1 STARTTLS not allowed during a mail transaction",
            )));
        }
        self.reply(Reply::new(220, "2.0.0 Ready to start TLS"));
        self.conn.flush().await?;
        let dropped = self.conn.discard_buffered();
        if dropped > 0 {
            tracing::info!(peer = %self.peer.addr, bytes = dropped, "discarded clear-text bytes sent after STARTTLS");
        }
        let Some(names) = self.handshake().await else {
            return Ok(Flow::Close);
        };
        self.peer.helo = None;
        self.policy.tls_established(state, &names);
        Ok(Flow::Continue)
    }

    /// The server side of a TLS handshake on the plain connection (within 30 s); the client
    /// certificate's verified names, or `None` when there is no encrypted connection.
    async fn handshake(&mut self) -> Option<Vec<String>> {
        // The configuration as it is now: a client CA bundle read again since the session began
        // is trusted for this handshake.
        let Some(acceptor) = self
            .config
            .tls
            .as_ref()
            .map(|t| TlsAcceptor::from(t.current()))
        else {
            tracing::error!(peer = %self.peer.addr, "a TLS listener without a TLS configuration");
            return None;
        };
        let plain = std::mem::replace(&mut self.conn.stream, Stream::Closed);
        let Stream::Plain(tcp) = plain else {
            return None;
        };
        let tls = match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(tcp)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(peer = %self.peer.addr, error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => return None,
        };
        let names = client_cert_names(&tls);
        self.conn.stream = Stream::Tls(Box::new(tls));
        self.peer.tls = true;
        Some(names)
    }

    async fn auth(
        &mut self,
        state: &mut P::Conn,
        mechanism: u64,
        initial: String,
    ) -> std::io::Result<Flow> {
        if self.peer.kind != ListenerKind::Submission {
            return Ok(self.error(Reply::new(
                502,
                "5.5.1 AUTH is offered on the submission port only",
            )));
        }
        if !self.peer.tls {
            return Ok(self.error(Reply::new(
                538,
                "5.7.11 Encryption required for requested authentication mechanism",
            )));
        }
        if self.peer.auth_user.is_some() {
            return Ok(self.error(Reply::new(503, "5.5.1 Already authenticated")));
        }
        if !self.idle() {
            return Ok(self.error(Reply::new(
                503,
                "5.5.1 AUTH not allowed during a mail transaction",
            )));
        }
        let credentials = if mechanism == smtp_proto::AUTH_PLAIN {
            let response = if initial.is_empty() {
                match self.auth_prompt("").await? {
                    Some(r) => r,
                    None => return Ok(self.auth_cancelled()),
                }
            } else {
                initial
            };
            match decode_plain(&response) {
                // RFC 4616: the server checks that the authenticated user may act as the one
                // it names; here a user acts only as itself. Refused before the password is
                // looked at, so the reply says nothing about it.
                Some((authzid, user, _))
                    if !authzid.is_empty() && !authzid.eq_ignore_ascii_case(&user) =>
                {
                    return Ok(self.error(Reply::new(
                        535,
                        "5.7.8 Authentication failed: a user may only act as itself (the authorization identity names another)",
                    )));
                }
                plain => plain.map(|(_, user, password)| (user, password)),
            }
        } else if mechanism == smtp_proto::AUTH_LOGIN {
            let user = if initial.is_empty() {
                match self.auth_prompt("VXNlcm5hbWU6").await? {
                    Some(r) => r,
                    None => return Ok(self.auth_cancelled()),
                }
            } else {
                initial
            };
            let Some(pass) = self.auth_prompt("UGFzc3dvcmQ6").await? else {
                return Ok(self.auth_cancelled());
            };
            decode_b64(&user).zip(decode_b64(&pass))
        } else {
            return Ok(self.error(Reply::new(504, "5.5.4 Unrecognized authentication type")));
        };
        let Some((user, password)) = credentials else {
            return Ok(self.error(Reply::new(
                501,
                "5.5.2 Cannot decode the authentication response",
            )));
        };
        match self.policy.authenticate(state, &user, &password).await {
            Ok(()) => {
                self.peer.auth_user = Some(user);
                self.reply(Reply::new(235, "2.7.0 Authentication successful"));
                Ok(Flow::Continue)
            }
            Err(reply) => {
                self.auth_failures += 1;
                self.reply(reply);
                if self.auth_failures >= self.config.max_auth_failures {
                    self.reply(Reply::new(
                        421,
                        "4.7.0 Too many authentication failures, closing connection",
                    ));
                    return Ok(Flow::Close);
                }
                Ok(Flow::Continue)
            }
        }
    }

    fn auth_cancelled(&mut self) -> Flow {
        self.error(Reply::new(501, "5.7.0 Authentication cancelled"))
    }

    /// Sends a `334` challenge and reads the answer; `None` when the client cancels with `*`.
    async fn auth_prompt(&mut self, challenge: &str) -> std::io::Result<Option<String>> {
        self.reply(Reply::new(334, challenge));
        let line = tokio::time::timeout(
            self.config.command_timeout,
            self.conn.read_line(self.config.max_line),
        )
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "AUTH answer"))??;
        match line {
            Line::Ok(l) => {
                let s = String::from_utf8_lossy(&l).trim_end().to_string();
                Ok((s != "*").then_some(s))
            }
            Line::TooLong => Ok(None),
            Line::Eof => Err(std::io::ErrorKind::UnexpectedEof.into()),
        }
    }

    fn mail(
        &mut self,
        state: &mut P::Conn,
        from: smtp_proto::MailFrom<String>,
    ) -> Result<Reply, Reply> {
        if self.peer.helo.is_none() {
            return Err(Reply::new(503, "5.5.1 Send EHLO or HELO first"));
        }
        if self.tx.is_some() {
            return Err(Reply::new(503, "5.5.1 Sender already specified"));
        }
        if ends_badly(&from.address) {
            return Err(Reply::new(
                501,
                "5.1.7 Bad sender address syntax: its domain is empty or ends with a dot",
            ));
        }
        if !from.address.is_ascii() && from.flags & smtp_proto::MAIL_SMTPUTF8 == 0 {
            return Err(undeclared_utf8());
        }
        if from.size > self.config.max_message_size {
            return Ok(Reply::new(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
        }
        let params = MailParams {
            size: (from.size > 0).then_some(from.size),
            body_8bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8: from.flags & smtp_proto::MAIL_SMTPUTF8 != 0,
            ret_full: if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
                Some(true)
            } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
                Some(false)
            } else {
                None
            },
            env_id: from.env_id.clone(),
        };
        match self.policy.mail(state, &self.peer, &from.address, &params) {
            Ok(()) => {
                self.tx = Some(Transaction {
                    mail_from: from.address,
                    params,
                    ..Transaction::default()
                });
                Ok(Reply::new(250, "2.1.0 Sender OK"))
            }
            Err(reply) => Ok(reply),
        }
    }

    fn rcpt(
        &mut self,
        state: &mut P::Conn,
        to: smtp_proto::RcptTo<String>,
    ) -> Result<Reply, Reply> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(Reply::new(503, "5.5.1 Need MAIL command"));
        };
        if tx.rcpts.len() >= self.config.max_recipients {
            return Ok(Reply::new(452, "4.5.3 Too many recipients"));
        }
        if to.address.is_empty() {
            return Err(Reply::new(501, "5.1.3 Bad recipient address syntax"));
        }
        if !to.address.is_ascii() && !tx.params.smtputf8 {
            return Err(undeclared_utf8());
        }
        if ends_badly(&to.address) {
            return Err(Reply::new(
                501,
                "5.1.3 Bad recipient address syntax: its domain is empty or ends with a dot",
            ));
        }
        // RFC 3461 4.1: NEVER stands alone. Taken with others, the next hop (or our own
        // reports) would have to guess which was meant.
        if to.flags & smtp_proto::RCPT_NOTIFY_NEVER != 0
            && to.flags
                & (smtp_proto::RCPT_NOTIFY_SUCCESS
                    | smtp_proto::RCPT_NOTIFY_FAILURE
                    | smtp_proto::RCPT_NOTIFY_DELAY)
                != 0
        {
            return Err(Reply::new(
                501,
                "5.5.4 NOTIFY=NEVER cannot be combined with SUCCESS, FAILURE or DELAY",
            ));
        }
        let address = if to.address.eq_ignore_ascii_case("postmaster") {
            format!("postmaster@{}", self.config.hostname)
        } else {
            to.address
        };
        // A recipient named twice gets one copy: the repeat is taken, not counted again, and
        // not passed on (a next hop may deliver each RCPT it takes).
        if tx.rcpts.iter().any(|r| same_mailbox(&r.address, &address)) {
            return Ok(Reply::new(250, "2.1.5 Recipient OK (duplicate)"));
        }
        let rcpt = Rcpt {
            address,
            orcpt: to.orcpt,
            notify: to.flags
                & (smtp_proto::RCPT_NOTIFY_NEVER
                    | smtp_proto::RCPT_NOTIFY_SUCCESS
                    | smtp_proto::RCPT_NOTIFY_FAILURE
                    | smtp_proto::RCPT_NOTIFY_DELAY),
        };
        match self.policy.rcpt(state, &self.peer, tx, &rcpt) {
            Ok(()) => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.rcpts.push(rcpt);
                }
                Ok(Reply::new(250, "2.1.5 Recipient OK"))
            }
            Err(reply) => Ok(reply),
        }
    }
}

/// An address in UTF-8 in a transaction whose MAIL did not ask for SMTPUTF8 (RFC 6531 3.4).
/// Taken, it would leave in UTF-8 without the extension, which the next hop refuses or
/// misreads, and the sender would hear of it only by an NDR; Postfix answers the same.
fn undeclared_utf8() -> Reply {
    Reply::new(
        553,
        "5.6.7 Must declare SMTPUTF8 to send a Unicode address (MAIL FROM:<...> SMTPUTF8)",
    )
}

/// An address whose domain is empty (`alice@`) or ends with a dot (`alice@contoso.example.`):
/// neither is a domain in RFC 5321's syntax (4.1.2), and smtp-proto's parser lets both through.
/// Passed on, the next hop refuses it or reads it otherwise; and a trailing dot would make the
/// domain another string from the one the tenants' claims name.
fn ends_badly(address: &str) -> bool {
    address
        .rsplit_once('@')
        .is_some_and(|(_, domain)| domain.is_empty() || domain.ends_with('.'))
}

/// Whether two addresses name one mailbox: the same local part (RFC 5321 leaves its case to
/// the receiving host) at the same domain in any letter case, or, for a domain written in
/// Unicode, with the same A-labels (one name in two forms). ASCII addresses of different
/// lengths never do, so a transaction of many recipients compares them without splitting each;
/// a domain is converted only for a pair with the same local part.
fn same_mailbox(a: &str, b: &str) -> bool {
    let ascii = a.is_ascii() && b.is_ascii();
    if ascii && a.len() != b.len() {
        return false;
    }
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => {
            la == lb
                && (da.eq_ignore_ascii_case(db)
                    || (!ascii
                        && relayward_names::domain_key(da) == relayward_names::domain_key(db)))
        }
        _ => a == b,
    }
}

fn decode_b64(s: &str) -> Option<String> {
    B64.decode(s.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// `authzid NUL authcid NUL password` (RFC 4616).
fn decode_plain(s: &str) -> Option<(String, String, String)> {
    let raw = decode_b64(s)?;
    let mut parts = raw.split('\0');
    let authzid = parts.next()?.to_string();
    let user = parts.next()?.to_string();
    let pass = parts.next()?.to_string();
    (parts.next().is_none() && !user.is_empty()).then_some((authzid, user, pass))
}

/// The DNS names of a verified client certificate (empty when none was presented).
fn client_cert_names(tls: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>) -> Vec<String> {
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        return Vec::new();
    };
    match webpki::EndEntityCert::try_from(cert) {
        Ok(ee) => ee
            .valid_dns_names()
            .map(|n| n.to_ascii_lowercase())
            .collect(),
        Err(_) => Vec::new(),
    }
}
