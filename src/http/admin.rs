//! `/admin`: halt, resume and status for operators, behind a bearer token.
//!
//! Exists only when `ADMIN_TOKEN` is set (otherwise every `/admin` path is 404). The token is
//! compared in constant time (SHA-256 digests, `subtle`); each change is recorded in the halt
//! bucket with the token's fingerprint as `by`, so the history says who did what.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::auth::fingerprint;
use crate::error::ApiError;
use crate::halt::{self, HaltRecord};
use crate::signal::FieldError;

/// The admin bearer token, kept as a digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
    fingerprint: String,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AdminToken({})", self.fingerprint)
    }
}

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
            fingerprint: fingerprint(token.as_bytes()),
        }
    }

    /// `admin:<fingerprint>` when the request carries this token.
    fn check(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or(ApiError::Unauthorized)?;
        let digest = Sha256::digest(presented.trim().as_bytes());
        if bool::from(self.digest.ct_eq(digest.as_slice())) {
            Ok(format!("admin:{}", self.fingerprint))
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    let only = |allow: &'static str| move || async move { ApiError::MethodNotAllowed { allow } };
    Router::new()
        .route("/admin/status", get(status).fallback(only("GET, HEAD")))
        .route("/admin/halt", post(halt_now).fallback(only("POST")))
        .route("/admin/resume", post(resume).fallback(only("POST")))
}

fn authorize(app: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    app.admin.as_ref().ok_or(ApiError::NotFound)?.check(headers)
}

/// Halt state, its recent history and readiness.
#[utoipa::path(get, path = "/admin/status", tag = "admin", security(("admin_token" = [])), responses(
    (status = 200, description = "State and history"),
    (status = 401, description = "unauthorized", body = super::openapi::ErrorResponse),
    (status = 404, description = "Admin API disabled (no ADMIN_TOKEN)"),
))]
pub(crate) async fn status(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = authorize(&app, &headers) {
        return e.into_response();
    }
    let history = match app.halt_bucket.open(app.publisher.jetstream()).await {
        Ok(store) => halt::history(&store, 20).await.unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    Json(json!({
        "halt": app.halt.current(),
        "history": history,
        "ready": app.not_ready_reason().is_none(),
        "not_ready_reason": app.not_ready_reason(),
        "stream": app.stream_name,
        "version": env!("CARGO_PKG_VERSION"),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct ChangeBody {
    #[serde(default)]
    reason: Option<String>,
}

const MAX_REASON_CHARS: usize = 256;

fn reason_from(body: &Bytes, required: bool) -> Result<String, ApiError> {
    let parsed: ChangeBody = if body.is_empty() {
        ChangeBody { reason: None }
    } else {
        crate::json::parse_object(body).map_err(ApiError::MalformedJson)?;
        serde_json::from_slice(body).map_err(|_| {
            ApiError::InvalidPayload(vec![FieldError {
                field: "reason".into(),
                problem: "must be a string".into(),
            }])
        })?
    };
    let reason = parsed.reason.unwrap_or_default().trim().to_owned();
    let problem = if required && reason.is_empty() {
        Some("is required: say why trading is halted".to_string())
    } else if reason.chars().count() > MAX_REASON_CHARS {
        Some(format!("must be at most {MAX_REASON_CHARS} characters"))
    } else if reason.chars().any(char::is_control) {
        Some("must not contain control characters".to_string())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ApiError::InvalidPayload(vec![FieldError {
            field: "reason".into(),
            problem,
        }])),
        None => Ok(reason),
    }
}

async fn change(
    app: &AppState,
    headers: &HeaderMap,
    body: &Bytes,
    halted: bool,
) -> Result<Response, ApiError> {
    let by = authorize(app, headers)?;
    let reason = reason_from(body, halted)?;
    let store = app
        .halt_bucket
        .open(app.publisher.jetstream())
        .await
        .map_err(|internal| ApiError::Unavailable { internal })?;
    let record = HaltRecord {
        halted,
        reason,
        by: Some(by.clone()),
        at: Some(halt::now_string()),
    };
    let revision = halt::record(&store, &record)
        .await
        .map_err(|internal| ApiError::Unavailable { internal })?;
    tracing::warn!(halted, reason = %record.reason, by = %by, revision, "halt switch changed through the admin API");
    Ok(Json(json!({
        "halted": halted,
        "reason": record.reason,
        "by": by,
        "at": record.at,
        "revision": revision,
    }))
    .into_response())
}

/// Halt every replica: `/webhook` answers 423 until resumed.
#[utoipa::path(post, path = "/admin/halt", tag = "admin", security(("admin_token" = [])),
    request_body = super::openapi::ChangeRequest,
    responses(
        (status = 200, description = "Recorded in the halt bucket"),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorResponse),
        (status = 422, description = "reason missing", body = super::openapi::ErrorResponse),
        (status = 503, description = "the bucket could not be written", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn halt_now(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(&app, &headers, &body, true)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Resume every replica.
#[utoipa::path(post, path = "/admin/resume", tag = "admin", security(("admin_token" = [])),
    request_body = super::openapi::ChangeRequest,
    responses(
        (status = 200, description = "Recorded in the halt bucket"),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn resume(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    change(&app, &headers, &body, false)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}
