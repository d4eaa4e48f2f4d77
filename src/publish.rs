//! JetStream: the stream every replica agrees on, and publishing each signal exactly once.
//!
//! The stream is created from `nats/stream.json` (the file `nats stream add --config` takes) or,
//! when it exists, verified: its subjects must cover the prefix, it must be file-backed, and its
//! duplicate window must outlast every moment a resend could still be accepted (tolerance +
//! future tolerance + [`DUPLICATE_WINDOW_MARGIN`]). A stream that contradicts this stops the start
//! with a message saying how to fix it. (async-nats's `get_or_create_stream` compares nothing.)
//!
//! Publishing puts the idempotency key in `Nats-Msg-Id` and waits for the PubAck; a lost ack is
//! retried with the same id inside the request's deadline, and a `duplicate` answer to such a
//! retry means our earlier attempt stored it. Error 10158 ("duplicate message id is in process",
//! simultaneous publishes of one id on nats-server 2.11+) is retried until the answer is definite.
//!
//! A publish is what async-nats's JetStream `publish` does on the wire (a message with a reply
//! subject, answered by the stream's PubAck), with the acks routed by [`AckRouter`]: one
//! subscription for the process and a counter per attempt, instead of a fresh inbox, two timers
//! and an untagged-enum parse of every PubAck (the profile in the README's Performance section).

use async_nats::header::{HeaderName, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, stream, ErrorCode};
use async_nats::{HeaderMap, StatusCode, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// The stream definition kept in `nats/`.
pub const STREAM_DEFINITION: &str = include_str!("../nats/stream.json");

/// Slack added to tolerance + future tolerance when checking the duplicate window, for clock
/// differences between replicas and the broker and for retries inside one request.
pub const DUPLICATE_WINDOW_MARGIN: Duration = Duration::from_secs(30);

/// Header carrying the request's correlation id on published messages.
pub const CORRELATION_HEADER: &str = "Tv-Ingress-Correlation-Id";

const CONTENT_TYPE_NAME: HeaderName = HeaderName::from_static("Content-Type");
const CORRELATION_NAME: HeaderName = HeaderName::from_static(CORRELATION_HEADER);

/// The headers of one publish attempt (built per attempt: async-nats takes the map by value).
fn message_headers(msg_id: &str, correlation_id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(NATS_MESSAGE_ID, msg_id);
    headers.insert(CONTENT_TYPE_NAME, "application/json");
    headers.insert(CORRELATION_NAME, correlation_id);
    headers
}

/// Longest wait for one PubAck before retrying with the same id.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(1000);

/// What the stream must look like.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    pub name: String,
    pub subject_prefix: String,
    pub replicas: usize,
    pub min_duplicate_window: Duration,
    /// Why the window must be that long, for error messages.
    pub window_reason: String,
}

impl StreamSpec {
    /// The definition from `nats/stream.json` with this receiver's name, subjects and replicas,
    /// and a duplicate window at least as long as required.
    pub fn definition(&self) -> Result<stream::Config, serde_json::Error> {
        let mut config: stream::Config = serde_json::from_str(STREAM_DEFINITION)?;
        config.name = self.name.clone();
        config.subjects = vec![format!("{}.>", self.subject_prefix)];
        config.num_replicas = self.replicas;
        config.duplicate_window = config.duplicate_window.max(self.min_duplicate_window);
        Ok(config)
    }

    /// Every way `existing` contradicts what the receiver needs; empty when it is fine.
    pub fn problems(&self, existing: &stream::Config) -> Vec<String> {
        let mut problems = Vec::new();
        let needed = format!("{}.>", self.subject_prefix);
        if !existing
            .subjects
            .iter()
            .any(|s| covers(s, &self.subject_prefix))
        {
            problems.push(format!(
                "its subjects {:?} do not cover `{needed}`: run `nats stream edit {} --subjects '{needed}'`",
                existing.subjects, self.name
            ));
        }
        if existing.storage != stream::StorageType::File {
            problems.push(
                "it uses memory storage, which loses accepted signals on restart: recreate it with file storage (`nats stream add --config nats/stream.json`)".to_string(),
            );
        }
        if existing.duplicate_window < self.min_duplicate_window {
            problems.push(format!(
                "its duplicate window is {}s but must be at least {}s ({}): run `nats stream edit {} --dupe-window {}s`",
                existing.duplicate_window.as_secs(),
                self.min_duplicate_window.as_secs(),
                self.window_reason,
                self.name,
                self.min_duplicate_window.as_secs().max(120),
            ));
        }
        if existing.sealed {
            problems.push("it is sealed and takes no new messages".to_string());
        }
        if existing.no_ack {
            problems.push("it does not acknowledge publishes (no_ack)".to_string());
        }
        problems
    }
}

/// Whether the subject filter `filter` matches every subject `<prefix>.<token>`.
pub fn covers(filter: &str, prefix: &str) -> bool {
    let filter: Vec<&str> = filter.split('.').collect();
    let prefix: Vec<&str> = prefix.split('.').collect();
    for (i, part) in filter.iter().enumerate() {
        if *part == ">" {
            return true;
        }
        match prefix.get(i) {
            Some(p) if *part == "*" || part == p => continue,
            Some(_) => return false,
            // The filter's token after the whole prefix must take any single token.
            None => return i == prefix.len() && *part == "*" && filter.len() == i + 1,
        }
    }
    false
}

/// Why the stream is not usable.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The stream exists but contradicts the receiver's needs: not retried.
    #[error("stream `{name}` cannot be used: {}", problems.join("; "))]
    Conflict { name: String, problems: Vec<String> },
    /// The broker did not answer or refused for now: retried.
    #[error("{0}")]
    Transient(String),
}

/// Creates the stream from its definition, or verifies the existing one.
pub async fn ensure_stream(
    js: &jetstream::Context,
    spec: &StreamSpec,
    create: bool,
) -> Result<stream::Info, StreamError> {
    match js.get_stream(&spec.name).await {
        Ok(stream) => {
            let info = stream.cached_info().clone();
            let problems = spec.problems(&info.config);
            if problems.is_empty() {
                Ok(info)
            } else {
                Err(StreamError::Conflict {
                    name: spec.name.clone(),
                    problems,
                })
            }
        }
        Err(err) => {
            let missing = matches!(
                err.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == ErrorCode::STREAM_NOT_FOUND
            );
            if !missing {
                return Err(StreamError::Transient(format!(
                    "reading stream info: {err}"
                )));
            }
            if !create {
                return Err(StreamError::Transient(format!(
                    "stream `{}` does not exist; create it with `nats stream add --config nats/stream.json`",
                    spec.name
                )));
            }
            let definition = spec.definition().map_err(|e| StreamError::Conflict {
                name: spec.name.clone(),
                problems: vec![format!("nats/stream.json is invalid: {e}")],
            })?;
            let mut stream = js
                .create_stream(definition)
                .await
                .map_err(|e| StreamError::Transient(format!("creating stream: {e}")))?;
            let info = stream
                .info()
                .await
                .map_err(|e| StreamError::Transient(format!("reading new stream: {e}")))?;
            Ok(info.clone())
        }
    }
}

/// The result of a publish the broker confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// Stored now (or by an earlier attempt of this same request whose ack was lost).
    Stored { stream: String, sequence: u64 },
    /// The duplicate window already held this id from another request.
    Duplicate { stream: String, sequence: u64 },
}

/// The broker could not confirm the signal before the deadline. The text is for the log only.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// Health of the broker link as the rest of the receiver sees it.
#[derive(Debug, Default)]
pub struct BrokerState {
    stream_ready: AtomicBool,
    reason: Mutex<String>,
}

impl BrokerState {
    pub fn new() -> BrokerState {
        BrokerState {
            stream_ready: AtomicBool::new(false),
            reason: Mutex::new("connecting to NATS".into()),
        }
    }

    pub fn stream_ready(&self) -> bool {
        self.stream_ready.load(Ordering::Acquire)
    }

    pub fn set_ready(&self) {
        self.stream_ready.store(true, Ordering::Release);
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.reason.lock().unwrap_or_else(|e| e.into_inner()) = reason.into();
        self.stream_ready.store(false, Ordering::Release);
    }

    pub fn reason(&self) -> String {
        self.reason
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// What a PubAck says when the stream stored (or already held) the message.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    stream: String,
    sequence: u64,
    duplicate: bool,
}

/// A PubAck as JetStream sends it: `{"stream":"S","seq":1}`, `"duplicate":true` when the id was
/// already in the window, or `{"error":{"code":503,"err_code":10158,"description":"…"}}`.
#[derive(serde::Deserialize)]
struct AckReply {
    #[serde(default)]
    stream: Option<String>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    duplicate: bool,
    #[serde(default)]
    error: Option<AckReplyError>,
}

#[derive(serde::Deserialize)]
struct AckReplyError {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// Reads one reply to a publish: the ack, or why the attempt must be retried.
fn parse_ack(status: Option<StatusCode>, payload: &[u8]) -> Result<Ack, AttemptError> {
    if status == Some(StatusCode::NO_RESPONDERS) {
        return Err(AttemptError::StreamMissing);
    }
    let reply: AckReply = serde_json::from_slice(payload).map_err(|e| AttemptError::Retry {
        reason: format!("PubAck unreadable: {e}"),
        maybe_stored: true,
    })?;
    match reply {
        AckReply {
            error: Some(error), ..
        } => Err(AttemptError::Retry {
            reason: if error.err_code == ErrorCode::STREAM_DUPLICATE_MESSAGE_CONFLICT.0 {
                "duplicate message id is in process (10158)".to_string()
            } else {
                format!(
                    "PubAck: {} (code {}, err_code {})",
                    error.description, error.code, error.err_code
                )
            },
            maybe_stored: false,
        }),
        AckReply {
            stream: Some(stream),
            seq: Some(sequence),
            duplicate,
            error: None,
        } => Ok(Ack {
            stream,
            sequence,
            duplicate,
        }),
        _ => Err(AttemptError::Retry {
            reason: "PubAck without stream or sequence".to_string(),
            maybe_stored: true,
        }),
    }
}

/// Routes PubAcks to the attempts waiting for them: one subscription on `<inbox>.*` for the
/// process (async-nats renews it on every reconnect), and the reply subject `<inbox>.<n>` with a
/// fresh `n` per attempt. A waiter that gives up removes itself, so nothing accumulates.
struct AckRouter {
    /// `<inbox>.`
    prefix: String,
    next_token: AtomicU64,
    waiting: Mutex<HashMap<u64, oneshot::Sender<async_nats::Message>, TokenHash>>,
    /// The subscription ended (the client was closed): no ack will ever be delivered.
    closed: AtomicBool,
    /// How many attempts wait now (`tv_ingress_pubacks_awaited`).
    awaited: prometheus_client::metrics::gauge::Gauge,
}

impl AckRouter {
    async fn start(
        client: &async_nats::Client,
        awaited: prometheus_client::metrics::gauge::Gauge,
    ) -> Result<Arc<AckRouter>, String> {
        let inbox = client.new_inbox();
        let mut subscriber = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| format!("subscribing to PubAcks: {e}"))?;
        let router = Arc::new(AckRouter {
            prefix: format!("{inbox}."),
            next_token: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::default()),
            closed: AtomicBool::new(false),
            awaited,
        });
        let delivering = router.clone();
        tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                delivering.deliver(message);
            }
            delivering.closed.store(true, Ordering::Release);
            delivering.waiting().clear();
        });
        Ok(router)
    }

    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<async_nats::Message>, TokenHash>>
    {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn deliver(&self, message: async_nats::Message) {
        let token = message
            .subject
            .as_str()
            .strip_prefix(self.prefix.as_str())
            .and_then(|t| t.parse::<u64>().ok());
        let waiter = token.and_then(|t| self.waiting().remove(&t));
        if let Some(waiter) = waiter {
            // The attempt may have given up meanwhile; the ack then has no one to tell.
            let _ = waiter.send(message);
        }
    }

    /// A reply subject and the receiver its ack will arrive on.
    fn register(self: &Arc<Self>) -> Result<AckWaiter, AttemptError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(AttemptError::Retry {
                reason: "the PubAck subscription is closed".to_string(),
                maybe_stored: false,
            });
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.waiting().insert(token, sender);
        self.awaited.inc();
        let mut reply = String::with_capacity(self.prefix.len() + 20);
        reply.push_str(&self.prefix);
        reply.push_str(itoa::Buffer::new().format(token));
        Ok(AckWaiter {
            router: self.clone(),
            token,
            reply: Subject::from(reply),
            receiver,
        })
    }
}

/// Hashes the router's tokens: counters we hand out ourselves, so SipHash's defence against
/// chosen keys buys nothing; a multiply spreads consecutive tokens over the table.
#[derive(Default, Clone, Copy)]
struct TokenHash;

impl std::hash::BuildHasher for TokenHash {
    type Hasher = TokenHasher;
    fn build_hasher(&self) -> TokenHasher {
        TokenHasher(0)
    }
}

struct TokenHasher(u64);

impl std::hash::Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// One attempt's place in the [`AckRouter`]; removed from it when dropped.
struct AckWaiter {
    router: Arc<AckRouter>,
    token: u64,
    reply: Subject,
    receiver: oneshot::Receiver<async_nats::Message>,
}

impl Drop for AckWaiter {
    fn drop(&mut self) {
        self.router.waiting().remove(&self.token);
        self.router.awaited.dec();
    }
}

/// Publishes signals to the stream.
#[derive(Clone)]
pub struct Publisher {
    client: async_nats::Client,
    js: jetstream::Context,
    acks: Arc<AckRouter>,
    state: Arc<BrokerState>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Publisher {
    /// Subscribes to PubAcks (queued until NATS answers when it is not connected yet).
    pub async fn new(
        client: async_nats::Client,
        state: Arc<BrokerState>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Publisher, String> {
        let js = jetstream::ContextBuilder::new()
            .timeout(ATTEMPT_TIMEOUT)
            .build(client.clone());
        let acks = AckRouter::start(&client, metrics.pubacks_awaited.clone()).await?;
        Ok(Publisher {
            client,
            js,
            acks,
            state,
            metrics,
        })
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Publishes `payload` with `Nats-Msg-Id: msg_id`, retrying until `deadline`.
    pub async fn publish(
        &self,
        subject: String,
        msg_id: &str,
        correlation_id: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<Published, Unavailable> {
        let started = Instant::now();
        let outcome = self
            .publish_until(subject, msg_id, correlation_id, payload, deadline)
            .await;
        let result = match &outcome {
            Ok(Published::Stored { .. }) => "stored",
            Ok(Published::Duplicate { .. }) => {
                self.metrics.duplicates.inc();
                "duplicate"
            }
            Err(_) => "unavailable",
        };
        self.metrics.observe_publish(result, started.elapsed());
        outcome
    }

    async fn publish_until(
        &self,
        subject: String,
        msg_id: &str,
        correlation_id: &str,
        payload: Bytes,
        deadline: Instant,
    ) -> Result<Published, Unavailable> {
        if !self.connected() {
            return Err(Unavailable("NATS is not connected".into()));
        }
        // Cloned per attempt by reference count (a `String` subject is copied twice per attempt).
        let subject = Subject::from(subject);
        // Once an attempt may have reached the stream, a later `duplicate` is our own write.
        let mut maybe_stored = false;
        let mut backoff = Duration::from_millis(20);
        let mut last_error = String::from("deadline reached before the first attempt");
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Unavailable(last_error));
            }
            let remaining = deadline - now;
            let headers = message_headers(msg_id, correlation_id);
            let attempt = self.attempt(subject.clone(), headers, payload.clone());
            let retry = match tokio::time::timeout(remaining.min(ATTEMPT_TIMEOUT), attempt).await {
                Ok(Ok(ack)) => {
                    let published = if ack.duplicate && !maybe_stored {
                        Published::Duplicate {
                            stream: ack.stream,
                            sequence: ack.sequence,
                        }
                    } else {
                        Published::Stored {
                            stream: ack.stream,
                            sequence: ack.sequence,
                        }
                    };
                    if !self.state.stream_ready() {
                        self.state.set_ready();
                    }
                    return Ok(published);
                }
                Ok(Err(AttemptError::Retry {
                    reason,
                    maybe_stored: sent,
                })) => {
                    maybe_stored |= sent;
                    reason
                }
                Ok(Err(AttemptError::StreamMissing)) => {
                    self.state
                        .set_not_ready(format!("stream not found for subject {subject}"));
                    "no stream answers for the subject".to_string()
                }
                Err(_elapsed) => {
                    maybe_stored = true;
                    "PubAck not received in time".to_string()
                }
            };
            last_error = retry;
            self.metrics.publish_retries.inc();
            if !self.connected() {
                return Err(Unavailable(format!("{last_error}; NATS connection lost")));
            }
            let pause = backoff.min(deadline.saturating_duration_since(Instant::now()));
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(Duration::from_millis(250));
        }
    }

    async fn attempt(
        &self,
        subject: Subject,
        headers: HeaderMap,
        payload: Bytes,
    ) -> Result<Ack, AttemptError> {
        let mut waiter = self.acks.register()?;
        self.client
            .publish_with_reply_and_headers(subject, waiter.reply.clone(), headers, payload)
            .await
            .map_err(|e| AttemptError::Retry {
                reason: format!("publish: {e}"),
                maybe_stored: false,
            })?;
        match (&mut waiter.receiver).await {
            Ok(reply) => parse_ack(reply.status, &reply.payload),
            Err(_closed) => Err(AttemptError::Retry {
                reason: "the PubAck subscription closed".to_string(),
                maybe_stored: true,
            }),
        }
    }
}

enum AttemptError {
    Retry { reason: String, maybe_stored: bool },
    StreamMissing,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> StreamSpec {
        StreamSpec {
            name: "SIGNALS".into(),
            subject_prefix: "signals".into(),
            replicas: 1,
            min_duplicate_window: Duration::from_secs(65),
            window_reason: "30 + 5 + 30".into(),
        }
    }

    #[test]
    fn pub_acks_are_read_as_jetstream_sends_them() {
        let stored = parse_ack(None, br#"{"stream":"SIGNALS","seq":42}"#).ok();
        assert_eq!(
            stored,
            Some(Ack {
                stream: "SIGNALS".into(),
                sequence: 42,
                duplicate: false
            })
        );
        let duplicate = parse_ack(
            None,
            br#"{"stream":"SIGNALS","domain":"hub","seq":7,"duplicate":true}"#,
        )
        .ok();
        assert_eq!(
            duplicate.map(|a| (a.sequence, a.duplicate)),
            Some((7, true))
        );
        let retry_reason = |status, payload: &[u8]| match parse_ack(status, payload) {
            Err(AttemptError::Retry {
                reason,
                maybe_stored,
            }) => Some((reason, maybe_stored)),
            _ => None,
        };
        let (reason, maybe_stored) = retry_reason(
            None,
            br#"{"error":{"code":503,"err_code":10158,"description":"duplicate message id is in process"}}"#,
        )
        .unwrap();
        assert_eq!(reason, "duplicate message id is in process (10158)");
        assert!(!maybe_stored);
        let (reason, _) = retry_reason(
            None,
            br#"{"error":{"code":400,"err_code":10060,"description":"expected stream does not match"}}"#,
        )
        .unwrap();
        assert!(
            reason.contains("expected stream does not match"),
            "{reason}"
        );
        // An answer we cannot read may still mean stored: a later duplicate is then ours.
        assert!(retry_reason(None, b"not json").unwrap().1);
        assert!(retry_reason(None, br#"{"stream":"SIGNALS"}"#).unwrap().1);
        assert!(matches!(
            parse_ack(Some(StatusCode::NO_RESPONDERS), b""),
            Err(AttemptError::StreamMissing)
        ));
    }

    #[test]
    fn subject_filters_cover_the_prefix() {
        let cases = [
            ("signals.>", "signals", true),
            (">", "signals", true),
            ("signals.*", "signals", true),
            ("*.>", "signals", true),
            ("signals", "signals", false),
            ("signals.AAPL", "signals", false),
            ("other.>", "signals", false),
            ("a.b.>", "a.b", true),
            ("a.*.>", "a.b", true),
            ("a.>", "a.b", true),
            ("a.b.*.*", "a.b", false),
        ];
        for (filter, prefix, expected) in cases {
            assert_eq!(covers(filter, prefix), expected, "{filter} ~ {prefix}");
        }
    }

    #[test]
    fn the_shipped_definition_satisfies_its_own_checks() {
        let config = spec().definition().unwrap();
        assert_eq!(config.subjects, ["signals.>"]);
        assert!(spec().problems(&config).is_empty());
    }

    #[test]
    fn a_short_window_is_named_with_its_fix() {
        let mut config = spec().definition().unwrap();
        config.duplicate_window = Duration::from_secs(10);
        config.storage = stream::StorageType::Memory;
        let problems = spec().problems(&config);
        assert_eq!(problems.len(), 2);
        assert!(problems[1].contains("duplicate window is 10s but must be at least 65s"));
        assert!(problems[1].contains("nats stream edit SIGNALS --dupe-window"));
    }
}
