//! The whole stack on 127.0.0.1: the TDS server over the demo assessments,
//! moto (behind the fault proxy) with the demo profiles and history, the
//! mocked legacy shim, the scoring API stand-in; and both functions'
//! dependencies (the resolver's `Deps`, the processor's `ProcessorDeps`)
//! built from them through the same settings code the Lambda binaries run.
//! Each dependency can point at a real endpoint instead.

use std::sync::Arc;

use assessments_resolver::config::Env;
use assessments_resolver::deps::{Deps, Settings};
use assessments_resolver::processor::{ProcessorDeps, ProcessorSettings};
use testkit::dynamo::LocalDynamo;
use testkit::fixtures::Fixtures;
use testkit::scoring::{ScoringStandIn, ScoringStandInConfig};
use testkit::tds::{TdsServer, TdsServerConfig};

/// The `nextToken` signing key of local runs (never used in production).
pub const LOCAL_TOKEN_KEY: &str = "local-playground-next-token-key-not-for-production";
/// The function's timeout in `infra/template.yaml` (`Timeout: 20`): local
/// invocations get the deadline a deployed one would.
pub const FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The budget of an invocation that starts now, as Lambda would give it with
/// [`FUNCTION_TIMEOUT`] (less the function's own `DEADLINE_MARGIN_MS`).
pub fn invocation_budget(deps: &Deps) -> assessments_resolver::budget::Budget {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    deps.invocation_budget((since_epoch + FUNCTION_TIMEOUT).as_millis() as u64)
}

/// The scoring API key of local runs (the stand-in checks it).
pub const LOCAL_SCORING_KEY: &str = "local-scoring-key";

/// Where each dependency is; `None` starts the local stand-in.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// A real DynamoDB endpoint URL; `Some("")` means AWS's own regional endpoint.
    pub dynamodb_endpoint: Option<String>,
    pub region: Option<String>,
    pub sql_connection_string: Option<String>,
    pub legacy_lib_path: Option<String>,
    pub legacy_config: Option<String>,
    pub students_table: Option<String>,
    pub assessments_table: Option<String>,
    /// A real scoring API base URL (its key from `SCORING_API_KEY` or
    /// `SCORING_API_KEY_SECRET_ARN` in the environment).
    pub scoring_api_url: Option<String>,
    /// The stand-in counts answers per assessment id (tests; off for long runs).
    pub scoring_track_ids: bool,
    /// Any further settings (`SQL_POOL_MAX_SIZE`, `LEGACY_CALL_TIMEOUT_MS`...), applied last.
    pub overrides: Vec<(String, String)>,
}

/// A running stack; everything it started stops when it drops.
pub struct LocalStack {
    pub deps: Arc<Deps>,
    pub processor: Arc<ProcessorDeps>,
    tds: Option<TdsServer>,
    dynamo: Option<LocalDynamo>,
    scoring: Option<ScoringStandIn>,
    env: Vec<(String, String)>,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> Result<LocalStack, String> {
        let fixtures = Fixtures::demo();
        let table = options
            .students_table
            .clone()
            .unwrap_or_else(|| "Students".to_owned());
        let tds = match options.sql_connection_string {
            Some(_) => None,
            None => Some(
                TdsServer::start(TdsServerConfig::default())
                    .await
                    .map_err(|e| format!("TDS server: {e}"))?,
            ),
        };
        let assessments_table = options
            .assessments_table
            .clone()
            .unwrap_or_else(|| "Assessments".to_owned());
        let dynamo = match options.dynamodb_endpoint {
            Some(_) => None,
            None => Some(LocalDynamo::start(&table, &assessments_table, &fixtures).await?),
        };
        let scoring = match options.scoring_api_url {
            Some(_) => None,
            None => Some(
                ScoringStandIn::start(ScoringStandInConfig {
                    api_key: Some(LOCAL_SCORING_KEY.to_owned()),
                    track_ids: options.scoring_track_ids,
                    port: 0,
                })
                .await?,
            ),
        };

        let mut env: Vec<(String, String)> = Vec::new();
        let mut set = |k: &str, v: String| {
            env.retain(|(key, _)| key != k);
            env.push((k.to_owned(), v));
        };
        set("STUDENTS_TABLE", table);
        set("ASSESSMENTS_TABLE", assessments_table);
        match (&scoring, &options.scoring_api_url) {
            (Some(stand_in), _) => {
                set("SCORING_API_URL", stand_in.url());
                set("SCORING_API_KEY", LOCAL_SCORING_KEY.to_owned());
            }
            (None, Some(url)) => set("SCORING_API_URL", url.clone()),
            (None, None) => return Err("no scoring API".to_owned()),
        }
        match (&dynamo, &options.dynamodb_endpoint) {
            (Some(local), _) => {
                set("AWS_ENDPOINT_URL_DYNAMODB", local.endpoint());
                set("AWS_ACCESS_KEY_ID", "local".to_owned());
                set("AWS_SECRET_ACCESS_KEY", "local".to_owned());
            }
            (None, Some(endpoint)) if !endpoint.is_empty() => {
                set("AWS_ENDPOINT_URL_DYNAMODB", endpoint.clone())
            }
            _ => {}
        }
        set(
            "AWS_REGION",
            options
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
        );
        let connection_string = match (&tds, &options.sql_connection_string) {
            (Some(server), _) => server.connection_string(),
            (None, Some(s)) => s.clone(),
            (None, None) => return Err("no SQL Server".to_owned()),
        };
        set("SQLSERVER_CONNECTION_STRING", connection_string);
        set(
            "LEGACY_LIB_PATH",
            options
                .legacy_lib_path
                .clone()
                .unwrap_or_else(|| assessments_resolver::legacy::DEFAULT_LIB_PATH.to_owned()),
        );
        if let Some(config) = &options.legacy_config {
            set("LEGACY_CONFIG", config.clone());
        }
        set("NEXT_TOKEN_KEY", LOCAL_TOKEN_KEY.to_owned());
        set("METRICS_EMF", "false".to_owned());
        for (k, v) in &options.overrides {
            set(k, v.clone());
        }

        // The process environment first (credentials for real endpoints), ours on top.
        let mut all: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| !env.iter().any(|(e, _)| e == k))
            .collect();
        all.extend(env.iter().cloned());
        let all = Env::from_pairs(all);
        let settings = Settings::from_env(&all).map_err(|e| e.to_string())?;
        let deps = Deps::init(settings).await.map_err(|e| e.to_string())?;
        let processor_settings = ProcessorSettings::from_env(&all).map_err(|e| e.to_string())?;
        let processor = ProcessorDeps::init(processor_settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(LocalStack {
            deps: Arc::new(deps),
            processor: Arc::new(processor),
            tds,
            dynamo,
            scoring,
            env,
        })
    }

    /// The local TDS server, when the stack started one.
    pub fn tds(&self) -> Option<&TdsServer> {
        self.tds.as_ref()
    }

    /// The local DynamoDB (moto behind the fault proxy), when the stack started one.
    pub fn dynamo(&self) -> Option<&LocalDynamo> {
        self.dynamo.as_ref()
    }

    /// The scoring API stand-in, when the stack started one.
    pub fn scoring(&self) -> Option<&ScoringStandIn> {
        self.scoring.as_ref()
    }

    /// The settings the stack gave the functions: run the real binary with them.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// One shell line of the settings that point the real binaries (`assessments-resolver`,
    /// `assessment-processor`) at this stack.
    pub fn env_line(&self) -> String {
        let keys = [
            "STUDENTS_TABLE",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "SQLSERVER_CONNECTION_STRING",
            "LEGACY_LIB_PATH",
            "NEXT_TOKEN_KEY",
            "ASSESSMENTS_TABLE",
            "SCORING_API_URL",
            "SCORING_API_KEY",
        ];
        keys.iter()
            .filter_map(|k| self.env.iter().find(|(key, _)| key == k))
            .map(|(k, v)| format!("{k}='{}'", v.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
