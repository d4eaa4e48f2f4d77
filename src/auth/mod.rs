//! Authentication: one verify step in front of every signal, whatever scheme the sender uses.
//!
//! Verify, then parse: the raw body (or its canonical form) is authenticated before any field is
//! read as a signal, so an unauthenticated sender learns nothing about the schema. A request
//! names its scheme by the credentials it carries (an `X-Signature` header, or a `signature`
//! field in the body); carrying none, or those of more than one scheme, is refused. Each scheme
//! holds a [`Keyring`] of one or more active secrets, so keys can be rotated without downtime.
//! The scheme's credential fields are removed from the object once checked, so they are never
//! parsed as signal fields or published.

mod body_hmac;
mod header_hmac;
mod keyring;

pub use body_hmac::{sign_body, BODY_SIGNATURE_FIELD};
pub use header_hmac::{sign_header, SIGNATURE_HEADER};
pub use keyring::{Key, Keyring};

use axum::http::HeaderMap;
use std::fmt;

use crate::json::Object;

/// The ways a sender can prove a signal is theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Scheme {
    /// The original scheme: `signature` field = HMAC-SHA256 of the Python `json.dumps` form.
    #[serde(rename = "hmac-body")]
    BodyHmac,
    /// `X-Signature: sha256=<hex>` = HMAC-SHA256 of the raw body bytes.
    #[serde(rename = "hmac-header")]
    HeaderHmac,
}

impl Scheme {
    pub const ALL: &'static [Scheme] = &[Scheme::BodyHmac, Scheme::HeaderHmac];

    pub fn name(self) -> &'static str {
        match self {
            Scheme::BodyHmac => "hmac-body",
            Scheme::HeaderHmac => "hmac-header",
        }
    }

    pub fn from_name(name: &str) -> Option<Scheme> {
        Scheme::ALL.iter().copied().find(|s| s.name() == name)
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who authenticated a request: the scheme and the fingerprint of the key that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scheme: Scheme,
    pub key_fingerprint: String,
}

/// Why authentication failed. Always answered as 401 `invalid_signature`; the detail names the
/// reason but never anything from the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no signature: send a `signature` field or an `X-Signature: sha256=<hex>` header")]
    Missing,
    #[error("the request carries credentials of more than one scheme ({0}); send exactly one")]
    Mixed(String),
    #[error("the {0} scheme is not accepted by this receiver")]
    SchemeNotAccepted(Scheme),
    #[error("signature is not well-formed: {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
}

/// The schemes this receiver accepts and their keys.
#[derive(Clone)]
pub struct Authenticator {
    accepted: Vec<(Scheme, Keyring)>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.accepted.iter().map(|(s, k)| (s.name(), k)))
            .finish()
    }
}

impl Authenticator {
    pub fn new(accepted: Vec<(Scheme, Keyring)>) -> Authenticator {
        Authenticator { accepted }
    }

    pub fn schemes(&self) -> impl Iterator<Item = Scheme> + '_ {
        self.accepted.iter().map(|(s, _)| *s)
    }

    /// Checks the request's one credential and removes it from `object`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        raw_body: &[u8],
        object: &mut Object,
    ) -> Result<Verified, AuthError> {
        let mut claimed = Vec::with_capacity(1);
        if object.contains_key(BODY_SIGNATURE_FIELD) {
            claimed.push(Scheme::BodyHmac);
        }
        if headers.contains_key(SIGNATURE_HEADER) {
            claimed.push(Scheme::HeaderHmac);
        }
        let scheme = match claimed.as_slice() {
            [] => return Err(AuthError::Missing),
            [one] => *one,
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.name()).collect();
                return Err(AuthError::Mixed(names.join(", ")));
            }
        };
        let keyring = self
            .accepted
            .iter()
            .find(|(s, _)| *s == scheme)
            .map(|(_, k)| k)
            .ok_or(AuthError::SchemeNotAccepted(scheme))?;
        let key = match scheme {
            Scheme::BodyHmac => body_hmac::verify(keyring, object)?,
            Scheme::HeaderHmac => header_hmac::verify(keyring, headers, raw_body)?,
        };
        Ok(Verified {
            scheme,
            key_fingerprint: key.fingerprint().to_owned(),
        })
    }
}

/// Decodes a lower-case hex HMAC-SHA256 into its 32 bytes. One spelling per signature: upper
/// case is refused, as Python's `hexdigest()` and every recipe here write lower case.
fn decode_mac_hex(text: &str) -> Result<[u8; 32], AuthError> {
    let mut mac = [0u8; 32];
    if text.len() != 64 {
        return Err(AuthError::Malformed(
            "expected 64 lower-case hex characters",
        ));
    }
    if text.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(AuthError::Malformed("expected lower-case hex"));
    }
    hex::decode_to_slice(text, &mut mac).map_err(|_| AuthError::Malformed("expected hex"))?;
    Ok(mac)
}
