//! Webhooks (issue 6): a tenant's alerts and restriction changes POSTed as JSON to the URLs its
//! admins registered, signed, retried with backoff, every attempt in a delivery log.
//!
//! Events are queued in the store (`webhook_deliveries`) by whoever makes them — the running
//! relay's guard, or an admin's action through the service layer in another process — and one
//! task in the relay sends what is due. The signature is HMAC-SHA256 under the webhook's secret
//! over `<timestamp>.<body>`, sent as `X-Relayward-Signature: v1=<hex>` beside
//! `X-Relayward-Timestamp: <unix seconds>`; receivers recompute it and refuse old timestamps.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use relayward_store::{Store, Webhook, WebhookDelivery};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::guard::now_ms;
use crate::service::{Actor, NotFound, Service, random_hex};

/// Event types a webhook can take.
pub const EVENTS: &[&str] = &["alert", "restriction"];

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Waits between attempts; past its end the delivery is given up (`failed`).
    pub retry_schedule: Vec<Duration>,
    pub timeout: Duration,
    /// Whether URLs may point at loopback, private and link-local addresses (off by default:
    /// tenants must not reach the operator's internal network through us).
    pub allow_private: bool,
    /// PEM bundle of the CAs trusted for `https://` webhooks.
    pub ca_file: std::path::PathBuf,
}

impl Default for WebhookConfig {
    fn default() -> WebhookConfig {
        WebhookConfig {
            retry_schedule: [10, 30, 120, 600, 1800, 3600, 7200, 14_400, 28_800, 43_200]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
            timeout: Duration::from_secs(10),
            allow_private: false,
            ca_file: "/etc/ssl/certs/ca-certificates.crt".into(),
        }
    }
}

/// The JSON body of one event.
pub fn body(event: &str, tenant: &str, at: i64, data: Value) -> String {
    json!({
        "id": format!("evt_{}", random_hex(12)),
        "type": event,
        "tenant": tenant,
        "at": at,
        "data": data,
    })
    .to_string()
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("v1={hex}")
}

/// Queues `event` for the tenant's webhooks that take it. Failing to queue is logged, never
/// fatal: the action that caused the event has already happened.
pub async fn emit(store: &dyn Store, tenant: &str, event: &str, data: Value) {
    let at = now_ms();
    let b = body(event, tenant, at, data);
    if let Err(e) = store.queue_webhook_event(tenant, event, &b, at).await {
        tracing::error!(tenant, event, error = %e, "cannot queue webhook event");
    }
}

struct Target {
    https: bool,
    host: String,
    port: u16,
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err("the URL must start with http:// or https://".into());
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n']) {
        return Err("the URL has no usable host".into());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("bad port in {authority}"))?;
            (h, port)
        }
        _ => (authority, if https { 443 } else { 80 }),
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    Ok(Target {
        https,
        host,
        port,
        path: path.to_string(),
    })
}

fn private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.octets()[0] == 100 && (64..128).contains(&v4.octets()[1])
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| private(IpAddr::V4(v4)))
        }
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One POST; the HTTP status, or why there was none.
async fn post(config: &WebhookConfig, url: &str, headers: &str, body: &str) -> Result<u16, String> {
    let t = parse_url(url)?;
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
        let tls = tls_config(&config.ca_file)?;
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
        t.host,
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

fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem =
        std::fs::read(ca_file).map_err(|e| format!("CA bundle {}: {e}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
        let _ = roots.add(cert);
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
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
        let due = match store.due_webhook_deliveries(now_ms(), 50).await {
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

impl Service {
    /// Registers a webhook for a tenant; the answer carries its secret, shown this once.
    pub async fn create_webhook(
        &self,
        tenant: &str,
        url: &str,
        events: &[String],
        actor: &Actor,
    ) -> Result<Webhook> {
        if let Err(e) = parse_url(url) {
            bail!("{e}");
        }
        let events: Vec<String> = if events.is_empty() {
            EVENTS.iter().map(|e| e.to_string()).collect()
        } else {
            events.to_vec()
        };
        if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            bail!("unknown event '{bad}' (known: {})", EVENTS.join(", "));
        }
        if self.store.tenant(tenant).await?.is_none() {
            return Err(NotFound(format!("no tenant {tenant}")).into());
        }
        let hook = Webhook {
            id: format!("wh_{}", random_hex(8)),
            tenant: tenant.to_string(),
            url: url.to_string(),
            secret: format!("whsec_{}", random_hex(24)),
            events,
            created_by: actor.name.clone(),
            created_at: now_ms(),
        };
        self.store.add_webhook(&hook).await?;
        self.audit(
            actor,
            Some(tenant),
            "webhook.create",
            json!({ "after": { "id": hook.id, "url": hook.url, "events": hook.events } }),
        )
        .await?;
        Ok(hook)
    }

    /// One of the tenant's webhooks; another tenant's is not found.
    pub async fn webhook(&self, tenant: &str, id: &str) -> Result<Webhook> {
        self.store
            .webhooks(Some(tenant))
            .await?
            .into_iter()
            .find(|w| w.id == id)
            .ok_or_else(|| NotFound(format!("tenant {tenant} has no webhook {id}")).into())
    }

    pub async fn delete_webhook(&self, tenant: &str, id: &str, actor: &Actor) -> Result<()> {
        let hook = self.webhook(tenant, id).await?;
        self.store.delete_webhook(id).await?;
        self.audit(
            actor,
            Some(tenant),
            "webhook.delete",
            json!({ "before": { "id": hook.id, "url": hook.url, "events": hook.events } }),
        )
        .await
    }

    /// Queues a `ping` to one webhook (to check the receiver and its signature check).
    pub async fn ping_webhook(&self, tenant: &str, id: &str, actor: &Actor) -> Result<()> {
        let hook = self.webhook(tenant, id).await?;
        // Only this webhook: queue through a body addressed to it.
        let at = now_ms();
        let d = WebhookDelivery {
            id: 0,
            webhook_id: hook.id.clone(),
            event: "ping".into(),
            body: body(
                "ping",
                tenant,
                at,
                json!({ "webhook": hook.id, "by": actor.name }),
            ),
            attempts: 0,
            state: "pending".into(),
            last_status: None,
            last_error: None,
            next_attempt: at,
            created_at: at,
            updated_at: at,
        };
        self.store.add_webhook_delivery(&d).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_private_addresses_named() {
        let t = parse_url("https://hooks.example:8443/relayward?x=1").expect("url");
        assert!(t.https);
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("hooks.example", 8443, "/relayward?x=1")
        );
        let t = parse_url("http://[::1]:9000").expect("url");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("::1", 9000, "/")
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://user@host/").is_err());
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(private(ip.parse().expect("ip")), "{ip}");
        }
        assert!(!private("192.0.2.10".parse().expect("ip")));
    }

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        let a = signature("k", 100, "{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, signature("k", 101, "{}"));
        assert_ne!(a, signature("k", 100, "{ }"));
        assert_ne!(a, signature("other", 100, "{}"));
    }
}
