//! Authentication: one verify step in front of every signal, whatever scheme the sender uses.
//!
//! Verify, then parse: the raw body (or its canonical form) is authenticated before any field is
//! read as a signal, so an unauthenticated sender learns nothing about the schema. A request
//! names its scheme by the credentials it carries (a `signature` field, an `X-Signature` header,
//! `webhook-*` headers, or the token field); carrying none, or those of more than one scheme, is
//! refused, as is a scheme this receiver does not accept (`AUTH_SCHEMES`). Each scheme holds one
//! or more active secrets, so keys can be rotated without a rejected signal.
//! The scheme's credential fields are removed from the object once checked, so they are never
//! parsed as signal fields or published.

mod body_hmac;
pub mod client_cert;
mod header_hmac;
mod keyring;
pub mod standard_webhooks;
mod token;

pub use body_hmac::{canonical_form, sign_body, BODY_SIGNATURE_FIELD};
pub use client_cert::{CertExpectation, ClientCertificate};
pub use header_hmac::{sign_header, SIGNATURE_HEADER};
pub use keyring::{fingerprint, Key, Keyring};
pub use token::TokenRing;

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use std::fmt;

use crate::json::Object;

/// The ways a sender can prove a signal is theirs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// The original scheme: `signature` field = HMAC-SHA256 of the Python `json.dumps` form.
    BodyHmac,
    /// `X-Signature: sha256=<hex>` = HMAC-SHA256 of the raw body bytes.
    HeaderHmac,
    /// Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    StandardWebhooks,
    /// A shared token in a body field: the only thing TradingView itself can send. Opt-in.
    Token,
    /// TradingView's TLS client certificate (HTTPS only, or via a trusted proxy). Opt-in.
    TradingViewCert,
}

impl Scheme {
    pub const ALL: &'static [Scheme] = &[
        Scheme::BodyHmac,
        Scheme::HeaderHmac,
        Scheme::StandardWebhooks,
        Scheme::Token,
        Scheme::TradingViewCert,
    ];

    /// Accepted when `AUTH_SCHEMES` is not set: the schemes that sign the payload.
    pub const DEFAULT: &'static [Scheme] = &[Scheme::BodyHmac, Scheme::HeaderHmac];

    pub fn name(self) -> &'static str {
        match self {
            Scheme::BodyHmac => "hmac-body",
            Scheme::HeaderHmac => "hmac-header",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Token => "token",
            Scheme::TradingViewCert => "tradingview-cert",
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

/// Who authenticated a request, and what the scheme itself said about the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub scheme: Scheme,
    /// Fingerprint of the key that matched (never the key).
    pub key_fingerprint: String,
    /// The sender's own message id (`webhook-id`), which joins the idempotency key.
    pub sender_message_id: Option<String>,
    /// The sender's signed timestamp (`webhook-timestamp`), checked for freshness too.
    pub sender_timestamp: Option<DateTime<Utc>>,
}

impl Verified {
    fn by(scheme: Scheme, key_fingerprint: String) -> Verified {
        Verified {
            scheme,
            key_fingerprint,
            sender_message_id: None,
            sender_timestamp: None,
        }
    }
}

/// Why authentication failed. Always answered as 401 `invalid_signature`; the detail names the
/// reason but never anything from the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: this receiver accepts {0}")]
    Missing(String),
    #[error("the request carries credentials of more than one scheme ({0}); send exactly one")]
    Mixed(String),
    #[error("the {0} scheme is not accepted by this receiver")]
    SchemeNotAccepted(Scheme),
    #[error("credentials are not well-formed: {0}")]
    Malformed(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("client certificate not accepted: {0}")]
    Certificate(String),
}

/// The accepted schemes and their keys.
#[derive(Clone, Default)]
pub struct Authenticator {
    accepted: Vec<Scheme>,
    hmac: Option<Keyring>,
    standard_webhooks: Option<Keyring>,
    token: Option<TokenRing>,
    client_cert: Option<CertExpectation>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("accepted", &self.accepted)
            .field("hmac", &self.hmac)
            .field("standard_webhooks", &self.standard_webhooks)
            .field("token", &self.token)
            .field("client_cert", &self.client_cert)
            .finish()
    }
}

impl Authenticator {
    /// Accepts `hmac-body` and `hmac-header` with `ring`.
    pub fn hmac(ring: Keyring) -> Authenticator {
        Authenticator {
            accepted: Scheme::DEFAULT.to_vec(),
            hmac: Some(ring),
            ..Authenticator::default()
        }
    }

    /// Accepts exactly `schemes`; each needs its keys set with the `with_*` methods.
    pub fn new(schemes: &[Scheme]) -> Authenticator {
        Authenticator {
            accepted: schemes.to_vec(),
            ..Authenticator::default()
        }
    }

    pub fn with_hmac(mut self, ring: Keyring) -> Authenticator {
        self.hmac = Some(ring);
        self
    }

    pub fn with_standard_webhooks(mut self, ring: Keyring) -> Authenticator {
        self.standard_webhooks = Some(ring);
        self
    }

    pub fn with_token(mut self, ring: TokenRing) -> Authenticator {
        self.token = Some(ring);
        self
    }

    pub fn with_client_cert(mut self, expectation: CertExpectation) -> Authenticator {
        self.client_cert = Some(expectation);
        self
    }

    pub fn schemes(&self) -> impl Iterator<Item = Scheme> + '_ {
        self.accepted.iter().copied()
    }

    pub fn accepts(&self, scheme: Scheme) -> bool {
        self.accepted.contains(&scheme)
    }

    /// The schemes whose credentials the request carries.
    fn claimed(&self, headers: &HeaderMap, object: &Object) -> Vec<Scheme> {
        let mut claimed = Vec::with_capacity(1);
        if object.contains_key(BODY_SIGNATURE_FIELD) {
            claimed.push(Scheme::BodyHmac);
        }
        if headers.contains_key(SIGNATURE_HEADER) {
            claimed.push(Scheme::HeaderHmac);
        }
        if standard_webhooks::HEADERS
            .iter()
            .any(|h| headers.contains_key(*h))
        {
            claimed.push(Scheme::StandardWebhooks);
        }
        if let Some(token) = &self.token {
            if object.contains_key(token.field()) {
                claimed.push(Scheme::Token);
            }
        }
        claimed
    }

    /// Checks the request's one credential and removes it from `object`. `cert` is the client
    /// certificate of the connection (or reported by a trusted proxy), used only when the
    /// request itself carries no credential.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        raw_body: &[u8],
        object: &mut Object,
        cert: Option<&ClientCertificate>,
    ) -> Result<Verified, AuthError> {
        let scheme = match self.claimed(headers, object).as_slice() {
            [] => return self.verify_certificate(cert),
            [one] => *one,
            many => {
                let names: Vec<&str> = many.iter().map(|s| s.name()).collect();
                return Err(AuthError::Mixed(names.join(", ")));
            }
        };
        if !self.accepts(scheme) {
            return Err(AuthError::SchemeNotAccepted(scheme));
        }
        let not_configured = AuthError::SchemeNotAccepted(scheme);
        match scheme {
            Scheme::BodyHmac => {
                let ring = self.hmac.as_ref().ok_or(not_configured)?;
                let key = body_hmac::verify(ring, object)?;
                Ok(Verified::by(scheme, key.fingerprint().to_owned()))
            }
            Scheme::HeaderHmac => {
                let ring = self.hmac.as_ref().ok_or(not_configured)?;
                let key = header_hmac::verify(ring, headers, raw_body)?;
                Ok(Verified::by(scheme, key.fingerprint().to_owned()))
            }
            Scheme::StandardWebhooks => {
                let ring = self.standard_webhooks.as_ref().ok_or(not_configured)?;
                let v = standard_webhooks::verify(ring, headers, raw_body)?;
                Ok(Verified {
                    scheme,
                    key_fingerprint: v.key.fingerprint().to_owned(),
                    sender_message_id: Some(v.id),
                    sender_timestamp: Some(v.timestamp),
                })
            }
            Scheme::Token => {
                let ring = self.token.as_ref().ok_or(not_configured)?;
                let fingerprint = ring.verify(object)?;
                Ok(Verified::by(scheme, fingerprint))
            }
            // Never claimed by request contents; see verify_certificate.
            Scheme::TradingViewCert => Err(not_configured),
        }
    }

    /// A request without credentials of its own: the connection's certificate, if accepted.
    fn verify_certificate(&self, cert: Option<&ClientCertificate>) -> Result<Verified, AuthError> {
        let missing = || {
            let names: Vec<&str> = self.accepted.iter().map(|s| s.name()).collect();
            AuthError::Missing(names.join(", "))
        };
        let (Some(expectation), true) = (&self.client_cert, self.accepts(Scheme::TradingViewCert))
        else {
            return Err(missing());
        };
        let cert = cert.ok_or_else(missing)?;
        cert.verified.clone().map_err(AuthError::Certificate)?;
        if !expectation.matches(cert) {
            let subject_only =
                cert.via == "proxy" && cert.emails.is_empty() && !expectation.emails.is_empty();
            return Err(AuthError::Certificate(if subject_only {
                "the proxy reported only the subject, so the expected alternative name cannot be checked: pass the certificate in X-SSL-Client-Cert".into()
            } else {
                "its subject or alternative name is not the expected one".into()
            }));
        }
        Ok(Verified::by(
            Scheme::TradingViewCert,
            cert.fingerprint.clone(),
        ))
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
