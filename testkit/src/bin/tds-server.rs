//! Runs the test TDS server on its own, serving the demo fixtures:
//!
//! ```sh
//! cargo run -p testkit --bin tds-server -- --port 14330
//! ```
//!
//! It prints the connection string to use (for example as
//! `SQLSERVER_CONNECTION_STRING`: TLS, trusting the CA it made at start,
//! whose PEM file it names) and serves until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use testkit::fixtures::Fixtures;
use testkit::tds::tls::Encryption;
use testkit::tds::{TdsServer, TdsServerConfig};

#[derive(Debug, Parser)]
#[command(about = "A TDS (SQL Server protocol) server over fixture data, for local runs and tests")]
struct Args {
    /// Address to listen on (keep it on loopback).
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Port to listen on; 0 picks a free one.
    #[arg(long, default_value_t = 14330)]
    port: u16,
    #[arg(long, default_value = "resolver")]
    user: String,
    #[arg(long, default_value = "local-only-Passw0rd")]
    password: String,
    #[arg(long, default_value = "Assessments")]
    database: String,
    /// A fixture file like testkit/fixtures/demo.json (default: the demo data).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// TLS: `required` (every session encrypted, SQL Server's "Force
    /// Encryption"), `available` (as clients ask; "off" encrypts the login
    /// only), `not-supported` (plaintext only).
    #[arg(long, value_enum, default_value_t = EncryptionArg::Required)]
    encryption: EncryptionArg,
    /// Print the T-SQL that loads the fixtures into a real SQL Server, and exit.
    #[arg(long)]
    print_seed_sql: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EncryptionArg {
    Required,
    Available,
    NotSupported,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let fixtures = match &args.fixtures {
        Some(path) => Fixtures::load(path)?,
        None => Fixtures::demo(),
    };
    if args.print_seed_sql {
        print!("{}", fixtures.seed_sql());
        return Ok(());
    }
    let config = TdsServerConfig {
        bind: SocketAddr::new(args.bind, args.port),
        user: args.user,
        password: args.password,
        database: args.database,
        fixtures: Arc::new(fixtures),
        encryption: match args.encryption {
            EncryptionArg::Required => Encryption::Required,
            EncryptionArg::Available => Encryption::Available,
            EncryptionArg::NotSupported => Encryption::NotSupported,
        },
    };
    let rows = config.fixtures.assessments.len();
    let server = TdsServer::start(config).await?;
    println!(
        "TDS server on {} serving {rows} assessment rows",
        server.addr()
    );
    println!(
        "SQLSERVER_CONNECTION_STRING='{}'",
        server.connection_string()
    );
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    server.shutdown();
    Ok(())
}
