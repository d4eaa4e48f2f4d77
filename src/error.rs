//! Every way a request can fail, and how each is answered.
//!
//! One enum, one stable `error` code per variant, one status. 4xx answers carry a human `detail`;
//! a 503 says only `unavailable`, and what went wrong inside goes to the request's log event
//! through the [`LogDetail`] response extension. Every error body carries the request's
//! correlation id.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::AuthError;
use crate::http::correlation::CorrelationId;
use crate::json::ParseError;
use crate::signal::{FieldError, IdempotencyKey};

/// Seconds a sender is told to wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    MalformedJson(ParseError),
    #[error("{0}")]
    InvalidSignature(AuthError),
    #[error("the signal has invalid fields")]
    InvalidPayload(Vec<FieldError>),
    #[error("timestamp is {age_ms} ms old; at most {tolerance_s} s is accepted")]
    StaleTimestamp { age_ms: i64, tolerance_s: u64 },
    #[error("timestamp is {ahead_ms} ms in the future; at most {tolerance_s} s is accepted")]
    FutureTimestamp { ahead_ms: i64, tolerance_s: u64 },
    #[error("this signal was already accepted")]
    Duplicate { key: IdempotencyKey },
    #[error("the request body was not received in time")]
    RequestTimeout,
    #[error("the request body could not be read")]
    BadBody,
    /// The broker could not confirm the signal; `internal` is logged, never answered.
    #[error("signal could not be stored right now; retry")]
    Unavailable { internal: String },
    #[error("no such endpoint")]
    NotFound,
    #[error("this source address may not send signals")]
    ForbiddenSource,
    /// Trading is halted: a 4xx on purpose, so the sender does not resend after a resume.
    #[error("trading is halted: {reason}")]
    Halted { reason: String },
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("method not allowed; this endpoint accepts {allow}")]
    MethodNotAllowed { allow: &'static str },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::MalformedJson(_) | ApiError::BadBody => StatusCode::BAD_REQUEST,
            ApiError::InvalidSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::InvalidPayload(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::StaleTimestamp { .. } | ApiError::FutureTimestamp { .. } => {
                StatusCode::BAD_REQUEST
            }
            ApiError::Duplicate { .. } => StatusCode::CONFLICT,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::ForbiddenSource => StatusCode::FORBIDDEN,
            ApiError::Halted { .. } => StatusCode::LOCKED,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidSignature(_) => "invalid_signature",
            ApiError::InvalidPayload(_) => "invalid_payload",
            ApiError::StaleTimestamp { .. } => "stale_timestamp",
            ApiError::FutureTimestamp { .. } => "future_timestamp",
            ApiError::Duplicate { .. } => "duplicate",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::BadBody => "bad_request",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::NotFound => "not_found",
            ApiError::ForbiddenSource => "forbidden_source",
            ApiError::Halted { .. } => "halted",
            ApiError::Unauthorized => "unauthorized",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    error: &'static str,
    detail: String,
    correlation_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a [FieldError]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
}

/// What the request log should say about a failure that the answer does not say.
#[derive(Debug, Clone)]
pub struct LogDetail {
    pub error: &'static str,
    pub detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            status: "rejected",
            error: self.code(),
            detail: self.to_string(),
            correlation_id: CorrelationId::current_string(),
            errors: match &self {
                ApiError::InvalidPayload(errors) => Some(errors),
                _ => None,
            },
            idempotency_key: match &self {
                ApiError::Duplicate { key } => Some(key.as_str()),
                _ => None,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        match &self {
            ApiError::Unavailable { .. } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(header::ALLOW, HeaderValue::from_static(allow));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        let detail = match &self {
            ApiError::Unavailable { internal } => internal.clone(),
            ApiError::InvalidPayload(errors) => errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        response.extensions_mut().insert(LogDetail {
            error: self.code(),
            detail,
        });
        response
    }
}
