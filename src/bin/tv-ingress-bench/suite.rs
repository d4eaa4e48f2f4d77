//! `tv-ingress-bench suite`: the whole benchmark in one command.
//!
//! Starts a fresh nats-server (JetStream, file storage, temporary store), the real receiver
//! (`tv-ingress serve`, configured by environment, as a separate process) and the reference
//! axum handler (a separate process too), then runs every scenario `--repeat` times, interleaved
//! (rep 1 of every scenario, then rep 2, ...), reading each process's CPU time (utime + stime
//! from /proc/<pid>/stat) before and after every run and sampling the server's resident memory
//! during it. Prints a markdown table of min / median / max and the targets, each judged on
//! ratios measured within the same repetition.

use serde::Serialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use tv_ingress::natsd::{free_port, http_status, NatsServer};

use crate::load::{self, Outcome};
use crate::workload::{Pool, Scheme, Secrets, Signer};

const SUBJECT_PREFIX: &str = "signals";

#[derive(clap::Args, Debug, Clone)]
pub struct SuiteArgs {
    /// Seconds each run lasts.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,
    /// Runs of each scenario (interleaved).
    #[arg(long, default_value_t = 5)]
    pub repeat: usize,
    /// Seconds of unrecorded warm-up per scenario before the first repetition.
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,
    /// Comma-separated scenario names (default: all; see --list).
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
    /// The receiver binary (default: `tv-ingress` next to this binary).
    #[arg(long)]
    pub receiver_bin: Option<PathBuf>,
    /// Extra environment for the receiver, KEY=VALUE (repeatable), for experiments.
    #[arg(long = "receiver-env", value_name = "KEY=VALUE")]
    pub receiver_env: Vec<String>,
    /// Where the receiver's JSON log goes (default: /dev/null; it is still formatted and written).
    #[arg(long, default_value = "/dev/null")]
    pub receiver_log: PathBuf,
    /// Also write every run's figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Record the receiver with `perf record` during every run of --perf-scenario into this file.
    #[arg(long)]
    pub perf: Option<PathBuf>,
    #[arg(long, default_value = "receiver-64")]
    pub perf_scenario: String,
    /// Arguments given to `perf record` (before `-p PID -o FILE`).
    #[arg(long, default_value = "-F 499 --call-graph dwarf,16384")]
    pub perf_args: String,
    /// Count these perf events (e.g. `raw_syscalls:sys_enter,context-switches`) in the server
    /// during every recorded run, reported per request (in the progress lines and the JSON).
    #[arg(long)]
    pub perf_stat: Option<String>,
    /// A second receiver binary, run beside the first for A/B comparisons (variant-* scenarios).
    #[arg(long)]
    pub variant_bin: Option<PathBuf>,
    /// Extra environment for the variant receiver, KEY=VALUE (repeatable).
    #[arg(long = "variant-env", value_name = "KEY=VALUE")]
    pub variant_env: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Target {
    /// Raw JetStream publishes from this process (the floor).
    Nats,
    /// `tv-ingress serve`.
    Receiver,
    /// The minimal axum handler, on the receiver's runtime.
    Reference,
    /// The minimal axum handler on a multi-threaded runtime (`#[tokio::main]`).
    ReferenceMt,
    /// A second receiver (`--variant-bin`, `--variant-env`), for A/B comparisons.
    Variant,
}

#[derive(Debug, Clone, Serialize)]
struct Scenario {
    name: &'static str,
    target: Target,
    connections: usize,
    scheme: Scheme,
    duplicates: f64,
}

const fn scenario(
    name: &'static str,
    target: Target,
    connections: usize,
    scheme: Scheme,
    duplicates: f64,
) -> Scenario {
    Scenario {
        name,
        target,
        connections,
        scheme,
        duplicates,
    }
}

const SCENARIOS: &[Scenario] = &[
    scenario("nats-64", Target::Nats, 64, Scheme::HmacBody, 0.0),
    scenario("receiver-64", Target::Receiver, 64, Scheme::HmacBody, 0.0),
    scenario("reference-64", Target::Reference, 64, Scheme::HmacBody, 0.0),
    scenario(
        "reference-mt-64",
        Target::ReferenceMt,
        64,
        Scheme::HmacBody,
        0.0,
    ),
    scenario("nats-1", Target::Nats, 1, Scheme::HmacBody, 0.0),
    scenario("receiver-1", Target::Receiver, 1, Scheme::HmacBody, 0.0),
    scenario("reference-1", Target::Reference, 1, Scheme::HmacBody, 0.0),
    scenario("nats-256", Target::Nats, 256, Scheme::HmacBody, 0.0),
    scenario("receiver-256", Target::Receiver, 256, Scheme::HmacBody, 0.0),
    scenario(
        "reference-256",
        Target::Reference,
        256,
        Scheme::HmacBody,
        0.0,
    ),
    scenario(
        "receiver-64-hmac-header",
        Target::Receiver,
        64,
        Scheme::HmacHeader,
        0.0,
    ),
    scenario(
        "receiver-64-standard-webhooks",
        Target::Receiver,
        64,
        Scheme::StandardWebhooks,
        0.0,
    ),
    scenario(
        "receiver-64-token",
        Target::Receiver,
        64,
        Scheme::Token,
        0.0,
    ),
    scenario(
        "receiver-64-dup10",
        Target::Receiver,
        64,
        Scheme::HmacBody,
        0.1,
    ),
];

/// Run only when a variant receiver is configured.
const VARIANT_SCENARIOS: &[Scenario] = &[
    scenario("variant-64", Target::Variant, 64, Scheme::HmacBody, 0.0),
    scenario("variant-1", Target::Variant, 1, Scheme::HmacBody, 0.0),
    scenario("variant-256", Target::Variant, 256, Scheme::HmacBody, 0.0),
];

/// One run's figures.
#[derive(Debug, Clone, Serialize)]
struct Sample {
    scenario: &'static str,
    rep: usize,
    #[serde(flatten)]
    outcome: Outcome,
    /// CPU µs per completed request of the server under test (receiver or reference).
    server_cpu_us: Option<f64>,
    /// CPU µs per 200 answer of the server under test.
    server_cpu_us_per_accepted: Option<f64>,
    nats_cpu_us: f64,
    loadgen_cpu_us: f64,
    /// Context switches of the server's threads per request.
    server_switches: Option<f64>,
    /// `--perf-stat` events of the server per request.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    perf_stat: std::collections::BTreeMap<String, f64>,
    /// Highest VmRSS of the server seen during the run (sampled every 20 ms).
    server_rss_peak_mb: Option<f64>,
    /// VmHWM of the server after the run (peak since it started).
    server_hwm_mb: Option<f64>,
}

#[derive(Serialize)]
struct Report<'a> {
    environment: &'a Environment,
    samples: &'a [Sample],
}

#[derive(Serialize, Clone)]
struct Environment {
    commit: String,
    cpus: usize,
    load_average: String,
    nats_server: String,
    duration_s: f64,
    repeat: usize,
}

/// A child process killed on drop.
struct Proc {
    child: Child,
    pid: u32,
}

impl Proc {
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

struct Bench {
    args: SuiteArgs,
    secrets: Secrets,
    clock_ticks: f64,
    nats: NatsServer,
    nats_pid: u32,
    js: async_nats::jetstream::Context,
    receiver: Proc,
    receiver_addr: SocketAddr,
    reference: Proc,
    reference_addr: SocketAddr,
    reference_mt: Proc,
    reference_mt_addr: SocketAddr,
    /// A second receiver (another binary or environment) for A/B comparisons.
    variant: Option<(Proc, SocketAddr)>,
    /// Last rate seen per scenario, to size the next pool of pre-signed requests.
    rates: HashMap<&'static str, f64>,
    _workdir: tempfile::TempDir,
}

pub async fn run(args: SuiteArgs) -> Result<(), String> {
    let has_variant = args.variant_bin.is_some() || !args.variant_env.is_empty();
    let all: Vec<&Scenario> = SCENARIOS.iter().chain(VARIANT_SCENARIOS).collect();
    if args.list {
        for s in &all {
            println!(
                "{:32} {:?} connections={} scheme={} duplicates={}",
                s.name,
                s.target,
                s.connections,
                s.scheme.name(),
                s.duplicates
            );
        }
        return Ok(());
    }
    let selected: Vec<&Scenario> = if args.scenarios.is_empty() {
        all.iter()
            .copied()
            .filter(|s| has_variant || s.target != Target::Variant)
            .collect()
    } else {
        let mut v = Vec::new();
        for name in &args.scenarios {
            let s = all
                .iter()
                .copied()
                .find(|s| s.name == name)
                .ok_or_else(|| format!("unknown scenario {name} (see --list)"))?;
            v.push(s);
        }
        v
    };
    if args.duration <= 0.0 || args.duration > 20.0 {
        return Err(
            "--duration must be in (0, 20] seconds: pre-signed requests must stay fresh".into(),
        );
    }
    let mut bench = Bench::start(args.clone()).await?;
    let env = bench.environment().await;
    eprintln!(
        "bench: nats-server {} at {}, receiver {} (pid {}), reference {} (pid {}); {} scenarios x {} runs of {} s",
        env.nats_server,
        bench.nats.url(),
        bench.receiver_addr,
        bench.receiver.pid,
        bench.reference_addr,
        bench.reference.pid,
        selected.len(),
        args.repeat,
        args.duration
    );
    if args.warmup > 0.0 {
        for s in &selected {
            let sample = bench
                .run_once(s, 0, Duration::from_secs_f64(args.warmup))
                .await?;
            eprintln!("warm-up {:32} {}", s.name, brief(&sample));
        }
    }
    let mut samples = Vec::new();
    for rep in 1..=args.repeat {
        for s in &selected {
            let sample = bench
                .run_once(s, rep, Duration::from_secs_f64(args.duration))
                .await?;
            eprintln!("run {rep}/{} {:32} {}", args.repeat, s.name, brief(&sample));
            samples.push(sample);
        }
    }
    let markdown = render(&env, &selected, &samples, &args);
    println!("{markdown}");
    if let Some(path) = &args.json {
        let report = Report {
            environment: &env,
            samples: &samples,
        };
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    bench.stop().await;
    Ok(())
}

fn brief(s: &Sample) -> String {
    let mut text = format!(
        "{:>8.0} req/s  p50 {:.2} ms  p99 {:.2} ms  statuses {:?}",
        s.outcome.rate(),
        s.outcome.p50_ms,
        s.outcome.p99_ms,
        s.outcome.statuses
    );
    if let Some(cpu) = s.server_cpu_us {
        text.push_str(&format!("  server {cpu:.1} µs/req"));
    }
    text.push_str(&format!("  nats-server {:.1} µs/req", s.nats_cpu_us));
    if let Some(cs) = s.server_switches {
        text.push_str(&format!("  {cs:.2} cs/req"));
    }
    if let Some(rss) = s.server_rss_peak_mb {
        text.push_str(&format!("  rss {rss:.1} MB"));
    }
    for (event, per_request) in &s.perf_stat {
        text.push_str(&format!("  {event} {per_request:.2}/req"));
    }
    if s.outcome.errors > 0 {
        text.push_str(&format!("  transport errors {}", s.outcome.errors));
    }
    if s.outcome.signed_inline > 0 {
        text.push_str(&format!("  signed inline {}", s.outcome.signed_inline));
    }
    text
}

impl Bench {
    async fn start(args: SuiteArgs) -> Result<Bench, String> {
        let secrets = Secrets::random();
        let workdir = tempfile::Builder::new()
            .prefix("tv-ingress-bench-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let nats = NatsServer::start().await.map_err(|e| e.to_string())?;
        let nats_pid = nats.pid().ok_or("nats-server has no pid")?;

        let receiver_bin = match &args.receiver_bin {
            Some(path) => path.clone(),
            None => sibling("tv-ingress")?,
        };
        let (receiver, receiver_addr) = start_receiver(
            &receiver_bin,
            &args.receiver_env,
            &args.receiver_log,
            &secrets,
            &nats.url(),
            workdir.path(),
        )
        .await?;
        let variant = if args.variant_bin.is_some() || !args.variant_env.is_empty() {
            let bin = args.variant_bin.clone().unwrap_or(receiver_bin.clone());
            Some(
                start_receiver(
                    &bin,
                    &args.variant_env,
                    &args.receiver_log,
                    &secrets,
                    &nats.url(),
                    workdir.path(),
                )
                .await?,
            )
        } else {
            None
        };

        // The reference runs on the receiver's runtime (one thread unless TOKIO_WORKER_THREADS);
        // reference-mt on the multi-threaded runtime `#[tokio::main]` builds.
        let workers = args
            .receiver_env
            .iter()
            .find_map(|kv| kv.strip_prefix("TOKIO_WORKER_THREADS="))
            .map(str::to_owned);
        let (reference, reference_addr) = start_reference(false, workers.as_deref()).await?;
        let (reference_mt, reference_mt_addr) = start_reference(true, None).await?;

        let client = async_nats::ConnectOptions::new()
            .name("tv-ingress-bench baseline")
            .connect(nats.url())
            .await
            .map_err(|e| format!("NATS: {e}"))?;
        let js = async_nats::jetstream::new(client);
        Ok(Bench {
            args,
            secrets,
            clock_ticks: clock_ticks(),
            nats,
            nats_pid,
            js,
            receiver,
            receiver_addr,
            reference,
            reference_addr,
            reference_mt,
            reference_mt_addr,
            variant,
            rates: HashMap::new(),
            _workdir: workdir,
        })
    }

    async fn environment(&self) -> Environment {
        let commit = std::process::Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let nats_server = tv_ingress::natsd::locate()
            .ok()
            .and_then(|bin| {
                std::process::Command::new(bin)
                    .arg("--version")
                    .output()
                    .ok()
            })
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        Environment {
            commit,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_default(),
            nats_server,
            duration_s: self.args.duration,
            repeat: self.args.repeat,
        }
    }

    /// Requests to sign ahead: enough for the last rate seen, with room to spare.
    fn pool_size(&self, s: &Scenario, duration: Duration) -> usize {
        let rate = self
            .rates
            .get(s.name)
            .copied()
            .unwrap_or(match s.connections {
                1 => 4_000.0,
                _ => 15_000.0,
            });
        (rate * duration.as_secs_f64() * 1.4) as usize + 500
    }

    async fn run_once(
        &mut self,
        s: &Scenario,
        rep: usize,
        duration: Duration,
    ) -> Result<Sample, String> {
        let size = self.pool_size(s, duration);
        let signer = Signer::new(s.scheme, &self.secrets, SUBJECT_PREFIX);
        let server = match s.target {
            Target::Nats => None,
            Target::Receiver => Some((self.receiver.pid, self.receiver_addr)),
            Target::Reference => Some((self.reference.pid, self.reference_addr)),
            Target::ReferenceMt => Some((self.reference_mt.pid, self.reference_mt_addr)),
            Target::Variant => self.variant.as_ref().map(|(p, a)| (p.pid, *a)),
        };
        if s.target == Target::Variant && server.is_none() {
            return Err(format!("{} needs --variant-bin or --variant-env", s.name));
        }
        let mut perf = None;
        let mut perf_counts = std::collections::BTreeMap::new();
        let (outcome, before, after, rss_peak) = match server {
            None => {
                let pool = Arc::new(Pool::new(size, move |n| signer.nats(n)));
                let before = self.counters(None);
                let outcome =
                    load::drive_nats(self.js.clone(), s.connections, pool, duration).await;
                let after = self.counters(None);
                (outcome, before, after, None)
            }
            Some((pid, addr)) => {
                let pool = Arc::new(Pool::new(size, move |n| signer.http(n)));
                let connections = load::connect(addr, s.connections).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                if rep > 0 && s.name == self.args.perf_scenario {
                    if let Some(path) = &self.args.perf {
                        perf = Some(start_perf(&self.args.perf_args, pid, path, rep, duration)?);
                    }
                }
                let stat_file = self._workdir.path().join("perf-stat.csv");
                let stat = match (&self.args.perf_stat, rep) {
                    (Some(events), 1..) => Some(
                        Command::new("perf")
                            .args([
                                "stat",
                                "-x",
                                ",",
                                "-e",
                                events,
                                "-p",
                                &pid.to_string(),
                                "-o",
                            ])
                            .arg(&stat_file)
                            .args(["--", "sleep", &format!("{:.2}", duration.as_secs_f64())])
                            .stdin(Stdio::null())
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .spawn()
                            .map_err(|e| format!("perf stat: {e}"))?,
                    ),
                    _ => None,
                };
                let sampler = RssSampler::start(pid);
                let before = self.counters(Some(pid));
                let outcome =
                    load::drive_http(connections, "/webhook", pool, duration, s.duplicates).await;
                let after = self.counters(Some(pid));
                let rss_peak = sampler.stop().await;
                if let Some(mut stat) = stat {
                    let _ = stat.wait().await;
                    let text = std::fs::read_to_string(&stat_file).unwrap_or_default();
                    for line in text.lines().filter(|l| !l.starts_with('#')) {
                        let fields: Vec<&str> = line.split(',').collect();
                        if let (Some(count), Some(event)) = (fields.first(), fields.get(2)) {
                            if let Ok(count) = count.parse::<f64>() {
                                perf_counts.insert(
                                    (*event).to_string(),
                                    count / outcome.requests.max(1) as f64,
                                );
                            }
                        }
                    }
                }
                (outcome, before, after, Some(rss_peak))
            }
        };
        if let Some(mut perf) = perf {
            let _ = perf.wait().await;
        }
        if !self.receiver.alive() {
            return Err("the receiver process died".into());
        }
        if !self.reference.alive() || !self.reference_mt.alive() {
            return Err("a reference process died".into());
        }
        if let Some((variant, _)) = &mut self.variant {
            if !variant.alive() {
                return Err("the variant receiver died".into());
            }
        }
        if rep > 0 || !self.rates.contains_key(s.name) {
            self.rates.insert(s.name, outcome.rate().max(100.0));
        }
        let per = |ticks: Option<u64>, n: u64| -> Option<f64> {
            let ticks = ticks?;
            (n > 0).then(|| ticks as f64 * 1e6 / self.clock_ticks / n as f64)
        };
        let delta = |i: usize| -> Option<u64> { Some(after[i]?.saturating_sub(before[i]?)) };
        let requests = outcome.requests;
        let accepted = outcome.count(200);
        let sample = Sample {
            scenario: s.name,
            rep,
            server_cpu_us: server.and_then(|_| per(delta(0), requests)),
            server_cpu_us_per_accepted: server.and_then(|_| per(delta(0), accepted)),
            nats_cpu_us: per(delta(1), requests).unwrap_or(0.0),
            perf_stat: perf_counts,
            server_switches: delta(3).map(|d| d as f64 / requests.max(1) as f64),
            loadgen_cpu_us: per(delta(2), requests).unwrap_or(0.0),
            server_rss_peak_mb: rss_peak.map(|kb| kb as f64 / 1024.0),
            server_hwm_mb: server
                .and_then(|(pid, _)| status_kb(pid, "VmHWM:"))
                .map(|kb| kb as f64 / 1024.0),
            outcome,
        };
        // Let the broker settle between runs.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(sample)
    }

    /// CPU ticks of [server, nats-server, this process], and the server's context switches.
    fn counters(&self, server: Option<u32>) -> [Option<u64>; 4] {
        [
            server.and_then(cpu_ticks),
            cpu_ticks(self.nats_pid),
            cpu_ticks(std::process::id()),
            server.and_then(context_switches),
        ]
    }

    async fn stop(mut self) {
        let mut procs = vec![
            &mut self.receiver,
            &mut self.reference,
            &mut self.reference_mt,
        ];
        if let Some((variant, _)) = &mut self.variant {
            procs.push(variant);
        }
        for proc in procs {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &proc.pid.to_string()])
                .status();
            if tokio::time::timeout(Duration::from_secs(15), proc.child.wait())
                .await
                .is_err()
            {
                let _ = proc.child.kill().await;
            }
        }
        self.nats.stop().await;
    }
}

/// Starts `tv-ingress-bench reference` and reads the address it listens on.
async fn start_reference(
    multi_thread: bool,
    workers: Option<&str>,
) -> Result<(Proc, SocketAddr), String> {
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command.args(["reference", "--bind", "127.0.0.1:0"]);
    if multi_thread {
        command.arg("--multi-thread");
    }
    command.env_remove("TOKIO_WORKER_THREADS");
    if let Some(workers) = workers {
        command.env("TOKIO_WORKER_THREADS", workers);
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("reference server: {e}"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or("reference server has no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .map_err(|_| "reference server did not start")?
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let addr: SocketAddr = line
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| format!("reference server said {line:?}"))?;
    let pid = child.id().ok_or("reference has no pid")?;
    Ok((Proc { child, pid }, addr))
}

/// Starts `tv-ingress serve` configured by environment and waits until `/ready` says 200.
async fn start_receiver(
    bin: &Path,
    extra_env: &[String],
    log_path: &Path,
    secrets: &Secrets,
    nats_url: &str,
    workdir: &Path,
) -> Result<(Proc, SocketAddr), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WEBHOOK_SECRET", &secrets.hmac)
        .env("WEBHOOK_TOKEN", &secrets.token)
        .env("STANDARD_WEBHOOKS_SECRET", &secrets.whsec)
        .env(
            "AUTH_SCHEMES",
            "hmac-body,hmac-header,standard-webhooks,token",
        )
        .env("NATS_URL", nats_url)
        .env("NATS_SUBJECT_PREFIX", SUBJECT_PREFIX)
        .env("BIND_ADDR", addr.to_string())
        .env("LOG_LEVEL", "INFO");
    for pair in extra_env {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair}: expected KEY=VALUE"))?;
        command.env(k, v);
    }
    command
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let mut receiver = Proc {
        pid: child.id().ok_or("receiver has no pid")?,
        child,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while http_status(addr, "/ready").await != Some(200) {
        if !receiver.alive() {
            return Err(format!(
                "the receiver {} exited at start (its log: {})",
                bin.display(),
                log_path.display()
            ));
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the receiver was not ready within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok((receiver, addr))
}

fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe
        .parent()
        .map(|dir| dir.join(name))
        .ok_or("no directory for the current executable")?;
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "{} not found: build it (cargo build --release --bins) or pass --receiver-bin",
            path.display()
        ))
    }
}

fn start_perf(
    args: &str,
    pid: u32,
    path: &Path,
    rep: usize,
    duration: Duration,
) -> Result<Child, String> {
    let out = path.with_extension(format!("{rep}.data"));
    Command::new("perf")
        .arg("record")
        .args(args.split_whitespace())
        .args(["-p", &pid.to_string(), "-o"])
        .arg(&out)
        .args(["--", "sleep", &format!("{:.1}", duration.as_secs_f64())])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("perf: {e}"))
}

/// Clock ticks per second for /proc/<pid>/stat times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of every thread of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Context switches (voluntary + involuntary) of every thread of `pid`.
fn context_switches(pid: u32) -> Option<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let Ok(task) = task else { continue };
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
    }
    Some(total)
}

/// A `kB` line of /proc/<pid>/status (`VmRSS:`, `VmHWM:`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Samples VmRSS every 20 ms on a thread of its own and keeps the highest.
struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(status_kb(pid, "VmRSS:").unwrap_or(0)));
        let thread = {
            let (stop, peak) = (stop.clone(), peak.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = status_kb(pid, "VmRSS:") {
                        peak.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        RssSampler { stop, peak, thread }
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = tokio::task::spawn_blocking(move || self.thread.join()).await;
        self.peak.load(Ordering::Relaxed)
    }
}

// ---------------------------------------------------------------------------------------------
// The report.

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// "min / median / max" of `values`, each with `decimals` decimals.
fn spread(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "–".into();
    }
    let mut v = values.to_vec();
    let med = median(&mut v);
    format!(
        "{:.d$} / {:.d$} / {:.d$}",
        v[0],
        med,
        v[v.len() - 1],
        d = decimals
    )
}

fn render(
    env: &Environment,
    scenarios: &[&Scenario],
    samples: &[Sample],
    args: &SuiteArgs,
) -> String {
    let mut out = String::new();
    let of = |name: &'static str| samples.iter().filter(move |s| s.scenario == name);
    out.push_str(&format!(
        "tv-ingress benchmark: commit {}, {} CPUs (load average at start {}), {}, {} runs of {} s per scenario, interleaved. Values are min / median / max over the runs.\n\n",
        env.commit, env.cpus, env.load_average, env.nats_server, env.repeat, env.duration_s
    ));
    out.push_str("| scenario | conns | req/s | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/req | server context switches/req | nats-server CPU µs/req | load gen CPU µs/req | server peak RSS MB | responses (all runs) |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for s in scenarios {
        let runs: Vec<&Sample> = of(s.name).collect();
        let col = |f: &dyn Fn(&Sample) -> Option<f64>, d: usize| -> String {
            let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
            spread(&v, d)
        };
        let mut statuses: std::collections::BTreeMap<u16, u64> = Default::default();
        let mut errors = 0;
        for r in &runs {
            for (k, v) in &r.outcome.statuses {
                *statuses.entry(*k).or_default() += v;
            }
            errors += r.outcome.errors;
        }
        let mut responses: Vec<String> =
            statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        if errors > 0 {
            responses.push(format!("transport errors: {errors}"));
        }
        let label = match s.target {
            Target::Nats => format!("{} (raw JetStream)", s.name),
            _ => s.name.to_string(),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            label,
            s.connections,
            col(&|r| Some(r.outcome.rate()), 0),
            col(&|r| Some(r.outcome.p50_ms), 2),
            col(&|r| Some(r.outcome.p90_ms), 2),
            col(&|r| Some(r.outcome.p99_ms), 2),
            col(&|r| Some(r.outcome.max_ms), 1),
            col(&|r| r.server_cpu_us, 1),
            col(&|r| r.server_switches, 2),
            col(&|r| Some(r.nats_cpu_us), 1),
            col(&|r| Some(r.loadgen_cpu_us), 1),
            col(&|r| r.server_rss_peak_mb, 1),
            responses.join(", "),
        ));
    }

    // Ratios, each taken within one repetition.
    let per_rep = |a: &str, b: &str, f: &dyn Fn(&Sample, &Sample) -> f64| -> Vec<f64> {
        (1..=args.repeat)
            .filter_map(|rep| {
                let x = samples.iter().find(|s| s.scenario == a && s.rep == rep)?;
                let y = samples.iter().find(|s| s.scenario == b && s.rep == rep)?;
                Some(f(x, y))
            })
            .collect()
    };
    struct Check {
        what: String,
        goal: &'static str,
        values: Vec<f64>,
        decimals: usize,
        ok: Option<fn(f64) -> bool>,
    }
    let mut checks = vec![
        Check {
            what: "Throughput at 64 connections: receiver-64 / nats-64".into(),
            goal: "≥ 0.50",
            values: per_rep("receiver-64", "nats-64", &|r, n| {
                r.outcome.rate() / n.outcome.rate()
            }),
            decimals: 2,
            ok: Some(|v| v >= 0.5),
        },
        Check {
            what: "Latency at 1 connection: receiver-1 p50 − nats-1 p50 (ms)".into(),
            goal: "≤ 0.30 ms",
            values: per_rep("receiver-1", "nats-1", &|r, n| {
                r.outcome.p50_ms - n.outcome.p50_ms
            }),
            decimals: 3,
            ok: Some(|v| v <= 0.3),
        },
        Check {
            what: "CPU per accepted request: receiver-64 / reference-64".into(),
            goal: "≤ 2.5",
            values: per_rep("receiver-64", "reference-64", &|r, f| {
                r.server_cpu_us_per_accepted.unwrap_or(f64::NAN)
                    / f.server_cpu_us.unwrap_or(f64::NAN)
            }),
            decimals: 2,
            ok: Some(|v| v <= 2.5),
        },
        Check {
            what:
                "CPU per accepted request: receiver-64 / reference-mt-64 (multi-threaded reference)"
                    .into(),
            goal: "(reported)",
            values: per_rep("receiver-64", "reference-mt-64", &|r, f| {
                r.server_cpu_us_per_accepted.unwrap_or(f64::NAN)
                    / f.server_cpu_us.unwrap_or(f64::NAN)
            }),
            decimals: 2,
            ok: None,
        },
        Check {
            what: "Receiver peak RSS under 256 connections (MB)".into(),
            goal: "< 40 MB",
            values: of("receiver-256")
                .filter_map(|s| s.server_rss_peak_mb)
                .collect(),
            decimals: 1,
            ok: Some(|v| v < 40.0),
        },
        Check {
            what: "Receiver VmHWM after each receiver-256 run (MB, peak since start)".into(),
            goal: "(reported)",
            values: of("receiver-256").filter_map(|s| s.server_hwm_mb).collect(),
            decimals: 1,
            ok: None,
        },
        Check {
            what: "Throughput at 256 connections: receiver-256 / nats-256".into(),
            goal: "(reported)",
            values: per_rep("receiver-256", "nats-256", &|r, n| {
                r.outcome.rate() / n.outcome.rate()
            }),
            decimals: 2,
            ok: None,
        },
        Check {
            what: "CPU per request at 256: receiver-256 / reference-256".into(),
            goal: "(reported)",
            values: per_rep("receiver-256", "reference-256", &|r, f| {
                r.server_cpu_us_per_accepted.unwrap_or(f64::NAN)
                    / f.server_cpu_us.unwrap_or(f64::NAN)
            }),
            decimals: 2,
            ok: None,
        },
    ];
    for (variant, base) in [
        ("variant-64", "receiver-64"),
        ("variant-1", "receiver-1"),
        ("variant-256", "receiver-256"),
    ] {
        checks.push(Check {
            what: format!("A/B throughput: {variant} / {base}"),
            goal: "(reported)",
            values: per_rep(variant, base, &|v, r| v.outcome.rate() / r.outcome.rate()),
            decimals: 3,
            ok: None,
        });
        checks.push(Check {
            what: format!("A/B server CPU per request: {variant} / {base}"),
            goal: "(reported)",
            values: per_rep(variant, base, &|v, r| {
                v.server_cpu_us.unwrap_or(f64::NAN) / r.server_cpu_us.unwrap_or(f64::NAN)
            }),
            decimals: 3,
            ok: None,
        });
        checks.push(Check {
            what: format!("A/B p50 latency: {variant} − {base} (ms)"),
            goal: "(reported)",
            values: per_rep(variant, base, &|v, r| v.outcome.p50_ms - r.outcome.p50_ms),
            decimals: 3,
            ok: None,
        });
    }
    for name in [
        "receiver-64-hmac-header",
        "receiver-64-standard-webhooks",
        "receiver-64-token",
        "receiver-64-dup10",
    ] {
        checks.push(Check {
            what: format!("Throughput: {name} / nats-64"),
            goal: "(reported)",
            values: per_rep(name, "nats-64", &|r, n| r.outcome.rate() / n.outcome.rate()),
            decimals: 2,
            ok: None,
        });
    }
    out.push_str("\n| target (ratios within one repetition) | goal | min / median / max | met |\n|---|---|---|---|\n");
    for check in checks.into_iter().filter(|c| !c.values.is_empty()) {
        let mut v = check.values.clone();
        let med = median(&mut v);
        let met = match check.ok {
            None => "–".to_string(),
            Some(ok) => {
                let passing = check.values.iter().filter(|x| ok(**x)).count();
                format!(
                    "{} (median; {passing} of {} runs)",
                    if ok(med) { "**met**" } else { "**not met**" },
                    check.values.len()
                )
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            check.what,
            check.goal,
            spread(&check.values, check.decimals),
            met
        ));
    }
    out
}
