//! Who is calling: the client address, and whether it may call `/webhook` at all.
//!
//! The client is the socket peer, unless the peer is a trusted proxy (`TRUSTED_PROXIES`); then it
//! is `CF-Connecting-IP` when present, else the first untrusted hop of `X-Forwarded-For` counted
//! from the right (the end each proxy appends to). Headers from any other peer are ignored, so a
//! forged `X-Forwarded-For` is judged by the sender's real address. `ALLOWED_SOURCES` then decides.

use axum::http::HeaderMap;
use ipnet::IpNet;
use std::net::IpAddr;

const CF_CONNECTING_IP: &str = "cf-connecting-ip";
const X_FORWARDED_FOR: &str = "x-forwarded-for";

#[derive(Debug, Clone, Default)]
pub struct SourcePolicy {
    allowed: Option<Vec<IpNet>>,
    trusted_proxies: Vec<IpNet>,
}

/// An IPv4 address arriving as IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn within(networks: &[IpNet], ip: IpAddr) -> bool {
    networks.iter().any(|n| n.contains(&ip))
}

impl SourcePolicy {
    pub fn new(allowed: Option<Vec<IpNet>>, trusted_proxies: Vec<IpNet>) -> SourcePolicy {
        SourcePolicy {
            allowed,
            trusted_proxies,
        }
    }

    pub fn trusts(&self, peer: IpAddr) -> bool {
        within(&self.trusted_proxies, canonical(peer))
    }

    /// The client's address, or `None` when a trusted proxy sent a header that cannot be read.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
        let peer = canonical(peer);
        if !within(&self.trusted_proxies, peer) {
            return Some(peer);
        }
        if let Some(value) = headers.get(CF_CONNECTING_IP) {
            return value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
                .map(canonical);
        }
        let mut hops = Vec::new();
        for value in headers.get_all(X_FORWARDED_FOR) {
            let text = value.to_str().ok()?;
            hops.extend(text.split(',').map(str::trim));
        }
        let mut client = peer;
        for hop in hops.iter().rev() {
            let ip = canonical(hop.parse::<IpAddr>().ok()?);
            client = ip;
            if !within(&self.trusted_proxies, ip) {
                break;
            }
        }
        Some(client)
    }

    /// Whether `client` may send signals.
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        match (&self.allowed, client) {
            (None, _) => true,
            (Some(networks), Some(ip)) => within(networks, ip),
            (Some(_), None) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let policy = SourcePolicy::new(
            Some(nets(&["52.89.214.238/32"])),
            nets(&["10.0.0.0/8", "127.0.0.1/32"]),
        );
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: &[(&str, &str, &[(&'static str, &str)], Option<&str>, bool)] = &[
            (
                "untrusted peer, no header",
                "6.6.6.6",
                &[],
                Some("6.6.6.6"),
                false,
            ),
            (
                "untrusted peer forges XFF",
                "6.6.6.6",
                &[("x-forwarded-for", "52.89.214.238")],
                Some("6.6.6.6"),
                false,
            ),
            (
                "untrusted peer forges CF header",
                "6.6.6.6",
                &[("cf-connecting-ip", "52.89.214.238")],
                Some("6.6.6.6"),
                false,
            ),
            (
                "trusted proxy, real client",
                "10.1.1.1",
                &[("x-forwarded-for", "52.89.214.238")],
                Some("52.89.214.238"),
                true,
            ),
            (
                "client prepends a forged hop; the proxy appends the real one",
                "10.1.1.1",
                &[("x-forwarded-for", "52.89.214.238, 6.6.6.6")],
                Some("6.6.6.6"),
                false,
            ),
            (
                "two trusted proxies",
                "127.0.0.1",
                &[("x-forwarded-for", "52.89.214.238, 10.2.2.2")],
                Some("52.89.214.238"),
                true,
            ),
            (
                "XFF split over two header lines",
                "10.1.1.1",
                &[
                    ("x-forwarded-for", "1.1.1.1"),
                    ("x-forwarded-for", "52.89.214.238"),
                ],
                Some("52.89.214.238"),
                true,
            ),
            (
                "CF header wins behind a trusted proxy",
                "10.1.1.1",
                &[
                    ("cf-connecting-ip", "52.89.214.238"),
                    ("x-forwarded-for", "6.6.6.6"),
                ],
                Some("52.89.214.238"),
                true,
            ),
            (
                "garbage hop from a trusted proxy",
                "10.1.1.1",
                &[("x-forwarded-for", "52.89.214.238, not-an-ip")],
                None,
                false,
            ),
            (
                "trusted proxy without header",
                "10.1.1.1",
                &[],
                Some("10.1.1.1"),
                false,
            ),
            (
                "IPv4-mapped IPv6 peer",
                "::ffff:52.89.214.238",
                &[],
                Some("52.89.214.238"),
                true,
            ),
        ];
        for (description, peer, pairs, client, allowed) in cases {
            let got = policy.client_ip(ip(peer), &headers(pairs));
            assert_eq!(got, client.map(ip), "{description}");
            assert_eq!(policy.allows(got), *allowed, "{description}");
        }
    }

    #[test]
    fn no_allowlist_allows_everyone() {
        let policy = SourcePolicy::default();
        assert!(policy.allows(Some("6.6.6.6".parse().unwrap())));
        assert!(policy.allows(None));
    }
}
