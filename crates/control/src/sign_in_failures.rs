//! Failed console and API sign-ins, counted and locked alike for every address, whether it
//! has an account or not: five wrong attempts, then "locked" for the lockout's time. Otherwise
//! whoever tries six times, or spaces tries more than two days apart, would learn from the lock
//! which addresses are operators' and admins' accounts. They are counted in the store's
//! attempts: a failure costs the same writes either way (so the time an answer takes does not
//! tell them apart either), a count ages out after `ATTEMPTS_KEPT_MS` either way, and in a
//! cluster attempts spread over the nodes lock at the same count. A real account's count also
//! starts again at its last sign-in. With the store away, each node counts in memory
//! (`passwords::SignInFailures`).

use relayward_store::ATTEMPTS_KEPT_MS;

use crate::Control;
use crate::accounts::{LOCKOUT_MINUTES, MAX_FAILURES};
use crate::passwords::{account_key, seconds_left};

const LOCKOUT_MS: i64 = LOCKOUT_MINUTES * 60_000;

/// Store keys: the lock of an address (at most one row: a new lock drops those past the
/// lockout, so the row there is the last lock), and its failures.
fn lock_key(key: &str) -> String {
    format!("sign-in-lock:{key}")
}

fn failures_key(key: &str) -> String {
    format!("sign-in-failed:{key}")
}

impl Control {
    /// Seconds to wait when sign-ins for `email` are locked.
    pub(crate) async fn sign_in_locked(&self, email: &str, now: i64) -> Option<i64> {
        let key = account_key(email);
        match self
            .store
            .attempts_since(&lock_key(&key), now - LOCKOUT_MS + 1)
            .await
        {
            Ok((_, oldest)) => oldest.map(|at| seconds_left(at + LOCKOUT_MS, now)),
            Err(e) => {
                tracing::warn!(error = %e, "sign-in failures cannot be read from the store; counting on this node");
                self.sign_in_failures.locked(&key, now)
            }
        }
    }

    /// Counts a failed sign-in for `email`; the fifth since the last lock (and since
    /// `signed_in_at`, an account's last sign-in) locks it: then when the lock ends.
    pub(crate) async fn sign_in_failed(
        &self,
        email: &str,
        signed_in_at: Option<i64>,
        now: i64,
    ) -> Option<i64> {
        let key = account_key(email);
        match self.failed_in_store(&key, signed_in_at, now).await {
            Ok(locked) => locked.then_some(now + LOCKOUT_MS),
            Err(e) => {
                tracing::warn!(error = %e, "sign-in failures cannot be counted in the store; counting on this node");
                self.sign_in_failures
                    .failed(key, now, MAX_FAILURES as usize, LOCKOUT_MS)
            }
        }
    }

    /// A successful sign-in: the count this node keeps while the store is away starts again
    /// (the store's starts again at the account's `last_login_at`).
    pub(crate) fn signed_in(&self, email: &str) {
        self.sign_in_failures.forget(&account_key(email));
    }

    async fn failed_in_store(
        &self,
        key: &str,
        signed_in_at: Option<i64>,
        now: i64,
    ) -> relayward_store::Result<bool> {
        let (lock, failures) = (lock_key(key), failures_key(key));
        let kept = now - ATTEMPTS_KEPT_MS;
        let (_, last_lock) = self.store.attempts_since(&lock, kept).await?;
        let unbounded = usize::MAX >> 1;
        self.store
            .count_attempt(&failures, ATTEMPTS_KEPT_MS, unbounded, now)
            .await?;
        // The failures since the last lock or sign-in, as a count starts again at 0 then.
        let since = [last_lock, signed_in_at]
            .into_iter()
            .flatten()
            .map(|at| at + 1)
            .fold(kept, i64::max);
        let (counted, _) = self.store.attempts_since(&failures, since).await?;
        if counted < MAX_FAILURES as usize {
            return Ok(false);
        }
        self.store.count_attempt(&lock, LOCKOUT_MS, 1, now).await?;
        Ok(true)
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
                    control.sign_in_locked("nobody@x.example", now).await,
                    None,
                    "lock {lock}, failure {failure}"
                );
                control.sign_in_failed("nobody@x.example", None, now).await;
                now += 1_000;
            }
            assert_eq!(
                control.sign_in_locked("nobody@x.example", now).await,
                Some((LOCKOUT_MS - 1_000) / 1000 + 1),
                "lock {lock}"
            );
            assert_eq!(control.sign_in_locked("other@x.example", now).await, None);
            now += LOCKOUT_MS;
        }
    }

    /// A sign-in at `now` with a current second factor, and what it was answered.
    async fn sign_in(control: &Control, who: &str, password: &str, now: i64) -> String {
        let code = format!("{:06}", crate::accounts::totp(TOTP_KEY, now / 1000));
        match control
            .login_at(who, password, Some(&code), None, "192.0.2.1", now)
            .await
        {
            Ok(_) => "signed in".to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// RFC 6238's test key, and the same in base32 as an account keeps it.
    const TOTP_KEY: &[u8] = b"12345678901234567890";
    const TOTP_SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    /// An operator's account and an address without one, tried alike: the same answers, lock
    /// for lock. Before, an account's failures never aged out while an address's did after two
    /// days, so five tries spaced over days locked only the account.
    #[tokio::test]
    async fn an_account_and_an_address_without_one_answer_alike_over_days() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            relayward_store::SqliteStore::open(&dir.path().join("store.sqlite")).expect("store");
        let account = relayward_store::Account {
            id: "acct-1".into(),
            email: "ops@x.example".into(),
            role: "operator".into(),
            tenant: None,
            password_hash: Some(
                relayward_tenancy::password::hash("the right password").expect("hash"),
            ),
            totp_secret: Some(TOTP_SECRET.into()),
            recovery_codes: Vec::new(),
            setup_token_hash: None,
            setup_expires_at: None,
            failed_logins: 0,
            locked_until: None,
            created_at: 0,
            last_login_at: None,
            language: None,
        };
        relayward_store::Store::add_account(&store, &account)
            .await
            .expect("account");
        let config = relayward_config::Config::load(None).expect("defaults");
        let control = Control::new(&config, std::sync::Arc::new(store));
        let both = ["ops@x.example", "nobody@x.example"];
        let wrong = "wrong e-mail address, password or second factor";
        let mut now = 1_700_000_000_000;

        // Seven wrong sign-ins 13 hours apart: never five within the two days a count is kept.
        for t in 1..=7 {
            for who in both {
                let answer = sign_in(&control, who, "a wrong one", now).await;
                assert_eq!(answer, wrong, "{who}, try {t}");
            }
            now += 13 * 3_600_000;
        }
        // One more a second after the seventh: the fifth within two days locks both, with the
        // same words. (The old count, in the account's row, had locked at the fifth try and
        // started again: there the account was not locked, the address was.)
        now -= 13 * 3_600_000 - 1_000;
        let mut answers = Vec::new();
        for who in both {
            assert_eq!(sign_in(&control, who, "a wrong one", now).await, wrong);
            answers.push(sign_in(&control, who, "the right password", now).await);
        }
        let locked = "too many failed sign-ins: the account is locked for 901 more second(s)";
        assert_eq!(answers, [locked, locked]);
        // After the lock, a sign-in starts the account's count again.
        now += LOCKOUT_MS;
        for _ in 0..3 {
            assert_eq!(sign_in(&control, both[0], "a wrong one", now).await, wrong);
        }
        let answer = sign_in(&control, both[0], "the right password", now).await;
        assert_eq!(answer, "signed in");
        for t in 1..=4 {
            now += 1_000;
            let answer = sign_in(&control, both[0], "a wrong one", now).await;
            assert_eq!(answer, wrong, "try {t} after signing in");
        }
    }

    #[test]
    fn an_address_without_an_account_locks_at_the_fifth_failure_for_the_lockout() {
        let n = crate::passwords::SignInFailures::default();
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
