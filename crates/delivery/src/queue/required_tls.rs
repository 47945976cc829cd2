//! TLS a destination requires, as delivery applies it: a host's signed TLSA records (DANE,
//! `crate::dane`) or its domain's enforced MTA-STS policy (`crate::mta_sts`). Such a host gets
//! mail only over TLS with a certificate that passes the check (the TLSA records, or a trusted
//! CA for the host's name), with no fallback to clear text; otherwise the mail waits, with the
//! reason, and the refusal is counted.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Inner;
use super::route::Hop;
use crate::client::{Client, ClientError, ClientSettings};
use crate::dane::{DaneVerifier, HostDane};
use crate::mta_sts::Mode;

/// The TLS one host requires, and by whose rule.
pub(super) struct Required {
    tls: Arc<rustls::ClientConfig>,
    /// `dane` or `mta-sts`: idle connections are kept apart per rule and host name.
    pub(super) rule: &'static str,
    /// What the rule asks, for the reason a refused delivery waits with.
    asks: String,
}

impl Inner {
    /// What `hop` requires: DANE where it has signed TLSA records (RFC 8461 section 2: DANE
    /// before MTA-STS), else an enforced MTA-STS policy; `Ok(None)`: opportunistic TLS. `Err`
    /// when the host's TLSA records could not be looked up although its address is signed:
    /// it is not tried now.
    pub(super) fn required_tls(
        &self,
        domain: &str,
        hop: &Hop,
    ) -> Result<Option<Required>, ClientError> {
        match &hop.dane {
            Some(HostDane::Records(records, alias)) => {
                let tls = DaneVerifier::client_config(records.clone(), alias)
                    .map_err(|e| ClientError::Policy(format!("DANE: {e}")))?;
                return Ok(Some(Required {
                    tls,
                    rule: "dane",
                    asks: format!(
                        "the signed TLSA records of {} (DANE) require TLS with a certificate they name",
                        hop.name
                    ),
                }));
            }
            Some(HostDane::Indeterminate(why)) => {
                self.stats.dane_refusals.fetch_add(1, Ordering::Relaxed);
                return Err(ClientError::Policy(format!(
                    "{} [{}] not tried: its address is signed and its TLSA records (DANE) could not be looked up ({why})",
                    hop.name,
                    hop.addr.ip()
                )));
            }
            None => {}
        }
        match (&self.mta_sts, hop.sts) {
            (Some(sts), Some(Mode::Enforce)) => Ok(Some(Required {
                tls: sts.tls().config.clone(),
                rule: "mta-sts",
                asks: format!(
                    "the MTA-STS policy of {domain} requires TLS with a certificate for that name"
                ),
            })),
            _ => Ok(None),
        }
    }

    /// A connection to `hop` as `required` asks: TLS with a certificate that passes its check,
    /// and no going on without.
    pub(super) async fn connect_requiring(
        &self,
        domain: &str,
        hop: &Hop,
        source: Option<IpAddr>,
        settings: &ClientSettings,
        required: &Required,
    ) -> Result<Client, ClientError> {
        let checked = ClientSettings {
            tls: Some(required.tls.clone()),
            ..settings.clone()
        };
        let refusals: &AtomicU64 = if required.rule == "dane" {
            &self.stats.dane_refusals
        } else {
            &self.stats.mta_sts_refusals
        };
        let refused = |why: String| {
            refusals.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(domain, host = %hop.name, addr = %hop.addr, rule = required.rule, why, "mail not sent to this host: the TLS it requires could not be had");
            ClientError::Policy(format!(
                "{} [{}] {why}; {}",
                hop.name,
                hop.addr.ip(),
                required.asks
            ))
        };
        match Client::connect(hop.addr, source, &hop.name, checked).await {
            Ok(c) if c.tls => {
                if required.rule == "dane" {
                    self.stats.dane_connections.fetch_add(1, Ordering::Relaxed);
                }
                Ok(c)
            }
            Ok(c) => {
                let why = match &c.starttls_refused {
                    Some(reply) => format!("refused STARTTLS ({reply})"),
                    None => "does not offer STARTTLS".to_string(),
                };
                tokio::spawn(c.quit());
                Err(refused(why))
            }
            Err(ClientError::Starttls { stage, reason }) => {
                Err(refused(format!("failed TLS during {stage}: {reason}")))
            }
            Err(e) => Err(e),
        }
    }
}
