//! SMTP's turn-taking (RFC 5321 4.3.1, RFC 2920 3.1): a client waits for the greeting and for
//! the replies to EHLO, HELO and DATA before it sends more. One that does not is answered 554
//! and the session ends, what it sent ahead unread (`[smtp] forbid_improper_pipelining`).

use std::time::Duration;

use smtp_proto::Request;

use super::{Flow, Session};
use crate::Policy;
use crate::reply::Reply;

/// How long a DATA that is refused waits for text sent behind it (see `out_of_turn`).
const REFUSED_DATA_LOOK: Duration = Duration::from_millis(200);

impl<P: Policy> Session<P> {
    /// Whether the client talked before the greeting (within `greet_pause`, or already there
    /// as the relay greets); then it has been answered.
    pub(super) async fn spoke_first(&mut self, state: &mut P::Conn) -> bool {
        if !self.turns_enforced() {
            return false;
        }
        let pause = if self.policy.greet_at_once(state) {
            Duration::ZERO
        } else {
            self.config.greet_pause
        };
        if !self.conn.input_within(pause).await {
            return false;
        }
        self.out_of_step(state, "CONNECT");
        true
    }

    /// Before a command is served: `Some(Flow::Close)`, the client answered, when it did not
    /// wait for the reply to it.
    pub(super) async fn out_of_turn(
        &mut self,
        state: &mut P::Conn,
        req: &Request<String>,
    ) -> Option<Flow> {
        if let Some(after) = self.sent_ahead(req) {
            return Some(self.out_of_step(state, after));
        }
        // A client that sends its message without waiting for the 354 may write it a moment
        // after the DATA: before a refusal lets the session read on, the relay looks a little
        // longer (only refused DATA waits; a client that waits sends nothing meanwhile).
        if matches!(req, Request::Data)
            && !self.data_expected()
            && self.conn.input_within(REFUSED_DATA_LOOK).await
        {
            return Some(self.out_of_step(state, "DATA"));
        }
        None
    }

    /// A command the client had to wait for the reply to, with more already sent behind it:
    /// its name. A DATA that will be refused counts whatever the operator chose: what follows
    /// it is the message's text, and it would be read as commands.
    fn sent_ahead(&self, req: &Request<String>) -> Option<&'static str> {
        if self.conn.buffered().is_empty() {
            return None;
        }
        let forbid = self.turns_enforced();
        match req {
            Request::Ehlo { .. } if forbid => Some("EHLO"),
            Request::Helo { .. } if forbid => Some("HELO"),
            Request::Data if forbid || !self.data_expected() => Some("DATA"),
            _ => None,
        }
    }

    /// Whether this client is held to the turns: the check is on and the operator has not
    /// spared its address (`improper_pipelining_allowed_from`).
    fn turns_enforced(&self) -> bool {
        let ip = self.peer.addr.ip().to_canonical();
        self.config.forbid_improper_pipelining
            && !self
                .config
                .improper_pipelining_allowed_from
                .iter()
                .any(|net| net.contains(&ip))
    }

    /// Whether a DATA now would be answered 354.
    fn data_expected(&self) -> bool {
        self.bdat.is_none() && self.tx.as_ref().is_some_and(|t| !t.rcpts.is_empty())
    }

    /// The client sent more before the reply it had to wait for: the greeting (`CONNECT`) or
    /// the reply to EHLO, HELO or DATA. What it sent ahead is not read (after a DATA the
    /// relay refused, it would be the message's text taken for commands); the session ends
    /// with a reply that says why.
    fn out_of_step(&mut self, state: &mut P::Conn, after: &'static str) -> Flow {
        self.drain_on_close = true;
        self.policy.improper_pipelining(state, &self.peer, after);
        let what = if after == "CONNECT" {
            "the client spoke before the greeting".to_string()
        } else {
            format!("input sent before the reply to {after}")
        };
        self.reply(Reply::new(
            554,
            format!("5.5.0 SMTP synchronization error: {what}, closing connection"),
        ));
        Flow::Close
    }
}
