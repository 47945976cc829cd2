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

/// The largest Argon2 memory a stored hash may ask a check to use (64 MiB): a hash written with
/// more is treated as not matching rather than letting one check allocate without bound.
pub const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// [`verify`] with the caller's memory: `blocks` is grown to what the hash's parameters need (at
/// most [`MAX_MEMORY_KIB`]) and kept for the next check, so a thread that checks passwords all
/// day holds one buffer instead of allocating 19 MiB per attempt.
pub fn verify_with(password: &str, phc: &str, blocks: &mut Vec<argon2::Block>) -> bool {
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (hash.salt, hash.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&hash) else {
        return false;
    };
    if params.m_cost() > MAX_MEMORY_KIB {
        return false;
    }
    let Ok(algorithm) = argon2::Algorithm::try_from(hash.algorithm) else {
        return false;
    };
    let version = match hash.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_bytes = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_bytes) else {
        return false;
    };
    let need = params.block_count();
    if blocks.len() < need {
        blocks.resize(need, argon2::Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let ok = Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, &mut blocks[..need])
        .is_ok();
    ok && argon2::password_hash::Output::new(out).is_ok_and(|o| o == expected)
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
        let mut blocks = Vec::new();
        assert!(super::verify_with("change-me", &h, &mut blocks));
        let held = blocks.len();
        assert!(held >= 19 * 1024, "the buffer is kept: {held} blocks");
        assert!(!super::verify_with("change-you", &h, &mut blocks));
        assert!(!super::verify_with("change-me", "not a hash", &mut blocks));
        assert_eq!(blocks.len(), held, "and reused, not grown");
    }
}
