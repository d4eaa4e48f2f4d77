//! The opt-in token scheme for TradingView direct: the alert message carries a secret field
//! (`passphrase` by default), compared in constant time and removed before publishing.
//!
//! This is weaker than a signature: anyone who can read the alert's text (a shared chart, a
//! screenshot, TradingView's alert log) has the token, and nothing binds it to the payload. It is
//! what TradingView allows; pair it with `ALLOWED_SOURCES=tradingview`.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keyring::fingerprint;
use super::AuthError;
use crate::json::{Object, Value};

/// One accepted token, kept only as its digest.
#[derive(Clone)]
struct Token {
    digest: [u8; 32],
    fingerprint: String,
}

/// The accepted tokens and the body field that carries one.
#[derive(Clone)]
pub struct TokenRing {
    field: String,
    tokens: Vec<Token>,
}

impl std::fmt::Debug for TokenRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRing")
            .field("field", &self.field)
            .field(
                "keys",
                &self
                    .tokens
                    .iter()
                    .map(|t| &t.fingerprint)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl TokenRing {
    pub fn new(field: impl Into<String>, tokens: &[&[u8]]) -> TokenRing {
        TokenRing {
            field: field.into(),
            tokens: tokens
                .iter()
                .map(|t| Token {
                    digest: Sha256::digest(t).into(),
                    fingerprint: fingerprint(t),
                })
                .collect(),
        }
    }

    pub fn field(&self) -> &str {
        &self.field
    }

    /// Checks the token field and removes it; returns the matching token's fingerprint.
    pub(super) fn verify(&self, object: &mut Object) -> Result<String, AuthError> {
        let candidate = match object.get(&self.field) {
            Some(Value::String(text)) => Sha256::digest(text.as_bytes()),
            _ => return Err(AuthError::Malformed("the token field must be a string")),
        };
        // Digests have one length, so the comparison time does not depend on the guess.
        let mut found = None;
        for token in &self.tokens {
            if bool::from(token.digest.ct_eq(candidate.as_slice())) && found.is_none() {
                found = Some(token.fingerprint.clone());
            }
        }
        let fingerprint = found.ok_or(AuthError::Mismatch)?;
        object.remove(&self.field);
        Ok(fingerprint)
    }
}
