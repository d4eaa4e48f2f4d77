//! The trading signal as a domain type: built only from an authenticated JSON object, and only
//! when every field is valid.
//!
//! Each field has a newtype with a private inside ([`Ticker`], [`Action`], [`Decimal`],
//! [`Order`], [`Timestamp`]), so code that holds a [`Signal`] never re-checks anything. The one
//! entry point is `Signal::try_from(&Object)`, which reports every bad field at once as a list of
//! [`FieldError`]s (answered as 422 `invalid_payload`).

mod decimal;
mod idempotency;
mod message;

pub use decimal::{Decimal, DecimalBounds, DecimalError, PRICE_BOUNDS, QUANTITY_BOUNDS};
pub use idempotency::IdempotencyKey;
pub use message::{AuthRecord, SignalMessage, SCHEMA_VERSION};

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde::Serialize;
use std::fmt;

use crate::json::{Object, Value};

/// An exchange symbol as sent: 1 to 32 printable ASCII characters without whitespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticker(String);

impl Ticker {
    pub const MAX_LEN: usize = 32;

    pub fn parse(text: &str) -> Result<Ticker, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if text.len() > Self::MAX_LEN {
            return Err(format!("must be at most {} characters", Self::MAX_LEN));
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("must be printable ASCII without whitespace".into());
        }
        Ok(Ticker(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ticker as one NATS subject token: every byte outside `[A-Za-z0-9-]` becomes `_HH`
    /// (upper-case hex), so `BRK.B` is `BRK_2EB` and no ticker can inject `.`, `*` or `>`.
    /// The mapping is injective because `_` itself is escaped.
    pub fn subject_token(&self) -> String {
        subject_token(&self.0)
    }
}

/// The token rule of [`Ticker::subject_token`] for any text (also used to filter by ticker).
pub fn subject_token(text: &str) -> String {
    let mut token = String::with_capacity(text.len() + 4);
    push_subject_token(&mut token, text);
    token
}

/// Appends [`subject_token`]`(text)` to `token`.
pub fn push_subject_token(token: &mut String, text: &str) {
    use std::fmt::Write;
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            token.push(char::from(b));
        } else {
            let _ = write!(token, "_{b:02X}");
        }
    }
}

/// BUY or SELL; accepted in any case, stored upper-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Action {
    Buy,
    Sell,
}

impl Action {
    pub fn parse(text: &str) -> Result<Action, String> {
        if text.eq_ignore_ascii_case("buy") {
            Ok(Action::Buy)
        } else if text.eq_ignore_ascii_case("sell") {
            Ok(Action::Sell)
        } else {
            Err("must be BUY or SELL".into())
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Buy => "BUY",
            Action::Sell => "SELL",
        }
    }
}

/// The order type with exactly the prices it needs: a LIMIT order cannot exist without its limit
/// price, and a MARKET order cannot carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Order {
    Market,
    Limit {
        limit_price: Decimal,
    },
    Stop {
        stop_price: Decimal,
    },
    StopLimit {
        limit_price: Decimal,
        stop_price: Decimal,
    },
}

impl Order {
    pub fn type_name(&self) -> &'static str {
        match self {
            Order::Market => "MARKET",
            Order::Limit { .. } => "LIMIT",
            Order::Stop { .. } => "STOP",
            Order::StopLimit { .. } => "STOP_LIMIT",
        }
    }

    pub fn limit_price(&self) -> Option<&Decimal> {
        match self {
            Order::Limit { limit_price } | Order::StopLimit { limit_price, .. } => {
                Some(limit_price)
            }
            _ => None,
        }
    }

    pub fn stop_price(&self) -> Option<&Decimal> {
        match self {
            Order::Stop { stop_price } | Order::StopLimit { stop_price, .. } => Some(stop_price),
            _ => None,
        }
    }
}

/// An instant given as RFC 3339 with an explicit offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    /// Accepts `2019-08-27T09:56:00Z`, `...+00:00`, `...-05:00` and fractional seconds. A time
    /// without an offset is ambiguous and refused.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        let shape_ok = text.len() >= 20
            && text
                .as_bytes()
                .get(10)
                .is_some_and(|b| matches!(b, b'T' | b't'))
            && text.is_ascii();
        if !shape_ok {
            return Err("must be RFC 3339 like 2019-08-27T09:56:00Z".into());
        }
        let t = DateTime::parse_from_rfc3339(text).map_err(|_| {
            "must be RFC 3339 with an offset (Z or +hh:mm), like 2019-08-27T09:56:00Z".to_string()
        })?;
        // chrono accepts second 60 in any minute and would publish it as `:60`, which Python's
        // datetime and Go's time.Parse refuse: a stored signal its consumers cannot read. Unix
        // time (and so TradingView's {{timenow}}) never has a leap second.
        if t.nanosecond() >= 1_000_000_000 {
            return Err("must not be a leap second (second 60)".into());
        }
        Ok(Timestamp(t.with_timezone(&Utc)))
    }

    pub fn from_utc(t: DateTime<Utc>) -> Timestamp {
        Timestamp(t)
    }

    pub fn utc(&self) -> DateTime<Utc> {
        self.0
    }

    /// RFC 3339 in UTC with `Z`; one instant has one spelling.
    pub fn to_rfc3339(&self) -> String {
        crate::rfc3339::utc(&self.0, SecondsFormat::AutoSi)
    }
}

/// A bounded free-text field (`order_id`, `strategy`, `comment`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(String);

impl Text {
    /// `multiline` allows tab and newline (free-form comments); other control characters are
    /// never accepted, as they serve only to confuse logs and terminals.
    fn parse(text: &str, max_chars: usize, multiline: bool) -> Result<Text, String> {
        if text.chars().count() > max_chars {
            return Err(format!("must be at most {max_chars} characters"));
        }
        let allowed = |c: char| multiline && matches!(c, '\t' | '\n');
        if text.chars().any(|c| c.is_control() && !allowed(c)) {
            return Err("must not contain control characters".into());
        }
        Ok(Text(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A validated trading signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signal {
    ticker: Ticker,
    action: Action,
    quantity: Decimal,
    order: Order,
    timestamp: Timestamp,
    order_id: Option<Text>,
    strategy: Option<Text>,
    price: Option<Decimal>,
    comment: Option<Text>,
}

impl Signal {
    pub fn ticker(&self) -> &Ticker {
        &self.ticker
    }
    pub fn action(&self) -> Action {
        self.action
    }
    pub fn quantity(&self) -> &Decimal {
        &self.quantity
    }
    pub fn order(&self) -> &Order {
        &self.order
    }
    pub fn timestamp(&self) -> Timestamp {
        self.timestamp
    }
    pub fn order_id(&self) -> Option<&str> {
        self.order_id.as_ref().map(Text::as_str)
    }
    pub fn strategy(&self) -> Option<&str> {
        self.strategy.as_ref().map(Text::as_str)
    }
    pub fn price(&self) -> Option<&Decimal> {
        self.price.as_ref()
    }
    pub fn comment(&self) -> Option<&str> {
        self.comment.as_ref().map(Text::as_str)
    }
}

/// One problem with one field, as listed in a 422 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// Every field a signal may carry; anything else is refused by name.
pub const KNOWN_FIELDS: &[&str] = &[
    "ticker",
    "action",
    "quantity",
    "order_type",
    "limit_price",
    "stop_price",
    "timestamp",
    "order_id",
    "strategy",
    "price",
    "comment",
];

const ORDER_ID_MAX_CHARS: usize = 64;
const STRATEGY_MAX_CHARS: usize = 64;
const COMMENT_MAX_CHARS: usize = 256;
/// Unknown field names are quoted in the answer, cut to this length.
const FIELD_NAME_ECHO_MAX: usize = 40;

/// Collects field errors while reading an object.
struct Reader<'a> {
    object: &'a Object<'a>,
    errors: Vec<FieldError>,
}

enum Presence<'a> {
    Missing,
    Present(&'a Value<'a>),
}

impl<'a> Reader<'a> {
    fn fail(&mut self, field: &str, problem: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_owned(),
            problem: problem.into(),
        });
    }

    /// `null` counts as absent, as it did for the original service's optional fields.
    fn lookup(&self, field: &str) -> Presence<'a> {
        match self.object.get(field) {
            None | Some(Value::Null) => Presence::Missing,
            Some(v) => Presence::Present(v),
        }
    }

    fn string(&mut self, field: &str, required: bool) -> Option<&'a str> {
        match self.lookup(field) {
            Presence::Missing => {
                if required {
                    self.fail(field, "is required");
                }
                None
            }
            Presence::Present(Value::String(s)) => Some(s),
            Presence::Present(_) => {
                self.fail(field, "must be a string");
                None
            }
        }
    }

    fn parsed<T>(
        &mut self,
        field: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.string(field, required)?;
        match parse(text) {
            Ok(v) => Some(v),
            Err(problem) => {
                self.fail(field, problem);
                None
            }
        }
    }

    /// A decimal given as a JSON number or as a string holding one.
    fn decimal(&mut self, field: &str, required: bool, bounds: DecimalBounds) -> Option<Decimal> {
        let text: &str = match self.lookup(field) {
            Presence::Missing => {
                if required {
                    self.fail(field, "is required");
                }
                return None;
            }
            Presence::Present(Value::Number(n)) => n,
            Presence::Present(Value::String(s)) => s,
            Presence::Present(_) => {
                self.fail(field, "must be a number or a numeric string");
                return None;
            }
        };
        match Decimal::parse(text, bounds) {
            Ok(d) => Some(d),
            Err(e) => {
                let problem = match e {
                    DecimalError::TooLarge => format!(
                        "{e} (at most {} digits before the point)",
                        bounds.max_integer_digits
                    ),
                    DecimalError::TooPrecise => format!(
                        "{e} (at most {} decimal places)",
                        bounds.max_fraction_digits
                    ),
                    _ => e.to_string(),
                };
                self.fail(field, problem);
                None
            }
        }
    }

    fn forbid(&mut self, field: &str, order_type: &str) {
        if matches!(self.lookup(field), Presence::Present(_)) {
            self.fail(field, format!("does not apply to {order_type} orders"));
        }
    }
}

fn parse_order_type(text: &str) -> Result<&'static str, String> {
    ["MARKET", "LIMIT", "STOP", "STOP_LIMIT"]
        .into_iter()
        .find(|t| t.eq_ignore_ascii_case(text))
        .ok_or_else(|| "must be MARKET, LIMIT, STOP or STOP_LIMIT".to_string())
}

impl TryFrom<&Object<'_>> for Signal {
    type Error = Vec<FieldError>;

    /// Reads a signal from an object whose authentication fields were already removed.
    fn try_from(object: &Object) -> Result<Signal, Vec<FieldError>> {
        let mut r = Reader {
            object,
            errors: Vec::new(),
        };
        for (field, _) in object.iter() {
            if !KNOWN_FIELDS.contains(&field) {
                let shown: String = field.chars().take(FIELD_NAME_ECHO_MAX).collect();
                r.fail(&shown, "is not a known field");
            }
        }
        let ticker = r.parsed("ticker", true, Ticker::parse);
        let action = r.parsed("action", true, Action::parse);
        let quantity = r.decimal("quantity", true, QUANTITY_BOUNDS);
        let order_type = r.parsed("order_type", true, parse_order_type);
        let timestamp = r.parsed("timestamp", true, Timestamp::parse);
        let order_id = r.parsed("order_id", false, |s| {
            Text::parse(s, ORDER_ID_MAX_CHARS, false)
        });
        let strategy = r.parsed("strategy", false, |s| {
            Text::parse(s, STRATEGY_MAX_CHARS, false)
        });
        let price = r.decimal("price", false, PRICE_BOUNDS);
        let comment = r.parsed("comment", false, |s| {
            Text::parse(s, COMMENT_MAX_CHARS, true)
        });

        let order = match order_type {
            Some("MARKET") => {
                r.forbid("limit_price", "MARKET");
                r.forbid("stop_price", "MARKET");
                Some(Order::Market)
            }
            Some("LIMIT") => {
                r.forbid("stop_price", "LIMIT");
                r.decimal("limit_price", true, PRICE_BOUNDS)
                    .map(|limit_price| Order::Limit { limit_price })
            }
            Some("STOP") => {
                r.forbid("limit_price", "STOP");
                r.decimal("stop_price", true, PRICE_BOUNDS)
                    .map(|stop_price| Order::Stop { stop_price })
            }
            Some(_) => {
                let limit = r.decimal("limit_price", true, PRICE_BOUNDS);
                let stop = r.decimal("stop_price", true, PRICE_BOUNDS);
                limit
                    .zip(stop)
                    .map(|(limit_price, stop_price)| Order::StopLimit {
                        limit_price,
                        stop_price,
                    })
            }
            None => None,
        };

        match (ticker, action, quantity, order, timestamp) {
            (Some(ticker), Some(action), Some(quantity), Some(order), Some(timestamp))
                if r.errors.is_empty() =>
            {
                Ok(Signal {
                    ticker,
                    action,
                    quantity,
                    order,
                    timestamp,
                    order_id,
                    strategy,
                    price,
                    comment,
                })
            }
            _ => Err(r.errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse_object;

    fn signal(body: &str) -> Result<Signal, Vec<FieldError>> {
        Signal::try_from(&parse_object(body.as_bytes()).unwrap())
    }

    fn fields(body: &str) -> Vec<String> {
        signal(body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    const BASE: &str =
        r#""ticker":"AAPL","action":"buy","quantity":10,"timestamp":"2025-12-26T12:30:00Z""#;

    #[test]
    fn a_minimal_market_signal_is_normalized() {
        let s = signal(&format!("{{{BASE},\"order_type\":\"market\"}}")).unwrap();
        assert_eq!(s.ticker().as_str(), "AAPL");
        assert_eq!(s.action(), Action::Buy);
        assert_eq!(s.quantity().as_str(), "10");
        assert_eq!(s.order(), &Order::Market);
        assert_eq!(s.timestamp().to_rfc3339(), "2025-12-26T12:30:00Z");
    }

    #[test]
    fn order_types_require_and_forbid_their_prices() {
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "limit without price",
                r#""order_type":"LIMIT""#,
                &["limit_price"],
            ),
            (
                "stop without price",
                r#""order_type":"stop""#,
                &["stop_price"],
            ),
            (
                "stop_limit without prices",
                r#""order_type":"Stop_Limit""#,
                &["limit_price", "stop_price"],
            ),
            (
                "market with a limit price",
                r#""order_type":"MARKET","limit_price":1"#,
                &["limit_price"],
            ),
            (
                "limit with a stop price",
                r#""order_type":"LIMIT","limit_price":1,"stop_price":2"#,
                &["stop_price"],
            ),
            ("unknown type", r#""order_type":"ICEBERG""#, &["order_type"]),
        ];
        for (description, extra, expected) in cases {
            assert_eq!(
                fields(&format!("{{{BASE},{extra}}}")),
                *expected,
                "{description}"
            );
        }
        let s = signal(&format!(
            "{{{BASE},\"order_type\":\"stop_limit\",\"limit_price\":\"10.50\",\"stop_price\":10.4}}"
        ))
        .unwrap();
        assert_eq!(s.order().limit_price().unwrap().as_str(), "10.5");
        assert_eq!(s.order().stop_price().unwrap().as_str(), "10.4");
    }

    #[test]
    fn every_bad_field_is_listed() {
        let errors = fields(
            r#"{"ticker":"BRK B","action":"hold","quantity":"1 ","order_type":"MARKET","timestamp":"2025-12-26T12:30:00","extra":1}"#,
        );
        assert_eq!(
            errors,
            ["extra", "ticker", "action", "quantity", "timestamp"]
        );
        assert_eq!(
            fields("{}"),
            ["ticker", "action", "quantity", "order_type", "timestamp"]
        );
    }

    #[test]
    fn tickers_map_to_one_safe_subject_token() {
        let cases = [
            ("AAPL", "AAPL"),
            ("BRK.B", "BRK_2EB"),
            ("ES1!", "ES1_21"),
            ("BTC_USD", "BTC_5FUSD"),
            ("a*b>c", "a_2Ab_3Ec"),
            ("NQ-1", "NQ-1"),
        ];
        for (ticker, token) in cases {
            assert_eq!(Ticker::parse(ticker).unwrap().subject_token(), token);
        }
        for bad in ["", "A B", "\u{e9}", "A\tB", &"X".repeat(33)] {
            assert!(Ticker::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn timestamps_need_an_offset() {
        assert!(Timestamp::parse("2019-08-27T09:56:00Z").is_ok());
        assert!(Timestamp::parse("2019-08-27T09:56:00.123456+00:00").is_ok());
        assert!(Timestamp::parse("2019-08-27T04:56:00-05:00").is_ok());
        for bad in [
            "2019-08-27T09:56:00",
            "2019-08-27 09:56:00Z",
            "2019-08-27",
            "1566899760",
            "2019-08-27T09:56:00+0000",
            "2019-02-30T09:56:00Z",
            // Leap seconds: a real one, one chrono would accept in any minute, and one with an
            // offset and a fraction.
            "2016-12-31T23:59:60Z",
            "2025-06-01T12:00:60Z",
            "2025-06-01T14:00:60.5+02:00",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Timestamp::parse("2019-08-27T04:56:00.5-05:00")
                .unwrap()
                .to_rfc3339(),
            "2019-08-27T09:56:00.500Z"
        );
    }
}
