//! The consoles in a real browser, headless Chromium (Debian's `chromium`,
//! installed by the test command):
//! * GraphiQL at `/`, driven by `devstack/console/browser-test.mjs`
//!   (playwright-core): a query typed with a completion accepted, run as two
//!   identities, inline validation, the live panel; screenshot at
//!   `target/artifacts/console.png`;
//! * the basic console at `/basic` (no npm packages): a linked query run,
//!   the result pane read from the DOM; screenshot at `target/artifacts/playground.png`.

mod support;

use std::path::PathBuf;
use std::process::Command;

use devstack::stack::StackOptions;
use serde_json::Value;

fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if std::path::Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    panic!("Chromium is not installed: scripts/test installs Debian's chromium package");
}

/// Chromium as root on a machine with no outside network: no sandbox, and no
/// background connections (refused here, many at a time).
const CHROMIUM_FLAGS: [&str; 7] = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// Runs headless Chromium on `url` with `extra` flags; returns its stdout.
fn headless(url: &str, extra: &[&str]) -> String {
    let profile = std::env::temp_dir().join(format!("playground-chromium-{}", std::process::id()));
    let output = Command::new(chromium())
        .arg("--headless")
        .args(CHROMIUM_FLAGS)
        .args(["--window-size=1400,900", "--virtual-time-budget=15000"])
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
async fn the_basic_console_runs_a_query_and_shows_the_result() {
    let playground = support::start(StackOptions::default(), 10).await;
    let query = "query($s: ID!) { getAssessments(studentId: $s, limit: 2) { items { id studentId benchmarkBand } nextToken } }";
    let url = format!(
        "{}/basic?query={}&variables={}&run=1",
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_completes_validates_runs_as_each_identity_and_shows_the_lifecycle() {
    devstack::console::ensure_installed().expect("the console's npm packages");
    let playground = support::start_traced(StackOptions::default(), 10).await;
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let shot = artifacts.join("console.png");
    let _ = std::fs::remove_file(&shot);
    let script = devstack::console::dir().join("browser-test.mjs");
    let (url, shot_arg) = (playground.url.clone(), shot.clone());
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg(script)
            .arg(url)
            .arg(shot_arg)
            .env("CHROMIUM", chromium())
            .env("CHROMIUM_FLAGS", CHROMIUM_FLAGS.join(" "))
            .output()
            .expect("run node")
    })
    .await
    .expect("task");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let seen: Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| {
            panic!(
                "no report from the browser: {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(
        output.status.success() && seen.get("error").is_none(),
        "{seen:#}"
    );
    assert_eq!(seen["consoleErrors"], serde_json::json!([]), "{seen:#}");

    // Typing "{ getAs" offered the field; Enter accepted it.
    assert!(
        seen["completions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|h| h == "getAssessments")),
        "{seen:#}"
    );
    assert_eq!(seen["afterCompletion"], "{ getAssessments}", "{seen:#}");

    // As a teacher of school A, stu-0001 (school A): two scored items.
    let page = &seen["asTeacherA"]["data"]["getAssessments"];
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{seen:#}");
    assert!(items.iter().all(|i| i["benchmarkBand"].is_string()));
    assert!(page["nextToken"].is_string());
    // As a teacher of school B: refused, the field null beside its error.
    let refused = &seen["asTeacherB"];
    assert_eq!(refused["data"]["getAssessments"], Value::Null, "{seen:#}");
    assert_eq!(refused["errors"][0]["errorType"], "Unauthorized");

    // The panel after the run: no handle alive, the pool idle, the last
    // invocation's time per dependency.
    let panel = &seen["panel"];
    assert_eq!(panel["panel-live-handles"], "0", "{seen:#}");
    assert_eq!(panel["panel-violations"], "0");
    assert_eq!(panel["panel-crashes"], "0 / 0");
    assert!(
        panel["panel-pool"]
            .as_str()
            .is_some_and(|p| p.starts_with("0 / ") && p.ends_with(" / 4")),
        "{seen:#}"
    );
    for key in [
        "panel-last-total",
        "panel-last-dynamodb",
        "panel-last-sql",
        "panel-last-legacy",
    ] {
        assert!(
            panel[key].as_str().is_some_and(|t| t.ends_with(" ms")),
            "{key}: {seen:#}"
        );
    }
    assert_eq!(panel["panel-last-items"], "1 / 0");
    // The trace, in order: a school's teacher waits for the profile before
    // the page. Each row a span and its duration.
    let rows = seen["trace"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "assessments-resolver (playground)",
            "DynamoDB (GetItem)",
            "SQL Server",
            "SQL Server connection",
            "legacy component"
        ],
        "{seen:#}"
    );
    assert!(
        rows.iter()
            .all(|r| r["time"].as_str().is_some_and(|t| t.ends_with(" ms"))),
        "{seen:#}"
    );

    // Links carry the query and the identity; validation marks the editor.
    let link = seen["link"].as_str().unwrap_or_default();
    assert!(
        link.contains("identity=teacher-a") && link.contains("query=%7B+getAssessments"),
        "{link}"
    );
    assert!(
        seen["linkAfterIdentity"]
            .as_str()
            .is_some_and(|l| l.contains("identity=teacher-b"))
    );
    assert!(seen["lintMarks"].as_u64() >= Some(1), "{seen:#}");

    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "a screenshot was written ({size} bytes)");
    println!("console screenshot: {}", shot.display());
    playground.assert_clean().await;
}
