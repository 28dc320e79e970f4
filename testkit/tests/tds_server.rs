//! The testkit TDS server against a standard client (tiberius, as the
//! resolver uses it): typed RPC parameters, batches, errors, attention.

use chrono::{NaiveDate, NaiveDateTime};
use testkit::tds::TdsServer;
use testkit::tds::catalog::ECHO_SQL;
use testkit::tds::wire::{Value, WireType};
use tiberius::{Client, Config, ToSql};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

async fn connect(server: &TdsServer) -> Client<Compat<TcpStream>> {
    let config = Config::from_ado_string(&server.connection_string()).expect("connection string");
    let tcp = TcpStream::connect(config.get_addr()).await.expect("tcp");
    Client::connect(config, tcp.compat_write())
        .await
        .expect("login")
}

async fn echo<T: tiberius::FromSqlOwned>(
    client: &mut Client<Compat<TcpStream>>,
    param: &dyn ToSql,
) -> Option<T> {
    let row = client
        .query(ECHO_SQL, &[param])
        .await
        .expect("query")
        .into_row()
        .await
        .expect("row")
        .expect("one row");
    let value = row.into_iter().next().expect("one column");
    T::from_sql_owned(value).expect("typed value")
}

#[tokio::test]
async fn typed_parameters_arrive_typed_and_come_back_intact() {
    let server = start_tds_server().await;
    let mut client = connect(&server).await;
    let date = NaiveDate::from_ymd_opt(2026, 2, 28).expect("date");
    let instant: NaiveDateTime = date.and_hms_micro_opt(23, 59, 58, 123_456).expect("time");
    let long = "ü".repeat(3_000); // 6,000 bytes: sent as nvarchar(max), in PLP chunks

    assert_eq!(echo::<i32>(&mut client, &42i32).await, Some(42));
    assert_eq!(echo::<i64>(&mut client, &(1i64 << 40)).await, Some(1 << 40));
    assert_eq!(
        echo::<String>(&mut client, &"héllo 🙂").await.as_deref(),
        Some("héllo 🙂")
    );
    assert_eq!(
        echo::<String>(&mut client, &long.as_str()).await,
        Some(long.clone())
    );
    assert_eq!(echo::<NaiveDate>(&mut client, &date).await, Some(date));
    assert_eq!(
        echo::<NaiveDateTime>(&mut client, &instant).await,
        Some(instant)
    );
    assert_eq!(echo::<f64>(&mut client, &2.5f64).await, Some(2.5));
    assert_eq!(
        echo::<String>(&mut client, &Option::<&str>::None).await,
        None
    );

    let types: Vec<(WireType, Value)> = server
        .recorded()
        .into_iter()
        .map(|s| {
            assert_eq!(s.text, ECHO_SQL);
            (s.params[0].wire_type, s.params[0].value.clone())
        })
        .collect();
    assert_eq!(
        types,
        vec![
            (WireType::Int, Value::Int(42)),
            (WireType::BigInt, Value::Int(1 << 40)),
            (WireType::NVarChar, Value::String("héllo 🙂".into())),
            (WireType::NVarCharMax, Value::String(long)),
            (WireType::Date, Value::Date(date)),
            (WireType::DateTime2, Value::DateTime(instant)),
            (WireType::Float, Value::Float(2.5)),
            (WireType::Null, Value::Null),
        ]
    );
}

#[tokio::test]
async fn batches_errors_and_unknown_statements() {
    let server = start_tds_server().await;
    let mut client = connect(&server).await;
    let one = client
        .simple_query("SELECT 1")
        .await
        .expect("batch")
        .into_row()
        .await
        .expect("row");
    assert_eq!(one.and_then(|r| r.get::<i32, _>(0)), Some(1));

    // What the stand-in does not serve, and an object that does not exist:
    // each with its error number, as SQL Server numbers them.
    for (statement, code) in [
        ("SELECT * FROM sys.tables", 40517),
        ("SELECT * FROM dbo.nowhere", 208),
        ("UPDATE dbo.assessments SET raw_score = 0", 40517),
    ] {
        let error = client.simple_query(statement).await.expect_err(statement);
        let tiberius::error::Error::Server(token) = error else {
            panic!("{statement}: {error:?}")
        };
        assert_eq!(token.code(), code, "{statement}");
    }

    let error = client
        .query("EXEC dbo.whatever @P1", &[&1i32])
        .await
        .expect_err("unknown");
    assert!(
        matches!(error, tiberius::error::Error::Server(ref t) if t.code() == 2812),
        "{error:?}"
    );

    // The connection is still in step after errors.
    let one = client
        .simple_query("select 1;")
        .await
        .expect("batch")
        .into_row()
        .await
        .expect("row");
    assert!(one.is_some());
    let stats = server.stats();
    assert_eq!(
        (stats.logins_ok, stats.requests, stats.open_connections),
        (1, 6, 1)
    );
    drop(client);
}

#[tokio::test]
async fn connections_are_counted_while_open_and_closed_on_shutdown() {
    let server = start_tds_server().await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    assert_eq!(server.stats().open_connections, 2);
    drop(a);
    testkit::wait_until("the server to see the connection closed", || {
        server.stats().open_connections == 1
    })
    .await;
    assert_eq!(server.stats().open_connections, 1);
    assert_eq!(server.stats().peak_connections, 2);
    server.reset_peak();
    assert_eq!(server.stats().peak_connections, 1);
    drop(b);
}

#[tokio::test]
async fn session_settings_and_validation_queries_as_other_clients_send_them() {
    let server = start_tds_server().await;
    let mut client = connect(&server).await;
    // tedious' session batch after login (one statement a line), then more.
    client
        .simple_query(
            "set textsize 2147483647\nset quoted_identifier on\nset arithabort off\n\
             set numeric_roundabort off\nset ansi_warnings on\nset ansi_padding on\n\
             set ansi_nulls on\nset concat_null_yields_null on\nset cursor_close_on_commit off\n\
             set implicit_transactions off\nset language us_english\nset dateformat mdy\n\
             set datefirst 7\nset transaction isolation level read committed",
        )
        .await
        .expect("SET batch")
        .into_results()
        .await
        .expect("no results, no error");
    let settings = server.session_settings();
    assert_eq!(settings.get("textsize"), Some("2147483647"));
    assert_eq!(settings.get("arithabort"), Some("off"));
    assert_eq!(
        settings.get("transaction isolation level"),
        Some("read committed")
    );
    assert_eq!(settings.get("datefirst"), Some("7"));

    // SET and SELECT 1 in one batch, and SELECT 1 through sp_executesql (RPC).
    let rows = client
        .simple_query("SET NOCOUNT ON; SET XACT_ABORT, ANSI_NULLS ON; SELECT 1 AS ok")
        .await
        .expect("batch")
        .into_first_result()
        .await
        .expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<i32, _>("ok"), Some(1));
    for validation in ["SELECT 1;", "select 1"] {
        let row = client
            .query(validation, &[])
            .await
            .expect("RPC")
            .into_row()
            .await
            .expect("row");
        assert_eq!(
            row.and_then(|r| r.get::<i32, _>(0)),
            Some(1),
            "{validation}"
        );
    }
    assert_eq!(server.session_settings().get("xact_abort"), Some("on"));

    // A SET the server does not know, or a value it cannot take: SQL Server's errors.
    for (statement, code) in [
        ("SET FAVOURITE_COLOUR ON", 195),
        ("SET DATEFIRST 9", 102),
        ("SET TRANSACTION ISOLATION LEVEL chaotic", 102),
    ] {
        let error = client.simple_query(statement).await.expect_err(statement);
        assert!(
            matches!(error, tiberius::error::Error::Server(ref t) if t.code() == code),
            "{statement}: {error:?}"
        );
    }
    // An invalid SET changed nothing.
    assert_eq!(server.session_settings().get("datefirst"), Some("7"));
    let one = client
        .simple_query("SELECT 1")
        .await
        .expect("still in step")
        .into_row()
        .await
        .expect("row");
    assert!(one.is_some());
}

async fn start_tds_server() -> TdsServer {
    TdsServer::start(testkit::tds::TdsServerConfig::default())
        .await
        .expect("TDS server starts")
}
