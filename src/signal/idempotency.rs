//! The idempotency key: which signal this is, independent of how it was spelled or sent.
//!
//! It is the `Nats-Msg-Id` of the published message, so JetStream's duplicate window, shared by
//! every replica, is what rejects a resend. The key covers ticker, action, the timestamp as an
//! instant (so `...Z` and `...+00:00` of one moment give one key), `order_id` and `strategy` when
//! present (so two strategies firing on the same bar are two signals), and a sender's own message
//! id when its scheme has one. Fields are length-prefixed before hashing, so no two different
//! field lists can produce the same input.

use sha2::{Digest, Sha256};
use std::fmt;

use super::Signal;

/// 128 bits of SHA-256, as 32 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn for_signal(signal: &Signal, sender_message_id: Option<&str>) -> IdempotencyKey {
        let timestamp = signal.timestamp().to_rfc3339();
        let fields: [Option<&str>; 6] = [
            Some(signal.ticker().as_str()),
            Some(signal.action().as_str()),
            Some(&timestamp),
            signal.order_id(),
            signal.strategy(),
            sender_message_id,
        ];
        let mut hash = Sha256::new();
        hash.update(b"tv-ingress idempotency v1");
        for field in fields {
            match field {
                Some(text) => {
                    hash.update([1u8]);
                    hash.update((text.len() as u64).to_be_bytes());
                    hash.update(text.as_bytes());
                }
                None => hash.update([0u8]),
            }
        }
        IdempotencyKey(lower_hex(&hash.finalize()[..16]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `hex::encode` returns, without collecting an iterator of chars.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
    out
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    #[test]
    fn lower_hex_is_hex_encode() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
        assert_eq!(lower_hex(&[]), "");
    }

    fn key(extra: &str, timestamp: &str) -> IdempotencyKey {
        let body = format!(
            r#"{{"ticker":"AAPL","action":"BUY","quantity":1,"order_type":"MARKET","timestamp":"{timestamp}"{extra}}}"#
        );
        let signal = Signal::try_from(&parse_object(body.as_bytes()).unwrap()).unwrap();
        IdempotencyKey::for_signal(&signal, None)
    }

    #[test]
    fn one_instant_gives_one_key_whatever_the_spelling() {
        let z = key("", "2025-12-26T12:30:00Z");
        assert_eq!(z, key("", "2025-12-26T12:30:00+00:00"));
        assert_eq!(z, key("", "2025-12-26T12:30:00.000Z"));
        assert_eq!(z, key("", "2025-12-26T07:30:00-05:00"));
        assert_eq!(z.as_str().len(), 32);
        assert!(z.as_str().bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn distinct_signals_get_distinct_keys() {
        let base = key("", "2025-12-26T12:30:00Z");
        for other in [
            key("", "2025-12-26T12:30:00.001Z"),
            key(r#","order_id":"a""#, "2025-12-26T12:30:00Z"),
            key(r#","strategy":"a""#, "2025-12-26T12:30:00Z"),
        ] {
            assert_ne!(base, other);
        }
        // The quantity is not part of a signal's identity: a resend is the same signal.
        assert_eq!(base, key(r#","price":5"#, "2025-12-26T12:30:00Z"));
        // Length prefixes: moving text between fields changes the key.
        assert_ne!(
            key(r#","order_id":"ab""#, "2025-12-26T12:30:00Z"),
            key(r#","order_id":"a","strategy":"b""#, "2025-12-26T12:30:00Z")
        );
    }
}
