//! What the load generator sends: unique, freshly signed signals in each of the receiver's
//! schemes, and, for the raw JetStream baseline, the very message the receiver would publish for
//! the same signal (same subject, headers and payload bytes).
//!
//! Requests are signed ahead of the timed window into a [`Pool`] (each taken exactly once), with
//! timestamps of "now" at signing time: a run lasts seconds, well inside the receiver's freshness
//! tolerance. When a pool runs dry the request is signed inline and counted.

use axum::http::HeaderMap as HttpHeaderMap;
use base64::Engine;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use hyper::header::{HeaderName, HeaderValue};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tv_ingress::auth::{self, standard_webhooks, Authenticator, Key, Keyring};
use tv_ingress::intake::{Freshness, Intake};
use tv_ingress::json::{self, Object, Value};
use tv_ingress::signal::SignalMessage;
use tv_ingress::SystemClock;

/// The signature schemes the receiver accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    HmacBody,
    HmacHeader,
    StandardWebhooks,
    Token,
}

impl Scheme {
    pub fn name(self) -> &'static str {
        match self {
            Scheme::HmacBody => "hmac-body",
            Scheme::HmacHeader => "hmac-header",
            Scheme::StandardWebhooks => "standard-webhooks",
            Scheme::Token => "token",
        }
    }
}

/// The secrets a benchmark run signs with (random per run unless given).
#[derive(Clone, Debug)]
pub struct Secrets {
    pub hmac: String,
    pub token: String,
    /// `whsec_<base64>`.
    pub whsec: String,
    pub token_field: String,
}

impl Secrets {
    pub fn random() -> Secrets {
        let hex = || {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        };
        let mut raw = Vec::with_capacity(32);
        raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        raw.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Secrets {
            hmac: hex(),
            token: hex(),
            whsec: format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(raw)
            ),
            token_field: "passphrase".into(),
        }
    }

    /// From the receiver's own variables, falling back to random values.
    pub fn from_env() -> Secrets {
        let mut s = Secrets::random();
        if let Ok(v) = std::env::var("WEBHOOK_SECRET") {
            s.hmac = v;
        }
        if let Ok(v) = std::env::var("WEBHOOK_TOKEN") {
            s.token = v;
        }
        if let Ok(v) = std::env::var("STANDARD_WEBHOOKS_SECRET") {
            s.whsec = v;
        }
        if let Ok(v) = std::env::var("WEBHOOK_TOKEN_FIELD") {
            s.token_field = v;
        }
        s
    }
}

/// One HTTP request ready to send.
#[derive(Clone)]
pub struct HttpRequest {
    pub body: Bytes,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// One JetStream publish ready to send.
pub struct NatsPublish {
    pub subject: String,
    pub headers: async_nats::HeaderMap,
    pub payload: Bytes,
}

/// Builds unique signed signals. `tag` makes order ids unique across runs of one nats-server.
pub struct Signer {
    scheme: Scheme,
    hmac: Key,
    whsec: Key,
    secrets: Secrets,
    tag: String,
    intake: Intake,
    subject_prefix: String,
}

impl Signer {
    pub fn new(scheme: Scheme, secrets: &Secrets, subject_prefix: &str) -> Signer {
        let hmac = Key::from_bytes(secrets.hmac.as_bytes());
        let whsec_bytes = standard_webhooks::decode_secret(&secrets.whsec)
            .unwrap_or_else(|e| panic!("STANDARD_WEBHOOKS_SECRET {e}"));
        let whsec = Key::from_bytes(&whsec_bytes);
        // The baseline's payload is made by the receiver's own intake, so both publish the
        // same bytes for the same signal.
        let intake = Intake::new(
            Authenticator::hmac(Keyring::new(vec![hmac.clone()])),
            Freshness {
                tolerance: Duration::from_secs(3600),
                future_tolerance: Duration::from_secs(300),
            },
            Arc::new(SystemClock),
        );
        Signer {
            scheme,
            hmac,
            whsec,
            secrets: secrets.clone(),
            tag: uuid::Uuid::new_v4().simple().to_string()[..12].to_owned(),
            intake,
            subject_prefix: subject_prefix.to_owned(),
        }
    }

    /// A TradingView-style strategy alert, unique by `order_id`, timestamped now.
    fn signal(&self, n: u64) -> Object<'static> {
        let mut o = Object::default();
        let s = |t: &str| Value::String(t.to_owned().into());
        o.insert_new("ticker", s("AAPL"));
        o.insert_new("action", s(if n & 1 == 0 { "buy" } else { "sell" }));
        o.insert_new("quantity", Value::Number("10".into()));
        o.insert_new("order_type", s("market"));
        o.insert_new(
            "timestamp",
            s(&Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)),
        );
        o.insert_new(
            "order_id",
            Value::String(format!("bench-{}-{n}", self.tag).into()),
        );
        o.insert_new("strategy", s("bench-momentum"));
        o.insert_new("price", Value::Number("189.52".into()));
        o
    }

    pub fn http(&self, n: u64) -> HttpRequest {
        let mut object = self.signal(n);
        let mut headers = vec![(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        let body = match self.scheme {
            Scheme::HmacBody => {
                auth::sign_body(&self.hmac, &mut object);
                json::to_python_bytes(&Value::Object(object))
            }
            Scheme::HmacHeader => {
                let body = json::to_python_bytes(&Value::Object(object));
                let signature = auth::sign_header(&self.hmac, &body);
                headers.push((
                    HeaderName::from_static(auth::SIGNATURE_HEADER),
                    HeaderValue::try_from(signature).expect("hex is a header value"),
                ));
                body
            }
            Scheme::StandardWebhooks => {
                let body = json::to_python_bytes(&Value::Object(object));
                let id = format!("msg_{}_{n}", self.tag);
                for (name, value) in
                    standard_webhooks::sign(&self.whsec, &id, Utc::now().timestamp(), &body)
                {
                    headers.push((
                        HeaderName::from_static(name),
                        HeaderValue::try_from(value).expect("ascii header value"),
                    ));
                }
                body
            }
            Scheme::Token => {
                object.insert_new(
                    self.secrets.token_field.clone(),
                    Value::String(self.secrets.token.clone().into()),
                );
                json::to_python_bytes(&Value::Object(object))
            }
        };
        HttpRequest {
            body: Bytes::from(body),
            headers,
        }
    }

    /// The message the receiver would publish for signal `n` (in-body scheme).
    pub fn nats(&self, n: u64) -> NatsPublish {
        let mut object = self.signal(n);
        auth::sign_body(&self.hmac, &mut object);
        let body = json::to_python_bytes(&Value::Object(object));
        let accepted = self
            .intake
            .check(&HttpHeaderMap::new(), &body)
            .unwrap_or_else(|e| panic!("bench signal refused by the intake: {e}"));
        let correlation_id = uuid::Uuid::new_v4().to_string();
        let payload = SignalMessage::new(
            &accepted.signal,
            &accepted.key,
            &accepted.verified,
            accepted.received_at,
            &correlation_id,
        )
        .to_bytes();
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", accepted.key.as_str());
        headers.insert("Content-Type", "application/json");
        headers.insert(
            tv_ingress::publish::CORRELATION_HEADER,
            correlation_id.as_str(),
        );
        NatsPublish {
            subject: format!(
                "{}.{}",
                self.subject_prefix,
                accepted.signal.ticker().subject_token()
            ),
            headers,
            payload: Bytes::from(payload),
        }
    }
}

/// Requests signed ahead of the timed window; each is handed out once.
pub struct Pool<T> {
    items: Vec<Mutex<Option<T>>>,
    next: AtomicUsize,
    inline: AtomicU64,
    make: Box<dyn Fn(u64) -> T + Send + Sync>,
}

impl<T> Pool<T> {
    pub fn new(size: usize, make: impl Fn(u64) -> T + Send + Sync + 'static) -> Pool<T> {
        let items = (0..size as u64)
            .map(|n| Mutex::new(Some(make(n))))
            .collect();
        Pool {
            items,
            next: AtomicUsize::new(0),
            inline: AtomicU64::new(0),
            make: Box::new(make),
        }
    }

    pub fn take(&self) -> T {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.items.get(i) {
            if let Some(item) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                return item;
            }
        }
        self.inline.fetch_add(1, Ordering::Relaxed);
        (self.make)(i as u64)
    }

    /// How many requests had to be signed inside the timed window.
    pub fn signed_inline(&self) -> u64 {
        self.inline.load(Ordering::Relaxed)
    }
}
