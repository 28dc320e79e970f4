//! The local playground: the whole stack on 127.0.0.1 and a GraphQL console.
//!
//! ```sh
//! cargo run --bin playground            # then open http://127.0.0.1:4000
//! cargo run --bin playground -- --trace # and see each request's X-Ray spans
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Parser;
use devstack::gateway::Gateway;
use devstack::server::{App, router};
use devstack::stack::{LocalStack, StackOptions};
use testkit::services::ServicesOptions;

#[derive(Debug, Parser)]
#[command(
    about = "Query getAssessments locally, as in the AppSync console, with every dependency embedded"
)]
struct Args {
    /// Port of the playground's HTTP server (127.0.0.1).
    #[arg(long, default_value_t = 4000)]
    port: u16,
    /// Root fields per Lambda invocation (AppSync's MaxBatchSize); 1 turns batching off.
    #[arg(long, default_value_t = 10)]
    max_batch_size: usize,
    /// Use this DynamoDB endpoint instead of starting moto ("" for AWS itself).
    #[arg(long, env = "PLAYGROUND_DYNAMODB_ENDPOINT")]
    dynamodb_endpoint: Option<String>,
    #[arg(long, env = "PLAYGROUND_REGION")]
    region: Option<String>,
    /// The Students table (default: Students).
    #[arg(long, env = "PLAYGROUND_STUDENTS_TABLE")]
    students_table: Option<String>,
    /// The Assessments table of the assessment processor (default: Assessments).
    #[arg(long, env = "PLAYGROUND_ASSESSMENTS_TABLE")]
    assessments_table: Option<String>,
    /// Use this scoring API instead of starting the stand-in (its key from
    /// SCORING_API_KEY or SCORING_API_KEY_SECRET_ARN).
    #[arg(long, env = "PLAYGROUND_SCORING_API_URL")]
    scoring_api_url: Option<String>,
    /// Use this SQL Server instead of starting the TDS server.
    #[arg(
        long,
        env = "PLAYGROUND_SQLSERVER_CONNECTION_STRING",
        hide_env_values = true
    )]
    sql_connection_string: Option<String>,
    /// Load this legacy library instead of the mocked shim (a `.dll`: a .NET assembly,
    /// hosted through hostfxr with the runtime at DOTNET_ROOT).
    #[arg(long, env = "PLAYGROUND_LEGACY_LIB_PATH", conflicts_with = "dotnet")]
    legacy_lib_path: Option<String>,
    /// Run the legacy component as .NET: the assembly `cargo build` compiled
    /// from legacy-shim/dotnet/ (needs mono-mcs at build time; scripts/test installs it).
    #[arg(long)]
    dotnet: bool,
    /// Trace every request as X-Ray does with active tracing (off by default,
    /// as for the function run locally): the console and /stats show the last
    /// request's spans.
    #[arg(long, env = "PLAYGROUND_TRACE")]
    trace: bool,
    /// The legacy engine's configuration string (e.g. "fail_every=5" with the shim).
    #[arg(long, env = "PLAYGROUND_LEGACY_CONFIG")]
    legacy_config: Option<String>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Started as a legacy worker (LEGACY_ISOLATION=process): serve the supervisor, then exit.
    legacy_bridge::run_worker_if_requested();
    serve()
}

#[tokio::main]
async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    const LOG_FILTER: &str = "warn,tiberius=error";
    devstack::init_local_tracing(LOG_FILTER);
    let args = Args::parse();
    eprintln!(
        "starting the local stack (TDS server, DynamoDB via moto, legacy shim, scoring API stand-in)..."
    );
    let legacy_lib_path = match (args.dotnet, args.legacy_lib_path) {
        (true, _) if legacy_shim::DOTNET_ASSEMBLY_PATH.is_empty() => {
            return Err(
                "--dotnet: the .NET component was not built (install mono-mcs, then cargo build)"
                    .into(),
            );
        }
        (true, _) => Some(legacy_shim::DOTNET_ASSEMBLY_PATH.to_owned()),
        (false, path) => path,
    };
    let console = if devstack::console::installed() {
        Ok(())
    } else {
        eprintln!("installing the console's editor (npm ci in devstack/console, once)...");
        devstack::console::ensure_installed()
    };
    let stack = LocalStack::start(StackOptions {
        services: ServicesOptions {
            dynamodb_endpoint: args.dynamodb_endpoint,
            region: args.region,
            sql_connection_string: args.sql_connection_string,
            students_table: args.students_table,
            assessments_table: args.assessments_table,
            scoring_api_url: args.scoring_api_url,
            scoring_track_ids: false,
            // TLS, the certificate checked against the CA the server made.
            sql_encryption: testkit::tds::tls::Encryption::Required,
            settings: Vec::new(),
        },
        legacy_lib_path,
        legacy_config: args.legacy_config,
        overrides: Vec::new(),
    })
    .await?;
    let gateway = Gateway::new(
        devstack::SCHEMA_SDL,
        Arc::clone(&stack.deps),
        args.max_batch_size,
    )?;
    let gateway = if args.trace {
        gateway.with_tracing(LOG_FILTER)?
    } else {
        gateway
    };
    let env_line = stack.env_line();
    let app = Arc::new(App {
        gateway,
        stack,
        schema_sdl: devstack::SCHEMA_SDL.to_owned(),
        processor: Default::default(),
    });
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port))).await?;
    let url = format!("http://{}", listener.local_addr()?);

    println!("playground: {url}   (POST {url}/graphql, GET {url}/stats)");
    if args.trace {
        println!(
            "tracing: on: the last request's X-Ray spans in the console's panel and in /stats (lastTrace)"
        );
    } else {
        println!("tracing: off (--trace shows each request's X-Ray spans)");
    }
    if let Err(error) = console {
        println!("console: the basic one ({error}); GraphiQL once npm ci has run");
    }
    println!(
        "who you are: choose in the console, or the x-playground-identity header: admin, teacher-a (school sch-001), teacher-b (sch-002), api-key (the default)"
    );
    println!(
        "assessment processor: POST an SQS event to {url}/sqs, e.g. curl -s {url}/sqs -d @testkit/fixtures/sqs-event.json"
    );
    println!(
        "demo students: stu-0001 (74 assessments, sch-001), stu-0002 (none, sch-002), stu-0003..stu-0040 (odd: sch-001, even: sch-002), stu-9999 (no profile)"
    );
    println!(
        "settings for the real assessments-resolver binary (under a Lambda Runtime API, e.g. cargo lambda watch):"
    );
    println!("  {env_line}");
    println!("Ctrl-C stops everything.");

    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    axum::serve(listener, router(Arc::clone(&app)))
        .with_graceful_shutdown(shutdown)
        .await?;
    app.stack.deps.shutdown().await;
    eprintln!("stopped.");
    Ok(())
}
