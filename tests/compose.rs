//! The Docker deployment's coherence, checked without Docker.
//!
//! `docker compose up` must give a working system: every receiver replica reaches every NATS
//! node, the NATS nodes form one cluster, the load balancer sends webhooks to exactly the
//! replicas and only while they are ready, and no secret is written anywhere. Nothing of this
//! shows until the containers run, so this test reads docker-compose.yml (YAML through
//! yaml-rust2; merge keys `<<` are resolved here, since yaml-rust2 keeps them as plain keys),
//! deploy/haproxy.cfg, the NATS node configs, the Dockerfile and .dockerignore, and checks that
//! they agree. Each check has a description; all of them run and every failure is reported.
//!
//! The checks are themselves tested: `checks_catch_broken_deployments` breaks the real files in
//! memory, one way at a time, and expects the matching check to fail.
//!
//!   cargo test --test compose -- --nocapture    # prints one line per check

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlLoader};

const NATS_MIN_VERSION: (u64, u64) = (2, 10);
/// The receiver's defaults, as documented in src/config.rs.
const DEFAULT_BIND_PORT: u16 = 8000;
const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;
/// The port the load balancer must publish for webhooks.
const WEBHOOK_PORT: u16 = 8000;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Running a table of checks

type Check<T> = (&'static str, fn(&T) -> Result<(), String>);

fn run_checks<T>(subject: &str, target: &T, checks: &[Check<T>]) {
    let mut failures = Vec::new();
    for (description, check) in checks {
        match check(target) {
            Ok(()) => eprintln!("ok    {subject}: {description}"),
            Err(why) => {
                eprintln!("FAIL  {subject}: {description}: {why}");
                failures.push(format!("{description}: {why}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{subject}: {} of {} checks failed:\n  {}",
        failures.len(),
        checks.len(),
        failures.join("\n  ")
    );
}

fn ensure(ok: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(why())
    }
}

// ---------------------------------------------------------------------------------------------
// Files: the repository's, or replacements held in memory (for the mutation tests)

#[derive(Default, Clone)]
struct Files {
    overrides: BTreeMap<String, String>,
}

impl Files {
    fn normalize(rel: &str) -> &str {
        rel.trim_start_matches("./")
    }

    fn read(&self, rel: &str) -> Result<String, String> {
        let rel = Self::normalize(rel);
        if let Some(text) = self.overrides.get(rel) {
            return Ok(text.clone());
        }
        std::fs::read_to_string(root().join(rel)).map_err(|e| format!("reading {rel}: {e}"))
    }

    fn exists(&self, rel: &str) -> bool {
        let rel = Self::normalize(rel);
        self.overrides.contains_key(rel) || root().join(rel).is_file()
    }

    /// The same files with `from` replaced by `to` (once) in `rel`; panics when `from` is absent
    /// so that a mutation test never silently stops mutating anything.
    fn mutated(&self, rel: &str, from: &str, to: &str) -> Files {
        let text = self.read(rel).unwrap();
        assert!(text.contains(from), "mutation: `{from}` not found in {rel}");
        let mut files = self.clone();
        files
            .overrides
            .insert(rel.to_string(), text.replacen(from, to, 1));
        files
    }
}

// ---------------------------------------------------------------------------------------------
// Small parsers: ports, URLs, image references, durations

/// The port of `host:port`, `[v6]:port`, `:port` or a bare `port`.
fn port_of(addr: &str) -> Option<u16> {
    let addr = addr.trim().trim_matches('"');
    match addr.rsplit_once(':') {
        Some((_, port)) => port.parse().ok(),
        None => addr.parse().ok(),
    }
}

/// Host and port of `scheme://[user[:pw]@]host[:port][/...]`, with the scheme's default port.
fn url_host_port(url: &str) -> Option<(String, u16)> {
    let url = url.trim();
    let (scheme, rest) = url.split_once("://").unwrap_or(("nats", url));
    let rest = rest.split('/').next()?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, hp)| hp);
    let default = match scheme {
        "nats" | "tls" => 4222,
        "nats-route" => 6222,
        _ => return None,
    };
    if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None => default,
        };
        return Some((host.to_string(), port));
    }
    match rest.rsplit_once(':') {
        Some((host, port)) => Some((host.to_string(), port.parse().ok()?)),
        None => Some((rest.to_string(), default)),
    }
}

/// `registry/path/name:tag@digest` as (name, tag, digest), name being the last path part.
fn image_parts(image: &str) -> (String, Option<String>, Option<String>) {
    let (reference, digest) = match image.split_once('@') {
        Some((r, d)) => (r, Some(d.to_string())),
        None => (image, None),
    };
    let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match reference[last_slash..].split_once(':') {
        Some((name, tag)) => (&reference[..last_slash + name.len()], Some(tag.to_string())),
        None => (reference, None),
    };
    let name = path.rsplit('/').next().unwrap_or(path).to_string();
    (name, tag, digest)
}

/// The leading `x.y.z` of a tag such as `2.12.8-alpine`, when it has all three numbers.
fn full_version(tag: &str) -> Option<(u64, u64, u64)> {
    let numbers: Vec<&str> = tag
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.')
        .collect();
    match numbers.as_slice() {
        [a, b, c] => Some((a.parse().ok()?, b.parse().ok()?, c.parse().ok()?)),
        _ => None,
    }
}

/// The leading `x.y` of a tag such as `1.95-bookworm` or `1.95.0`.
fn minor_version(tag: &str) -> Option<(u64, u64)> {
    let mut parts = tag
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()?
        .split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Compose durations such as `30s`, `1m30s`, `1500ms`, in milliseconds.
fn duration_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

// ---------------------------------------------------------------------------------------------
// NATS server configuration files (the subset of the format these files use)

#[derive(Debug, Clone, PartialEq)]
enum Conf {
    Str(String),
    Map(Vec<(String, Conf)>),
    List(Vec<Conf>),
}

impl Conf {
    fn get(&self, key: &str) -> Option<&Conf> {
        match self {
            Conf::Map(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            Conf::Str(s) => Some(s),
            _ => None,
        }
    }

    fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Conf::str)
    }

    /// Replaces `$VAR` values with `vars[VAR]` where known (nats-server reads the environment).
    fn substitute(&mut self, vars: &BTreeMap<String, String>) {
        match self {
            Conf::Str(s) => {
                if let Some(value) = s.strip_prefix('$').and_then(|name| vars.get(name)) {
                    *s = value.clone();
                }
            }
            Conf::Map(entries) => entries.iter_mut().for_each(|(_, v)| v.substitute(vars)),
            Conf::List(items) => items.iter_mut().for_each(|v| v.substitute(vars)),
        }
    }
}

struct ConfParser {
    chars: Vec<char>,
    at: usize,
}

fn parse_conf(text: &str) -> Result<Conf, String> {
    let mut parser = ConfParser {
        chars: text.chars().collect(),
        at: 0,
    };
    parser.map_body(false).map(Conf::Map)
}

impl ConfParser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn line(&self) -> usize {
        1 + self.chars[..self.at.min(self.chars.len())]
            .iter()
            .filter(|c| **c == '\n')
            .count()
    }

    /// Skips blanks, line ends, separators and comments between entries.
    fn skip_between(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_whitespace() || c == ',' || c == ';' {
                self.at += 1;
            } else if c == '#' || (c == '/' && self.chars.get(self.at + 1) == Some(&'/')) {
                while self.peek().is_some_and(|c| c != '\n') {
                    self.at += 1;
                }
            } else {
                break;
            }
        }
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(|c| c == ' ' || c == '\t') {
            self.at += 1;
        }
    }

    fn map_body(&mut self, braced: bool) -> Result<Vec<(String, Conf)>, String> {
        let mut entries = Vec::new();
        loop {
            self.skip_between();
            match self.peek() {
                None if braced => return Err(format!("line {}: unclosed {{", self.line())),
                None => return Ok(entries),
                Some('}') if braced => {
                    self.at += 1;
                    return Ok(entries);
                }
                _ => {}
            }
            let key = self.key()?;
            self.skip_blanks();
            if matches!(self.peek(), Some(':') | Some('=')) {
                self.at += 1;
                self.skip_blanks();
            }
            let value = self.value()?;
            entries.push((key.to_ascii_lowercase(), value));
        }
    }

    fn key(&mut self) -> Result<String, String> {
        if let Some(q @ ('"' | '\'')) = self.peek() {
            return self.quoted(q);
        }
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| !c.is_whitespace() && !matches!(c, ':' | '=' | '{' | '[' | '}'))
        {
            self.at += 1;
        }
        if self.at == start {
            return Err(format!("line {}: expected a key", self.line()));
        }
        Ok(self.chars[start..self.at].iter().collect())
    }

    fn quoted(&mut self, quote: char) -> Result<String, String> {
        let line = self.line();
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(format!("line {line}: unclosed string")),
                Some(c) if c == quote => {
                    self.at += 1;
                    return Ok(out);
                }
                Some('\\') if quote == '"' => {
                    self.at += 1;
                    if let Some(c) = self.peek() {
                        out.push(c);
                        self.at += 1;
                    }
                }
                Some(c) => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    fn value(&mut self) -> Result<Conf, String> {
        match self.peek() {
            Some('{') => {
                self.at += 1;
                self.map_body(true).map(Conf::Map)
            }
            Some('[') => {
                self.at += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_between();
                    match self.peek() {
                        None => return Err(format!("line {}: unclosed [", self.line())),
                        Some(']') => {
                            self.at += 1;
                            return Ok(Conf::List(items));
                        }
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(q @ ('"' | '\'')) => self.quoted(q).map(Conf::Str),
            _ => {
                let start = self.at;
                while let Some(c) = self.peek() {
                    let comment = c == '#' && self.at > start && self.chars[self.at - 1] == ' ';
                    if matches!(c, '\n' | ',' | ';' | ']' | '}') || comment {
                        break;
                    }
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                Ok(Conf::Str(text.trim().to_string()))
            }
        }
    }
}

/// What the checks need from one node's configuration.
#[derive(Debug, Clone, Default)]
struct NodeConf {
    server_name: Option<String>,
    client_port: u16,
    monitor_port: Option<u16>,
    cluster_name: Option<String>,
    cluster_port: Option<u16>,
    routes: Vec<String>,
    jetstream: bool,
    store_dir: Option<String>,
}

impl NodeConf {
    fn from_conf(conf: &Conf) -> NodeConf {
        let cluster = conf.get("cluster");
        let jetstream = conf.get("jetstream");
        NodeConf {
            server_name: conf.get_str("server_name").map(str::to_string),
            client_port: conf
                .get_str("port")
                .and_then(|p| p.parse().ok())
                .or_else(|| conf.get_str("listen").and_then(port_of))
                .unwrap_or(4222),
            monitor_port: ["http_port", "monitor_port", "http"]
                .iter()
                .find_map(|k| conf.get_str(k).and_then(port_of)),
            cluster_name: cluster.and_then(|c| c.get_str("name")).map(str::to_string),
            cluster_port: cluster.and_then(|c| {
                c.get_str("port")
                    .and_then(|p| p.parse().ok())
                    .or_else(|| c.get_str("listen").and_then(port_of))
            }),
            routes: match cluster.and_then(|c| c.get("routes")) {
                Some(Conf::List(items)) => items
                    .iter()
                    .filter_map(Conf::str)
                    .map(str::to_string)
                    .collect(),
                Some(Conf::Str(s)) => s.split(',').map(|r| r.trim().to_string()).collect(),
                _ => Vec::new(),
            },
            jetstream: match jetstream {
                Some(Conf::Map(_)) => true,
                Some(Conf::Str(s)) => !matches!(
                    s.to_ascii_lowercase().as_str(),
                    "false" | "disabled" | "disable" | "off" | "no"
                ),
                _ => false,
            },
            store_dir: jetstream
                .and_then(|j| j.get_str("store_dir"))
                .or_else(|| conf.get_str("store_dir"))
                .map(str::to_string),
        }
    }

    /// nats-server flags given on the command line override the file.
    fn apply_flags(&mut self, args: &[String]) {
        let mut i = 0;
        while i < args.len() {
            let (flag, inline) = match args[i].split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f, Some(v.to_string())),
                _ => (args[i].as_str(), None),
            };
            let takes_value = matches!(
                flag,
                "-n" | "--name"
                    | "--server_name"
                    | "-p"
                    | "--port"
                    | "-m"
                    | "--http_port"
                    | "--cluster_name"
                    | "--cluster"
                    | "--routes"
                    | "-sd"
                    | "--store_dir"
            );
            let value = if takes_value && inline.is_none() {
                i += 1;
                args.get(i).cloned()
            } else {
                inline
            };
            match (flag, value) {
                ("-n" | "--name" | "--server_name", Some(v)) => self.server_name = Some(v),
                ("-p" | "--port", Some(v)) => self.client_port = v.parse().unwrap_or(0),
                ("-m" | "--http_port", Some(v)) => self.monitor_port = v.parse().ok(),
                ("--cluster_name", Some(v)) => self.cluster_name = Some(v),
                ("--cluster", Some(v)) => self.cluster_port = port_of(&v),
                ("--routes", Some(v)) => {
                    self.routes = v.split(',').map(|r| r.trim().to_string()).collect()
                }
                ("-sd" | "--store_dir", Some(v)) => self.store_dir = Some(v),
                ("-js" | "--jetstream", _) => self.jetstream = true,
                _ => {}
            }
            i += 1;
        }
    }
}

fn read_node_conf(
    files: &Files,
    rel: &str,
    vars: &BTreeMap<String, String>,
) -> Result<NodeConf, String> {
    let mut conf = parse_conf(&files.read(rel)?).map_err(|e| format!("{rel}: {e}"))?;
    conf.substitute(vars);
    Ok(NodeConf::from_conf(&conf))
}

// ---------------------------------------------------------------------------------------------
// HAProxy configuration

struct Section {
    kind: String,
    name: String,
    lines: Vec<Vec<String>>,
}

struct Haproxy {
    sections: Vec<Section>,
}

struct Server {
    name: String,
    host: String,
    port: Option<u16>,
    checked: bool,
}

const HAPROXY_SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "mailers",
    "program",
    "http-errors",
    "ring",
    "cache",
];

fn parse_haproxy(text: &str) -> Haproxy {
    let mut sections: Vec<Section> = Vec::new();
    for raw in text.lines() {
        let line = raw.split('#').next().unwrap_or("");
        let tokens: Vec<String> = line.split_whitespace().map(str::to_string).collect();
        let Some(first) = tokens.first() else {
            continue;
        };
        if HAPROXY_SECTIONS.contains(&first.as_str()) {
            sections.push(Section {
                kind: first.clone(),
                name: tokens.get(1).cloned().unwrap_or_default(),
                lines: Vec::new(),
            });
        } else if let Some(section) = sections.last_mut() {
            section.lines.push(tokens);
        }
    }
    Haproxy { sections }
}

impl Section {
    fn lines_starting(&self, words: &[&str]) -> impl Iterator<Item = &Vec<String>> {
        let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        self.lines
            .iter()
            .filter(move |l| l.len() >= words.len() && l[..words.len()] == words[..])
    }

    fn binds_port(&self, port: u16) -> bool {
        self.lines_starting(&["bind"])
            .any(|l| l.get(1).and_then(|a| port_of(a)) == Some(port))
    }

    fn servers(&self) -> Vec<Server> {
        let default_check = self
            .lines_starting(&["default-server"])
            .any(|l| l.iter().any(|t| t == "check"));
        self.lines_starting(&["server"])
            .filter(|l| l.len() >= 3)
            .map(|l| {
                let (host, port) = match l[2].rsplit_once(':') {
                    Some((h, p)) => (h.to_string(), p.parse().ok()),
                    None => (l[2].clone(), None),
                };
                Server {
                    name: l[1].clone(),
                    host,
                    port,
                    checked: default_check || l[3..].iter().any(|t| t == "check"),
                }
            })
            .collect()
    }

    /// The path of the active HTTP check, if any.
    fn http_check_path(&self) -> Option<String> {
        let from_option = self
            .lines_starting(&["option", "httpchk"])
            .find_map(|l| l.iter().skip(2).find(|t| t.starts_with('/')).cloned());
        let from_send = self.lines_starting(&["http-check", "send"]).find_map(|l| {
            l.iter()
                .position(|t| t == "uri")
                .and_then(|i| l.get(i + 1).cloned())
        });
        from_option.or(from_send)
    }
}

impl Haproxy {
    /// The section whose servers receive what arrives on `port`: a `listen` section binding
    /// it, or the `default_backend` of the frontend binding it.
    fn upstream_for_port(&self, port: u16) -> Result<&Section, String> {
        let front = self
            .sections
            .iter()
            .find(|s| (s.kind == "frontend" || s.kind == "listen") && s.binds_port(port))
            .ok_or_else(|| format!("no frontend binds port {port}"))?;
        if front.kind == "listen" {
            return Ok(front);
        }
        let backend = front
            .lines_starting(&["default_backend"])
            .find_map(|l| l.get(1))
            .ok_or_else(|| format!("frontend {} has no default_backend", front.name))?;
        self.sections
            .iter()
            .find(|s| s.kind == "backend" && &s.name == backend)
            .ok_or_else(|| format!("backend {backend} is not defined"))
    }
}

// ---------------------------------------------------------------------------------------------
// The compose file

fn scalar(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Resolves YAML merge keys (`<<: *anchor` or `<<: [*a, *b]`): explicit keys win, then the
/// merged maps in order. yaml-rust2 already replaces each alias by a copy of its anchor.
fn resolve_merges(y: Yaml) -> Yaml {
    match y {
        Yaml::Hash(hash) => {
            let mut out = Hash::new();
            let mut merged: Vec<Hash> = Vec::new();
            for (k, v) in hash {
                let v = resolve_merges(v);
                if k.as_str() == Some("<<") {
                    match v {
                        Yaml::Hash(m) => merged.push(m),
                        Yaml::Array(items) => {
                            merged.extend(items.into_iter().filter_map(|i| match i {
                                Yaml::Hash(m) => Some(m),
                                _ => None,
                            }))
                        }
                        _ => {}
                    }
                } else {
                    out.insert(k, v);
                }
            }
            for m in merged {
                for (k, v) in m {
                    if !out.contains_key(&k) {
                        out.insert(k, v);
                    }
                }
            }
            Yaml::Hash(out)
        }
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(resolve_merges).collect()),
        other => other,
    }
}

/// A string or a list of strings (compose's `command`, `healthcheck.test`), as words.
fn words(y: &Yaml) -> Vec<String> {
    match y {
        Yaml::Array(items) => items.iter().filter_map(scalar).collect(),
        other => scalar(other)
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

struct Deployment {
    files: Files,
    services: BTreeMap<String, Yaml>,
    named_volumes: BTreeSet<String>,
}

/// One NATS node as compose runs it: its service, its config file and command flags.
struct Node {
    service: String,
    /// Names other containers reach it by: the service name, and its hostname when set.
    dns_names: BTreeSet<String>,
    config_file: String,
    conf: NodeConf,
}

impl Deployment {
    fn load(files: Files) -> Result<Deployment, String> {
        let text = files.read("docker-compose.yml")?;
        let docs =
            YamlLoader::load_from_str(&text).map_err(|e| format!("docker-compose.yml: {e}"))?;
        let doc = resolve_merges(
            docs.into_iter()
                .next()
                .ok_or("docker-compose.yml is empty")?,
        );
        let services = doc["services"]
            .as_hash()
            .ok_or("docker-compose.yml has no services")?
            .iter()
            .map(|(k, v)| {
                Ok((
                    scalar(k).ok_or("a service name is not a string")?,
                    v.clone(),
                ))
            })
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let named_volumes = doc["volumes"]
            .as_hash()
            .map(|h| h.keys().filter_map(scalar).collect())
            .unwrap_or_default();
        Ok(Deployment {
            files,
            services,
            named_volumes,
        })
    }

    fn repo() -> Deployment {
        Deployment::load(Files::default()).expect("docker-compose.yml loads")
    }

    fn image_name(service: &Yaml) -> Option<String> {
        service["image"].as_str().map(|i| image_parts(i).0)
    }

    fn with_image(&self, name: &str) -> Vec<&str> {
        self.services
            .iter()
            .filter(|(_, s)| Self::image_name(s).as_deref() == Some(name))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn nats_services(&self) -> Vec<&str> {
        self.with_image("nats")
    }

    fn lb_services(&self) -> Vec<&str> {
        self.with_image("haproxy")
    }

    /// The tv-ingress replicas: services built from this repository or using its image.
    fn replicas(&self) -> Vec<&str> {
        self.services
            .iter()
            .filter(|(_, s)| {
                !s["build"].is_badvalue()
                    || Self::image_name(s).is_some_and(|n| n.starts_with("tv-ingress"))
            })
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn service(&self, name: &str) -> &Yaml {
        &self.services[name]
    }

    /// `environment` in map or list form; `None` for a variable passed through from the host.
    fn environment(&self, name: &str) -> BTreeMap<String, Option<String>> {
        match &self.service(name)["environment"] {
            Yaml::Hash(h) => h
                .iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v))))
                .collect(),
            Yaml::Array(items) => items
                .iter()
                .filter_map(scalar)
                .map(|item| match item.split_once('=') {
                    Some((k, v)) => (k.to_string(), Some(v.to_string())),
                    None => (item, None),
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    }

    fn env_value(&self, name: &str, variable: &str) -> Option<String> {
        self.environment(name).get(variable).cloned().flatten()
    }

    fn env_files(&self, name: &str) -> Vec<String> {
        match &self.service(name)["env_file"] {
            Yaml::Array(items) => items
                .iter()
                .filter_map(|i| scalar(i).or_else(|| scalar(&i["path"])))
                .collect(),
            other => scalar(other).into_iter().collect(),
        }
    }

    /// (source, target) of each volume mount.
    fn volumes(&self, name: &str) -> Vec<(String, String)> {
        self.service(name)["volumes"]
            .as_vec()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| match v {
                        Yaml::Hash(_) => Some((scalar(&v["source"])?, scalar(&v["target"])?)),
                        other => {
                            let text = scalar(other)?;
                            let mut parts = text.split(':');
                            Some((parts.next()?.to_string(), parts.next()?.to_string()))
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// (published, target) of each port mapping.
    fn ports(&self, name: &str) -> Vec<(Option<u16>, u16)> {
        self.service(name)["ports"]
            .as_vec()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|p| match p {
                        Yaml::Hash(_) => Some((
                            scalar(&p["published"]).and_then(|s| s.parse().ok()),
                            scalar(&p["target"])?.parse().ok()?,
                        )),
                        other => {
                            let text = scalar(other)?;
                            let text = text.split('/').next()?;
                            let parts: Vec<&str> = text.split(':').collect();
                            match parts.as_slice() {
                                [target] => Some((None, target.parse().ok()?)),
                                [.., published, target] => {
                                    Some((published.parse().ok(), target.parse().ok()?))
                                }
                                [] => None,
                            }
                        }
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The port a replica listens on (BIND_ADDR, else the receiver's default).
    fn replica_port(&self, name: &str) -> Option<u16> {
        match self.env_value(name, "BIND_ADDR") {
            Some(addr) => port_of(&addr),
            None => Some(DEFAULT_BIND_PORT),
        }
    }

    fn node(&self, name: &str) -> Result<Node, String> {
        let service = self.service(name);
        let command = words(&service["command"]);
        let config_target = command
            .iter()
            .position(|w| w == "--config" || w == "-c")
            .and_then(|i| command.get(i + 1).cloned())
            .or_else(|| {
                command
                    .iter()
                    .find_map(|w| w.strip_prefix("--config=").map(str::to_string))
            })
            .ok_or_else(|| format!("{name}: its command gives no --config"))?;
        let config_file = self
            .volumes(name)
            .into_iter()
            .find(|(_, target)| *target == config_target)
            .map(|(source, _)| source)
            .ok_or_else(|| format!("{name}: no volume mounts its config {config_target}"))?;
        let vars: BTreeMap<String, String> = self
            .environment(name)
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        let mut conf = read_node_conf(&self.files, &config_file, &vars)?;
        conf.apply_flags(&command);
        let mut dns_names = BTreeSet::from([name.to_string()]);
        if let Some(hostname) = service["hostname"].as_str() {
            dns_names.insert(hostname.to_string());
        }
        Ok(Node {
            service: name.to_string(),
            dns_names,
            config_file,
            conf,
        })
    }

    fn nodes(&self) -> Result<Vec<Node>, String> {
        self.nats_services().iter().map(|n| self.node(n)).collect()
    }

    /// Which node `host:port` (a client or route address) reaches, given `port` of the node.
    fn node_at<'n>(
        nodes: &'n [Node],
        host: &str,
        port: u16,
        node_port: impl Fn(&Node) -> Option<u16>,
    ) -> Option<&'n Node> {
        nodes
            .iter()
            .find(|n| n.dns_names.contains(host) && node_port(n) == Some(port))
    }

    fn lb_config(&self, lb: &str) -> Result<(String, Haproxy), String> {
        let (source, _) = self
            .volumes(lb)
            .into_iter()
            .find(|(source, _)| source.ends_with(".cfg"))
            .ok_or_else(|| format!("{lb}: mounts no HAProxy .cfg file"))?;
        Ok((source.clone(), parse_haproxy(&self.files.read(&source)?)))
    }

    fn the_lb(&self) -> Result<&str, String> {
        match self.lb_services().as_slice() {
            [one] => Ok(one),
            other => Err(format!(
                "expected one haproxy load balancer, found {other:?}"
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The compose checks

fn three_nats_nodes(d: &Deployment) -> Result<(), String> {
    let nodes = d.nats_services();
    ensure(nodes.len() >= 3 && nodes.len() % 2 == 1, || {
        format!("a JetStream cluster needs an odd number >= 3 of nodes; found {nodes:?}")
    })
}

fn nats_image_pinned(d: &Deployment) -> Result<(), String> {
    let images: BTreeSet<&str> = d
        .nats_services()
        .iter()
        .filter_map(|n| d.service(n)["image"].as_str())
        .collect();
    ensure(images.len() == 1, || {
        format!("the nodes use different images: {images:?}")
    })?;
    let image = images.into_iter().next().unwrap_or_default();
    let (_, tag, _) = image_parts(image);
    let version = tag
        .as_deref()
        .and_then(full_version)
        .ok_or_else(|| format!("`{image}` is not pinned to an x.y.z release tag"))?;
    ensure((version.0, version.1) >= NATS_MIN_VERSION, || {
        format!(
            "`{image}` is older than {}.{}",
            NATS_MIN_VERSION.0, NATS_MIN_VERSION.1
        )
    })
}

fn pulled_images_pinned(d: &Deployment) -> Result<(), String> {
    let loose: Vec<String> = d
        .services
        .iter()
        .filter(|(_, s)| s["build"].is_badvalue())
        .filter_map(|(name, s)| {
            let image = s["image"].as_str()?;
            let (_, tag, digest) = image_parts(image);
            let pinned = digest.is_some() || tag.as_deref().and_then(full_version).is_some();
            (!pinned).then(|| format!("{name}: {image}"))
        })
        .collect();
    ensure(loose.is_empty(), || {
        format!("images without an x.y.z tag or digest: {loose:?}")
    })
}

fn nodes_load_their_own_config(d: &Deployment) -> Result<(), String> {
    let nodes = d.nodes()?;
    let mut seen = BTreeSet::new();
    for node in &nodes {
        ensure(d.files.exists(&node.config_file), || {
            format!(
                "{}: {} is not in the repository",
                node.service, node.config_file
            )
        })?;
        ensure(seen.insert(node.config_file.clone()), || {
            format!("{} is shared by several nodes", node.config_file)
        })?;
    }
    Ok(())
}

fn nodes_unique_server_names(d: &Deployment) -> Result<(), String> {
    let nodes = d.nodes()?;
    let mut seen = BTreeSet::new();
    for node in &nodes {
        let name = node
            .conf
            .server_name
            .clone()
            .ok_or_else(|| format!("{} sets no server_name", node.service))?;
        ensure(seen.insert(name.clone()), || {
            format!("server_name {name} is used twice")
        })?;
    }
    Ok(())
}

fn nodes_one_cluster_with_jetstream(d: &Deployment) -> Result<(), String> {
    let nodes = d.nodes()?;
    let names: BTreeSet<Option<String>> =
        nodes.iter().map(|n| n.conf.cluster_name.clone()).collect();
    ensure(names.len() == 1 && !names.contains(&None), || {
        format!("cluster names differ or are missing: {names:?}")
    })?;
    let without: Vec<&str> = nodes
        .iter()
        .filter(|n| !n.conf.jetstream)
        .map(|n| n.service.as_str())
        .collect();
    ensure(without.is_empty(), || {
        format!("JetStream is off on {without:?}")
    })
}

fn nodes_route_to_all(d: &Deployment) -> Result<(), String> {
    let nodes = d.nodes()?;
    for node in &nodes {
        let mut reached = BTreeSet::new();
        for route in &node.conf.routes {
            let (host, port) = url_host_port(route)
                .ok_or_else(|| format!("{}: bad route {route}", node.service))?;
            let target = Deployment::node_at(&nodes, &host, port, |n| n.conf.cluster_port)
                .ok_or_else(|| {
                    format!(
                        "{}: route {route} reaches no node's cluster port",
                        node.service
                    )
                })?;
            reached.insert(target.service.clone());
        }
        let missing: Vec<&str> = nodes
            .iter()
            .filter(|n| !reached.contains(&n.service))
            .map(|n| n.service.as_str())
            .collect();
        ensure(missing.is_empty(), || {
            format!("{} has no route to {missing:?}", node.service)
        })?;
    }
    Ok(())
}

fn nodes_store_on_named_volumes(d: &Deployment) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for node in d.nodes()? {
        let store = node
            .conf
            .store_dir
            .clone()
            .ok_or_else(|| format!("{}: no JetStream store_dir", node.service))?;
        let (volume, _) = d
            .volumes(&node.service)
            .into_iter()
            .find(|(source, target)| {
                d.named_volumes.contains(source)
                    && (store == *target
                        || store.starts_with(&format!("{}/", target.trim_end_matches('/'))))
            })
            .ok_or_else(|| {
                format!(
                    "{}: store_dir {store} is not on a named volume declared under volumes:",
                    node.service
                )
            })?;
        ensure(seen.insert(volume.clone()), || {
            format!("volume {volume} is shared by several nodes")
        })?;
    }
    Ok(())
}

fn nodes_healthcheck(d: &Deployment) -> Result<(), String> {
    for node in d.nodes()? {
        let test = words(&d.service(&node.service)["healthcheck"]["test"]).join(" ");
        let port = node
            .conf
            .monitor_port
            .ok_or_else(|| format!("{}: monitoring port is off", node.service))?;
        ensure(test.contains(&format!(":{port}/healthz")), || {
            format!(
                "{}: healthcheck `{test}` does not ask /healthz on monitoring port {port}",
                node.service
            )
        })?;
    }
    Ok(())
}

fn two_replicas_from_dockerfile(d: &Deployment) -> Result<(), String> {
    let replicas = d.replicas();
    ensure(replicas.len() >= 2, || {
        format!("need at least two tv-ingress replicas, found {replicas:?}")
    })?;
    for r in replicas {
        let build = &d.service(r)["build"];
        let (context, dockerfile) = match build {
            Yaml::Hash(_) => (
                scalar(&build["context"]).unwrap_or_else(|| ".".into()),
                scalar(&build["dockerfile"]).unwrap_or_else(|| "Dockerfile".into()),
            ),
            other => (
                scalar(other).ok_or_else(|| format!("{r} is not built from this repository"))?,
                "Dockerfile".into(),
            ),
        };
        let path = format!("{}/{dockerfile}", context.trim_end_matches('/'));
        ensure(
            context.trim_end_matches('/') == "." && d.files.exists(&path),
            || format!("{r}: builds from {path}, not the repository's Dockerfile"),
        )?;
    }
    Ok(())
}

fn replicas_list_every_node(d: &Deployment) -> Result<(), String> {
    let nodes = d.nodes()?;
    for r in d.replicas() {
        let urls = d
            .env_value(r, "NATS_URL")
            .ok_or_else(|| format!("{r}: NATS_URL is not set"))?;
        let mut reached = BTreeSet::new();
        for url in urls.split(',') {
            let (host, port) = url_host_port(url).ok_or_else(|| format!("{r}: bad URL {url}"))?;
            let node = Deployment::node_at(&nodes, &host, port, |n| Some(n.conf.client_port))
                .ok_or_else(|| format!("{r}: {url} is no NATS node's client address"))?;
            reached.insert(node.service.clone());
        }
        let missing: Vec<&str> = nodes
            .iter()
            .filter(|n| !reached.contains(&n.service))
            .map(|n| n.service.as_str())
            .collect();
        ensure(missing.is_empty(), || {
            format!("{r}: NATS_URL={urls} leaves out {missing:?}")
        })?;
    }
    Ok(())
}

fn replicas_create_r3_stream(d: &Deployment) -> Result<(), String> {
    let nodes = d.nats_services().len();
    for r in d.replicas() {
        let replicas = d.env_value(r, "NATS_STREAM_REPLICAS");
        ensure(replicas.as_deref() == Some("3"), || {
            format!("{r}: NATS_STREAM_REPLICAS is {replicas:?}, expected 3")
        })?;
        ensure(nodes >= 3, || format!("stream replicas 3 > {nodes} nodes"))?;
    }
    Ok(())
}

fn replicas_wait_for_healthy_nodes(d: &Deployment) -> Result<(), String> {
    for r in d.replicas() {
        let depends = &d.service(r)["depends_on"];
        for node in d.nats_services() {
            let condition = depends[node]["condition"].as_str();
            ensure(condition == Some("service_healthy"), || {
                format!("{r}: depends_on {node} is {condition:?}, expected service_healthy")
            })?;
        }
    }
    Ok(())
}

fn replicas_stop_gracefully(d: &Deployment) -> Result<(), String> {
    for r in d.replicas() {
        let grace = d
            .env_value(r, "SHUTDOWN_GRACE_SECONDS")
            .and_then(|s| s.parse().ok())
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE_SECONDS);
        let stop = scalar(&d.service(r)["stop_grace_period"]).unwrap_or_else(|| "10s".into());
        let stop_ms =
            duration_ms(&stop).ok_or_else(|| format!("{r}: bad stop_grace_period {stop}"))?;
        ensure(stop_ms > grace * 1000, || {
            format!("{r}: stop_grace_period {stop} does not exceed SHUTDOWN_GRACE_SECONDS={grace}")
        })?;
    }
    Ok(())
}

/// `${NAME}`, `${NAME:?message}` or `${NAME?message}`: a required variable, no literal default.
fn is_required_interpolation(value: &str) -> bool {
    let Some(inner) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else {
        return false;
    };
    let name_len = inner
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(inner.len());
    let rest = &inner[name_len..];
    name_len > 0
        && !inner.contains("${")
        && (rest.is_empty() || rest.starts_with(":?") || rest.starts_with('?'))
}

fn secret_never_literal(d: &Deployment) -> Result<(), String> {
    let gitignore = d.files.read(".gitignore").unwrap_or_default();
    for name in d.services.keys() {
        let env = d.environment(name);
        if let Some(Some(value)) = env.get("WEBHOOK_SECRET") {
            ensure(is_required_interpolation(value), || {
                format!(
                    "{name}: WEBHOOK_SECRET is `{value}`: use ${{WEBHOOK_SECRET:?...}} or env_file"
                )
            })?;
        }
        for file in d.env_files(name) {
            let base = Path::new(&file)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            ensure(gitignore.lines().any(|l| l.trim() == base), || {
                format!("{name}: env_file {file} is not in .gitignore")
            })?;
        }
    }
    for r in d.replicas() {
        ensure(
            d.environment(r).contains_key("WEBHOOK_SECRET") || !d.env_files(r).is_empty(),
            || format!("{r}: gets no WEBHOOK_SECRET (neither environment nor env_file)"),
        )?;
    }
    Ok(())
}

fn lb_publishes_webhook_port(d: &Deployment) -> Result<(), String> {
    let lb = d.the_lb()?;
    let (_, haproxy) = d.lb_config(lb)?;
    let target = d
        .ports(lb)
        .into_iter()
        .find(|(published, _)| *published == Some(WEBHOOK_PORT))
        .map(|(_, target)| target)
        .ok_or_else(|| format!("{lb} does not publish port {WEBHOOK_PORT}"))?;
    haproxy.upstream_for_port(target).map(|_| ())
}

fn lb_upstreams_are_the_replicas(d: &Deployment) -> Result<(), String> {
    let lb = d.the_lb()?;
    let (file, haproxy) = d.lb_config(lb)?;
    let target = d
        .ports(lb)
        .into_iter()
        .find(|(published, _)| *published == Some(WEBHOOK_PORT))
        .map_or(WEBHOOK_PORT, |(_, t)| t);
    let servers = haproxy.upstream_for_port(target)?.servers();
    let hosts: BTreeSet<&str> = servers.iter().map(|s| s.host.as_str()).collect();
    let replicas: BTreeSet<&str> = d.replicas().into_iter().collect();
    ensure(hosts == replicas, || {
        format!("{file} sends to {hosts:?}, but the replicas are {replicas:?}")
    })?;
    ensure(servers.len() == hosts.len(), || {
        format!("{file} lists a replica twice")
    })?;
    for s in &servers {
        let expected = d.replica_port(&s.host);
        ensure(s.port == expected, || {
            format!(
                "{file}: server {} uses port {:?}, the replica listens on {:?}",
                s.name, s.port, expected
            )
        })?;
    }
    Ok(())
}

fn lb_routes_only_to_ready(d: &Deployment) -> Result<(), String> {
    let lb = d.the_lb()?;
    let (file, haproxy) = d.lb_config(lb)?;
    let target = d
        .ports(lb)
        .into_iter()
        .find(|(published, _)| *published == Some(WEBHOOK_PORT))
        .map_or(WEBHOOK_PORT, |(_, t)| t);
    let backend = haproxy.upstream_for_port(target)?;
    let path = backend.http_check_path();
    ensure(path.as_deref() == Some("/ready"), || {
        format!(
            "{file}: backend {} checks {path:?}, expected GET /ready",
            backend.name
        )
    })?;
    let unchecked: Vec<String> = backend
        .servers()
        .into_iter()
        .filter(|s| !s.checked)
        .map(|s| s.name)
        .collect();
    ensure(unchecked.is_empty(), || {
        format!("{file}: servers without `check`: {unchecked:?}")
    })
}

const COMPOSE_CHECKS: &[Check<Deployment>] = &[
    (
        "a JetStream cluster of an odd number (>= 3) of NATS nodes",
        three_nats_nodes,
    ),
    (
        "the nats image is pinned to one x.y.z release, 2.10 or newer",
        nats_image_pinned,
    ),
    (
        "every pulled image is pinned (x.y.z tag or digest)",
        pulled_images_pinned,
    ),
    (
        "each NATS node loads its own config file from the repository",
        nodes_load_their_own_config,
    ),
    (
        "NATS nodes have unique server_names",
        nodes_unique_server_names,
    ),
    (
        "NATS nodes share one cluster name and enable JetStream",
        nodes_one_cluster_with_jetstream,
    ),
    (
        "each NATS node routes to every node's cluster port",
        nodes_route_to_all,
    ),
    (
        "each NATS node keeps its JetStream store on its own named volume",
        nodes_store_on_named_volumes,
    ),
    (
        "each NATS node has a healthcheck on /healthz of its monitoring port",
        nodes_healthcheck,
    ),
    (
        "at least two tv-ingress replicas, built from the Dockerfile",
        two_replicas_from_dockerfile,
    ),
    (
        "every replica's NATS_URL lists every NATS node (host and client port)",
        replicas_list_every_node,
    ),
    (
        "replicas create the stream with NATS_STREAM_REPLICAS=3",
        replicas_create_r3_stream,
    ),
    (
        "replicas start once every NATS node is healthy",
        replicas_wait_for_healthy_nodes,
    ),
    (
        "replicas get more stop time than SHUTDOWN_GRACE_SECONDS",
        replicas_stop_gracefully,
    ),
    (
        "WEBHOOK_SECRET is never a literal (interpolation or a git-ignored env_file)",
        secret_never_literal,
    ),
    (
        "one HAProxy load balancer publishes the webhook port 8000",
        lb_publishes_webhook_port,
    ),
    (
        "the load balancer's servers are exactly the replicas, on their BIND_ADDR port",
        lb_upstreams_are_the_replicas,
    ),
    (
        "the load balancer routes only to ready replicas (active check of GET /ready)",
        lb_routes_only_to_ready,
    ),
];

#[test]
fn compose_file_is_coherent() {
    run_checks("docker-compose.yml", &Deployment::repo(), COMPOSE_CHECKS);
}

#[test]
fn checks_catch_broken_deployments() {
    let repo = Files::default();
    let nats_image = Deployment::repo().service("nats-1")["image"]
        .as_str()
        .unwrap()
        .to_string();
    // (what is broken, file, text, replacement, the check that must fail)
    let cases: Vec<(&str, &str, &str, String, &str)> = vec![
        (
            "a literal secret",
            "docker-compose.yml",
            "\"${WEBHOOK_SECRET:?",
            "\"literal-secret-0123456789abcdef0123456789 ${X:?".into(),
            "WEBHOOK_SECRET is never a literal",
        ),
        (
            "a secret with a literal default",
            "docker-compose.yml",
            "${WEBHOOK_SECRET:?",
            "${WEBHOOK_SECRET:-literal-default-0123456789abcdef}${X:?".into(),
            "WEBHOOK_SECRET is never a literal",
        ),
        (
            "a node missing from NATS_URL",
            "docker-compose.yml",
            ",nats://nats-3:4222",
            String::new(),
            "every replica's NATS_URL lists every NATS node",
        ),
        (
            "a wrong client port in NATS_URL",
            "docker-compose.yml",
            "nats://nats-2:4222",
            "nats://nats-2:4223".into(),
            "every replica's NATS_URL lists every NATS node",
        ),
        (
            "an unpinned nats image",
            "docker-compose.yml",
            nats_image.as_str(),
            "nats:latest".into(),
            "the nats image is pinned",
        ),
        (
            "a nats image older than 2.10",
            "docker-compose.yml",
            nats_image.as_str(),
            "nats:2.9.25-alpine".into(),
            "the nats image is pinned",
        ),
        (
            "R1 streams",
            "docker-compose.yml",
            "NATS_STREAM_REPLICAS: \"3\"",
            "NATS_STREAM_REPLICAS: \"1\"".into(),
            "replicas create the stream with NATS_STREAM_REPLICAS=3",
        ),
        (
            "a replica missing from the load balancer",
            "deploy/haproxy.cfg",
            "    server tv-ingress-2 tv-ingress-2:8000\n",
            String::new(),
            "the load balancer's servers are exactly the replicas",
        ),
        (
            "a load balancer server that is no replica",
            "deploy/haproxy.cfg",
            "server tv-ingress-2 tv-ingress-2:8000",
            "server tv-ingress-2 tv-ingress-3:8000".into(),
            "the load balancer's servers are exactly the replicas",
        ),
        (
            "a liveness check instead of readiness",
            "deploy/haproxy.cfg",
            "option httpchk GET /ready",
            "option httpchk GET /health".into(),
            "the load balancer routes only to ready replicas",
        ),
        (
            "no active check",
            "deploy/haproxy.cfg",
            "default-server check ",
            "default-server ".into(),
            "the load balancer routes only to ready replicas",
        ),
        (
            "two nodes with one server_name",
            "nats/cluster/docker/nats-3.conf",
            "server_name: nats-3",
            "server_name: nats-1".into(),
            "NATS nodes have unique server_names",
        ),
        (
            "a node without a route to another",
            "nats/cluster/docker/nats-1.conf",
            "nats-route://nats-3:6222",
            String::new(),
            "each NATS node routes to every node's cluster port",
        ),
        (
            "a node in another cluster",
            "nats/cluster/docker/nats-2.conf",
            "name: tv-ingress",
            "name: other".into(),
            "NATS nodes share one cluster name",
        ),
        (
            "a node storing outside its volume",
            "nats/cluster/docker/nats-2.conf",
            "store_dir: \"/data/jetstream\"",
            "store_dir: \"/tmp/jetstream\"".into(),
            "each NATS node keeps its JetStream store on its own named volume",
        ),
    ];
    let mut missed = Vec::new();
    for (broken, file, from, to, check) in &cases {
        let files = repo.mutated(file, from, to);
        let deployment = Deployment::load(files).expect("mutated compose still parses");
        let (description, run) = COMPOSE_CHECKS
            .iter()
            .find(|(d, _)| d.starts_with(check))
            .unwrap_or_else(|| panic!("no check named `{check}`"));
        match run(&deployment) {
            Err(why) => eprintln!("ok    {broken}: caught by `{description}`: {why}"),
            Ok(()) => {
                eprintln!("FAIL  {broken}: `{description}` passed");
                missed.push(*broken);
            }
        }
    }
    assert!(
        missed.is_empty(),
        "broken deployments not caught: {missed:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile and .dockerignore

struct Dockerfile {
    /// Instructions with continuation lines joined: (INSTRUCTION, arguments), per stage.
    stages: Vec<Vec<(String, String)>>,
    dockerignore: String,
    rust_version: (u64, u64),
}

impl Dockerfile {
    fn repo() -> Dockerfile {
        let files = Files::default();
        let text = files.read("Dockerfile").expect("Dockerfile");
        let mut stages: Vec<Vec<(String, String)>> = Vec::new();
        let mut pending = String::new();
        for line in text.lines() {
            let trimmed = line.trim();
            if pending.is_empty() && (trimmed.starts_with('#') || trimmed.is_empty()) {
                continue;
            }
            if trimmed.starts_with('#') {
                continue; // a comment inside a continued instruction
            }
            match trimmed.strip_suffix('\\') {
                Some(part) => {
                    pending.push_str(part);
                    pending.push(' ');
                    continue;
                }
                None => pending.push_str(trimmed),
            }
            let instruction = std::mem::take(&mut pending);
            let (keyword, args) = instruction
                .split_once(char::is_whitespace)
                .unwrap_or((&instruction, ""));
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "FROM" || stages.is_empty() {
                stages.push(Vec::new());
            }
            stages
                .last_mut()
                .unwrap()
                .push((keyword, args.trim().to_string()));
        }
        let manifest = files.read("Cargo.toml").expect("Cargo.toml");
        let rust_version = manifest
            .lines()
            .find_map(|l| l.trim().strip_prefix("rust-version"))
            .and_then(|rest| minor_version(rest.trim_start_matches([' ', '=', '"'])))
            .unwrap_or((1, 85));
        Dockerfile {
            stages,
            dockerignore: files.read(".dockerignore").unwrap_or_default(),
            rust_version,
        }
    }

    fn all(&self) -> impl Iterator<Item = &(String, String)> {
        self.stages.iter().flatten()
    }

    fn runtime(&self) -> &[(String, String)] {
        self.stages.last().map(Vec::as_slice).unwrap_or(&[])
    }

    fn in_runtime<'a>(&'a self, keyword: &'a str) -> impl Iterator<Item = &'a str> {
        self.runtime()
            .iter()
            .filter(move |(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
    }
}

fn rust_build_stage(f: &Dockerfile) -> Result<(), String> {
    let from = f
        .all()
        .find(|(k, a)| {
            k == "FROM" && image_parts(a.split_whitespace().next().unwrap_or("")).0 == "rust"
        })
        .map(|(_, a)| a.clone())
        .ok_or("no build stage FROM the official rust image")?;
    let image = from.split_whitespace().next().unwrap_or_default();
    let (_, tag, _) = image_parts(image);
    let version = tag
        .as_deref()
        .and_then(minor_version)
        .ok_or_else(|| format!("`{image}` is not pinned to a Rust version"))?;
    ensure(version >= f.rust_version, || {
        format!(
            "`{image}` is older than Cargo.toml's rust-version {}.{}",
            f.rust_version.0, f.rust_version.1
        )
    })?;
    ensure(f.stages.len() >= 2, || "not a multi-stage build".into())
}

fn runtime_not_root(f: &Dockerfile) -> Result<(), String> {
    let user = f.in_runtime("USER").last().map(str::to_string);
    let from = f.in_runtime("FROM").next().unwrap_or_default().to_string();
    let ok = match &user {
        Some(u) => {
            let name = u.split(':').next().unwrap_or_default();
            name != "root" && name != "0"
        }
        None => from.contains(":nonroot"),
    };
    ensure(ok, || format!("runtime stage FROM {from} runs as {user:?}"))
}

fn exec_form_healthcheck(f: &Dockerfile) -> Result<(), String> {
    let args = f
        .in_runtime("HEALTHCHECK")
        .last()
        .ok_or("no HEALTHCHECK in the runtime stage")?;
    let json = args
        .split_once("CMD")
        .map(|(_, rest)| rest.trim())
        .ok_or_else(|| format!("HEALTHCHECK {args} has no CMD"))?;
    let command: Vec<String> = serde_json::from_str(json)
        .map_err(|_| format!("HEALTHCHECK CMD {json} is not exec form (a JSON array)"))?;
    ensure(
        command.len() >= 2 && command[0].ends_with("/tv-ingress") && command[1] == "healthcheck",
        || format!("HEALTHCHECK runs {command:?}, expected [\".../tv-ingress\", \"healthcheck\"]"),
    )?;
    let copied = f
        .in_runtime("COPY")
        .any(|a| a.split_whitespace().last() == Some(command[0].as_str()));
    ensure(copied, || {
        format!("no COPY puts the binary at {}", command[0])
    })
}

fn exposes_8000(f: &Dockerfile) -> Result<(), String> {
    let exposed: Vec<&str> = f.in_runtime("EXPOSE").collect();
    ensure(
        exposed.iter().any(|a| {
            a.split_whitespace()
                .any(|p| p.trim_end_matches("/tcp") == "8000")
        }),
        || format!("EXPOSE {exposed:?} lacks 8000"),
    )
}

fn no_secret_in_image(f: &Dockerfile) -> Result<(), String> {
    for (keyword, args) in f.all() {
        ensure(
            !(matches!(keyword.as_str(), "ENV" | "ARG" | "LABEL")
                && args.contains("WEBHOOK_SECRET")),
            || format!("{keyword} {args} puts the secret in the image"),
        )?;
        ensure(
            !(matches!(keyword.as_str(), "COPY" | "ADD")
                && args
                    .split_whitespace()
                    .any(|a| a.trim_start_matches("./").starts_with(".env"))),
            || format!("{keyword} {args} copies a .env file"),
        )?;
    }
    Ok(())
}

fn dockerignore_excludes(f: &Dockerfile) -> Result<(), String> {
    let patterns: BTreeSet<&str> = f
        .dockerignore
        .lines()
        .map(|l| l.trim().trim_start_matches("/").trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let missing: Vec<&str> = ["target", ".env", ".git"]
        .into_iter()
        .filter(|p| !patterns.contains(p))
        .collect();
    ensure(missing.is_empty(), || {
        format!(".dockerignore does not exclude {missing:?}")
    })
}

const DOCKERFILE_CHECKS: &[Check<Dockerfile>] = &[
    (
        "multi-stage build from an official rust image no older than rust-version",
        rust_build_stage,
    ),
    (
        "the runtime stage runs as a non-root user",
        runtime_not_root,
    ),
    (
        "HEALTHCHECK is exec form and runs `tv-ingress healthcheck` where the binary is copied",
        exec_form_healthcheck,
    ),
    ("the runtime stage EXPOSEs 8000", exposes_8000),
    (
        "no WEBHOOK_SECRET or .env is baked into the image",
        no_secret_in_image,
    ),
    (
        ".dockerignore excludes target/, .env and .git",
        dockerignore_excludes,
    ),
];

#[test]
fn dockerfile_is_coherent() {
    run_checks("Dockerfile", &Dockerfile::repo(), DOCKERFILE_CHECKS);
}

// ---------------------------------------------------------------------------------------------
// The configs for a cluster on one host (nats/cluster/nats-*.conf) and the dev server

struct LocalCluster {
    nodes: Vec<(String, NodeConf)>,
    dev: NodeConf,
}

impl LocalCluster {
    fn repo() -> LocalCluster {
        let files = Files::default();
        let mut names: Vec<String> = std::fs::read_dir(root().join("nats/cluster"))
            .expect("nats/cluster")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("nats-") && n.ends_with(".conf"))
            .collect();
        names.sort();
        let nodes = names
            .into_iter()
            .map(|n| {
                let rel = format!("nats/cluster/{n}");
                let conf = read_node_conf(&files, &rel, &BTreeMap::new()).unwrap();
                (rel, conf)
            })
            .collect();
        let dev = read_node_conf(&files, "nats/nats-dev.conf", &BTreeMap::new()).unwrap();
        LocalCluster { nodes, dev }
    }
}

fn local_three_nodes(c: &LocalCluster) -> Result<(), String> {
    ensure(c.nodes.len() == 3, || {
        format!(
            "expected nats-1..3.conf, found {:?}",
            c.nodes.iter().map(|n| &n.0).collect::<Vec<_>>()
        )
    })
}

fn local_unique_server_names(c: &LocalCluster) -> Result<(), String> {
    let names: BTreeSet<Option<&String>> = c
        .nodes
        .iter()
        .map(|(_, n)| n.server_name.as_ref())
        .collect();
    ensure(
        names.len() == c.nodes.len() && !names.contains(&None),
        || format!("server_names not unique or missing: {names:?}"),
    )
}

fn local_one_cluster_name(c: &LocalCluster) -> Result<(), String> {
    let names: BTreeSet<Option<&String>> = c
        .nodes
        .iter()
        .map(|(_, n)| n.cluster_name.as_ref())
        .collect();
    ensure(names.len() == 1 && !names.contains(&None), || {
        format!("cluster names differ or are missing: {names:?}")
    })
}

fn local_distinct_ports(c: &LocalCluster) -> Result<(), String> {
    let mut ports = Vec::new();
    for (file, n) in &c.nodes {
        ports.push((n.client_port, format!("{file} client")));
        ports.push((
            n.cluster_port
                .ok_or_else(|| format!("{file}: no cluster port"))?,
            format!("{file} cluster"),
        ));
        ports.push((
            n.monitor_port
                .ok_or_else(|| format!("{file}: no monitoring port"))?,
            format!("{file} monitoring"),
        ));
    }
    let distinct: BTreeSet<u16> = ports.iter().map(|(p, _)| *p).collect();
    ensure(distinct.len() == ports.len(), || {
        format!("ports collide: {ports:?}")
    })
}

fn local_routes_to_all(c: &LocalCluster) -> Result<(), String> {
    let cluster_ports: BTreeSet<u16> = c.nodes.iter().filter_map(|(_, n)| n.cluster_port).collect();
    for (file, n) in &c.nodes {
        let mut reached = BTreeSet::new();
        for route in &n.routes {
            let (host, port) =
                url_host_port(route).ok_or_else(|| format!("{file}: bad route {route}"))?;
            ensure(
                matches!(host.as_str(), "127.0.0.1" | "localhost" | "::1"),
                || format!("{file}: route {route} leaves this host"),
            )?;
            reached.insert(port);
        }
        ensure(reached == cluster_ports, || {
            format!("{file} routes to ports {reached:?}, the nodes' cluster ports are {cluster_ports:?}")
        })?;
    }
    Ok(())
}

fn local_jetstream_separate_stores(c: &LocalCluster) -> Result<(), String> {
    let stores: BTreeSet<Option<&String>> =
        c.nodes.iter().map(|(_, n)| n.store_dir.as_ref()).collect();
    ensure(c.nodes.iter().all(|(_, n)| n.jetstream), || {
        "JetStream is off somewhere".into()
    })?;
    ensure(
        stores.len() == c.nodes.len() && !stores.contains(&None),
        || format!("store dirs missing or shared: {stores:?}"),
    )
}

fn dev_single_node(c: &LocalCluster) -> Result<(), String> {
    let d = &c.dev;
    ensure(d.jetstream && d.store_dir.is_some(), || {
        "nats-dev.conf: JetStream with a store_dir".into()
    })?;
    ensure(
        d.client_port == 4222 && d.monitor_port == Some(8222),
        || {
            format!(
                "nats-dev.conf: client {} / monitoring {:?}, expected 4222 / 8222",
                d.client_port, d.monitor_port
            )
        },
    )?;
    ensure(d.cluster_port.is_none() && d.routes.is_empty(), || {
        "nats-dev.conf must not cluster".into()
    })
}

const LOCAL_CHECKS: &[Check<LocalCluster>] = &[
    (
        "three node configs nats/cluster/nats-1..3.conf",
        local_three_nodes,
    ),
    ("unique server_names", local_unique_server_names),
    ("one common cluster name", local_one_cluster_name),
    (
        "client, cluster and monitoring ports all distinct",
        local_distinct_ports,
    ),
    (
        "every node routes to all three cluster ports on this host",
        local_routes_to_all,
    ),
    (
        "JetStream on every node, each with its own store_dir",
        local_jetstream_separate_stores,
    ),
    (
        "nats-dev.conf: one JetStream node on 4222, monitoring on 8222",
        dev_single_node,
    ),
];

#[test]
fn local_cluster_configs_are_coherent() {
    run_checks("nats/cluster", &LocalCluster::repo(), LOCAL_CHECKS);
}

// ---------------------------------------------------------------------------------------------
// nats-server itself, when one is at hand

fn nats_server_binary() -> Option<String> {
    let candidates = [
        std::env::var("NATS_SERVER_BIN").ok(),
        Some(
            root()
                .join("target/nats-server/nats-server")
                .to_string_lossy()
                .into_owned(),
        ),
        Some("nats-server".to_string()),
    ];
    candidates.into_iter().flatten().find(|bin| {
        Command::new(bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn nats_server_accepts_every_config() {
    let Some(bin) = nats_server_binary() else {
        eprintln!("skipped: no nats-server (NATS_SERVER_BIN, target/nats-server, PATH)");
        return;
    };
    let mut files = vec!["nats/nats-dev.conf".to_string()];
    for dir in ["nats/cluster", "nats/cluster/docker"] {
        let mut found: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.ends_with(".conf"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        found.sort();
        files.extend(found);
    }
    for file in &files {
        let out = Command::new(&bin)
            .current_dir(root())
            .args(["-t", "-c", file])
            .output()
            .expect("nats-server runs");
        assert!(
            out.status.success(),
            "nats-server -t -c {file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("ok    nats-server -t -c {file}");
    }
}

// ---------------------------------------------------------------------------------------------
// The parsers themselves

#[test]
fn parsers_read_what_the_files_may_contain() {
    let cases: Vec<(&str, bool)> = vec![
        (
            "url with user",
            url_host_port("nats://u:p@nats-1:4222") == Some(("nats-1".into(), 4222)),
        ),
        (
            "url default port",
            url_host_port("nats://nats-1") == Some(("nats-1".into(), 4222)),
        ),
        (
            "route default port",
            url_host_port("nats-route://n:6223") == Some(("n".into(), 6223)),
        ),
        (
            "image with registry",
            image_parts("docker.io/library/nats:2.10.1@sha256:ab")
                == (
                    "nats".into(),
                    Some("2.10.1".into()),
                    Some("sha256:ab".into()),
                ),
        ),
        (
            "registry with port",
            image_parts("reg:5000/nats") == ("nats".into(), None, None),
        ),
        (
            "tag with suffix",
            full_version("2.11.9-alpine3.22") == Some((2, 11, 9)),
        ),
        (
            "floating tag",
            full_version("2.11-alpine").is_none() && full_version("latest").is_none(),
        ),
        (
            "duration",
            duration_ms("1m30s") == Some(90_000) && duration_ms("30").is_none(),
        ),
        (
            "required interpolation",
            is_required_interpolation("${A:?x y}") && is_required_interpolation("${A}"),
        ),
        (
            "defaulted interpolation",
            !is_required_interpolation("${A:-x}") && !is_required_interpolation("x${A}"),
        ),
        (
            "conf syntax",
            parse_conf("a = 1 # c\nb: \"x y\" // c\nc { d: [ 'e', f ], g h }\n")
                == Ok(Conf::Map(vec![
                    ("a".into(), Conf::Str("1".into())),
                    ("b".into(), Conf::Str("x y".into())),
                    (
                        "c".into(),
                        Conf::Map(vec![
                            (
                                "d".into(),
                                Conf::List(vec![Conf::Str("e".into()), Conf::Str("f".into())]),
                            ),
                            ("g".into(), Conf::Str("h".into())),
                        ]),
                    ),
                ])),
        ),
    ];
    let failed: Vec<&str> = cases
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(d, _)| *d)
        .collect();
    assert!(failed.is_empty(), "parser cases failed: {failed:?}");
}
