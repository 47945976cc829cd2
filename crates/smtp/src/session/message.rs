//! A message's data: DATA with its dot-unstuffing decoder, BDAT chunks, and the memory both
//! take from the relay's budget for messages in transit (`memory.rs`).

use super::{Flow, Session};
use crate::Policy;
use crate::data::{DataDecoder, normalise_line_ends};
use crate::memory::Share;
use crate::reply::Reply;

impl<P: Policy> Session<P> {
    /// Ends a BDAT message's phase: its deadline and its memory; true when it found no room.
    pub(super) fn end_bdat(&mut self) -> bool {
        self.bdat_deadline = None;
        self.bdat_share = None;
        std::mem::take(&mut self.bdat_no_room)
    }

    /// Reads more of a message's data: `false` (after telling the client why) when the client
    /// went quiet for `data_timeout`, the message passed its `deadline`, or the connection ended.
    async fn fill_data(&mut self, deadline: tokio::time::Instant) -> std::io::Result<bool> {
        let idle = tokio::time::Instant::now() + self.config.data_timeout;
        let until = idle.min(deadline);
        match tokio::time::timeout_at(until, self.conn.fill()).await {
            Err(_) if until == deadline => {
                self.reply(Reply::new(
                    421,
                    "4.4.2 Message data took too long, closing connection",
                ));
                Ok(false)
            }
            Err(_) => {
                self.reply(Reply::new(
                    421,
                    "4.4.2 Timeout waiting for data, closing connection",
                ));
                Ok(false)
            }
            Ok(r) => Ok(r? > 0),
        }
    }

    pub(super) async fn data(&mut self, state: &mut P::Conn) -> std::io::Result<Flow> {
        match &self.tx {
            None => return Ok(self.error(Reply::new(503, "5.5.1 Need MAIL command"))),
            Some(tx) if tx.rcpts.is_empty() => {
                return Ok(self.error(Reply::new(503, "5.5.1 Need RCPT command")));
            }
            Some(_) if self.bdat.is_some() => {
                return Ok(self.error(Reply::new(503, "5.5.1 DATA not allowed after BDAT")));
            }
            Some(_) => {}
        }
        self.reply(Reply::new(354, "Start mail input; end with <CRLF>.<CRLF>"));
        let declared = self.tx.as_ref().and_then(|t| t.params.size);
        let mut decoder = DataDecoder::expecting(self.config.max_message_size, declared);
        let mut share = Some(Share::new(&self.config.data_memory));
        let deadline = tokio::time::Instant::now() + self.config.data_total_timeout;
        loop {
            let end = decoder.feed(self.conn.buffered());
            if share.as_mut().is_some_and(|s| !s.cover(decoder.held())) {
                // The relay's memory for messages in transit is spent: read to the end, drop,
                // and give back what this message had taken.
                share = None;
                decoder.drop_body();
            }
            if let Some(used) = end {
                self.conn.consume(used);
                break;
            }
            let n = self.conn.buffered().len();
            self.conn.consume(n);
            if !self.fill_data(deadline).await? {
                return Ok(Flow::Close);
            }
        }
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        if share.is_none() {
            self.reply(no_room_reply());
            return Ok(Flow::Continue);
        }
        if decoder.overflowed() {
            self.reply(Reply::new(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
            return Ok(Flow::Continue);
        }
        tx.bare_line_ends = decoder.bare_line_ends();
        let reply = self
            .policy
            .data(state, &self.peer, tx, decoder.into_body())
            .await;
        self.accepted(reply);
        Ok(Flow::Continue)
    }

    pub(super) async fn bdat(
        &mut self,
        state: &mut P::Conn,
        size: usize,
        last: bool,
    ) -> std::io::Result<Flow> {
        let limit = self.config.max_message_size;
        let mut gathered = self.bdat.take().unwrap_or(Some(Vec::new()));
        let so_far = gathered.as_ref().map_or(usize::MAX, Vec::len);
        if so_far.saturating_add(size) > limit {
            // A chunk that cannot fit is refused before its bytes are read; they would follow
            // at once and cannot be told from commands, so the connection ends here.
            self.reply(Reply::new(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
            self.reply(Reply::new(
                421,
                "4.7.0 Closing connection: the chunk's data is not read",
            ));
            return Ok(Flow::Close);
        }
        let deadline = *self
            .bdat_deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + self.config.data_total_timeout);
        // The chunk is read whatever happens next: its bytes are not commands.
        let mut left = size;
        while left > 0 {
            if self.conn.buffered().is_empty() && !self.fill_data(deadline).await? {
                return Ok(Flow::Close);
            }
            let take = left.min(self.conn.buffered().len());
            if let Some(body) = gathered.as_mut() {
                let room = self
                    .bdat_share
                    .get_or_insert_with(|| Share::new(&self.config.data_memory))
                    .cover(body.len() + take);
                if body.len() + take > limit {
                    gathered = None;
                } else if !room {
                    // The relay's memory for messages in transit is spent: read on, drop.
                    gathered = None;
                    self.bdat_share = None;
                    self.bdat_no_room = true;
                } else {
                    body.extend_from_slice(&self.conn.buffered()[..take]);
                }
            }
            self.conn.consume(take);
            left -= take;
        }
        match &self.tx {
            None => {
                self.end_bdat();
                return Ok(self.error(Reply::new(503, "5.5.1 Need MAIL command")));
            }
            Some(tx) if tx.rcpts.is_empty() => {
                self.end_bdat();
                return Ok(self.error(Reply::new(503, "5.5.1 Need RCPT command")));
            }
            Some(_) => {}
        }
        if !last {
            self.bdat = Some(gathered);
            self.reply(Reply::new(250, format!("2.0.0 {size} octets received")));
            return Ok(Flow::Continue);
        }
        let no_room = self.end_bdat();
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        if no_room {
            self.reply(no_room_reply());
            return Ok(Flow::Continue);
        }
        let Some(body) = gathered else {
            self.reply(Reply::new(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
            return Ok(Flow::Continue);
        };
        let (body, bare) = normalise_line_ends(body);
        tx.bare_line_ends = bare;
        tx.chunked = true;
        let reply = self.policy.data(state, &self.peer, tx, body).await;
        self.accepted(reply);
        Ok(Flow::Continue)
    }
}

/// A message dropped because the relay's memory for messages in transit was spent.
fn no_room_reply() -> Reply {
    Reply::new(
        452,
        "4.3.1 Insufficient system resources: too much mail in transit, try again later",
    )
}
