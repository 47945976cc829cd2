//! A transaction with BDAT (RFC 3030), where the server offers CHUNKING: the message goes in
//! one chunk of its exact size, as it is, without dot-stuffing. With a pipelining server a
//! message of at most `WITH_COMMANDS` bytes goes in the same write as its MAIL and RCPT
//! commands (RFC 3030 4.2 lets BDAT close a pipelined group), so the transaction takes one
//! round trip where DATA takes two (its `354` has to be waited for). A larger message waits
//! for the RCPT replies first, so a server that turns every recipient away is not sent
//! megabytes for nothing.

use super::data::{Step, write_plain};
use super::{Client, ClientError, OutMessage, SmtpReply, per_recipient};

/// The largest message sent in the same write as its commands: most mail.
const WITH_COMMANDS: usize = 64 * 1024;

impl Client {
    /// `send` from its MAIL command on, with BDAT. `mail` and `rcpt_lines` are the commands,
    /// each with its CRLF.
    pub(super) async fn send_chunked(
        &mut self,
        msg: &OutMessage<'_>,
        mail: &str,
        rcpt_lines: &[String],
    ) -> Result<Vec<SmtpReply>, ClientError> {
        let bdat = format!("BDAT {} LAST\r\n", msg.size());
        let (mail_reply, rcpt_replies, final_reply) = if self.caps.pipelining
            && msg.size() <= WITH_COMMANDS
        {
            let lines: usize = rcpt_lines.iter().map(String::len).sum();
            let mut commands = String::with_capacity(mail.len() + lines + bdat.len());
            commands.push_str(mail);
            rcpt_lines.iter().for_each(|l| commands.push_str(l));
            commands.push_str(&bdat);
            self.write_chunk(&[commands.as_bytes(), msg.head, msg.body])
                .await?;
            let mail_reply = self.read_reply("MAIL").await?;
            let mut rcpt_replies = Vec::with_capacity(rcpt_lines.len());
            for _ in rcpt_lines {
                rcpt_replies.push(self.read_reply("RCPT").await?);
            }
            // The server reads the chunk whatever it said to MAIL and RCPT, and answers it.
            let final_reply = self.read_reply("end of data").await?;
            (mail_reply, rcpt_replies, Some(final_reply))
        } else {
            let (mail_reply, rcpt_replies) = self.envelope(mail, rcpt_lines).await?;
            let final_reply =
                if mail_reply.is_positive() && rcpt_replies.iter().any(SmtpReply::is_positive) {
                    self.write_chunk(&[bdat.as_bytes(), msg.head, msg.body])
                        .await?;
                    Some(self.read_reply("end of data").await?)
                } else {
                    None
                };
            (mail_reply, rcpt_replies, final_reply)
        };
        if !mail_reply.is_positive() {
            return Ok(vec![mail_reply; msg.rcpts.len()]);
        }
        // A transaction that did not end in a delivery is reset before the next one.
        self.clean = final_reply.as_ref().is_some_and(SmtpReply::is_positive);
        self.messages_sent += 1;
        Ok(per_recipient(rcpt_replies, final_reply))
    }

    /// MAIL and RCPT, in one write to a pipelining server; RCPT only after a MAIL accepted
    /// to one that is not. (DATA's path uses it too when the server does not pipeline.)
    pub(super) async fn envelope(
        &mut self,
        mail: &str,
        rcpt_lines: &[String],
    ) -> Result<(SmtpReply, Vec<SmtpReply>), ClientError> {
        let mut rcpt_replies = Vec::with_capacity(rcpt_lines.len());
        if self.caps.pipelining {
            let mut batch = mail.to_string();
            rcpt_lines.iter().for_each(|l| batch.push_str(l));
            self.write(batch.as_bytes(), "MAIL").await?;
            let mail_reply = self.read_reply("MAIL").await?;
            for _ in rcpt_lines {
                rcpt_replies.push(self.read_reply("RCPT").await?);
            }
            return Ok((mail_reply, rcpt_replies));
        }
        let mail_reply = self.command(mail, "MAIL").await?;
        if mail_reply.is_positive() {
            for l in rcpt_lines {
                rcpt_replies.push(self.command(l, "RCPT").await?);
            }
        }
        Ok((mail_reply, rcpt_replies))
    }

    /// Writes a chunk (with what goes before it) within the time `write_data` allows.
    async fn write_chunk(&mut self, parts: &[&[u8]]) -> Result<(), ClientError> {
        write_plain(&mut self.stream, parts, self.settings.command_timeout)
            .await
            .map_err(Step::into_error)
    }
}
