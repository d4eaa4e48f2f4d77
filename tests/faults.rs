//! Faults with a real nats-server, against the real binary as a subprocess under steady load:
//!
//! - NATS killed and restarted while signals flow: never a 500 or 504 and never a dropped
//!   connection; 503 within the deadline and `/ready` 503 during the outage; recovery by itself
//!   (the seconds from NATS healthy to the first 200 are printed); every 200 is in the stream
//!   exactly once, and every 503, resent as TradingView resends, ends up there exactly once.
//! - NATS frozen with SIGSTOP (TCP open, acks never come): 503 within the deadline, memory,
//!   threads, descriptors and tokio tasks stay bounded, SIGCONT brings 200s back.
//! - 60 s at 64 keep-alive connections with NATS healthy: zero 5xx, resident memory flat from the
//!   10th to the 60th second, descriptors back to their baseline once the clients leave.
//! - NATS stalled for 16 s: 503 throughout, never the halt switch's 423.
//!
//! The tests measure time and memory, so they run one at a time (`SERIAL`). Run with
//! `cargo test --test faults -- --nocapture` to see the figures.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tv_ingress::natsd::{free_port, http_status};

const BIN: &str = env!("CARGO_BIN_EXE_tv-ingress");

/// The default `REQUEST_DEADLINE_MS`, plus what the client side adds.
const DEADLINE_WITH_SLACK: Duration = Duration::from_millis(2500 + 500);

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The `tv-ingress serve` binary, started in an empty directory with only the given settings.
struct Receiver {
    child: tokio::process::Child,
    addr: SocketAddr,
    pid: u32,
    dir: tempfile::TempDir,
}

impl Receiver {
    async fn start(nats_url: &str) -> Receiver {
        let dir = tempfile::tempdir().unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = std::fs::File::create(dir.path().join("receiver.log")).unwrap();
        let child = tokio::process::Command::new(BIN)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("WEBHOOK_SECRET", SECRET)
            .env("NATS_URL", nats_url)
            .env("BIND_ADDR", addr.to_string())
            .env("LOG_LEVEL", "WARNING")
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let receiver = Receiver {
            child,
            addr,
            pid,
            dir,
        };
        receiver.wait_ready(200, Duration::from_secs(20)).await;
        receiver
    }

    /// Polls `/ready` until it answers `status`; returns how long that took.
    async fn wait_ready(&self, status: u16, limit: Duration) -> Duration {
        let started = Instant::now();
        while http_status(self.addr, "/ready").await != Some(status) {
            assert!(
                started.elapsed() < limit,
                "/ready not {status} after {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        started.elapsed()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("receiver.log")).unwrap_or_default()
    }

    fn status_field(&self, name: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in /proc/{}/status", self.pid))
    }

    fn stats(&self) -> ProcessStats {
        ProcessStats {
            rss_kb: self.status_field("VmRSS"),
            threads: self.status_field("Threads"),
            fds: std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .unwrap()
                .count(),
        }
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "the receiver exited; log:\n{}",
            self.log()
        );
    }
}

#[derive(Debug, Clone, Copy)]
struct ProcessStats {
    rss_kb: u64,
    threads: u64,
    fds: usize,
}

/// A keep-alive HTTP/1.1 client connection, re-opened when it breaks.
struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client { addr, sender: None }
    }

    /// Posts `body` to `/webhook`; the status, or 0 when the connection failed.
    async fn post(&mut self, body: Bytes) -> u16 {
        match self.try_post(body).await {
            Ok(status) => status,
            Err(_) => {
                self.sender = None;
                0
            }
        }
    }

    async fn try_post(&mut self, body: Bytes) -> Result<u16, String> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(connection);
            self.sender = Some(sender);
        }
        let sender = self.sender.as_mut().unwrap();
        sender.ready().await.map_err(|e| e.to_string())?;
        let request = hyper::Request::post("/webhook")
            .header("host", self.addr.to_string())
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        Ok(status)
    }
}

/// A signal with a unique order id.
fn order(order_id: &str) -> Bytes {
    let mut s = signal("AAPL", "BUY", json!(1));
    s["order_id"] = json!(order_id);
    sign_in_body(&s).into()
}

/// One answer to one attempt at one signal.
#[derive(Debug, Clone)]
struct Attempt {
    order_id: String,
    /// Which receiver (index into the addresses given to the senders).
    receiver: usize,
    /// 0 for the first sending, then 1..=3 for resends.
    resend: u8,
    sent_at: Instant,
    latency: Duration,
    status: u16,
}

/// Every answer, shared by the senders.
type Journal = Arc<Mutex<Vec<Attempt>>>;

/// Resend tasks still running.
type Resends = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The answers a sender may get in these tests: 200, 503, and 409 for a resend of a signal an
/// earlier attempt stored. Never 500, 504, another status, or a dropped connection (0).
fn expected_answer(a: &Attempt) -> bool {
    matches!((a.status, a.resend), (200 | 503, _) | (409, 1..))
}

/// TradingView resends a signal answered 5xx (other than 504) after 5 s, up to three times,
/// with the same body.
const RESENDS: u8 = 3;
const RESEND_AFTER: Duration = Duration::from_secs(5);

/// `workers` senders, each posting a new signal on its keep-alive connection every `pace`,
/// until `stop`. A 503 is resent as TradingView resends it: the identical body, after
/// `RESEND_AFTER`, up to `RESENDS` times, on a new connection.
fn start_senders(
    addrs: &[SocketAddr],
    workers: usize,
    pace: Duration,
    resend: bool,
    stop: Arc<AtomicBool>,
    journal: Journal,
) -> (Vec<JoinHandle<()>>, Resends) {
    let resends: Resends = Arc::default();
    let handles = (0..workers)
        .map(|w| {
            let receiver = w % addrs.len();
            let addr = addrs[receiver];
            let stop = stop.clone();
            let journal = journal.clone();
            let resends = resends.clone();
            tokio::spawn(async move {
                let mut client = Client::new(addr);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let order_id = format!("w{w}-{n}");
                    let body = order(&order_id);
                    let sent_at = Instant::now();
                    let status = client.post(body.clone()).await;
                    journal.lock().unwrap().push(Attempt {
                        order_id: order_id.clone(),
                        receiver,
                        resend: 0,
                        sent_at,
                        latency: sent_at.elapsed(),
                        status,
                    });
                    if status == 503 && resend {
                        let journal = journal.clone();
                        resends
                            .lock()
                            .unwrap()
                            .push(tokio::spawn(resend_like_tradingview(
                                addr, receiver, order_id, body, journal,
                            )));
                    }
                    tokio::time::sleep(pace).await;
                }
            })
        })
        .collect();
    (handles, resends)
}

async fn resend_like_tradingview(
    addr: SocketAddr,
    receiver: usize,
    order_id: String,
    body: Bytes,
    journal: Journal,
) {
    for resend in 1..=RESENDS {
        tokio::time::sleep(RESEND_AFTER).await;
        let sent_at = Instant::now();
        let status = Client::new(addr).post(body.clone()).await;
        journal.lock().unwrap().push(Attempt {
            order_id: order_id.clone(),
            receiver,
            resend,
            sent_at,
            latency: sent_at.elapsed(),
            status,
        });
        let resent_by_tradingview = (500..600).contains(&status) && status != 504;
        if !resent_by_tradingview && status != 0 {
            return;
        }
    }
}

/// How many times each order id is in the stream, read with an ordered consumer.
async fn stored_order_ids(nats_url: &str) -> HashMap<String, usize> {
    use futures_util::StreamExt;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let stream = js.get_stream("SIGNALS").await.unwrap();
    let total = stream.cached_info().state.messages;
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig::default())
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut counts = HashMap::new();
    for _ in 0..total {
        let m = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("stream read in time")
            .unwrap()
            .unwrap();
        let body: Json = serde_json::from_slice(&m.payload).unwrap();
        *counts
            .entry(body["order_id"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

async fn stored_count(nats_url: &str) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let mut stream = js.get_stream("SIGNALS").await.unwrap();
    stream.info().await.unwrap().state.messages
}

fn count(journal: &[Attempt], f: impl Fn(&Attempt) -> bool) -> usize {
    journal.iter().filter(|a| f(a)).count()
}

/// Exactly once: every signal's last answer (after resends) is 200 or 409, every signal is in
/// the stream exactly once, and the stream holds nothing else. Returns how many were sent.
async fn assert_each_stored_exactly_once(journal: &[Attempt], nats_url: &str) -> usize {
    let stored = stored_order_ids(nats_url).await;
    let mut last: HashMap<&str, (u8, u16)> = HashMap::new();
    for a in journal {
        let entry = last.entry(&a.order_id).or_insert((a.resend, a.status));
        if a.resend >= entry.0 {
            *entry = (a.resend, a.status);
        }
    }
    for (order_id, (resend, status)) in &last {
        assert!(
            matches!(status, 200 | 409),
            "{order_id}: still {status} after {resend} resends"
        );
        assert_eq!(stored.get(*order_id), Some(&1), "{order_id}");
    }
    assert_eq!(
        stored.len(),
        last.len(),
        "the stream holds a signal nobody sent"
    );
    last.len()
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_restarted_under_load_loses_nothing_and_recovers_by_itself() {
    let _serial = SERIAL.lock().await;
    let mut nats = nats().await;
    let mut receiver = Receiver::start(&nats.url()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let journal: Journal = Arc::default();
    let (senders, resends) = start_senders(
        &[receiver.addr],
        12,
        Duration::from_millis(20),
        true,
        stop.clone(),
        journal.clone(),
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.kill().await;
    let killed_at = Instant::now();
    let ready_503_after = receiver.wait_ready(503, Duration::from_secs(10)).await;
    // The outage lasts 4 s.
    tokio::time::sleep(
        (killed_at + Duration::from_secs(4)).saturating_duration_since(Instant::now()),
    )
    .await;
    nats.restart().await.expect("nats-server restarts");
    let healthy_at = Instant::now();
    let ready_200_after = receiver.wait_ready(200, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let pending: Vec<_> = std::mem::take(&mut *resends.lock().unwrap());
    for r in pending {
        r.await.unwrap();
    }
    receiver.assert_alive();

    let journal = journal.lock().unwrap().clone();
    let first_200_after_healthy = journal
        .iter()
        .filter(|a| a.status == 200 && a.sent_at + a.latency > healthy_at)
        .map(|a| (a.sent_at + a.latency) - healthy_at)
        .min()
        .expect("a 200 after NATS came back");
    let outage_503: Vec<&Attempt> = journal
        .iter()
        .filter(|a| a.status == 503 && a.resend == 0)
        .collect();
    let slowest_503 = outage_503
        .iter()
        .map(|a| a.latency)
        .max()
        .unwrap_or_default();
    println!(
        "restart under load: {} first sendings ({} answered 200, {} answered 503), {} resends \
         ({} answered 200, {} answered 409, {} answered 503)",
        count(&journal, |a| a.resend == 0),
        count(&journal, |a| a.resend == 0 && a.status == 200),
        outage_503.len(),
        count(&journal, |a| a.resend > 0),
        count(&journal, |a| a.resend > 0 && a.status == 200),
        count(&journal, |a| a.resend > 0 && a.status == 409),
        count(&journal, |a| a.resend > 0 && a.status == 503),
    );
    println!(
        "restart under load: /ready 503 {:.2} s after the kill; slowest 503 {:.3} s; NATS healthy \
         -> /ready 200 in {:.2} s, -> first 200 in {:.2} s",
        ready_503_after.as_secs_f64(),
        slowest_503.as_secs_f64(),
        ready_200_after.as_secs_f64(),
        first_200_after_healthy.as_secs_f64(),
    );

    // Never anything but 200, 409 (a resend of a stored signal) and 503; never a dropped
    // connection.
    let odd: Vec<&Attempt> = journal.iter().filter(|a| !expected_answer(a)).collect();
    assert!(
        odd.is_empty(),
        "unexpected answers: {odd:?}\nreceiver log:\n{}",
        receiver.log()
    );
    assert!(!outage_503.is_empty(), "the outage produced no 503");
    assert!(slowest_503 < DEADLINE_WITH_SLACK, "{slowest_503:?}");
    assert!(
        first_200_after_healthy < Duration::from_secs(5),
        "{first_200_after_healthy:?}"
    );

    let sent = assert_each_stored_exactly_once(&journal, &nats.url()).await;
    println!("restart under load: {sent} signals sent, each stored exactly once");
}

#[tokio::test(flavor = "multi_thread")]
async fn nats_frozen_gives_503_in_time_with_bounded_memory_and_tasks_then_recovers() {
    let _serial = SERIAL.lock().await;
    let nats = nats().await;
    let mut receiver = Receiver::start(&nats.url()).await;
    // A second receiver in this process, on a runtime of its own, so its tokio task count can be
    // read (the binary's can't).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let url = nats.url();
    let app =
        runtime
            .spawn(async move {
                TestApp::start(config(&url, &[]), Arc::new(tv_ingress::SystemClock)).await
            })
            .await
            .unwrap();
    app.wait_ready().await;

    let stop = Arc::new(AtomicBool::new(false));
    let journal: Journal = Arc::default();
    let (senders, resends) = start_senders(
        &[receiver.addr, app.addr],
        12,
        Duration::from_millis(20),
        true,
        stop.clone(),
        journal.clone(),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let sample = |receiver: &Receiver| (receiver.stats(), runtime.metrics().num_alive_tasks());
    let before = sample(&receiver);
    nats.freeze();
    let frozen_at = Instant::now();
    let mut during = Vec::new();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        during.push(sample(&receiver));
    }
    // Taken before `kill -CONT` runs: the broker may answer before `thaw` returns.
    let thawed_at = Instant::now();
    nats.thaw();
    // Both receivers serve 200s again by themselves.
    let recovered = async {
        loop {
            // Both receivers (0: the binary, 1: in-process) answered a 200 sent after SIGCONT.
            let back = |receiver: usize| {
                journal
                    .lock()
                    .unwrap()
                    .iter()
                    .any(|a| a.receiver == receiver && a.status == 200 && a.sent_at > thawed_at)
            };
            if back(0) && back(1) {
                return thawed_at.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let recovery = tokio::time::timeout(Duration::from_secs(20), recovered)
        .await
        .expect("200s again after SIGCONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sample(&receiver);
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let pending: Vec<_> = std::mem::take(&mut *resends.lock().unwrap());
    for r in pending {
        r.await.unwrap();
    }
    receiver.assert_alive();
    // Every publish attempt the freeze cut short has let go of its place in the PubAck router.
    app.wait_for_metric("tv_ingress_pubacks_awaited 0").await;

    let journal = journal.lock().unwrap().clone();
    // Sent once the broker had surely stopped (SIGSTOP reaches every thread of the process within
    // moments of `kill` returning) and answered before SIGCONT.
    let in_freeze: Vec<&Attempt> = journal
        .iter()
        .filter(|a| {
            a.resend == 0
                && a.sent_at > frozen_at + Duration::from_millis(100)
                && a.sent_at + a.latency < thawed_at
        })
        .collect();
    let slowest = journal.iter().map(|a| a.latency).max().unwrap();
    println!(
        "freeze: {} sendings during the 10 s freeze, {} answered 503, slowest answer of the run {:.3} s; \
         200s again {:.2} s after SIGCONT",
        in_freeze.len(),
        count(&journal, |a| a.status == 503),
        slowest.as_secs_f64(),
        recovery.as_secs_f64()
    );
    println!("freeze: second  RSS(kB)  threads  fds  tokio tasks (in-process receiver)");
    println!(
        "freeze: before  {:>7}  {:>7}  {:>3}  {:>5}",
        before.0.rss_kb, before.0.threads, before.0.fds, before.1
    );
    for (i, (s, tasks)) in during.iter().enumerate() {
        println!(
            "freeze: {:>6}  {:>7}  {:>7}  {:>3}  {:>5}",
            i + 1,
            s.rss_kb,
            s.threads,
            s.fds,
            tasks
        );
    }
    println!(
        "freeze: after   {:>7}  {:>7}  {:>3}  {:>5}",
        after.0.rss_kb, after.0.threads, after.0.fds, after.1
    );

    let odd: Vec<&Attempt> = journal.iter().filter(|a| !expected_answer(a)).collect();
    assert!(
        odd.is_empty(),
        "unexpected answers: {odd:?}\nreceiver log:\n{}",
        receiver.log()
    );
    assert!(slowest < DEADLINE_WITH_SLACK, "{slowest:?}");
    let served: Vec<&&Attempt> = in_freeze.iter().filter(|a| a.status != 503).collect();
    assert!(
        served.is_empty(),
        "answered other than 503 while frozen: {served:?}"
    );
    assert!(
        in_freeze.len() >= 12,
        "the freeze saw only {} requests",
        in_freeze.len()
    );
    assert!(recovery < Duration::from_secs(10), "{recovery:?}");
    // Bounded while frozen: memory within 16 MB of the level before, and flat over the last
    // five seconds; threads, descriptors and tasks bounded by the load, not by the freeze's length.
    let max_rss = during.iter().map(|s| s.0.rss_kb).max().unwrap();
    assert!(
        max_rss < before.0.rss_kb + 16 * 1024,
        "RSS {} -> {max_rss} kB",
        before.0.rss_kb
    );
    assert!(
        during[9].0.rss_kb < during[4].0.rss_kb + 4 * 1024,
        "RSS still growing: {} -> {} kB",
        during[4].0.rss_kb,
        during[9].0.rss_kb
    );
    // Client connections (12 senders plus resends in flight) are what may add descriptors and
    // tasks; the freeze itself must add nothing that accumulates.
    for (s, tasks) in &during {
        assert!(
            s.threads <= before.0.threads + 4,
            "threads {} -> {}",
            before.0.threads,
            s.threads
        );
        assert!(
            s.fds <= before.0.fds + 40,
            "fds {} -> {}",
            before.0.fds,
            s.fds
        );
        assert!(*tasks <= before.1 + 80, "tasks {} -> {tasks}", before.1);
    }

    // Every signal ended up stored exactly once, resends included.
    let sent = assert_each_stored_exactly_once(&journal, &nats.url()).await;
    println!(
        "freeze: {sent} signals sent, each stored exactly once ({} resends answered 409: stored \
         when the broker resumed although their first sending was answered 503)",
        count(&journal, |a| a.resend > 0 && a.status == 409)
    );
    drop(app);
    runtime.shutdown_background();
}

#[tokio::test(flavor = "multi_thread")]
async fn sixty_seconds_at_64_connections_no_5xx_flat_memory_descriptors_released() {
    const CONNECTIONS: usize = 64;
    const SECONDS: u64 = 60;
    let _serial = SERIAL.lock().await;
    let nats = nats().await;
    let mut receiver = Receiver::start(&nats.url()).await;
    // The idle baseline: the fewest descriptors seen over half a second with no client (the
    // readiness probe's connection may still be closing at first).
    let mut idle = receiver.stats();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = receiver.stats();
        if now.fds < idle.fds {
            idle = now;
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Answers by status (index 0: connection failures).
    let answers: Arc<Vec<AtomicU64>> = Arc::new((0..600).map(|_| AtomicU64::new(0)).collect());
    let workers: Vec<JoinHandle<()>> = (0..CONNECTIONS)
        .map(|w| {
            let stop = stop.clone();
            let answers = answers.clone();
            let addr = receiver.addr;
            tokio::spawn(async move {
                let mut client = Client::new(addr);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let status = client.post(order(&format!("w{w}-{n}"))).await;
                    answers[usize::from(status).min(599)].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let total =
        |answers: &[AtomicU64]| -> u64 { answers.iter().map(|a| a.load(Ordering::Relaxed)).sum() };

    let started = Instant::now();
    let mut samples = Vec::new();
    for second in 1..=SECONDS {
        tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
        samples.push((second, receiver.stats(), total(&answers)));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed();
    receiver.assert_alive();

    // Descriptors back to the idle baseline once the clients have gone.
    let closing = Instant::now();
    while receiver.stats().fds > idle.fds && closing.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let released_in = closing.elapsed();
    let end = receiver.stats();

    let count = |status: usize| answers[status].load(Ordering::Relaxed);
    let sent = total(&answers);
    let server_errors: u64 = (500..600).map(count).sum();
    println!(
        "60 s load: {CONNECTIONS} keep-alive connections, {sent} requests in {:.1} s ({:.0}/s): \
         {} x 200, {} x 5xx, {} connection failures, {} other",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        count(200),
        server_errors,
        count(0),
        sent - count(200) - server_errors - count(0)
    );
    println!("60 s load: second  RSS(kB)  threads  fds  requests so far");
    println!(
        "60 s load:   idle  {:>7}  {:>7}  {:>3}",
        idle.rss_kb, idle.threads, idle.fds
    );
    for (second, s, requests) in &samples {
        if *second == 1 || second % 5 == 0 {
            println!(
                "60 s load: {second:>6}  {:>7}  {:>7}  {:>3}  {requests:>8}",
                s.rss_kb, s.threads, s.fds
            );
        }
    }
    println!(
        "60 s load:  after  {:>7}  {:>7}  {:>3}  (descriptors back to {} within {:.2} s)",
        end.rss_kb,
        end.threads,
        end.fds,
        idle.fds,
        released_in.as_secs_f64()
    );
    let rss_10 = samples[9].1.rss_kb;
    let rss_60 = samples[59].1.rss_kb;
    let rss_max = samples[9..].iter().map(|s| s.1.rss_kb).max().unwrap();
    println!(
        "60 s load: RSS at 10 s {rss_10} kB, at 60 s {rss_60} kB ({:+.1}%), max from 10 s on {rss_max} kB",
        (rss_60 as f64 - rss_10 as f64) * 100.0 / rss_10 as f64
    );

    assert!(
        end.fds <= idle.fds,
        "fds {} after the clients left, {} before they came",
        end.fds,
        idle.fds
    );
    assert_eq!(server_errors, 0);
    assert_eq!(count(0), 0, "connection failures");
    assert_eq!(count(200), sent, "every request answered 200");
    // Flat: the 60th second within 10% (or 4 MB, whichever is more) of the 10th, and no peak
    // beyond that either.
    let bound = (rss_10 / 10).max(4 * 1024);
    assert!(rss_60 <= rss_10 + bound, "RSS {rss_10} -> {rss_60} kB");
    assert!(
        rss_max <= rss_10 + bound,
        "RSS peak {rss_max} kB (10 s: {rss_10} kB)"
    );
    // Every 200 is one stored message.
    assert_eq!(stored_count(&nats.url()).await, count(200));
}

/// A broker that stops answering while its TCP connection stays up (frozen, partitioned, stalled)
/// must read as "unavailable" (503, which TradingView resends), never as a halt (423, which it
/// does not resend): the halt watcher used to take its own timeouts for an unreadable bucket and
/// halt every replica about 10 s into such a stall, losing every signal sent until NATS was back.
#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_broker_is_never_taken_for_a_halt() {
    let _serial = SERIAL.lock().await;
    let nats = nats().await;
    let mut receiver = Receiver::start(&nats.url()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let journal: Journal = Arc::default();
    let (senders, _) = start_senders(
        &[receiver.addr],
        4,
        Duration::from_millis(200),
        false,
        stop.clone(),
        journal.clone(),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Longer than the watch's missed heartbeats plus three failed bucket reads (about 10 s), and
    // than the client's own stale-connection detection.
    nats.freeze();
    let mut ready_bodies = Vec::new();
    for _ in 0..16 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(r) = try_request(receiver.addr, "GET", "/ready", &[], Bytes::new()).await {
            ready_bodies.push(r.text);
        }
    }
    let thawed_at = Instant::now();
    nats.thaw();
    receiver.wait_ready(200, Duration::from_secs(20)).await;
    let back_after = thawed_at.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    receiver.assert_alive();

    let journal = journal.lock().unwrap().clone();
    println!(
        "stalled broker for 16 s: {} answers ({} x 200, {} x 503, {} x 423); /ready 200 again {:.2} s after SIGCONT",
        journal.len(),
        count(&journal, |a| a.status == 200),
        count(&journal, |a| a.status == 503),
        count(&journal, |a| a.status == 423),
        back_after.as_secs_f64()
    );
    let odd: Vec<&Attempt> = journal.iter().filter(|a| !expected_answer(a)).collect();
    assert!(
        odd.is_empty(),
        "answers other than 200/503: {odd:?}\nreceiver log:\n{}",
        receiver.log()
    );
    assert!(
        ready_bodies
            .iter()
            .all(|b| !b.contains("halt") || b.contains("\"running\"")),
        "/ready during the stall: {ready_bodies:?}"
    );
    assert!(count(&journal, |a| a.status == 200 && a.sent_at > thawed_at) > 0);
}
