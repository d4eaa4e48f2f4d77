//! Correlation ids and the one log event per request.
//!
//! [`observe`] wraps every request the server serves (`POST /webhook` it hands to the webhook
//! handler directly, everything else to the router): it gives the request a fresh
//! UUID, makes it available to everything that runs for the request (a task-local, so error
//! bodies can carry it without threading it through every call), puts it in the
//! `X-Correlation-Id` response header, and emits a single JSON event when the response is ready:
//! status, outcome, latency, and the signal's fields when the handler attached them. It is called
//! by the connection's service directly rather than as an axum `from_fn` layer, which would box
//! and clone per request what this does in place.

use axum::body::Body;
use axum::http::{HeaderValue, Method};
use axum::response::Response;
use axum::Router;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;
use tower::ServiceExt;

use super::server::PeerCertificate;
use super::AppState;
use crate::error::LogDetail;

pub const CORRELATION_HEADER: &str = "x-correlation-id";

tokio::task_local! {
    static CURRENT: CorrelationId;
}

/// Who sent a request and under which id it is logged: one request extension for all of it.
#[derive(Debug)]
pub struct RequestContext {
    pub correlation_id: CorrelationId,
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The client address as judged by the source policy (`None`: a trusted proxy sent garbage).
    pub client_ip: Option<IpAddr>,
    /// The TLS client certificate of the connection, if any.
    pub certificate: PeerCertificate,
}

/// A request's UUID in its hyphenated lower-case text form (36 ASCII bytes, kept inline).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CorrelationId([u8; uuid::fmt::Hyphenated::LENGTH]);

impl std::fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CorrelationId {
    pub fn new() -> CorrelationId {
        let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
        uuid::Uuid::new_v4().hyphenated().encode_lower(&mut text);
        CorrelationId(text)
    }

    pub fn as_str(&self) -> &str {
        // Always ASCII: written by `encode_lower` above.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The id of the request being served, or an empty string outside a request.
    pub fn current_string() -> String {
        CURRENT
            .try_with(|c| c.as_str().to_owned())
            .unwrap_or_default()
    }
}

impl Default for CorrelationId {
    fn default() -> Self {
        CorrelationId::new()
    }
}

/// What the webhook handler knows about the signal, for the request's log event.
#[derive(Debug, Clone, Default)]
pub struct SignalLog {
    pub idempotency_key: Option<String>,
    pub ticker: Option<String>,
    pub action: Option<&'static str>,
    pub quantity: Option<String>,
    pub scheme: Option<&'static str>,
    pub key_fingerprint: Option<String>,
    pub stream_seq: Option<u64>,
}

/// Serves one request with `router`, under a fresh correlation id, and logs it.
pub async fn observe(
    app: Arc<AppState>,
    router: Router,
    peer: SocketAddr,
    certificate: PeerCertificate,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<Response, std::convert::Infallible> {
    let started = Instant::now();
    let id = CorrelationId::new();
    let mut request = request.map(Body::new);
    let client_ip = app.sources.client_ip(peer.ip(), request.headers());
    let context = RequestContext {
        correlation_id: id,
        peer,
        client_ip,
        certificate,
    };
    let method = request.method().clone();
    let path = logged_path(request.uri().path());
    // The one route that carries traffic goes straight to its handler: the router would only
    // find the same handler, after boxing its future, and the context would be an `Arc`'d
    // request extension.
    let is_webhook = method == Method::POST && path == "/webhook";
    let in_flight = InFlight::enter(&app);
    let serve = async {
        if is_webhook {
            super::webhook::handle(&app, &context, request).await
        } else {
            request.extensions_mut().insert(Arc::new(context));
            match router.oneshot(request).await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            }
        }
    };
    let mut response = CURRENT.scope(id, serve).await;
    drop(in_flight);
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    let failure = response.extensions().get::<LogDetail>();
    let signal = response.extensions().get::<SignalLog>();
    let outcome = match (failure, signal) {
        (Some(f), _) => f.error,
        (None, Some(_)) => "accepted",
        (None, None) => "ok",
    };
    app.metrics.count_request(crate::metrics::RequestLabels {
        endpoint: crate::metrics::endpoint_of(&path),
        outcome,
        status,
    });
    // The same text as `display(ip)` gives (logged as a string either way).
    let client_ip_text = client_ip.map(ip_text);
    let probe = path == "/health" || path == "/ready" || path == "/metrics";
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                target: "tv_ingress::request",
                $level,
                correlation_id = id.as_str(),
                method = method.as_str(),
                path = path.as_str(),
                client_ip = client_ip_text.as_deref(),
                status,
                outcome,
                latency_ms,
                detail = failure.map(|f| f.detail.as_str()),
                idempotency_key = signal.and_then(|s| s.idempotency_key.as_deref()),
                ticker = signal.and_then(|s| s.ticker.as_deref()),
                action = signal.and_then(|s| s.action),
                quantity = signal.and_then(|s| s.quantity.as_deref()),
                auth_scheme = signal.and_then(|s| s.scheme),
                auth_key = signal.and_then(|s| s.key_fingerprint.as_deref()),
                stream_seq = signal.and_then(|s| s.stream_seq),
                "request"
            )
        };
    }
    if status >= 500 {
        event!(tracing::Level::WARN);
    } else if probe {
        event!(tracing::Level::DEBUG);
    } else {
        event!(tracing::Level::INFO);
    }
    Ok(response)
}

/// The path as logged: its first 128 characters.
fn logged_path(path: &str) -> String {
    match path.char_indices().nth(128) {
        Some((end, _)) => path[..end].to_owned(),
        None => path.to_owned(),
    }
}

/// `ip.to_string()`, IPv4 without the formatting machinery.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// Counts a request in flight until dropped (also when the client goes away mid-request).
struct InFlight<'a>(&'a AppState);

impl<'a> InFlight<'a> {
    fn enter(app: &'a AppState) -> InFlight<'a> {
        app.metrics.in_flight.inc();
        InFlight(app)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.metrics.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::ip_text;
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn the_logged_path_is_its_first_128_characters() {
        for path in [
            "/",
            "/webhook",
            &"/ab".repeat(64),
            &"/é".repeat(100),
            &"x".repeat(129),
        ] {
            let expected: String = path.chars().take(128).collect();
            assert_eq!(super::logged_path(path), expected, "{path}");
        }
    }

    #[test]
    fn ip_text_is_to_string() {
        for a in [0u8, 1, 9, 10, 99, 100, 101, 199, 200, 255] {
            for b in [0u8, 7, 10, 100, 255] {
                let ip = IpAddr::V4(Ipv4Addr::new(a, b, 255 - b, a / 2));
                assert_eq!(ip_text(ip), ip.to_string());
            }
        }
        for ip in ["::1", "2001:db8::8a2e:370:7334", "::ffff:1.2.3.4"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }
}
