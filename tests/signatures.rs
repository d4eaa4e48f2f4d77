//! Both signature schemes over HTTP: CPython's vectors, the original README's client recipe run
//! with python3, the header scheme, tampering and mixing.

mod common;

use common::*;
use serde_json::json;
use std::sync::Arc;
use tv_ingress::FixedClock;

#[derive(serde::Deserialize)]
struct Vectors {
    secret: String,
    vectors: Vec<Vector>,
}

#[derive(serde::Deserialize)]
struct Vector {
    sent: String,
}

fn vectors() -> Vectors {
    serde_json::from_str(include_str!("data/seed-signature.json")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn cpython_vectors_are_accepted_as_sent_and_a_flipped_byte_is_not() {
    let v = vectors();
    assert_eq!(
        v.secret, SECRET,
        "the harness secret is the vectors' secret"
    );
    let nats = nats().await;
    // The vectors are timestamped 2025-12-26T12:30:00Z; pin the clock there.
    let clock = FixedClock::new("2025-12-26T12:30:00.5Z".parse().unwrap());
    let app = TestApp::start(config(&nats.url(), &[]), Arc::new(clock)).await;
    app.wait_ready().await;

    for (i, vector) in v.vectors.iter().enumerate() {
        // Flipping the last bit of any single byte must fail and publish nothing.
        for at in (0..vector.sent.len()).step_by(7) {
            let mut tampered = vector.sent.clone().into_bytes();
            tampered[at] ^= 1;
            let r = app.post_raw(tampered, &[]).await;
            assert!(
                r.status == 400 || r.status == 401,
                "vector {i}, byte {at} flipped: {} {}",
                r.status,
                r.text
            );
        }
        let r = app
            .post_raw(vector.sent.clone(), &[("content-type", "text/plain")])
            .await;
        assert_eq!(r.status, 200, "vector {i}: {}", r.text);
    }
    let messages = app.stream_messages().await;
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(
        subjects,
        ["signals.AAPL", "signals.BRK_2EB", "signals.ES1_21"]
    );
    assert_eq!(messages[1].body["quantity"], "0.5");
    assert_eq!(messages[1].body["limit_price"], "412.35");
    assert_eq!(messages[1].body["action"], "SELL");
    assert_eq!(
        messages[2].body["comment"],
        "caf\u{e9} \u{2014} \"quoted\" \\ /slash\tTab \u{1F680}"
    );
    assert_eq!(messages[2].body["quantity"], "2");
}

/// The client recipe from the original README, verbatim but for the secret.
const PYTHON_RECIPE: &str = r#"
import json
import hmac
import hashlib
from datetime import datetime, timezone

payload = {
    'ticker': 'AAPL',
    'action': 'BUY',
    'quantity': 10,
    'order_type': 'MARKET',
    'timestamp': datetime.now(timezone.utc).isoformat(),
    'signature': ''
}

secret = 'your-webhook-secret-here'
payload_bytes = json.dumps(payload).encode()
signature = hmac.new(secret.encode(), payload_bytes, hashlib.sha256).hexdigest()
payload['signature'] = signature

print(json.dumps(payload, indent=2))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_original_python_client_recipe_is_accepted() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let script = PYTHON_RECIPE.replace("your-webhook-secret-here", SECRET);
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\n  \"ticker\": \"AAPL\""));

    let r = app
        .post_raw(out.stdout, &[("content-type", "application/json")])
        .await;

    assert_eq!(r.status, 200, "{}", r.text);
    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body["quantity"], "10");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_header_scheme_signs_the_raw_bytes() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let body = serde_json::to_vec(&signal("MSFT", "SELL", json!("2.5"))).unwrap();

    let r = app.post_header_signed(&body).await;
    assert_eq!(r.status, 200, "{}", r.text);

    // The same signature over a re-formatted body fails.
    let signature =
        tv_ingress::auth::sign_header(&tv_ingress::auth::Key::from_bytes(SECRET.as_bytes()), &body);
    let mut reformatted = body.clone();
    reformatted.push(b'\n');
    let r = app
        .post_raw(reformatted, &[("x-signature", &signature)])
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.error(), "invalid_signature");

    let cases: Vec<(&str, String)> = vec![
        (
            "no sha256= prefix",
            signature.trim_start_matches("sha256=").to_string(),
        ),
        (
            "upper-case hex",
            signature.to_uppercase().replace("SHA256=", "sha256="),
        ),
        ("too short", signature[..40].to_string()),
        ("empty", String::new()),
    ];
    for (description, header) in cases {
        let r = app
            .post_raw(body.clone(), &[("x-signature", &header)])
            .await;
        assert_eq!(r.status, 401, "{description}");
        assert_eq!(r.error(), "invalid_signature", "{description}");
    }

    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body["auth"]["scheme"], "hmac-header");
    assert_eq!(messages[0].body["quantity"], "2.5");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_mixing_both_schemes_is_refused() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let body = sign_in_body(&signal("AAPL", "BUY", json!(1)));
    let header =
        tv_ingress::auth::sign_header(&tv_ingress::auth::Key::from_bytes(SECRET.as_bytes()), &body);

    let r = app.post_raw(body, &[("x-signature", &header)]).await;

    assert_eq!(r.status, 401);
    assert!(r.body["detail"]
        .as_str()
        .unwrap()
        .contains("more than one scheme"));
    assert!(app.stream_messages().await.is_empty());
}
