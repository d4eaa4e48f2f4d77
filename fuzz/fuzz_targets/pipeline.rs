//! The whole request-body pipeline, `Intake::check` (strict JSON, authentication, schema,
//! freshness), with a fixed key and a pinned clock.
//!
//! The first input byte chooses the credentials: 0 = whatever the body carries; 1 = a correct
//! `X-Signature` header over the raw body (so the raw bytes reach the schema); 2 = an
//! `X-Signature` header made of the next 64 bytes. The rest is the body. When the body is a JSON
//! object it is also signed correctly with the in-body scheme and checked again, so the schema
//! and freshness layers are reached whatever the fuzzer invents.
//!
//! Properties: no panic; every error is a 4xx with a stable code; a correctly signed object is
//! never refused as malformed or unauthenticated; an accepted signal is fresh, has a one-token
//! subject, serializes to JSON, and checking it again gives the same idempotency key.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tv_ingress::auth::{sign_body, sign_header, Authenticator, Key, Keyring, Scheme};
use tv_ingress::error::ApiError;
use tv_ingress::intake::{Accepted, Freshness, Intake};
use tv_ingress::json::{self, Value};
use tv_ingress::signal::SignalMessage;
use tv_ingress::FixedClock;

/// The secret the seeds in `fuzz/seeds/pipeline` are signed with.
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef0123456789";
/// "Now" for the freshness check; the seeds' timestamps are near it.
const NOW: &str = "2025-12-26T12:30:10Z";

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| Key::from_bytes(SECRET))
}

fn intake() -> &'static Intake {
    static INTAKE: OnceLock<Intake> = OnceLock::new();
    INTAKE.get_or_init(|| {
        let ring = Keyring::new(vec![key().clone()]);
        Intake::new(
            Authenticator::new(vec![
                (Scheme::BodyHmac, ring.clone()),
                (Scheme::HeaderHmac, ring),
            ]),
            Freshness {
                tolerance: Duration::from_secs(30),
                future_tolerance: Duration::from_secs(5),
            },
            Arc::new(FixedClock::new(NOW.parse().unwrap())),
        )
    })
}

/// Checks one request and the properties every answer must have.
fn check(headers: &HeaderMap, body: &[u8]) -> Result<Accepted, ApiError> {
    let result = intake().check(headers, body);
    match &result {
        Err(e) => {
            assert!(e.status().is_client_error(), "{} for {e:?}", e.status());
            assert!(!e.code().is_empty());
            // The answer's text must never quote the secret.
            assert!(!e.to_string().contains("fuzz-secret"));
        }
        Ok(accepted) => {
            let now: chrono::DateTime<chrono::Utc> = NOW.parse().unwrap();
            let lead = accepted.signal.timestamp().utc() - now;
            assert!(lead.num_milliseconds() >= -30_000 && lead.num_milliseconds() <= 5_000);
            let token = accepted.signal.ticker().subject_token();
            assert!(!token.is_empty());
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            let message = SignalMessage::new(
                &accepted.signal,
                &accepted.key,
                &accepted.verified,
                accepted.received_at,
                "fuzz",
            )
            .to_bytes();
            let published: serde_json::Value =
                serde_json::from_slice(&message).expect("published message is JSON");
            assert!(published.get("signature").is_none());
            // Checking the same request again names the same signal.
            let again = intake().check(headers, body).expect("accepted twice");
            assert_eq!(again.key, accepted.key);
        }
    }
    result
}

fuzz_target!(|data: &[u8]| {
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut headers = HeaderMap::new();
    let body = match mode % 3 {
        1 => {
            let value = sign_header(key(), rest);
            headers.insert("x-signature", HeaderValue::from_str(&value).unwrap());
            rest
        }
        2 if rest.len() >= 64 => {
            let (signature, body) = rest.split_at(64);
            let mut value = b"sha256=".to_vec();
            value.extend_from_slice(signature);
            if let Ok(value) = HeaderValue::from_bytes(&value) {
                headers.insert("x-signature", value);
            }
            body
        }
        _ => rest,
    };
    let first = check(&headers, body);
    if mode % 3 == 1 {
        if let Err(e @ ApiError::InvalidSignature(_)) = &first {
            // A correct header only fails when the body also carries a signature field.
            let object = json::parse_object(body).expect("authentication ran, so it parsed");
            assert!(object.contains_key("signature"), "{e:?}");
        }
    }

    // The same object signed correctly in the body reaches the schema and freshness checks.
    if let Ok(mut object) = json::parse_object(body) {
        sign_body(key(), &mut object);
        let signed = json::to_python_bytes(&Value::Object(object));
        match check(&HeaderMap::new(), &signed) {
            Err(e @ (ApiError::MalformedJson(_) | ApiError::InvalidSignature(_))) => {
                panic!("a correctly signed object was refused: {e:?}")
            }
            _ => {}
        }
    }
});
