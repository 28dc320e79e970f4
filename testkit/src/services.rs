//! The test stack: the protocol peers of a local run on 127.0.0.1 (the TDS
//! server over the demo assessments, moto behind the fault proxy with the
//! demo profiles and history, the scoring API stand-in) and the settings
//! (environment variables) that point a function at them, the functions'
//! own local settings included (the mocked legacy component, a plaintext
//! `nextToken` key, the personas' group and claim). Each peer can be a real
//! endpoint instead. What the functions build from these settings is
//! theirs, through the settings code their binaries run: the resolver's
//! tests build the resolver, the processor's the processor, the
//! playground's stack (`devstack`) both.

use crate::dynamo::LocalDynamo;
use crate::fixtures::Fixtures;
use crate::scoring::{ScoringStandIn, ScoringStandInConfig};
use crate::tds::{TdsServer, TdsServerConfig};

/// The scoring API key of local runs (the stand-in checks it).
pub const LOCAL_SCORING_KEY: &str = "local-scoring-key";
/// The `nextToken` signing key of local runs (never used in production).
pub const LOCAL_TOKEN_KEY: &str = "local-playground-next-token-key-not-for-production";
/// The resolver's timeout in `infra/template.yaml` (`Timeout: 20`): local
/// invocations get the deadline a deployed one would.
pub const FUNCTION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The deadline of an invocation that starts now, in milliseconds since the
/// epoch (as Lambda's `context.deadline` gives it), [`FUNCTION_TIMEOUT`] away.
pub fn lambda_deadline_ms() -> u64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (since_epoch + FUNCTION_TIMEOUT).as_millis() as u64
}

/// The functions' own settings of local runs, under the caller's: the
/// mocked legacy component, the local `nextToken` key, API-key callers
/// allowed, the personas' admin group and school claim, insecure settings
/// allowed.
fn local_function_settings() -> [(&'static str, &'static str); 6] {
    [
        ("LEGACY_LIB_PATH", legacy_shim::SHIM_PATH),
        ("NEXT_TOKEN_KEY", LOCAL_TOKEN_KEY),
        // Local runs answer API-key (null identity) callers like an
        // admin, as a demo API with API-key auth would; a deployed API
        // gets this only when its auth mode is API key (infra/template.yaml).
        ("AUTHZ_ALLOW_API_KEY", "true"),
        // The playground's personas: its admins and its teachers' school
        // claim. A deployed function trusts only the group and claim its
        // stack names (nothing by default).
        ("AUTHZ_ADMIN_GROUPS", "admins"),
        ("AUTHZ_SCHOOL_CLAIM", crate::appsync::identity::SCHOOL_CLAIM),
        // The stand-ins speak plain http (the scoring API) and the local
        // key is plaintext: refused on Lambda unless allowed (never in
        // infra/template.yaml).
        ("ALLOW_INSECURE_SETTINGS", "true"),
    ]
}

/// Where each peer is; `None` starts the local one.
#[derive(Debug, Clone, Default)]
pub struct ServicesOptions {
    /// A real DynamoDB endpoint URL; `Some("")` means AWS's own regional endpoint.
    pub dynamodb_endpoint: Option<String>,
    pub region: Option<String>,
    pub sql_connection_string: Option<String>,
    pub students_table: Option<String>,
    pub assessments_table: Option<String>,
    /// A real scoring API base URL (its key from `SCORING_API_KEY` or
    /// `SCORING_API_KEY_SECRET_ARN` in the environment).
    pub scoring_api_url: Option<String>,
    /// The stand-in counts answers per assessment id (tests; off for long runs).
    pub scoring_track_ids: bool,
    /// The local TDS server's TLS setting (required by default; the
    /// connection string then trusts the CA it made).
    pub sql_encryption: crate::tds::tls::Encryption,
    /// Further settings, applied over the peers' own and the local
    /// function settings.
    pub settings: Vec<(String, String)>,
}

/// The running peers; everything started stops when this drops.
pub struct LocalServices {
    tds: Option<TdsServer>,
    dynamo: Option<LocalDynamo>,
    scoring: Option<ScoringStandIn>,
    env: Vec<(String, String)>,
}

impl LocalServices {
    pub async fn start(options: ServicesOptions) -> Result<LocalServices, String> {
        let fixtures = Fixtures::demo();
        let table = options
            .students_table
            .clone()
            .unwrap_or_else(|| "Students".to_owned());
        let tds = match options.sql_connection_string {
            Some(_) => None,
            None => Some(
                TdsServer::start(TdsServerConfig {
                    encryption: options.sql_encryption,
                    ..TdsServerConfig::default()
                })
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
                // The processor's dead-letter queue, in the same moto.
                let queue = crate::queues::create_queue(
                    &local.endpoint(),
                    crate::queues::LOCAL_DEAD_LETTER_QUEUE,
                )
                .await?;
                set("AWS_ENDPOINT_URL_SQS", local.endpoint());
                set("DEAD_LETTER_QUEUE_URL", queue);
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
        set("METRICS_EMF", "false".to_owned());
        for (k, v) in local_function_settings() {
            set(k, v.to_owned());
        }
        for (k, v) in &options.settings {
            set(k, v.clone());
        }
        Ok(LocalServices {
            tds,
            dynamo,
            scoring,
            env,
        })
    }

    /// The local TDS server, when one was started.
    pub fn tds(&self) -> Option<&TdsServer> {
        self.tds.as_ref()
    }

    /// The local DynamoDB (moto behind the fault proxy), when one was started.
    pub fn dynamo(&self) -> Option<&LocalDynamo> {
        self.dynamo.as_ref()
    }

    /// The scoring API stand-in, when one was started.
    pub fn scoring(&self) -> Option<&ScoringStandIn> {
        self.scoring.as_ref()
    }

    /// The settings that point a function at these peers: run a real binary with them.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The process environment (credentials for real endpoints) with these
    /// settings on top: what a function built in this process reads.
    pub fn process_env(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| !self.env.iter().any(|(e, _)| e == k))
            .collect();
        all.extend(self.env.iter().cloned());
        all
    }

    /// One shell line of the settings named in `keys`, for running a real binary by hand.
    pub fn env_line(&self, keys: &[&str]) -> String {
        keys.iter()
            .filter_map(|k| self.env.iter().find(|(key, _)| key == k))
            .map(|(k, v)| format!("{k}='{}'", v.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
