//! Random secrets and digests the control plane hands out or keeps: verification tokens, API
//! token and webhook secrets, and the SHA-256 under which tokens and codes are stored.

/// A random hex string of `bytes` random bytes.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut b = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256 of `s`, as lowercase hex (how tokens and recovery codes are kept).
pub fn sha256_hex(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
