//! Settings: read from flags, the environment and a `.env` file (in that order of precedence),
//! validated once at start-up, with secrets wrapped so they cannot be printed.
//!
//! Every setting is listed once in [`SETTINGS`] (name, default, help), which also drives the
//! command-line flags and is checked against the README's table by a test. A bad or missing value
//! stops the start with a [`ConfigError`] that names the variable and never quotes a secret.
//! Tests build a [`Config`] from a plain map, without touching the process environment.

use async_nats::ServerAddr;
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretBox, SecretString};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::level_filters::LevelFilter;

use crate::auth::{standard_webhooks, CertExpectation, Scheme};

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
        help: "HMAC-SHA256 key shared with the sender (required while an hmac scheme is accepted); at least 32 characters, not a placeholder",
    },
    Setting {
        name: "WEBHOOK_SECRET_PREVIOUS",
        default: None,
        secret: true,
        help: "Comma-separated older HMAC keys still accepted while senders move to WEBHOOK_SECRET (rotation)",
    },
    setting("AUTH_SCHEMES", Some("hmac-body,hmac-header"), "Comma-separated accepted schemes: hmac-body, hmac-header, standard-webhooks, token"),
    Setting {
        name: "WEBHOOK_TOKEN",
        default: None,
        secret: true,
        help: "Token TradingView sends in the body (required while the token scheme is accepted); at least 32 characters, different from every HMAC key",
    },
    Setting {
        name: "WEBHOOK_TOKEN_PREVIOUS",
        default: None,
        secret: true,
        help: "Comma-separated older tokens still accepted during rotation",
    },
    setting("WEBHOOK_TOKEN_FIELD", Some("passphrase"), "Body field that carries the token"),
    Setting {
        name: "STANDARD_WEBHOOKS_SECRET",
        default: None,
        secret: true,
        help: "Standard Webhooks key, whsec_<base64> of 24-64 bytes (required while standard-webhooks is accepted)",
    },
    Setting {
        name: "STANDARD_WEBHOOKS_SECRET_PREVIOUS",
        default: None,
        secret: true,
        help: "Comma-separated older whsec_ keys still accepted during rotation",
    },
    setting("ALLOWED_SOURCES", None, "Comma-separated CIDRs, or the preset tradingview, allowed to call /webhook; unset allows any source"),
    setting("TRUSTED_PROXIES", None, "Comma-separated CIDRs of proxies whose X-Forwarded-For / CF-Connecting-IP is believed"),
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
    setting("TLS_CERT", None, "PEM certificate chain: turns on the HTTPS listener (with TLS_KEY); reloaded when the file changes"),
    Setting {
        name: "TLS_KEY",
        default: None,
        secret: false,
        help: "PEM private key of TLS_CERT (a path; the key file itself is the secret)",
    },
    setting("TLS_BIND_ADDR", Some("0.0.0.0:8443"), "Address of the HTTPS listener (when TLS_CERT is set); BIND_ADDR stays plain HTTP"),
    setting("TLS_CLIENT_CA", None, "PEM CA bundle that client certificates must chain to; default: the Mozilla roots"),
    setting("CLIENT_CERT_EXPECT", Some("tradingview"), "Client certificate the tradingview-cert scheme accepts: tradingview, or subject=<DN>[;email=<address>]"),
    setting("CLIENT_CERT_PROXY_HEADERS", Some("false"), "Believe X-SSL-Client-Verify / -S-DN / -Cert from TRUSTED_PROXIES (TLS terminated by nginx or HAProxy)"),
    setting("HALT_BUCKET", Some("tv_ingress_control"), "JetStream key-value bucket holding the halt switch (key `halt`); created when missing"),
    Setting {
        name: "ADMIN_TOKEN",
        default: None,
        secret: true,
        help: "Bearer token for /admin (halt, resume, status); unset disables /admin (404). At least 32 characters, different from every other secret",
    },
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

/// TradingView's published webhook source addresses (the `tradingview` preset).
pub const TRADINGVIEW_SOURCES: &[&str] = &[
    "52.89.214.238/32",
    "34.212.75.30/32",
    "54.218.53.128/32",
    "52.32.178.7/32",
];

/// Authentication settings: which schemes, and the keys of each (current key first).
#[derive(Clone)]
pub struct AuthSettings {
    /// `AUTH_SCHEMES`
    pub schemes: Vec<Scheme>,
    /// `WEBHOOK_SECRET` then `WEBHOOK_SECRET_PREVIOUS`
    pub hmac_secrets: Vec<SecretString>,
    /// `WEBHOOK_TOKEN` then `WEBHOOK_TOKEN_PREVIOUS`
    pub tokens: Vec<SecretString>,
    /// `WEBHOOK_TOKEN_FIELD`
    pub token_field: String,
    /// `STANDARD_WEBHOOKS_SECRET` then `STANDARD_WEBHOOKS_SECRET_PREVIOUS`, decoded
    pub standard_webhooks_keys: Vec<SecretBox<[u8]>>,
}

/// The HTTPS listener.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bind_addr: SocketAddr,
}

/// Validated settings. Each field names its variable; see [`SETTINGS`] for defaults.
#[derive(Clone)]
pub struct Config {
    pub auth: AuthSettings,
    /// `ALLOWED_SOURCES` (`None`: any source)
    pub allowed_sources: Option<Vec<IpNet>>,
    /// `TRUSTED_PROXIES`
    pub trusted_proxies: Vec<IpNet>,
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
    /// `TLS_CERT`, `TLS_KEY`, `TLS_BIND_ADDR` (`None`: no HTTPS listener)
    pub tls: Option<TlsSettings>,
    /// `TLS_CLIENT_CA` (`None`: the Mozilla roots)
    pub tls_client_ca: Option<PathBuf>,
    /// `CLIENT_CERT_EXPECT`
    pub client_cert_expect: CertExpectation,
    /// `CLIENT_CERT_PROXY_HEADERS`
    pub client_cert_proxy_headers: bool,
    /// `HALT_BUCKET`
    pub halt_bucket: String,
    /// `ADMIN_TOKEN` (`None`: no admin API)
    pub admin_token: Option<SecretString>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("auth_schemes", &self.auth.schemes)
            .field("allowed_sources", &self.allowed_sources)
            .field("trusted_proxies", &self.trusted_proxies)
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
            .field("halt_bucket", &self.halt_bucket)
            .field("admin_api", &self.admin_token.is_some())
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

/// A comma-separated list of secrets (empty entries ignored).
fn secret_list(r: &Reader, name: &'static str) -> Vec<String> {
    r.raw(name)
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The current secret of a scheme, then its previous ones, each checked for strength.
fn keyring_secrets(
    r: &Reader,
    current: &'static str,
    previous: &'static str,
    needed: bool,
) -> Result<Vec<String>, ConfigError> {
    let Some(first) = r.raw(current) else {
        if needed {
            return Err(invalid(current, "is required by AUTH_SCHEMES but not set"));
        }
        return Ok(Vec::new());
    };
    let mut all = vec![first];
    all.extend(secret_list(r, previous));
    for (i, secret) in all.iter().enumerate() {
        let variable = if i == 0 { current } else { previous };
        check_secret_strength(secret).map_err(|p| invalid(variable, p))?;
    }
    Ok(all)
}

fn read_auth(r: &Reader) -> Result<AuthSettings, ConfigError> {
    let mut schemes = Vec::new();
    for name in r.required("AUTH_SCHEMES")?.split(',').map(str::trim) {
        let scheme = Scheme::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Scheme::ALL.iter().map(|s| s.name()).collect();
            invalid(
                "AUTH_SCHEMES",
                format!("unknown scheme {name:?}; known: {}", known.join(", ")),
            )
        })?;
        if !schemes.contains(&scheme) {
            schemes.push(scheme);
        }
    }
    let uses = |s: Scheme| schemes.contains(&s);
    let hmac_needed = uses(Scheme::BodyHmac) || uses(Scheme::HeaderHmac);
    let hmac_secrets =
        keyring_secrets(r, "WEBHOOK_SECRET", "WEBHOOK_SECRET_PREVIOUS", hmac_needed)?;
    let tokens = keyring_secrets(
        r,
        "WEBHOOK_TOKEN",
        "WEBHOOK_TOKEN_PREVIOUS",
        uses(Scheme::Token),
    )?;
    if tokens.iter().any(|t| hmac_secrets.contains(t)) {
        return Err(invalid(
            "WEBHOOK_TOKEN",
            "must differ from every HMAC secret: the token is visible in TradingView's alert text",
        ));
    }
    let token_field = r.required("WEBHOOK_TOKEN_FIELD")?;
    if crate::signal::KNOWN_FIELDS.contains(&token_field.as_str())
        || token_field == crate::auth::BODY_SIGNATURE_FIELD
    {
        return Err(invalid(
            "WEBHOOK_TOKEN_FIELD",
            "must not be a signal field or `signature`",
        ));
    }
    let mut standard_webhooks_keys = Vec::new();
    let sw_needed = uses(Scheme::StandardWebhooks);
    let sw_current = r.raw("STANDARD_WEBHOOKS_SECRET");
    if sw_needed && sw_current.is_none() {
        return Err(invalid(
            "STANDARD_WEBHOOKS_SECRET",
            "is required by AUTH_SCHEMES but not set",
        ));
    }
    if let Some(current) = sw_current {
        let previous = secret_list(r, "STANDARD_WEBHOOKS_SECRET_PREVIOUS");
        for (i, secret) in std::iter::once(current).chain(previous).enumerate() {
            let variable = if i == 0 {
                "STANDARD_WEBHOOKS_SECRET"
            } else {
                "STANDARD_WEBHOOKS_SECRET_PREVIOUS"
            };
            let bytes =
                standard_webhooks::decode_secret(&secret).map_err(|p| invalid(variable, p))?;
            standard_webhooks_keys.push(SecretBox::new(bytes.into_boxed_slice()));
        }
    }
    Ok(AuthSettings {
        schemes,
        hmac_secrets: hmac_secrets.into_iter().map(SecretString::from).collect(),
        tokens: tokens.into_iter().map(SecretString::from).collect(),
        token_field,
        standard_webhooks_keys,
    })
}

/// A comma-separated list of CIDRs or bare addresses (and `tradingview` when allowed).
fn parse_networks(
    variable: &'static str,
    text: &str,
    presets: bool,
) -> Result<Vec<IpNet>, ConfigError> {
    let mut networks = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if presets && entry.eq_ignore_ascii_case("tradingview") {
            networks.extend(
                TRADINGVIEW_SOURCES
                    .iter()
                    .filter_map(|n| n.parse::<IpNet>().ok()),
            );
            continue;
        }
        let network = entry
            .parse::<IpNet>()
            .or_else(|_| entry.parse::<std::net::IpAddr>().map(IpNet::from))
            .map_err(|_| {
                let hint = if presets {
                    " or the preset tradingview"
                } else {
                    ""
                };
                invalid(
                    variable,
                    format!("{entry:?} is not a CIDR (like 10.0.0.0/8) or an address{hint}"),
                )
            })?;
        networks.push(network.trunc());
    }
    if networks.is_empty() {
        return Err(invalid(variable, "is set but lists nothing"));
    }
    Ok(networks)
}

/// The settings that locate the broker, the stream and the halt bucket: all that `tail` and
/// `status` need (they need no webhook secret).
#[derive(Clone)]
pub struct BrokerSettings {
    pub nats_urls: Vec<ServerAddr>,
    pub nats_creds_file: Option<PathBuf>,
    pub nats_stream: String,
    pub nats_subject_prefix: String,
    pub halt_bucket: String,
}

impl BrokerSettings {
    pub fn from_sources(sources: &Sources) -> Result<BrokerSettings, ConfigError> {
        BrokerSettings::read(&Reader { sources })
    }

    fn read(r: &Reader) -> Result<BrokerSettings, ConfigError> {
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
        let halt_bucket = r.required("HALT_BUCKET")?;
        if !is_valid_stream_name(&halt_bucket) {
            return Err(invalid(
                "HALT_BUCKET",
                "must be 1-64 characters of A-Z, a-z, 0-9, _ and -",
            ));
        }
        Ok(BrokerSettings {
            nats_urls,
            nats_creds_file,
            nats_stream,
            nats_subject_prefix,
            halt_bucket,
        })
    }

    /// Connects once (no background retry): for command-line tools.
    pub async fn connect(&self) -> Result<async_nats::Client, String> {
        let mut options = async_nats::ConnectOptions::new()
            .name(concat!("tv-ingress-cli ", env!("CARGO_PKG_VERSION")))
            .connection_timeout(Duration::from_secs(3));
        if let Some(path) = &self.nats_creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| format!("NATS_CREDS_FILE: {e}"))?;
        }
        options
            .connect(self.nats_urls.clone())
            .await
            .map_err(|e| format!("cannot connect to NATS: {e}"))
    }
}

impl Config {
    /// Builds a config from explicit values (tests), falling back to defaults.
    pub fn from_map(values: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_sources(&Sources::default().with(values.clone()))
    }

    pub fn from_sources(sources: &Sources) -> Result<Config, ConfigError> {
        let r = Reader { sources };
        let auth = read_auth(&r)?;
        let allowed_sources = match r.raw("ALLOWED_SOURCES") {
            None => None,
            Some(text) => Some(parse_networks("ALLOWED_SOURCES", &text, true)?),
        };
        let trusted_proxies = match r.raw("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(text) => parse_networks("TRUSTED_PROXIES", &text, false)?,
        };

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

        let BrokerSettings {
            nats_urls,
            nats_creds_file,
            nats_stream,
            nats_subject_prefix,
            halt_bucket,
        } = BrokerSettings::read(&r)?;
        let nats_stream_replicas = r.number("NATS_STREAM_REPLICAS", 1..=5)?;
        let tls = match (r.raw("TLS_CERT"), r.raw("TLS_KEY")) {
            (None, None) => None,
            (Some(_), None) => return Err(invalid("TLS_KEY", "is required with TLS_CERT")),
            (None, Some(_)) => return Err(invalid("TLS_CERT", "is required with TLS_KEY")),
            (Some(cert), Some(key)) => {
                let bind_text = r.required("TLS_BIND_ADDR")?;
                let bind_addr = bind_text.trim().parse().map_err(|_| {
                    invalid(
                        "TLS_BIND_ADDR",
                        format!("must be host:port like 0.0.0.0:8443, got {bind_text:?}"),
                    )
                })?;
                let settings = TlsSettings {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                    bind_addr,
                };
                crate::tls::load_pair(&settings.cert, &settings.key)
                    .map_err(|p| invalid("TLS_CERT", p))?;
                Some(settings)
            }
        };
        let tls_client_ca = r.raw("TLS_CLIENT_CA").map(PathBuf::from);
        if let Some(path) = &tls_client_ca {
            crate::tls::load_roots(path).map_err(|p| invalid("TLS_CLIENT_CA", p))?;
        }
        let client_cert_expect = CertExpectation::parse(&r.required("CLIENT_CERT_EXPECT")?)
            .map_err(|p| invalid("CLIENT_CERT_EXPECT", p))?;
        let client_cert_proxy_headers = r.boolean("CLIENT_CERT_PROXY_HEADERS")?;
        if client_cert_proxy_headers && trusted_proxies.is_empty() {
            return Err(invalid(
                "CLIENT_CERT_PROXY_HEADERS",
                "needs TRUSTED_PROXIES: the headers are believed only from those addresses",
            ));
        }
        if auth.schemes.contains(&Scheme::TradingViewCert)
            && tls.is_none()
            && !client_cert_proxy_headers
        {
            return Err(invalid(
                "AUTH_SCHEMES",
                "tradingview-cert needs TLS_CERT/TLS_KEY (this receiver terminates TLS) or CLIENT_CERT_PROXY_HEADERS=true (a trusted proxy does)",
            ));
        }
        let admin_token = match r.raw("ADMIN_TOKEN") {
            None => None,
            Some(token) => {
                check_secret_strength(&token).map_err(|p| invalid("ADMIN_TOKEN", p))?;
                let reused = auth
                    .hmac_secrets
                    .iter()
                    .chain(&auth.tokens)
                    .any(|s| s.expose_secret() == token);
                if reused {
                    return Err(invalid(
                        "ADMIN_TOKEN",
                        "must differ from every webhook secret and token",
                    ));
                }
                Some(SecretString::from(token))
            }
        };

        Ok(Config {
            auth,
            allowed_sources,
            trusted_proxies,
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
            tls,
            tls_client_ca,
            client_cert_expect,
            client_cert_proxy_headers,
            halt_bucket,
            admin_token,
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

    /// The current HMAC secret, when an HMAC scheme is configured. Keep it out of logs.
    pub fn webhook_secret(&self) -> Option<&str> {
        self.auth.hmac_secrets.first().map(|s| s.expose_secret())
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
    fn schemes_need_their_own_secrets() {
        let token = "tradingview-token-0123456789abcdefXYZ";
        let cases: &[(&str, &[(&str, &str)], &str)] = &[
            (
                "unknown scheme",
                &[("AUTH_SCHEMES", "hmac-body,carrier-pigeon")],
                "AUTH_SCHEMES",
            ),
            (
                "token scheme without token",
                &[("AUTH_SCHEMES", "token")],
                "WEBHOOK_TOKEN",
            ),
            (
                "token equal to the HMAC secret",
                &[
                    ("AUTH_SCHEMES", "token,hmac-body"),
                    ("WEBHOOK_TOKEN", GOOD_SECRET),
                ],
                "WEBHOOK_TOKEN",
            ),
            (
                "weak previous secret",
                &[("WEBHOOK_SECRET_PREVIOUS", "short")],
                "WEBHOOK_SECRET_PREVIOUS",
            ),
            (
                "standard webhooks without secret",
                &[("AUTH_SCHEMES", "standard-webhooks")],
                "STANDARD_WEBHOOKS_SECRET",
            ),
            (
                "standard webhooks secret too short",
                &[
                    ("AUTH_SCHEMES", "standard-webhooks"),
                    ("STANDARD_WEBHOOKS_SECRET", "whsec_c2hvcnQ="),
                ],
                "STANDARD_WEBHOOKS_SECRET",
            ),
            (
                "token field colliding with a signal field",
                &[("WEBHOOK_TOKEN_FIELD", "ticker")],
                "WEBHOOK_TOKEN_FIELD",
            ),
            (
                "bad CIDR",
                &[("ALLOWED_SOURCES", "10.0.0.0/33")],
                "ALLOWED_SOURCES",
            ),
            (
                "presets only for sources",
                &[("TRUSTED_PROXIES", "tradingview")],
                "TRUSTED_PROXIES",
            ),
        ];
        for (description, pairs, variable) in cases {
            let err = config(pairs).unwrap_err();
            assert_eq!(err.variable, *variable, "{description}: {err}");
            assert!(
                !err.to_string().contains(token),
                "{description}: token echoed"
            );
        }
    }

    #[test]
    fn token_only_receivers_need_no_hmac_secret() {
        let mut map: HashMap<String, String> = HashMap::new();
        map.insert("AUTH_SCHEMES".into(), "token".into());
        map.insert(
            "WEBHOOK_TOKEN".into(),
            "tradingview-token-0123456789abcdefXYZ".into(),
        );
        map.insert(
            "WEBHOOK_TOKEN_PREVIOUS".into(),
            "older-token-0123456789abcdefghijklmn".into(),
        );
        let c = Config::from_map(&map).unwrap();
        assert_eq!(c.auth.schemes, [Scheme::Token]);
        assert_eq!(c.auth.tokens.len(), 2);
        assert!(c.auth.hmac_secrets.is_empty());
    }

    #[test]
    fn sources_take_cidrs_addresses_and_the_tradingview_preset() {
        let c = config(&[
            (
                "ALLOWED_SOURCES",
                "tradingview, 192.168.1.0/24, 2001:db8::1",
            ),
            ("TRUSTED_PROXIES", "10.0.0.0/8"),
        ])
        .unwrap();
        let allowed = c.allowed_sources.unwrap();
        assert_eq!(allowed.len(), 6);
        assert!(allowed
            .iter()
            .any(|n| n.contains(&"52.32.178.7".parse::<std::net::IpAddr>().unwrap())));
        assert_eq!(c.trusted_proxies.len(), 1);
        assert!(config(&[]).unwrap().allowed_sources.is_none());
    }

    #[test]
    fn rotation_keeps_previous_secrets_after_the_current_one() {
        let c = config(&[(
            "WEBHOOK_SECRET_PREVIOUS",
            "older-secret-0123456789abcdefghijk, oldest-secret-0123456789abcdefghij",
        )])
        .unwrap();
        assert_eq!(c.auth.hmac_secrets.len(), 3);
        assert_eq!(c.webhook_secret(), Some(GOOD_SECRET));
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
