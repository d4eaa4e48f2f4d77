//! `tv-ingress-bench`: the load generator and benchmark suite (see README "Performance").
//!
//! - `suite`: the whole benchmark (fresh nats-server, receiver and reference processes,
//!   interleaved repetitions, CPU and memory per process, markdown table). `scripts/bench.sh`.
//! - `http`: load on one running receiver (loopback only: it is a load generator).
//! - `nats`: the raw JetStream baseline against one running nats-server.
//! - `reference` (hidden): the minimal axum handler the suite compares CPU time against.

mod load;
mod reference;
mod suite;
mod workload;

use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use workload::{Pool, Scheme, Secrets, Signer};

#[derive(Parser)]
#[command(
    name = "tv-ingress-bench",
    about = "Load generator and benchmark suite for tv-ingress"
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the whole benchmark and print a markdown table.
    Suite(Box<suite::SuiteArgs>),
    /// Post unique signed signals to a running receiver. Secrets come from the receiver's own
    /// variables (WEBHOOK_SECRET, WEBHOOK_TOKEN, STANDARD_WEBHOOKS_SECRET).
    Http(HttpArgs),
    /// Publish the same signals straight to JetStream (the floor the receiver is held to).
    Nats(NatsArgs),
    /// The minimal axum handler (for the suite).
    #[command(hide = true)]
    Reference {
        #[arg(long, default_value = "127.0.0.1:0")]
        bind: SocketAddr,
        /// A multi-threaded runtime with one worker per CPU, as `#[tokio::main]` builds.
        #[arg(long)]
        multi_thread: bool,
    },
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Concurrent connections (HTTP) or publishers (NATS).
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Seconds to run.
    #[arg(long, short = 'd', default_value_t = 5.0)]
    duration: f64,
}

#[derive(clap::Args)]
struct HttpArgs {
    /// The receiver's address, e.g. 127.0.0.1:8000 (loopback or a test host only).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: SocketAddr,
    #[arg(long, value_enum, default_value = "hmac-body")]
    scheme: Scheme,
    /// Share of requests that resend an already accepted body (expect 409), e.g. 0.1.
    #[arg(long, default_value_t = 0.0)]
    duplicates: f64,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(clap::Args)]
struct NatsArgs {
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// Subject prefix of the receiver's stream (the stream must exist).
    #[arg(long, default_value = "signals")]
    subject_prefix: String,
    #[command(flatten)]
    load: LoadArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The reference runs on the runtime the receiver uses: one thread, unless
    // TOKIO_WORKER_THREADS asks for a pool (or `--multi-thread` for `#[tokio::main]`'s default).
    let multi = match &cli.command {
        Commands::Reference { multi_thread, .. } => {
            *multi_thread || std::env::var_os("TOKIO_WORKER_THREADS").is_some()
        }
        _ => true,
    };
    let mut builder = if multi {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tv-ingress-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let work = async {
            match cli.command {
                Commands::Suite(args) => suite::run(*args).await,
                Commands::Http(args) => http(args).await,
                Commands::Nats(args) => nats(args).await,
                Commands::Reference { bind, .. } => {
                    reference::serve(bind).await.map_err(|e| e.to_string())
                }
            }
        };
        tokio::select! {
            result = work => result,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tv-ingress-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_duration(seconds: f64) -> Result<Duration, String> {
    if seconds > 0.0 && seconds <= 20.0 {
        Ok(Duration::from_secs_f64(seconds))
    } else {
        Err("--duration must be in (0, 20] seconds: pre-signed requests must stay fresh".into())
    }
}

fn print(outcome: &load::Outcome) {
    println!(
        "{:.0} req/s over {:.2} s; latency ms p50 {:.3} p90 {:.3} p99 {:.3} max {:.3}; statuses {:?}; transport errors {}; duplicates sent {}; signed inline {}",
        outcome.rate(),
        outcome.elapsed_s,
        outcome.p50_ms,
        outcome.p90_ms,
        outcome.p99_ms,
        outcome.max_ms,
        outcome.statuses,
        outcome.errors,
        outcome.duplicates_sent,
        outcome.signed_inline
    );
}

async fn http(args: HttpArgs) -> Result<(), String> {
    if !args.addr.ip().is_loopback() {
        eprintln!("note: load is meant for loopback or your own test hosts only");
    }
    let duration = check_duration(args.load.duration)?;
    let signer = Signer::new(args.scheme, &Secrets::from_env(), "signals");
    let size = 15_000 * args.load.duration.ceil() as usize;
    let pool = Arc::new(Pool::new(size, move |n| signer.http(n)));
    let connections = load::connect(args.addr, args.load.connections).await?;
    let outcome = load::drive_http(connections, "/webhook", pool, duration, args.duplicates).await;
    print(&outcome);
    Ok(())
}

async fn nats(args: NatsArgs) -> Result<(), String> {
    let duration = check_duration(args.load.duration)?;
    let signer = Signer::new(Scheme::HmacBody, &Secrets::from_env(), &args.subject_prefix);
    let size = 15_000 * args.load.duration.ceil() as usize;
    let pool = Arc::new(Pool::new(size, move |n| signer.nats(n)));
    let client = async_nats::connect(&args.nats_url)
        .await
        .map_err(|e| format!("NATS: {e}"))?;
    let js = async_nats::jetstream::new(client);
    let outcome = load::drive_nats(js, args.load.connections, pool, duration).await;
    print(&outcome);
    Ok(())
}
