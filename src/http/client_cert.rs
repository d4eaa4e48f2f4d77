//! Client certificates reported by a TLS-terminating proxy in front (nginx, HAProxy), believed only
//! from `TRUSTED_PROXIES` and only with `CLIENT_CERT_PROXY_HEADERS=true`.
//!
//! Headers: `X-SSL-Client-Verify` (`SUCCESS` from nginx's `$ssl_client_verify`, `0` from HAProxy's
//! `ssl_c_verify`), and either `X-SSL-Client-Cert` (the certificate: nginx's URL-encoded
//! `$ssl_client_escaped_cert`, or base64 DER from HAProxy's `ssl_c_der,base64`), from which subject
//! and alternative names are read, or `X-SSL-Client-S-DN` (the subject only; then an expected email
//! cannot be checked and does not match).

use axum::http::HeaderMap;
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::auth::client_cert::parse_dn;
use crate::auth::ClientCertificate;

pub const VERIFY_HEADER: &str = "x-ssl-client-verify";
pub const CERT_HEADER: &str = "x-ssl-client-cert";
pub const DN_HEADER: &str = "x-ssl-client-s-dn";

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn cert_der(value: &str) -> Option<Vec<u8>> {
    let engine = base64::engine::general_purpose::STANDARD;
    // nginx URL-encodes the PEM; HAProxy sends base64 DER.
    let decoded = if value.contains('%') {
        String::from_utf8(percent_decode(value)?).ok()?
    } else {
        value.to_owned()
    };
    if !decoded.starts_with("-----BEGIN") {
        return engine.decode(decoded).ok();
    }
    let text = decoded;
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .flat_map(|l| l.split_whitespace())
        .collect();
    engine.decode(body).ok()
}

/// The certificate the proxy reports, if it reports one.
pub fn from_proxy_headers(headers: &HeaderMap) -> Option<ClientCertificate> {
    let verify = header(headers, VERIFY_HEADER)?;
    let verified = if verify.eq_ignore_ascii_case("SUCCESS") || verify == "0" {
        Ok(())
    } else {
        Err(format!("the proxy reports verification failed ({verify})"))
    };
    if let Some(value) = header(headers, CERT_HEADER) {
        return Some(match cert_der(value) {
            Some(der) => ClientCertificate::from_der(&der, verified, "proxy"),
            None => ClientCertificate {
                verified: Err("the proxy's certificate header cannot be read".into()),
                subject: Vec::new(),
                emails: Vec::new(),
                fingerprint: String::new(),
                via: "proxy",
            },
        });
    }
    let dn = header(headers, DN_HEADER)?;
    let (subject, verified) = match parse_dn(dn) {
        Ok(subject) => (subject, verified),
        Err(problem) => (
            Vec::new(),
            Err(format!(
                "the proxy's subject header cannot be read: {problem}"
            )),
        ),
    };
    Some(ClientCertificate {
        verified,
        subject,
        emails: Vec::new(),
        fingerprint: hex::encode(&Sha256::digest(dn.as_bytes())[..4]),
        via: "proxy",
    })
}
