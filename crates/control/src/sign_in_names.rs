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

/// Store keys: the lock of an address without an account (at most one row: a new lock drops
/// those past the lockout, so the row there is the last lock), and its failures.
fn lock_key(key: &str) -> String {
    format!("sign-in-lock:{key}")
}

fn failures_key(key: &str) -> String {
    format!("sign-in-failed:{key}")
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
        let (lock, failures) = (lock_key(key), failures_key(key));
        let kept = now - ATTEMPTS_KEPT_MS;
        let (_, last_lock) = self.store.attempts_since(&lock, kept).await?;
        let unbounded = usize::MAX >> 1;
        self.store
            .count_attempt(&failures, ATTEMPTS_KEPT_MS, unbounded, now)
            .await?;
        // The failures since the last lock, as a real account's count starts again at 0 then.
        let since = last_lock.map_or(kept, |at| (at + 1).max(kept));
        let (counted, _) = self.store.attempts_since(&failures, since).await?;
        if counted >= MAX_FAILURES as usize {
            self.store.count_attempt(&lock, LOCKOUT_MS, 1, now).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Through the store, lock after lock: each time the fifth failure since the last lock
    /// locks, as a real account's count starts again at 0.
    #[tokio::test]
    async fn an_address_without_an_account_locks_at_each_fifth_failure_through_the_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            relayward_store::SqliteStore::open(&dir.path().join("store.sqlite")).expect("store");
        let config = relayward_config::Config::load(None).expect("defaults");
        let control = Control::new(&config, std::sync::Arc::new(store));
        let mut now = 1_000_000_000;
        for lock in 1..=3 {
            for failure in 1..=5 {
                assert_eq!(
                    control.name_locked("nobody@x.example", now).await,
                    None,
                    "lock {lock}, failure {failure}"
                );
                control.name_failed("nobody@x.example", now).await;
                now += 1_000;
            }
            assert_eq!(
                control.name_locked("nobody@x.example", now).await,
                Some((LOCKOUT_MS - 1_000) / 1000 + 1),
                "lock {lock}"
            );
            assert_eq!(control.name_locked("other@x.example", now).await, None);
            now += LOCKOUT_MS;
        }
    }

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
