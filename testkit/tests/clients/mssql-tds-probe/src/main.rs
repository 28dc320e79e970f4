//! Microsoft's `mssql-tds` driver (0.3.0, from crates.io) as an application
//! would use it, against a SQL Server at `host,port`: log in, `SELECT 1`, the
//! resolver's page query as an RPC (`sp_executesql`) with typed parameters,
//! a second statement on the same connection, a connection reset, a
//! statement error and the statement after it, and a wrong password.
//! Prints one JSON line with what it saw; run by
//! `testkit/tests/independent_clients.rs`.
//!
//!   mssql-tds-probe <host> <port> <user> <password> <database> <strict|on|off> <student> <page.sql>
//!
//! `strict` is TDS 8.0 (TLS first), `on` TLS after PRELOGIN, `off` plaintext
//! when the server allows it. The server's certificate is checked against
//! the system's trust store, which OpenSSL reads from `SSL_CERT_FILE`: the
//! test points it at the stand-in's CA.

use mssql_tds::connection::client_context::ClientContext;
use mssql_tds::connection::tds_client::{ResultSet, TdsClient};
use mssql_tds::connection_provider::tds_connection_provider::TdsConnectionProvider;
use mssql_tds::core::{EncryptionSetting, TdsResult};
use mssql_tds::datatypes::column_values::ColumnValues;
use mssql_tds::datatypes::sql_string::SqlString;
use mssql_tds::datatypes::sqltypes::SqlType;
use mssql_tds::error::Error;
use mssql_tds::message::parameters::rpc_parameters::{RpcParameter, StatusFlags};
use serde_json::{Value, json};

struct Args {
    host: String,
    port: String,
    user: String,
    password: String,
    database: String,
    mode: EncryptionSetting,
    student: String,
    page_sql: String,
}

fn args() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, user, password, database, mode, student, page] = a.as_slice() else {
        return Err("usage: mssql-tds-probe <host> <port> <user> <password> <database> <strict|on|off> <student> <page.sql>".into());
    };
    let mode = match mode.as_str() {
        "strict" => EncryptionSetting::Strict,
        "on" => EncryptionSetting::On,
        "off" => EncryptionSetting::PreferOff,
        other => return Err(format!("unknown mode {other}")),
    };
    let page_sql = std::fs::read_to_string(page).map_err(|e| format!("{page}: {e}"))?;
    Ok(Args {
        host: host.clone(),
        port: port.clone(),
        user: user.clone(),
        password: password.clone(),
        database: database.clone(),
        mode,
        student: student.clone(),
        page_sql,
    })
}

async fn connect(args: &Args, password: &str) -> TdsResult<TdsClient> {
    let mut context = ClientContext::default();
    context.user_name = args.user.clone();
    context.password = password.to_owned();
    context.database = args.database.clone();
    context.encryption_options.mode = args.mode;
    context.encryption_options.trust_server_certificate = false;
    context.connect_timeout = 5;
    TdsConnectionProvider {}
        .create_client(context, &format!("tcp:{},{}", args.host, args.port), None)
        .await
}

fn cell(value: &ColumnValues) -> Value {
    match value {
        ColumnValues::TinyInt(n) => json!(n),
        ColumnValues::SmallInt(n) => json!(n),
        ColumnValues::Int(n) => json!(n),
        ColumnValues::BigInt(n) => json!(n),
        ColumnValues::Float(f) => json!(f),
        ColumnValues::Bit(b) => json!(b),
        ColumnValues::String(s) => json!(s.to_utf8_string()),
        ColumnValues::Null => Value::Null,
        other => json!(format!("{other:?}")),
    }
}

/// The rows of the current result, each a list of values; then the request is closed.
async fn rows(client: &mut TdsClient) -> TdsResult<Vec<Vec<Value>>> {
    let mut out = Vec::new();
    if client.on_rows() {
        while let Some(row) = client.next_row().await? {
            out.push(row.iter().map(cell).collect());
        }
    }
    client.close_query().await?;
    Ok(out)
}

async fn query(client: &mut TdsClient, sql: &str) -> TdsResult<Vec<Vec<Value>>> {
    client.execute(sql.to_owned(), ()).await?;
    rows(client).await
}

/// The first column of the first row (what a scalar query returns).
async fn scalar(client: &mut TdsClient, sql: &str) -> TdsResult<Value> {
    let rows = query(client, sql).await?;
    Ok(first(&rows))
}

fn first(rows: &[Vec<Value>]) -> Value {
    rows.first()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or(Value::Null)
}

fn error_number(error: &Error) -> Value {
    match error {
        Error::SqlServerError { diagnostics } => {
            json!(diagnostics.errors.first().map(|e| e.number))
        }
        other => json!(format!("not a server error: {other}")),
    }
}

fn nvarchar(name: &str, value: Option<&str>) -> RpcParameter {
    let value = value.map(|v| SqlString::from_utf8_string(v.to_owned()));
    RpcParameter::new(
        Some(name.to_owned()),
        StatusFlags::NONE,
        SqlType::NVarchar(value, 64),
    )
}

async fn steps(args: &Args, out: &mut serde_json::Map<String, Value>) -> TdsResult<()> {
    let mut client = connect(args, &args.password).await?;
    out.insert("connected".into(), json!(true));
    out.insert("encrypted".into(), json!(client.is_encrypted()));
    out.insert("database".into(), json!(client.database()));
    out.insert("select1".into(), scalar(&mut client, "SELECT 1").await?);

    let params = vec![
        RpcParameter::new(Some("@P1".into()), StatusFlags::NONE, SqlType::Int(Some(4))),
        nvarchar("@P2", Some(&args.student)),
        nvarchar("@P3", None),
        RpcParameter::new(Some("@P4".into()), StatusFlags::NONE, SqlType::Date(None)),
        RpcParameter::new(Some("@P5".into()), StatusFlags::NONE, SqlType::Date(None)),
        RpcParameter::new(
            Some("@P6".into()),
            StatusFlags::NONE,
            SqlType::DateTime2(None),
        ),
        RpcParameter::new(Some("@P7".into()), StatusFlags::NONE, SqlType::BigInt(None)),
    ];
    client
        .execute_sp_executesql(args.page_sql.clone(), params, ())
        .await?;
    let page = rows(&mut client).await?;
    let ids: Vec<Value> = page
        .iter()
        .map(|row| first(std::slice::from_ref(row)))
        .collect();
    out.insert("page".into(), json!(ids));
    out.insert("pageRows".into(), json!(page));

    let second = query(&mut client, "SELECT DB_NAME() AS db, @@SPID AS spid").await?;
    out.insert("second".into(), first(&second));

    // A pool's reset between users: the next request carries the RESETCONNECTION bit.
    client.prepare_reset_connection(false);
    out.insert(
        "afterReset".into(),
        scalar(&mut client, "SELECT 1 AS after_reset").await?,
    );

    match query(&mut client, "SELECT * FROM dbo.no_such_table").await {
        Ok(rows) => out.insert(
            "statementError".into(),
            json!(format!("no error: {rows:?}")),
        ),
        Err(e) => out.insert("statementError".into(), error_number(&e)),
    };
    out.insert(
        "recovered".into(),
        scalar(&mut client, "SELECT 2 AS two").await?,
    );
    drop(client);

    match connect(args, "not-the-password").await {
        Ok(_) => out.insert("wrongPassword".into(), json!("logged in")),
        Err(e) => out.insert("wrongPassword".into(), error_number(&e)),
    };
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = match args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut out = serde_json::Map::new();
    if let Err(e) = steps(&args, &mut out).await {
        out.insert("error".into(), json!(e.to_string()));
    }
    println!("{}", Value::Object(out));
}
