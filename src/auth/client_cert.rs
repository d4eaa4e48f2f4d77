//! The `tradingview-cert` scheme: TradingView's webhook client certificate as proof of origin.
//!
//! Over HTTPS, TradingView's webhook server presents a client certificate with subject
//! `C=US, ST=Ohio, L=Westerville, O=TradingView, Inc., CN=TradingView Webhooks` and the
//! alternative name `email:webhook-server@tradingview.com`. A certificate counts when it chains to
//! the trust store (checked at the TLS layer, or by a trusted proxy that says so), is valid now,
//! is meant for client authentication, and its subject and email match the expectation exactly.
//!
//! The certificate belongs to the connection, not to the request: it authenticates a request only
//! when the request carries no other credential (so alerts still carrying a token while a
//! deployment moves to certificates keep working, authenticated by the token).

use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// A subject attribute as (short name, value), e.g. `("CN", "TradingView Webhooks")`.
pub type Attribute = (String, String);

/// What is known of the client certificate behind a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `Ok` when the chain, validity period and key usage checked out; otherwise why not.
    pub verified: Result<(), String>,
    pub subject: Vec<Attribute>,
    pub emails: Vec<String>,
    /// First 8 hex digits of the SHA-256 of the certificate (when the certificate itself was
    /// seen), else of the subject.
    pub fingerprint: String,
    /// `tls` when this receiver terminated TLS, `proxy` when a trusted proxy reported it.
    pub via: &'static str,
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.6" => "C",
        "2.5.4.8" => "ST",
        "2.5.4.7" => "L",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.3" => "CN",
        "2.5.4.5" => "serialNumber",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

impl ClientCertificate {
    /// Reads subject and email alternative names from a DER certificate. `verified` says whether
    /// the chain was accepted.
    pub fn from_der(
        der: &[u8],
        verified: Result<(), String>,
        via: &'static str,
    ) -> ClientCertificate {
        let fingerprint = hex::encode(&Sha256::digest(der)[..4]);
        let Ok((_, cert)) = X509Certificate::from_der(der) else {
            return ClientCertificate {
                verified: Err("the certificate cannot be parsed".into()),
                subject: Vec::new(),
                emails: Vec::new(),
                fingerprint,
                via,
            };
        };
        let mut subject = Vec::new();
        for rdn in cert.subject().iter() {
            for attribute in rdn.iter() {
                let oid = attribute.attr_type().to_id_string();
                let name = short_name(&oid).map(str::to_owned).unwrap_or(oid);
                let value = attribute.as_str().unwrap_or("").to_owned();
                subject.push((name, value));
            }
        }
        let emails = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::RFC822Name(email) => Some((*email).to_owned()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        ClientCertificate {
            verified,
            subject,
            emails,
            fingerprint,
            via,
        }
    }
}

/// The subject and emails a certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpectation {
    pub subject: Vec<Attribute>,
    pub emails: Vec<String>,
}

impl CertExpectation {
    /// TradingView's webhook client certificate.
    pub fn tradingview() -> CertExpectation {
        CertExpectation {
            subject: [
                ("C", "US"),
                ("ST", "Ohio"),
                ("L", "Westerville"),
                ("O", "TradingView, Inc."),
                ("CN", "TradingView Webhooks"),
            ]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
            emails: vec!["webhook-server@tradingview.com".into()],
        }
    }

    /// `tradingview`, or `subject=<RFC 4514 DN>[;email=<address>]...`.
    pub fn parse(text: &str) -> Result<CertExpectation, String> {
        if text.trim().eq_ignore_ascii_case("tradingview") {
            return Ok(CertExpectation::tradingview());
        }
        let mut subject = None;
        let mut emails = Vec::new();
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some(("subject", dn)) => subject = Some(parse_dn(dn)?),
                Some(("email", email)) if email.contains('@') => {
                    emails.push(email.trim().to_owned())
                }
                _ => return Err(format!("{part:?} is not subject=<DN> or email=<address>")),
            }
        }
        let subject = subject.ok_or("must name a subject=<DN>, or be the preset tradingview")?;
        Ok(CertExpectation { subject, emails })
    }

    /// Whether `cert`'s subject is exactly the expected one (order aside) and it carries every
    /// expected email. A proxy that reported only the subject cannot satisfy an email.
    pub fn matches(&self, cert: &ClientCertificate) -> bool {
        let mut expected = self.subject.clone();
        let mut actual = cert.subject.clone();
        expected.sort();
        actual.sort();
        expected == actual
            && self
                .emails
                .iter()
                .all(|e| cert.emails.iter().any(|c| c.eq_ignore_ascii_case(e)))
    }
}

/// Parses a distinguished name in RFC 4514 form (`CN=a,O=b\, Inc.`, as nginx's
/// `$ssl_client_s_dn` prints it) or OpenSSL's one-line form (`/C=US/O=b, Inc./CN=a`, as HAProxy's
/// `ssl_c_s_dn` prints it).
pub fn parse_dn(text: &str) -> Result<Vec<Attribute>, String> {
    let text = text.trim();
    let parts: Vec<String> = if let Some(rest) = text.strip_prefix('/') {
        rest.split('/').map(str::to_owned).collect()
    } else {
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                ',' => parts.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        parts.push(current);
        parts
    };
    parts
        .into_iter()
        .map(|part| {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=value"))?;
            let name = match name.trim() {
                "E" | "emailAddress" => "emailAddress",
                other => other,
            };
            Ok((name.to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(subject: &[(&str, &str)], emails: &[&str]) -> ClientCertificate {
        ClientCertificate {
            verified: Ok(()),
            subject: subject
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            emails: emails.iter().map(|e| (*e).into()).collect(),
            fingerprint: "00000000".into(),
            via: "tls",
        }
    }

    const TV: &[(&str, &str)] = &[
        ("CN", "TradingView Webhooks"),
        ("O", "TradingView, Inc."),
        ("L", "Westerville"),
        ("ST", "Ohio"),
        ("C", "US"),
    ];

    #[test]
    fn the_preset_matches_only_tradingviews_certificate() {
        let tv = CertExpectation::tradingview();
        assert!(tv.matches(&cert(TV, &["webhook-server@tradingview.com"])));
        assert!(!tv.matches(&cert(TV, &[])), "email missing");
        assert!(
            !tv.matches(&cert(&TV[..4], &["webhook-server@tradingview.com"])),
            "C missing"
        );
        let mut extra = TV.to_vec();
        extra.push(("OU", "Evil"));
        assert!(
            !tv.matches(&cert(&extra, &["webhook-server@tradingview.com"])),
            "extra attribute"
        );
        let mut other = TV.to_vec();
        other[0] = ("CN", "TradingView Webhooks2");
        assert!(!tv.matches(&cert(&other, &["webhook-server@tradingview.com"])));
    }

    #[test]
    fn both_proxy_dn_formats_parse_the_same() {
        let rfc =
            parse_dn(r"CN=TradingView Webhooks,O=TradingView\, Inc.,L=Westerville,ST=Ohio,C=US")
                .unwrap();
        let oneline =
            parse_dn("/C=US/ST=Ohio/L=Westerville/O=TradingView, Inc./CN=TradingView Webhooks")
                .unwrap();
        let mut a = rfc.clone();
        let mut b = oneline.clone();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(rfc.len(), 5);
        assert!(parse_dn("nonsense").is_err());
    }

    #[test]
    fn custom_expectations_parse() {
        let e = CertExpectation::parse(r"subject=CN=My Relay,O=Me\, Ltd;email=relay@me.example")
            .unwrap();
        assert_eq!(e.subject.len(), 2);
        assert_eq!(e.emails, ["relay@me.example"]);
        assert!(CertExpectation::parse("email=a@b").is_err());
        assert_eq!(
            CertExpectation::parse("TradingView").unwrap(),
            CertExpectation::tradingview()
        );
    }
}
