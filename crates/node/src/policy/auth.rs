//! SMTP AUTH failures counted for the whole cluster. Each node keeps its own count
//! (`control::passwords::Limiter`), which answers at once and holds while the database is
//! away; in cluster mode the failures of users the directory knows, and of each client address,
//! are also counted in the shared store, so that guesses spread over the nodes (or a load
//! balancer's round robin) meet one limit: `[smtp] auth_failures_per_account` within
//! `auth_lockout`, `auth_failures_per_address` within `auth_address_window`. An account or
//! address at its limit is refused on every node until the oldest of those failures leaves the
//! window. Names nobody has are counted on each node only: anyone can make up any number of
//! them, and each would be rows in the shared store.

use std::net::IpAddr;
use std::sync::Arc;

use relayward_config::AuthLimits;
use relayward_control::passwords::{Account, account_key};
use relayward_smtp::admission::client_key;
use relayward_store::Store;

pub struct SharedAuth {
    pub store: Arc<dyn Store>,
    pub limits: AuthLimits,
}

fn ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn keys(account: Account<'_>, ip: IpAddr) -> (Option<String>, String) {
    let account = match account {
        Account::Known(name) => Some(format!("smtp-auth:{}", account_key(name))),
        Account::Unknown(_) => None,
    };
    (account, format!("smtp-auth-from:{}", client_key(ip)))
}

impl SharedAuth {
    /// Whether the cluster's count refuses an attempt now (the database away: no).
    pub async fn locked(&self, account: Account<'_>, ip: IpAddr, now: i64) -> bool {
        let (account, address) = keys(account, ip);
        let checks = [
            (
                Some(address),
                self.limits.per_address,
                self.limits.address_window,
            ),
            (account, self.limits.per_account, self.limits.lockout),
        ];
        for (key, most, window) in checks {
            let Some(key) = key else { continue };
            match self.store.attempts_since(&key, now - ms(window)).await {
                Ok((n, _)) if n >= most as usize => return true,
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "SMTP AUTH failures cannot be read from the database; this node's count holds");
                    return false;
                }
            }
        }
        false
    }

    /// Counts a failure; `Some((until, failures))` when it brings a known account to its limit
    /// (the node that counted it raises the alert). `Err` when the database cannot say: then
    /// this node's own count decides.
    pub async fn failed(
        &self,
        account: Account<'_>,
        ip: IpAddr,
        now: i64,
    ) -> Result<Option<(i64, u32)>, relayward_store::StoreError> {
        let (account, address) = keys(account, ip);
        let window = ms(self.limits.address_window);
        if let Err(e) = self
            .store
            .count_attempt(&address, window, self.limits.per_address as usize, now)
            .await
        {
            tracing::debug!(error = %e, "an SMTP AUTH failure cannot be counted in the database");
        }
        let Some(key) = account else {
            return Ok(None);
        };
        let lockout = ms(self.limits.lockout);
        let most = self.limits.per_account as usize;
        // Counted only below the limit: a failure that finds it reached adds nothing.
        if self
            .store
            .count_attempt(&key, lockout, most, now)
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let (n, oldest) = self.store.attempts_since(&key, now - lockout).await?;
        Ok((n == most).then(|| {
            let until = oldest.unwrap_or(now) + lockout;
            (until, u32::try_from(n).unwrap_or(u32::MAX))
        }))
    }
}
