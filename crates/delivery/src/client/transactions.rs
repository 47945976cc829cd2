//! One message to many recipients of one destination, in as many transactions as the
//! destination takes: at most `per_transaction` recipients each, and the recipients a server
//! turned away as over its own limit (RFC 5321 4.5.3.1.10: `452`, or an older server's `552`,
//! "too many recipients") in the next transaction on the same connection, not an hour later.

use super::{Client, ClientError, OutMessage, OutRcpt, SmtpReply};

/// What a delivery to one destination came to: a reply per recipient, in the message's order,
/// `None` where nothing is known (the connection failed before that recipient's transaction
/// ended), and the failure that ended it early.
pub struct Sent {
    pub replies: Vec<Option<SmtpReply>>,
    pub error: Option<ClientError>,
}

impl Sent {
    /// Whether some recipient has an outcome (a transaction ended before a failure): the
    /// message must not be sent again to those.
    pub fn any_known(&self) -> bool {
        self.replies.iter().any(Option::is_some)
    }
}

impl Client {
    /// Sends `msg` to all its recipients in transactions of at most `per_transaction` (at
    /// least 1). Recipients a server refused as over its limit go in the next transaction, as
    /// long as each transaction takes at least one; when one takes none, they keep the
    /// server's reply, made temporary, and wait for the next round.
    pub async fn send_all(&mut self, msg: &OutMessage<'_>, per_transaction: usize) -> Sent {
        let per_transaction = per_transaction.max(1);
        let mut replies: Vec<Option<SmtpReply>> = vec![None; msg.rcpts.len()];
        let mut todo: Vec<usize> = (0..msg.rcpts.len()).collect();
        while !todo.is_empty() {
            let take = todo.len().min(per_transaction);
            let batch: Vec<usize> = todo.drain(..take).collect();
            // Most messages fit one transaction: they go as they are.
            let sent = if batch.len() == msg.rcpts.len() {
                self.send(msg).await
            } else {
                let part = OutMessage {
                    rcpts: batch
                        .iter()
                        .filter_map(|&i| msg.rcpts.get(i))
                        .map(|r| OutRcpt {
                            address: r.address,
                            notify: r.notify.clone(),
                            orcpt: r.orcpt,
                        })
                        .collect(),
                    ..*msg
                };
                self.send(&part).await
            };
            let got = match sent {
                Ok(got) => got,
                Err(error) => {
                    return Sent {
                        replies,
                        error: Some(error),
                    };
                }
            };
            let over: Vec<bool> = got.iter().map(too_many_recipients).collect();
            // A transaction that took nobody ends the splitting: the limit is not per
            // transaction (a rate, a full queue), so the rest waits for the next round.
            let progress = over.iter().any(|o| !o);
            let mut again = Vec::new();
            for ((i, reply), over) in batch.into_iter().zip(got).zip(over) {
                if over && progress {
                    again.push(i);
                } else if let Some(slot) = replies.get_mut(i) {
                    *slot = Some(if over { temporary(reply) } else { reply });
                }
            }
            again.append(&mut todo);
            todo = again;
        }
        Sent {
            replies,
            error: None,
        }
    }
}

/// Whether a recipient's reply says the transaction has as many recipients as the server
/// takes: `452` with `4.5.3` or the words, or the `552` of servers older than RFC 5321 (which
/// asks clients to take that one as temporary).
fn too_many_recipients(reply: &SmtpReply) -> bool {
    if reply.code != 452 && reply.code != 552 {
        return false;
    }
    let text = reply.lines.join(" ").to_ascii_lowercase();
    let status = text.split_whitespace().next().unwrap_or("");
    status == "4.5.3" || status == "5.5.3" || text.contains("too many recipients")
}

/// A too-many-recipients reply as the temporary failure it is (`552` becomes `452`).
fn temporary(mut reply: SmtpReply) -> SmtpReply {
    if reply.code == 552 {
        reply.code = 452;
        if let Some(first) = reply.lines.first_mut()
            && let Some(rest) = first.strip_prefix("5.5.3")
        {
            *first = format!("4.5.3{rest}");
        }
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(code: u16, text: &str) -> SmtpReply {
        SmtpReply {
            code,
            lines: vec![text.to_string()],
        }
    }

    #[test]
    fn a_recipient_limit_is_told_from_other_refusals() {
        assert!(too_many_recipients(&reply(
            452,
            "4.5.3 Too many recipients"
        )));
        assert!(too_many_recipients(&reply(
            452,
            "Too many recipients received this session"
        )));
        assert!(too_many_recipients(&reply(
            552,
            "5.5.3 Too many recipients"
        )));
        assert!(too_many_recipients(&reply(
            552,
            "Error: too many recipients"
        )));
        // A full mailbox, a message too big, a refused user: not a limit of the transaction.
        assert!(!too_many_recipients(&reply(452, "4.2.2 Mailbox full")));
        assert!(!too_many_recipients(&reply(552, "5.3.4 Message too big")));
        assert!(!too_many_recipients(&reply(
            550,
            "5.5.3 Too many recipients"
        )));
        assert!(!too_many_recipients(&reply(250, "2.1.5 Ok")));
    }

    #[test]
    fn an_old_servers_552_limit_is_kept_as_temporary() {
        let r = temporary(reply(552, "5.5.3 Too many recipients"));
        assert_eq!(r.to_string(), "452 4.5.3 Too many recipients");
        let r = temporary(reply(552, "Too many recipients"));
        assert_eq!(r.to_string(), "452 Too many recipients");
        let r = temporary(reply(452, "4.5.3 Too many recipients"));
        assert_eq!(r.to_string(), "452 4.5.3 Too many recipients");
    }
}
