//! Asking Rspamd (its normal worker's HTTP protocol, `POST /checkv2`) what it thinks of a
//! message: the envelope and the authenticated user go in request headers, the message is the
//! body, and the answer is JSON with a score, an action and the symbols that fired.
//!
//! A plain HTTP/1.1 exchange over one TCP connection per message (`Connection: close`), bounded
//! by a timeout; anything unexpected is an error the caller handles by its configured fallback.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Verdict;

/// Where Rspamd listens and how long to wait for it.
#[derive(Debug, Clone)]
pub struct Rspamd {
    pub address: SocketAddr,
    pub timeout: Duration,
}

/// The envelope Rspamd is told about.
#[derive(Debug, Default)]
pub struct Meta<'a> {
    pub client_ip: &'a str,
    pub helo: &'a str,
    pub mail_from: &'a str,
    pub recipients: &'a [String],
    /// The SMTP AUTH user, when the client authenticated.
    pub user: Option<&'a str>,
    pub queue_id: &'a str,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub verdict: Verdict,
    pub score: f32,
    pub action: String,
    pub symbols: Vec<(String, f32)>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    score: f32,
    #[serde(default)]
    action: String,
    #[serde(default)]
    symbols: std::collections::BTreeMap<String, Symbol>,
}

#[derive(Deserialize)]
struct Symbol {
    #[serde(default)]
    score: f32,
}

/// Rspamd's symbols for mass mailing: with one of them and no spam action, the message is bulk.
const BULK_SYMBOLS: &[&str] = &["MAILLIST", "PRECEDENCE_BULK", "HAS_LIST_UNSUB", "BULK"];

/// Largest answer read.
const MAX_ANSWER: usize = 1 << 20;

impl Rspamd {
    pub async fn check(&self, message: &[u8], meta: &Meta<'_>) -> Result<Answer, String> {
        match tokio::time::timeout(self.timeout, self.exchange(message, meta)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "no answer from Rspamd at {} within {:?}",
                self.address, self.timeout
            )),
        }
    }

    async fn exchange(&self, message: &[u8], meta: &Meta<'_>) -> Result<Answer, String> {
        let mut stream = TcpStream::connect(self.address)
            .await
            .map_err(|e| format!("cannot reach Rspamd at {}: {e}", self.address))?;
        let mut head = format!(
            "POST /checkv2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.address,
            message.len()
        );
        let mut field = |name: &str, value: &str| {
            // Header values come from the SMTP dialogue: never let one break the request.
            if !value.is_empty() && !value.contains(['\r', '\n']) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        };
        field("IP", meta.client_ip);
        field("Helo", meta.helo);
        field(
            "From",
            if meta.mail_from.is_empty() {
                "<>"
            } else {
                meta.mail_from
            },
        );
        for r in meta.recipients {
            field("Rcpt", r);
        }
        if let Some(u) = meta.user {
            field("User", u);
        }
        field("Queue-Id", meta.queue_id);
        head.push_str("\r\n");
        let io = |e: std::io::Error| format!("Rspamd at {}: {e}", self.address);
        stream.write_all(head.as_bytes()).await.map_err(io)?;
        stream.write_all(message).await.map_err(io)?;
        let mut answer = Vec::new();
        stream
            .take(MAX_ANSWER as u64)
            .read_to_end(&mut answer)
            .await
            .map_err(io)?;
        parse_answer(&answer)
    }
}

fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let split = crate::mime::find(raw, b"\r\n\r\n").ok_or("Rspamd sent no HTTP header")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or("Rspamd sent no HTTP status")?;
    let mut body = &raw[split + 4..];
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked"))
    {
        return Err("Rspamd answered with chunked encoding, which is not read".into());
    }
    if let Some(len) = head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())?
    }) {
        body = &body[..len.min(body.len())];
    }
    if status != 200 {
        return Err(format!(
            "Rspamd answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ));
    }
    let reply: Reply =
        serde_json::from_slice(body).map_err(|e| format!("Rspamd's answer is not JSON: {e}"))?;
    let symbols: Vec<(String, f32)> = reply
        .symbols
        .into_iter()
        .map(|(n, s)| (n, s.score))
        .collect();
    let verdict = match reply.action.as_str() {
        "reject" | "add header" | "rewrite subject" => Verdict::Spam,
        _ if symbols
            .iter()
            .any(|(n, _)| BULK_SYMBOLS.contains(&n.as_str())) =>
        {
            Verdict::Bulk
        }
        _ => Verdict::Clean,
    };
    Ok(Answer {
        verdict,
        score: reply.score,
        action: reply.action,
        symbols,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_read_into_a_verdict_with_its_symbols() {
        let body = r#"{"is_skipped":false,"score":1002.5,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0},"MISSING_DATE":{"name":"MISSING_DATE","score":1.0}}}"#;
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let a = parse_answer(raw.as_bytes()).expect("parses");
        assert_eq!(a.verdict, Verdict::Spam);
        assert_eq!(a.action, "reject");
        assert!(
            a.symbols
                .iter()
                .any(|(n, s)| n == "MISSING_DATE" && *s == 1.0)
        );
        let list = r#"{"score":1.0,"action":"no action","symbols":{"MAILLIST":{"score":-0.2}}}"#;
        let raw = format!("HTTP/1.0 200 OK\r\n\r\n{list}");
        assert_eq!(
            parse_answer(raw.as_bytes()).map(|a| a.verdict),
            Ok(Verdict::Bulk)
        );
        assert!(parse_answer(b"HTTP/1.1 500 Oops\r\n\r\nbroken").is_err());
        assert!(parse_answer(b"garbage").is_err());
    }
}
