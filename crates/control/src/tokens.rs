//! API tokens: made for an operator or for an admin or reader of one tenant, shown once, kept
//! as a hash, revoked, and checked on every API request.

use relayward_clock::now_ms;
use relayward_guard::Role;

use crate::{AccountRole, Actor, Control, NotFound, Result, random_hex, sha256_hex};

/// Why an API token was not accepted (all answer 401; the words go to the caller).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no API token (send Authorization: Bearer rw_...)")]
    Missing,
    #[error("the API token is not valid")]
    Invalid,
    #[error("the API token was revoked")]
    Revoked,
    #[error("the API token has expired")]
    Expired,
    #[error("{0}")]
    Store(relayward_store::StoreError),
}

impl Control {
    /// Creates an API token: `operator`, or `admin`/`reader` of one tenant. Returns the token
    /// text (shown once; only its hash is kept) and what was stored.
    pub async fn create_token(
        &self,
        role: AccountRole,
        tenant: Option<&str>,
        name: &str,
        valid_for: Option<std::time::Duration>,
        actor: &Actor,
    ) -> Result<(String, relayward_store::ApiToken)> {
        if actor.role != Role::Operator {
            invalid!("only operators create API tokens from here");
        }
        match (role, tenant) {
            (AccountRole::Operator, None) | (AccountRole::Admin | AccountRole::Reader, Some(_)) => {
            }
            (AccountRole::Operator, Some(_)) => {
                invalid!("an operator token belongs to no tenant")
            }
            (AccountRole::Admin | AccountRole::Reader, None) => {
                invalid!("an {} token needs its tenant", role.as_str())
            }
        }
        let id = random_hex(6);
        let secret = random_hex(24);
        let now = now_ms();
        let t = relayward_store::ApiToken {
            id: id.clone(),
            name: name.to_string(),
            role: role.as_str().to_string(),
            tenant: tenant.map(str::to_string),
            secret_hash: sha256_hex(&secret),
            created_at: now,
            expires_at: valid_for.map(|d| now + d.as_millis() as i64),
            last_used_at: None,
            revoked_at: None,
        };
        self.store.add_token(&t).await?;
        self.audit(
            actor,
            tenant,
            "token.create",
            serde_json::json!({ "after": { "id": id, "name": name, "role": role, "expires_at": t.expires_at } }),
        )
        .await?;
        Ok((format!("rw_{id}_{secret}"), t))
    }

    pub async fn revoke_token(&self, id: &str, actor: &Actor) -> Result<()> {
        let t = self
            .store
            .token(id)
            .await?
            .ok_or_else(|| NotFound(format!("token '{id}' does not exist")))?;
        self.store.revoke_token(id, now_ms()).await?;
        self.audit(
            actor,
            t.tenant.as_deref(),
            "token.revoke",
            serde_json::json!({ "before": { "id": id, "revoked": t.revoked_at.is_some() }, "after": { "id": id, "revoked": true } }),
        )
        .await
    }

    /// The stored token behind `rw_<id>_<secret>`, when it is valid now; records its use.
    pub async fn authenticate_token(
        &self,
        text: &str,
    ) -> std::result::Result<relayward_store::ApiToken, TokenError> {
        let rest = text.strip_prefix("rw_").ok_or(TokenError::Invalid)?;
        let (id, secret) = rest.split_once('_').ok_or(TokenError::Invalid)?;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TokenError::Invalid);
        }
        let t = self
            .store
            .token(id)
            .await
            .map_err(TokenError::Store)?
            .ok_or(TokenError::Invalid)?;
        // Both sides are hashes of fixed length: comparing every byte leaks nothing useful.
        let given = sha256_hex(secret);
        if !crate::accounts::same(given.as_bytes(), t.secret_hash.as_bytes()) {
            return Err(TokenError::Invalid);
        }
        let now = now_ms();
        if t.revoked_at.is_some() {
            return Err(TokenError::Revoked);
        }
        if t.expires_at.is_some_and(|e| now >= e) {
            return Err(TokenError::Expired);
        }
        // Last use is bookkeeping: a failed write does not refuse the caller.
        if let Err(e) = self.store.touch_token(id, now).await {
            tracing::warn!(error = %e, "cannot record the token's last use");
        }
        Ok(t)
    }
}
