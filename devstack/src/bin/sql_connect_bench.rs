//! What TLS costs the SQL Server connection: new connections (TCP, PRELOGIN,
//! the TLS handshake, LOGIN7) and page queries on an open one, in plaintext,
//! with the login encrypted only, and fully encrypted, against the local TDS
//! server.
//!
//! ```sh
//! cargo run --release -p devstack --bin sql-connect-bench
//! ```
//!
//! The client is tiberius with the connection string the resolver would be
//! given (`Config::from_ado_string`, then `Client::connect`, as its pool
//! does), on this thread; the server runs on other threads, so the CPU time
//! printed (this thread's, from `/proc/thread-self/schedstat`) is the
//! client's alone: what the Lambda function pays.

use std::time::{Duration, Instant};

use clap::Parser;
use testkit::tds::catalog::ASSESSMENTS_PAGE_SQL;
use testkit::tds::tls::Encryption;
use testkit::tds::{TdsServer, TdsServerConfig};
use tiberius::{Client, Config};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

#[derive(Debug, Parser)]
#[command(about = "The cost of TLS on the SQL Server connection: new connections and queries")]
struct Args {
    /// Connections opened per mode (after 20 for warm-up).
    #[arg(long, default_value_t = 300)]
    connections: usize,
    /// Page queries (20 rows) per mode on one open connection (after 50 for warm-up).
    #[arg(long, default_value_t = 2000)]
    queries: usize,
}

/// This thread's time on a CPU so far.
fn thread_cpu() -> Duration {
    let ns = std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

async fn connect(config: &Config) -> Result<Client<Compat<TcpStream>>, String> {
    let tcp = TcpStream::connect(config.get_addr())
        .await
        .map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    Client::connect(config.clone(), tcp.compat_write())
        .await
        .map_err(|e| e.to_string())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

struct Figures {
    connect_p50: Duration,
    connect_p99: Duration,
    connect_cpu: Duration,
    query_p50: Duration,
    query_cpu: Duration,
}

async fn measure(config: &Config, args: &Args) -> Result<Figures, String> {
    for _ in 0..20 {
        connect(config)
            .await?
            .close()
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut times = Vec::with_capacity(args.connections);
    let cpu_before = thread_cpu();
    for _ in 0..args.connections {
        let started = Instant::now();
        let client = connect(config).await?;
        times.push(started.elapsed());
        client.close().await.map_err(|e| e.to_string())?;
    }
    // Closing is in the CPU figure too: every connection is closed once.
    let connect_cpu = (thread_cpu() - cpu_before) / args.connections as u32;
    times.sort_unstable();

    let mut client = connect(config).await?;
    let query = async |client: &mut Client<Compat<TcpStream>>| {
        let params: [&dyn tiberius::ToSql; 7] = [
            &21i32,
            &"stu-0001",
            &Option::<&str>::None,
            &Option::<chrono::NaiveDate>::None,
            &Option::<chrono::NaiveDate>::None,
            &Option::<chrono::NaiveDateTime>::None,
            &Option::<i64>::None,
        ];
        let rows = client
            .query(ASSESSMENTS_PAGE_SQL, &params)
            .await
            .map_err(|e| e.to_string())?
            .into_first_result()
            .await
            .map_err(|e| e.to_string())?;
        Ok::<usize, String>(rows.len())
    };
    for _ in 0..50 {
        query(&mut client).await?;
    }
    let mut query_times = Vec::with_capacity(args.queries);
    let cpu_before = thread_cpu();
    for _ in 0..args.queries {
        let started = Instant::now();
        query(&mut client).await?;
        query_times.push(started.elapsed());
    }
    let query_cpu = (thread_cpu() - cpu_before) / args.queries as u32;
    query_times.sort_unstable();
    Ok(Figures {
        connect_p50: percentile(&times, 0.5),
        connect_p99: percentile(&times, 0.99),
        connect_cpu,
        query_p50: percentile(&query_times, 0.5),
        query_cpu,
    })
}

fn main() -> Result<(), String> {
    let args = Args::parse();
    // The servers on their own runtime and threads; the client on this one.
    let servers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let start = |encryption| {
        servers.block_on(TdsServer::start(TdsServerConfig {
            encryption,
            ..TdsServerConfig::default()
        }))
    };
    let plain = start(Encryption::NotSupported).map_err(|e| e.to_string())?;
    let available = start(Encryption::Available).map_err(|e| e.to_string())?;
    let required = start(Encryption::Required).map_err(|e| e.to_string())?;
    let ca = |server: &TdsServer| {
        server
            .ca_pem()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let modes = [
        ("plaintext", plain.connection_string()),
        (
            "login only (Encrypt=false)",
            available.connection_string_with(&format!(
                "Encrypt=false;TrustServerCertificateCA={}",
                ca(&available)
            )),
        ),
        (
            "TLS (Encrypt=true, CA checked)",
            required.connection_string(),
        ),
        // The same handshake without building a root store (tiberius loads the
        // system's CAs for every new connection): what that load costs.
        (
            "TLS, TrustServerCertificate=true",
            required.connection_string_with("Encrypt=true;TrustServerCertificate=true"),
        ),
    ];
    println!(
        "{:<32} {:>12} {:>12} {:>14} {:>12} {:>14}",
        "connection", "connect p50", "connect p99", "connect CPU", "query p50", "query CPU"
    );
    for (name, connection_string) in modes {
        let config = Config::from_ado_string(&connection_string).map_err(|e| e.to_string())?;
        let f = client.block_on(measure(&config, &args))?;
        println!(
            "{name:<32} {:>9.0} µs {:>9.0} µs {:>11.0} µs {:>9.0} µs {:>11.0} µs",
            f.connect_p50.as_secs_f64() * 1e6,
            f.connect_p99.as_secs_f64() * 1e6,
            f.connect_cpu.as_secs_f64() * 1e6,
            f.query_p50.as_secs_f64() * 1e6,
            f.query_cpu.as_secs_f64() * 1e6,
        );
    }
    println!(
        "\nper connection: TCP connect, PRELOGIN, TLS handshake (if any), LOGIN7, close; \
         per query: the page query, 20 rows; CPU is the client's thread only ({} connections, {} queries a mode)",
        args.connections, args.queries
    );
    Ok(())
}
