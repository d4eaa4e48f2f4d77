//! Hostile requests against a real receiver and a real JetStream: every row says what is sent, the
//! status and error code it must get, and nothing may reach the stream (checked after every row
//! and once more after the table). Rows that test a layer behind authentication (schema,
//! freshness) are signed correctly, so they get as far as the layer they test.
//!
//! Framing cases are written as raw bytes over a `TcpStream`; where hyper refuses the framing
//! itself it answers a bare 4xx without a JSON body (`code: None` below), which is fine: what
//! matters is the 4xx and that nothing was published.

mod common;

use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, SecondsFormat, Timelike, Utc};
use common::*;
use serde_json::{json, Value as Json};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tv_ingress::auth::{sign_body, sign_header, Key};
use tv_ingress::json::{self as tvjson, Value};

/// The "status" of a raw exchange the server ended by closing the connection without a response.
const CLOSED_WITHOUT_ANSWER: u16 = 0;

/// How a row's request is sent.
enum Send {
    /// `POST /webhook` with these headers, through an HTTP client.
    Post {
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Any method and path, through an HTTP client.
    Route {
        method: &'static str,
        path: &'static str,
        body: Vec<u8>,
    },
    /// These bytes, as they are, over a fresh TCP connection.
    Raw(Vec<u8>),
    /// `POST /webhook` with `Transfer-Encoding: chunked`, streaming `total` bytes in 64 KiB chunks.
    Chunked { total: usize },
}

struct Row {
    description: &'static str,
    send: Send,
    status: u16,
    /// The JSON `error` code; `None` when hyper answers the framing itself (no JSON body) or the
    /// method is HEAD (no body at all).
    code: Option<&'static str>,
}

fn row(description: &'static str, send: Send, status: u16, code: Option<&'static str>) -> Row {
    Row {
        description,
        send,
        status,
        code,
    }
}

fn post(body: impl Into<Vec<u8>>) -> Send {
    Send::Post {
        headers: vec![("content-type", "application/json".into())],
        body: body.into(),
    }
}

fn post_with(headers: Vec<(&'static str, String)>, body: impl Into<Vec<u8>>) -> Send {
    Send::Post {
        headers,
        body: body.into(),
    }
}

fn route(method: &'static str, path: &'static str, body: impl Into<Vec<u8>>) -> Send {
    Send::Route {
        method,
        path,
        body: body.into(),
    }
}

fn key() -> Key {
    Key::from_bytes(SECRET.as_bytes())
}

/// A valid MARKET signal, timestamped now.
fn valid() -> Json {
    signal("AAPL", "BUY", json!(1))
}

/// `valid()` changed by `change`, then signed correctly with the in-body scheme.
fn signed_with(change: impl FnOnce(&mut Json)) -> Vec<u8> {
    let mut s = valid();
    change(&mut s);
    sign_in_body(&s)
}

/// JSON text (with `{TS}` replaced by a fresh timestamp) signed correctly with the in-body
/// scheme, keeping numbers exactly as spelled (serde_json cannot hold `1e400` or `-0`).
fn signed_text(text: &str) -> Vec<u8> {
    let text = text.replace("{TS}", &now());
    let mut object = tvjson::parse_object(text.as_bytes()).expect("template is JSON");
    sign_body(&key(), &mut object);
    tvjson::to_python_bytes(&Value::Object(object))
}

fn signed_valid() -> Vec<u8> {
    sign_in_body(&valid())
}

/// The signed valid body with its 64-hex signature replaced by `replace(signature)`.
fn resigned(replace: impl FnOnce(&str) -> String) -> Vec<u8> {
    let body = String::from_utf8(signed_valid()).unwrap();
    let parsed: Json = serde_json::from_str(&body).unwrap();
    let signature = parsed["signature"].as_str().unwrap();
    body.replace(signature, &replace(signature)).into_bytes()
}

/// The bytes of `body` with the first `from` replaced by `to` (which may be invalid UTF-8).
fn splice(body: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = body
        .windows(from.len())
        .position(|w| w == from)
        .unwrap_or_else(|| panic!("{:?} not in body", String::from_utf8_lossy(from)));
    [&body[..at], to, &body[at + from.len()..]].concat()
}

/// An HTTP/1.1 request head for `POST /webhook` with extra header lines, and the body after it.
fn raw(extra_headers: &str, body: &[u8]) -> Vec<u8> {
    [
        format!("POST /webhook HTTP/1.1\r\nHost: tv\r\n{extra_headers}\r\n").as_bytes(),
        body,
    ]
    .concat()
}

fn timestamp_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn rows() -> Vec<Row> {
    let valid_body = signed_valid();
    let valid_len = valid_body.len();
    let signed_request = raw(&format!("Content-Length: {valid_len}\r\n"), &valid_body);
    let deep_arrays = format!(
        "{{\"ticker\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let deep_objects = "{\"a\":".repeat(10_000) + "1" + &"}".repeat(10_000);
    let ten_mb = 10 * 1024 * 1024;
    let minute = Utc::now();
    // The current minute's second 60: RFC 3339 allows a leap second; chrono parses it anywhere.
    let leap_now = format!(
        "{}:60Z",
        minute.with_second(0).unwrap().format("%Y-%m-%dT%H:%M")
    );

    vec![
        // --- JSON layer: 400 malformed_json, before any authentication -------------------
        row("truncated JSON: a signed body cut in half", post(&valid_body[..valid_len / 2]), 400, Some("malformed_json")),
        row("truncated JSON: closing brace missing", post(&valid_body[..valid_len - 1]), 400, Some("malformed_json")),
        row("a JSON array holding a signed signal", post([b"[", &valid_body[..], b"]"].concat()), 400, Some("malformed_json")),
        row("a JSON string scalar", post(&b"\"AAPL\""[..]), 400, Some("malformed_json")),
        row("a JSON number scalar", post(&b"42"[..]), 400, Some("malformed_json")),
        row("a JSON null", post(&b"null"[..]), 400, Some("malformed_json")),
        row("an empty body", post(Vec::new()), 400, Some("malformed_json")),
        row("a whitespace-only body", post(&b" \r\n\t "[..]), 400, Some("malformed_json")),
        row("invalid UTF-8 (0xFF) inside the ticker", post(splice(&valid_body, b"AAPL", b"AA\xffL")), 400, Some("malformed_json")),
        row("overlong UTF-8 encoding (C0 AF) in a string", post(splice(&valid_body, b"AAPL", b"AA\xc0\xafL")), 400, Some("malformed_json")),
        row("a UTF-8-encoded surrogate (CESU-8) in a string", post(splice(&valid_body, b"AAPL", b"\xed\xa0\xbd\xed\xb8\x80")), 400, Some("malformed_json")),
        row("a UTF-8 byte-order mark before a signed signal", post([&b"\xef\xbb\xbf"[..], &valid_body].concat()), 400, Some("malformed_json")),
        row("the signed signal as UTF-16LE with its BOM", post(
            [vec![0xff, 0xfe], String::from_utf8(valid_body.clone()).unwrap().encode_utf16().flat_map(u16::to_le_bytes).collect()].concat()
        ), 400, Some("malformed_json")),
        row("arrays nested 10,000 deep in a field", post(deep_arrays), 400, Some("malformed_json")),
        row("objects nested 10,000 deep", post(deep_objects), 400, Some("malformed_json")),
        row("10,000 unclosed brackets", post("[".repeat(10_000)), 400, Some("malformed_json")),
        row("a duplicate key three levels deep", post(&br#"{"ticker":"AAPL","x":{"y":{"z":1,"z":2}}}"#[..]), 400, Some("malformed_json")),
        row("a second quantity smuggled into a signed body", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": 1, \"quantity\": 1000")), 400, Some("malformed_json")),
        row("a duplicate key spelled with an escape (tick\\u0065r)", post(splice(&valid_body, b"{", br#"{"tick\u0065r": "MSFT", "#)), 400, Some("malformed_json")),
        row("a second signature key", post(splice(&valid_body, b"{", br#"{"signature": "", "#)), 400, Some("malformed_json")),
        row("NaN as the quantity", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": NaN")), 400, Some("malformed_json")),
        row("Infinity as the quantity", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": Infinity")), 400, Some("malformed_json")),
        row("-Infinity as the quantity", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": -Infinity")), 400, Some("malformed_json")),
        row("a hexadecimal number", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": 0x1")), 400, Some("malformed_json")),
        row("a number with a leading plus", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": +1")), 400, Some("malformed_json")),
        row("a number with leading zeros", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": 007")), 400, Some("malformed_json")),
        row("single-quoted strings", post(&b"{'ticker': 'AAPL'}"[..]), 400, Some("malformed_json")),
        row("a trailing comma", post(splice(&valid_body, b"}", b",}")), 400, Some("malformed_json")),
        row("a comment inside the object", post(splice(&valid_body, b"{", b"{/* hi */")), 400, Some("malformed_json")),
        row("two signed objects back to back", post([&valid_body[..], &valid_body[..]].concat()), 400, Some("malformed_json")),
        row("a NUL byte after the object", post([&valid_body[..], b"\0"].concat()), 400, Some("malformed_json")),
        row("a raw newline inside a string", post(splice(&valid_body, b"AAPL", b"AA\nPL")), 400, Some("malformed_json")),
        row("a lone surrogate escape", post(splice(&valid_body, b"AAPL", b"\\ud800")), 400, Some("malformed_json")),
        row("an invalid escape (\\x41)", post(splice(&valid_body, b"AAPL", b"\\x41")), 400, Some("malformed_json")),
        row("a form-encoded body", post_with(
            vec![("content-type", "application/x-www-form-urlencoded".into())],
            format!("payload={}", String::from_utf8_lossy(&valid_body).replace('"', "%22").replace(' ', "+")),
        ), 400, Some("malformed_json")),

        // --- authentication: 401 invalid_signature ----------------------------------------
        row("a valid signal without any signature", post(serde_json::to_vec(&valid()).unwrap()), 401, Some("invalid_signature")),
        row("an empty signature string", resigned(|_| String::new()).into_post(), 401, Some("invalid_signature")),
        row("a signature made with an empty secret", post({
            let mut o = tvjson::parse_object(&serde_json::to_vec(&valid()).unwrap()).unwrap().into_owned();
            sign_body(&Key::from_bytes(b""), &mut o);
            tvjson::to_python_bytes(&Value::Object(o))
        }), 401, Some("invalid_signature")),
        row("a signature made with a guessed secret", post({
            let mut o = tvjson::parse_object(&serde_json::to_vec(&valid()).unwrap()).unwrap().into_owned();
            sign_body(&Key::from_bytes(b"your-secret-key"), &mut o);
            tvjson::to_python_bytes(&Value::Object(o))
        }), 401, Some("invalid_signature")),
        row("the right signature in upper-case hex", resigned(|s| s.to_uppercase()).into_post(), 401, Some("invalid_signature")),
        row("the right signature one hex digit short", resigned(|s| s[..63].to_owned()).into_post(), 401, Some("invalid_signature")),
        row("the right signature with one hex digit more", resigned(|s| format!("{s}0")).into_post(), 401, Some("invalid_signature")),
        row("the right signature twice (128 hex digits)", resigned(|s| s.repeat(2)).into_post(), 401, Some("invalid_signature")),
        row("the right signature with a sha256= prefix", resigned(|s| format!("sha256={s}")).into_post(), 401, Some("invalid_signature")),
        row("the right signature with a trailing space", resigned(|s| format!("{s} ")).into_post(), 401, Some("invalid_signature")),
        row("the signature as a JSON number", post(splice(&resigned(|_| "SIG".into()), b"\"SIG\"", b"12345")), 401, Some("invalid_signature")),
        row("the signature as null", post(splice(&resigned(|_| "SIG".into()), b"\"SIG\"", b"null")), 401, Some("invalid_signature")),
        row("the signature as an array", post(splice(&resigned(|_| "SIG".into()), b"\"SIG\"", b"[\"SIG\"]")), 401, Some("invalid_signature")),
        row("the right signature, then the quantity changed", post(splice(&valid_body, b"\"quantity\": 1", b"\"quantity\": 100")), 401, Some("invalid_signature")),
        row("the MAC of json.dumps without the signature placeholder", post({
            let mut o = tvjson::parse_object(&serde_json::to_vec(&valid()).unwrap()).unwrap().into_owned();
            let mac = hex::encode(key().sign(&[&tvjson::to_python_bytes(&Value::Object(o.clone()))]));
            o.insert_new("signature", Value::String(mac.into()));
            tvjson::to_python_bytes(&Value::Object(o))
        }), 401, Some("invalid_signature")),
        row("correct signatures in both the header and the body", post_with(
            vec![("x-signature", sign_header(&key(), &valid_body))],
            valid_body.clone(),
        ), 401, Some("invalid_signature")),
        row("header scheme: the right MAC in upper-case hex", {
            let body = serde_json::to_vec(&valid()).unwrap();
            let mac = sign_header(&key(), &body).replace("sha256=", "").to_uppercase();
            post_with(vec![("x-signature", format!("sha256={mac}"))], body)
        }, 401, Some("invalid_signature")),
        row("header scheme: an upper-case SHA256= prefix", {
            let body = serde_json::to_vec(&valid()).unwrap();
            post_with(vec![("x-signature", sign_header(&key(), &body).replace("sha256=", "SHA256="))], body)
        }, 401, Some("invalid_signature")),
        row("header scheme: the right MAC without the sha256= prefix", {
            let body = serde_json::to_vec(&valid()).unwrap();
            post_with(vec![("x-signature", sign_header(&key(), &body).replace("sha256=", ""))], body)
        }, 401, Some("invalid_signature")),
        row("header scheme: the right header twice", {
            let body = serde_json::to_vec(&valid()).unwrap();
            let h = sign_header(&key(), &body);
            post_with(vec![("x-signature", h.clone()), ("x-signature", h)], body)
        }, 401, Some("invalid_signature")),
        row("header scheme: an empty X-Signature", post_with(vec![("x-signature", String::new())], serde_json::to_vec(&valid()).unwrap()), 401, Some("invalid_signature")),
        row("header scheme: MAC of the body before one space was added", {
            let body = serde_json::to_vec(&valid()).unwrap();
            let h = sign_header(&key(), &body);
            post_with(vec![("x-signature", h)], [&b" "[..], &body].concat())
        }, 401, Some("invalid_signature")),
        row("an unsigned body on /webhook with a query string", route("POST", "/webhook?signature=ok&debug=1", serde_json::to_vec(&valid()).unwrap()), 401, Some("invalid_signature")),

        // --- schema, signed correctly: 422 invalid_payload --------------------------------
        row("quantity 1e400", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":1e400,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("quantity -0", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":-0,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("quantity -0.0e0", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":-0.0e0,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("quantity 0", post(signed_with(|s| s["quantity"] = json!(0))), 422, Some("invalid_payload")),
        row("quantity -5", post(signed_with(|s| s["quantity"] = json!(-5))), 422, Some("invalid_payload")),
        row("a 40-digit quantity", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":1234567890123456789012345678901234567890,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("a quantity with 40 decimal places", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":0.1234567890123456789012345678901234567890,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("quantity 1e-400", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":1e-400,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("quantity with a 30-digit exponent", post(signed_text(r#"{"ticker":"AAPL","action":"BUY","quantity":1e999999999999999999999999999999,"order_type":"MARKET","timestamp":"{TS}"}"#)), 422, Some("invalid_payload")),
        row("quantity as a string with a leading space", post(signed_with(|s| s["quantity"] = json!(" 10"))), 422, Some("invalid_payload")),
        row("quantity as a string with a trailing space", post(signed_with(|s| s["quantity"] = json!("10 "))), 422, Some("invalid_payload")),
        row("quantity as a string with an inner space", post(signed_with(|s| s["quantity"] = json!("1 000"))), 422, Some("invalid_payload")),
        row("quantity as the string \"NaN\"", post(signed_with(|s| s["quantity"] = json!("NaN"))), 422, Some("invalid_payload")),
        row("quantity as the string \"Infinity\"", post(signed_with(|s| s["quantity"] = json!("Infinity"))), 422, Some("invalid_payload")),
        row("quantity as the string \"0x10\"", post(signed_with(|s| s["quantity"] = json!("0x10"))), 422, Some("invalid_payload")),
        row("quantity as a boolean", post(signed_with(|s| s["quantity"] = json!(true))), 422, Some("invalid_payload")),
        row("quantity as an array", post(signed_with(|s| s["quantity"] = json!([1]))), 422, Some("invalid_payload")),
        row("quantity as an object", post(signed_with(|s| s["quantity"] = json!({"value": 1}))), 422, Some("invalid_payload")),
        row("a timestamp with no offset", post(signed_with(|s| s["timestamp"] = json!(Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string()))), 422, Some("invalid_payload")),
        row("a timestamp with a +0000 offset (no colon)", post(signed_with(|s| s["timestamp"] = json!(Utc::now().format("%Y-%m-%dT%H:%M:%S+0000").to_string()))), 422, Some("invalid_payload")),
        row("a leap second: 2016-12-31T23:59:60Z", post(signed_with(|s| s["timestamp"] = json!("2016-12-31T23:59:60Z"))), 422, Some("invalid_payload")),
        row("a leap second in the current minute (hh:mm:60Z)", post(signed_with(|s| s["timestamp"] = json!(leap_now))), 422, Some("invalid_payload")),
        row("a timestamp as Unix seconds", post(signed_with(|s| s["timestamp"] = json!(Utc::now().timestamp()))), 422, Some("invalid_payload")),
        row("a date without a time", post(signed_with(|s| s["timestamp"] = json!(Utc::now().format("%Y-%m-%d").to_string()))), 422, Some("invalid_payload")),
        row("a ticker with a space", post(signed_with(|s| s["ticker"] = json!("BRK B"))), 422, Some("invalid_payload")),
        row("a ticker with a trailing tab", post(signed_with(|s| s["ticker"] = json!("AAPL\t"))), 422, Some("invalid_payload")),
        row("a ticker with a newline", post(signed_with(|s| s["ticker"] = json!("AAPL\nMSFT"))), 422, Some("invalid_payload")),
        row("a ticker with a NUL", post(signed_with(|s| s["ticker"] = json!("AAPL\u{0}"))), 422, Some("invalid_payload")),
        row("a non-ASCII ticker (Ä)", post(signed_with(|s| s["ticker"] = json!("ÄAPL"))), 422, Some("invalid_payload")),
        row("a Cyrillic look-alike ticker (АAPL)", post(signed_with(|s| s["ticker"] = json!("\u{410}APL"))), 422, Some("invalid_payload")),
        row("an astral-plane ticker (emoji)", post(signed_with(|s| s["ticker"] = json!("\u{1F680}"))), 422, Some("invalid_payload")),
        row("an empty ticker", post(signed_with(|s| s["ticker"] = json!(""))), 422, Some("invalid_payload")),
        row("a 33-character ticker", post(signed_with(|s| s["ticker"] = json!("X".repeat(33)))), 422, Some("invalid_payload")),
        row("the ticker as a nested object", post(signed_with(|s| s["ticker"] = json!({"symbol": "AAPL"}))), 422, Some("invalid_payload")),
        row("the ticker as an array", post(signed_with(|s| s["ticker"] = json!(["AAPL"]))), 422, Some("invalid_payload")),
        row("the action as an array", post(signed_with(|s| s["action"] = json!(["BUY"]))), 422, Some("invalid_payload")),
        row("the order type as an object", post(signed_with(|s| s["order_type"] = json!({}))), 422, Some("invalid_payload")),
        row("the timestamp as an object", post(signed_with(|s| s["timestamp"] = json!({"t": now()}))), 422, Some("invalid_payload")),
        row("the comment as an object", post(signed_with(|s| s["comment"] = json!({"text": "hi"}))), 422, Some("invalid_payload")),
        row("an unknown top-level field", post(signed_with(|s| s["leverage"] = json!(100))), 422, Some("invalid_payload")),
        row("an unknown field holding an object", post(signed_with(|s| s["meta"] = json!({"a": 1}))), 422, Some("invalid_payload")),
        row("\"Ticker\" instead of \"ticker\"", post(signed_with(|s| {
            let t = s.as_object_mut().unwrap().remove("ticker").unwrap();
            s["Ticker"] = t;
        })), 422, Some("invalid_payload")),
        row("\"Ticker\" next to \"ticker\"", post(signed_with(|s| s["Ticker"] = json!("MSFT"))), 422, Some("invalid_payload")),
        row("\"ACTION\" instead of \"action\"", post(signed_with(|s| {
            let a = s.as_object_mut().unwrap().remove("action").unwrap();
            s["ACTION"] = a;
        })), 422, Some("invalid_payload")),
        row("\"ticker \" (trailing space) as an extra field", post(signed_with(|s| s["ticker "] = json!("MSFT"))), 422, Some("invalid_payload")),
        row("an action of \"hold\"", post(signed_with(|s| s["action"] = json!("hold"))), 422, Some("invalid_payload")),
        row("an action with a trailing space", post(signed_with(|s| s["action"] = json!("BUY "))), 422, Some("invalid_payload")),
        row("a full-width action (ＢＵＹ)", post(signed_with(|s| s["action"] = json!("ＢＵＹ"))), 422, Some("invalid_payload")),
        row("a LIMIT order without its limit price", post(signed_with(|s| s["order_type"] = json!("LIMIT"))), 422, Some("invalid_payload")),
        row("a comment with a control character", post(signed_with(|s| s["comment"] = json!("ding\u{7}"))), 422, Some("invalid_payload")),
        row("an order_id of 65 characters", post(signed_with(|s| s["order_id"] = json!("o".repeat(65)))), 422, Some("invalid_payload")),

        // --- freshness, signed correctly: 400 ---------------------------------------------
        row("year 9999", post(signed_with(|s| s["timestamp"] = json!("9999-12-31T23:59:59Z"))), 400, Some("future_timestamp")),
        row("year 0000", post(signed_with(|s| s["timestamp"] = json!("0000-01-01T00:00:00Z"))), 400, Some("stale_timestamp")),
        row("an hour old (a replay outside the window)", post(signed_with(|s| s["timestamp"] = json!(timestamp_text(Utc::now() - ChronoDuration::hours(1))))), 400, Some("stale_timestamp")),
        row("an hour ahead", post(signed_with(|s| s["timestamp"] = json!(timestamp_text(Utc::now() + ChronoDuration::hours(1))))), 400, Some("future_timestamp")),
        row("now, but with a -23:59 offset", post(signed_with(|s| s["timestamp"] = json!(Utc::now().format("%Y-%m-%dT%H:%M:%S-23:59").to_string()))), 400, Some("future_timestamp")),

        // --- size: 413 payload_too_large --------------------------------------------------
        row("a signed body padded with whitespace to 65,537 bytes", post([&valid_body[..], &vec![b' '; 65_537 - valid_len]].concat()), 413, Some("payload_too_large")),
        row("10 MB with Content-Length", Send::Raw(raw(
            &format!("Content-Length: {ten_mb}\r\nConnection: close\r\n"),
            &vec![b' '; ten_mb],
        )), 413, Some("payload_too_large")),
        row("10 MB streamed chunked", Send::Chunked { total: ten_mb }, 413, Some("payload_too_large")),
        row("a declared Content-Length of 10^12 with no body", Send::Raw(raw("Content-Length: 1000000000000\r\nConnection: close\r\n", b"")), 413, Some("payload_too_large")),
        // hyper refuses a length it cannot represent as a header problem (431), before us.
        row("a Content-Length of 2^64-1", Send::Raw(raw("Content-Length: 18446744073709551615\r\nConnection: close\r\n", b"")), 431, None),

        // --- methods and paths: 405 / 404 -------------------------------------------------
        row("GET /webhook", route("GET", "/webhook", valid_body.clone()), 405, Some("method_not_allowed")),
        row("PUT /webhook", route("PUT", "/webhook", valid_body.clone()), 405, Some("method_not_allowed")),
        row("HEAD /webhook", route("HEAD", "/webhook", Vec::new()), 405, None),
        row("DELETE /webhook", route("DELETE", "/webhook", valid_body.clone()), 405, Some("method_not_allowed")),
        row("PATCH /webhook", route("PATCH", "/webhook", valid_body.clone()), 405, Some("method_not_allowed")),
        row("OPTIONS /webhook", route("OPTIONS", "/webhook", Vec::new()), 405, Some("method_not_allowed")),
        row("a lower-case method (post)", Send::Raw(raw_method("post", "/webhook", &valid_body)), 405, Some("method_not_allowed")),
        row("POST /webhook/ (trailing slash)", route("POST", "/webhook/", valid_body.clone()), 404, Some("not_found")),
        row("POST /WEBHOOK", route("POST", "/WEBHOOK", valid_body.clone()), 404, Some("not_found")),
        row("POST /Webhook", route("POST", "/Webhook", valid_body.clone()), 404, Some("not_found")),
        row("POST //webhook", route("POST", "//webhook", valid_body.clone()), 404, Some("not_found")),
        row("POST /webhook%2F", route("POST", "/webhook%2F", valid_body.clone()), 404, Some("not_found")),
        row("POST /%77ebhook (percent-encoded w)", route("POST", "/%77ebhook", valid_body.clone()), 404, Some("not_found")),
        row("POST /./webhook", Send::Raw(raw_method("POST", "/./webhook", &valid_body)), 404, Some("not_found")),
        row("POST /x/../webhook", Send::Raw(raw_method("POST", "/x/../webhook", &valid_body)), 404, Some("not_found")),
        row("POST /webhook;x", route("POST", "/webhook;x", valid_body.clone()), 404, Some("not_found")),
        row("POST /webhook%00", route("POST", "/webhook%00", valid_body.clone()), 404, Some("not_found")),
        row("POST /webhook/health", route("POST", "/webhook/health", valid_body.clone()), 404, Some("not_found")),

        // --- framing, raw bytes -----------------------------------------------------------
        row("Content-Length and Transfer-Encoding, smuggling a signed request (CL.TE)", Send::Raw({
            let chunked = [&b"0\r\n\r\n"[..], &signed_request].concat();
            raw(&format!("Content-Length: {}\r\nTransfer-Encoding: chunked\r\n", chunked.len()), &chunked)
        }), 400, Some("malformed_json")),
        row("Transfer-Encoding before Content-Length, signed request inside a chunk (TE.CL)", Send::Raw({
            let chunk = [format!("{:x}\r\n", signed_request.len()).as_bytes(), &signed_request, b"\r\n0\r\n\r\n"].concat();
            raw("Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", &chunk)
        }), 400, Some("malformed_json")),
        row("two different Content-Length headers", Send::Raw(raw(
            &format!("Content-Length: {valid_len}\r\nContent-Length: 5\r\nConnection: close\r\n"), &valid_body,
        )), 400, None),
        row("a Content-Length list (\"n, 5\")", Send::Raw(raw(
            &format!("Content-Length: {valid_len}, 5\r\nConnection: close\r\n"), &valid_body,
        )), 400, None),
        row("a negative Content-Length", Send::Raw(raw("Content-Length: -1\r\nConnection: close\r\n", &valid_body)), 400, None),
        row("a Content-Length with a plus sign", Send::Raw(raw(
            &format!("Content-Length: +{valid_len}\r\nConnection: close\r\n"), &valid_body,
        )), 400, None),
        row("Transfer-Encoding: gzip (not chunked)", Send::Raw(raw("Transfer-Encoding: gzip\r\nConnection: close\r\n", &valid_body)), 400, None),
        row("Transfer-Encoding: chunked, then identity", Send::Raw(raw(
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\nConnection: close\r\n", &valid_body,
        )), 400, None),
        row("Transfer-Encoding: xchunked", Send::Raw(raw("Transfer-Encoding: xchunked\r\nConnection: close\r\n", &valid_body)), 400, None),
        row("HTTP/1.0 with Transfer-Encoding", Send::Raw(
            [b"POST /webhook HTTP/1.0\r\nHost: tv\r\nTransfer-Encoding: chunked\r\n\r\n".as_slice(), &chunked_body(&valid_body)].concat(),
        ), 400, None),
        row("a chunk size that is not hex", Send::Raw(raw("Transfer-Encoding: chunked\r\nConnection: close\r\n", b"zz\r\n{}\r\n0\r\n\r\n")), 400, Some("bad_request")),
        row("a space before the colon of Content-Length", Send::Raw(raw(
            &format!("Content-Length : {valid_len}\r\nConnection: close\r\n"), &valid_body,
        )), 400, None),
        row("an obs-fold header continuation", Send::Raw(raw(
            &format!("X-Signature: sha256=\r\n 00\r\nContent-Length: {valid_len}\r\nConnection: close\r\n"), &valid_body,
        )), 400, None),
        row("200 header lines", Send::Raw(raw(
            &(0..200).map(|i| format!("X-Pad-{i}: {i}\r\n")).collect::<String>(), &valid_body,
        )), 431, None),
        // hyper serves HTTP/1 only here and drops the connection without answering (status 0).
        row("an HTTP/2 preface on the HTTP/1.1 port", Send::Raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()), CLOSED_WITHOUT_ANSWER, None),
    ]
}

/// `body` as one chunk plus the last chunk.
fn chunked_body(body: &[u8]) -> Vec<u8> {
    [
        format!("{:x}\r\n", body.len()).as_bytes(),
        body,
        b"\r\n0\r\n\r\n",
    ]
    .concat()
}

fn raw_method(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    [
        format!(
            "{method} {path} HTTP/1.1\r\nHost: tv\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
        body,
    ]
    .concat()
}

trait IntoPost {
    fn into_post(self) -> Send;
}

impl IntoPost for Vec<u8> {
    fn into_post(self) -> Send {
        post(self)
    }
}

/// What came back for one row.
struct Outcome {
    status: u16,
    code: Option<String>,
    /// Responses on the connection (raw rows): more than one would mean a smuggled request was
    /// served.
    responses: usize,
    /// Whether the server closed the connection (raw rows); `None` for client rows.
    closed: Option<bool>,
}

async fn send(addr: SocketAddr, send: Send) -> Outcome {
    match send {
        Send::Post { headers, body } => {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            outcome(request(addr, "POST", "/webhook", &headers, Bytes::from(body)).await)
        }
        Send::Route { method, path, body } => {
            outcome(request(addr, method, path, &[], Bytes::from(body)).await)
        }
        Send::Raw(bytes) => raw_outcome(exchange(addr, bytes, None).await),
        Send::Chunked { total } => {
            let head = b"POST /webhook HTTP/1.1\r\nHost: tv\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
            raw_outcome(exchange(addr, head, Some(total)).await)
        }
    }
}

fn outcome(r: Response) -> Outcome {
    Outcome {
        status: r.status,
        code: r.body["error"].as_str().map(str::to_owned),
        responses: 1,
        closed: None,
    }
}

fn raw_outcome((answers, closed): (Vec<(u16, Json)>, bool)) -> Outcome {
    Outcome {
        status: answers.first().map_or(0, |a| a.0),
        code: answers
            .first()
            .and_then(|a| a.1["error"].as_str().map(str::to_owned)),
        responses: answers.len(),
        closed: Some(closed),
    }
}

/// Writes `head` (then, when `chunked_total` is set, that many bytes as 64 KiB chunks and the
/// last chunk) while reading whatever the server answers until it closes or 10 s pass. The write
/// side stays open until reading ends, as an ordinary client's would.
async fn exchange(
    addr: SocketAddr,
    head: Vec<u8>,
    chunked_total: Option<usize>,
) -> (Vec<(u16, Json)>, bool) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let write = tokio::spawn(async move {
        if writer.write_all(&head).await.is_err() {
            return writer;
        }
        if let Some(total) = chunked_total {
            let chunk = [b"10000\r\n".as_slice(), &vec![b' '; 0x10000], b"\r\n"].concat();
            let mut sent = 0;
            while sent < total {
                if writer.write_all(&chunk).await.is_err() {
                    return writer;
                }
                sent += 0x10000;
            }
            let _ = writer.write_all(b"0\r\n\r\n").await;
        }
        writer
    });
    let mut answer = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let closed = loop {
        match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Err(_) => break false,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
        }
    };
    write.abort();
    (parse_responses(&answer), closed)
}

/// Splits raw bytes into (status, JSON body or null) per response (bodies have Content-Length).
fn parse_responses(mut rest: &[u8]) -> Vec<(u16, Json)> {
    let mut out = Vec::new();
    while let Some(end) = rest.windows(4).position(|w| w == b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&rest[..end]).into_owned();
        let status = head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        let body_end = (end + 4 + length).min(rest.len());
        let body = serde_json::from_slice(&rest[end + 4..body_end]).unwrap_or(Json::Null);
        out.push((status, body));
        rest = &rest[body_end..];
    }
    out
}

async fn stored_count(js: &async_nats::jetstream::Context) -> u64 {
    let mut stream = js.get_stream("SIGNALS").await.expect("stream exists");
    stream.info().await.expect("stream info").state.messages
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_requests_get_their_4xx_and_publish_nothing() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let rows = rows();
    assert!(rows.len() >= 40, "only {} rows", rows.len());

    let mut failures = Vec::new();
    println!("{:<80} {:>6} error", "request", "status");
    for Row {
        description,
        send: what,
        status,
        code,
    } in rows.into_iter()
    {
        let got = send(app.addr, what).await;
        println!(
            "{description:<80} {:>6} {}",
            got.status,
            got.code.as_deref().unwrap_or("-")
        );
        if got.status != status {
            failures.push(format!(
                "{description}: status {} (expected {status})",
                got.status
            ));
        }
        if let Some(code) = code {
            if got.code.as_deref() != Some(code) {
                failures.push(format!(
                    "{description}: error {:?} (expected {code})",
                    got.code
                ));
            }
        }
        if status == CLOSED_WITHOUT_ANSWER {
            if got.responses != 0 {
                failures.push(format!("{description}: answered"));
            }
        } else {
            if !(400..500).contains(&got.status) {
                failures.push(format!("{description}: not a 4xx"));
            }
            if got.responses != 1 {
                failures.push(format!(
                    "{description}: {} responses on one connection",
                    got.responses
                ));
            }
        }
        if got.closed == Some(false) {
            failures.push(format!("{description}: connection left open"));
        }
        let stored = stored_count(&js).await;
        if stored != 0 {
            failures.push(format!(
                "{description}: {stored} message(s) reached the stream"
            ));
            break;
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    assert!(app.stream_messages().await.is_empty());

    // The receiver was able to publish all along: a valid signal now is stored.
    assert_eq!(app.get("/ready").await.status, 200);
    let r = app.post_raw(signed_valid(), &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.stream_messages().await.len(), 1);
}

/// `.`, `*` and `>` are valid ticker characters (BRK.B), but in a NATS subject they are the token
/// separator and wildcards: such tickers are accepted, stored as sent in the body, and written
/// into the subject escaped, as exactly one token.
#[tokio::test(flavor = "multi_thread")]
async fn tickers_with_subject_syntax_are_accepted_and_safely_escaped() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let cases = [
        ("BRK.B", "BRK_2EB"),
        ("NQ*", "NQ_2A"),
        (">", "_3E"),
        ("a.*.>", "a_2E_2A_2E_3E"),
        ("signals.>", "signals_2E_3E"),
        ("ES1!", "ES1_21"),
        ("X_2EY", "X_5F2EY"),
        ("$SPX", "_24SPX"),
    ];
    for (ticker, _) in cases {
        let r = app.post_signed(&signal(ticker, "BUY", json!(1))).await;
        assert_eq!(r.status, 200, "{ticker}: {}", r.text);
    }
    let messages = app.stream_messages().await;
    assert_eq!(messages.len(), cases.len());
    for (m, (ticker, token)) in messages.iter().zip(cases) {
        assert_eq!(m.body["ticker"], ticker);
        assert_eq!(m.subject, format!("signals.{token}"));
        let tokens: Vec<&str> = m.subject.split('.').collect();
        assert_eq!(tokens.len(), 2, "{}", m.subject);
        assert!(
            tokens[1]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{}",
            m.subject
        );
    }
    // A consumer filtering one ticker's subject gets that ticker and no other.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let stream = js.get_stream("SIGNALS").await.unwrap();
    for (ticker, token) in cases {
        let m = stream
            .get_last_raw_message_by_subject(&format!("signals.{token}"))
            .await
            .unwrap();
        let body: Json = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(body["ticker"], ticker);
    }
}

/// chrono parses second 60 in any minute. Inside the freshness window such a signal used to be
/// accepted and published as `…:60Z`, which Python's `datetime.fromisoformat` and Go's
/// `time.Parse` refuse; it is now refused at the schema (422) whatever the clock says.
#[tokio::test(flavor = "multi_thread")]
async fn a_leap_second_inside_the_window_is_refused() {
    let nats = nats().await;
    let clock = tv_ingress::FixedClock::new("2025-06-01T12:00:59.900Z".parse().unwrap());
    let app = TestApp::start(config(&nats.url(), &[]), std::sync::Arc::new(clock)).await;
    app.wait_ready().await;
    let mut s = signal("AAPL", "BUY", json!(1));
    s["timestamp"] = json!("2025-06-01T12:00:60Z");
    let r = app.post_signed(&s).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.body["errors"][0]["field"], "timestamp");
    assert!(app.stream_messages().await.is_empty());
}
