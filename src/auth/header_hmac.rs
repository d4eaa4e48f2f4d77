//! The header scheme: `X-Signature: sha256=<hex>`, HMAC-SHA256 over the raw body bytes exactly as
//! received. The body then carries no `signature` field.

use axum::http::HeaderMap;

use super::{decode_mac_hex, AuthError, Key, Keyring};

pub const SIGNATURE_HEADER: &str = "x-signature";

pub(super) fn verify<'k>(
    keyring: &'k Keyring,
    headers: &HeaderMap,
    raw_body: &[u8],
) -> Result<&'k Key, AuthError> {
    let mut values = headers.get_all(SIGNATURE_HEADER).iter();
    let value = match (values.next(), values.next()) {
        (Some(v), None) => v,
        _ => return Err(AuthError::Malformed("send exactly one X-Signature header")),
    };
    let text = value
        .to_str()
        .map_err(|_| AuthError::Malformed("X-Signature must be ASCII"))?;
    let hex = text
        .strip_prefix("sha256=")
        .ok_or(AuthError::Malformed("X-Signature must be sha256=<hex>"))?;
    let mac = decode_mac_hex(hex)?;
    keyring.find(&[raw_body], &mac).ok_or(AuthError::Mismatch)
}

/// The `X-Signature` header value for `body`.
pub fn sign_header(key: &Key, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(key.sign(&[body])))
}
