//! The halt switch every replica obeys, the admin API, and the `tail` and `status` tools.

mod common;

use common::*;
use serde_json::{json, Value as Json};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tv_ingress::natsd::NatsServer;
use tv_ingress::SystemClock;

const ADMIN: &str = "admin-token-0123456789abcdefghijklmnop";
const BIN: &str = env!("CARGO_BIN_EXE_tv-ingress");

async fn admin_app(nats: &NatsServer) -> TestApp {
    let app = TestApp::start(
        config(&nats.url(), &[("ADMIN_TOKEN", ADMIN)]),
        Arc::new(SystemClock),
    )
    .await;
    app.wait_ready().await;
    app
}

async fn admin(app: &TestApp, method: &str, path: &str, body: Json) -> Response {
    let auth = format!("Bearer {ADMIN}");
    request(
        app.addr,
        method,
        path,
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        serde_json::to_vec(&body).unwrap().into(),
    )
    .await
}

/// Polls `/` until the replica reports `state`; returns how long it took.
async fn until_state(app: &TestApp, state: &str) -> Duration {
    let started = Instant::now();
    loop {
        let root = app.get("/").await;
        if root.body["halt"]["state"] == state {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "never became {state}: {}",
            root.text
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn kv_put(nats: &NatsServer, value: &str) {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let kv = js.get_key_value("tv_ingress_control").await.unwrap();
    kv.put("halt", value.to_owned().into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_halt_on_one_replica_stops_every_replica_within_a_second() {
    let nats = nats().await;
    let a = admin_app(&nats).await;
    let b = admin_app(&nats).await;
    assert_eq!(a.post_signed(&unique_signal(0)).await.status, 200);

    let r = admin(
        &a,
        "POST",
        "/admin/halt",
        json!({"reason": "FOMC at 14:00"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.body["by"],
        format!("admin:{}", tv_ingress::auth::fingerprint(ADMIN.as_bytes()))
    );
    let took = until_state(&b, "halted").await;
    println!("replica B obeyed the halt after {took:?}");
    assert!(took < Duration::from_secs(1), "{took:?}");

    for app in [&a, &b] {
        let r = app.post_signed(&unique_signal(1)).await;
        assert_eq!(r.status, 423, "{}", r.text);
        assert_eq!(r.error(), "halted");
        assert!(r.body["detail"].as_str().unwrap().contains("FOMC"));
        // A halted replica is healthy.
        assert_eq!(app.get("/ready").await.status, 200);
        assert_eq!(app.get("/ready").await.body["halt"]["state"], "halted");
    }
    // The metrics say so too.
    assert!(b
        .get("/metrics")
        .await
        .text
        .contains("\ntv_ingress_halted 1\n"));
    // Bad requests still get their own answer while halted.
    assert_eq!(b.post_raw("{", &[]).await.status, 400);

    // Resumed from outside, with the nats CLI's equivalent.
    kv_put(&nats, "false").await;
    let took = until_state(&a, "running").await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    until_state(&b, "running").await;
    assert_eq!(b.post_signed(&unique_signal(2)).await.status, 200);

    // Halted from outside with a JSON record.
    kv_put(&nats, r#"{"halted": true, "reason": "broker maintenance"}"#).await;
    until_state(&b, "halted").await;
    assert_eq!(b.post_signed(&unique_signal(3)).await.status, 423);

    let status = admin(&a, "GET", "/admin/status", json!(null)).await;
    assert_eq!(status.status, 200, "{}", status.text);
    assert_eq!(status.body["halt"]["state"], "halted");
    assert_eq!(status.body["halt"]["change"]["by"], "nats");
    let history: Vec<(String, String)> = status.body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let change = if h["state"] == "halted" {
                &h["change"]
            } else {
                &h["changed"]
            };
            (
                h["state"].as_str().unwrap().to_owned(),
                change["by"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let admin_by = format!("admin:{}", tv_ingress::auth::fingerprint(ADMIN.as_bytes()));
    assert_eq!(
        history,
        [
            ("halted".to_string(), "nats".to_string()),
            ("running".to_string(), "nats".to_string()),
            ("halted".to_string(), admin_by)
        ]
    );

    let r = admin(&b, "POST", "/admin/resume", json!({"reason": "done"})).await;
    assert_eq!(r.status, 200);
    until_state(&a, "running").await;
    // Only the signals accepted while running were published.
    let ids: Vec<String> = a
        .stream_messages()
        .await
        .iter()
        .map(signal_number)
        .collect();
    assert_eq!(ids, ["0", "2"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_needs_its_token_and_a_reason() {
    let nats = nats().await;
    let plain = TestApp::spawn(&nats.url()).await;
    assert_eq!(plain.get("/admin/status").await.status, 404);
    assert_eq!(
        admin(&plain, "POST", "/admin/halt", json!({"reason": "x"}))
            .await
            .status,
        404
    );

    let app = admin_app(&nats).await;
    let cases: &[(&str, &[(&str, &str)], u16, &str)] = &[
        ("no token", &[], 401, "unauthorized"),
        (
            "wrong token",
            &[(
                "authorization",
                "Bearer admin-token-0123456789abcdefghijklmnoX",
            )],
            401,
            "unauthorized",
        ),
        (
            "basic auth",
            &[("authorization", "Basic YWRtaW46YWRtaW4=")],
            401,
            "unauthorized",
        ),
    ];
    for (description, headers, status, code) in cases {
        let r = request(
            app.addr,
            "POST",
            "/admin/halt",
            headers,
            br#"{"reason":"x"}"#.to_vec().into(),
        )
        .await;
        assert_eq!(r.status, *status, "{description}");
        assert_eq!(r.error(), *code, "{description}");
        assert_eq!(r.headers["www-authenticate"], "Bearer", "{description}");
    }
    let r = admin(&app, "POST", "/admin/halt", json!({})).await;
    assert_eq!(r.status, 422);
    assert_eq!(r.body["errors"][0]["field"], "reason");
    let r = admin(&app, "GET", "/admin/halt", json!(null)).await;
    assert_eq!(r.status, 405);
    assert_eq!(app.get("/").await.body["halt"]["state"], "running");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_halt_bucket_starts_the_receiver_halted() {
    let nats = nats().await;
    // A stream in the bucket's place that is not a usable key-value bucket.
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KV_tv_ingress_control".into(),
        subjects: vec!["$KV.tv_ingress_control.>".into()],
        max_messages_per_subject: 0,
        ..Default::default()
    })
    .await
    .unwrap();

    let app = TestApp::start(config(&nats.url(), &[]), Arc::new(SystemClock)).await;
    until_state(&app, "halted").await;
    // A halted replica is healthy: ready once NATS and the stream are.
    app.wait_ready().await;
    let ready = app.get("/ready").await;
    assert!(
        ready.body["halt"]["change"]["reason"]
            .as_str()
            .unwrap()
            .contains("could not be read"),
        "{}",
        ready.text
    );
    let r = app.post_signed(&unique_signal(0)).await;
    assert_eq!(r.status, 423);
    assert!(app.stream_messages().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_halt_value_halts() {
    let nats = nats().await;
    let app = admin_app(&nats).await;
    kv_put(&nats, "perhaps").await;
    until_state(&app, "halted").await;
    assert_eq!(app.post_signed(&unique_signal(0)).await.status, 423);
}

fn cli(nats: &NatsServer, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .env_clear()
        .env("NATS_URL", nats.url())
        .args(args)
        .output()
        .unwrap()
}

fn lines(out: &std::process::Output) -> Vec<Json> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tail_replays_and_follows_without_consuming_anything() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;
    for ticker in ["AAPL", "BRK.B", "AAPL", "MSFT"] {
        let mut s = signal(ticker, "BUY", json!(1));
        s["order_id"] = json!(uuid::Uuid::new_v4().to_string());
        assert_eq!(app.post_signed(&s).await.status, 200);
    }

    let all = lines(&cli(&nats, &["tail", "--all", "--max", "4"]));
    let tickers: Vec<&str> = all
        .iter()
        .map(|l| l["signal"]["ticker"].as_str().unwrap())
        .collect();
    assert_eq!(tickers, ["AAPL", "BRK.B", "AAPL", "MSFT"]);
    assert_eq!(all[1]["subject"], "signals.BRK_2EB");
    assert_eq!(all[3]["stream_seq"], 4);

    let last = lines(&cli(&nats, &["tail", "--last", "2", "--max", "2"]));
    assert_eq!(
        last.iter()
            .map(|l| l["stream_seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [3, 4]
    );
    let aapl = lines(&cli(
        &nats,
        &["tail", "--last", "1", "--ticker", "AAPL", "--max", "1"],
    ));
    assert_eq!(aapl[0]["stream_seq"], 3);
    let brk = lines(&cli(
        &nats,
        &["tail", "--all", "--ticker", "BRK.B", "--max", "1"],
    ));
    assert_eq!(brk[0]["signal"]["ticker"], "BRK.B");
    let recent = lines(&cli(&nats, &["tail", "--since", "5m", "--max", "4"]));
    assert_eq!(recent.len(), 4);

    // From now: only what arrives after it started. It says on stderr when it is following.
    let mut follower = tokio::process::Command::new(BIN)
        .env_clear()
        .env("NATS_URL", nats.url())
        .args(["tail", "--max", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(follower.stderr.take().unwrap());
    let mut banner = String::new();
    use tokio::io::AsyncBufReadExt;
    tokio::time::timeout(Duration::from_secs(10), stderr.read_line(&mut banner))
        .await
        .expect("tail says it is following")
        .unwrap();
    assert!(banner.starts_with("tail: following signals.>"), "{banner}");
    let mut s = signal("NVDA", "SELL", json!(2));
    s["order_id"] = json!("fresh");
    assert_eq!(app.post_signed(&s).await.status, 200);
    let out = tokio::time::timeout(Duration::from_secs(10), follower.wait_with_output())
        .await
        .expect("tail exits after --max 1")
        .unwrap();
    let followed = lines(&out);
    assert_eq!(followed.len(), 1);
    assert_eq!(followed[0]["signal"]["ticker"], "NVDA");

    // Nothing was consumed or deleted.
    assert_eq!(app.stream_messages().await.len(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn status_summarizes_the_stream_and_the_halt_state() {
    let nats = nats().await;
    let app = admin_app(&nats).await;
    assert_eq!(app.post_signed(&unique_signal(0)).await.status, 200);
    assert_eq!(app.post_signed(&unique_signal(1)).await.status, 200);
    admin(&app, "POST", "/admin/halt", json!({"reason": "end of day"})).await;

    let out = cli(&nats, &["status", "--json"]);
    let status = &lines(&out)[0];
    assert_eq!(status["stream"], "SIGNALS");
    assert_eq!(status["messages"], 2);
    assert_eq!(status["first_seq"], 1);
    assert_eq!(status["last_seq"], 2);
    assert!(status["last_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(status["duplicate_window_s"], 120);
    assert_eq!(status["replicas"], 1);
    assert_eq!(status["halt"]["state"], "halted");
    assert_eq!(status["halt"]["change"]["reason"], "end of day");

    let out = cli(&nats, &["status"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("messages          2"), "{text}");
    assert!(text.contains("HALTED since"), "{text}");
    assert!(text.contains("end of day"), "{text}");
}
