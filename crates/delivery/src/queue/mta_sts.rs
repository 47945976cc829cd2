//! MTA-STS as delivery applies it (the policies themselves: `crate::mta_sts`): which of a
//! domain's MX hosts an enforced policy lets mail go to, and how they are reached.

use std::sync::atomic::Ordering;

use relayward_spool::RcptState;

use super::route::Hop;
use super::{Inner, pending};
use crate::client::Client;
use crate::mta_sts::Mode;

impl Inner {
    /// Under an enforced MTA-STS policy, only the MX hosts it names are kept (none named: the
    /// mail waits); under a policy in testing mode, the others are reported and kept. The mode
    /// the hosts are then reached under.
    pub(super) async fn mta_sts_hosts(
        &self,
        domain: &str,
        mxs: &mut Vec<(u16, String)>,
    ) -> Result<Option<Mode>, RcptState> {
        let Some(sts) = &self.mta_sts else {
            return Ok(None);
        };
        let Some(policy) = sts.policy(domain).await else {
            return Ok(None);
        };
        match policy.mode {
            Mode::None => Ok(None),
            Mode::Testing => {
                for (_, host) in mxs.iter().filter(|(_, h)| !policy.allows(h)) {
                    self.stats
                        .mta_sts_testing_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(domain, host, patterns = ?policy.mx, "MTA-STS (testing): this MX host is not one the policy names; delivering all the same");
                }
                Ok(Some(Mode::Testing))
            }
            Mode::Enforce => {
                let all: Vec<String> = mxs.iter().map(|(_, h)| h.clone()).collect();
                mxs.retain(|(_, h)| policy.allows(h));
                if mxs.is_empty() {
                    self.stats.mta_sts_refusals.fetch_add(1, Ordering::Relaxed);
                    return Err(pending(&format!(
                        "451 4.7.5 No mail host of {domain} ({}) is one its MTA-STS policy names ({}); the mail waits until one is",
                        all.join(", "),
                        policy.mx.join(", ")
                    )));
                }
                Ok(Some(Mode::Enforce))
            }
        }
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
