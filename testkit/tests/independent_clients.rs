//! An independent SQL Server client against the local TDS server: tedious
//! (the Node driver under `mssql`, `testkit/tests/clients/`), over TLS with the
//! server's CA trusted, sends what it sends on its own (its session `SET`
//! batch, `SELECT 1;` as RPC, a reset between users) and the resolver's page
//! query with parameters. Fails if the client cannot do any of it; needs
//! `npm ci` in `testkit/tests/clients` (scripts/test runs it).

use std::path::Path;
use std::process::Command;

use std::net::SocketAddr;

use serde_json::Value;
use testkit::tds::TdsServer;

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");

/// Runs the client against the server at `addr` (blocking: call it off the runtime).
fn tedious(addr: SocketAddr, ca: &str, student: &str) -> Value {
    assert!(
        Path::new(CLIENTS).join("node_modules/tedious").is_dir(),
        "tedious is not installed: run `npm ci` in testkit/tests/clients (scripts/test does)"
    );
    let output = Command::new("node")
        .current_dir(CLIENTS)
        .arg("tedious-client.mjs")
        .args([
            addr.ip().to_string(),
            addr.port().to_string(),
            "resolver".to_owned(),
            "local-only-Passw0rd".to_owned(),
            "Assessments".to_owned(),
            ca.to_owned(),
            student.to_owned(),
        ])
        .output()
        .expect("node runs (scripts/test installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "tedious client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tedious_logs_in_over_tls_and_reads_the_page_with_parameters() {
    let server = start_tds_server().await;
    let ca = server
        .ca_pem()
        .expect("TLS by default")
        .display()
        .to_string();
    let addr = server.addr();
    let seen = tokio::task::spawn_blocking(move || tedious(addr, &ca, "stu-0001"))
        .await
        .expect("client task");
    assert!(seen.get("error").is_none(), "{seen}");
    assert_eq!(seen["validation"], serde_json::json!({"": 1}), "{seen}");
    assert_eq!(seen["batch"], serde_json::json!({"ok": 1}), "{seen}");
    let page = seen["page"].as_array().expect("rows");
    assert_eq!(page.len(), 4, "{seen}");
    assert!(page.iter().all(|r| r["studentId"] == "stu-0001"), "{seen}");
    assert_eq!(seen["afterReset"], 1, "{seen}");

    let stats = server.stats();
    assert_eq!(
        stats.tls_handshakes, 1,
        "one connection, encrypted: {stats:?}"
    );
    assert!(stats.resets >= 1, "the reset arrived: {stats:?}");
    // After the reset tedious sent its session batch again: its settings, not the SET before.
    let settings = server.session_settings();
    assert_eq!(settings.get("textsize"), Some("2147483647"), "{settings:?}");
    assert_eq!(
        settings.get("transaction isolation level"),
        Some("read committed")
    );
    // The page query arrived as the resolver sends it: the same text, typed parameters.
    let page_query = server
        .recorded()
        .into_iter()
        .find(|s| s.text == testkit::tds::catalog::ASSESSMENTS_PAGE_SQL)
        .expect("the page query");
    assert_eq!(
        page_query.param("@P2"),
        Some(&testkit::tds::wire::Value::String("stu-0001".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tedious_refuses_the_certificate_without_the_local_ca() {
    let server = start_tds_server().await;
    let addr = server.addr();
    let seen = tokio::task::spawn_blocking(move || tedious(addr, "-", "stu-0001"))
        .await
        .expect("client task");
    let message = seen["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("certificate"), "{seen}");
    assert_eq!(server.stats().logins_ok, 0);
}

async fn start_tds_server() -> TdsServer {
    TdsServer::start(testkit::tds::TdsServerConfig::default())
        .await
        .expect("TDS server starts")
}
