//! The HTTP surface: routes, shared state, and the connection-level server.
//!
//! Only the exact paths below exist; any other path, method, case or trailing slash gets a JSON
//! 404 or 405 with a stable error code, so there is no second way into `/webhook`.

pub mod admin;
pub mod client_cert;
pub mod correlation;
mod health;
pub mod openapi;
pub mod server;
pub mod source;
mod webhook;

use axum::routing::{get, post};
use axum::Router;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::error::ApiError;
use crate::intake::Intake;
use crate::publish::Publisher;

/// Everything a request handler may use.
pub struct AppState {
    pub intake: Intake,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub halt: crate::halt::HaltSwitch,
    pub halt_bucket: crate::halt::HaltBucket,
    pub admin: Option<admin::AdminToken>,
    pub sources: source::SourcePolicy,
    /// Believe `X-SSL-Client-*` headers from trusted proxies.
    pub client_cert_proxy_headers: bool,
    pub publisher: Publisher,
    pub stream_name: String,
    pub subject_prefix: String,
    pub max_body_bytes: usize,
    pub request_deadline: Duration,
    pub body_read_timeout: Duration,
    pub shutting_down: AtomicBool,
}

impl AppState {
    /// Why this replica should not get traffic now, or `None` when it should.
    pub fn not_ready_reason(&self) -> Option<String> {
        if self.shutting_down.load(Ordering::Acquire) {
            return Some("shutting down".into());
        }
        if !self.publisher.connected() {
            return Some("NATS is not connected".into());
        }
        if !self.publisher.state().stream_ready() {
            return Some(self.publisher.state().reason());
        }
        if let crate::halt::HaltState::Unknown { reason } = self.halt.current() {
            return Some(reason);
        }
        None
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    let only = |allow: &'static str| move || async move { ApiError::MethodNotAllowed { allow } };
    let admin = if state.admin.is_some() {
        admin::routes()
    } else {
        Router::new()
    };
    Router::new()
        .merge(admin)
        .merge(openapi::routes())
        .route("/webhook", post(webhook::webhook).fallback(only("POST")))
        .route("/health", get(health::health).fallback(only("GET, HEAD")))
        .route("/ready", get(health::ready).fallback(only("GET, HEAD")))
        .route("/", get(health::root).fallback(only("GET, HEAD")))
        .route("/metrics", get(health::metrics).fallback(only("GET, HEAD")))
        .fallback(|| async { ApiError::NotFound })
        .with_state(state)
}
