//! Webhooks: a tenant's alerts and restriction changes POSTed as JSON to the URLs its admins
//! registered, signed, retried with backoff, every attempt in a delivery log.
//!
//! Events are queued in the store (`webhook_deliveries`) by whoever makes them — the running
//! relay's guard, or an admin's action through the control plane in another process — and one
//! task in the relay (`relayward_node`'s webhook sender) sends what is due. The signature is
//! HMAC-SHA256 under the webhook's secret over `<timestamp>.<body>`, sent as
//! `X-Relayward-Signature: v1=<hex>` beside `X-Relayward-Timestamp: <unix seconds>`; receivers
//! recompute it and refuse old timestamps.

use std::net::IpAddr;

use relayward_clock::now_ms;
use relayward_store::{Store, Webhook, WebhookDelivery};
use serde_json::{Value, json};

use crate::{Actor, Control, NotFound, Result, random_hex};

/// Event types a webhook can take.
pub const EVENTS: &[&str] = &["alert", "restriction"];

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
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, format!("{timestamp}.{body}").as_bytes());
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

/// Where a webhook URL points.
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// A webhook URL taken apart: `http(s)://host[:port][/path][?query]`, without user info; a
/// fragment is not sent. An IPv6 address is written in brackets (`https://[2001:db8::5]/`).
pub fn parse_url(url: &str) -> Result<Target> {
    if url.len() > 2048 {
        invalid!("a webhook URL has at most 2,048 characters");
    }
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        invalid!("the URL must start with http:// or https://");
    };
    let rest = rest.split('#').next().unwrap_or_default();
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/".to_string()),
    };
    if authority.is_empty() || authority.contains('@') || path.contains([' ', '\r', '\n']) {
        invalid!("the URL has no usable host");
    }
    let default = default_port(https);
    let port_of = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| crate::Invalid(format!("bad port in {authority}")))
    };
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            invalid!("the URL's [address] is not closed");
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            invalid!("[{host}] is not an IPv6 address");
        }
        let port = match after {
            "" => default,
            p => match p.strip_prefix(':') {
                Some(p) => port_of(p)?,
                None => invalid!("bad port in {authority}"),
            },
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, port_of(p)?),
            None => (authority, default),
        }
    };
    if host.is_empty() {
        invalid!("the URL has no host");
    }
    Ok(Target {
        https,
        host: host.to_string(),
        port,
        path,
    })
}

/// The port a URL of the scheme means when it names none.
fn default_port(https: bool) -> u16 {
    if https { 443 } else { 80 }
}

impl Target {
    /// What the `Host` header says: the host (an IPv6 address in brackets), with the port
    /// when it is not the scheme's own.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port(self.https) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// Addresses off the public internet (loopback, private, shared, link-local, unique-local and
/// the rest; IPv4 addresses carried in IPv6 judged as themselves): where a tenant's webhook must
/// not reach unless the operator allows it. The same judgement as delivery's (`reach.rs`).
pub fn private(ip: IpAddr) -> bool {
    !relayward_delivery::reach::is_public(ip)
}

impl Control {
    /// Registers a webhook for a tenant; the answer carries its secret, shown this once.
    pub async fn create_webhook(
        &self,
        tenant: &str,
        url: &str,
        events: &[String],
        actor: &Actor,
    ) -> Result<Webhook> {
        let target = parse_url(url)?;
        // An address written in the URL is known now; a name is looked at each time it is sent.
        if let Ok(ip) = target.host.parse::<IpAddr>()
            && private(ip)
            && !self.webhooks_to_private
        {
            invalid!(
                "{ip} is not on the public internet: a webhook may reach such an address only where the operator allows it ([webhooks] allow_private_addresses)"
            );
        }
        let events: Vec<String> = if events.is_empty() {
            EVENTS.iter().map(|e| e.to_string()).collect()
        } else {
            events.to_vec()
        };
        if let Some(bad) = events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
            invalid!("unknown event '{bad}' (known: {})", EVENTS.join(", "));
        }
        if self.store.tenant(tenant).await?.is_none() {
            return Err(NotFound(format!("no tenant {tenant}")));
        }
        let have = self.store.webhooks(Some(tenant)).await?.len();
        self.room_for(actor, "webhooks", have)?;
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
            .ok_or_else(|| NotFound(format!("tenant {tenant} has no webhook {id}")))
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
        let long = format!("https://hooks.example/{}", "x".repeat(2048));
        assert!(parse_url(&long).is_err(), "at most 2,048 characters");
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
        assert_eq!(t.authority(), "[::1]:9000");
        let t = parse_url("https://[2001:db8::5]/hook#part").expect("url");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("2001:db8::5", 443, "/hook")
        );
        assert_eq!(t.authority(), "[2001:db8::5]");
        let t = parse_url("http://hooks.example?x=1").expect("url");
        assert_eq!((t.port, t.path.as_str()), (80, "/?x=1"));
        assert_eq!(t.authority(), "hooks.example");
        assert_eq!(
            parse_url("https://hooks.example:8443/")
                .expect("url")
                .authority(),
            "hooks.example:8443"
        );
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("http://user@host/").is_err());
        for bad in [
            "https://[::1",
            "https://[hooks.example]/",
            "https://[::1]x/",
            "https://[::1]5/",
            "https://::1/",
            "https://hooks.example:0/",
            "https://hooks.example:99999/",
            "https://hooks.example:/",
            "https:///path",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
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
