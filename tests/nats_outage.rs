//! The broker goes away and comes back: the receiver answers 503 quickly while it is gone, says
//! so on /ready, and recovers by itself.

mod common;

use common::*;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tv_ingress::natsd::{free_port, NatsServer, ServerSpec};
use tv_ingress::SystemClock;

#[tokio::test(flavor = "multi_thread")]
async fn nats_stopped_gives_503_within_the_deadline_and_recovers_without_restart() {
    let mut nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    assert_eq!(app.post_signed(&unique_signal(0)).await.status, 200);

    nats.kill().await;
    app.wait_for_ready_status(503, Duration::from_secs(10))
        .await;
    let ready = app.get("/ready").await;
    assert_eq!(ready.body["status"], "not_ready");
    assert!(ready.body["reason"].as_str().unwrap().contains("NATS"));

    let started = Instant::now();
    let r = app.post_signed(&unique_signal(1)).await;
    let took = started.elapsed();
    assert_eq!(r.status, 503, "{}", r.text);
    assert_eq!(r.error(), "unavailable");
    assert_eq!(r.headers["retry-after"], "2");
    assert!(
        took < app.config.request_deadline + Duration::from_millis(500),
        "{took:?}"
    );
    // The 503 body says nothing internal.
    assert!(!r.text.contains("nats://"), "{}", r.text);

    nats.restart().await.expect("nats restarts");
    app.wait_ready().await;
    let r = app.post_signed(&unique_signal(2)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ids: Vec<String> = app
        .stream_messages()
        .await
        .iter()
        .map(signal_number)
        .collect();
    assert_eq!(ids, ["0", "2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_started_before_nats_becomes_ready_when_nats_arrives() {
    let port = free_port();
    let store = tempfile::tempdir().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let app = TestApp::start(config(&url, &[]), Arc::new(SystemClock)).await;

    let health = app.get("/health").await;
    assert_eq!(health.status, 200);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, 503);
    assert_eq!(app.post_signed(&unique_signal(0)).await.status, 503);

    let mut nats = NatsServer::with_spec(ServerSpec {
        name: "late".into(),
        port,
        monitor_port: free_port(),
        store_dir: store.path().join("js"),
        config: None,
    })
    .unwrap();
    nats.launch().await.unwrap();
    app.wait_ready().await;
    assert_eq!(app.post_signed(&unique_signal(1)).await.status, 200);
    assert_eq!(app.stream_messages().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ack_delayed_past_one_attempt_is_retried_with_the_same_id_and_answered_200() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let body = sign_in_body(&unique_signal(0));

    // Freeze the broker so the first attempt's PubAck cannot arrive within its 1 s wait; the
    // retry (same Nats-Msg-Id) is answered "duplicate" once the broker resumes, which means the
    // first attempt stored it.
    nats.freeze();
    let addr = app.addr;
    let pending =
        tokio::spawn(async move { request(addr, "POST", "/webhook", &[], body.into()).await });
    // The first attempt waits for its PubAck...
    app.wait_for_metric("tv_ingress_pubacks_awaited 1").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    nats.thaw();
    let r = pending.await.unwrap();

    assert_eq!(r.status, 200, "{}", r.text);
    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].sequence, r.body["seq"].as_u64().unwrap());
    // ...and neither the abandoned attempt nor the answered one is still waiting.
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("tv_ingress_pubacks_awaited 0\n"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("tv_ingress_publish_retries_total 0\n"),
        "the first attempt was not retried: {metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_in_flight_requests_finish_and_turns_ready_off() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    // A request held in flight by a frozen broker.
    nats.freeze();
    let addr = app.addr;
    let body = sign_in_body(&unique_signal(0));
    let pending =
        tokio::spawn(async move { request(addr, "POST", "/webhook", &[], body.into()).await });
    // Wait until the request is being processed: /metrics counts it (and the scrape itself).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !app
        .get("/metrics")
        .await
        .text
        .contains("tv_ingress_requests_in_flight 2")
    {
        assert!(Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let stopping = tokio::spawn(app.stop());
    let r = pending.await.unwrap();
    // Answered, not cut off: 503 after the deadline, since the broker never acknowledged.
    assert_eq!(r.status, 503, "{}", r.text);
    nats.thaw();
    assert!(stopping.await.unwrap().is_ok());
    // The listener is closed once shutdown has begun.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
