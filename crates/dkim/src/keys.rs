//! Signing keys: generating them (RSA-2048 and Ed25519), loading them from PKCS#8, signing,
//! and the DNS record that publishes the public half.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::DkimError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    RsaSha256,
    Ed25519Sha256,
}

impl Algorithm {
    /// The `a=` tag value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa-sha256",
            Algorithm::Ed25519Sha256 => "ed25519-sha256",
        }
    }

    pub fn parse(s: &str) -> Option<Algorithm> {
        match s.trim().to_ascii_lowercase().as_str() {
            "rsa-sha256" => Some(Algorithm::RsaSha256),
            "ed25519-sha256" => Some(Algorithm::Ed25519Sha256),
            _ => None,
        }
    }

    /// The key record's `k=` value.
    pub fn key_type(self) -> &'static str {
        match self {
            Algorithm::RsaSha256 => "rsa",
            Algorithm::Ed25519Sha256 => "ed25519",
        }
    }
}

/// A freshly generated key: PKCS#8 private key and the public key as published (`p=`).
#[derive(Debug, Clone)]
pub struct Generated {
    pub algorithm: Algorithm,
    pub private_pkcs8: Vec<u8>,
    pub public: Vec<u8>,
}

/// Generates a signing key: RSA with a 2048-bit modulus, or Ed25519. RSA generation takes a
/// good fraction of a second; call it off the async threads.
pub fn generate(algorithm: Algorithm) -> Result<Generated, DkimError> {
    match algorithm {
        Algorithm::RsaSha256 => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let mut rng = rand::rngs::OsRng;
            let key = rsa::RsaPrivateKey::new(&mut rng, 2048)
                .map_err(|e| DkimError::Key(format!("RSA key generation: {e}")))?;
            let private = key
                .to_pkcs8_der()
                .map_err(|e| DkimError::Key(format!("RSA key encoding: {e}")))?;
            let public = key
                .to_public_key()
                .to_public_key_der()
                .map_err(|e| DkimError::Key(format!("RSA public key encoding: {e}")))?;
            Ok(Generated {
                algorithm,
                private_pkcs8: private.as_bytes().to_vec(),
                public: public.as_bytes().to_vec(),
            })
        }
        Algorithm::Ed25519Sha256 => {
            let rng = SystemRandom::new();
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| DkimError::Key("Ed25519 key generation failed".into()))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|_| DkimError::Key("Ed25519 key encoding".into()))?;
            Ok(Generated {
                algorithm,
                private_pkcs8: doc.as_ref().to_vec(),
                public: pair.public_key().as_ref().to_vec(),
            })
        }
    }
}

/// The TXT record to publish at `<selector>._domainkey.<domain>`.
pub fn dns_record(algorithm: Algorithm, public: &[u8]) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        algorithm.key_type(),
        B64.encode(public)
    )
}

enum Inner {
    Rsa(RsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key ready to sign.
pub struct SigningKey {
    inner: Inner,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.algorithm().as_str())
    }
}

impl SigningKey {
    pub fn from_pkcs8(algorithm: Algorithm, der: &[u8]) -> Result<SigningKey, DkimError> {
        let inner = match algorithm {
            Algorithm::RsaSha256 => Inner::Rsa(
                RsaKeyPair::from_pkcs8(der)
                    .map_err(|e| DkimError::Key(format!("RSA private key: {e}")))?,
            ),
            Algorithm::Ed25519Sha256 => Inner::Ed25519(
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|e| DkimError::Key(format!("Ed25519 private key: {e}")))?,
            ),
        };
        Ok(SigningKey { inner })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.inner {
            Inner::Rsa(_) => Algorithm::RsaSha256,
            Inner::Ed25519(_) => Algorithm::Ed25519Sha256,
        }
    }

    /// Signs the canonical header data: RSA hashes it with SHA-256 itself; Ed25519 signs its
    /// SHA-256 hash (RFC 8463 3).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, DkimError> {
        match &self.inner {
            Inner::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    data,
                    &mut sig,
                )
                .map_err(|_| DkimError::Sign)?;
                Ok(sig)
            }
            Inner::Ed25519(k) => {
                let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
                Ok(k.sign(hash.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// Checks a signature with a published key record's `p=` (base64 already decoded).
pub fn verify(
    algorithm: Algorithm,
    public: &[u8],
    data: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    match algorithm {
        Algorithm::RsaSha256 => {
            use rsa::pkcs8::DecodePublicKey;
            use rsa::traits::PublicKeyParts;
            // Published keys are SubjectPublicKeyInfo; some publishers put the bare PKCS#1 key.
            let key = rsa::RsaPublicKey::from_public_key_der(public)
                .or_else(|_| {
                    use rsa::pkcs1::DecodeRsaPublicKey;
                    rsa::RsaPublicKey::from_pkcs1_der(public)
                })
                .map_err(|e| format!("unreadable RSA public key: {e}"))?;
            let n = key.n().to_bytes_be();
            let e = key.e().to_bytes_be();
            aws_lc_rs::signature::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(
                    &aws_lc_rs::signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                    data,
                    signature,
                )
                .map_err(|_| "signature does not verify".to_string())
        }
        Algorithm::Ed25519Sha256 => {
            let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
            aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, public)
                .verify(hash.as_ref(), signature)
                .map_err(|_| "signature does not verify".to_string())
        }
    }
}
