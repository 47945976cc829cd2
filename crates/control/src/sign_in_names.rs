//! Sign-ins for addresses that have no account (or one whose setup is not finished) fail and
//! lock as a real account's do: five wrong attempts, then "locked" for the lockout's time.
//! Otherwise whoever tries six times would learn, from the lock alone, which addresses are
//! operators' and admins' accounts. They are counted in the store, as a real account's count
//! is in its row: a failure costs a write either way (so the time an answer takes does not
//! tell them apart either), and in a cluster attempts spread over the nodes lock at the same
//! count. With the store away, each node counts in memory (`passwords::NameFailures`).

use relayward_store::ATTEMPTS_KEPT_MS;

use crate::Control;
use crate::accounts::{LOCKOUT_MINUTES, MAX_FAILURES};
use crate::passwords::{account_key, seconds_left};

const LOCKOUT_MS: i64 = LOCKOUT_MINUTES * 60_000;

/// Store keys: the lock of an address without an account, and its failures since its
/// `locks`-th lock (a new lock starts a new count, as a real account's count goes back to 0).
fn lock_key(key: &str) -> String {
    format!("sign-in-lock:{key}")
}

fn failures_key(key: &str, locks: usize) -> String {
    format!("sign-in-failed:{locks}:{key}")
}

impl Control {
    /// Seconds to wait when sign-ins for `email`, which has no account, are locked.
    pub(crate) async fn name_locked(&self, email: &str, now: i64) -> Option<i64> {
        let key = account_key(email);
        match self
            .store
            .attempts_since(&lock_key(&key), now - LOCKOUT_MS)
            .await
        {
            Ok((_, oldest)) => oldest.map(|at| seconds_left(at + LOCKOUT_MS, now)),
            Err(e) => {
                tracing::warn!(error = %e, "sign-in failures cannot be read from the store; counting on this node");
                self.name_failures.locked(&key, now)
            }
        }
    }

    /// Counts a failed sign-in for `email`, which has no account; the fifth locks it.
    pub(crate) async fn name_failed(&self, email: &str, now: i64) {
        let key = account_key(email);
        if let Err(e) = self.name_failed_in_store(&key, now).await {
            tracing::warn!(error = %e, "sign-in failures cannot be counted in the store; counting on this node");
            self.name_failures
                .failed(key, now, MAX_FAILURES as usize, LOCKOUT_MS);
        }
    }

    async fn name_failed_in_store(&self, key: &str, now: i64) -> relayward_store::Result<()> {
        let lock = lock_key(key);
        let (locks, _) = self
            .store
            .attempts_since(&lock, now - ATTEMPTS_KEPT_MS)
            .await?;
        let failures = failures_key(key, locks);
        let unbounded = usize::MAX >> 1;
        self.store
            .count_attempt(&failures, ATTEMPTS_KEPT_MS, unbounded, now)
            .await?;
        let (counted, _) = self
            .store
            .attempts_since(&failures, now - ATTEMPTS_KEPT_MS)
            .await?;
        if counted >= MAX_FAILURES as usize {
            self.store.count_attempt(&lock, LOCKOUT_MS, 1, now).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_an_account_locks_at_the_fifth_failure_for_the_lockout() {
        let n = crate::passwords::NameFailures::default();
        let most = MAX_FAILURES as usize;
        for i in 0..4 {
            n.failed("nobody@x.example".into(), i, most, LOCKOUT_MS);
            assert_eq!(n.locked("nobody@x.example", i), None);
        }
        n.failed("nobody@x.example".into(), 10, most, LOCKOUT_MS);
        assert_eq!(
            n.locked("nobody@x.example", 10),
            Some(LOCKOUT_MS / 1000 + 1),
            "as a real account's lock reads"
        );
        assert_eq!(n.locked("other@x.example", 10), None);
        assert_eq!(n.locked("nobody@x.example", 10 + LOCKOUT_MS), None);
        // After the lock, the count starts again.
        for i in 0..4 {
            n.failed(
                "nobody@x.example".into(),
                20 + LOCKOUT_MS + i,
                most,
                LOCKOUT_MS,
            );
        }
        assert_eq!(n.locked("nobody@x.example", 30 + LOCKOUT_MS), None);
    }
}
