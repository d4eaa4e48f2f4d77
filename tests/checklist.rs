//! The original service's test checklist, line by line, with the stream checked after each.

mod common;

use chrono::{Duration as ChronoDuration, Utc};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_signed_webhook_is_accepted_and_published_once() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;

    let sent = signal("AAPL", "BUY", json!(10));
    let r = app.post_signed(&sent).await;

    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["status"], "accepted");
    assert_eq!(r.body["message"], "Webhook validated: BUY 10 AAPL");
    assert_eq!(r.body["stream"], "SIGNALS");
    assert_eq!(r.body["seq"], 1);
    let key = r.body["idempotency_key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 32);
    let correlation = r.body["correlation_id"].as_str().unwrap().to_owned();
    assert_eq!(r.headers["x-correlation-id"], correlation.as_str());

    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert_eq!(m.subject, "signals.AAPL");
    assert_eq!(m.headers["Nats-Msg-Id"], key);
    assert_eq!(m.headers["Content-Type"], "application/json");
    assert_eq!(m.headers["Tv-Ingress-Correlation-Id"], correlation);
    assert_eq!(m.body["schema_version"], 1);
    assert_eq!(m.body["ticker"], "AAPL");
    assert_eq!(m.body["action"], "BUY");
    assert_eq!(m.body["quantity"], "10");
    assert_eq!(m.body["order_type"], "MARKET");
    assert_eq!(m.body["idempotency_key"], key.as_str());
    assert_eq!(m.body["correlation_id"], correlation.as_str());
    assert_eq!(m.body["auth"]["scheme"], "hmac-body");
    assert_eq!(m.body["auth"]["key"].as_str().unwrap().len(), 8);
    assert!(m.body.get("signature").is_none());
    let sent_at: chrono::DateTime<Utc> = sent["timestamp"].as_str().unwrap().parse().unwrap();
    let stored_at: chrono::DateTime<Utc> = m.body["timestamp"].as_str().unwrap().parse().unwrap();
    assert_eq!(sent_at, stored_at);
    assert!(m.body["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(m.body["received_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_webhooks_answer_their_code_and_publish_nothing() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;

    let mut wrong_signature = sign_in_body(&signal("AAPL", "BUY", json!(10)));
    let at = wrong_signature.len() - 5;
    wrong_signature[at] = if wrong_signature[at] == b'0' {
        b'1'
    } else {
        b'0'
    };
    let old = {
        let mut s = signal("AAPL", "BUY", json!(10));
        s["timestamp"] = json!(rfc3339(Utc::now() - ChronoDuration::seconds(45)));
        sign_in_body(&s)
    };
    let future = {
        let mut s = signal("AAPL", "BUY", json!(10));
        s["timestamp"] = json!(rfc3339(Utc::now() + ChronoDuration::seconds(60)));
        sign_in_body(&s)
    };
    let missing_fields = sign_in_body(&json!({"ticker": "AAPL", "timestamp": now()}));

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "invalid signature",
            wrong_signature,
            401,
            "invalid_signature",
        ),
        (
            "no signature at all",
            serde_json::to_vec(&signal("AAPL", "BUY", json!(1))).unwrap(),
            401,
            "invalid_signature",
        ),
        ("timestamp older than 30 s", old, 400, "stale_timestamp"),
        ("timestamp in the future", future, 400, "future_timestamp"),
        (
            "malformed JSON",
            b"{\"ticker\": \"AAPL\",".to_vec(),
            400,
            "malformed_json",
        ),
        (
            "missing required fields",
            missing_fields,
            422,
            "invalid_payload",
        ),
    ];
    for (description, body, status, code) in cases {
        let r = app
            .post_raw(body, &[("content-type", "application/json")])
            .await;
        assert_eq!(r.status, status, "{description}: {}", r.text);
        assert_eq!(r.error(), code, "{description}");
        assert_eq!(r.body["status"], "rejected", "{description}");
        assert!(
            r.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{description}"
        );
        assert_eq!(
            r.body["correlation_id"].as_str(),
            r.headers["x-correlation-id"].to_str().ok(),
            "{description}"
        );
    }
    assert!(app.stream_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_fields_are_listed_by_name() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let r = app
        .post_signed(&json!({"ticker": "AAPL", "timestamp": now(), "colour": "red"}))
        .await;
    assert_eq!(r.status, 422);
    let fields: Vec<&str> = r.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["colour", "action", "quantity", "order_type"]);
    assert!(app.stream_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_duplicate_webhook_is_409_and_stored_once() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let body = sign_in_body(&signal("AAPL", "BUY", json!(10)));

    let first = app.post_raw(body.clone(), &[]).await;
    let second = app.post_raw(body, &[]).await;

    assert_eq!(first.status, 200);
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(second.error(), "duplicate");
    assert_eq!(
        second.body["idempotency_key"],
        first.body["idempotency_key"]
    );
    assert_eq!(app.stream_messages().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn health_ready_and_root_answer() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;

    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.body["status"], "ok");
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["status"], "ready");
    let root = app.get("/").await;
    assert_eq!(root.status, 200);
    assert_eq!(root.body["name"], "tv-ingress");
    assert!(root.body["endpoints"]["POST /webhook"].is_string());
    for r in [&health, &ready, &root] {
        assert!(r.headers.contains_key("x-correlation-id"));
    }
}
