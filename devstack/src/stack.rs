//! The whole stack on 127.0.0.1: the protocol peers ([`testkit::services`]:
//! the TDS server, moto behind its fault proxy, the scoring API stand-in), the
//! mocked legacy shim; and both functions' dependencies (the resolver's `Deps`, the processor's `ProcessorDeps`)
//! built from them through the same settings code the Lambda binaries run.
//! Each dependency can point at a real endpoint instead.

use std::sync::Arc;

use assessment_processor::{ProcessorDeps, ProcessorSettings};
use assessments_common::config::Env;
use assessments_resolver::deps::{Deps, Settings};
use testkit::dynamo::LocalDynamo;
use testkit::scoring::ScoringStandIn;
use testkit::services::{LocalServices, ServicesOptions};
use testkit::tds::TdsServer;

/// The `nextToken` signing key of local runs (never used in production).
pub const LOCAL_TOKEN_KEY: &str = "local-playground-next-token-key-not-for-production";
/// The function's timeout in `infra/template.yaml` (`Timeout: 20`): local
/// invocations get the deadline a deployed one would.
pub const FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The budget of an invocation that starts now, as Lambda would give it with
/// [`FUNCTION_TIMEOUT`] (less the function's own `DEADLINE_MARGIN_MS`).
pub fn invocation_budget(deps: &Deps) -> assessments_common::budget::Budget {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    deps.invocation_budget((since_epoch + FUNCTION_TIMEOUT).as_millis() as u64)
}

pub use testkit::services::LOCAL_SCORING_KEY;

/// Where each dependency is; `None` starts the local stand-in.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// The protocol peers (DynamoDB, SQL Server, the scoring API).
    pub services: ServicesOptions,
    pub legacy_lib_path: Option<String>,
    pub legacy_config: Option<String>,
    /// Any further settings (`SQL_POOL_MAX_SIZE`, `LEGACY_CALL_TIMEOUT_MS`...), applied last.
    pub overrides: Vec<(String, String)>,
}

impl StackOptions {
    /// The functions' own settings on top of the peers': the legacy library,
    /// the local `nextToken` key, API-key callers allowed, the personas' admin
    /// group and school claim, insecure settings allowed, then the overrides.
    pub fn function_settings(&self) -> Vec<(String, String)> {
        let mut settings = vec![
            (
                "LEGACY_LIB_PATH".to_owned(),
                self.legacy_lib_path
                    .clone()
                    .unwrap_or_else(|| legacy_shim::SHIM_PATH.to_owned()),
            ),
            ("NEXT_TOKEN_KEY".to_owned(), LOCAL_TOKEN_KEY.to_owned()),
            // Local runs answer API-key (null identity) callers like an
            // admin, as a demo API with API-key auth would; a deployed API
            // gets this only when its auth mode is API key (infra/template.yaml).
            ("AUTHZ_ALLOW_API_KEY".to_owned(), "true".to_owned()),
            // The playground's personas: its admins and its teachers' school
            // claim. A deployed function trusts only the group and claim its
            // stack names (nothing by default).
            ("AUTHZ_ADMIN_GROUPS".to_owned(), "admins".to_owned()),
            (
                "AUTHZ_SCHOOL_CLAIM".to_owned(),
                "custom:schoolId".to_owned(),
            ),
            // The stand-ins speak plain http (the scoring API) and the local
            // key is plaintext: refused on Lambda unless allowed (never in
            // infra/template.yaml).
            ("ALLOW_INSECURE_SETTINGS".to_owned(), "true".to_owned()),
        ];
        if let Some(config) = &self.legacy_config {
            settings.push(("LEGACY_CONFIG".to_owned(), config.clone()));
        }
        settings.extend(self.overrides.iter().cloned());
        settings
    }
}

/// A running stack; everything it started stops when it drops.
pub struct LocalStack {
    pub deps: Arc<Deps>,
    pub processor: Arc<ProcessorDeps>,
    services: LocalServices,
}

impl LocalStack {
    pub async fn start(options: StackOptions) -> Result<LocalStack, String> {
        let settings = options.function_settings();
        let mut services_options = options.services;
        services_options.settings = settings;
        let services = LocalServices::start(services_options).await?;

        let all = Env::from_pairs(services.process_env());
        let settings = Settings::load(&all).await.map_err(|e| e.to_string())?;
        let deps = Deps::init(settings).await.map_err(|e| e.to_string())?;
        let processor_settings = ProcessorSettings::from_env(&all).map_err(|e| e.to_string())?;
        let processor = ProcessorDeps::init(processor_settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(LocalStack {
            deps: Arc::new(deps),
            processor: Arc::new(processor),
            services,
        })
    }

    /// The local TDS server, when the stack started one.
    pub fn tds(&self) -> Option<&TdsServer> {
        self.services.tds()
    }

    /// The local DynamoDB (moto behind the fault proxy), when the stack started one.
    pub fn dynamo(&self) -> Option<&LocalDynamo> {
        self.services.dynamo()
    }

    /// The scoring API stand-in, when the stack started one.
    pub fn scoring(&self) -> Option<&ScoringStandIn> {
        self.services.scoring()
    }

    /// The settings the stack gave the functions: run the real binary with them.
    pub fn env(&self) -> &[(String, String)] {
        self.services.env()
    }

    /// One shell line of the settings that point the real binaries (`assessments-resolver`,
    /// `assessment-processor`) at this stack.
    pub fn env_line(&self) -> String {
        self.services.env_line(&[
            "STUDENTS_TABLE",
            "AWS_ENDPOINT_URL_DYNAMODB",
            "AWS_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "SQLSERVER_CONNECTION_STRING",
            "LEGACY_LIB_PATH",
            "NEXT_TOKEN_KEY",
            "AUTHZ_ALLOW_API_KEY",
            "AUTHZ_ADMIN_GROUPS",
            "AUTHZ_SCHOOL_CLAIM",
            "ALLOW_INSECURE_SETTINGS",
            "ASSESSMENTS_TABLE",
            "SCORING_API_URL",
            "SCORING_API_KEY",
        ])
    }
}
