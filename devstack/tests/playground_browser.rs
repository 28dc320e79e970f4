//! The console in a real browser: headless Chromium (Debian's `chromium`,
//! installed by the test command) loads a query into the page, runs it, and
//! the result pane shows the data. A screenshot is kept as an artifact at
//! `target/artifacts/playground.png`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use devstack::stack::StackOptions;

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("Chromium is not installed: scripts/test installs Debian's chromium package");
}

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("playground-chromium-{}", std::process::id()));
    let output = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1400,900",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("run chromium");
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        output.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_a_query_and_shows_the_result() {
    let playground = support::start(StackOptions::default(), 10).await;
    let query = "query($s: ID!) { getAssessments(studentId: $s, limit: 2) { items { id studentId benchmarkBand } nextToken } }";
    let url = format!(
        "{}/?query={}&variables={}&run=1",
        playground.url,
        encode(query),
        encode(r#"{"s": "stu-0001"}"#)
    );
    let url_for_browser = url.clone();
    let dom = tokio::task::spawn_blocking(move || headless(&url_for_browser, &["--dump-dom"]))
        .await
        .expect("task");
    let result = dom
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .expect("the result pane");
    assert!(
        result.contains("\"studentId\": \"stu-0001\""),
        "result pane: {result}"
    );
    assert!(result.contains("\"nextToken\""), "result pane: {result}");

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("playground.png");
    let _ = std::fs::remove_file(&shot);
    let flag = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || headless(&url, &[&flag]))
        .await
        .expect("task");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "a screenshot was written ({size} bytes)");
    playground.assert_clean().await;
}
