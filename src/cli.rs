//! The subcommands behind `main.rs`: serve, dev, sign and healthcheck.

use chrono::{SecondsFormat, Utc};
use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::auth::{sign_body, sign_header, Key};
use crate::config::{check_secret_strength, Sources};
use crate::json::{self, Object, Value};
use crate::natsd::{http_status, NatsServer};
use crate::{telemetry, Config};

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `tv-ingress serve`.
pub async fn serve(config: Config) -> ExitCode {
    telemetry::init_buffered(config.log_level);
    let code = serve_logged(config).await;
    telemetry::flush();
    code
}

async fn serve_logged(config: Config) -> ExitCode {
    let listener = match tokio::net::TcpListener::bind(config.bind_addr).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "tv-ingress: BIND_ADDR: cannot bind {}: {e}",
                config.bind_addr
            );
            return ExitCode::from(2);
        }
    };
    match crate::run(config, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tv-ingress: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `tv-ingress dev`: the one command a newcomer runs first.
pub async fn dev(sources: Sources) -> ExitCode {
    let mut overrides: HashMap<String, String> = HashMap::new();
    let generated_secret = sources.get("WEBHOOK_SECRET").is_none();
    if generated_secret {
        let secret = format!(
            "dev-{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        overrides.insert("WEBHOOK_SECRET".into(), secret);
    }
    if sources.get("BIND_ADDR").is_none() {
        overrides.insert("BIND_ADDR".into(), "127.0.0.1:8000".into());
    }
    let mut _local_nats = None;
    let wanted = sources
        .get("NATS_URL")
        .unwrap_or("nats://127.0.0.1:4222")
        .to_owned();
    if !nats_answers(&wanted).await {
        eprintln!(
            "dev: no NATS answers at {wanted}; starting a local nats-server with a temporary store"
        );
        match NatsServer::start().await {
            Ok(server) => {
                eprintln!("dev: nats-server running at {}", server.url());
                overrides.insert("NATS_URL".into(), server.url());
                _local_nats = Some(server);
            }
            Err(e) => {
                eprintln!("tv-ingress dev: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        eprintln!("dev: using NATS at {wanted}");
    }
    let sources = Sources::default().with(overrides).with_all(sources);
    let config = match Config::from_sources(&sources) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tv-ingress: {e}");
            return ExitCode::from(2);
        }
    };
    let url = format!("http://{}/webhook", config.bind_addr);
    let secret_prefix = if generated_secret {
        format!(
            "WEBHOOK_SECRET={} ",
            config.webhook_secret().unwrap_or_default()
        )
    } else {
        String::new()
    };
    eprintln!(
        "\ndev: sign and send a signal from another terminal:\n\n  {secret_prefix}cargo run -q -- sign --ticker AAPL --action buy --quantity 10 --curl {url} | sh\n"
    );
    if generated_secret {
        eprintln!("dev: the secret above was generated for this session only; set WEBHOOK_SECRET for anything real\n");
    }
    serve(config).await
}

async fn nats_answers(urls: &str) -> bool {
    let Some(first) = urls.split(',').next() else {
        return false;
    };
    let Ok(addr) = first.trim().parse::<async_nats::ServerAddr>() else {
        return false;
    };
    let target = format!("{}:{}", addr.host(), addr.port());
    tokio::time::timeout(
        Duration::from_millis(500),
        tokio::net::TcpStream::connect(target),
    )
    .await
    .is_ok_and(|r| r.is_ok())
}

#[derive(clap::Args, Debug, Default)]
pub struct SignArgs {
    /// Ticker, e.g. AAPL or BRK.B
    #[arg(long)]
    pub ticker: Option<String>,
    /// BUY or SELL
    #[arg(long, default_value = "BUY")]
    pub action: String,
    /// Quantity, e.g. 10 or 0.5
    #[arg(long, default_value = "1")]
    pub quantity: String,
    /// MARKET, LIMIT, STOP or STOP_LIMIT
    #[arg(long, default_value = "MARKET")]
    pub order_type: String,
    #[arg(long)]
    pub limit_price: Option<String>,
    #[arg(long)]
    pub stop_price: Option<String>,
    #[arg(long)]
    pub order_id: Option<String>,
    #[arg(long)]
    pub strategy: Option<String>,
    /// Timestamp to sign (default: now, RFC 3339 UTC)
    #[arg(long)]
    pub timestamp: Option<String>,
    /// Read the signal from a JSON file instead of flags ("-" for stdin); a missing timestamp
    /// is set to now
    #[arg(long, conflicts_with = "ticker")]
    pub file: Option<String>,
    /// Use the X-Signature header scheme: print the body, then the header line
    #[arg(long)]
    pub header: bool,
    /// Print a complete curl command posting to this URL instead
    #[arg(long, value_name = "URL")]
    pub curl: Option<String>,
}

/// `tv-ingress sign`.
pub fn sign(sources: &Sources, args: &SignArgs) -> ExitCode {
    match signed_request(sources, args) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tv-ingress sign: {e}");
            ExitCode::from(2)
        }
    }
}

fn signed_request(sources: &Sources, args: &SignArgs) -> Result<String, String> {
    let secret = sources
        .get("WEBHOOK_SECRET")
        .ok_or("WEBHOOK_SECRET: is required but not set")?;
    check_secret_strength(secret).map_err(|p| format!("WEBHOOK_SECRET: {p}"))?;
    let key = Key::from_bytes(secret.as_bytes());
    let mut object = match &args.file {
        Some(path) => read_object(path)?,
        None => object_from_flags(args)?,
    };
    if !object.contains_key("timestamp") {
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        object.insert_new("timestamp", Value::String(now.into()));
    }
    let (body, header) = if args.header {
        let body = json::to_python_bytes(&Value::Object(object));
        let header = sign_header(&key, &body);
        (String::from_utf8_lossy(&body).into_owned(), Some(header))
    } else {
        sign_body(&key, &mut object);
        let body = json::to_python_bytes(&Value::Object(object));
        (String::from_utf8_lossy(&body).into_owned(), None)
    };
    Ok(match (&args.curl, header) {
        (Some(url), header) => {
            let mut command = format!(
                "curl -sS -X POST {} -H 'Content-Type: application/json'",
                shell_quote(url)
            );
            if let Some(h) = header {
                command.push_str(&format!(
                    " -H {}",
                    shell_quote(&format!("X-Signature: {h}"))
                ));
            }
            command.push_str(&format!(" --data-binary {}", shell_quote(&body)));
            command
        }
        (None, Some(h)) => format!("{body}\nX-Signature: {h}"),
        (None, None) => body,
    })
}

fn read_object(path: &str) -> Result<Object<'static>, String> {
    let mut bytes = Vec::new();
    if path == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading stdin: {e}"))?;
    } else {
        bytes = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    }
    let mut object = json::parse_object(&bytes).map_err(|e| format!("{path}: {e}"))?;
    object.remove("signature");
    Ok(object.into_owned())
}

fn object_from_flags(args: &SignArgs) -> Result<Object<'static>, String> {
    let ticker = args
        .ticker
        .clone()
        .ok_or("--ticker (or --file) is required")?;
    let mut object = Object::default();
    let mut put = |k: &'static str, v: Value<'static>| {
        object.insert_new(k, v);
    };
    put("ticker", Value::String(ticker.into()));
    put("action", Value::String(args.action.clone().into()));
    put("quantity", number_or_string(&args.quantity));
    put("order_type", Value::String(args.order_type.clone().into()));
    if let Some(p) = &args.limit_price {
        put("limit_price", number_or_string(p));
    }
    if let Some(p) = &args.stop_price {
        put("stop_price", number_or_string(p));
    }
    if let Some(t) = &args.timestamp {
        put("timestamp", Value::String(t.clone().into()));
    }
    if let Some(id) = &args.order_id {
        put("order_id", Value::String(id.clone().into()));
    }
    if let Some(s) = &args.strategy {
        put("strategy", Value::String(s.clone().into()));
    }
    Ok(object)
}

/// A JSON number when the text is one, else a string (the receiver accepts both).
fn number_or_string(text: &str) -> Value<'static> {
    match json::parse(text.as_bytes()) {
        Ok(Value::Number(n)) => Value::Number(n.into_owned().into()),
        _ => Value::String(text.to_owned().into()),
    }
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

#[derive(clap::Args, Debug, Default)]
pub struct HealthcheckArgs {
    /// Check /ready instead of /health
    #[arg(long)]
    pub ready: bool,
}

/// `tv-ingress healthcheck`: for container health checks, without curl in the image.
pub fn healthcheck(sources: &Sources, args: &HealthcheckArgs) -> ExitCode {
    let bind = sources.get("BIND_ADDR").unwrap_or("0.0.0.0:8000");
    let Ok(mut addr) = bind.parse::<SocketAddr>() else {
        eprintln!("tv-ingress healthcheck: BIND_ADDR: not host:port");
        return ExitCode::from(2);
    };
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let path = if args.ready { "/ready" } else { "/health" };
    let status = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()
        .and_then(|rt| rt.block_on(http_status(addr, path)));
    match status {
        Some(200) => ExitCode::SUCCESS,
        other => {
            eprintln!("tv-ingress healthcheck: {path} answered {other:?}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Debug, Default)]
pub struct TailArgs {
    /// Replay every signal in the stream first
    #[arg(long, conflicts_with_all = ["last", "since"])]
    pub all: bool,
    /// Replay the last N signals first
    #[arg(long, value_name = "N", conflicts_with = "since")]
    pub last: Option<u64>,
    /// Replay the signals accepted within this duration first (90s, 5m, 2h, 1d)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only this ticker (as sent, e.g. BRK.B)
    #[arg(long)]
    pub ticker: Option<String>,
    /// Exit after this many signals
    #[arg(long, value_name = "N")]
    pub max: Option<u64>,
}

/// `tv-ingress tail`.
pub async fn tail(sources: &Sources, args: &TailArgs) -> ExitCode {
    let settings = match crate::config::BrokerSettings::from_sources(sources) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tv-ingress: {e}");
            return ExitCode::from(2);
        }
    };
    let from = if args.all {
        crate::ops::From::All
    } else if let Some(n) = args.last {
        crate::ops::From::Last(n)
    } else if let Some(text) = &args.since {
        match crate::ops::parse_duration(text) {
            Ok(d) => crate::ops::From::Since(d),
            Err(e) => {
                eprintln!("tv-ingress tail: --since: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        crate::ops::From::Now
    };
    let mut out = std::io::stdout();
    let outcome = tokio::select! {
        r = crate::ops::tail(&settings, from, args.ticker.as_deref(), args.max, &mut out) => r,
        () = shutdown_signal() => Ok(0),
    };
    match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tv-ingress tail: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(clap::Args, Debug, Default)]
pub struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `tv-ingress status`.
pub async fn status(sources: &Sources, args: &StatusArgs) -> ExitCode {
    let settings = match crate::config::BrokerSettings::from_sources(sources) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tv-ingress: {e}");
            return ExitCode::from(2);
        }
    };
    match crate::ops::status(&settings).await {
        Ok(status) if args.json => {
            println!("{status}");
            ExitCode::SUCCESS
        }
        Ok(status) => {
            println!("{}", crate::ops::render_status(&status));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tv-ingress status: {e}");
            ExitCode::FAILURE
        }
    }
}
