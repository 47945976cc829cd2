//! SMTP AUTH failures counted for the whole cluster. Each node keeps its own count
//! (`control::passwords::Limiter`), which answers at once and holds while the database is
//! away; in cluster mode the failures of users the directory knows, and of each client address,
//! are also counted in the shared store, so that guesses spread over the nodes (or a load
//! balancer's round robin) meet one limit: `[smtp] auth_failures_per_account` within
//! `auth_lockout`, `auth_failures_per_address` within `auth_address_window`. An account or
//! address at its limit is refused on every node until the oldest of those failures leaves the
//! window. Names nobody has are counted the same way, with the same answers: were they counted
//! on each node only, guesses spread over the nodes would lock a real account and not a made-up
//! one, telling which names are real. What that costs the store is bounded by the password
//! checkers: each failure counted is a check, one per core at a time, and each is already a
//! row for its client address.

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

fn keys(account: Account<'_>, ip: IpAddr) -> (String, String) {
    let (Account::Known(name) | Account::Unknown(name)) = account;
    (
        format!("smtp-auth:{}", account_key(name)),
        format!("smtp-auth-from:{}", client_key(ip)),
    )
}

impl SharedAuth {
    /// Whether the cluster's count refuses an attempt now (the database away: no).
    pub async fn locked(&self, account: Account<'_>, ip: IpAddr, now: i64) -> bool {
        let (account, address) = keys(account, ip);
        // Both counts in one look at the database, before the password is checked.
        let asked = [
            (address.as_str(), now - ms(self.limits.address_window)),
            (account.as_str(), now - ms(self.limits.lockout)),
        ];
        match self.store.attempts_counted(&asked).await {
            Ok(counted) => matches!(
                counted[..],
                [by_address, by_account]
                    if by_address >= self.limits.per_address as usize
                        || by_account >= self.limits.per_account as usize
            ),
            Err(e) => {
                tracing::debug!(error = %e, "SMTP AUTH failures cannot be read from the database; this node's count holds");
                false
            }
        }
    }

    /// Counts a failure; `Some((until, failures))` when it brings a known account to its limit
    /// (the node that counted it raises the alert; a made-up name locks without one). `Err`
    /// when the database cannot say: then this node's own count decides.
    pub async fn failed(
        &self,
        account: Account<'_>,
        ip: IpAddr,
        now: i64,
    ) -> Result<Option<(i64, u32)>, relayward_store::StoreError> {
        let known = matches!(account, Account::Known(_));
        let (account, address) = keys(account, ip);
        let window = ms(self.limits.address_window);
        if let Err(e) = self
            .store
            .count_attempt(&address, window, self.limits.per_address as usize, now)
            .await
        {
            tracing::debug!(error = %e, "an SMTP AUTH failure cannot be counted in the database");
        }
        let key = account;
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
        Ok((known && n == most).then(|| {
            let until = oldest.unwrap_or(now) + lockout;
            (until, u32::try_from(n).unwrap_or(u32::MAX))
        }))
    }
}
