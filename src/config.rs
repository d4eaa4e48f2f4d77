//! Settings: read from flags, the environment and a `.env` file (in that order of precedence),
//! validated once at start-up, with secrets wrapped so they cannot be printed.
//!
//! Every setting is listed once in [`SETTINGS`] (name, default, help), which also drives the
//! command-line flags and is checked against the README's table by a test. A bad or missing value
//! stops the start with a [`ConfigError`] that names the variable and never quotes a secret.
//! Tests build a [`Config`] from a plain map, without touching the process environment.

use async_nats::ServerAddr;
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::level_filters::LevelFilter;

/// One configurable value.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub name: &'static str,
    pub default: Option<&'static str>,
    pub secret: bool,
    pub help: &'static str,
}

const fn setting(name: &'static str, default: Option<&'static str>, help: &'static str) -> Setting {
    Setting {
        name,
        default,
        secret: false,
        help,
    }
}

/// Every setting, in the order of the README's table.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "WEBHOOK_SECRET",
        default: None,
        secret: true,
        help: "Required. HMAC-SHA256 key shared with the sender; at least 32 characters, not a placeholder",
    },
    setting("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", Some("30"), "Maximum age of a signal's timestamp (1-3600)"),
    setting("WEBHOOK_FUTURE_TOLERANCE_SECONDS", Some("5"), "How far a timestamp may be ahead of this receiver's clock (0-300)"),
    setting("BIND_ADDR", Some("0.0.0.0:8000"), "Address and port the HTTP listener binds"),
    setting("LOG_LEVEL", Some("INFO"), "TRACE, DEBUG, INFO, WARNING, ERROR (CRITICAL = ERROR); any case"),
    setting("MAX_BODY_BYTES", Some("65536"), "Largest accepted body, in bytes (512-10485760); larger gets 413"),
    setting("NATS_URL", Some("nats://127.0.0.1:4222"), "NATS server URL, or a comma-separated list of a cluster's URLs"),
    setting("NATS_CREDS_FILE", None, "Path to a NATS .creds file (JWT + NKey) when the server requires it"),
    setting("NATS_STREAM", Some("SIGNALS"), "JetStream stream that receives signals"),
    setting("NATS_SUBJECT_PREFIX", Some("signals"), "Subject prefix; a signal for BRK.B is published on <prefix>.BRK_2EB"),
    setting("NATS_STREAM_REPLICAS", Some("1"), "Replicas used when this receiver creates the stream (1, 3 or 5)"),
    setting("NATS_CREATE_STREAM", Some("true"), "Create the stream from nats/stream.json at start when it is missing (true/false)"),
    setting("REQUEST_DEADLINE_MS", Some("2500"), "Time from a received body to the answer; past it the answer is 503 (100-10000). TradingView gives up at 3000"),
    setting("BODY_READ_TIMEOUT_SECONDS", Some("10"), "Time a client has to send the whole body; slower gets 408 (1-300)"),
    setting("HEADER_READ_TIMEOUT_SECONDS", Some("10"), "Time a client has to send the request headers; slower is disconnected (1-300)"),
    setting("MAX_CONNECTIONS", Some("1024"), "Open client connections at most; further ones are closed at once (1-100000)"),
    setting("SHUTDOWN_GRACE_SECONDS", Some("10"), "On SIGTERM/SIGINT, how long in-flight requests may take to finish (0-300)"),
];

/// A setting that is missing or wrong; says which and why, never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

fn invalid(variable: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        problem: problem.into(),
    }
}

/// Where values come from, highest precedence first.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    layers: Vec<HashMap<String, String>>,
}

impl Sources {
    /// Flags, then the process environment, then `./.env` when it exists.
    pub fn standard(flags: HashMap<String, String>) -> Result<Sources, ConfigError> {
        let names: BTreeSet<&str> = SETTINGS.iter().map(|s| s.name).collect();
        let env: HashMap<String, String> = std::env::vars()
            .filter(|(k, _)| names.contains(k.as_str()))
            .collect();
        let mut sources = Sources::default().with(flags).with(env);
        if let Some(dotenv) = read_dotenv(Path::new(".env"))? {
            sources = sources.with(dotenv);
        }
        Ok(sources)
    }

    /// Adds a layer below the existing ones.
    pub fn with(mut self, layer: HashMap<String, String>) -> Sources {
        self.layers.push(layer);
        self
    }

    /// Adds all layers of `other` below the existing ones.
    pub fn with_all(mut self, other: Sources) -> Sources {
        self.layers.extend(other.layers);
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.layers
            .iter()
            .find_map(|layer| layer.get(name))
            .map(String::as_str)
    }
}

/// Reads a `.env` file without touching the process environment.
pub fn read_dotenv(path: &Path) -> Result<Option<HashMap<String, String>>, ConfigError> {
    if !path.exists() {
        return Ok(None);
    }
    let iter = dotenvy::from_path_iter(path)
        .map_err(|e| invalid(".env", format!("cannot read {}: {e}", path.display())))?;
    let mut map = HashMap::new();
    for item in iter {
        let (k, v) = item.map_err(|_| invalid(".env", "a line is not NAME=value"))?;
        map.insert(k, v);
    }
    Ok(Some(map))
}

/// Validated settings. Each field names its variable; see [`SETTINGS`] for defaults.
#[derive(Clone)]
pub struct Config {
    /// `WEBHOOK_SECRET`
    pub webhook_secret: SecretString,
    /// `WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS`
    pub timestamp_tolerance: Duration,
    /// `WEBHOOK_FUTURE_TOLERANCE_SECONDS`
    pub future_tolerance: Duration,
    /// `BIND_ADDR`
    pub bind_addr: SocketAddr,
    /// `LOG_LEVEL`
    pub log_level: LevelFilter,
    /// `MAX_BODY_BYTES`
    pub max_body_bytes: usize,
    /// `NATS_URL` (may carry credentials: never log it, see [`Config::nats_urls_redacted`])
    pub nats_urls: Vec<ServerAddr>,
    /// `NATS_CREDS_FILE`
    pub nats_creds_file: Option<PathBuf>,
    /// `NATS_STREAM`
    pub nats_stream: String,
    /// `NATS_SUBJECT_PREFIX`
    pub nats_subject_prefix: String,
    /// `NATS_STREAM_REPLICAS`
    pub nats_stream_replicas: usize,
    /// `NATS_CREATE_STREAM`
    pub nats_create_stream: bool,
    /// `REQUEST_DEADLINE_MS`
    pub request_deadline: Duration,
    /// `BODY_READ_TIMEOUT_SECONDS`
    pub body_read_timeout: Duration,
    /// `HEADER_READ_TIMEOUT_SECONDS`
    pub header_read_timeout: Duration,
    /// `MAX_CONNECTIONS`
    pub max_connections: usize,
    /// `SHUTDOWN_GRACE_SECONDS`
    pub shutdown_grace: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("webhook_secret", &"[redacted]")
            .field("timestamp_tolerance", &self.timestamp_tolerance)
            .field("future_tolerance", &self.future_tolerance)
            .field("bind_addr", &self.bind_addr)
            .field("log_level", &self.log_level)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("nats_urls", &self.nats_urls_redacted())
            .field("nats_creds_file", &self.nats_creds_file)
            .field("nats_stream", &self.nats_stream)
            .field("nats_subject_prefix", &self.nats_subject_prefix)
            .field("nats_stream_replicas", &self.nats_stream_replicas)
            .field("nats_create_stream", &self.nats_create_stream)
            .field("request_deadline", &self.request_deadline)
            .finish_non_exhaustive()
    }
}

/// Placeholders from documentation that must never guard real money.
const PLACEHOLDER_SECRETS: &[&str] = &[
    "your-super-secret-key-min-32-chars",
    "your-webhook-secret-here",
    "change-me-to-a-random-32-plus-character-secret",
];

/// Fewest distinct characters in a secret: rules out `aaaa...` and `abababab...`.
const MIN_DISTINCT_SECRET_CHARS: usize = 8;
pub const MIN_SECRET_CHARS: usize = 32;

/// Checks a secret's strength; the problem text never includes the secret.
pub fn check_secret_strength(secret: &str) -> Result<(), String> {
    let chars = secret.chars().count();
    if chars < MIN_SECRET_CHARS {
        return Err(format!(
            "must be at least {MIN_SECRET_CHARS} characters (got {chars}); generate one with `openssl rand -hex 32`"
        ));
    }
    if PLACEHOLDER_SECRETS
        .iter()
        .any(|p| secret.eq_ignore_ascii_case(p))
    {
        return Err(
            "is a documentation placeholder; generate one with `openssl rand -hex 32`".into(),
        );
    }
    let distinct: BTreeSet<char> = secret.chars().collect();
    if distinct.len() < MIN_DISTINCT_SECRET_CHARS {
        return Err(format!(
            "is too repetitive (fewer than {MIN_DISTINCT_SECRET_CHARS} distinct characters); generate one with `openssl rand -hex 32`"
        ));
    }
    if secret.trim() != secret {
        return Err("has leading or trailing whitespace (a copy-paste accident?)".into());
    }
    Ok(())
}

struct Reader<'a> {
    sources: &'a Sources,
}

impl Reader<'_> {
    fn raw(&self, name: &'static str) -> Option<String> {
        let from_sources = self.sources.get(name).map(str::to_owned);
        let value = from_sources.or_else(|| {
            SETTINGS
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.default)
                .map(str::to_owned)
        });
        value.filter(|v| !v.trim().is_empty())
    }

    fn required(&self, name: &'static str) -> Result<String, ConfigError> {
        self.raw(name)
            .ok_or_else(|| invalid(name, "is required but not set"))
    }

    fn number<T>(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    {
        let text = self.required(name)?;
        let value: T = text
            .trim()
            .parse()
            .map_err(|_| invalid(name, format!("must be a whole number, got {text:?}")))?;
        if !range.contains(&value) {
            return Err(invalid(
                name,
                format!(
                    "must be between {} and {}, got {value}",
                    range.start(),
                    range.end()
                ),
            ));
        }
        Ok(value)
    }

    fn seconds(
        &self,
        name: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(name, range).map(Duration::from_secs)
    }

    fn boolean(&self, name: &'static str) -> Result<bool, ConfigError> {
        let text = self.required(name)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(invalid(
                name,
                format!("must be true or false, got {text:?}"),
            )),
        }
    }
}

fn parse_log_level(text: &str) -> Option<LevelFilter> {
    Some(match text.trim().to_ascii_uppercase().as_str() {
        "TRACE" => LevelFilter::TRACE,
        "DEBUG" => LevelFilter::DEBUG,
        "INFO" => LevelFilter::INFO,
        "WARN" | "WARNING" => LevelFilter::WARN,
        "ERROR" | "CRITICAL" => LevelFilter::ERROR,
        "OFF" => LevelFilter::OFF,
        _ => return None,
    })
}

fn is_valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_valid_subject_prefix(prefix: &str) -> bool {
    prefix.len() <= 128
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && token != "*"
                && token != ">"
                && token
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
        })
}

impl Config {
    /// Builds a config from explicit values (tests), falling back to defaults.
    pub fn from_map(values: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::default().with(values.clone()))
    }

    pub fn from_sources(sources: &Sources) -> Result<Config, ConfigError> {
        let r = Reader { sources };
        let secret = r.required("WEBHOOK_SECRET")?;
        check_secret_strength(&secret).map_err(|p| invalid("WEBHOOK_SECRET", p))?;

        let bind_text = r.required("BIND_ADDR")?;
        let bind_addr = bind_text.trim().parse().map_err(|_| {
            invalid(
                "BIND_ADDR",
                format!("must be host:port like 0.0.0.0:8000, got {bind_text:?}"),
            )
        })?;
        let level_text = r.required("LOG_LEVEL")?;
        let log_level = parse_log_level(&level_text).ok_or_else(|| {
            invalid(
                "LOG_LEVEL",
                format!("must be TRACE, DEBUG, INFO, WARNING or ERROR, got {level_text:?}"),
            )
        })?;

        let urls_text = r.required("NATS_URL")?;
        let mut nats_urls = Vec::new();
        for (i, part) in urls_text.split(',').map(str::trim).enumerate() {
            // The URL may hold a password: the problem names its position, not its text.
            let addr: ServerAddr = part.parse().map_err(|_| {
                invalid(
                    "NATS_URL",
                    format!("entry {} is not a valid NATS URL (nats://host:port)", i + 1),
                )
            })?;
            nats_urls.push(addr);
        }

        let nats_creds_file = r.raw("NATS_CREDS_FILE").map(PathBuf::from);
        if let Some(path) = &nats_creds_file {
            if !path.is_file() {
                return Err(invalid(
                    "NATS_CREDS_FILE",
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }

        let nats_stream = r.required("NATS_STREAM")?;
        if !is_valid_stream_name(&nats_stream) {
            return Err(invalid(
                "NATS_STREAM",
                "must be 1-64 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
        let nats_subject_prefix = r.required("NATS_SUBJECT_PREFIX")?;
        if !is_valid_subject_prefix(&nats_subject_prefix) {
            return Err(invalid(
                "NATS_SUBJECT_PREFIX",
                "must be dot-separated tokens without spaces or wildcards, like signals or trading.signals",
            ));
        }
        let nats_stream_replicas = r.number("NATS_STREAM_REPLICAS", 1..=5)?;

        Ok(Config {
            webhook_secret: SecretString::from(secret),
            timestamp_tolerance: r.seconds("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", 1..=3600)?,
            future_tolerance: r.seconds("WEBHOOK_FUTURE_TOLERANCE_SECONDS", 0..=300)?,
            bind_addr,
            log_level,
            max_body_bytes: r.number("MAX_BODY_BYTES", 512..=10 * 1024 * 1024)?,
            nats_urls,
            nats_creds_file,
            nats_stream,
            nats_subject_prefix,
            nats_stream_replicas,
            nats_create_stream: r.boolean("NATS_CREATE_STREAM")?,
            request_deadline: Duration::from_millis(r.number("REQUEST_DEADLINE_MS", 100..=10_000)?),
            body_read_timeout: r.seconds("BODY_READ_TIMEOUT_SECONDS", 1..=300)?,
            header_read_timeout: r.seconds("HEADER_READ_TIMEOUT_SECONDS", 1..=300)?,
            max_connections: r.number("MAX_CONNECTIONS", 1..=100_000)?,
            shutdown_grace: r.seconds("SHUTDOWN_GRACE_SECONDS", 0..=300)?,
        })
    }

    /// The shortest duplicate window that covers every accepted resend of one signal.
    pub fn min_duplicate_window(&self) -> Duration {
        self.timestamp_tolerance + self.future_tolerance + crate::publish::DUPLICATE_WINDOW_MARGIN
    }

    /// NATS URLs with any user or password replaced, for logs and status output.
    pub fn nats_urls_redacted(&self) -> String {
        self.nats_urls
            .iter()
            .map(|a| {
                let url = a.as_url_str();
                match url.find("://").map(|i| i + 3).zip(url.rfind('@')) {
                    Some((start, at)) if at > start => {
                        format!("{}***{}", &url[..start], &url[at..])
                    }
                    _ => url.to_owned(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The webhook secret, for building keys. Keep the result out of logs.
    pub fn webhook_secret(&self) -> &str {
        self.webhook_secret.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const GOOD_SECRET: &str = "unit-test-secret-0123456789abcdefghij";

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert("WEBHOOK_SECRET".into(), GOOD_SECRET.into());
        for (k, v) in pairs {
            map.insert((*k).into(), (*v).into());
        }
        Config::from_map(&map)
    }

    #[test]
    fn defaults_apply() {
        let c = config(&[]).unwrap();
        assert_eq!(c.timestamp_tolerance, Duration::from_secs(30));
        assert_eq!(c.future_tolerance, Duration::from_secs(5));
        assert_eq!(c.bind_addr, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c.max_body_bytes, 65536);
        assert_eq!(c.nats_stream, "SIGNALS");
        assert_eq!(c.nats_subject_prefix, "signals");
        assert_eq!(c.request_deadline, Duration::from_millis(2500));
        assert_eq!(c.nats_urls.len(), 1);
    }

    #[test]
    fn each_bad_value_names_its_variable() {
        let cases: &[(&str, &str, &str)] = &[
            ("secret too short", "WEBHOOK_SECRET", "short-secret"),
            (
                "placeholder secret",
                "WEBHOOK_SECRET",
                "your-super-secret-key-min-32-chars",
            ),
            ("repetitive secret", "WEBHOOK_SECRET", &"ab".repeat(20)),
            ("empty secret", "WEBHOOK_SECRET", ""),
            ("tolerance zero", "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", "0"),
            (
                "tolerance text",
                "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS",
                "thirty",
            ),
            ("future negative", "WEBHOOK_FUTURE_TOLERANCE_SECONDS", "-1"),
            ("bind without port", "BIND_ADDR", "0.0.0.0"),
            ("unknown level", "LOG_LEVEL", "LOUD"),
            ("body too small", "MAX_BODY_BYTES", "10"),
            ("bad url", "NATS_URL", "nats://a:b:c:d"),
            ("stream with dot", "NATS_STREAM", "SIG.NALS"),
            ("prefix with wildcard", "NATS_SUBJECT_PREFIX", "signals.>"),
            (
                "prefix with empty token",
                "NATS_SUBJECT_PREFIX",
                "signals..x",
            ),
            ("replicas", "NATS_STREAM_REPLICAS", "9"),
            ("deadline", "REQUEST_DEADLINE_MS", "5"),
            ("bool", "NATS_CREATE_STREAM", "maybe"),
            (
                "creds file missing",
                "NATS_CREDS_FILE",
                "/nonexistent/x.creds",
            ),
        ];
        for (description, variable, value) in cases {
            let err = config(&[(variable, value)]).unwrap_err();
            assert_eq!(err.variable, *variable, "{description}: {err}");
            if *variable == "WEBHOOK_SECRET" && !value.is_empty() {
                assert!(
                    !err.to_string().contains(value),
                    "{description}: secret echoed"
                );
            }
        }
    }

    #[test]
    fn missing_secret_is_named() {
        let err = Config::from_map(&HashMap::new()).unwrap_err();
        assert_eq!(err.variable, "WEBHOOK_SECRET");
        assert!(err.to_string().contains("required"));
    }

    #[test]
    fn flags_beat_env_beat_dotenv() {
        let layer = |v: &str| HashMap::from([("NATS_STREAM".to_string(), v.to_string())]);
        let sources = Sources::default()
            .with(HashMap::from([(
                "WEBHOOK_SECRET".to_string(),
                GOOD_SECRET.to_string(),
            )]))
            .with(layer("FLAG"))
            .with(layer("ENV"));
        assert_eq!(Config::from_sources(&sources).unwrap().nats_stream, "FLAG");
    }

    #[test]
    fn urls_are_redacted_and_lists_allowed() {
        let c = config(&[("NATS_URL", "nats://user:pw@a:4222, nats://b:4223")]).unwrap();
        assert_eq!(c.nats_urls.len(), 2);
        let shown = c.nats_urls_redacted();
        assert!(!shown.contains("pw"), "{shown}");
        assert!(!format!("{c:?}").contains(GOOD_SECRET));
    }

    #[test]
    fn every_setting_is_documented_once_in_the_readme_table() {
        let readme = include_str!("../README.md");
        for setting in SETTINGS {
            let row = format!("| `{}` |", setting.name);
            assert_eq!(
                readme.matches(&row).count(),
                1,
                "README table row for {}",
                setting.name
            );
        }
    }

    #[test]
    fn python_level_names_are_understood() {
        assert_eq!(
            config(&[("LOG_LEVEL", "warning")]).unwrap().log_level,
            LevelFilter::WARN
        );
        assert_eq!(
            config(&[("LOG_LEVEL", "CRITICAL")]).unwrap().log_level,
            LevelFilter::ERROR
        );
    }
}
