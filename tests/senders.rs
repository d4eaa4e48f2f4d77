//! Real senders: TradingView direct (token + source allowlist), Standard Webhooks signed by the
//! reference `standardwebhooks` crate, scheme control, and key rotation under load.

mod common;

use common::*;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tv_ingress::auth::fingerprint;
use tv_ingress::SystemClock;

const TOKEN: &str = "tradingview-token-0123456789abcdefXYZ";
const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

async fn app_with(nats_url: &str, overrides: &[(&str, &str)]) -> TestApp {
    let app = TestApp::start(config(nats_url, overrides), Arc::new(SystemClock)).await;
    app.wait_ready().await;
    app
}

fn with_token(token: &str) -> Vec<u8> {
    let mut s = signal("AAPL", "buy", json!("{{strategy.order.contracts}}"));
    s["quantity"] = json!("3");
    s["passphrase"] = json!(token);
    serde_json::to_vec(&s).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn tradingview_direct_with_a_token_is_accepted_and_the_token_never_published() {
    let nats = nats().await;
    let app = app_with(
        &nats.url(),
        &[
            ("AUTH_SCHEMES", "token,hmac-body"),
            ("WEBHOOK_TOKEN", TOKEN),
        ],
    )
    .await;

    let r = app
        .post_raw(with_token(TOKEN), &[("content-type", "text/plain")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let wrong = app
        .post_raw(with_token(&TOKEN.replace('Z', "z")), &[])
        .await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error(), "invalid_signature");
    let empty = app.post_raw(with_token(""), &[]).await;
    assert_eq!(empty.status, 401);

    // HMAC still works next to it; a token plus a signature is two schemes.
    assert_eq!(app.post_signed(&unique_signal(1)).await.status, 200);
    let mut both = unique_signal(2);
    both["passphrase"] = json!(TOKEN);
    let r = app.post_signed(&both).await;
    assert_eq!(r.status, 401);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("more than one scheme"));

    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 2);
    let m = &messages[0];
    assert_eq!(m.body["auth"]["scheme"], "token");
    assert_eq!(m.body["auth"]["key"], fingerprint(TOKEN.as_bytes()));
    assert!(m.body.get("passphrase").is_none());
    assert!(!serde_json::to_string(&m.body).unwrap().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread")]
async fn without_the_token_scheme_a_passphrase_is_no_credential() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let r = app.post_raw(with_token(TOKEN), &[]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    assert!(app.stream_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_source_allowlist_judges_the_real_address() {
    let nats = nats().await;
    let tv = "52.89.214.238";
    let body = || sign_in_body(&unique_signal(0));

    // Only TradingView allowed, no trusted proxy: a loopback client is refused, forged headers
    // from it are ignored.
    let strict = app_with(&nats.url(), &[("ALLOWED_SOURCES", "tradingview")]).await;
    for (description, headers) in [
        ("plain", vec![]),
        ("forged X-Forwarded-For", vec![("x-forwarded-for", tv)]),
        ("forged CF-Connecting-IP", vec![("cf-connecting-ip", tv)]),
    ] {
        let r = strict.post_raw(body(), &headers).await;
        assert_eq!(r.status, 403, "{description}: {}", r.text);
        assert_eq!(r.error(), "forbidden_source", "{description}");
    }
    assert!(strict.stream_messages().await.is_empty());
    drop(strict);

    // The same, behind a trusted proxy on loopback: the forwarded address decides.
    let proxied = app_with(
        &nats.url(),
        &[
            ("ALLOWED_SOURCES", "tradingview"),
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let cases = [
        (
            "X-Forwarded-For from TradingView",
            vec![("x-forwarded-for", tv.to_string())],
            200,
        ),
        (
            "CF-Connecting-IP from TradingView",
            vec![("cf-connecting-ip", tv.to_string())],
            200,
        ),
        (
            "client-forged hop before the real one",
            vec![("x-forwarded-for", format!("{tv}, 6.6.6.6"))],
            403,
        ),
        ("proxy without header (the proxy itself)", vec![], 403),
        (
            "garbage header",
            vec![("x-forwarded-for", "nonsense".to_string())],
            403,
        ),
    ];
    for (n, (description, headers, status)) in cases.iter().enumerate() {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = proxied
            .post_raw(sign_in_body(&unique_signal(n)), &headers)
            .await;
        assert_eq!(r.status, *status, "{description}: {}", r.text);
    }
    assert_eq!(proxied.stream_messages().await.len(), 2);
    drop(proxied);

    // And the other way: loopback allowed, a forged TradingView-looking or foreign header from
    // an untrusted peer changes nothing.
    let local = app_with(&nats.url(), &[("ALLOWED_SOURCES", "127.0.0.0/8")]).await;
    let r = local
        .post_raw(body(), &[("x-forwarded-for", "6.6.6.6")])
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

fn standard_webhook(secret: &str, id: &str, seconds: i64, body: &[u8]) -> Vec<(String, String)> {
    let signer = standardwebhooks::Webhook::new(secret).unwrap();
    let signature = signer.sign(id, seconds, body).unwrap();
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), seconds.to_string()),
        ("webhook-signature".into(), signature),
    ]
}

async fn post_with(app: &TestApp, body: &[u8], headers: &[(String, String)]) -> Response {
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    app.post_raw(body.to_vec(), &headers).await
}

#[tokio::test(flavor = "multi_thread")]
async fn standard_webhooks_from_the_reference_signer_are_accepted() {
    let nats = nats().await;
    const OLD: &str = "whsec_b2xkLXNlY3JldC0wMTIzNDU2Nzg5YWJjZGVm";
    let app = app_with(
        &nats.url(),
        &[
            ("AUTH_SCHEMES", "standard-webhooks"),
            ("STANDARD_WEBHOOKS_SECRET", WHSEC),
            ("STANDARD_WEBHOOKS_SECRET_PREVIOUS", OLD),
        ],
    )
    .await;
    let now = chrono::Utc::now().timestamp();
    let body = serde_json::to_vec(&signal("MSFT", "SELL", json!(4))).unwrap();

    let headers = standard_webhook(WHSEC, "msg_2mHq1", now, &body);
    let r = post_with(&app, &body, &headers).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The sender's retry of the same message: one signal.
    assert_eq!(post_with(&app, &body, &headers).await.status, 409);

    // Several signatures, one of them from the previous key; unknown versions are skipped.
    let other = serde_json::to_vec(&signal("MSFT", "BUY", json!(1))).unwrap();
    let mut headers = standard_webhook(OLD, "msg_2", now, &other);
    headers[2].1 = format!("v1a,AAAA v1,bm90IHRoZSByaWdodCBvbmU= {}", headers[2].1);
    let r = post_with(&app, &other, &headers).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let stale = standard_webhook(WHSEC, "msg_3", now - 120, &body);
    let r = post_with(&app, &body, &stale).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), "stale_timestamp");
    let mut tampered = standard_webhook(WHSEC, "msg_4", now, &body);
    tampered[0].1 = "msg_5".into();
    assert_eq!(post_with(&app, &body, &tampered).await.status, 401);
    // HMAC is not accepted on this receiver.
    let r = app.post_signed(&unique_signal(9)).await;
    assert_eq!(r.status, 401);
    assert!(r.body["detail"].as_str().unwrap().contains("not accepted"));

    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].body["auth"]["scheme"], "standard-webhooks");
    let old_key = base64_decode(OLD.trim_start_matches("whsec_"));
    assert_eq!(messages[1].body["auth"]["key"], fingerprint(&old_key));
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

/// A rolling key rotation across two replicas while signals flow: senders sign with the old key,
/// replicas restart one by one accepting both, senders switch to the new key, replicas restart
/// one by one accepting only the new one. No signal is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_secret_is_rotated_under_load_without_a_rejected_signal() {
    const OLD: &str = "old-secret-0123456789abcdefghijklmnop";
    const NEW: &str = "new-secret-9876543210zyxwvutsrqponmlk";
    let nats = nats().await;
    let url = nats.url();
    const PHASE_ONE: &[(&str, &str)] = &[("WEBHOOK_SECRET", OLD)];
    const PHASE_TWO: &[(&str, &str)] = &[("WEBHOOK_SECRET", NEW), ("WEBHOOK_SECRET_PREVIOUS", OLD)];
    const PHASE_THREE: &[(&str, &str)] = &[("WEBHOOK_SECRET", NEW)];

    let replicas: Arc<[tokio::sync::RwLock<Option<TestApp>>; 2]> = Arc::new([
        tokio::sync::RwLock::new(Some(app_with(&url, PHASE_ONE).await)),
        tokio::sync::RwLock::new(Some(app_with(&url, PHASE_ONE).await)),
    ]);
    let signing_with_new = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for worker in 0..4 {
        let (replicas, new, stop, sent) = (
            replicas.clone(),
            signing_with_new.clone(),
            stop.clone(),
            sent.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let secret = if new.load(Ordering::Relaxed) {
                    NEW
                } else {
                    OLD
                };
                let s = unique_signal(worker * 1_000_000 + n);
                let body = sign_with(secret, &s);
                // A load balancer: try the replicas in turn until one answers.
                let mut answered = None;
                for attempt in 0..20 {
                    let slot = &replicas[(n + attempt) % 2];
                    let guard = slot.read().await;
                    if let Some(app) = guard.as_ref() {
                        if let Ok(r) =
                            try_request(app.addr, "POST", "/webhook", &[], body.clone().into())
                                .await
                        {
                            answered = Some(r.status);
                            break;
                        }
                    }
                    drop(guard);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                statuses.push(answered.expect("some replica answered"));
                sent.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            statuses
        }));
    }
    let roll = |config: &'static [(&'static str, &'static str)]| {
        let replicas = replicas.clone();
        let url = url.clone();
        async move {
            for slot in replicas.iter() {
                let old = slot.write().await.take();
                if let Some(app) = old {
                    app.stop().await.unwrap();
                }
                let fresh = app_with(&url, config).await;
                *slot.write().await = Some(fresh);
            }
        }
    };
    let wait_for_traffic = |at_least: usize| {
        let sent = sent.clone();
        async move {
            while sent.load(Ordering::Relaxed) < at_least {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    wait_for_traffic(50).await;
    roll(PHASE_TWO).await;
    wait_for_traffic(sent.load(Ordering::Relaxed) + 50).await;
    signing_with_new.store(true, Ordering::Relaxed);
    wait_for_traffic(sent.load(Ordering::Relaxed) + 50).await;
    roll(PHASE_THREE).await;
    wait_for_traffic(sent.load(Ordering::Relaxed) + 50).await;
    stop.store(true, Ordering::Relaxed);

    let mut total = 0;
    for sender in senders {
        let statuses = sender.await.unwrap();
        total += statuses.len();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a signal was refused: {statuses:?}"
        );
    }
    let guard = replicas[0].read().await;
    let messages = guard.as_ref().unwrap().stream_messages().await;
    assert_eq!(messages.len(), total);
    let keys: std::collections::HashSet<&str> = messages
        .iter()
        .map(|m| m.body["auth"]["key"].as_str().unwrap())
        .collect();
    assert!(keys.contains(fingerprint(OLD.as_bytes()).as_str()));
    assert!(keys.contains(fingerprint(NEW.as_bytes()).as_str()));
    println!("rotation: {total} signals, all accepted, across two rolling restarts");
}

fn sign_with(secret: &str, signal: &serde_json::Value) -> Vec<u8> {
    let text = serde_json::to_vec(signal).unwrap();
    let mut object = tv_ingress::json::parse_object(&text).unwrap();
    tv_ingress::auth::sign_body(
        &tv_ingress::auth::Key::from_bytes(secret.as_bytes()),
        &mut object,
    );
    tv_ingress::json::to_python_bytes(&tv_ingress::json::Value::Object(object))
}
