//! The whole request-body pipeline, `Intake::check` (strict JSON, authentication, schema,
//! freshness), with fixed keys for every scheme a request can carry (`hmac-body`, `hmac-header`,
//! `standard-webhooks`, `token` in the field `passphrase`) and a pinned clock.
//!
//! The first input byte chooses the headers: 0 = none (credentials, if any, are in the body);
//! 1 = a correct `X-Signature` over the raw body (so raw bytes reach the schema); 2 = an
//! `X-Signature` made of the next 64 bytes; 3 = correct Standard Webhooks headers over the raw
//! body, timestamped at the pinned "now"; 4 = the three `webhook-*` headers taken from the input
//! (up to three NUL-terminated values). The rest is the body. When the body is a JSON object it is
//! also signed correctly with the in-body scheme (any token field removed) and checked again, so
//! the schema and freshness layers are reached whatever the fuzzer invents.
//!
//! Properties: no panic; every error is a 4xx with a stable code that never quotes a secret; a
//! correctly signed object is never refused as malformed or unauthenticated, nor is a correct
//! header over a body without other credentials; an accepted signal is fresh, has a one-token
//! subject, serializes to JSON without credentials, and checking it again gives the same
//! idempotency key.

#![no_main]

use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tv_ingress::auth::{
    sign_body, sign_header, standard_webhooks, Authenticator, Key, Keyring, Scheme, TokenRing,
};
use tv_ingress::error::ApiError;
use tv_ingress::intake::{Accepted, Freshness, Intake};
use tv_ingress::json::{self, Value};
use tv_ingress::signal::SignalMessage;
use tv_ingress::FixedClock;

/// The HMAC secret the seeds in `fuzz/seeds/pipeline` are signed with.
const SECRET: &[u8] = b"fuzz-secret-0123456789abcdef0123456789";
/// The Standard Webhooks secret (24 to 64 bytes).
const SW_SECRET: &[u8] = b"fuzz-standard-webhooks-secret-0123";
/// The token scheme's field and token.
const TOKEN_FIELD: &str = "passphrase";
const TOKEN: &[u8] = b"fuzz-token-0123456789abcdef0123456789";
/// "Now" for the freshness check; the seeds' timestamps are near it.
const NOW: &str = "2025-12-26T12:30:10Z";
const NOW_SECONDS: i64 = 1_766_752_210;

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| Key::from_bytes(SECRET))
}

fn sw_key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| Key::from_bytes(SW_SECRET))
}

fn intake() -> &'static Intake {
    static INTAKE: OnceLock<Intake> = OnceLock::new();
    INTAKE.get_or_init(|| {
        Intake::new(
            Authenticator::new(&[
                Scheme::BodyHmac,
                Scheme::HeaderHmac,
                Scheme::StandardWebhooks,
                Scheme::Token,
            ])
            .with_hmac(Keyring::new(vec![key().clone()]))
            .with_standard_webhooks(Keyring::new(vec![sw_key().clone()]))
            .with_token(TokenRing::new(TOKEN_FIELD, &[TOKEN])),
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
            // The answer's text must never quote a secret.
            let text = e.to_string();
            assert!(!text.contains("fuzz-secret") && !text.contains("fuzz-token"));
            assert!(!text.contains("fuzz-standard-webhooks"));
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
            assert!(published.get(TOKEN_FIELD).is_none());
            // Checking the same request again names the same signal.
            let again = intake().check(headers, body).expect("accepted twice");
            assert_eq!(again.key, accepted.key);
        }
    }
    result
}

fn insert(headers: &mut HeaderMap, name: &'static str, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.append(name, value);
    }
}

fuzz_target!(|data: &[u8]| {
    let (mode, rest) = data.split_first().unwrap_or((&0, &[]));
    let mode = mode % 5;
    let mut headers = HeaderMap::new();
    let body = match mode {
        1 => {
            insert(
                &mut headers,
                "x-signature",
                sign_header(key(), rest).as_bytes(),
            );
            rest
        }
        2 if rest.len() >= 64 => {
            let (signature, body) = rest.split_at(64);
            insert(
                &mut headers,
                "x-signature",
                &[b"sha256=", signature].concat(),
            );
            body
        }
        3 => {
            for (name, value) in standard_webhooks::sign(sw_key(), "msg_fuzz", NOW_SECONDS, rest) {
                insert(&mut headers, name, value.as_bytes());
            }
            rest
        }
        4 => {
            let mut body = rest;
            for name in standard_webhooks::HEADERS {
                match body.iter().position(|&b| b == 0) {
                    Some(end) => {
                        insert(&mut headers, name, &body[..end]);
                        body = &body[end + 1..];
                    }
                    None => break,
                }
            }
            body
        }
        _ => rest,
    };
    let first = check(&headers, body);
    if matches!(mode, 1 | 3) {
        if let Err(e @ ApiError::InvalidSignature(_)) = &first {
            // A correct header only fails when the body carries credentials of its own.
            let object = json::parse_object(body).expect("authentication ran, so it parsed");
            assert!(
                object.contains_key("signature") || object.contains_key(TOKEN_FIELD),
                "{e:?}"
            );
        }
    }

    // The same object signed correctly in the body reaches the schema and freshness checks.
    if let Ok(mut object) = json::parse_object(body) {
        object.remove(TOKEN_FIELD);
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
