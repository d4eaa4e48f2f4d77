//! HTTPS with a reloading certificate, and TradingView's client certificate as proof of origin,
//! both on this receiver's own TLS and through a TLS-terminating proxy's headers. Certificates are
//! generated here with rcgen.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::Value as Json;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tv_ingress::natsd::free_port;
use tv_ingress::SystemClock;

struct Ca {
    cert_pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca {
        cert_pem: cert.pem(),
        der: cert.der().clone(),
        issuer: Issuer::new(params, key),
    }
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

fn tradingview_subject() -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::StateOrProvinceName, "Ohio");
    dn.push(DnType::LocalityName, "Westerville");
    dn.push(DnType::OrganizationName, "TradingView, Inc.");
    dn.push(DnType::CommonName, "TradingView Webhooks");
    dn
}

fn client_cert(ca: &Ca, subject: DistinguishedName, email: Option<&str>, expired: bool) -> Leaf {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = subject;
    if let Some(email) = email {
        params.subject_alt_names = vec![SanType::Rfc822Name(email.try_into().unwrap())];
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

fn server_cert(ca: &Ca, name: &str) -> Leaf {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
        key_der: key.serialize_der(),
    }
}

/// Writes the server pair and CA bundle, returning their paths.
fn write_files(dir: &Path, server: &Leaf, client_ca: &Ca) -> (PathBuf, PathBuf, PathBuf) {
    let (cert, key, ca) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("clients-ca.pem"),
    );
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    std::fs::write(&ca, &client_ca.cert_pem).unwrap();
    (cert, key, ca)
}

struct TlsApp {
    app: TestApp,
    https: SocketAddr,
}

async fn tls_app(
    nats_url: &str,
    dir: &Path,
    server: &Leaf,
    client_ca: &Ca,
    schemes: &str,
) -> TlsApp {
    let (cert, key, ca) = write_files(dir, server, client_ca);
    let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let overrides = [
        ("TLS_CERT", cert.to_str().unwrap()),
        ("TLS_KEY", key.to_str().unwrap()),
        ("TLS_CLIENT_CA", ca.to_str().unwrap()),
        ("TLS_BIND_ADDR", &https.to_string()),
        ("AUTH_SCHEMES", schemes),
    ];
    let app = TestApp::start(config(nats_url, &overrides), Arc::new(SystemClock)).await;
    app.wait_ready().await;
    TlsApp { app, https }
}

/// A TLS client trusting `server_ca`, presenting `identity` when given.
fn connector(server_ca: &Ca, identity: Option<&Leaf>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(server_ca.der.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                vec![leaf.der.clone()],
                PrivateKeyDer::try_from(leaf.key_der.clone()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    TlsConnector::from(Arc::new(config))
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a TLS connection; returns the HTTP sender and the server's certificate.
async fn open(
    addr: SocketAddr,
    tls: &TlsConnector,
) -> Result<(Sender, CertificateDer<'static>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    let server_cert = stream.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok((sender, server_cert))
}

async fn post(sender: &mut Sender, body: Vec<u8>) -> (u16, Json) {
    let request = hyper::Request::post("/webhook")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    // A keep-alive connection takes the next request once the previous one is finished.
    sender.ready().await.unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Json::Null))
}

fn unsigned(n: usize) -> Vec<u8> {
    serde_json::to_vec(&unique_signal(n)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tradingviews_client_certificate_authenticates_and_others_do_not() {
    let nats = nats().await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let rogue_ca = ca("rogue CA");
    let server = server_cert(&server_ca, "tv-ingress");
    let tv = client_cert(
        &client_ca,
        tradingview_subject(),
        Some("webhook-server@tradingview.com"),
        false,
    );
    let mut other_dn = DistinguishedName::new();
    other_dn.push(DnType::CommonName, "Someone Else");
    let other = client_cert(
        &client_ca,
        other_dn,
        Some("webhook-server@tradingview.com"),
        false,
    );
    let expired = client_cert(
        &client_ca,
        tradingview_subject(),
        Some("webhook-server@tradingview.com"),
        true,
    );
    let untrusted = client_cert(
        &rogue_ca,
        tradingview_subject(),
        Some("webhook-server@tradingview.com"),
        false,
    );
    let no_email = client_cert(&client_ca, tradingview_subject(), None, false);

    let t = tls_app(
        &nats.url(),
        dir.path(),
        &server,
        &client_ca,
        "tradingview-cert",
    )
    .await;
    let cases: Vec<(&str, Option<&Leaf>, u16, &str)> = vec![
        ("TradingView's certificate", Some(&tv), 200, ""),
        ("another subject", Some(&other), 401, "not the expected one"),
        ("expired", Some(&expired), 401, "expired"),
        (
            "untrusted CA",
            Some(&untrusted),
            401,
            "not issued by a trusted CA",
        ),
        (
            "no alternative name",
            Some(&no_email),
            401,
            "not the expected one",
        ),
        ("no certificate at all", None, 401, "no credentials"),
    ];
    for (n, (description, identity, status, detail)) in cases.iter().enumerate() {
        let (mut sender, _) = open(t.https, &connector(&server_ca, *identity))
            .await
            .unwrap();
        let (got, body) = post(&mut sender, unsigned(n)).await;
        assert_eq!(got, *status, "{description}: {body}");
        if *status != 200 {
            assert_eq!(body["error"], "invalid_signature", "{description}");
            assert!(
                body["detail"].as_str().unwrap().contains(detail),
                "{description}: {body}"
            );
        }
    }
    let messages = t.app.stream_messages().await;
    assert_eq!(messages.len(), 1, "nothing rejected is published");
    assert_eq!(messages[0].body["auth"]["scheme"], "tradingview-cert");
    assert_eq!(messages[0].body["auth"]["key"].as_str().unwrap().len(), 8);
    // Plain HTTP on BIND_ADDR has no certificate, so the same signal is refused there.
    assert_eq!(t.app.post_raw(unsigned(99), &[]).await.status, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_does_not_match_falls_through_to_the_requests_own_credentials() {
    let nats = nats().await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let server = server_cert(&server_ca, "tv-ingress");
    let mut other_dn = DistinguishedName::new();
    other_dn.push(DnType::CommonName, "A Relay");
    let relay = client_cert(&client_ca, other_dn, None, false);
    let t = tls_app(
        &nats.url(),
        dir.path(),
        &server,
        &client_ca,
        "tradingview-cert,hmac-body",
    )
    .await;

    let (mut sender, _) = open(t.https, &connector(&server_ca, Some(&relay)))
        .await
        .unwrap();
    let (status, body) = post(&mut sender, sign_in_body(&unique_signal(1))).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = post(&mut sender, unsigned(2)).await;
    assert_eq!(status, 401);
    let messages = t.app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body["auth"]["scheme"], "hmac-body");
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxys_certificate_headers_count_and_forged_ones_do_not() {
    let nats = nats().await;
    let client_ca = ca("client CA");
    let tv = client_cert(
        &client_ca,
        tradingview_subject(),
        Some("webhook-server@tradingview.com"),
        false,
    );
    let escaped = urlencode(&tv.cert_pem);
    let dn = r"CN=TradingView Webhooks,O=TradingView\, Inc.,L=Westerville,ST=Ohio,C=US";

    let behind_proxy = [
        ("AUTH_SCHEMES", "tradingview-cert"),
        ("CLIENT_CERT_PROXY_HEADERS", "true"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
    ];
    let app = TestApp::start(config(&nats.url(), &behind_proxy), Arc::new(SystemClock)).await;
    app.wait_ready().await;
    let cases: Vec<(&str, Vec<(&str, &str)>, u16)> = vec![
        (
            "nginx: verified, escaped certificate",
            vec![
                ("x-ssl-client-verify", "SUCCESS"),
                ("x-ssl-client-cert", &escaped),
            ],
            200,
        ),
        (
            "verification failed at the proxy",
            vec![
                ("x-ssl-client-verify", "FAILED:certificate has expired"),
                ("x-ssl-client-cert", &escaped),
            ],
            401,
        ),
        (
            "subject only: the email cannot be checked",
            vec![
                ("x-ssl-client-verify", "SUCCESS"),
                ("x-ssl-client-s-dn", dn),
            ],
            401,
        ),
        (
            "no verify header",
            vec![("x-ssl-client-cert", &escaped)],
            401,
        ),
    ];
    for (n, (description, headers, status)) in cases.iter().enumerate() {
        let r = app.post_raw(unsigned(n), headers).await;
        assert_eq!(r.status, *status, "{description}: {}", r.text);
    }
    // HAProxy's formats: base64 DER and the one-line DN (with an expectation without email).
    let haproxy_der = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&tv.der)
    };
    let r = app
        .post_raw(
            unsigned(10),
            &[
                ("x-ssl-client-verify", "0"),
                ("x-ssl-client-cert", &haproxy_der),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.stream_messages().await.len(), 2);
    drop(app);

    let subject_only = [
        ("AUTH_SCHEMES", "tradingview-cert"),
        ("CLIENT_CERT_PROXY_HEADERS", "true"),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        (
            "CLIENT_CERT_EXPECT",
            r"subject=C=US,ST=Ohio,L=Westerville,O=TradingView\, Inc.,CN=TradingView Webhooks",
        ),
        ("NATS_STREAM", "SUBJECTONLY"),
        ("NATS_SUBJECT_PREFIX", "subjectonly"),
    ];
    let app = TestApp::start(config(&nats.url(), &subject_only), Arc::new(SystemClock)).await;
    app.wait_ready().await;
    let oneline = "/C=US/ST=Ohio/L=Westerville/O=TradingView, Inc./CN=TradingView Webhooks";
    let r = app
        .post_raw(
            unsigned(20),
            &[("x-ssl-client-verify", "0"), ("x-ssl-client-s-dn", oneline)],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    drop(app);

    // The same headers from a peer that is not a trusted proxy are forged: ignored.
    let untrusted = [
        ("AUTH_SCHEMES", "tradingview-cert"),
        ("CLIENT_CERT_PROXY_HEADERS", "true"),
        ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ("NATS_STREAM", "FORGED"),
        ("NATS_SUBJECT_PREFIX", "forged"),
    ];
    let app = TestApp::start(config(&nats.url(), &untrusted), Arc::new(SystemClock)).await;
    app.wait_ready().await;
    let r = app
        .post_raw(
            unsigned(30),
            &[
                ("x-ssl-client-verify", "SUCCESS"),
                ("x-ssl-client-cert", &escaped),
            ],
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("no credentials"));
    assert!(app.stream_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_certificate_reloads_without_disturbing_open_connections() {
    let nats = nats().await;
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    let first = server_cert(&server_ca, "first");
    let t = tls_app(&nats.url(), dir.path(), &first, &client_ca, "hmac-body").await;
    let tls = connector(&server_ca, None);

    let (mut kept, seen) = open(t.https, &tls).await.unwrap();
    assert_eq!(seen, first.der);
    assert_eq!(
        post(&mut kept, sign_in_body(&unique_signal(0))).await.0,
        200
    );

    // Renewal: new files in place (as certbot's symlink swap ends up).
    let second = server_cert(&server_ca, "second");
    std::fs::write(dir.path().join("server.key.new"), &second.key_pem).unwrap();
    std::fs::write(dir.path().join("server.pem.new"), &second.cert_pem).unwrap();
    std::fs::rename(
        dir.path().join("server.key.new"),
        dir.path().join("server.key"),
    )
    .unwrap();
    std::fs::rename(
        dir.path().join("server.pem.new"),
        dir.path().join("server.pem"),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, seen) = open(t.https, &tls).await.unwrap();
        if seen == second.der {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the renewal still works.
    assert_eq!(
        post(&mut kept, sign_in_body(&unique_signal(1))).await.0,
        200
    );

    // A broken renewal (key of another certificate) is refused; the good pair keeps serving.
    let third = server_cert(&server_ca, "third");
    std::fs::write(dir.path().join("server.pem"), &third.cert_pem).unwrap();
    tokio::time::sleep(tv_ingress::tls::RELOAD_POLL * 3).await;
    let (mut fresh, seen) = open(t.https, &tls).await.unwrap();
    assert_eq!(seen, second.der, "the mismatched pair must not be served");
    assert_eq!(
        post(&mut fresh, sign_in_body(&unique_signal(2))).await.0,
        200
    );
    assert_eq!(t.app.stream_messages().await.len(), 3);
}
