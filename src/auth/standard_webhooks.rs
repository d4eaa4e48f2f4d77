//! Standard Webhooks (standardwebhooks.com): `webhook-id`, `webhook-timestamp` (Unix seconds) and
//! `webhook-signature` (space-separated `v1,<base64 HMAC-SHA256>` entries) over
//! `"{id}.{timestamp}.{body}"`, with `whsec_`-prefixed base64 secrets. The timestamp is checked
//! with the receiver's tolerances (by the intake, after the signature), and the id joins the
//! idempotency key, so a sender's retry of one message is one signal.

use axum::http::HeaderMap;
use base64::Engine;
use chrono::{DateTime, Utc};

use super::{AuthError, Key, Keyring};

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
pub const HEADERS: [&str; 3] = [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER];

/// Longest accepted `webhook-id`.
const MAX_ID_LEN: usize = 256;
/// Most signatures looked at in one header (several keys during a sender's rotation).
const MAX_SIGNATURES: usize = 8;

/// Decoded key length the specification allows (24 to 64 bytes).
pub const KEY_BYTES: std::ops::RangeInclusive<usize> = 24..=64;

/// Decodes a `whsec_<base64>` secret (the prefix is optional, as in the reference library).
pub fn decode_secret(secret: &str) -> Result<Vec<u8>, String> {
    let b64 = secret.strip_prefix("whsec_").unwrap_or(secret);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "must be whsec_ followed by base64".to_string())?;
    if !KEY_BYTES.contains(&bytes.len()) {
        return Err(format!(
            "must decode to {} to {} bytes, got {}",
            KEY_BYTES.start(),
            KEY_BYTES.end(),
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// What a verified Standard Webhooks request says about itself.
pub(super) struct Verified<'k> {
    pub key: &'k Key,
    pub id: String,
    pub timestamp: DateTime<Utc>,
}

fn one_header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, AuthError> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .map_err(|_| AuthError::Malformed("webhook-* headers must be ASCII")),
        (None, _) => Err(AuthError::Malformed(
            "Standard Webhooks needs webhook-id, webhook-timestamp and webhook-signature",
        )),
        _ => Err(AuthError::Malformed("send each webhook-* header once")),
    }
}

pub(super) fn verify<'k>(
    keyring: &'k Keyring,
    headers: &HeaderMap,
    raw_body: &[u8],
) -> Result<Verified<'k>, AuthError> {
    let id = one_header(headers, ID_HEADER)?;
    let timestamp_text = one_header(headers, TIMESTAMP_HEADER)?;
    let signatures = one_header(headers, SIGNATURE_HEADER)?;
    if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AuthError::Malformed(
            "webhook-id must be 1-256 printable characters",
        ));
    }
    let seconds: i64 = timestamp_text
        .parse()
        .map_err(|_| AuthError::Malformed("webhook-timestamp must be Unix seconds"))?;
    let timestamp = DateTime::<Utc>::from_timestamp(seconds, 0)
        .ok_or(AuthError::Malformed("webhook-timestamp is out of range"))?;

    let engine = base64::engine::general_purpose::STANDARD;
    let candidates: Vec<Vec<u8>> = signatures
        .split(' ')
        .filter(|s| !s.is_empty())
        .take(MAX_SIGNATURES)
        .filter_map(|s| s.split_once(','))
        .filter(|(version, _)| *version == "v1")
        .filter_map(|(_, b64)| engine.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(AuthError::Malformed(
            "webhook-signature has no v1,<base64> entry",
        ));
    }
    let prefix = format!("{id}.{seconds}.");
    let key = candidates
        .iter()
        .find_map(|mac| keyring.find(&[prefix.as_bytes(), raw_body], mac))
        .ok_or(AuthError::Mismatch)?;
    Ok(Verified {
        key,
        id: id.to_owned(),
        timestamp,
    })
}

/// The three headers for `body`, signed with `key` (for tools and tests).
pub fn sign(key: &Key, id: &str, seconds: i64, body: &[u8]) -> [(&'static str, String); 3] {
    let prefix = format!("{id}.{seconds}.");
    let mac = key.sign(&[prefix.as_bytes(), body]);
    [
        (ID_HEADER, id.to_owned()),
        (TIMESTAMP_HEADER, seconds.to_string()),
        (
            SIGNATURE_HEADER,
            format!(
                "v1,{}",
                base64::engine::general_purpose::STANDARD.encode(mac)
            ),
        ),
    ]
}
