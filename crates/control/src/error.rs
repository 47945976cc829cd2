//! The control plane's one error type.

use relayward_store::StoreError;

/// Why the control plane refused a change or could not make it: the one error type of every
/// action. The API answers each kind with its status (in brackets); the command line prints it.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// What was asked for is not there, or belongs to another tenant (404).
    #[error("{0}")]
    NotFound(String),
    /// This actor may not make this change (403).
    #[error("{0}")]
    Forbidden(String),
    /// The change clashes with the object's state right now (409).
    #[error("{0}")]
    Conflict(String),
    /// The request itself is wrong: a value out of form, a rule it breaks (422).
    #[error("{0}")]
    Invalid(String),
    /// Lifting a restriction needs a person who passed a second factor (SPEC section 8): a
    /// console session. The command line on the relay's own host (whoever runs it holds the
    /// server) and the system's automatic approval are the exceptions; API tokens are not (403).
    #[error(
        "{0} a restriction needs a sign-in with a second factor (a console session with TOTP); API tokens cannot do it"
    )]
    MfaRequired(&'static str),
    /// The store refused (a clash, a managed tenant: 409) or failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not fail did (500); the words go to the log.
    #[error("{0}")]
    Internal(String),
}

/// The result of every control-plane action.
pub type Result<T, E = ControlError> = std::result::Result<T, E>;
