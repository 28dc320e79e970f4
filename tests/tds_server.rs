//! The testkit TDS server against a standard client (tiberius, as the
//! resolver uses it): typed RPC parameters, batches, errors, attention.

mod support;

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
    let server = support::start_tds_server().await;
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
    let server = support::start_tds_server().await;
    let mut client = connect(&server).await;
    let one = client
        .simple_query("SELECT 1")
        .await
        .expect("batch")
        .into_row()
        .await
        .expect("row");
    assert_eq!(one.and_then(|r| r.get::<i32, _>(0)), Some(1));

    let error = client
        .simple_query("SELECT * FROM sys.tables")
        .await
        .expect_err("not implemented");
    let tiberius::error::Error::Server(token) = error else {
        panic!("{error:?}")
    };
    assert_eq!(token.code(), 2812);

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
        (1, 4, 1)
    );
    drop(client);
}

#[tokio::test]
async fn connections_are_counted_while_open_and_closed_on_shutdown() {
    let server = support::start_tds_server().await;
    let a = connect(&server).await;
    let b = connect(&server).await;
    assert_eq!(server.stats().open_connections, 2);
    drop(a);
    let mut waited = 0;
    while server.stats().open_connections != 1 && waited < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        waited += 1;
    }
    assert_eq!(server.stats().open_connections, 1);
    assert_eq!(server.stats().peak_connections, 2);
    server.reset_peak();
    assert_eq!(server.stats().peak_connections, 1);
    drop(b);
}
