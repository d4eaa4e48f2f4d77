//! Logging: JSON lines on stdout, one object per event, fields at the top level.
//!
//! async-nats writes its CONNECT frame (which can hold a password or token) at TRACE level, so
//! its logs are capped at INFO whatever `LOG_LEVEL` says.
//!
//! The lines are exactly those of `tracing_subscriber`'s JSON format with `flatten_event(true)`,
//! no span fields and the target, written by [`JsonLines`] straight into the line buffer: the
//! stock formatter goes through a serde serializer over a `fmt::Write` adaptor that re-checks
//! UTF-8 for every fragment, and took about a sixth of the receiver's instructions per request.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter used for every log output of the process.
pub fn filter(level: LevelFilter) -> Targets {
    Targets::new()
        .with_default(level)
        .with_target("async_nats", level.min(LevelFilter::INFO))
}

/// Installs the JSON subscriber writing to `writer`; a second call does nothing.
pub fn init_with_writer<W>(level: LevelFilter, writer: W)
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::layer()
        .event_format(JsonLines)
        .fmt_fields(JsonFields::new())
        .with_writer(writer);
    let _ = tracing_subscriber::registry()
        .with(format.with_filter(filter(level)))
        .try_init();
}

/// Installs the JSON subscriber on stdout.
pub fn init(level: LevelFilter) {
    init_with_writer(level, std::io::stdout);
}

/// Installs the JSON subscriber on stdout through [`BufferedStdout`]: lines reach stdout within
/// [`FLUSH_INTERVAL`] (or at once when [`FLUSH_BYTES`] are waiting), and [`flush`] writes out
/// the rest. For `serve`, where one `write(2)` per request line was a tenth of the receiver's
/// kernel time.
pub fn init_buffered(level: LevelFilter) {
    // Both buffers allocated here, so that the flushing thread never allocates.
    for buffer in [&PENDING, &WRITING] {
        let mut buffer = buffer.lock().unwrap_or_else(|e| e.into_inner());
        let room = 2 * FLUSH_BYTES - buffer.len();
        buffer.reserve(room);
    }
    BufferedStdout::start_flusher();
    init_with_writer(level, BufferedStdout);
    // A panic's message goes to stderr; the lines logged before it still reach stdout.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        previous(info);
    }));
}

/// How long a log line may wait in [`BufferedStdout`] before it is written.
pub const FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(50);

/// Waiting bytes that make the logging thread write them out itself, bounding the buffer.
pub const FLUSH_BYTES: usize = 64 * 1024;

static PENDING: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Held while writing to stdout, so that batches keep their order; holds the spare buffer.
static WRITING: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Writes every buffered log line to stdout (a no-op when nothing is waiting).
pub fn flush() {
    let mut batch = WRITING.lock().unwrap_or_else(|e| e.into_inner());
    {
        // Swapped out so that logging goes on while the batch is written.
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        if pending.is_empty() {
            return;
        }
        std::mem::swap(&mut *pending, &mut *batch);
        if pending.capacity() == 0 {
            pending.reserve(2 * FLUSH_BYTES);
        }
    }
    let mut out = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut out, &batch);
    let _ = std::io::Write::flush(&mut out);
    batch.clear();
}

/// Log lines appended to a process-wide buffer that a background thread writes to stdout every
/// [`FLUSH_INTERVAL`]; a full buffer ([`FLUSH_BYTES`]) is written by the thread that filled it.
#[derive(Debug, Clone, Copy, Default)]
pub struct BufferedStdout;

impl BufferedStdout {
    fn start_flusher() {
        static STARTED: std::sync::Once = std::sync::Once::new();
        STARTED.call_once(|| {
            let _ = std::thread::Builder::new()
                .name("log-flush".into())
                .stack_size(64 * 1024)
                .spawn(|| loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    flush();
                });
        });
    }
}

impl std::io::Write for BufferedStdout {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
            if pending.capacity() == 0 {
                pending.reserve(2 * FLUSH_BYTES);
            }
            pending.extend_from_slice(buf);
            pending.len() >= FLUSH_BYTES
        };
        if full {
            flush();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStdout {
    type Writer = BufferedStdout;
    fn make_writer(&'a self) -> BufferedStdout {
        BufferedStdout
    }
}

use tracing_subscriber::Layer as _;

/// One JSON object per event: `timestamp` (RFC 3339 UTC, microseconds), `level`, the event's
/// fields in order (`message` among them), `target`. Byte for byte what
/// `fmt::layer().json().flatten_event(true).with_current_span(false).with_span_list(false)
/// .with_target(true)` writes (the tests compare the two).
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

thread_local! {
    /// Scratch space for `Debug` values before they are escaped.
    static SCRATCH: RefCell<String> = const { RefCell::new(String::new()) };
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::with_capacity(512);
        line.push_str("{\"timestamp\":\"");
        push_timestamp(&mut line, std::time::SystemTime::now())?;
        line.push_str("\",\"level\":\"");
        line.push_str(level_name(*event.metadata().level()));
        line.push('"');
        let mut visitor = FieldWriter { line: &mut line };
        event.record(&mut visitor);
        line.push_str(",\"target\":");
        push_json_string(&mut line, event.metadata().target());
        line.push_str("}\n");
        writer.write_str(&line)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` as `tracing_subscriber::fmt::time::SystemTime` writes it.
fn push_timestamp(line: &mut String, now: std::time::SystemTime) -> fmt::Result {
    let t = chrono::DateTime::<chrono::Utc>::from(now);
    if crate::rfc3339::push_utc(line, &t, chrono::SecondsFormat::Micros) {
        return Ok(());
    }
    // Outside the four-digit years (and leap seconds): the stock formatter itself.
    SystemTime.format_time(&mut Writer::new(line))
}

/// `value` as a JSON string, escaped exactly as `serde_json` escapes it.
pub fn push_json_string(line: &mut String, value: &str) {
    line.push('"');
    let bytes = value.as_bytes();
    let mut start = 0;
    loop {
        // Only ASCII bytes are escaped, so `start..i` always falls on character boundaries.
        let i = start + crate::json::plain_len(&bytes[start..]);
        line.push_str(&value[start..i]);
        let Some(&b) = bytes.get(i) else { break };
        match b {
            b'"' => line.push_str("\\\""),
            b'\\' => line.push_str("\\\\"),
            0x08 => line.push_str("\\b"),
            0x0C => line.push_str("\\f"),
            b'\n' => line.push_str("\\n"),
            b'\r' => line.push_str("\\r"),
            b'\t' => line.push_str("\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                line.push_str("\\u00");
                line.push(char::from(HEX[usize::from(b >> 4)]));
                line.push(char::from(HEX[usize::from(b & 0xF)]));
            }
        }
        start = i + 1;
    }
    line.push('"');
}

/// Writes each field as `,"name":value`, as `tracing_serde::SerdeMapVisitor` serializes it.
struct FieldWriter<'a> {
    line: &'a mut String,
}

impl FieldWriter<'_> {
    fn key(&mut self, field: &Field) {
        self.line.push(',');
        push_json_string(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for FieldWriter<'_> {
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        let line = &mut *self.line;
        let written = SCRATCH.try_with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                let _ = write!(text, "{value:?}");
                push_json_string(line, &text);
                true
            }
            Err(_) => false,
        });
        if written != Ok(true) {
            push_json_string(line, &format!("{value:?}"));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        // serde_json's own spelling (shortest round-trip digits; `null` when not finite), written
        // into a stack buffer.
        let mut number = [0u8; 32];
        let mut rest = &mut number[..];
        let spelled = match serde_json::to_writer(&mut rest, &value) {
            Ok(()) => {
                let len = 32 - rest.len();
                std::str::from_utf8(&number[..len]).unwrap_or("null")
            }
            Err(_) => "null",
        };
        self.line.push_str(spelled);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        push_json_string(self.line, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Buffer {
            self.clone()
        }
    }

    impl Buffer {
        fn lines(&self) -> Vec<String> {
            String::from_utf8(self.0.lock().unwrap().clone())
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    /// The same events through the stock JSON formatter and through [`JsonLines`].
    fn both(emit: impl Fn()) -> (Vec<String>, Vec<String>) {
        let stock = Buffer::default();
        let ours = Buffer::default();
        let stock_subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(false)
                .with_target(true)
                .with_writer(stock.clone())
                .with_filter(filter(LevelFilter::TRACE)),
        );
        let our_subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(JsonLines)
                .fmt_fields(JsonFields::new())
                .with_writer(ours.clone())
                .with_filter(filter(LevelFilter::TRACE)),
        );
        tracing::subscriber::with_default(stock_subscriber, &emit);
        tracing::subscriber::with_default(our_subscriber, &emit);
        (stock.lines(), ours.lines())
    }

    /// A line without its timestamp value, which differs between two runs.
    fn untimed(line: &str) -> String {
        let prefix = "{\"timestamp\":\"";
        assert!(line.starts_with(prefix), "{line}");
        let rest = &line[prefix.len()..];
        let end = rest.find('"').unwrap();
        let stamp = &rest[..end];
        assert_eq!(stamp.len(), 27, "{stamp}");
        assert!(
            chrono::DateTime::parse_from_rfc3339(stamp).is_ok(),
            "{stamp}"
        );
        rest[end..].to_owned()
    }

    #[test]
    fn lines_match_the_stock_json_format() {
        let (stock, ours) = both(|| {
            let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
            let none: Option<&str> = None;
            tracing::event!(
                target: "tv_ingress::request",
                Level::INFO,
                correlation_id = "6f1c",
                method = "POST",
                path = "/webhook",
                client_ip = Some(tracing::field::display(ip)),
                status = 200u16,
                outcome = "accepted",
                latency_ms = 1.25f64,
                detail = none,
                stream_seq = Some(42u64),
                "request"
            );
            tracing::warn!(
                detail = "quote \" backslash \\ newline \n tab \t bell \u{7} del \u{7f} é 😀",
                negative = -5i64,
                flag = true,
                tiny = 1e-9f64,
                huge = 1.5e300f64,
                nan = f64::NAN,
                whole = 3.0f64,
                "a {} message",
                "formatted"
            );
            tracing::error!(error = ?std::io::Error::other("disk \"full\""), "failed");
            tracing::debug!("only a message");
            tracing::trace!(target: "async_nats", "capped at INFO: not written");
            tracing::info!(n = u64::MAX, m = i64::MIN, "bounds");
            tracing::info!(name = %"display\u{1}value", "display");
        });
        assert_eq!(stock.len(), 6, "{stock:#?}");
        assert_eq!(stock.len(), ours.len());
        for (s, o) in stock.iter().zip(&ours) {
            assert_eq!(untimed(s), untimed(o));
        }
    }

    #[test]
    fn timestamps_are_rfc3339_microseconds_utc() {
        for (secs, nanos, expected) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_766_752_200, 123_456_789, "2025-12-26T12:30:00.123456Z"),
            (951_782_400, 999_999_999, "2000-02-29T00:00:00.999999Z"),
            (253_402_300_799, 1_000, "9999-12-31T23:59:59.000001Z"),
        ] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos);
            let mut line = String::new();
            push_timestamp(&mut line, t).unwrap();
            assert_eq!(line, expected);
        }
    }

    proptest::proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(text in "\\PC*|[\\x00-\\x7f]*") {
            let mut ours = String::new();
            push_json_string(&mut ours, &text);
            proptest::prop_assert_eq!(ours, serde_json::to_string(&text).unwrap());
        }
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut all_bytes = String::new();
        for c in (0u32..0x250).filter_map(char::from_u32) {
            all_bytes.push(c);
        }
        for text in [
            "",
            "plain",
            "\"\\/",
            "\u{0}\u{1f}\u{7f}",
            "é😀\u{2028}",
            &all_bytes,
        ] {
            let mut ours = String::new();
            push_json_string(&mut ours, text);
            assert_eq!(ours, serde_json::to_string(text).unwrap());
        }
    }
}
