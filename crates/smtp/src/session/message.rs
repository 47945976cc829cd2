//! A message's data: DATA with its dot-unstuffing decoder, BDAT chunks, and the memory both
//! take from the relay's budget for messages in transit (`memory.rs`).

use super::{Flow, Session};
use crate::data::{DataDecoder, header_section_over, normalise_line_ends};
use crate::memory::Share;
use crate::reply::Reply;
use crate::{Policy, ServerConfig};

impl<P: Policy> Session<P> {
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
            if let Some(s) = share.as_mut() {
                if decoder.overflowed() {
                    // Over the size limit, it keeps nothing more: what it took goes back now.
                    s.release();
                } else if !s.cover(decoder.held()) {
                    // The relay's memory for messages in transit is spent: read to the end,
                    // drop, and give back what this message had taken.
                    share = None;
                    decoder.drop_body();
                }
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
        let Some(mut share) = share else {
            self.no_room();
            return Ok(Flow::Continue);
        };
        if decoder.overflowed() {
            self.reply(Reply::new(
                552,
                "5.3.4 Message size exceeds fixed maximum message size",
            ));
            return Ok(Flow::Continue);
        }
        tx.bare_line_ends = decoder.bare_line_ends();
        let body = decoder.into_body();
        if self.header_too_long(&body) {
            return Ok(Flow::Continue);
        }
        if !share.cover_end_of_data(&body) {
            self.no_room();
            return Ok(Flow::Continue);
        }
        let reply = self.policy.data(state, &self.peer, tx, body).await;
        // Its part of the budget is held until the message is spooled or refused.
        drop(share);
        self.accepted(reply);
        Ok(Flow::Continue)
    }

    pub(super) async fn bdat(
        &mut self,
        state: &mut P::Conn,
        size: usize,
        last: bool,
    ) -> std::io::Result<Flow> {
        let mut chunked = match self.bdat.take() {
            Some(c) => c,
            None => Chunked::new(&self.config),
        };
        if chunked.received.saturating_add(size) > self.config.max_message_size {
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
        // The chunk is read whatever happens next: its bytes are not commands.
        let mut left = size;
        while left > 0 {
            if self.conn.buffered().is_empty() && !self.fill_data(chunked.deadline).await? {
                return Ok(Flow::Close);
            }
            let take = left.min(self.conn.buffered().len());
            chunked.keep(&self.conn.buffered()[..take]);
            self.conn.consume(take);
            left -= take;
        }
        match &self.tx {
            None => return Ok(self.error(Reply::new(503, "5.5.1 Need MAIL command"))),
            Some(tx) if tx.rcpts.is_empty() => {
                return Ok(self.error(Reply::new(503, "5.5.1 Need RCPT command")));
            }
            Some(_) => {}
        }
        if !last {
            self.bdat = Some(chunked);
            self.reply(Reply::new(250, format!("2.0.0 {size} octets received")));
            return Ok(Flow::Continue);
        }
        let Some(mut tx) = self.tx.take() else {
            return Ok(Flow::Continue);
        };
        let Chunked {
            body, mut share, ..
        } = chunked;
        let Some(body) = body.filter(|b| share.cover_end_of_data(b)) else {
            self.no_room();
            return Ok(Flow::Continue);
        };
        let (body, bare) = normalise_line_ends(body);
        if self.header_too_long(&body) {
            return Ok(Flow::Continue);
        }
        tx.bare_line_ends = bare;
        tx.chunked = true;
        let reply = self.policy.data(state, &self.peer, tx, body).await;
        // Its part of the budget is held until the message is spooled or refused.
        drop(share);
        self.accepted(reply);
        Ok(Flow::Continue)
    }

    /// Refuses a message whose header section is over `max_header_size` (true when it did).
    fn header_too_long(&mut self, body: &[u8]) -> bool {
        if !header_section_over(body, self.config.max_header_size) {
            return false;
        }
        self.reply(Reply::new(
            552,
            "5.3.4 Message header section exceeds fixed maximum size",
        ));
        true
    }

    /// Answers a message dropped because the relay's memory for messages in transit was spent.
    fn no_room(&mut self) {
        self.config.data_memory.count_refusal();
        self.reply(Reply::new(
            452,
            "4.3.1 Insufficient system resources: too much mail in transit, try again later",
        ));
    }
}

/// A message being sent in BDAT chunks (RFC 3030), from its first chunk to its last.
pub(super) struct Chunked {
    /// Octets of its chunks so far, kept or not: what the size limit counts.
    received: usize,
    /// Its chunks gathered, or `None` once the relay's memory for messages in transit was spent
    /// (the rest is read and dropped, and the message answered 452 at its end).
    body: Option<Vec<u8>>,
    /// Its part of that memory.
    share: Share,
    /// When its last chunk must have come.
    deadline: tokio::time::Instant,
}

impl Chunked {
    fn new(config: &ServerConfig) -> Chunked {
        Chunked {
            received: 0,
            body: Some(Vec::new()),
            share: Share::new(&config.data_memory),
            deadline: tokio::time::Instant::now() + config.data_total_timeout,
        }
    }

    /// Gathers bytes of a chunk, or drops the message when the memory for them cannot be had.
    fn keep(&mut self, bytes: &[u8]) {
        self.received += bytes.len();
        let Some(body) = &mut self.body else {
            return;
        };
        // The buffer's capacity is what it holds: it grows by doubling, covered beforehand.
        let need = body.len() + bytes.len();
        let capacity = if need > body.capacity() {
            need.max(body.capacity() * 2)
        } else {
            body.capacity()
        };
        if self.share.cover(capacity) {
            body.reserve_exact(capacity - body.len());
            body.extend_from_slice(bytes);
        } else {
            self.body = None;
            // What it had taken goes back at once, for the other messages.
            self.share.release();
        }
    }
}
