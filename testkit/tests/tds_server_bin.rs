//! The `tds-server` binary runs on its own, prints a usable connection string
//! and answers the TDS handshake on the port it names.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use testkit::tds::request::{parse_prelogin, prelogin_response};
use testkit::tds::tls::ENCRYPT_ON;
use testkit::tds::wire::{PKT_PRELOGIN, PKT_REPLY, read_message, write_message};

/// Kills the server however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_on_the_port_its_connection_string_names() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tds-server"))
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tds-server"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("SQLSERVER_CONNECTION_STRING="))
        .expect("prints the connection string");
    let port: u16 = line
        .split("Server=tcp:127.0.0.1,")
        .nth(1)
        .and_then(|rest| rest.split(';').next())
        .and_then(|p| p.parse().ok())
        .expect("a port in the connection string");
    // TLS by default, the server's certificate checked against its CA.
    assert!(line.contains("Encrypt=true;"), "{line}");
    let ca = line
        .split("TrustServerCertificateCA=")
        .nth(1)
        .and_then(|rest| rest.split(['\'', ';']).next())
        .expect("the CA's path");
    let pem = std::fs::read_to_string(ca).expect("the CA file exists");
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    // A client PRELOGIN looks like the server's (same option layout).
    write_message(
        &mut stream,
        PKT_PRELOGIN,
        &prelogin_response(ENCRYPT_ON),
        4096,
    )
    .await
    .expect("send");
    let reply = read_message(&mut stream)
        .await
        .expect("read")
        .expect("a reply");
    assert_eq!(reply.packet_type, PKT_REPLY);
    assert_eq!(
        parse_prelogin(&reply.payload).expect("prelogin").encryption,
        ENCRYPT_ON
    );
}

#[tokio::test]
async fn a_refused_statement_is_logged_with_its_text_and_error_number() {
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_tds-server"))
            .args(["--port", "0"])
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tds-server"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    let connection_string = lines
        .by_ref()
        .find_map(|l| {
            l.strip_prefix("SQLSERVER_CONNECTION_STRING='")
                .map(|s| s.trim_end_matches('\'').to_owned())
        })
        .expect("prints the connection string");
    let config = tiberius::Config::from_ado_string(&connection_string).expect("connection string");
    let tcp = tokio::net::TcpStream::connect(config.get_addr())
        .await
        .expect("tcp");
    use tokio_util::compat::TokioAsyncWriteCompatExt;
    let mut client = tiberius::Client::connect(config, tcp.compat_write())
        .await
        .expect("login");
    let statement = "SELECT student_id FROM dbo.enrolments WHERE 1 = 1";
    let error = client
        .simple_query(statement)
        .await
        .expect_err("no such table");
    assert!(
        matches!(error, tiberius::error::Error::Server(ref t) if t.code() == 208),
        "{error:?}"
    );
    // The server's log says which statement it refused, and with what.
    let line =
        tokio::task::spawn_blocking(move || lines.find(|l| l.contains("TDS statement refused")))
            .await
            .expect("reader")
            .expect("a log line for the refused statement");
    assert!(line.contains("error=208"), "{line}");
    assert!(line.contains(statement), "{line}");
}
