//! tv-ingress: authenticated TradingView webhooks in, exactly one JetStream message per signal
//! out.
//!
//! [`run`] is the one entry point, used by the binary and by the tests alike: it takes a
//! validated [`Config`], a bound listener and a shutdown future, and serves until the future
//! completes (or the stream turns out to be unusable at start). The request path is
//! `http` → [`intake`] (JSON, authentication, schema, freshness) → [`publish`].

pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod halt;
pub mod http;
pub mod intake;
pub mod json;
pub mod metrics;
pub mod natsd;
pub mod ops;
pub mod publish;
pub mod rfc3339;
pub mod signal;
pub mod telemetry;
pub mod tls;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub use clock::{Clock, FixedClock, SystemClock};
pub use config::{Config, ConfigError};

use auth::{Authenticator, Key, Keyring, Scheme, TokenRing};
use http::server::{serve, Endpoint, ServerLimits};
use http::AppState;
use intake::{Freshness, Intake};
use publish::{ensure_stream, BrokerState, Publisher, StreamError, StreamSpec};
use secrecy::ExposeSecret;

/// Why the receiver stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("NATS: {0}")]
    Nats(String),
    #[error("refusing to start: {0}")]
    Stream(StreamError),
    #[error("listener: {0}")]
    Listen(String),
}

/// Serves until `shutdown` completes, with the system clock.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), RunError> {
    run_with_clock(config, listener, shutdown, Arc::new(SystemClock)).await
}

/// [`run`] with an injected clock (tests pin "now"). The HTTPS listener, when configured, is
/// bound from `TLS_BIND_ADDR`.
pub async fn run_with_clock(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
    clock: Arc<dyn Clock>,
) -> Result<(), RunError> {
    let https = match &config.tls {
        Some(tls) => Some(
            TcpListener::bind(tls.bind_addr)
                .await
                .map_err(|e| RunError::Listen(format!("TLS_BIND_ADDR {}: {e}", tls.bind_addr)))?,
        ),
        None => None,
    };
    let listeners = Listeners {
        http: Some(listener),
        https,
    };
    run_with(config, listeners, shutdown, clock).await
}

/// The sockets to serve on: plain HTTP and, with `TLS_CERT`, HTTPS.
pub struct Listeners {
    pub http: Option<TcpListener>,
    pub https: Option<TcpListener>,
}

/// The most general entry point: explicit listeners and clock.
pub async fn run_with(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send,
    clock: Arc<dyn Clock>,
) -> Result<(), RunError> {
    let mut endpoints = Vec::new();
    let mut cert_watcher = None;
    if let Some(listener) = listeners.http {
        endpoints.push(Endpoint {
            listener,
            tls: None,
        });
    }
    if let (Some(listener), Some(tls)) = (listeners.https, &config.tls) {
        let client_roots = if config.auth.schemes.contains(&Scheme::TradingViewCert) {
            Some(match &config.tls_client_ca {
                Some(path) => tls::load_roots(path).map_err(RunError::Listen)?,
                None => tls::mozilla_roots(),
            })
        } else {
            None
        };
        let endpoint =
            tls::TlsEndpoint::new(&tls.cert, &tls.key, client_roots).map_err(RunError::Listen)?;
        cert_watcher = Some(tokio::spawn(endpoint.cert.clone().watch()));
        tracing::info!(
            addr = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            client_certificates = endpoint.client_verifier.is_some(),
            "HTTPS listener"
        );
        endpoints.push(Endpoint {
            listener,
            tls: Some(endpoint),
        });
    }
    let bind_addrs: Vec<String> = endpoints
        .iter()
        .filter_map(|e| e.listener.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let intake = Intake::new(
        authenticator(&config),
        Freshness {
            tolerance: config.timestamp_tolerance,
            future_tolerance: config.future_tolerance,
        },
        clock,
    );
    warn_about_schemes(&config);
    let broker = Arc::new(BrokerState::new());
    let client = connect(&config).await?;
    let metrics = Arc::new(metrics::Metrics::new());
    let publisher = Publisher::new(client.clone(), broker, metrics.clone())
        .await
        .map_err(RunError::Nats)?;
    let halt_switch = halt::HaltSwitch::new();
    let halt_bucket = halt::HaltBucket {
        name: config.halt_bucket.clone(),
        replicas: config.nats_stream_replicas,
    };
    let state = Arc::new(AppState {
        intake,
        metrics,
        halt: halt_switch.clone(),
        halt_bucket: halt_bucket.clone(),
        admin: config
            .admin_token
            .as_ref()
            .map(|t| http::admin::AdminToken::new(t.expose_secret())),
        client_cert_proxy_headers: config.client_cert_proxy_headers,
        sources: http::source::SourcePolicy::new(
            config.allowed_sources.clone(),
            config.trusted_proxies.clone(),
        ),
        publisher: publisher.clone(),
        stream_name: config.nats_stream.clone(),
        subject_prefix: config.nats_subject_prefix.clone(),
        max_body_bytes: config.max_body_bytes,
        request_deadline: config.request_deadline,
        body_read_timeout: config.body_read_timeout,
        shutting_down: AtomicBool::new(false),
    });
    let spec = StreamSpec {
        name: config.nats_stream.clone(),
        subject_prefix: config.nats_subject_prefix.clone(),
        replicas: config.nats_stream_replicas,
        min_duplicate_window: config.min_duplicate_window(),
        window_reason: format!(
            "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS {} + WEBHOOK_FUTURE_TOLERANCE_SECONDS {} + {} s margin",
            config.timestamp_tolerance.as_secs(),
            config.future_tolerance.as_secs(),
            publish::DUPLICATE_WINDOW_MARGIN.as_secs()
        ),
    };
    let (fatal_tx, fatal_rx) = oneshot::channel();
    let halt_watcher = tokio::spawn(halt::watch(
        client.clone(),
        publisher.jetstream().clone(),
        halt_bucket,
        halt_switch,
    ));
    let supervisor = tokio::spawn(supervise_stream(
        publisher.clone(),
        spec,
        config.nats_create_stream,
        fatal_tx,
    ));

    tracing::info!(
        listen = ?bind_addrs,
        nats = %config.nats_urls_redacted(),
        stream = %config.nats_stream,
        subject_prefix = %config.nats_subject_prefix,
        auth_schemes = ?state.intake.authenticator().schemes().map(Scheme::name).collect::<Vec<_>>(),
        version = env!("CARGO_PKG_VERSION"),
        "tv-ingress listening"
    );

    let mut fatal = None;
    let stop = async {
        tokio::select! {
            () = shutdown => tracing::info!("shutdown requested; draining"),
            Ok(error) = fatal_rx => {
                tracing::error!(error = %error, "stream check failed; stopping");
                fatal = Some(error);
            }
        }
        state.shutting_down.store(true, Ordering::Release);
    };
    let limits = ServerLimits {
        header_read_timeout: config.header_read_timeout,
        max_connections: config.max_connections,
        shutdown_grace: config.shutdown_grace,
    };
    serve(
        endpoints,
        state.clone(),
        http::router(state.clone()),
        limits,
        stop,
    )
    .await;
    if let Some(watcher) = cert_watcher {
        watcher.abort();
    }
    supervisor.abort();
    halt_watcher.abort();
    match tokio::time::timeout(Duration::from_secs(5), client.drain()).await {
        Ok(Ok(())) => tracing::info!("NATS connection drained"),
        Ok(Err(e)) => tracing::warn!(error = %e, "NATS drain failed"),
        Err(_) => tracing::warn!("NATS drain timed out"),
    }
    match fatal {
        Some(error) => Err(RunError::Stream(error)),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// The accepted schemes with their keys, from the configuration.
pub fn authenticator(config: &Config) -> Authenticator {
    let auth = &config.auth;
    let mut authenticator = Authenticator::new(&auth.schemes);
    if !auth.hmac_secrets.is_empty() {
        authenticator = authenticator.with_hmac(Keyring::new(
            auth.hmac_secrets.iter().map(Key::new).collect(),
        ));
    }
    if !auth.standard_webhooks_keys.is_empty() {
        let keys = auth
            .standard_webhooks_keys
            .iter()
            .map(|k| Key::from_bytes(k.expose_secret()))
            .collect();
        authenticator = authenticator.with_standard_webhooks(Keyring::new(keys));
    }
    if auth.schemes.contains(&Scheme::TradingViewCert) {
        authenticator = authenticator.with_client_cert(config.client_cert_expect.clone());
    }
    if !auth.tokens.is_empty() {
        let tokens: Vec<&[u8]> = auth
            .tokens
            .iter()
            .map(|t| t.expose_secret().as_bytes())
            .collect();
        authenticator = authenticator.with_token(TokenRing::new(auth.token_field.clone(), &tokens));
    }
    authenticator
}

/// Start-up warnings about what the chosen schemes mean.
fn warn_about_schemes(config: &Config) {
    if config.auth.schemes.contains(&Scheme::Token) {
        tracing::warn!(
            field = %config.auth.token_field,
            "token scheme enabled: the token travels in the alert body, so anyone who can read the alert text (TradingView alert log, shared charts, screenshots) can send signals, and it does not protect the payload from tampering in transit. Restrict sources with ALLOWED_SOURCES=tradingview and keep the endpoint on HTTPS"
        );
        if config.allowed_sources.is_none() {
            tracing::warn!("token scheme enabled without ALLOWED_SOURCES: any address that learns the token can send signals");
        }
    }
}

/// Connects in the background: the receiver serves (and `/ready` says 503) until NATS answers.
pub async fn connect(config: &Config) -> Result<async_nats::Client, RunError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(concat!("tv-ingress ", env!("CARGO_PKG_VERSION")))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((100 * attempts as u64).clamp(100, 1000))
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("NATS connected"),
                async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                other => tracing::warn!(event = %other, "NATS event"),
            }
        });
    if let Some(path) = &config.nats_creds_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| RunError::Nats(format!("NATS_CREDS_FILE: {e}")))?;
    }
    options
        .connect(config.nats_urls.clone())
        .await
        .map_err(|e| RunError::Nats(e.to_string()))
}

/// Keeps the stream's state known: verifies (or creates) it once NATS answers, and re-checks it
/// every few seconds so a deleted stream turns `/ready` to 503. A contradiction found before the
/// first successful check is fatal (refuse to start); later it only turns `/ready` to 503.
async fn supervise_stream(
    publisher: Publisher,
    spec: StreamSpec,
    create_at_start: bool,
    fatal: oneshot::Sender<StreamError>,
) {
    let mut verified_once = false;
    let mut fatal = Some(fatal);
    loop {
        let state = publisher.state();
        if publisher.connected() {
            let create = create_at_start && !verified_once;
            match ensure_stream(publisher.jetstream(), &spec, create).await {
                Ok(info) => {
                    if !state.stream_ready() {
                        tracing::info!(
                            stream = %info.config.name,
                            messages = info.state.messages,
                            replicas = info.config.num_replicas,
                            duplicate_window_s = info.config.duplicate_window.as_secs(),
                            "stream verified"
                        );
                    }
                    verified_once = true;
                    state.set_ready();
                }
                Err(error @ StreamError::Conflict { .. }) if !verified_once => {
                    state.set_not_ready(error.to_string());
                    if let Some(fatal) = fatal.take() {
                        let _ = fatal.send(error);
                    }
                    return;
                }
                Err(error) => {
                    if state.stream_ready() || state.reason() != error.to_string() {
                        tracing::warn!(error = %error, "stream not usable");
                    }
                    state.set_not_ready(error.to_string());
                }
            }
        } else if state.stream_ready() {
            state.set_not_ready("NATS is not connected");
        }
        let pause = if state.stream_ready() { 2000 } else { 250 };
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
}
