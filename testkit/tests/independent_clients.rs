//! SQL Server clients written outside this project against the local TDS
//! server, each as an application would use it, over TLS (the server's CA
//! trusted) and in plaintext: Microsoft's Rust driver `mssql-tds` (0.3.0,
//! the probe crate in `tests/clients/mssql-tds-probe`, also in TDS 8.0's
//! strict mode), pymssql (FreeTDS inside, with its defaults) and tedious
//! (the driver under Node's `mssql`). Each logs in, runs `SELECT 1`, the
//! resolver's page query with parameters (as an RPC where the client makes
//! one), a second statement on the same connection, a connection reset, a
//! statement error and the statement after it, and a login with a wrong
//! password. The test fails if any client fails a step; it does not skip a
//! missing client: `scripts/test` installs them all (npm, PyPI, cargo).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use testkit::fixtures::Fixtures;
use testkit::tds::tls::Encryption;
use testkit::tds::{TdsServer, TdsServerConfig};

const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
const PAGE_SQL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../infra/sql/queries/assessments_page.sql"
);
const STUDENT: &str = "stu-0001";

/// How a client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transport {
    /// TLS after PRELOGIN, the certificate checked against the server's CA.
    Tls,
    /// TDS 8.0: TLS before anything else (mssql-tds's default).
    Strict,
    /// No TLS at all (a server without a certificate).
    Plaintext,
}

async fn start(transport: Transport) -> TdsServer {
    let encryption = match transport {
        Transport::Plaintext => Encryption::NotSupported,
        _ => Encryption::Required,
    };
    TdsServer::start(TdsServerConfig {
        encryption,
        ..TdsServerConfig::default()
    })
    .await
    .expect("TDS server starts")
}

fn ca(server: &TdsServer) -> String {
    server
        .ca_pem()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

/// Runs a client (blocking: call it off the runtime) and reads its JSON line.
fn run(mut command: Command, what: &str) -> Value {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what} runs: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{what} failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim().lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{what} printed one JSON line ({e}): {stdout}"))
}

fn mssql_tds(addr: SocketAddr, transport: Transport, ca: &str) -> Value {
    // Built by scripts/test beside this test's binary (target/<profile>/).
    let exe: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.parent()?.join("mssql-tds-probe")))
        .expect("the test binary's directory");
    assert!(
        exe.is_file(),
        "{} is missing: `cargo build -p mssql-tds-probe` (scripts/test does)",
        exe.display()
    );
    let mode = match transport {
        Transport::Strict => "strict",
        Transport::Tls => "on",
        Transport::Plaintext => "off",
    };
    let mut command = Command::new(exe);
    command
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .args([
            "resolver",
            "local-only-Passw0rd",
            "Assessments",
            mode,
            STUDENT,
            PAGE_SQL,
        ]);
    if transport != Transport::Plaintext {
        // OpenSSL's trust store for this process: the server's CA only.
        command
            .env("SSL_CERT_FILE", ca)
            .env("SSL_CERT_DIR", "/nonexistent");
    }
    run(command, "mssql-tds-probe")
}

fn pymssql(addr: SocketAddr, transport: Transport, ca: &str) -> Value {
    pymssql_at(addr, transport, ca, None)
}

/// pymssql speaking `version` (FreeTDS's `tds_version`), or its default.
fn pymssql_at(addr: SocketAddr, transport: Transport, ca: &str, version: Option<&str>) -> Value {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        python.is_file(),
        "{} is missing: scripts/python-tools installs pymssql there (scripts/test runs it)",
        python.display()
    );
    let mut command = Command::new(python);
    command
        .current_dir(CLIENTS)
        .arg("pymssql-client.py")
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .args(["resolver", "local-only-Passw0rd", "Assessments"])
        .arg(if transport == Transport::Plaintext {
            "-"
        } else {
            ca
        })
        .args([STUDENT, PAGE_SQL])
        .args(version);
    run(command, "pymssql client")
}

fn tedious(addr: SocketAddr, ca: &str) -> Value {
    assert!(
        Path::new(CLIENTS).join("node_modules/tedious").is_dir(),
        "tedious is not installed: run `npm ci` in testkit/tests/clients (scripts/test does)"
    );
    let mut command = Command::new("node");
    command
        .current_dir(CLIENTS)
        .arg("tedious-client.mjs")
        .args([&addr.ip().to_string(), &addr.port().to_string()])
        .args([
            "resolver",
            "local-only-Passw0rd",
            "Assessments",
            ca,
            STUDENT,
        ]);
    run(command, "tedious client")
}

/// The page every client must read: the student's four newest assessments.
fn expected_page() -> Vec<i64> {
    let fixtures = Fixtures::demo();
    let mut rows: Vec<_> = fixtures
        .assessments
        .iter()
        .filter(|a| a.student_id == STUDENT)
        .collect();
    rows.sort_by(|x, y| {
        (y.administered_at, y.assessment_id).cmp(&(x.administered_at, x.assessment_id))
    });
    rows.iter().take(4).map(|a| a.assessment_id).collect()
}

/// Every step a client reports, as every client reports it.
fn assert_steps(client: &str, seen: &Value, server: &TdsServer) {
    assert!(seen.get("error").is_none(), "{client}: {seen}");
    assert_eq!(seen["select1"], json!(1), "{client}: SELECT 1: {seen}");
    let page: Vec<i64> = seen["page"]
        .as_array()
        .unwrap_or_else(|| panic!("{client}: no page: {seen}"))
        .iter()
        .filter_map(|id| id.as_i64().or_else(|| id.as_str()?.parse().ok()))
        .collect();
    assert_eq!(page, expected_page(), "{client}: the page query: {seen}");
    assert_eq!(
        seen["second"],
        json!("Assessments"),
        "{client}: second statement: {seen}"
    );
    assert_eq!(
        seen["afterReset"],
        json!(1),
        "{client}: after the reset: {seen}"
    );
    assert_eq!(
        seen["statementError"],
        json!(208),
        "{client}: the error: {seen}"
    );
    assert_eq!(
        seen["recovered"],
        json!(2),
        "{client}: after the error: {seen}"
    );
    assert_eq!(
        seen["wrongPassword"],
        json!(18456),
        "{client}: wrong password: {seen}"
    );
    let stats = server.stats();
    assert!(
        stats.resets >= 1,
        "{client}: the reset reached the server: {stats:?}"
    );
    assert!(stats.logins_rejected >= 1, "{client}: {stats:?}");
}

async fn each_transport(
    client: &str,
    transports: &[Transport],
    drive: fn(SocketAddr, Transport, &str) -> Value,
) {
    for &transport in transports {
        let server = start(transport).await;
        let (addr, ca) = (server.addr(), ca(&server));
        let seen = tokio::task::spawn_blocking(move || drive(addr, transport, &ca))
            .await
            .expect("client task");
        let what = format!("{client} over {transport:?}");
        assert_steps(&what, &seen, &server);
        let stats = server.stats();
        match transport {
            Transport::Plaintext => assert_eq!(stats.tls_handshakes, 0, "{what}: {stats:?}"),
            Transport::Strict => assert!(stats.tds8_sessions >= 1, "{what}: {stats:?}"),
            Transport::Tls => assert!(
                stats.tls_handshakes >= 1 && stats.tds8_sessions == 0,
                "{what}: {stats:?}"
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mssql_tds_passes_every_step_strict_tls_and_plaintext() {
    each_transport(
        "mssql-tds",
        &[Transport::Strict, Transport::Tls, Transport::Plaintext],
        mssql_tds,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymssql_passes_every_step_over_tls_and_plaintext() {
    each_transport("pymssql", &[Transport::Tls, Transport::Plaintext], pymssql).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freetds_passes_every_step_at_each_tds_version_the_server_negotiates() {
    for version in ["7.1", "7.2", "7.3", "7.4"] {
        let server = start(Transport::Tls).await;
        let (addr, ca) = (server.addr(), ca(&server));
        let seen = tokio::task::spawn_blocking(move || {
            pymssql_at(addr, Transport::Tls, &ca, Some(version))
        })
        .await
        .expect("client task");
        let what = format!("pymssql at TDS {version}");
        assert_steps(&what, &seen, &server);
        // The version LOGINACK reported is the one the client asked for.
        let reported = seen["tdsVersion"].as_f64().unwrap_or_default();
        assert_eq!(format!("{reported:.1}"), version, "{what}: {seen}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tedious_passes_every_step_over_tls_and_plaintext() {
    each_transport(
        "tedious",
        &[Transport::Tls, Transport::Plaintext],
        |addr, transport, ca| {
            tedious(
                addr,
                if transport == Transport::Plaintext {
                    "plain"
                } else {
                    ca
                },
            )
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tedious_sends_its_own_statements_and_the_page_query_as_rpc() {
    let server = start(Transport::Tls).await;
    let (addr, ca) = (server.addr(), ca(&server));
    let seen = tokio::task::spawn_blocking(move || tedious(addr, &ca))
        .await
        .expect("client task");
    assert_eq!(seen["validation"], json!({"": 1}), "{seen}");
    assert_eq!(seen["batch"], json!({"ok": 1}), "{seen}");
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
    assert_eq!(page_query.kind, "sp_executesql");
    assert_eq!(
        page_query.param("@P2"),
        Some(&testkit::tds::wire::Value::String(STUDENT.into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tedious_refuses_the_certificate_without_the_local_ca() {
    let server = start(Transport::Tls).await;
    let addr = server.addr();
    let seen = tokio::task::spawn_blocking(move || tedious(addr, "-"))
        .await
        .expect("client task");
    let message = seen["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("certificate"), "{seen}");
    assert_eq!(server.stats().logins_ok, 0);
}
