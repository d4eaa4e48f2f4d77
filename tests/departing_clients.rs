//! Clients that close their side of the connection once the whole request is sent: the signal
//! is still carried through (published exactly once and logged), and a client that only
//! half-closes still gets its answer. Before, hyper noticed the end of file while the publish
//! was in flight and dropped the request half-way.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A signed `POST /webhook` for signal number `n`, as raw bytes.
fn raw_signed_request(n: usize) -> Vec<u8> {
    let body = sign_in_body(&unique_signal(n));
    let mut request = format!(
        "POST /webhook HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    request
}

/// Polls the stream until it holds `count` messages or `limit` passes; returns what it holds.
async fn stream_once_it_holds(app: &TestApp, count: usize, limit: Duration) -> Vec<StoredMessage> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let messages = app.stream_messages().await;
        if messages.len() >= count || tokio::time::Instant::now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_half_closes_after_its_request_gets_its_answer_and_the_signal_is_stored() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(&raw_signed_request(7)).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the receiver answers and closes within 10 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(answer.contains("\"status\":\"accepted\""), "{answer}");
    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(signal_number(&messages[0]), "7");
}

#[tokio::test(flavor = "multi_thread")]
async fn clients_that_leave_right_after_sending_still_have_each_signal_stored_once() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let signals = 20;
    for n in 0..signals {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        stream.write_all(&raw_signed_request(n)).await.unwrap();
        drop(stream);
    }
    let messages = stream_once_it_holds(&app, signals, Duration::from_secs(10)).await;
    let mut numbers: Vec<usize> = messages
        .iter()
        .map(|m| signal_number(m).parse().unwrap())
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..signals).collect::<Vec<_>>());
}
