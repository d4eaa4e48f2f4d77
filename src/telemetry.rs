//! Logging: JSON lines on stdout, one object per event, fields at the top level.
//!
//! async-nats writes its CONNECT frame (which can hold a password or token) at TRACE level, so
//! its logs are capped at INFO whatever `LOG_LEVEL` says.

use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
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
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_writer(writer);
    let _ = tracing_subscriber::registry()
        .with(format.with_filter(filter(level)))
        .try_init();
}

/// Installs the JSON subscriber on stdout.
pub fn init(level: LevelFilter) {
    init_with_writer(level, std::io::stdout);
}

use tracing_subscriber::Layer as _;
