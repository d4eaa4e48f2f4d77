//! Interactive API docs: an OpenAPI 3.1 document generated from the handlers' annotations at
//! `/openapi.json`, and Swagger UI at `/docs` served from vendored assets (no internet needed).
//!
//! The request schema is a documentation type; a test keeps its field list equal to the parser's
//! [`KNOWN_FIELDS`](crate::signal::KNOWN_FIELDS), so the docs cannot drift from what is accepted.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;
use std::sync::{Arc, OnceLock};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::AppState;

/// A trading signal as sent to `POST /webhook`. Credentials: a `signature` field (in-body HMAC),
/// or an `X-Signature` header, or Standard Webhooks headers, or the token field (`passphrase`
/// by default) when the token scheme is enabled.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "ticker": "AAPL",
    "action": "BUY",
    "quantity": 10,
    "order_type": "MARKET",
    "timestamp": "2025-12-26T12:30:00Z",
    "signature": "637ee9b36fbaa3418ff9708ffc647fdad4735938798d195a60dcbfc13819b2fb"
}))]
pub struct SignalRequest {
    /// 1-32 printable ASCII characters, no whitespace (`AAPL`, `BRK.B`, `ES1!`).
    pub ticker: String,
    /// `BUY` or `SELL`, any case.
    #[schema(example = "buy")]
    pub action: String,
    /// Positive decimal, as a JSON number or a numeric string; below 10^9, at most 10 decimals.
    #[schema(value_type = String, example = "0.5")]
    pub quantity: String,
    /// `MARKET`, `LIMIT`, `STOP` or `STOP_LIMIT`, any case.
    pub order_type: String,
    /// Required for LIMIT and STOP_LIMIT; refused otherwise.
    #[schema(value_type = Option<String>)]
    pub limit_price: Option<String>,
    /// Required for STOP and STOP_LIMIT; refused otherwise.
    #[schema(value_type = Option<String>)]
    pub stop_price: Option<String>,
    /// RFC 3339 with an offset, e.g. `2019-08-27T09:56:00Z` (TradingView `{{timenow}}`).
    pub timestamp: String,
    /// At most 64 characters (`{{strategy.order.id}}`); part of the idempotency key.
    pub order_id: Option<String>,
    /// At most 64 characters; part of the idempotency key.
    pub strategy: Option<String>,
    /// Informational price, positive decimal.
    #[schema(value_type = Option<String>)]
    pub price: Option<String>,
    /// At most 256 characters.
    pub comment: Option<String>,
    /// In-body scheme: lower-case hex HMAC-SHA256 of the Python `json.dumps` form with this
    /// field set to `""`. Absent with the other schemes.
    pub signature: Option<String>,
}

/// 200: the signal is stored in the stream.
#[derive(Serialize, ToSchema)]
pub struct AcceptedResponse {
    #[schema(example = "accepted")]
    pub status: String,
    pub correlation_id: String,
    #[schema(example = "Webhook validated: BUY 10 AAPL")]
    pub message: String,
    /// 32 hex characters; the message's `Nats-Msg-Id`.
    pub idempotency_key: String,
    #[schema(example = "SIGNALS")]
    pub stream: String,
    pub seq: u64,
}

/// One problem with one field.
#[derive(Serialize, ToSchema)]
pub struct FieldProblem {
    pub field: String,
    pub problem: String,
}

/// Every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    #[schema(example = "rejected")]
    pub status: String,
    /// Stable code: payload_too_large, malformed_json, bad_request, invalid_signature,
    /// forbidden_source, invalid_payload, stale_timestamp, future_timestamp, duplicate,
    /// request_timeout, halted, unavailable, not_found, method_not_allowed, unauthorized.
    #[schema(example = "invalid_signature")]
    pub error: String,
    pub detail: String,
    pub correlation_id: String,
    /// 422 only.
    pub errors: Option<Vec<FieldProblem>>,
    /// 409 only.
    pub idempotency_key: Option<String>,
}

/// `POST /admin/halt` and `/admin/resume`.
#[derive(Serialize, ToSchema)]
pub struct ChangeRequest {
    /// Why; required to halt, at most 256 characters.
    pub reason: Option<String>,
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "x_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Signature",
                "sha256=<lower-case hex HMAC-SHA256 of the raw body> (or use the in-body signature field)",
            ))),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tv-ingress",
        description = "Authenticated TradingView webhooks in, exactly one NATS JetStream message per signal out.",
    ),
    paths(
        super::webhook::webhook,
        super::health::health,
        super::health::ready,
        super::health::root,
        super::health::metrics,
        super::admin::status,
        super::admin::halt_now,
        super::admin::resume,
    ),
    components(schemas(SignalRequest, AcceptedResponse, ErrorResponse, FieldProblem, ChangeRequest)),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The document as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

const INDEX: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>tv-ingress API</title>
  <link rel="icon" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"#;

const INITIALIZER: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
};
"##;

/// The page and scripts come from this origin only; Swagger UI needs inline styles.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'self'";

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/openapi.json",
            get(|| async { asset("application/json", document().as_bytes()) }),
        )
        .route(
            "/docs",
            get(|| async { asset("text/html; charset=utf-8", INDEX.as_bytes()) }),
        )
        .route(
            "/docs/swagger-initializer.js",
            get(|| async { asset("text/javascript", INITIALIZER.as_bytes()) }),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            get(|| async {
                asset(
                    "text/javascript",
                    include_bytes!("../../assets/vendor/swagger-ui/swagger-ui-bundle.js"),
                )
            }),
        )
        .route(
            "/docs/swagger-ui.css",
            get(|| async {
                asset(
                    "text/css",
                    include_bytes!("../../assets/vendor/swagger-ui/swagger-ui.css"),
                )
            }),
        )
        .route(
            "/docs/favicon-32x32.png",
            get(|| async {
                asset(
                    "image/png",
                    include_bytes!("../../assets/vendor/swagger-ui/favicon-32x32.png"),
                )
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_openapi_3_1_and_lists_every_endpoint() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/webhook",
            "/health",
            "/ready",
            "/",
            "/metrics",
            "/admin/status",
            "/admin/halt",
            "/admin/resume",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert!(doc["paths"]["/webhook"]["post"]["responses"]["423"].is_object());
    }

    #[test]
    fn the_request_schema_lists_exactly_the_accepted_fields() {
        let doc: serde_json::Value = serde_json::from_str(document()).unwrap();
        let properties = doc["components"]["schemas"]["SignalRequest"]["properties"]
            .as_object()
            .unwrap();
        let mut documented: Vec<&str> = properties.keys().map(String::as_str).collect();
        documented.sort_unstable();
        let mut accepted: Vec<&str> = crate::signal::KNOWN_FIELDS.to_vec();
        accepted.push(crate::auth::BODY_SIGNATURE_FIELD);
        accepted.sort_unstable();
        assert_eq!(documented, accepted);
    }
}
