//! Prometheus metrics, served at `GET /metrics` in the OpenMetrics text format.
//!
//! Label values come from closed sets (endpoint names, error codes, status codes), never from the
//! request, so a scanner cannot blow up the number of series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `webhook`, `health`, `ready`, `root`, `admin`, `metrics`, `docs` or `other`.
    pub endpoint: &'static str,
    /// `accepted`, `ok`, or the error code.
    pub outcome: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PublishLabels {
    /// `stored`, `duplicate` or `unavailable`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: &'static str,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub publish_seconds: Family<PublishLabels, Histogram>,
    pub duplicates: Counter,
    pub publish_retries: Counter,
    pub in_flight: Gauge,
    /// Publish attempts waiting for their PubAck (each gives up within its attempt timeout).
    pub pubacks_awaited: Gauge,
    pub nats_connected: Gauge,
    pub stream_ready: Gauge,
    pub halted: Gauge,
    /// Accumulated for exposition as a float gauge is not needed; seconds since start.
    pub started: Gauge<f64, AtomicU64>,
    /// Handles of the request series seen so far (shared with `requests`), so that counting a
    /// request compares a few labels instead of hashing them and locking the family.
    request_handles: Mutex<Vec<(RequestLabels, Counter)>>,
    /// Handles of `publish_seconds` for `stored`, `duplicate` and `unavailable`, made on first use.
    publish_handles: [OnceLock<Histogram>; 3],
}

/// Label sets whose handles are kept; any others go through the family each time.
const REQUEST_HANDLES: usize = 32;

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("tv_ingress");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests by endpoint, outcome and status",
            requests.clone(),
        );
        let publish_seconds = Family::<PublishLabels, Histogram>::new_with_constructor(|| {
            // 0.25 ms to about 4 s.
            Histogram::new(exponential_buckets(0.000_25, 2.0, 15))
        });
        registry.register(
            "publish_duration_seconds",
            "Time from publish to a definite PubAck (or giving up), retries included",
            publish_seconds.clone(),
        );
        let duplicates = Counter::default();
        registry.register(
            "duplicates",
            "Signals refused as duplicates by the stream's window",
            duplicates.clone(),
        );
        let publish_retries = Counter::default();
        registry.register(
            "publish_retries",
            "Publish attempts retried with the same Nats-Msg-Id",
            publish_retries.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        let pubacks_awaited = Gauge::default();
        registry.register(
            "pubacks_awaited",
            "Publish attempts waiting for their PubAck now",
            pubacks_awaited.clone(),
        );
        let nats_connected = Gauge::default();
        registry.register(
            "nats_connected",
            "1 when the NATS connection is up",
            nats_connected.clone(),
        );
        let stream_ready = Gauge::default();
        registry.register(
            "stream_ready",
            "1 when the stream is verified",
            stream_ready.clone(),
        );
        let halted = Gauge::default();
        registry.register(
            "halted",
            "1 when trading is halted (or the halt state is unknown)",
            halted.clone(),
        );
        let started = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "start_time_seconds",
            "Unix time the process started",
            started.clone(),
        );
        started.set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Build information; the value is always 1",
            build,
        );
        Metrics {
            registry,
            requests,
            publish_seconds,
            duplicates,
            publish_retries,
            in_flight,
            pubacks_awaited,
            nats_connected,
            stream_ready,
            halted,
            started,
            request_handles: Mutex::new(Vec::new()),
            publish_handles: Default::default(),
        }
    }

    /// Counts one request in `requests` (the series appears on its first request, as with
    /// `get_or_create`).
    pub fn count_request(&self, labels: RequestLabels) {
        let mut handles = self
            .request_handles
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((_, counter)) = handles.iter().find(|(l, _)| *l == labels) {
            counter.inc();
            return;
        }
        let counter = self.requests.get_or_create(&labels).clone();
        counter.inc();
        if handles.len() < REQUEST_HANDLES {
            handles.push((labels, counter));
        }
    }

    pub fn observe_publish(&self, result: &'static str, took: Duration) {
        let slot = match result {
            "stored" => Some(0),
            "duplicate" => Some(1),
            "unavailable" => Some(2),
            _ => None,
        };
        let make = || {
            self.publish_seconds
                .get_or_create(&PublishLabels { result })
                .clone()
        };
        let seconds = took.as_secs_f64();
        match slot {
            Some(i) => self.publish_handles[i].get_or_init(make).observe(seconds),
            None => make().observe(seconds),
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The `endpoint` label for a path (a closed set).
pub fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/webhook" => "webhook",
        "/health" => "health",
        "/ready" => "ready",
        "/" => "root",
        "/metrics" => "metrics",
        "/openapi.json" => "openapi",
        p if p == "/docs" || p.starts_with("/docs/") => "docs",
        p if p.starts_with("/admin/") => "admin",
        _ => "other",
    }
}
