//! Several receivers, one stream: JetStream's duplicate window is the only dedupe, so every
//! replica agrees without sharing memory.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread")]
async fn two_receivers_given_the_same_signals_at_once_store_each_exactly_once() {
    let nats = nats().await;
    let a = TestApp::spawn(&nats.url()).await;
    let b = TestApp::spawn(&nats.url()).await;
    const SIGNALS: usize = 200;

    let Storm {
        statuses,
        accepted_keys,
    } = duplicate_storm(&[a.addr, b.addr], SIGNALS).await;

    assert_eq!(statuses.get(&200), Some(&SIGNALS), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&SIGNALS), "{statuses:?}");
    let messages = a.stream_messages().await;
    assert_eq!(messages.len(), SIGNALS);
    let mut stored: Vec<String> = messages
        .iter()
        .map(|m| m.headers["Nats-Msg-Id"].clone())
        .collect();
    stored.sort();
    assert_eq!(stored, accepted_keys);
}
