//! Who is looking: the signed-in account behind the session cookie, its role and tenant, the
//! language the pages speak to it, and the one check of what it may see and change.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use relayward_control::{AccountRole, Actor, accounts};
use relayward_store::{Account, Session, Tenant};

use crate::state::ConsoleState;
use crate::words::{Lang, Words};

pub struct Viewer {
    pub account: Account,
    pub session: Session,
    pub role: AccountRole,
    pub lang: Lang,
}

impl Viewer {
    pub fn w(&self) -> &'static Words {
        self.lang.words()
    }

    pub fn operator(&self) -> bool {
        self.role == AccountRole::Operator
    }

    /// Readers read; admins and operators change.
    pub fn can_change(&self) -> bool {
        self.role != AccountRole::Reader
    }

    /// Where the account starts: the support console, or its tenant's home.
    pub fn home(&self) -> String {
        match (&self.account.tenant, self.operator()) {
            (Some(t), false) => format!("/t/{t}"),
            _ => "/support".to_string(),
        }
    }

    pub fn actor(&self) -> Actor {
        accounts::actor(&self.account, &self.session)
    }

    /// Operators reach every tenant; everyone else their own only.
    pub fn may_see(&self, tenant: &str) -> bool {
        self.operator() || self.account.tenant.as_deref() == Some(tenant)
    }

    /// A form's CSRF token is the session's.
    pub fn csrf_ok(&self, given: &str) -> bool {
        accounts::same(given.as_bytes(), self.session.csrf.as_bytes())
    }
}

/// The language of a page for someone not signed in: the browser's choice, else English.
pub fn browser_lang(headers: &HeaderMap) -> Lang {
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .and_then(Lang::from_accept)
        .unwrap_or(Lang::En)
}

pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    accounts::cookie(
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok()),
        name,
    )
}

/// Why there is no viewer: nobody is signed in, or the store failed (the page module renders
/// that one).
pub enum NoViewer {
    SignIn,
    Failed(Lang, String),
}

#[axum::async_trait]
impl FromRequestParts<ConsoleState> for Viewer {
    type Rejection = NoViewer;

    async fn from_request_parts(parts: &mut Parts, s: &ConsoleState) -> Result<Viewer, NoViewer> {
        let to_sign_in = || NoViewer::SignIn;
        let Some(value) = cookie(&parts.headers, accounts::SESSION_COOKIE) else {
            return Err(to_sign_in());
        };
        let (account, session) = match s.control.session(&value).await {
            Ok(Some(found)) => found,
            Ok(None) => return Err(to_sign_in()),
            Err(e) => {
                return Err(NoViewer::Failed(
                    browser_lang(&parts.headers),
                    e.to_string(),
                ));
            }
        };
        let Some(role) = AccountRole::parse(&account.role) else {
            return Err(to_sign_in());
        };
        // The account's own language, else the tenant's, else the browser's.
        let own = account.language.as_deref().and_then(Lang::parse);
        let tenant_lang = match &account.tenant {
            _ if own.is_some() => own,
            Some(t) => s
                .control
                .tenant(t)
                .await
                .ok()
                .flatten()
                .and_then(|t: Tenant| Lang::parse(&t.language)),
            None => None,
        };
        let lang = tenant_lang.unwrap_or_else(|| browser_lang(&parts.headers));
        Ok(Viewer {
            account,
            session,
            role,
            lang,
        })
    }
}
