//! The message consumers read from the stream: the contract documented in the README.
//!
//! Schema version 1. Decimals are strings (exact), enums upper-case, times RFC 3339 UTC. The
//! signature and any other credential never appear here.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{IdempotencyKey, Signal};
use crate::auth::Verified;

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
            received_at: received_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            correlation_id,
            idempotency_key: key.as_str(),
            auth: AuthRecord {
                scheme: verified.scheme.name(),
                key: &verified.key_fingerprint,
            },
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // A message is 400 to 700 bytes: one allocation instead of growing from 128.
        let mut out = Vec::with_capacity(768);
        // Serializing plain strings and numbers into a Vec cannot fail.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
        }
        out
    }
}
