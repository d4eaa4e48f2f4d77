//! The `tv-ingress` command line: parse arguments, load settings, hand over to the library.
//! serve | dev | sign | healthcheck | tail | status

use clap::{Arg, ArgMatches, Args, Command, FromArgMatches, Parser, Subcommand};
use std::collections::HashMap;
use std::process::ExitCode;

use tv_ingress::config::{Sources, SETTINGS};
use tv_ingress::{cli, Config};

/// mimalloc instead of glibc malloc: a request allocates and frees about 130 small blocks, and
/// glibc's malloc and free were about a sixth of the receiver's instructions (see README,
/// Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tv-ingress",
    version,
    about = "Authenticated TradingView webhooks in, one JetStream message per signal out"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Commands>,
    #[command(flatten)]
    settings: SettingFlags,
}

#[derive(Subcommand)]
enum Commands {
    /// Run the receiver (the default).
    Serve,
    /// Run the receiver against a local JetStream, starting one when none answers, with a
    /// generated development secret when none is set.
    Dev,
    /// Print a signed body for curl.
    Sign(Box<cli::SignArgs>),
    /// Exit 0 when the local receiver answers 200 on /health (or /ready with --ready).
    Healthcheck(cli::HealthcheckArgs),
    /// Follow accepted signals as JSON lines (never acknowledges or deletes anything).
    Tail(cli::TailArgs),
    /// Stream and halt-switch summary.
    Status(cli::StatusArgs),
}

/// One `--flag` per setting, generated from the settings table so names never drift.
#[derive(Default)]
struct SettingFlags(HashMap<String, String>);

fn flag_name(variable: &str) -> &'static str {
    Box::leak(
        variable
            .to_ascii_lowercase()
            .replace('_', "-")
            .into_boxed_str(),
    )
}

impl FromArgMatches for SettingFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut map = HashMap::new();
        for setting in SETTINGS {
            if let Some(value) = matches.get_one::<String>(setting.name) {
                map.insert(setting.name.to_owned(), value.clone());
            }
        }
        Ok(SettingFlags(map))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = SettingFlags::from_arg_matches(matches)?;
        Ok(())
    }
}

impl Args for SettingFlags {
    fn augment_args(command: Command) -> Command {
        SETTINGS.iter().fold(command, |command, setting| {
            let mut help = format!("[env {}] {}", setting.name, setting.help);
            if setting.secret {
                help.push_str(" (prefer the environment or .env: flags are visible in ps)");
            }
            command.arg(
                Arg::new(setting.name)
                    .long(flag_name(setting.name))
                    .value_name("VALUE")
                    .global(true)
                    .help(help),
            )
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        SettingFlags::augment_args(command)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let sources = match Sources::standard(cli.settings.0) {
        Ok(sources) => sources,
        Err(e) => return fail(&e),
    };
    match cli.command.unwrap_or(Commands::Serve) {
        Commands::Sign(args) => cli::sign(&sources, &args),
        Commands::Healthcheck(args) => cli::healthcheck(&sources, &args),
        Commands::Serve => {
            let config = match Config::from_sources(&sources) {
                Ok(config) => config,
                Err(e) => return fail(&e),
            };
            let code = runtime(|| cli::serve(config));
            // Lines logged while the runtime shut down.
            tv_ingress::telemetry::flush();
            code
        }
        Commands::Dev => runtime(|| cli::dev(sources)),
        Commands::Tail(args) => runtime(|| async move { cli::tail(&sources, &args).await }),
        Commands::Status(args) => runtime(|| async move { cli::status(&sources, &args).await }),
    }
}

/// One thread runs everything unless `TOKIO_WORKER_THREADS` asks for a pool of that many workers.
/// A request is a few tens of microseconds of CPU around two network waits: on one thread the
/// tasks hand work to each other without waking other threads, and the publishes of requests
/// that are ready together reach NATS in one write (see README, Performance).
fn runtime<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    let mut builder = match std::env::var_os("TOKIO_WORKER_THREADS") {
        // tokio reads the count from the same variable.
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
        None => tokio::runtime::Builder::new_current_thread(),
    };
    match builder.enable_all().build() {
        Ok(rt) => rt.block_on(f()),
        Err(e) => fail(&e),
    }
}

fn fail(error: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("tv-ingress: {error}");
    ExitCode::from(2)
}
