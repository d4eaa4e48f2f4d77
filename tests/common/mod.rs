//! Test harness: a real nats-server per test (random ports, temporary store, killed on drop) and
//! a [`TestApp`] running the receiver in-process through the same `run` entry point as the binary.
#![allow(dead_code)]

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value as Json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use tv_ingress::auth::{sign_body, sign_header, Key};
use tv_ingress::json::{self as tvjson, Value};
use tv_ingress::natsd::NatsServer;
use tv_ingress::{Clock, Config, RunError, SystemClock};

pub const SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

pub async fn nats() -> NatsServer {
    NatsServer::start().await.expect("nats-server starts")
}

/// Settings for a receiver pointed at `nats_url`, with overrides.
pub fn config(nats_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut map: HashMap<String, String> = HashMap::from([
        ("WEBHOOK_SECRET".into(), SECRET.into()),
        ("NATS_URL".into(), nats_url.into()),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("SHUTDOWN_GRACE_SECONDS".into(), "2".into()),
    ]);
    for (k, v) in overrides {
        map.insert((*k).into(), (*v).into());
    }
    Config::from_map(&map).expect("valid test config")
}

/// A receiver running in this process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub config: Config,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), RunError>>>,
}

pub struct Response {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Json,
    pub text: String,
}

impl Response {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// Starts a receiver on `nats_url` and waits until `/ready` says 200.
    pub async fn spawn(nats_url: &str) -> TestApp {
        let app = TestApp::start(config(nats_url, &[]), Arc::new(SystemClock)).await;
        app.wait_ready().await;
        app
    }

    /// Starts a receiver without waiting for readiness.
    pub async fn start(config: Config, clock: Arc<dyn Clock>) -> TestApp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let run_config = config.clone();
        let handle = tokio::spawn(async move {
            tv_ingress::run_with_clock(
                run_config,
                listener,
                async {
                    let _ = rx.await;
                },
                clock,
            )
            .await
        });
        TestApp {
            addr,
            config,
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    /// Polls `/ready` until it answers 200 (at most 20 s).
    pub async fn wait_ready(&self) {
        self.wait_for_ready_status(200, Duration::from_secs(20))
            .await;
    }

    pub async fn wait_for_ready_status(&self, status: u16, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Ok(r) = try_request(self.addr, "GET", "/ready", &[], Bytes::new()).await {
                if r.status == status {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/ready did not answer {status} within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls `/metrics` until its text contains `line` (for instance `name value`).
    pub async fn wait_for_metric(&self, line: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(r) = try_request(self.addr, "GET", "/metrics", &[], Bytes::new()).await {
                if r.text.lines().any(|l| l == line) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "/metrics never showed `{line}`"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        request(self.addr, "GET", path, &[], Bytes::new()).await
    }

    pub async fn post_raw(&self, body: impl Into<Bytes>, headers: &[(&str, &str)]) -> Response {
        request(self.addr, "POST", "/webhook", headers, body.into()).await
    }

    /// Signs `signal` with the in-body scheme and posts it as JSON.
    pub async fn post_signed(&self, signal: &Json) -> Response {
        self.post_raw(
            sign_in_body(signal),
            &[("content-type", "application/json")],
        )
        .await
    }

    /// Posts `body` with an `X-Signature` header over its exact bytes.
    pub async fn post_header_signed(&self, body: &[u8]) -> Response {
        let signature = sign_header(&Key::from_bytes(SECRET.as_bytes()), body);
        self.post_raw(
            body.to_vec(),
            &[
                ("content-type", "application/json"),
                ("x-signature", &signature),
            ],
        )
        .await
    }

    /// Stops the receiver and returns what `run` returned.
    pub async fn stop(mut self) -> Result<(), RunError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.handle.take().unwrap().await.expect("run task")
    }

    /// Waits for `run` to end by itself (for start-up failures).
    pub async fn outcome(mut self, limit: Duration) -> Result<(), RunError> {
        tokio::time::timeout(limit, self.handle.take().unwrap())
            .await
            .expect("run ended in time")
            .expect("run task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.abort();
        }
    }
}

/// `signal` with `signature` computed as the original Python client does, as bytes.
pub fn sign_in_body(signal: &Json) -> Vec<u8> {
    let text = serde_json::to_vec(signal).unwrap();
    let mut object = tvjson::parse_object(&text).unwrap();
    sign_body(&Key::from_bytes(SECRET.as_bytes()), &mut object);
    tvjson::to_python_bytes(&Value::Object(object))
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn now() -> String {
    rfc3339(Utc::now())
}

/// A valid MARKET signal timestamped now (serde_json keeps keys sorted, which is fine: the
/// canonical form follows whatever order is sent).
pub fn signal(ticker: &str, action: &str, quantity: Json) -> Json {
    json!({
        "ticker": ticker,
        "action": action,
        "quantity": quantity,
        "order_type": "MARKET",
        "timestamp": now(),
    })
}

/// A unique valid signal: distinct order ids give distinct idempotency keys.
pub fn unique_signal(n: usize) -> Json {
    let mut s = signal("AAPL", "BUY", json!(1));
    s["order_id"] = json!(format!("order-{n}-{}", uuid::Uuid::new_v4().simple()));
    s
}

pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Response {
    try_request(addr, method, path, headers, body)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<Response, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    let request = builder.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    Ok(Response {
        status,
        headers,
        body,
        text,
    })
}

/// One message read back from the stream.
#[derive(Debug)]
pub struct StoredMessage {
    pub subject: String,
    pub sequence: u64,
    pub headers: HashMap<String, String>,
    pub body: Json,
}

/// Every message currently in `stream`, in order.
/// `nats_url` may list several servers, comma-separated (any live one answers).
pub async fn stream_messages(nats_url: &str, stream: &str) -> Vec<StoredMessage> {
    let servers: Vec<async_nats::ServerAddr> = nats_url
        .split(',')
        .map(|u| u.trim().parse().unwrap())
        .collect();
    let client = async_nats::ConnectOptions::new()
        .connect(servers)
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(client);
    let mut handle = match js.get_stream(stream).await {
        Ok(handle) => handle,
        Err(_) => return Vec::new(),
    };
    let info = handle.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if info.messages == 0 {
        return out;
    }
    for seq in info.first_sequence..=info.last_sequence {
        let Ok(m) = handle.get_raw_message(seq).await else {
            continue;
        };
        let headers = m
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    v.iter().next().map(|x| x.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        out.push(StoredMessage {
            subject: m.subject.to_string(),
            sequence: m.sequence,
            headers,
            body: serde_json::from_slice(&m.payload).expect("stored body is JSON"),
        });
    }
    out
}

impl TestApp {
    pub async fn stream_messages(&self) -> Vec<StoredMessage> {
        let urls: Vec<&str> = self
            .config
            .nats_urls
            .iter()
            .map(|u| u.as_url_str())
            .collect();
        stream_messages(&urls.join(","), &self.config.nats_stream).await
    }
}

/// The real binary running `serve`, killed on drop.
pub struct BinaryApp {
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
}

impl BinaryApp {
    /// Starts `tv-ingress serve` with the test secret and `env`, and waits for `/ready`.
    pub async fn start(nats_url: &str, env: &[(&str, &str)]) -> BinaryApp {
        let port = tv_ingress::natsd::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tv-ingress"))
            .arg("serve")
            .env_clear()
            .env("WEBHOOK_SECRET", SECRET)
            .env("NATS_URL", nats_url)
            .env("BIND_ADDR", addr.to_string())
            .env("LOG_LEVEL", "WARN")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("binary starts");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tv_ingress::natsd::http_status(addr, "/ready").await != Some(200) {
            assert!(tokio::time::Instant::now() < deadline, "binary not ready");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        BinaryApp { addr, child }
    }

    /// SIGKILL: the process dies with requests in flight.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// The outcome of [`duplicate_storm`].
pub struct Storm {
    pub statuses: HashMap<u16, usize>,
    /// Idempotency keys answered 200, sorted.
    pub accepted_keys: Vec<String>,
}

/// Posts `signals` distinct signals, each to every one of `addrs` at the same moment.
pub async fn duplicate_storm(addrs: &[SocketAddr], signals: usize) -> Storm {
    let mut tasks = Vec::new();
    for n in 0..signals {
        let body = sign_in_body(&unique_signal(n));
        for &addr in addrs {
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
    accepted_keys.sort();
    Storm {
        statuses,
        accepted_keys,
    }
}

/// The `n` that [`unique_signal`] was given, read back from a stored message.
pub fn signal_number(message: &StoredMessage) -> String {
    let order_id = message.body["order_id"].as_str().unwrap_or_default();
    order_id.split('-').nth(1).unwrap_or_default().to_owned()
}
