//! Several receivers, one stream: JetStream's duplicate window is the only dedupe, so every
//! replica agrees without sharing memory.

mod common;

use common::*;
use std::collections::HashMap;

#[tokio::test(flavor = "multi_thread")]
async fn two_receivers_given_the_same_signals_at_once_store_each_exactly_once() {
    let nats = nats().await;
    let a = TestApp::spawn(&nats.url()).await;
    let b = TestApp::spawn(&nats.url()).await;
    const SIGNALS: usize = 200;

    let mut tasks = Vec::new();
    for n in 0..SIGNALS {
        let body = sign_in_body(&unique_signal(n));
        for addr in [a.addr, b.addr] {
            let body = body.clone();
            tasks.push(tokio::spawn(async move {
                request(addr, "POST", "/webhook", &[], body.into()).await
            }));
        }
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    let mut accepted_keys = Vec::new();
    for task in tasks {
        let r = task.await.unwrap();
        *statuses.entry(r.status).or_default() += 1;
        if r.status == 200 {
            accepted_keys.push(r.body["idempotency_key"].as_str().unwrap().to_owned());
        }
    }

    assert_eq!(statuses.get(&200), Some(&SIGNALS), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&SIGNALS), "{statuses:?}");
    let messages = a.stream_messages().await;
    assert_eq!(messages.len(), SIGNALS);
    let mut stored: Vec<String> = messages
        .iter()
        .map(|m| m.headers["Nats-Msg-Id"].clone())
        .collect();
    stored.sort();
    accepted_keys.sort();
    assert_eq!(stored, accepted_keys);
}
