//! The whole stack on 127.0.0.1: the test stack ([`testkit::services`]: the
//! TDS server, moto behind its fault proxy, the scoring API stand-in, the
//! mocked legacy shim, the local settings) and both functions' dependencies
//! (the resolver's `Deps`, the processor's `ProcessorDeps`) built from them
//! through the same settings code the Lambda binaries run. Each dependency
//! can point at a real endpoint instead.

use std::sync::Arc;

use assessment_processor::{ProcessorDeps, ProcessorSettings};
use assessments_common::config::Env;
use assessments_resolver::deps::{Deps, Settings};
use testkit::dynamo::LocalDynamo;
use testkit::scoring::ScoringStandIn;
use testkit::services::{LocalServices, ServicesOptions};
use testkit::tds::TdsServer;

pub use testkit::services::{LOCAL_SCORING_KEY, LOCAL_TOKEN_KEY};

/// The budget of an invocation that starts now, as Lambda would give it with
/// the template's timeout (less the function's own `DEADLINE_MARGIN_MS`).
pub fn invocation_budget(deps: &Deps) -> assessments_common::budget::Budget {
    deps.invocation_budget(testkit::services::lambda_deadline_ms())
}

/// Where each dependency is; `None` starts the local stand-in.
#[derive(Debug, Clone, Default)]
pub struct StackOptions {
    /// The protocol peers (DynamoDB, SQL Server, the scoring API).
    pub services: ServicesOptions,
    /// The legacy component (default: the mock).
    pub legacy_lib_path: Option<String>,
    pub legacy_config: Option<String>,
    /// Any further settings (`SQL_POOL_MAX_SIZE`, `LEGACY_CALL_TIMEOUT_MS`...), applied last.
    pub overrides: Vec<(String, String)>,
}

impl StackOptions {
    /// The functions' settings on top of the test stack's local ones: the
    /// legacy library and its configuration, then the overrides.
    pub fn function_settings(&self) -> Vec<(String, String)> {
        let mut settings = Vec::new();
        if let Some(path) = &self.legacy_lib_path {
            settings.push(("LEGACY_LIB_PATH".to_owned(), path.clone()));
        }
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
