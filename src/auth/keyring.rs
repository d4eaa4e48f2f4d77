//! Secrets and their public fingerprints.
//!
//! A [`Key`] keeps the HMAC state derived from a secret (never the secret in a printable form)
//! and a short fingerprint that logs and published messages may name. Comparison of MACs is
//! constant-time (`hmac`'s `verify_slice`); every key of a ring is tried so the timing does not
//! depend on which one matched.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use std::fmt;

pub type HmacSha256 = Hmac<Sha256>;

/// One active secret.
#[derive(Clone)]
pub struct Key {
    mac: HmacSha256,
    fingerprint: String,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", self.fingerprint)
    }
}

impl Key {
    pub fn new(secret: &SecretString) -> Key {
        Key::from_bytes(secret.expose_secret().as_bytes())
    }

    pub fn from_bytes(secret: &[u8]) -> Key {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as Mac>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Key {
            mac,
            fingerprint: fingerprint(secret),
        }
    }

    /// First 8 hex digits of SHA-256("tv-ingress key fingerprint\0" || secret): enough to tell
    /// keys apart in logs, useless for guessing a 32-character secret.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// HMAC-SHA256 of `parts` concatenated.
    pub fn sign(&self, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Constant-time check of `expected` against HMAC-SHA256 of `parts`.
    pub fn verify(&self, parts: &[&[u8]], expected: &[u8]) -> bool {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(expected).is_ok()
    }
}

pub fn fingerprint(secret: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"tv-ingress key fingerprint\0")
        .chain_update(secret)
        .finalize();
    hex::encode(&digest[..4])
}

/// The active secrets of one scheme: the current one first, then those being rotated out.
#[derive(Clone, Debug)]
pub struct Keyring {
    keys: Vec<Key>,
}

impl Keyring {
    pub fn new(keys: Vec<Key>) -> Keyring {
        Keyring { keys }
    }

    pub fn keys(&self) -> &[Key] {
        &self.keys
    }

    /// The key used to sign (the current one).
    pub fn current(&self) -> Option<&Key> {
        self.keys.first()
    }

    /// The key whose MAC of `parts` equals `expected`, trying every key.
    pub fn find(&self, parts: &[&[u8]], expected: &[u8]) -> Option<&Key> {
        let mut found = None;
        for key in &self.keys {
            if key.verify(parts, expected) && found.is_none() {
                found = Some(key);
            }
        }
        found
    }
}
