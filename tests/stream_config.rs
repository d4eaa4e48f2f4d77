//! The stream is created from nats/stream.json, or an existing one is verified; one that
//! contradicts the receiver's needs stops the start with a message saying what and how to fix it.

mod common;

use async_nats::jetstream::stream::{Config as StreamConfig, StorageType};
use common::*;
use std::sync::Arc;
use std::time::Duration;
use tv_ingress::{RunError, SystemClock};

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_is_created_from_the_shipped_definition() {
    let nats = nats().await;
    let _app = TestApp::spawn(&nats.url()).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let info = js
        .get_stream("SIGNALS")
        .await
        .unwrap()
        .cached_info()
        .clone();
    assert_eq!(info.config.subjects, ["signals.>"]);
    assert_eq!(info.config.storage, StorageType::File);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    assert!(info.config.deny_delete);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_stream_with_a_short_duplicate_window_stops_the_start() {
    let nats = nats().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(StreamConfig {
        name: "SIGNALS".into(),
        subjects: vec!["signals.>".into()],
        storage: StorageType::File,
        duplicate_window: Duration::from_secs(10),
        ..Default::default()
    })
    .await
    .unwrap();

    let app = TestApp::start(config(&nats.url(), &[]), Arc::new(SystemClock)).await;
    let outcome = app.outcome(Duration::from_secs(10)).await;

    let Err(RunError::Stream(error)) = outcome else {
        panic!("expected a stream error, got {outcome:?}");
    };
    let message = error.to_string();
    assert!(
        message.contains("duplicate window is 10s but must be at least 65s"),
        "{message}"
    );
    assert!(
        message.contains("nats stream edit SIGNALS --dupe-window"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_stream_that_misses_the_subjects_or_uses_memory_is_refused() {
    let nats = nats().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(StreamConfig {
        name: "SIGNALS".into(),
        subjects: vec!["other.>".into()],
        storage: StorageType::Memory,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();

    let app = TestApp::start(config(&nats.url(), &[]), Arc::new(SystemClock)).await;
    let message = app
        .outcome(Duration::from_secs(10))
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("do not cover `signals.>`"), "{message}");
    assert!(message.contains("memory storage"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_stream_makes_the_receiver_unready_until_it_is_recreated() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.delete_stream("SIGNALS").await.unwrap();

    let r = app.post_signed(&unique_signal(0)).await;
    assert_eq!(r.status, 503, "{}", r.text);
    let ready = app.get("/ready").await;
    assert_eq!(ready.status, 503);
    assert!(
        ready.body["reason"].as_str().unwrap().contains("stream"),
        "{}",
        ready.text
    );

    // Not re-created behind the operator's back: the dedupe history went with it.
    let definition = tv_ingress::publish::StreamSpec {
        name: "SIGNALS".into(),
        subject_prefix: "signals".into(),
        replicas: 1,
        min_duplicate_window: app.config.min_duplicate_window(),
        window_reason: String::new(),
    }
    .definition()
    .unwrap();
    assert!(js.get_stream("SIGNALS").await.is_err());
    js.create_stream(definition).await.unwrap();
    app.wait_ready().await;
    assert_eq!(app.post_signed(&unique_signal(1)).await.status, 200);
}
