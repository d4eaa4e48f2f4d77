//! The benchmark harness (`tv-ingress-bench suite`, README "Performance") runs end to end against a
//! real nats-server, one second per scenario, and reports sane figures. Nothing here asserts a
//! speed: the machine is shared and the benchmark is for `scripts/bench.sh`.

use serde_json::Value as Json;
use std::process::Command;

const BENCH: &str = env!("CARGO_BIN_EXE_tv-ingress-bench");
const RECEIVER: &str = env!("CARGO_BIN_EXE_tv-ingress");

#[test]
fn the_suite_runs_every_scheme_and_the_baselines_and_prints_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let scenarios = [
        "nats-1",
        "receiver-1",
        "reference-1",
        "receiver-64-hmac-header",
        "receiver-64-standard-webhooks",
        "receiver-64-token",
        "receiver-64-dup10",
    ];
    let out = Command::new(BENCH)
        .args(["suite", "--duration", "1", "--repeat", "1", "--warmup", "0"])
        .args(["--scenarios", &scenarios.join(",")])
        .args(["--receiver-bin", RECEIVER])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for name in scenarios {
        assert!(
            stdout.contains(&format!("| {name}")),
            "{name} not in\n{stdout}"
        );
    }
    assert!(stdout.contains("Latency at 1 connection"), "{stdout}");

    let report: Json = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let samples = report["samples"].as_array().unwrap();
    assert_eq!(samples.len(), scenarios.len());
    for s in samples {
        let name = s["scenario"].as_str().unwrap();
        let requests = s["requests"].as_u64().unwrap();
        assert!(requests > 0, "{name}: {s}");
        assert_eq!(s["errors"], 0, "{name}: {s}");
        let statuses = s["statuses"].as_object().unwrap();
        let count = |code: &str| statuses.get(code).and_then(Json::as_u64).unwrap_or(0);
        assert_eq!(
            statuses.values().filter_map(Json::as_u64).sum::<u64>(),
            requests
        );
        assert!(count("200") > 0, "{name}: {s}");
        if name.ends_with("dup10") {
            assert!(count("409") > 0, "{name}: duplicates answered 409: {s}");
            assert_eq!(count("200") + count("409"), requests, "{name}: {s}");
        } else {
            assert_eq!(count("200"), requests, "{name}: every signal accepted: {s}");
        }
        let latencies: Vec<f64> = ["p50_ms", "p90_ms", "p99_ms", "max_ms"]
            .iter()
            .map(|k| s[*k].as_f64().unwrap())
            .collect();
        assert!(latencies[0] > 0.0, "{name}: {s}");
        assert!(latencies.windows(2).all(|w| w[0] <= w[1]), "{name}: {s}");
        if !name.starts_with("nats") {
            assert!(s["server_cpu_us"].as_f64().is_some(), "{name}: {s}");
            assert!(
                s["server_rss_peak_mb"].as_f64().unwrap() > 1.0,
                "{name}: {s}"
            );
        }
    }
}

/// `scripts/experiments/without-nats.sh` patches the receiver for a one-off measurement; the
/// patch must keep applying to the code as it is, or the experiment silently stops being
/// reproducible.
#[test]
fn the_without_nats_experiment_patch_still_applies() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("git")
        .args([
            "apply",
            "--check",
            "scripts/experiments/answer-without-publishing.patch",
        ])
        .current_dir(root)
        .output()
        .expect("git is installed");
    assert!(
        out.status.success(),
        "the patch no longer applies to src/http/webhook.rs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
