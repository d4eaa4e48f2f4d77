//! Slow and greedy clients: a sender trickling headers or a body one byte a second is cut off
//! (connection closed, or 408 `request_timeout` for a body) while other clients are served
//! normally; connections beyond `MAX_CONNECTIONS` are closed at once, and held ones do not lock
//! fresh clients out for longer than the header read timeout.

mod common;

use common::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tv_ingress::SystemClock;

/// The order number of the trickled signal (the steady sender counts from 0).
const TRICKLED: usize = 999_999;

async fn app_with(nats_url: &str, overrides: &[(&str, &str)]) -> TestApp {
    let app = TestApp::start(config(nats_url, overrides), Arc::new(SystemClock)).await;
    app.wait_ready().await;
    app
}

/// Other clients, meanwhile: a signed signal every 100 ms on a fresh connection, each answer's
/// status and latency recorded, until `stop` is set.
fn steady_sender(
    addr: SocketAddr,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> JoinHandle<Vec<(u16, Duration)>> {
    tokio::spawn(async move {
        let mut answers = Vec::new();
        let mut n = 0;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let body = sign_in_body(&unique_signal(n));
            n += 1;
            let started = Instant::now();
            let status = try_request(addr, "POST", "/webhook", &[], body.into())
                .await
                .map_or(0, |r| r.status);
            answers.push((status, started.elapsed()));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        answers
    })
}

/// Sends `bytes` one per second until the server closes the connection or answers; returns what
/// it answered (possibly nothing), how long it took, and how many bytes had been sent.
async fn trickle(addr: SocketAddr, bytes: &[u8], start_at: usize) -> (String, Duration, usize) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(&bytes[..start_at]).await.unwrap();
    let started = Instant::now();
    let mut sent = start_at;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            read = reader.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buf[..n]),
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                assert!(sent < bytes.len(), "the whole request went through without being cut");
                if writer.write_all(&bytes[sent..sent + 1]).await.is_err() {
                    break;
                }
                sent += 1;
            }
        }
    }
    (
        String::from_utf8_lossy(&answer).into_owned(),
        started.elapsed(),
        sent,
    )
}

fn assert_served_normally(answers: &[(u16, Duration)]) {
    assert!(
        answers.len() >= 10,
        "only {} requests served",
        answers.len()
    );
    for (status, latency) in answers {
        assert_eq!(*status, 200, "another client was not served: {answers:?}");
        assert!(
            *latency < Duration::from_secs(1),
            "another client waited {latency:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn headers_trickled_one_byte_a_second_are_cut_while_others_are_served() {
    let nats = nats().await;
    let app = app_with(&nats.url(), &[("HEADER_READ_TIMEOUT_SECONDS", "2")]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others = steady_sender(app.addr, stop.clone());

    let body = sign_in_body(&unique_signal(TRICKLED));
    let request = [
        format!(
            "POST /webhook HTTP/1.1\r\nHost: tv\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
        &body,
    ]
    .concat();
    // The request line goes at once; the rest of the headers one byte a second.
    let (answer, took, sent) = trickle(app.addr, &request, 10).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    println!(
        "slow headers: cut after {took:?} having sent {sent} bytes; answer {:?}",
        answer.lines().next()
    );
    // hyper closes the connection without an answer, or with a 408.
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_served_normally(&others.await.unwrap());
    // The trickled signal never made it in; the others all did.
    let stored = app.stream_messages().await;
    assert!(stored.iter().all(|m| !m.body["order_id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("order-{TRICKLED}-"))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_trickled_one_byte_a_second_gets_408_while_others_are_served() {
    let nats = nats().await;
    let app = app_with(
        &nats.url(),
        &[
            ("BODY_READ_TIMEOUT_SECONDS", "2"),
            ("HEADER_READ_TIMEOUT_SECONDS", "2"),
        ],
    )
    .await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let others = steady_sender(app.addr, stop.clone());

    let body = sign_in_body(&unique_signal(TRICKLED));
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: tv\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let request = [head.as_bytes(), &body].concat();
    // Headers at once, then the body one byte a second.
    let (answer, took, sent) = trickle(app.addr, &request, head.len()).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    println!(
        "slow body: answered after {took:?} having sent {} body bytes: {:?}",
        sent - head.len(),
        answer.lines().next()
    );
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"error\":\"request_timeout\""), "{answer}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    assert_served_normally(&others.await.unwrap());
    let stored = app.stream_messages().await;
    assert!(stored.iter().all(|m| !m.body["order_id"]
        .as_str()
        .unwrap()
        .starts_with(&format!("order-{TRICKLED}-"))));
}

/// Whether the server has closed `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(limit, stream.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    let nats = nats().await;
    let app = app_with(&nats.url(), &[("HEADER_READ_TIMEOUT_SECONDS", "2")]).await;

    // Connected, never a byte sent.
    let started = Instant::now();
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    let silent_for = started.elapsed();

    // One request served, then the connection left idle (keep-alive).
    let mut idle = TcpStream::connect(app.addr).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: tv\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await);
    let idle_for = started.elapsed();
    println!("silent connection closed after {silent_for:?}, idle keep-alive after {idle_for:?}");
    for took in [silent_for, idle_for] {
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
            "{took:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_are_closed_and_fresh_clients_get_served_again() {
    const CAP: usize = 8;
    let nats = nats().await;
    let app = app_with(
        &nats.url(),
        &[
            ("MAX_CONNECTIONS", "8"),
            ("HEADER_READ_TIMEOUT_SECONDS", "3"),
        ],
    )
    .await;
    // Let the readiness probe's connection be released before counting slots.
    assert_eq!(app.get("/health").await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;

    // A greedy client takes every slot with connections that send nothing...
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    // ...and every connection beyond the cap is closed at once.
    let mut excess = Vec::new();
    for _ in 0..4 {
        excess.push(TcpStream::connect(app.addr).await.unwrap());
    }
    for (i, stream) in excess.iter_mut().enumerate() {
        assert!(
            closed_within(stream, Duration::from_secs(1)).await,
            "connection {} beyond the cap was left open",
            CAP + i + 1
        );
    }
    // While all slots are held, a fresh client is turned away too.
    assert!(
        try_request(app.addr, "GET", "/health", &[], Default::default())
            .await
            .is_err()
    );

    // The greedy client lets go: a fresh client is served straight away.
    drop(held);
    let started = Instant::now();
    let r = loop {
        match try_request(
            app.addr,
            "POST",
            "/webhook",
            &[],
            sign_in_body(&unique_signal(1)).into(),
        )
        .await
        {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(2) => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!(
                "not served {:?} after the held connections closed: {e}",
                started.elapsed()
            ),
        }
    };
    assert_eq!(r.status, 200, "{}", r.text);
    println!(
        "after the greedy client closed its {CAP} connections a fresh client was served in {:?}",
        started.elapsed()
    );

    // A greedy client that never lets go is cut by the header read timeout, after which fresh
    // clients are served again without anyone closing anything.
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(TcpStream::connect(app.addr).await.unwrap());
    }
    let started = Instant::now();
    assert!(
        try_request(app.addr, "GET", "/health", &[], Default::default())
            .await
            .is_err()
    );
    let r = loop {
        match try_request(
            app.addr,
            "POST",
            "/webhook",
            &[],
            sign_in_body(&unique_signal(2)).into(),
        )
        .await
        {
            Ok(r) => break r,
            Err(_) if started.elapsed() < Duration::from_secs(6) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("still locked out after {:?}: {e}", started.elapsed()),
        }
    };
    assert_eq!(r.status, 200, "{}", r.text);
    let locked_out = started.elapsed();
    println!(
        "{CAP} held connections locked fresh clients out for {locked_out:?} (header timeout 3 s)"
    );
    assert!(locked_out < Duration::from_secs(4), "{locked_out:?}");
    for stream in held.iter_mut() {
        assert!(closed_within(stream, Duration::from_secs(1)).await);
    }
    assert_eq!(app.stream_messages().await.len(), 2);
}
