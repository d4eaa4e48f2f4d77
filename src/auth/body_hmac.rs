//! The original in-body scheme: `signature` = hex HMAC-SHA256(secret, canonical), where the
//! canonical form is the received object with `signature` set to `""`, printed as Python's
//! default `json.dumps` prints it. The sent body may be formatted any way (the original README's
//! client sends it with `indent=2`), because the canonical form is rebuilt from the parsed object.

use super::{decode_mac_hex, AuthError, Key, Keyring};
use crate::json::{self, Object, Value};

pub const BODY_SIGNATURE_FIELD: &str = "signature";

pub(super) fn verify<'k>(keyring: &'k Keyring, object: &mut Object) -> Result<&'k Key, AuthError> {
    let mac = match object.get(BODY_SIGNATURE_FIELD) {
        Some(Value::String(text)) => decode_mac_hex(text)?,
        _ => return Err(AuthError::Malformed("`signature` must be a hex string")),
    };
    let canonical = canonical_form(object);
    let key = keyring
        .find(&[&canonical], &mac)
        .ok_or(AuthError::Mismatch)?;
    object.remove(BODY_SIGNATURE_FIELD);
    Ok(key)
}

/// `json.dumps(object)` with `signature` set to `""` in its place (appended when absent).
pub fn canonical_form(object: &mut Object) -> Vec<u8> {
    let original = match object.get_mut(BODY_SIGNATURE_FIELD) {
        Some(slot) => Some(std::mem::replace(slot, Value::String("".into()))),
        None => {
            object.insert_new(BODY_SIGNATURE_FIELD, Value::String("".into()));
            None
        }
    };
    let mut canonical = Vec::with_capacity(256);
    json::write_python_object(object, &mut canonical);
    match (original, object.get_mut(BODY_SIGNATURE_FIELD)) {
        (Some(value), Some(slot)) => *slot = value,
        _ => {
            object.remove(BODY_SIGNATURE_FIELD);
        }
    }
    canonical
}

/// Signs `object` in place the way the original client does and returns the hex signature.
pub fn sign_body(key: &Key, object: &mut Object) -> String {
    let canonical = canonical_form(object);
    let signature = hex::encode(key.sign(&[&canonical]));
    if let Some(slot) = object.get_mut(BODY_SIGNATURE_FIELD) {
        *slot = Value::String(signature.clone().into());
    } else {
        object.insert_new(
            BODY_SIGNATURE_FIELD,
            Value::String(signature.clone().into()),
        );
    }
    signature
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    #[derive(serde::Deserialize)]
    struct Vectors {
        secret: String,
        vectors: Vec<Vector>,
    }
    #[derive(serde::Deserialize)]
    struct Vector {
        canonical: String,
        signature: String,
        sent: String,
    }

    fn vectors() -> Vectors {
        serde_json::from_str(include_str!("../../tests/data/seed-signature.json")).unwrap()
    }

    #[test]
    fn cpython_vectors_verify() {
        let v = vectors();
        let keyring = Keyring::new(vec![Key::from_bytes(v.secret.as_bytes())]);
        for vector in &v.vectors {
            let mut object = parse_object(vector.sent.as_bytes()).unwrap();
            assert_eq!(
                String::from_utf8(canonical_form(&mut object)).unwrap(),
                vector.canonical
            );
            assert!(
                verify(&keyring, &mut object).is_ok(),
                "{}",
                vector.signature
            );
            assert!(!object.contains_key(BODY_SIGNATURE_FIELD));
        }
    }

    #[test]
    fn signing_reproduces_the_vectors() {
        let v = vectors();
        let key = Key::from_bytes(v.secret.as_bytes());
        for vector in &v.vectors {
            let mut object = parse_object(vector.sent.as_bytes()).unwrap();
            assert_eq!(sign_body(&key, &mut object), vector.signature);
        }
    }

    #[test]
    fn one_flipped_bit_anywhere_fails() {
        let v = vectors();
        let keyring = Keyring::new(vec![Key::from_bytes(v.secret.as_bytes())]);
        for vector in &v.vectors {
            let sent = vector.sent.as_bytes();
            for i in 0..sent.len() {
                for bit in 0..8 {
                    let mut tampered = sent.to_vec();
                    tampered[i] ^= 1 << bit;
                    let verified = parse_object(&tampered)
                        .ok()
                        .and_then(|mut o| verify(&keyring, &mut o).ok())
                        .is_some();
                    if !verified {
                        continue;
                    }
                    // Only a change that leaves the signed content identical may pass: the
                    // case of a hex digit inside a \u escape, which decodes to the same text.
                    let mut original = parse_object(sent).unwrap();
                    let mut changed = parse_object(&tampered).unwrap();
                    assert_eq!(
                        canonical_form(&mut original),
                        canonical_form(&mut changed),
                        "byte {i} bit {bit} flipped and still verified"
                    );
                    assert_eq!(bit, 5, "only a letter-case flip can keep the content");
                }
            }
            // Flipping the lowest bit of any byte always fails.
            for i in 0..sent.len() {
                let mut tampered = sent.to_vec();
                tampered[i] ^= 1;
                let verified = parse_object(&tampered)
                    .ok()
                    .and_then(|mut o| verify(&keyring, &mut o).ok())
                    .is_some();
                assert!(!verified, "byte {i} flipped and still verified");
            }
        }
    }
}
