//! `/metrics`: Prometheus exposition with counts that match the traffic.

mod common;

use common::*;
use serde_json::json;

/// The value of the series whose line starts with `series` (name and labels, exactly).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_happened() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let body = sign_in_body(&unique_signal(0));
    assert_eq!(app.post_raw(body.clone(), &[]).await.status, 200);
    assert_eq!(app.post_raw(body, &[]).await.status, 409);
    assert_eq!(app.post_signed(&unique_signal(1)).await.status, 200);
    assert_eq!(app.post_raw("{}", &[]).await.status, 401);
    assert_eq!(app.post_signed(&json!({"ticker": "X"})).await.status, 422);
    assert_eq!(app.get("/nope/../../etc/passwd").await.status, 404);

    let r = app.get("/metrics").await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let t = &r.text;
    let cases = [
        (
            r#"tv_ingress_requests_total{endpoint="webhook",outcome="accepted",status="200"}"#,
            2.0,
        ),
        (
            r#"tv_ingress_requests_total{endpoint="webhook",outcome="duplicate",status="409"}"#,
            1.0,
        ),
        (
            r#"tv_ingress_requests_total{endpoint="webhook",outcome="invalid_signature",status="401"}"#,
            1.0,
        ),
        (
            r#"tv_ingress_requests_total{endpoint="webhook",outcome="invalid_payload",status="422"}"#,
            1.0,
        ),
        (
            r#"tv_ingress_requests_total{endpoint="other",outcome="not_found",status="404"}"#,
            1.0,
        ),
        (
            r#"tv_ingress_publish_duration_seconds_count{result="stored"}"#,
            2.0,
        ),
        (
            r#"tv_ingress_publish_duration_seconds_count{result="duplicate"}"#,
            1.0,
        ),
        ("tv_ingress_duplicates_total", 1.0),
        ("tv_ingress_nats_connected", 1.0),
        ("tv_ingress_stream_ready", 1.0),
        ("tv_ingress_halted", 0.0),
        ("tv_ingress_requests_in_flight", 1.0),
        ("tv_ingress_pubacks_awaited", 0.0),
        (r#"tv_ingress_build_info{version="0.1.0"}"#, 1.0),
    ];
    for (series, expected) in cases {
        assert_eq!(value(t, series), Some(expected), "{series}\n{t}");
    }
    assert!(t.trim_end().ends_with("# EOF"));

    // NATS gone: the connection gauge says so.
    let mut nats = nats;
    nats.kill().await;
    app.wait_for_ready_status(503, std::time::Duration::from_secs(10))
        .await;
    let t = app.get("/metrics").await.text;
    assert_eq!(value(&t, "tv_ingress_nats_connected"), Some(0.0));
}
