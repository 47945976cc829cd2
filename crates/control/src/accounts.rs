//! Accounts for the admin center and the support console (SPEC section 10): Argon2id
//! passwords, TOTP (RFC 6238) as the second factor with one-time recovery codes, sessions with
//! a CSRF token, and sign-in limits per account (lockout) and per client address.
//!
//! There are no default passwords: `relayward operator create` (or an operator or tenant admin
//! through the API) makes an account with a one-time setup link; whoever opens it sets the
//! password and enrols an authenticator, and gets the recovery codes once.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use relayward_guard::Role;
use relayward_store::{Account, Session};
use serde_json::json;

use crate::passwords::seconds_left;
use crate::{
    AccountRole, Actor, Control, Forbidden, NotFound, Result, Via, random_hex, sha256_hex,
};
use relayward_clock::now_ms;

pub const SESSION_COOKIE: &str = "rw_session";
pub const SESSION_HOURS: i64 = 12;
const SETUP_HOURS: i64 = 24;
/// Wrong sign-ins in a row before the account locks.
pub const MAX_FAILURES: u32 = 5;
pub const LOCKOUT_MINUTES: i64 = 15;
const MIN_PASSWORD: usize = 12;
/// Sign-in attempts per client address per ten minutes.
pub const PER_IP_ATTEMPTS: usize = 20;
const RECOVERY_CODES: usize = 10;

const B32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (how authenticator apps take TOTP keys).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(B32[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(B32[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()) {
        let v = B32.iter().position(|&x| x == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

/// The 6-digit TOTP code of `key` at Unix time `secs` (RFC 6238: HMAC-SHA1, 30 s steps).
pub fn totp(key: &[u8], secs: i64) -> u32 {
    let counter = (secs.max(0) / 30) as u64;
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let mac = aws_lc_rs::hmac::sign(&k, &counter.to_be_bytes());
    let h = mac.as_ref();
    let offset = usize::from(h[h.len() - 1] & 0x0f);
    let bin = (u32::from(h[offset]) & 0x7f) << 24
        | u32::from(h[offset + 1]) << 16
        | u32::from(h[offset + 2]) << 8
        | u32::from(h[offset + 3]);
    bin % 1_000_000
}

/// Whether `code` is the key's code now or one step either side (clock drift).
fn totp_matches(secret_b32: &str, code: &str, secs: i64) -> bool {
    let Some(key) = base32_decode(secret_b32) else {
        return false;
    };
    let code = code.trim().replace(' ', "");
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    (-1..=1).any(|step| {
        let want = format!("{:06}", totp(&key, secs + step * 30));
        same(want.as_bytes(), code.as_bytes())
    })
}

/// Equal-length byte strings compared without stopping at the first difference.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in `Cookie` header values (empty values and ones longer than
/// 200 bytes count as absent).
pub fn cookie<'a>(headers: impl IntoIterator<Item = &'a str>, name: &str) -> Option<String> {
    headers
        .into_iter()
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name && !v.is_empty() && v.len() <= 200).then(|| v.to_string())
        })
}

/// The `otpauth://` URI an authenticator app enrols from (the QR code of the setup page).
pub fn otpauth_uri(email: &str, secret: &str) -> String {
    let label = format!("Relayward:{email}");
    format!(
        "otpauth://totp/{}?secret={secret}&issuer=Relayward&algorithm=SHA1&digits=6&period=30",
        label.replace(' ', "%20")
    )
}

/// Sign-in attempts per client address (an IPv6 client is its /64, as one host usually has a
/// whole one) over the last ten minutes: in this process's memory on one node, in the shared
/// store in a cluster (so the limit holds however the attempts are spread over the nodes; while
/// the store is away, each node counts on its own).
#[derive(Default)]
pub struct LoginLimiter {
    attempts: Mutex<Attempts>,
    shared: Option<std::sync::Arc<dyn relayward_store::Store>>,
}

#[derive(Default)]
struct Attempts {
    by_client: HashMap<IpAddr, Vec<i64>>,
    /// When the full map was last swept of clients with no attempt in the window.
    swept: i64,
}

const SIGN_IN_WINDOW: i64 = 600_000;
/// Client addresses counted in memory at most. Past it, those with no attempt in the window
/// are dropped, at most once a second, and a new address is not counted while every place
/// holds a live one: an attacker with more addresses than this still meets each account's
/// lockout, and cannot grow the map, or make each attempt a pass over it.
const MAX_CLIENTS: usize = 100_000;

impl LoginLimiter {
    /// Counting in `store`, which every node of a cluster shares.
    pub fn shared(store: std::sync::Arc<dyn relayward_store::Store>) -> LoginLimiter {
        LoginLimiter {
            attempts: Mutex::default(),
            shared: Some(store),
        }
    }

    /// Counts an attempt; `Err(seconds)` to wait when the address has made too many.
    pub async fn attempt(&self, ip: IpAddr, now: i64) -> Result<(), i64> {
        if let Some(store) = &self.shared {
            match store
                .count_attempt(
                    &format!("sign-in:{}", crate::passwords::address_key(ip)),
                    SIGN_IN_WINDOW,
                    PER_IP_ATTEMPTS,
                    now,
                )
                .await
            {
                Ok(None) => return Ok(()),
                Ok(Some(oldest)) => return Err((SIGN_IN_WINDOW - (now - oldest)) / 1000 + 1),
                Err(e) => {
                    tracing::warn!(error = %e, "sign-in attempts cannot be counted in the store; counting on this node");
                }
            }
        }
        self.attempt_here(ip, now)
    }

    fn attempt_here(&self, ip: IpAddr, now: i64) -> Result<(), i64> {
        let mut attempts = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        let window = SIGN_IN_WINDOW;
        let key = crate::passwords::address_key(ip);
        if attempts.by_client.len() >= MAX_CLIENTS && !attempts.by_client.contains_key(&key) {
            if now.saturating_sub(attempts.swept) < 1000 {
                return Ok(());
            }
            attempts.swept = now;
            attempts
                .by_client
                .retain(|_, v| v.last().is_some_and(|t| now - t < window));
            if attempts.by_client.len() >= MAX_CLIENTS {
                return Ok(());
            }
        }
        let list = attempts.by_client.entry(key).or_default();
        list.retain(|t| now - t < window);
        if list.len() >= PER_IP_ATTEMPTS {
            let wait = list.first().map_or(60, |t| (window - (now - t)) / 1000 + 1);
            return Err(wait);
        }
        list.push(now);
        Ok(())
    }
}

/// Why finishing a setup was refused, where it is not the request's shape.
#[derive(Debug, thiserror::Error)]
pub enum SetupRefused {
    /// The link was not opened yet (no authenticator key was handed out): a state conflict.
    #[error("open the setup link first to get the authenticator key")]
    NotBegun,
    /// The code does not prove the authenticator holds the key.
    #[error("that code does not match the authenticator key; check the device's clock")]
    WrongCode,
}

/// Why a sign-in was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Wrong e-mail, password or code: the answer never says which.
    #[error("wrong e-mail address, password or second factor")]
    Invalid,
    #[error("too many failed sign-ins: the account is locked for {0} more second(s)")]
    Locked(i64),
    #[error("too many sign-in attempts from this address: wait {0} second(s)")]
    TooMany(i64),
    #[error("{0}")]
    Store(String),
}

/// What a successful sign-in gives: the cookie value (shown once) and the session.
pub struct SignedIn {
    pub account: Account,
    pub cookie: String,
    pub session: Session,
}

/// The role an account acts in (a stored role this version does not know acts as an admin,
/// never as an operator).
fn role_of(account: &Account) -> Role {
    AccountRole::parse(&account.role).map_or(Role::Admin, AccountRole::acting)
}

/// The actor of a signed-in account, for the audit log.
pub fn actor(account: &Account, session: &Session) -> Actor {
    Actor {
        name: format!("account:{}", account.email),
        role: role_of(account),
        via: Via::Session,
        client: session.client.clone(),
        mfa: session.mfa,
    }
}

impl Control {
    /// Makes an account waiting for its setup; returns it and the setup token (shown once).
    pub async fn create_account(
        &self,
        email: &str,
        role: AccountRole,
        tenant: Option<&str>,
        actor: &Actor,
    ) -> Result<(Account, String)> {
        // Its domain in ASCII, as `login` looks it up (a name written in Unicode as its A-labels).
        let email = relayward_tenancy::stored_address(email);
        let valid = relayward_names::within_mail_lengths(&email)
            && email.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !email.contains([' ', '<', '>'])
            });
        if !valid {
            invalid!("'{email}' is not an e-mail address");
        }
        match (role, tenant) {
            (AccountRole::Operator, None) => {}
            (AccountRole::Operator, Some(_)) => invalid!("operator accounts belong to no tenant"),
            (AccountRole::Admin | AccountRole::Reader, Some(t)) => {
                if self.store.tenant(t).await?.is_none() {
                    return Err(NotFound(format!("no tenant {t}")));
                }
                let have = self.store.accounts(Some(t)).await?.len();
                self.room_for(actor, "accounts", have)?;
                self.email_not_anothers(&email, t, actor).await?;
            }
            (AccountRole::Admin | AccountRole::Reader, None) => {
                invalid!("admin and reader accounts need a tenant")
            }
        }
        if role == AccountRole::Operator && actor.role != Role::Operator {
            invalid!("only an operator can make operator accounts");
        }
        let token = random_hex(24);
        let now = now_ms();
        let account = Account {
            id: format!("acc_{}", random_hex(8)),
            email: email.clone(),
            role: role.as_str().to_string(),
            tenant: tenant.map(str::to_string),
            password_hash: None,
            totp_secret: None,
            recovery_codes: Vec::new(),
            setup_token_hash: Some(sha256_hex(&token)),
            setup_expires_at: Some(now + SETUP_HOURS * 3_600_000),
            failed_logins: 0,
            locked_until: None,
            created_at: now,
            last_login_at: None,
            language: None,
        };
        self.store.add_account(&account).await?;
        self.audit(
            actor,
            tenant,
            "account.create",
            json!({ "after": { "id": account.id, "email": email, "role": role, "tenant": tenant } }),
        )
        .await?;
        Ok((account, token))
    }

    /// An account's e-mail address is a claim like any other address: a tenant's admin may not
    /// give its tenant an account at a domain another tenant has verified (it would hold that
    /// address's sign-in, and the other tenant could not have it). Operators may.
    async fn email_not_anothers(&self, email: &str, tenant: &str, actor: &Actor) -> Result<()> {
        if actor.role == Role::Operator {
            return Ok(());
        }
        let domain = relayward_tenancy::domain_of(email);
        let related = self.store.related_domains(&domain).await?;
        if related.iter().any(|d| {
            d.tenant != tenant && d.verified && relayward_tenancy::claims::within(&domain, &d.name)
        }) {
            return Err(Forbidden(format!(
                "{email} is at a domain another tenant has verified: an account there is that tenant's to make (ask the operator)"
            )));
        }
        Ok(())
    }

    async fn setup_account(&self, token: &str) -> Result<Account> {
        let gone = || NotFound("this setup link is unknown, used or expired".into());
        let a = self
            .store
            .account_by_setup(&sha256_hex(token))
            .await?
            .ok_or_else(gone)?;
        if a.setup_expires_at.is_none_or(|e| e < now_ms()) {
            return Err(gone());
        }
        Ok(a)
    }

    /// The first step of setup: the account and a TOTP key to enrol in an authenticator
    /// (the same key until setup is finished).
    pub async fn setup_begin(&self, token: &str) -> Result<(Account, String)> {
        let mut a = self.setup_account(token).await?;
        let secret = match &a.totp_secret {
            Some(s) => s.clone(),
            None => {
                let mut key = [0u8; 20];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut key);
                let s = base32(&key);
                a.totp_secret = Some(s.clone());
                self.store.update_account(&a).await?;
                s
            }
        };
        Ok((a, secret))
    }

    /// Finishes setup: the password and a code proving the authenticator holds the key.
    /// Returns the recovery codes, shown this once.
    pub async fn setup_finish(
        &self,
        token: &str,
        password: &str,
        code: &str,
        client: &str,
    ) -> Result<Vec<String>> {
        let mut a = self.setup_account(token).await?;
        if password.chars().count() < MIN_PASSWORD {
            invalid!("the password needs at least {MIN_PASSWORD} characters");
        }
        let Some(secret) = a.totp_secret.clone() else {
            return Err(crate::Conflict(SetupRefused::NotBegun.to_string()));
        };
        if !totp_matches(&secret, code, now_ms() / 1000) {
            return Err(crate::Forbidden(SetupRefused::WrongCode.to_string()));
        }
        let pw = password.to_string();
        let hash = tokio::task::spawn_blocking(move || relayward_tenancy::password::hash(&pw))
            .await
            .map_err(|e| crate::Internal(format!("hashing stopped: {e}")))?
            .map_err(crate::Internal)?;
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| {
                let h = random_hex(6);
                format!("{}-{}-{}", &h[0..4], &h[4..8], &h[8..12])
            })
            .collect();
        a.password_hash = Some(hash);
        a.recovery_codes = codes.iter().map(|c| sha256_hex(c)).collect();
        a.setup_token_hash = None;
        a.setup_expires_at = None;
        self.store.update_account(&a).await?;
        let who = Actor {
            name: format!("account:{}", a.email),
            role: role_of(&a),
            via: Via::Session,
            client: client.to_string(),
            mfa: true,
        };
        self.audit(
            &who,
            a.tenant.as_deref(),
            "account.setup",
            json!({ "account": a.id, "after": { "password": "set", "totp": "enrolled", "recovery_codes": RECOVERY_CODES } }),
        )
        .await?;
        Ok(codes)
    }

    /// Signs in with password and a TOTP code or an unused recovery code.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
        recovery: Option<&str>,
        client: &str,
    ) -> Result<SignedIn, LoginError> {
        self.login_at(email, password, code, recovery, client, now_ms())
            .await
    }

    /// `login` at `now` (Unix ms).
    pub(crate) async fn login_at(
        &self,
        email: &str,
        password: &str,
        code: Option<&str>,
        recovery: Option<&str>,
        client: &str,
        now: i64,
    ) -> Result<SignedIn, LoginError> {
        let store_err = |e: relayward_store::StoreError| LoginError::Store(e.to_string());
        let found = self
            .store
            .account_by_email(&relayward_tenancy::stored_address(email))
            .await
            .map_err(store_err)?;
        let Some(mut a) = found.filter(|a| a.password_hash.is_some()) else {
            // Counted and locked as an account is, so that the lock does not tell which
            // addresses have accounts (`sign_in_failures.rs`).
            if let Some(wait) = self.sign_in_locked(email, now).await {
                return Err(LoginError::Locked(wait));
            }
            // The same work as a real check, so addresses cannot be probed by timing.
            match &self.passwords {
                Some(c) => {
                    if c.verify(password, None).await.is_none() {
                        return Err(LoginError::TooMany(1));
                    }
                }
                None => {
                    let _ = tokio::task::spawn_blocking(|| relayward_tenancy::password::hash("x"))
                        .await;
                }
            }
            self.sign_in_failed(email, None, now).await;
            return Err(LoginError::Invalid);
        };
        // A lock written in the account's row before failures were counted in the store.
        if let Some(until) = a.locked_until.filter(|u| *u > now) {
            return Err(LoginError::Locked(seconds_left(until, now)));
        }
        if let Some(wait) = self.sign_in_locked(email, now).await {
            return Err(LoginError::Locked(wait));
        }
        let hash = a.password_hash.clone().unwrap_or_default();
        // In the running relay, on the same bounded checkers as SMTP AUTH (all of them busy:
        // try again in a second); on the command line, a thread of its own.
        let password_ok = match &self.passwords {
            Some(c) => match c.verify(password, Some(&hash)).await {
                Some(ok) => ok,
                None => return Err(LoginError::TooMany(1)),
            },
            None => {
                let pw = password.to_string();
                tokio::task::spawn_blocking(move || relayward_tenancy::password::verify(&pw, &hash))
                    .await
                    .unwrap_or(false)
            }
        };
        let second = match (code, recovery) {
            (Some(c), _) => a
                .totp_secret
                .as_deref()
                .is_some_and(|s| totp_matches(s, c, now / 1000)),
            (None, Some(r)) => {
                let h = sha256_hex(r.trim());
                let before = a.recovery_codes.len();
                if password_ok {
                    a.recovery_codes
                        .retain(|c| !same(c.as_bytes(), h.as_bytes()));
                }
                a.recovery_codes.len() < before
            }
            (None, None) => false,
        };
        if !(password_ok && second) {
            // Counted as an address without an account is (`sign_in_failures.rs`); the
            // account's row is written only to show the lock (`relayward account list`).
            if let Some(until) = self.sign_in_failed(email, a.last_login_at, now).await {
                tracing::warn!(account = %a.email, client, "account locked after repeated failed sign-ins");
                a.locked_until = Some(until);
                self.store.update_account(&a).await.map_err(store_err)?;
            }
            return Err(LoginError::Invalid);
        }
        self.signed_in(email);
        a.failed_logins = 0;
        a.locked_until = None;
        a.last_login_at = Some(now);
        self.store.update_account(&a).await.map_err(store_err)?;
        let cookie = format!("rws_{}", random_hex(32));
        let session = Session {
            id_hash: sha256_hex(&cookie),
            account_id: a.id.clone(),
            csrf: random_hex(24),
            mfa: true,
            client: client.to_string(),
            created_at: now,
            expires_at: now + SESSION_HOURS * 3_600_000,
        };
        self.store.add_session(&session).await.map_err(store_err)?;
        let who = actor(&a, &session);
        let used = if code.is_some() {
            "totp"
        } else {
            "recovery code"
        };
        if let Err(e) = self
            .audit(
                &who,
                a.tenant.as_deref(),
                "account.login",
                json!({ "second_factor": used, "recovery_codes_left": a.recovery_codes.len() }),
            )
            .await
        {
            tracing::warn!(error = %e, "cannot audit a sign-in");
        }
        Ok(SignedIn {
            account: a,
            cookie,
            session,
        })
    }

    /// The account and session behind a cookie value, while the session lasts.
    pub async fn session(&self, cookie: &str) -> Result<Option<(Account, Session)>> {
        let Some(s) = self.store.session(&sha256_hex(cookie)).await? else {
            return Ok(None);
        };
        if s.expires_at < now_ms() {
            self.store.delete_session(&s.id_hash).await?;
            return Ok(None);
        }
        Ok(self.store.account(&s.account_id).await?.map(|a| (a, s)))
    }

    /// An account's own console language: `en`, `es`, or `None` for the tenant's (else the
    /// browser's). Only the account itself changes it.
    pub async fn set_account_language(
        &self,
        account_id: &str,
        language: Option<&str>,
        actor: &Actor,
    ) -> Result<()> {
        let Some(mut a) = self.store.account(account_id).await? else {
            return Err(NotFound(format!("no account {account_id}")));
        };
        if actor.name != format!("account:{}", a.email) {
            return Err(crate::Forbidden(
                "an account's language is its own to set".into(),
            ));
        }
        let language = match language.map(str::trim) {
            None | Some("") => None,
            Some(l @ ("en" | "es")) => Some(l.to_string()),
            Some(other) => invalid!("'{other}' is not a console language (en, es)"),
        };
        let before = a.language.clone();
        a.language = language.clone();
        self.store.update_account(&a).await?;
        self.audit(
            actor,
            a.tenant.as_deref(),
            "account.language",
            json!({ "account": a.id, "before": before, "after": language }),
        )
        .await
    }

    pub async fn logout(&self, cookie: &str) -> Result<()> {
        Ok(self.store.delete_session(&sha256_hex(cookie)).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_test_vectors() {
        // RFC 6238 appendix B, SHA-1 key "12345678901234567890" (8 digits there; 6 here are
        // the last six).
        let key = b"12345678901234567890";
        for (t, eight) in [
            (59, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
        ] {
            assert_eq!(totp(key, t), eight % 1_000_000, "t={t}");
        }
        let b32 = base32(key);
        assert_eq!(b32, "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(base32_decode(&b32).as_deref(), Some(&key[..]));
        let code = format!("{:06}", totp(key, 1_000_000));
        assert!(totp_matches(&b32, &code, 1_000_000 + 25));
        assert!(!totp_matches(&b32, &code, 1_000_000 + 95));
        assert!(!totp_matches(&b32, "12345", 1_000_000));
    }

    #[test]
    fn an_address_gets_twenty_attempts_per_ten_minutes() {
        let l = LoginLimiter::default();
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        for i in 0..PER_IP_ATTEMPTS {
            assert!(l.attempt_here(ip, 1000 + i as i64).is_ok());
        }
        let wait = l.attempt_here(ip, 2000).expect_err("limited");
        assert!(wait > 590 && wait <= 601, "{wait}");
        assert!(
            l.attempt_here("192.0.2.2".parse().expect("ip"), 2000)
                .is_ok()
        );
        assert!(
            l.attempt_here(ip, 1000 + 600_001).is_ok(),
            "the window moves on"
        );
    }

    /// An IPv6 host usually has a whole /64: every address in it shares one count, and a flood
    /// of addresses neither grows the map past its bound nor costs a pass over it per attempt.
    #[test]
    fn an_ipv6_client_is_its_slash_64_and_the_map_is_bounded() {
        let l = LoginLimiter::default();
        for i in 0..PER_IP_ATTEMPTS {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().expect("ip");
            assert!(l.attempt_here(ip, 1000).is_ok());
        }
        let next: IpAddr = "2001:db8:1:2:ffff::1".parse().expect("ip");
        assert!(l.attempt_here(next, 1001).is_err(), "the same /64");
        let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert!(l.attempt_here(other, 1001).is_ok(), "another /64");
        for i in 0..MAX_CLIENTS as u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = l.attempt_here(ip, 2000);
        }
        let count = || l.attempts.lock().expect("lock").by_client.len();
        assert_eq!(count(), MAX_CLIENTS);
        let _ = l.attempt_here("198.51.100.1".parse().expect("ip"), 2500);
        assert_eq!(count(), MAX_CLIENTS, "full of live clients: not counted");
        let _ = l.attempt_here("198.51.100.2".parse().expect("ip"), 700_000);
        assert_eq!(count(), 1, "once their window ended, swept");
    }
}
