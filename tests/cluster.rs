//! A 3-node JetStream cluster on loopback, a stream with 3 replicas, and two receivers given all
//! three URLs: duplicate storms, losing the stream leader, losing a receiver.

mod common;

use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tv_ingress::natsd::NatsCluster;
use tv_ingress::SystemClock;

async fn cluster_apps(cluster: &NatsCluster) -> (TestApp, TestApp) {
    let urls = cluster.urls();
    let settings = [
        ("NATS_STREAM_REPLICAS", "3"),
        ("SHUTDOWN_GRACE_SECONDS", "5"),
    ];
    let a = TestApp::start(config(&urls, &settings), Arc::new(SystemClock)).await;
    a.wait_ready().await;
    let b = TestApp::start(config(&urls, &settings), Arc::new(SystemClock)).await;
    b.wait_ready().await;
    (a, b)
}

async fn stream_leader(urls: &str) -> String {
    let client = async_nats::ConnectOptions::new()
        .connect(urls.split(',').collect::<Vec<_>>())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("SIGNALS").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    info.cluster
        .as_ref()
        .and_then(|c| c.leader.clone())
        .expect("a leader")
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_storm_on_a_replicated_stream_stores_each_signal_once() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let (a, b) = cluster_apps(&cluster).await;
    const SIGNALS: usize = 300;

    let Storm { statuses, .. } = duplicate_storm(&[a.addr, b.addr], SIGNALS).await;
    let retries = metric(
        &a.get("/metrics").await.text,
        "tv_ingress_publish_retries_total",
    ) + metric(
        &b.get("/metrics").await.text,
        "tv_ingress_publish_retries_total",
    );
    println!("duplicate storm: {statuses:?}, publish retries (10158 and others): {retries}");

    assert_eq!(statuses.get(&200), Some(&SIGNALS), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&SIGNALS), "{statuses:?}");
    assert_eq!(a.stream_messages().await.len(), SIGNALS);
}

/// What happened to one signal.
#[derive(Debug, Clone)]
struct Sent {
    key_n: usize,
    body: Vec<u8>,
    /// 0 when no receiver answered at all.
    status: u16,
    /// What the answer said, or the last transport error when there was none (for failures).
    answer: String,
}

/// Posts unique signals from `workers` tasks until `stop`, alternating receivers and failing
/// over to the other one on a connection error, as a load balancer would.
fn load(
    addrs: Vec<SocketAddr>,
    workers: usize,
    stop: Arc<AtomicBool>,
    first_503: Arc<std::sync::Mutex<Option<(Instant, Instant)>>>,
) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
    (0..workers)
        .map(|w| {
            let (addrs, stop, window) = (addrs.clone(), stop.clone(), first_503.clone());
            tokio::spawn(async move {
                let mut sent = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key_n = w * 1_000_000 + n;
                    let body = sign_in_body(&unique_signal(key_n));
                    let mut status = 0;
                    let mut answer = String::new();
                    for attempt in 0..addrs.len() * 5 {
                        let addr = addrs[(n + attempt) % addrs.len()];
                        match try_request(addr, "POST", "/webhook", &[], body.clone().into()).await
                        {
                            Ok(r) => {
                                status = r.status;
                                answer = r.text;
                                break;
                            }
                            Err(e) => answer = format!("{addr}: {e}"),
                        }
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if status == 503 {
                        let now = Instant::now();
                        let mut w = window.lock().unwrap();
                        *w = Some(match *w {
                            None => (now, now),
                            Some((first, _)) => (first, now),
                        });
                    }
                    sent.push(Sent {
                        key_n,
                        body,
                        status,
                        answer,
                    });
                    n += 1;
                }
                sent
            })
        })
        .collect()
}

/// Resends every 503 as TradingView does (5 s later, up to three times) and checks that every
/// signal answered 200 (at first or on a resend) is in the stream exactly once.
async fn settle_and_check(app: &TestApp, addrs: &[SocketAddr], sent: Vec<Sent>) -> (usize, usize) {
    let mut unavailable: Vec<Sent> = sent.iter().filter(|s| s.status == 503).cloned().collect();
    let first_503s = unavailable.len();
    for round in 0..3 {
        if unavailable.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut still = Vec::new();
        for s in unavailable {
            let addr = addrs[round % addrs.len()];
            let r = request(addr, "POST", "/webhook", &[], s.body.clone().into()).await;
            assert!(
                matches!(r.status, 200 | 409 | 503),
                "resend answered {}: {}",
                r.status,
                r.text
            );
            if r.status == 503 {
                still.push(s);
            }
        }
        unavailable = still;
    }
    assert!(
        unavailable.is_empty(),
        "{} signals still unavailable after three resends",
        unavailable.len()
    );

    let messages = app.stream_messages().await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    for m in &messages {
        *stored
            .entry(m.body["order_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(stored.values().all(|&c| c == 1), "a signal stored twice");
    for s in &sent {
        assert!(
            matches!(s.status, 200 | 503),
            "signal {} answered {}: {}",
            s.key_n,
            s.status,
            s.answer
        );
        let order_id = serde_json::from_slice::<serde_json::Value>(&s.body).unwrap()["order_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(
            stored.get(&order_id),
            Some(&1),
            "signal {} (answered {}) not stored exactly once",
            s.key_n,
            s.status
        );
    }
    (messages.len(), first_503s)
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_the_stream_leader_loses_no_accepted_signal() {
    let mut cluster = NatsCluster::start(3).await.unwrap();
    let (a, b) = cluster_apps(&cluster).await;
    let addrs = vec![a.addr, b.addr];
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new(std::sync::Mutex::new(None));
    let workers = load(addrs.clone(), 4, stop.clone(), window.clone());

    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = stream_leader(&cluster.urls()).await;
    let killed_at = Instant::now();
    cluster.node_named(&leader).unwrap().kill().await;
    println!("killed stream leader {leader}");
    tokio::time::sleep(Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);

    let mut sent = Vec::new();
    for w in workers {
        sent.extend(w.await.unwrap());
    }
    let window = *window.lock().unwrap();
    let (stored, first_503s) = settle_and_check(&a, &addrs, sent.clone()).await;
    let new_leader = stream_leader(&cluster.urls()).await;
    assert_ne!(new_leader, leader);
    match window {
        Some((first, last)) => println!(
            "leader loss: {} signals sent, {first_503s} answered 503 between {:?} and {:?} after the kill ({:?} of 503s), {stored} stored, new leader {new_leader}",
            sent.len(),
            first.duration_since(killed_at),
            last.duration_since(killed_at),
            last.duration_since(first)
        ),
        None => println!(
            "leader loss: {} signals sent, no 503 at all, {stored} stored, new leader {new_leader}",
            sent.len()
        ),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn losing_a_receiver_mid_load_keeps_the_other_answering() {
    let cluster = NatsCluster::start(3).await.unwrap();
    let urls = cluster.urls();
    let a = TestApp::start(
        config(&urls, &[("NATS_STREAM_REPLICAS", "3")]),
        Arc::new(SystemClock),
    )
    .await;
    a.wait_ready().await;
    let mut b = BinaryApp::start(&urls, &[("NATS_STREAM_REPLICAS", "3")]).await;
    let addrs = vec![a.addr, b.addr];
    let stop = Arc::new(AtomicBool::new(false));
    let window = Arc::new(std::sync::Mutex::new(None));
    let workers = load(addrs.clone(), 4, stop.clone(), window);

    tokio::time::sleep(Duration::from_secs(1)).await;
    // The receiver process dies (SIGKILL) with requests in flight.
    b.kill().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);

    let mut sent = Vec::new();
    for w in workers {
        sent.extend(w.await.unwrap());
    }
    let after_loss = sent.len();
    assert!(after_loss > 0);
    // Every signal got an answer from a living receiver, and every 200 is stored once. A request
    // cut off mid-flight may have been stored without an answer; the sender's retry then gets 409,
    // which settle_and_check reports as not 200/503, so count those separately.
    let cut_off: Vec<&Sent> = sent.iter().filter(|s| s.status == 409).collect();
    println!(
        "receiver loss: {} signals, {} answered 409 after a cut-off request",
        sent.len(),
        cut_off.len()
    );
    let answered: Vec<Sent> = sent.iter().filter(|s| s.status != 409).cloned().collect();
    let (stored, _) = settle_and_check(&a, &[a.addr], answered).await;
    assert_eq!(stored, sent.len());
}
