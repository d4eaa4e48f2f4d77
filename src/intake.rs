//! From raw request bytes to an authenticated, fresh, valid signal, in the order that keeps an
//! attacker blind: parse the JSON strictly, authenticate, then read the schema, then check the
//! timestamp. Everything here is pure (no I/O), so it is unit-tested and fuzzed directly.

use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Authenticator, ClientCertificate, Verified};
use crate::clock::Clock;
use crate::error::ApiError;
use crate::json;
use crate::signal::{IdempotencyKey, Signal};

/// A signal that passed every check and may be published.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub signal: Signal,
    pub key: IdempotencyKey,
    pub verified: Verified,
    pub received_at: DateTime<Utc>,
}

/// How far a timestamp may be from the receiver's clock.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// Maximum age.
    pub tolerance: Duration,
    /// Maximum lead ahead of the receiver's clock (clock skew).
    pub future_tolerance: Duration,
}

#[derive(Clone)]
pub struct Intake {
    authenticator: Authenticator,
    freshness: Freshness,
    clock: Arc<dyn Clock>,
}

impl Intake {
    pub fn new(
        authenticator: Authenticator,
        freshness: Freshness,
        clock: Arc<dyn Clock>,
    ) -> Intake {
        Intake {
            authenticator,
            freshness,
            clock,
        }
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    pub fn check(&self, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, ApiError> {
        self.check_with_certificate(headers, body, None)
    }

    /// [`Intake::check`] for a request whose connection presented a client certificate.
    pub fn check_with_certificate(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        cert: Option<&ClientCertificate>,
    ) -> Result<Accepted, ApiError> {
        let mut object = json::parse_object(body).map_err(ApiError::MalformedJson)?;
        let verified = self
            .authenticator
            .verify(headers, body, &mut object, cert)
            .map_err(ApiError::InvalidSignature)?;
        let signal = Signal::try_from(&object).map_err(ApiError::InvalidPayload)?;
        let received_at = self.clock.now();
        if let Some(sent_at) = verified.sender_timestamp {
            self.check_freshness(sent_at, received_at)?;
        }
        self.check_freshness(signal.timestamp().utc(), received_at)?;
        let key = IdempotencyKey::for_signal(&signal, verified.sender_message_id.as_deref());
        Ok(Accepted {
            signal,
            key,
            verified,
            received_at,
        })
    }

    fn check_freshness(&self, at: DateTime<Utc>, now: DateTime<Utc>) -> Result<(), ApiError> {
        let lead_ms = (at - now).num_milliseconds();
        let tolerance_ms = self.freshness.tolerance.as_millis() as i64;
        let future_ms = self.freshness.future_tolerance.as_millis() as i64;
        if -lead_ms > tolerance_ms {
            return Err(ApiError::StaleTimestamp {
                age_ms: -lead_ms,
                tolerance_s: self.freshness.tolerance.as_secs(),
            });
        }
        if lead_ms > future_ms {
            return Err(ApiError::FutureTimestamp {
                ahead_ms: lead_ms,
                tolerance_s: self.freshness.future_tolerance.as_secs(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{sign_body, sign_header, Key, Keyring, Scheme};
    use crate::auth::{standard_webhooks, TokenRing};
    use crate::clock::FixedClock;
    use axum::http::HeaderValue;

    const SECRET: &[u8] = b"unit-test-secret-0123456789abcdefghij";

    fn intake(now: &str) -> Intake {
        let ring = Keyring::new(vec![Key::from_bytes(SECRET)]);
        intake_with(now, Authenticator::hmac(ring))
    }

    fn intake_with(now: &str, authenticator: Authenticator) -> Intake {
        Intake::new(
            authenticator,
            Freshness {
                tolerance: Duration::from_secs(30),
                future_tolerance: Duration::from_secs(5),
            },
            Arc::new(FixedClock::new(now.parse().unwrap())),
        )
    }

    fn signed(body: &str) -> Vec<u8> {
        let mut object = json::parse_object(body.as_bytes()).unwrap();
        sign_body(&Key::from_bytes(SECRET), &mut object);
        json::to_python_bytes(&json::Value::Object(object))
    }

    const SIGNAL: &str = r#"{"ticker":"AAPL","action":"BUY","quantity":10,"order_type":"MARKET","timestamp":"2025-12-26T12:30:00Z"}"#;

    #[test]
    fn checks_run_in_order_json_auth_schema_freshness() {
        let i = intake("2025-12-26T12:30:10Z");
        let none = HeaderMap::new();
        let code = |r: Result<Accepted, ApiError>| r.map(|_| "ok").unwrap_or_else(|e| e.code());
        assert_eq!(code(i.check(&none, b"{")), "malformed_json");
        // Bad schema but unsigned: authentication is reported, not the schema.
        assert_eq!(
            code(i.check(&none, b"{\"ticker\": 5}")),
            "invalid_signature"
        );
        assert_eq!(
            code(i.check(&none, &signed(r#"{"ticker": 5}"#))),
            "invalid_payload"
        );
        assert_eq!(code(i.check(&none, &signed(SIGNAL))), "ok");
        assert_eq!(
            code(intake("2025-12-26T12:30:31Z").check(&none, &signed(SIGNAL))),
            "stale_timestamp"
        );
        assert_eq!(
            code(intake("2025-12-26T12:29:54Z").check(&none, &signed(SIGNAL))),
            "future_timestamp"
        );
        assert_eq!(
            code(intake("2025-12-26T12:30:30Z").check(&none, &signed(SIGNAL))),
            "ok"
        );
    }

    #[test]
    fn header_scheme_signs_raw_bytes_and_rejects_mixing() {
        let i = intake("2025-12-26T12:30:00Z");
        let mut headers = HeaderMap::new();
        let signature = sign_header(&Key::from_bytes(SECRET), SIGNAL.as_bytes());
        headers.insert("x-signature", HeaderValue::from_str(&signature).unwrap());
        let accepted = i.check(&headers, SIGNAL.as_bytes()).unwrap();
        assert_eq!(accepted.verified.scheme, Scheme::HeaderHmac);
        // The same header on a body that also has a signature field: mixed, refused.
        let err = i.check(&headers, &signed(SIGNAL)).unwrap_err();
        assert!(matches!(
            err,
            ApiError::InvalidSignature(crate::auth::AuthError::Mixed(_))
        ));
        // One extra space changes the raw bytes.
        let spaced = SIGNAL.replacen(':', ": ", 1);
        assert_eq!(
            i.check(&headers, spaced.as_bytes()).unwrap_err().code(),
            "invalid_signature"
        );
    }

    #[test]
    fn standard_webhooks_checks_its_timestamp_and_keys_by_message_id() {
        let key = Key::from_bytes(b"0123456789abcdef01234567");
        let authenticator = Authenticator::new(&[Scheme::StandardWebhooks])
            .with_standard_webhooks(Keyring::new(vec![key.clone()]));
        let i = intake_with("2025-12-26T12:30:00Z", authenticator);
        let at = |seconds: i64, id: &str| {
            let mut headers = HeaderMap::new();
            for (name, value) in standard_webhooks::sign(&key, id, seconds, SIGNAL.as_bytes()) {
                headers.insert(name, HeaderValue::from_str(&value).unwrap());
            }
            i.check(&headers, SIGNAL.as_bytes())
        };
        let now = 1_766_752_200; // 2025-12-26T12:30:00Z
        let a = at(now, "msg_1").unwrap();
        let b = at(now, "msg_2").unwrap();
        assert_eq!(a.verified.sender_message_id.as_deref(), Some("msg_1"));
        assert_ne!(a.key, b.key, "webhook-id joins the idempotency key");
        assert_eq!(at(now - 31, "msg_1").unwrap_err().code(), "stale_timestamp");
        assert_eq!(at(now + 6, "msg_1").unwrap_err().code(), "future_timestamp");
    }

    #[test]
    fn token_scheme_consumes_its_field_and_refuses_mixing() {
        let token = b"tradingview-token-0123456789abcdef";
        let authenticator = Authenticator::new(&[Scheme::Token, Scheme::BodyHmac])
            .with_token(TokenRing::new("passphrase", &[token]))
            .with_hmac(Keyring::new(vec![Key::from_bytes(SECRET)]));
        let i = intake_with("2025-12-26T12:30:00Z", authenticator);
        let with_token = SIGNAL.replacen(
            '{',
            "{\"passphrase\":\"tradingview-token-0123456789abcdef\",",
            1,
        );
        let accepted = i.check(&HeaderMap::new(), with_token.as_bytes()).unwrap();
        assert_eq!(accepted.verified.scheme, Scheme::Token);
        let wrong = with_token.replace("abcdef\"", "abcdeF\"");
        assert_eq!(
            i.check(&HeaderMap::new(), wrong.as_bytes())
                .unwrap_err()
                .code(),
            "invalid_signature"
        );
        // A token plus a signature: two schemes at once.
        let mut object = json::parse_object(with_token.as_bytes()).unwrap();
        sign_body(&Key::from_bytes(SECRET), &mut object);
        let both = json::to_python_bytes(&json::Value::Object(object));
        assert!(matches!(
            i.check(&HeaderMap::new(), &both),
            Err(ApiError::InvalidSignature(crate::auth::AuthError::Mixed(_)))
        ));
    }

    #[test]
    fn a_scheme_not_accepted_is_refused_even_when_valid() {
        let ring = Keyring::new(vec![Key::from_bytes(SECRET)]);
        let i = intake_with(
            "2025-12-26T12:30:00Z",
            Authenticator::new(&[Scheme::HeaderHmac]).with_hmac(ring),
        );
        let err = i.check(&HeaderMap::new(), &signed(SIGNAL)).unwrap_err();
        assert!(matches!(
            err,
            ApiError::InvalidSignature(crate::auth::AuthError::SchemeNotAccepted(Scheme::BodyHmac))
        ));
    }
}
