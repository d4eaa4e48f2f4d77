//! The message consumers read from the stream: the contract documented in the README.
//!
//! Schema version 1. Decimals are strings (exact), enums upper-case, times RFC 3339 UTC. The
//! signature and any other credential never appear here.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{IdempotencyKey, Signal};
use crate::auth::Verified;
use crate::json::ObjectWriter;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct SignalMessage<'a> {
    pub schema_version: u32,
    pub ticker: &'a str,
    pub action: &'static str,
    pub quantity: &'a str,
    pub order_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit_price: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_price: Option<&'a str>,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<&'a str>,
    pub received_at: String,
    pub correlation_id: &'a str,
    pub idempotency_key: &'a str,
    pub auth: AuthRecord<'a>,
}

/// Which scheme and key authenticated the signal (a fingerprint, never the key).
#[derive(Debug, Serialize)]
pub struct AuthRecord<'a> {
    pub scheme: &'static str,
    pub key: &'a str,
}

impl<'a> SignalMessage<'a> {
    pub fn new(
        signal: &'a Signal,
        key: &'a IdempotencyKey,
        verified: &'a Verified,
        received_at: DateTime<Utc>,
        correlation_id: &'a str,
    ) -> SignalMessage<'a> {
        SignalMessage {
            schema_version: SCHEMA_VERSION,
            ticker: signal.ticker().as_str(),
            action: signal.action().as_str(),
            quantity: signal.quantity().as_str(),
            order_type: signal.order().type_name(),
            limit_price: signal.order().limit_price().map(|d| d.as_str()),
            stop_price: signal.order().stop_price().map(|d| d.as_str()),
            timestamp: signal.timestamp().to_rfc3339(),
            order_id: signal.order_id(),
            strategy: signal.strategy(),
            price: signal.price().map(|d| d.as_str()),
            comment: signal.comment(),
            received_at: crate::rfc3339::utc(&received_at, SecondsFormat::Micros),
            correlation_id,
            idempotency_key: key.as_str(),
            auth: AuthRecord {
                scheme: verified.scheme.name(),
                key: &verified.key_fingerprint,
            },
        }
    }

    /// The message as `serde_json::to_vec` writes it (a test compares the two), written directly.
    pub fn to_bytes(&self) -> Vec<u8> {
        // A message is 400 to 700 bytes: one allocation instead of growing from 128.
        let mut out = Vec::with_capacity(768);
        let mut object = ObjectWriter::new(&mut out);
        object
            .u64("schema_version", u64::from(self.schema_version))
            .str("ticker", self.ticker)
            .str("action", self.action)
            .str("quantity", self.quantity)
            .str("order_type", self.order_type)
            .opt_str("limit_price", self.limit_price)
            .opt_str("stop_price", self.stop_price)
            .str("timestamp", &self.timestamp)
            .opt_str("order_id", self.order_id)
            .opt_str("strategy", self.strategy)
            .opt_str("price", self.price)
            .opt_str("comment", self.comment)
            .str("received_at", &self.received_at)
            .str("correlation_id", self.correlation_id)
            .str("idempotency_key", self.idempotency_key);
        let auth = object.raw_key("auth");
        ObjectWriter::new(auth)
            .str("scheme", self.auth.scheme)
            .str("key", self.auth.key)
            .end();
        object.end();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_bytes_is_what_serde_json_writes() {
        let full = SignalMessage {
            schema_version: SCHEMA_VERSION,
            ticker: "BRK.B",
            action: "BUY",
            quantity: "10.5",
            order_type: "LIMIT",
            limit_price: Some("1.25"),
            stop_price: Some("1"),
            timestamp: "2024-01-01T00:00:00+00:00".into(),
            order_id: Some("id \"1\"\n\\"),
            strategy: Some("é€😀\u{1}"),
            price: Some("3"),
            comment: Some(""),
            received_at: "2024-01-01T00:00:00.000001Z".into(),
            correlation_id: "c",
            idempotency_key: "k",
            auth: AuthRecord {
                scheme: "hmac-body",
                key: "abcd",
            },
        };
        assert_eq!(
            String::from_utf8(full.to_bytes()).unwrap(),
            serde_json::to_string(&full).unwrap()
        );
        let sparse = SignalMessage {
            limit_price: None,
            stop_price: None,
            order_id: None,
            strategy: None,
            price: None,
            comment: None,
            ..full
        };
        assert_eq!(
            String::from_utf8(sparse.to_bytes()).unwrap(),
            serde_json::to_string(&sparse).unwrap()
        );
    }
}
