//! What can go wrong when signing or sealing.

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("DKIM key: {0}")]
    Key(String),
    #[error("signing failed")]
    Sign,
    #[error("cannot seal: {0}")]
    Seal(String),
}
