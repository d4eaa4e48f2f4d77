//! The two load shapes: C keep-alive HTTP/1.1 connections posting signals, and C JetStream
//! publishers each awaiting its PubAck. Both run for a fixed time and report the same figures.
//!
//! Connections are opened before the timed window ([`connect`]) so the caller can read process
//! counters between opening and driving them.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::HeaderValue;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::workload::{HttpRequest, NatsPublish, Pool};

/// What one timed run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    pub elapsed_s: f64,
    pub requests: u64,
    /// Response status counts (for the baseline: 200 stored, 409 duplicate ack, 503 error).
    pub statuses: BTreeMap<u16, u64>,
    /// Transport errors (connection reset, broken pipe...).
    pub errors: u64,
    pub duplicates_sent: u64,
    pub signed_inline: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        if self.elapsed_s > 0.0 {
            self.requests as f64 / self.elapsed_s
        } else {
            0.0
        }
    }

    pub fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn from_parts(elapsed: Duration, mut latencies_us: Vec<u32>, parts: Vec<WorkerTally>) -> Self {
        latencies_us.sort_unstable();
        let pick = |q: f64| -> f64 {
            if latencies_us.is_empty() {
                return 0.0;
            }
            // Nearest rank.
            let rank =
                ((q * latencies_us.len() as f64).ceil() as usize).clamp(1, latencies_us.len());
            f64::from(latencies_us[rank - 1]) / 1000.0
        };
        let mut outcome = Outcome {
            elapsed_s: elapsed.as_secs_f64(),
            requests: latencies_us.len() as u64,
            p50_ms: pick(0.50),
            p90_ms: pick(0.90),
            p99_ms: pick(0.99),
            max_ms: latencies_us.last().map_or(0.0, |v| f64::from(*v) / 1000.0),
            ..Outcome::default()
        };
        for part in parts {
            for (status, n) in part.statuses {
                *outcome.statuses.entry(status).or_default() += n;
            }
            outcome.errors += part.errors;
            outcome.duplicates_sent += part.duplicates;
        }
        outcome
    }
}

#[derive(Default)]
struct WorkerTally {
    latencies_us: Vec<u32>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    duplicates: u64,
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

/// Opened HTTP/1.1 connections, ready to be driven.
pub struct Connections {
    addr: SocketAddr,
    senders: Vec<SendRequest<Full<Bytes>>>,
}

/// Opens `count` keep-alive connections to `addr`.
pub async fn connect(addr: SocketAddr, count: usize) -> Result<Connections, String> {
    let mut senders = Vec::with_capacity(count);
    for _ in 0..count {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake {addr}: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        senders.push(sender);
    }
    Ok(Connections { addr, senders })
}

/// Posts requests from `pool` to `path` on every connection until `duration` has passed. With
/// `duplicates` > 0, that share of requests resends the connection's last accepted request.
pub async fn drive_http(
    connections: Connections,
    path: &'static str,
    pool: Arc<Pool<HttpRequest>>,
    duration: Duration,
    duplicates: f64,
) -> Outcome {
    let host = HeaderValue::try_from(connections.addr.to_string()).expect("address is ASCII");
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(connections.senders.len());
    for mut sender in connections.senders {
        let pool = pool.clone();
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = WorkerTally {
                latencies_us: Vec::with_capacity(4096),
                ..WorkerTally::default()
            };
            let mut last_accepted: Option<HttpRequest> = None;
            let mut owed = 0.0f64;
            while Instant::now() < deadline {
                owed += duplicates;
                let (request, duplicate) = match &last_accepted {
                    Some(previous) if owed >= 1.0 => {
                        owed -= 1.0;
                        (previous.clone(), true)
                    }
                    _ => (pool.take(), false),
                };
                let mut builder = hyper::Request::post(path).header(hyper::header::HOST, &host);
                for (name, value) in &request.headers {
                    builder = builder.header(name, value);
                }
                let Ok(http_request) = builder.body(Full::new(request.body.clone())) else {
                    tally.errors += 1;
                    break;
                };
                if sender.ready().await.is_err() {
                    tally.errors += 1;
                    break;
                }
                let sent = Instant::now();
                let status = match sender.send_request(http_request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        if response.into_body().collect().await.is_err() {
                            tally.errors += 1;
                            break;
                        }
                        status
                    }
                    Err(_) => {
                        tally.errors += 1;
                        break;
                    }
                };
                tally.latencies_us.push(micros(sent.elapsed()));
                *tally.statuses.entry(status).or_default() += 1;
                if duplicate {
                    tally.duplicates += 1;
                } else if status == 200 && duplicates > 0.0 {
                    last_accepted = Some(request);
                }
            }
            tally
        }));
    }
    let mut outcome = collect(start, tasks).await;
    outcome.signed_inline = pool.signed_inline();
    outcome
}

/// C publishers on one NATS connection (as the receiver has), each publishing with
/// `Nats-Msg-Id` and awaiting its PubAck, until `duration` has passed.
pub async fn drive_nats(
    js: async_nats::jetstream::Context,
    publishers: usize,
    pool: Arc<Pool<NatsPublish>>,
    duration: Duration,
) -> Outcome {
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(publishers);
    for _ in 0..publishers {
        let js = js.clone();
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut tally = WorkerTally {
                latencies_us: Vec::with_capacity(4096),
                ..WorkerTally::default()
            };
            while Instant::now() < deadline {
                let message = pool.take();
                let sent = Instant::now();
                let status = match js
                    .publish_with_headers(message.subject, message.headers, message.payload)
                    .await
                {
                    Ok(ack) => match ack.await {
                        Ok(ack) if ack.duplicate => 409,
                        Ok(_) => 200,
                        Err(_) => 503,
                    },
                    Err(_) => 503,
                };
                tally.latencies_us.push(micros(sent.elapsed()));
                *tally.statuses.entry(status).or_default() += 1;
            }
            tally
        }));
    }
    let mut outcome = collect(start, tasks).await;
    outcome.signed_inline = pool.signed_inline();
    outcome
}

async fn collect(start: Instant, tasks: Vec<tokio::task::JoinHandle<WorkerTally>>) -> Outcome {
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        if let Ok(tally) = task.await {
            parts.push(tally);
        }
    }
    let elapsed = start.elapsed();
    let mut latencies = Vec::with_capacity(parts.iter().map(|p| p.latencies_us.len()).sum());
    for part in &mut parts {
        latencies.append(&mut part.latencies_us);
    }
    Outcome::from_parts(elapsed, latencies, parts)
}
