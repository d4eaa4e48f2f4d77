//! What the receiver makes of payloads: normalization, exact decimals, subjects, limits, routes.

mod common;

use chrono::{SecondsFormat, Utc};
use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread")]
async fn one_instant_spelled_z_or_offset_is_one_signal() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let instant = Utc::now();
    let mut z = signal("AAPL", "BUY", json!(1));
    z["timestamp"] = json!(instant.to_rfc3339_opts(SecondsFormat::Micros, true));
    let mut offset = z.clone();
    offset["timestamp"] = json!(instant.to_rfc3339_opts(SecondsFormat::Micros, false));
    assert!(offset["timestamp"].as_str().unwrap().ends_with("+00:00"));

    let first = app.post_signed(&z).await;
    let second = app.post_signed(&offset).await;

    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!(second.status, 409, "{}", second.text);
    assert_eq!(app.stream_messages().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_keys_are_malformed_even_when_signed() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    // Sign a body that has one quantity, then smuggle in a second one.
    let signed = String::from_utf8(sign_in_body(&signal("AAPL", "BUY", json!(1)))).unwrap();
    let smuggled = signed.replacen("\"quantity\": 1", "\"quantity\": 1, \"quantity\": 1000", 1);
    let nested = sign_in_body(&json!({"ticker": "AAPL", "x": {"a": 1}}))
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .replacen("{\"a\": 1}", "{\"a\": 1, \"a\": 2}", 1);
    let signature_twice = signed.replacen("{", "{\"signature\": \"\", ", 1);

    for (description, body) in [
        ("two quantity keys", smuggled),
        ("duplicate key at depth", nested),
        ("two signature keys", signature_twice),
    ] {
        let r = app.post_raw(body, &[]).await;
        assert_eq!(r.status, 400, "{description}: {}", r.text);
        assert_eq!(r.error(), "malformed_json", "{description}");
    }
    assert!(app.stream_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn tradingview_style_payloads_are_normalized_exactly() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let cases = [
        (
            "lower-case buy",
            signal("AAPL", "buy", json!(10)),
            "BUY",
            "10",
        ),
        (
            "fractional number",
            signal("BTCUSD", "sell", json!(0.1)),
            "SELL",
            "0.1",
        ),
        (
            "numeric string",
            signal("ETHUSD", "Buy", json!("0.123456789")),
            "BUY",
            "0.123456789",
        ),
        (
            "exponent",
            signal("SOLUSD", "BUY", json!(1.5e-7)),
            "BUY",
            "0.00000015",
        ),
    ];
    for (description, s, _, _) in &cases {
        let r = app
            .post_raw(
                sign_in_body(s),
                &[("content-type", "text/plain; charset=utf-8")],
            )
            .await;
        assert_eq!(r.status, 200, "{description}: {}", r.text);
    }
    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), cases.len());
    for (m, (description, _, action, quantity)) in messages.iter().zip(&cases) {
        assert_eq!(m.body["action"], *action, "{description}");
        assert_eq!(m.body["quantity"], *quantity, "{description}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tickers_map_to_safe_subjects() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    for ticker in ["BRK.B", "ES1!", "NQ*>", "BTC_USD"] {
        let r = app.post_signed(&signal(ticker, "BUY", json!(1))).await;
        assert_eq!(r.status, 200, "{ticker}: {}", r.text);
    }
    let subjects: Vec<String> = app
        .stream_messages()
        .await
        .into_iter()
        .map(|m| format!("{} {}", m.subject, m.body["ticker"].as_str().unwrap()))
        .collect();
    assert_eq!(
        subjects,
        [
            "signals.BRK_2EB BRK.B",
            "signals.ES1_21 ES1!",
            "signals.NQ_2A_3E NQ*>",
            "signals.BTC_5FUSD BTC_USD"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn order_types_carry_their_prices() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let mut limit = signal("AAPL", "BUY", json!(5));
    limit["order_type"] = json!("limit");
    limit["limit_price"] = json!("187.50");
    let r = app.post_signed(&limit).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let mut no_price = signal("AAPL", "BUY", json!(5));
    no_price["order_type"] = json!("STOP_LIMIT");
    no_price["stop_price"] = json!(180);
    let r = app.post_signed(&no_price).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "limit_price");

    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body["order_type"], "LIMIT");
    assert_eq!(messages[0].body["limit_price"], "187.5");
    assert!(messages[0].body.get("stop_price").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_413_before_anything_else() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let mut big = signal("AAPL", "BUY", json!(1));
    big["comment"] = json!("x".repeat(70_000));
    let r = app.post_signed(&big).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.error(), "payload_too_large");

    // Streamed without a Content-Length: cut off once past the limit.
    let chunked = chunked_post(app.addr, 200_000).await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(app.stream_messages().await.is_empty());
}

/// Posts `size` bytes with chunked transfer encoding and returns the raw answer.
async fn chunked_post(addr: std::net::SocketAddr, size: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 8192];
    let mut sent = 0;
    while sent < size {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break; // the server may close as soon as it has answered
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_exact_routes_exist() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let body = sign_in_body(&signal("AAPL", "BUY", json!(1)));
    let cases: &[(&str, &str, u16, &str)] = &[
        ("GET", "/webhook", 405, "method_not_allowed"),
        ("PUT", "/webhook", 405, "method_not_allowed"),
        ("DELETE", "/webhook", 405, "method_not_allowed"),
        ("POST", "/webhook/", 404, "not_found"),
        ("POST", "/Webhook", 404, "not_found"),
        ("POST", "/WEBHOOK", 404, "not_found"),
        ("POST", "//webhook", 404, "not_found"),
        ("POST", "/webhook%2F", 404, "not_found"),
        ("POST", "/%77ebhook", 404, "not_found"),
        ("POST", "/health", 405, "method_not_allowed"),
        ("GET", "/nope", 404, "not_found"),
    ];
    for (method, path, status, code) in cases {
        let r = request(app.addr, method, path, &[], body.clone().into()).await;
        assert_eq!(r.status, *status, "{method} {path}: {}", r.text);
        assert_eq!(r.error(), *code, "{method} {path}");
        assert!(
            r.headers.contains_key("x-correlation-id"),
            "{method} {path}"
        );
    }
    let head = request(app.addr, "HEAD", "/webhook", &[], bytes::Bytes::new()).await;
    assert_eq!(head.status, 405);
    assert!(app.stream_messages().await.is_empty());
}
