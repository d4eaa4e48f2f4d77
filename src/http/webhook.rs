//! `POST /webhook`: read the body within its limits, run the intake checks, publish, answer.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use std::sync::Arc;
use tokio::time::Instant;

use super::correlation::{CorrelationId, RequestContext, SignalLog};
use super::AppState;
use crate::error::ApiError;
use crate::halt::HaltState;
use crate::intake::Accepted;
use crate::publish::Published;
use crate::signal::SignalMessage;

#[derive(Serialize)]
#[cfg_attr(not(test), allow(dead_code))]
struct AcceptedBody<'a> {
    status: &'static str,
    correlation_id: &'a str,
    message: String,
    idempotency_key: &'a str,
    stream: &'a str,
    seq: u64,
}

/// Submit one signed trading signal.
///
/// Checks, in order: source (403), size (413), strict JSON (400), authentication (401), schema
/// (422), freshness (400), halt (423); then publishes with the idempotency key as `Nats-Msg-Id`
/// and answers after the PubAck.
#[utoipa::path(
    post,
    path = "/webhook",
    tag = "signals",
    request_body(
        content(
            (super::openapi::SignalRequest = "application/json"),
            (super::openapi::SignalRequest = "text/plain"),
        ),
        description = "The signal; Content-Type is not checked (TradingView sends text/plain)",
    ),
    responses(
        (status = 200, description = "Stored in the stream", body = super::openapi::AcceptedResponse),
        (status = 400, description = "malformed_json, stale_timestamp, future_timestamp or bad_request", body = super::openapi::ErrorResponse),
        (status = 401, description = "invalid_signature", body = super::openapi::ErrorResponse),
        (status = 403, description = "forbidden_source", body = super::openapi::ErrorResponse),
        (status = 408, description = "request_timeout", body = super::openapi::ErrorResponse),
        (status = 409, description = "duplicate: already stored", body = super::openapi::ErrorResponse),
        (status = 413, description = "payload_too_large", body = super::openapi::ErrorResponse),
        (status = 422, description = "invalid_payload, with the list of field errors", body = super::openapi::ErrorResponse),
        (status = 423, description = "halted: trading is halted", body = super::openapi::ErrorResponse),
        (status = 503, description = "unavailable: not confirmed stored; retry (Retry-After)", body = super::openapi::ErrorResponse),
    ),
    security((), ("x_signature" = [])),
)]
pub async fn webhook(
    State(app): State<Arc<AppState>>,
    Extension(context): Extension<Arc<RequestContext>>,
    request: Request,
) -> Response {
    handle(&app, &context, request).await
}

/// What [`webhook`] does, callable without the router (see `correlation::observe`).
pub(super) async fn handle(app: &AppState, context: &RequestContext, request: Request) -> Response {
    let correlation_id = context.correlation_id;
    let client_ip = context.client_ip;
    // Taken apart rather than extracted as `HeaderMap` + `Body`, which clones every header.
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    if !app.sources.allows(client_ip) {
        return ApiError::ForbiddenSource.into_response();
    }
    let bytes = match read_body(app, &headers, body).await {
        Ok(bytes) => bytes,
        Err(e) => return e.into_response(),
    };
    let deadline = Instant::now() + app.request_deadline;
    let proxy_cert;
    let cert = match context.certificate.0.as_deref() {
        Some(cert) => Some(cert),
        None => {
            let trusted = app.sources.trusts(context.peer.ip());
            proxy_cert = (app.client_cert_proxy_headers && trusted)
                .then(|| super::client_cert::from_proxy_headers(&headers))
                .flatten();
            proxy_cert.as_ref()
        }
    };
    let accepted = match app.intake.check_with_certificate(&headers, &bytes, cert) {
        Ok(accepted) => accepted,
        Err(e) => return e.into_response(),
    };
    let mut log = signal_log(&accepted);
    let mut response = match app.halt.current() {
        HaltState::Running { .. } => {
            publish(app, &accepted, &correlation_id, deadline, &mut log).await
        }
        HaltState::Halted { change } => ApiError::Halted {
            reason: change.reason,
        }
        .into_response(),
        HaltState::Unknown { reason } => ApiError::Unavailable { internal: reason }.into_response(),
    };
    response.extensions_mut().insert(log);
    response
}

async fn publish(
    app: &AppState,
    accepted: &Accepted,
    correlation_id: &CorrelationId,
    deadline: Instant,
    log: &mut SignalLog,
) -> Response {
    let Accepted {
        signal,
        key,
        verified,
        received_at,
    } = accepted;
    let payload =
        SignalMessage::new(signal, key, verified, *received_at, correlation_id.as_str()).to_bytes();
    let ticker = signal.ticker().as_str();
    let mut subject = String::with_capacity(app.subject_prefix.len() + ticker.len() + 8);
    subject.push_str(&app.subject_prefix);
    subject.push('.');
    crate::signal::push_subject_token(&mut subject, ticker);
    let outcome = app
        .publisher
        .publish(
            subject,
            key.as_str(),
            correlation_id.as_str(),
            Bytes::from(payload),
            deadline,
        )
        .await;
    match outcome {
        Ok(Published::Stored { stream, sequence }) => {
            log.stream_seq = Some(sequence);
            accepted_body(&AcceptedBody {
                status: "accepted",
                correlation_id: correlation_id.as_str(),
                message: accepted_message(signal),
                idempotency_key: key.as_str(),
                stream: &stream,
                seq: sequence,
            })
        }
        Ok(Published::Duplicate { sequence, .. }) => {
            log.stream_seq = Some(sequence);
            ApiError::Duplicate { key: key.clone() }.into_response()
        }
        Err(unavailable) => ApiError::Unavailable {
            internal: unavailable.0,
        }
        .into_response(),
    }
}

/// `Webhook validated: {action} {quantity} {ticker}`.
fn accepted_message(signal: &crate::signal::Signal) -> String {
    let (action, quantity, ticker) = (
        signal.action().as_str(),
        signal.quantity().as_str(),
        signal.ticker().as_str(),
    );
    let mut message = String::with_capacity(22 + action.len() + quantity.len() + ticker.len());
    message.push_str("Webhook validated: ");
    message.push_str(action);
    message.push(' ');
    message.push_str(quantity);
    message.push(' ');
    message.push_str(ticker);
    message
}

/// The 200 answer: what `Json(body)` answers, the body written directly.
fn accepted_body(body: &AcceptedBody<'_>) -> Response {
    let mut out = Vec::with_capacity(256);
    crate::json::ObjectWriter::new(&mut out)
        .str("status", body.status)
        .str("correlation_id", body.correlation_id)
        .str("message", &body.message)
        .str("idempotency_key", body.idempotency_key)
        .str("stream", body.stream)
        .u64("seq", body.seq)
        .end();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response()
}

fn signal_log(accepted: &Accepted) -> SignalLog {
    SignalLog {
        idempotency_key: Some(accepted.key.as_str().to_owned()),
        ticker: Some(accepted.signal.ticker().as_str().to_owned()),
        action: Some(accepted.signal.action().as_str()),
        quantity: Some(accepted.signal.quantity().as_str().to_owned()),
        scheme: Some(accepted.verified.scheme.name()),
        key_fingerprint: Some(accepted.verified.key_fingerprint.clone()),
        stream_seq: None,
    }
}

/// The whole body, refused early when its declared length is already too large, cut off when it
/// grows past the limit while streaming, and abandoned when it arrives too slowly.
async fn read_body(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let limit = app.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let collected =
        tokio::time::timeout(app.body_read_timeout, Limited::new(body, limit).collect());
    match collected.await {
        Err(_elapsed) => Err(ApiError::RequestTimeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::PayloadTooLarge { limit })
        }
        Ok(Err(_)) => Err(ApiError::BadBody),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_accepted_answer_is_what_json_answers() {
        let body = AcceptedBody {
            status: "accepted",
            correlation_id: "c-1",
            message: "Webhook validated: BUY 1.5 \"A\"\n".into(),
            idempotency_key: "k",
            stream: "SIGNALS",
            seq: 42,
        };
        let ours = accepted_body(&body);
        let stock = axum::Json(&body).into_response();
        assert_eq!(ours.status(), stock.status());
        assert_eq!(ours.headers(), stock.headers());
        let ours = ours.into_body().collect().await.unwrap().to_bytes();
        let stock = stock.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(ours, stock);
    }
}
