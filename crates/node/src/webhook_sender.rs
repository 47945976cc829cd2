//! The webhook sender: one task per relay that POSTs the due deliveries queued in the store
//! (`relayward_control::webhooks`), records every attempt and retries on the configured schedule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use relayward_clock::now_ms;
use relayward_config::WebhookConfig;
use relayward_control::webhooks::{parse_url, private, signature};
use relayward_store::{Store, Webhook, WebhookDelivery};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One POST; the HTTP status, or why there was none.
async fn post(config: &WebhookConfig, url: &str, headers: &str, body: &str) -> Result<u16, String> {
    let t = parse_url(url).map_err(|e| e.to_string())?;
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((t.host.as_str(), t.port))
        .await
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| config.allow_private || !private(a.ip()))
        .copied()
        .ok_or_else(|| {
            format!(
                "{} resolves only to private or loopback addresses, which webhooks may not reach",
                t.host
            )
        })?;
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let mut stream: Box<dyn Io> = if t.https {
        let tls = relayward_delivery::client::verifying_tls(&config.ca_file)?.config;
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())
            .map_err(|e| format!("bad host name {}: {e}", t.host))?;
        Box::new(
            tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", t.host))?,
        )
    } else {
        Box::new(tcp)
    };
    let request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: Relayward\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n{body}",
        t.path,
        t.authority(),
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 8192 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| line.starts_with("HTTP/"))
        .ok_or_else(|| "no HTTP status line in the answer".to_string())
}

/// One attempt at one delivery, and its record updated.
async fn attempt(
    config: &WebhookConfig,
    hook: Option<&Webhook>,
    mut d: WebhookDelivery,
) -> WebhookDelivery {
    let now = now_ms();
    d.attempts += 1;
    d.updated_at = now;
    let Some(hook) = hook else {
        d.state = "failed".into();
        d.last_error = Some("the webhook was deleted".into());
        return d;
    };
    let ts = now / 1000;
    let headers = format!(
        "X-Relayward-Event: {}\r\nX-Relayward-Delivery: {}\r\nX-Relayward-Timestamp: {ts}\r\nX-Relayward-Signature: {}\r\n",
        d.event,
        d.id,
        signature(&hook.secret, ts, &d.body)
    );
    let result = tokio::time::timeout(config.timeout, post(config, &hook.url, &headers, &d.body))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", config.timeout.as_secs())));
    match result {
        Ok(status) if (200..300).contains(&status) => {
            d.state = "delivered".into();
            d.last_status = Some(status);
            d.last_error = None;
            return d;
        }
        Ok(status) => {
            d.last_status = Some(status);
            d.last_error = Some(format!("HTTP {status}"));
        }
        Err(e) => {
            d.last_status = None;
            d.last_error = Some(e);
        }
    }
    match config.retry_schedule.get(d.attempts as usize - 1) {
        Some(wait) => d.next_attempt = now + wait.as_millis() as i64,
        None => d.state = "failed".into(),
    }
    d
}

/// Sends due deliveries until the process ends (about once a second).
pub async fn run(store: Arc<dyn Store>, config: WebhookConfig) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Held for the attempt's time and a margin: in a cluster, each delivery goes from one
        // node at a time.
        let lease = i64::try_from(config.timeout.as_millis()).unwrap_or(i64::MAX / 2) + 30_000;
        let due = match store.claim_webhook_deliveries(now_ms(), lease, 50).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read webhook deliveries");
                continue;
            }
        };
        if due.is_empty() {
            continue;
        }
        let hooks = match store.webhooks(None).await {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read webhooks");
                continue;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for d in due {
            let hook = hooks.iter().find(|h| h.id == d.webhook_id).cloned();
            let config = config.clone();
            tasks.spawn(async move { attempt(&config, hook.as_ref(), d).await });
        }
        while let Some(done) = tasks.join_next().await {
            let Ok(d) = done else { continue };
            if d.state == "failed" {
                tracing::warn!(delivery = d.id, webhook = %d.webhook_id, error = ?d.last_error, "webhook delivery given up");
            }
            if let Err(e) = store.update_webhook_delivery(&d).await {
                tracing::error!(delivery = d.id, error = %e, "cannot record a webhook attempt");
            }
        }
    }
}
