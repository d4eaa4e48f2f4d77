//! Liveness, readiness and the service description.
//!
//! `/health` says the process runs. `/ready` says this replica can take a signal now: NATS
//! connected, the stream verified, and no shutdown under way; a load balancer should route only
//! to replicas answering 200 there.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use std::sync::Arc;

use super::AppState;

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, description = "Running")))]
pub async fn health() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: 200 when NATS is connected, the stream verified and the halt state known.
#[utoipa::path(get, path = "/ready", tag = "operations", responses(
    (status = 200, description = "Ready (also while halted: a halted replica is healthy)"),
    (status = 503, description = "Not ready, with a reason"),
))]
pub async fn ready(State(app): State<Arc<AppState>>) -> Response {
    match app.not_ready_reason() {
        None => Json(json!({
            "status": "ready",
            "nats": "connected",
            "stream": app.stream_name,
            "halt": app.halt.current(),
        }))
        .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// Name, version, halt state, schemes and endpoints.
#[utoipa::path(get, path = "/", tag = "operations", responses((status = 200, description = "Service description")))]
pub async fn root(State(app): State<Arc<AppState>>) -> Response {
    Json(json!({
        "name": "tv-ingress",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Authenticated TradingView webhooks in, one JetStream message per signal out",
        "stream": app.stream_name,
        "halt": app.halt.current(),
        "auth_schemes": app.intake.authenticator().schemes().map(|s| s.name()).collect::<Vec<_>>(),
        "endpoints": {
            "POST /webhook": "submit a signed signal",
            "GET /health": "liveness",
            "GET /ready": "readiness (NATS connected, stream verified)",
            "GET /": "this description",
            "GET /metrics": "Prometheus metrics",
            "GET /admin/status, POST /admin/halt, POST /admin/resume": "operator controls (bearer ADMIN_TOKEN; 404 when unset)",
        },
    }))
    .into_response()
}

/// Prometheus scrape: gauges that mirror live state are refreshed first.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "OpenMetrics text")))]
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    let m = &app.metrics;
    m.nats_connected.set(i64::from(app.publisher.connected()));
    m.stream_ready
        .set(i64::from(app.publisher.state().stream_ready()));
    m.halted.set(i64::from(!matches!(
        app.halt.current(),
        crate::halt::HaltState::Running { .. }
    )));
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}
