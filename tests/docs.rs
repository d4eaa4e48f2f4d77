//! `/openapi.json` and Swagger UI at `/docs`, rendered by a real headless Chromium.

mod common;

use common::*;
use std::process::Command;

fn chromium() -> Option<String> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|bin| {
            Command::new(bin)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread")]
async fn swagger_ui_lists_the_webhook_operation_in_a_real_browser() {
    let nats = nats().await;
    let app = TestApp::spawn(&nats.url()).await;

    let spec = app.get("/openapi.json").await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.body["openapi"], "3.1.0");
    assert!(spec.body["paths"]["/webhook"]["post"].is_object());
    let page = app.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("/docs/swagger-ui-bundle.js"));
    assert!(page.headers["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("default-src 'self'"));
    for asset in [
        "/docs/swagger-ui-bundle.js",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
    ] {
        let r = app.get(asset).await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.text.len() > 100, "{asset}");
    }

    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("TV_INGRESS_REQUIRE_CHROMIUM").is_none(),
            "TV_INGRESS_REQUIRE_CHROMIUM is set but no chromium was found"
        );
        eprintln!("NOTE: chromium not installed; the browser half of this test did not run (CI installs it: apt-get install chromium)");
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("http://{}/docs", app.addr);
    let dom = tokio::task::spawn_blocking(move || {
        Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=10000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--dump-dom", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let html = String::from_utf8_lossy(&dom.stdout);
    assert!(
        html.contains(r#"data-path="/webhook""#),
        "Swagger UI did not render the webhook operation:\n{}\n{}",
        &html[..html.len().min(2000)],
        String::from_utf8_lossy(&dom.stderr)
    );
    assert!(
        html.contains("opblock-post"),
        "the webhook operation is a POST"
    );
    assert!(html.contains(r#"data-path="/admin/halt""#));
}
