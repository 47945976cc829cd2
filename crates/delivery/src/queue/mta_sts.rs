//! MTA-STS as delivery applies it (the policies themselves: `crate::mta_sts`): which of a
//! domain's MX hosts an enforced policy lets mail go to, and how they are reached.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use relayward_spool::RcptState;

use super::route::Hop;
use super::{Inner, pending};
use crate::client::Client;
use crate::mta_sts::{Mode, Policy};

impl Inner {
    /// The MTA-STS policy `domain`'s MX hosts are reached under, if any. Under a policy in
    /// testing mode, the hosts it does not name are reported (and kept). Under an enforced
    /// one, the hosts it does not name are dropped here, unless `dane` (the MX records are
    /// signed and DANE is on): then they wait for their TLSA records, and `keep_named` drops
    /// those without (RFC 8461 section 2: a host DANE covers is reached under DANE's rule).
    pub(super) async fn mta_sts_hosts(
        &self,
        domain: &str,
        mxs: &mut Vec<(u16, String)>,
        dane: bool,
    ) -> Result<Option<Arc<Policy>>, RcptState> {
        let Some(sts) = &self.mta_sts else {
            return Ok(None);
        };
        let Some(policy) = sts.policy(domain).await else {
            return Ok(None);
        };
        match policy.mode {
            Mode::None => return Ok(None),
            Mode::Testing => {
                for (_, host) in mxs.iter().filter(|(_, h)| !policy.allows(h)) {
                    self.stats
                        .mta_sts_testing_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(domain, host, patterns = ?policy.mx, "MTA-STS (testing): this MX host is not one the policy names; delivering all the same");
                }
            }
            Mode::Enforce if !dane => {
                let all: Vec<String> = mxs.iter().map(|(_, h)| h.clone()).collect();
                mxs.retain(|(_, h)| policy.allows(h));
                if mxs.is_empty() {
                    return Err(self.none_named(domain, &all, &policy));
                }
            }
            Mode::Enforce => {}
        }
        Ok(Some(policy))
    }

    /// Under an enforced policy, with the hosts' TLSA records looked up: the hosts the policy
    /// names, and those with signed TLSA records (reached under DANE).
    pub(super) fn keep_named(
        &self,
        domain: &str,
        hops: &mut Vec<Hop>,
        policy: &Policy,
    ) -> Result<(), RcptState> {
        if policy.mode != Mode::Enforce {
            return Ok(());
        }
        let all: Vec<String> = hops.iter().map(|h| h.name.clone()).collect();
        hops.retain(|h| {
            policy.allows(&h.name) || matches!(h.dane, Some(crate::dane::HostDane::Records(..)))
        });
        if hops.is_empty() {
            let mut all = all;
            all.dedup();
            return Err(self.none_named(domain, &all, policy));
        }
        Ok(())
    }

    fn none_named(&self, domain: &str, hosts: &[String], policy: &Policy) -> RcptState {
        self.stats.mta_sts_refusals.fetch_add(1, Ordering::Relaxed);
        pending(&format!(
            "451 4.7.5 No mail host of {domain} ({}) is one its MTA-STS policy names ({}); the mail waits until one is",
            hosts.join(", "),
            policy.mx.join(", ")
        ))
    }

    /// Under a policy in testing mode, what enforcing it would refuse of a connection made as
    /// opportunistic TLS makes it (no TLS, or a certificate a trusted CA did not issue for the
    /// host's name) is logged, counted and put in the message's trace; the mail goes all the
    /// same (RFC 8461 section 5).
    pub(super) fn report_testing(&self, id: &str, domain: &str, hop: &Hop, client: &Client) {
        let Some(sts) = &self.mta_sts else {
            return;
        };
        let Some(why) = client.certificate_problem(&sts.tls().verifier, &hop.name) else {
            return;
        };
        self.stats
            .mta_sts_testing_failures
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(domain, host = %hop.name, addr = %hop.addr, why, "MTA-STS (testing): this connection would not meet the policy; delivering all the same");
        self.event(
            id,
            relayward_store::TraceKind::Attempt,
            None,
            format!(
                "MTA-STS (testing): {} [{}] would not meet the policy of {domain} ({why}); sent all the same",
                hop.name,
                hop.addr.ip()
            ),
        );
    }
}
