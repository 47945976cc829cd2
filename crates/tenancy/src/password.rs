//! SMTP AUTH credentials: Argon2id hashes (PHC strings), never plain text at rest.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rand_core::OsRng;

pub fn hash(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("cannot hash password: {e}"))
}

/// Constant-time check of `password` against a stored PHC string; a malformed hash never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #[test]
    fn verifies_only_the_right_password() {
        let h = super::hash("change-me").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(super::verify("change-me", &h));
        assert!(!super::verify("change-you", &h));
        assert!(!super::verify("change-me", "not a hash"));
    }
}
