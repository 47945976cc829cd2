//! Fetching a policy: `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`, the host's
//! certificate checked, no redirect followed (RFC 8461 section 3.3), everything bounded: one
//! timeout for the whole fetch and at most `MAX_BYTES` read. HTTP/1.0, so that the answer is
//! the body itself, never chunked.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Policy, Settings};
use crate::dns::Resolver;

/// The most of an answer read: a policy is a few lines (RFC 8461 asks for at most 64 KiB).
const MAX_BYTES: usize = 64 * 1024 + 8 * 1024;

/// The policy, and its file as fetched.
pub(super) async fn policy(
    settings: &Settings,
    resolver: &dyn Resolver,
    domain: &str,
) -> Result<(Policy, String), String> {
    tokio::time::timeout(settings.timeout, fetch(settings, resolver, domain))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", settings.timeout.as_secs())))
}

async fn fetch(
    settings: &Settings,
    resolver: &dyn Resolver,
    domain: &str,
) -> Result<(Policy, String), String> {
    let host = format!("mta-sts.{domain}");
    let ips = resolver.ips(&host).await.map_err(|e| format!("{e:?}"))?;
    // Whoever holds the domain's DNS names this host: it is reached where mail would be.
    let Some(ip) = ips
        .into_iter()
        .find(|ip| crate::reach::may_reach(*ip, &settings.private_destinations))
    else {
        return Err(format!("{host} has no address on the public internet"));
    };
    let addr = SocketAddr::new(ip, settings.port);
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {host} [{addr}]: {e}"))?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|e| format!("bad host name {host}: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(settings.tls.config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {host}: {e}"))?;
    let request = format!(
        "GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\nUser-Agent: Relayward\r\nConnection: close\r\n\r\n"
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending to {host}: {e}"))?;
    let mut answer = Vec::new();
    (&mut tls)
        .take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut answer)
        .await
        .or_else(|e| {
            // Many servers close without TLS's close_notify once the answer is sent.
            if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() {
                Ok(0)
            } else {
                Err(format!("reading from {host}: {e}"))
            }
        })?;
    if answer.len() > MAX_BYTES {
        return Err(format!("{host} answered more than {MAX_BYTES} bytes"));
    }
    body_of(&answer).and_then(|body| {
        let text = std::str::from_utf8(body).map_err(|_| "the policy is not UTF-8".to_string())?;
        Ok((Policy::parse(text)?, text.to_string()))
    })
}

/// The body of an HTTP answer with status 200.
fn body_of(answer: &[u8]) -> Result<&[u8], String> {
    let end = memchr::memmem::find(answer, b"\r\n\r\n")
        .ok_or("the answer has no end of its header section")?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let status = head.lines().next().unwrap_or_default();
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        return Err(format!("the policy host answered {status:?}"));
    }
    Ok(&answer[end + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_200_answer_has_a_policy() {
        assert_eq!(
            body_of(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nversion: STSv1\n"),
            Ok(&b"version: STSv1\n"[..])
        );
        assert!(
            body_of(b"HTTP/1.1 301 Moved\r\nLocation: https://elsewhere/\r\n\r\n")
                .is_err_and(|e| e.contains("301"))
        );
        assert!(body_of(b"HTTP/1.1 200 OK\r\n").is_err());
    }
}
