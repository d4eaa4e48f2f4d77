//! The real binary: configuration errors, `sign` output accepted by `serve`, JSON logs of a
//! whole run that never contain the secret or a signature, and a clean exit on SIGTERM.

mod common;

use common::*;
use serde_json::Value as Json;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tv_ingress::natsd::{free_port, http_status};

const BIN: &str = env!("CARGO_BIN_EXE_tv-ingress");

fn command(dir: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    c
}

#[test]
fn bad_configuration_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("no secret", &[], "WEBHOOK_SECRET: is required"),
        (
            "short secret",
            &[("WEBHOOK_SECRET", "tooshort-secret")],
            "WEBHOOK_SECRET: must be at least 32",
        ),
        (
            "bad tolerance",
            &[
                ("WEBHOOK_SECRET", SECRET),
                ("WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS", "abc"),
            ],
            "WEBHOOK_TIMESTAMP_TOLERANCE_SECONDS: must be a whole number",
        ),
        (
            "bad bind address",
            &[("WEBHOOK_SECRET", SECRET), ("BIND_ADDR", "localhost")],
            "BIND_ADDR:",
        ),
    ];
    for (description, env, expected) in cases {
        let out = command(dir.path())
            .envs(env.iter().copied())
            .arg("serve")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{description}: {stderr}");
        assert!(stderr.contains(expected), "{description}: {stderr}");
        assert!(
            !stderr.contains("tooshort-secret"),
            "{description}: secret echoed"
        );
    }
    // A flag names its variable too.
    let out = command(dir.path())
        .env("WEBHOOK_SECRET", SECRET)
        .args(["serve", "--max-body-bytes", "1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("MAX_BODY_BYTES: must be between"));
}

/// The output of `tv-ingress sign` with the given arguments.
fn sign(dir: &Path, args: &[&str]) -> String {
    let out = command(dir).arg("sign").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_run_logs_json_without_secrets_and_exits_cleanly_on_sigterm() {
    let mut nats = nats().await;
    let dir = tempfile::tempdir().unwrap();
    // The secret comes from .env in the working directory.
    std::fs::write(
        dir.path().join(".env"),
        format!("WEBHOOK_SECRET={SECRET}\n"),
    )
    .unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = tokio::process::Command::from(command(dir.path()))
        .args(["serve", "--log-level", "trace", "--nats-url", &nats.url()])
        .env("BIND_ADDR", addr.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http_status(addr, "/ready").await != Some(200) {
        assert!(tokio::time::Instant::now() < deadline, "binary not ready");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    let mut signatures = Vec::new();
    // In-body scheme, as printed by `sign`.
    let body = sign(
        dir.path(),
        &["--ticker", "AAPL", "--action", "buy", "--quantity", "10"],
    );
    let parsed: Json = serde_json::from_str(&body).unwrap();
    signatures.push(parsed["signature"].as_str().unwrap().to_owned());
    let r = request(
        addr,
        "POST",
        "/webhook",
        &[],
        body.trim_end().to_owned().into(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The same again: duplicate.
    let r = request(
        addr,
        "POST",
        "/webhook",
        &[],
        body.trim_end().to_owned().into(),
    )
    .await;
    assert_eq!(r.status, 409);
    // Header scheme, as printed by `sign --header`.
    let printed = sign(
        dir.path(),
        &["--ticker", "BRK.B", "--quantity", "0.5", "--header"],
    );
    let (body, header) = printed.trim_end().split_once('\n').unwrap();
    let signature = header.strip_prefix("X-Signature: ").unwrap();
    signatures.push(signature.trim_start_matches("sha256=").to_owned());
    let r = request(
        addr,
        "POST",
        "/webhook",
        &[("x-signature", signature)],
        body.to_owned().into(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A wrong signature, a schema error after a valid signature, and an outage.
    let mut wrong: Json =
        serde_json::from_str(&sign(dir.path(), &["--ticker", "X", "--quantity", "1"])).unwrap();
    let guessed = "ab".repeat(32);
    wrong["signature"] = Json::String(guessed.clone());
    signatures.push(guessed);
    let r = request(
        addr,
        "POST",
        "/webhook",
        &[],
        serde_json::to_vec(&wrong).unwrap().into(),
    )
    .await;
    assert_eq!(r.status, 401);
    let bad_schema = sign(dir.path(), &["--ticker", "X", "--quantity=-3"]);
    signatures.push(
        serde_json::from_str::<Json>(&bad_schema).unwrap()["signature"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let r = request(
        addr,
        "POST",
        "/webhook",
        &[],
        bad_schema.trim_end().to_owned().into(),
    )
    .await;
    assert_eq!(r.status, 422);
    nats.kill().await;
    let outage = sign(dir.path(), &["--ticker", "MSFT", "--quantity", "1"]);
    let r = request(
        addr,
        "POST",
        "/webhook",
        &[],
        outage.trim_end().to_owned().into(),
    )
    .await;
    assert_eq!(r.status, 503);
    nats.restart().await.unwrap();

    // SIGTERM: clean exit.
    let pid = child.id().unwrap();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .await
        .unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();

    for secret in std::iter::once(SECRET.to_owned()).chain(signatures) {
        assert!(
            !stdout.contains(&secret),
            "stdout contains a secret or signature: {secret}"
        );
        assert!(
            !stderr.contains(&secret),
            "stderr contains a secret or signature: {secret}"
        );
    }
    let events: Vec<Json> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let requests: Vec<&Json> = events
        .iter()
        .filter(|e| e["message"] == "request" && e["path"] == "/webhook")
        .collect();
    let outcomes: Vec<&str> = requests
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes,
        [
            "accepted",
            "duplicate",
            "accepted",
            "invalid_signature",
            "invalid_payload",
            "unavailable"
        ]
    );
    for e in &requests {
        for field in [
            "timestamp",
            "level",
            "correlation_id",
            "status",
            "latency_ms",
        ] {
            assert!(!e[field].is_null(), "{field} missing in {e}");
        }
    }
    let accepted = requests[0];
    assert_eq!(accepted["ticker"], "AAPL");
    assert_eq!(accepted["action"], "BUY");
    assert_eq!(accepted["quantity"], "10");
    assert_eq!(accepted["idempotency_key"].as_str().unwrap().len(), 32);
    assert_eq!(accepted["level"], "INFO");
    assert_eq!(accepted["auth_scheme"], "hmac-body");
    assert_eq!(
        accepted["auth_key"],
        tv_ingress::auth::fingerprint(SECRET.as_bytes())
    );
    assert_eq!(accepted["client_ip"], "127.0.0.1");
    assert_eq!(requests[2]["auth_scheme"], "hmac-header");
    assert_eq!(requests[5]["level"], "WARN");
    assert!(events
        .iter()
        .any(|e| e["message"] == "NATS connection drained" || e["message"] == "stopped"));
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_curl_prints_a_command_that_works() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{}/webhook", app.addr);
    let script = command(dir.path())
        .env("WEBHOOK_SECRET", SECRET)
        .args([
            "sign",
            "--ticker",
            "ES1!",
            "--action",
            "sell",
            "--quantity",
            "2",
            "--curl",
            &url,
        ])
        .output()
        .unwrap();
    let script = String::from_utf8(script.stdout).unwrap();
    assert!(script.starts_with("curl "), "{script}");
    if Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok()
    {
        let out = Command::new("sh").args(["-c", &script]).output().unwrap();
        let answer: Json = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(answer["status"], "accepted", "{answer}");
    }
    // Also through a JSON file on stdin.
    let mut child = command(dir.path())
        .env("WEBHOOK_SECRET", SECRET)
        .args(["sign", "--file", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(br#"{"ticker": "NVDA", "action": "BUY", "quantity": 3, "order_type": "MARKET"}"#)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let r = app.post_raw(out.stdout, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let tickers: Vec<String> = app
        .stream_messages()
        .await
        .iter()
        .map(|m| m.body["ticker"].as_str().unwrap().to_owned())
        .collect();
    assert!(tickers.contains(&"NVDA".to_string()), "{tickers:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_starts_its_own_nats_and_prints_a_working_sign_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = command(dir.path());
    if let Ok(bin) = std::env::var("NATS_SERVER_BIN") {
        cmd.env("NATS_SERVER_BIN", bin);
    }
    // Nothing listens on this NATS port, so dev must start its own server.
    let mut child = tokio::process::Command::from(cmd)
        .args(["dev", "--bind-addr", &addr.to_string()])
        .env("NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let secret = loop {
        use tokio::io::AsyncBufReadExt;
        line.clear();
        let n = tokio::time::timeout(Duration::from_secs(30), stderr.read_line(&mut line))
            .await
            .expect("dev prints its banner")
            .unwrap();
        assert!(n > 0, "dev exited early");
        if let Some(rest) = line.trim().strip_prefix("WEBHOOK_SECRET=") {
            assert!(rest.contains("sign --ticker AAPL"), "{line}");
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while http_status(addr, "/ready").await != Some(200) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dev receiver not ready"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let out = command(dir.path())
        .env("WEBHOOK_SECRET", &secret)
        .args([
            "sign",
            "--ticker",
            "AAPL",
            "--action",
            "buy",
            "--quantity",
            "10",
        ])
        .output()
        .unwrap();
    let r = request(addr, "POST", "/webhook", &[], out.stdout.into()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let pid = child.id().unwrap();
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn enabling_the_token_scheme_warns_what_it_means_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::from(command(dir.path()))
        .arg("serve")
        .env("AUTH_SCHEMES", "token")
        .env("WEBHOOK_TOKEN", "tradingview-token-0123456789abcdefXYZ")
        .env("BIND_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap());
    let mut warnings = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while warnings.len() < 2 {
        use tokio::io::AsyncBufReadExt;
        let mut line = String::new();
        let n = tokio::time::timeout_at(deadline, stdout.read_line(&mut line))
            .await
            .expect("the warnings arrive")
            .unwrap();
        assert!(n > 0, "exited early");
        let event: Json = serde_json::from_str(&line).unwrap();
        if event["level"] == "WARN"
            && event["message"]
                .as_str()
                .unwrap()
                .contains("token scheme enabled")
        {
            warnings.push(event["message"].as_str().unwrap().to_owned());
        }
    }
    assert!(
        warnings[0].contains("anyone who can read the alert text"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("without ALLOWED_SOURCES"),
        "{warnings:?}"
    );
    assert!(!warnings
        .concat()
        .contains("tradingview-token-0123456789abcdefXYZ"));
}
