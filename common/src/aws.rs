//! The AWS SDK's shared configuration, built once at init by both functions
//! (the resolver and the assessment processor): region, credentials, the
//! retry strategy and timeouts, the DynamoDB endpoint override, and reads
//! from Secrets Manager.

use std::time::Duration;

use aws_sdk_dynamodb::config::{Credentials, Region};

use crate::config::{ConfigError, Env, SecretSetting};

/// Opening a connection to an AWS endpoint (at most the operation timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// The roots AWS's public endpoints chain to (Amazon Trust Services: Amazon
/// Root CA 1 to 4 and Starfield Services Root G2, copied from Debian's
/// ca-certificates), compiled in. With no endpoint override the SDK's HTTPS
/// client trusts these instead of reading the system store, which costs
/// ~20 M instructions of init (every PEM under /etc/ssl parsed) for endpoints
/// that only ever present Amazon's chain; see docs/security.md, "Roots".
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("../certs/amazon-trust-services.pem");

/// The endpoint overrides that make the SDK trust the system store when one
/// is an `https://` URL: an overridden endpoint (a proxy, DynamoDB Local
/// behind TLS) may present any CA the machine trusts. (An `http://` one, the
/// local stack's, uses no TLS at all.)
const ENDPOINT_OVERRIDES: [&str; 6] = [
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    // The PreTraffic hook's (deploy-hook/).
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_CODEDEPLOY",
];

/// The SDK settings both functions read from the environment.
#[derive(Clone)]
pub struct AwsSettings {
    /// `AWS_ENDPOINT_URL_DYNAMODB`: the SDK's standard endpoint override.
    pub dynamodb_endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_SQS` (the processor's dead-letter queue), read here
    /// like DynamoDB's so that settings given as an `Env` apply too.
    pub sqs_endpoint: Option<String>,
    /// `AWS_REGION` (or `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// `DYNAMODB_TIMEOUT_MS`: one DynamoDB operation, retries included (default 2000).
    pub dynamodb_timeout: Duration,
    /// `DYNAMODB_MAX_ATTEMPTS`: attempts per operation, first included (default 4).
    pub dynamodb_max_attempts: u32,
    /// `SECRETS_TIMEOUT_MS`: one Secrets Manager read, retries included (default 2000).
    pub secrets_timeout: Duration,
    /// Static credentials when the environment carries them (`AWS_ACCESS_KEY_ID`...);
    /// otherwise the SDK's default chain (the execution role on Lambda).
    credentials: Option<(String, String, Option<String>)>,
    /// Whether any of `ENDPOINT_OVERRIDES` is an `https://` URL: the system's
    /// roots are trusted then, Amazon's compiled-in roots otherwise.
    system_roots: bool,
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("dynamodb_endpoint", &self.dynamodb_endpoint)
            .field("sqs_endpoint", &self.sqs_endpoint)
            .field("region", &self.region)
            .field("dynamodb_timeout", &self.dynamodb_timeout)
            .field("dynamodb_max_attempts", &self.dynamodb_max_attempts)
            .field("secrets_timeout", &self.secrets_timeout)
            .field("static_credentials", &self.credentials.is_some())
            .field("system_roots", &self.system_roots)
            .finish()
    }
}

impl AwsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let credentials = match (
            env.string("AWS_ACCESS_KEY_ID")?,
            env.string("AWS_SECRET_ACCESS_KEY")?,
        ) {
            (Some(id), Some(secret)) => Some((id, secret, env.string("AWS_SESSION_TOKEN")?)),
            _ => None,
        };
        let mut system_roots = false;
        for name in ENDPOINT_OVERRIDES {
            let url = env.string(name)?.unwrap_or_default();
            system_roots |= url
                .get(..8)
                .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        }
        Ok(AwsSettings {
            dynamodb_endpoint: env.string("AWS_ENDPOINT_URL_DYNAMODB")?,
            sqs_endpoint: env.string("AWS_ENDPOINT_URL_SQS")?,
            region: env
                .string("AWS_REGION")?
                .or(env.string("AWS_DEFAULT_REGION")?),
            dynamodb_timeout: Duration::from_millis(
                env.number("DYNAMODB_TIMEOUT_MS", 1..=60_000)?
                    .unwrap_or(2000),
            ),
            dynamodb_max_attempts: env.number("DYNAMODB_MAX_ATTEMPTS", 1..=10)?.unwrap_or(4) as u32,
            secrets_timeout: Duration::from_millis(
                env.number("SECRETS_TIMEOUT_MS", 1..=60_000)?
                    .unwrap_or(2000),
            ),
            credentials,
            system_roots,
        })
    }

    /// The trust store of the SDK's HTTPS client (see `AMAZON_TRUST_SERVICES`).
    fn trust_store(&self) -> aws_smithy_http_client::tls::TrustStore {
        use aws_smithy_http_client::tls::TrustStore;
        if self.system_roots {
            TrustStore::default()
        } else {
            TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES)
        }
    }

    /// The HTTPS client every SDK client shares: the SDK's own (hyper, rustls
    /// with aws-lc), with `trust_store`'s roots. `None` (the SDK's default
    /// client, the system's roots) if the TLS context is refused, which the
    /// SDK's rustls provider never does today.
    fn https_client(&self) -> Option<aws_sdk_dynamodb::config::SharedHttpClient> {
        use aws_smithy_http_client::tls::{Provider, TlsContext, rustls_provider::CryptoMode};
        let context = match TlsContext::builder()
            .with_trust_store(self.trust_store())
            .build()
        {
            Ok(context) => context,
            Err(e) => {
                tracing::warn!(error = %e, "the SDK's TLS context was refused: the system's roots are used");
                return None;
            }
        };
        Some(
            aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .tls_context(context)
                .build_https(),
        )
    }

    /// The timeouts `sdk_config` gives the SDK, for error messages.
    pub fn dynamodb_timeouts(&self) -> crate::dynamo::DynamoTimeouts {
        crate::dynamo::DynamoTimeouts {
            operation: self.dynamodb_timeout,
            attempt: self.dynamodb_timeout / self.dynamodb_max_attempts.max(1),
            connect: CONNECT_TIMEOUT.min(self.dynamodb_timeout),
        }
    }

    /// The SDK configuration every client is built from.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        use aws_config::retry::RetryConfig;
        use aws_config::timeout::TimeoutConfig;
        let attempts = self.dynamodb_max_attempts;
        let timeouts = self.dynamodb_timeouts();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            // Throttling and transient errors: exponential backoff with jitter,
            // starting small so retries fit in an invocation's time budget.
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(attempts)
                    .with_initial_backoff(Duration::from_millis(20))
                    .with_max_backoff(Duration::from_millis(400)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(timeouts.connect)
                    .operation_timeout(timeouts.operation)
                    .operation_attempt_timeout(timeouts.attempt)
                    .build(),
            );
        if let Some(client) = self.https_client() {
            loader = loader.http_client(client);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret, token)) = &self.credentials {
            loader = loader.credentials_provider(Credentials::new(
                id,
                secret,
                token.clone(),
                None,
                "environment",
            ));
        }
        loader.load().await
    }

    /// The one DynamoDB client of the environment.
    pub fn dynamodb_client(&self, sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
        let mut builder = aws_sdk_dynamodb::config::Builder::from(sdk);
        if let Some(endpoint) = &self.dynamodb_endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        aws_sdk_dynamodb::Client::from_conf(builder.build())
    }
}

/// A secret that could not be read. Never carries the secret's value.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the secret {arn}: {reason}")]
pub struct SecretError {
    pub arn: String,
    pub reason: String,
}

/// Secrets Manager, read at init (and when the `nextToken` keys rotate),
/// every read bounded by `SECRETS_TIMEOUT_MS` of its own: a secret that does
/// not come fails init naming that bound, not DynamoDB's.
#[derive(Debug, Clone)]
pub struct Secrets {
    client: aws_sdk_secretsmanager::Client,
    timeout: Duration,
}

impl Secrets {
    pub fn new(sdk: &aws_config::SdkConfig, settings: &AwsSettings) -> Self {
        use aws_config::timeout::TimeoutConfig;
        let timeout = settings.secrets_timeout;
        let config = aws_sdk_secretsmanager::config::Builder::from(sdk)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT.min(timeout))
                    .operation_timeout(timeout)
                    .build(),
            )
            .build();
        Secrets {
            client: aws_sdk_secretsmanager::Client::from_conf(config),
            timeout,
        }
    }

    /// The value of a secret setting: given directly, or its secret's
    /// current version (see [`Secrets::read_stage`]).
    pub async fn resolve(
        &self,
        setting: &SecretSetting,
        json_field: &str,
    ) -> Result<String, SecretError> {
        match setting {
            SecretSetting::Value(value) => Ok(value.clone()),
            SecretSetting::SecretArn(arn) => {
                match self.read_stage(arn, "AWSCURRENT", json_field).await? {
                    Some(version) => Ok(version.value),
                    None => Err(SecretError {
                        arn: arn.clone(),
                        reason: "no AWSCURRENT version".to_owned(),
                    }),
                }
            }
        }
    }

    /// The version of a secret with staging label `stage` (`AWSCURRENT`,
    /// `AWSPREVIOUS`), `None` when a label other than `AWSCURRENT` is on no
    /// version. Its value is either the setting itself, or a JSON object
    /// carrying it in `json_field` (how the console stores key/value secrets).
    pub async fn read_stage(
        &self,
        arn: &str,
        stage: &str,
        json_field: &str,
    ) -> Result<Option<SecretVersion>, SecretError> {
        use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
        let failed = |reason: String| SecretError {
            arn: arn.to_owned(),
            reason,
        };
        let timed_out = || {
            failed(format!(
                "no answer within SECRETS_TIMEOUT_MS ({} ms)",
                self.timeout.as_millis()
            ))
        };
        let request = self
            .client
            .get_secret_value()
            .secret_id(arn)
            .version_stage(stage);
        // The SDK's operation timeout bounds the call; this bounds the rest
        // (credentials, endpoint resolution) by the same setting.
        let output = match tokio::time::timeout(self.timeout, request.send()).await {
            Err(_) | Ok(Err(SdkError::TimeoutError(_))) => return Err(timed_out()),
            Ok(Ok(output)) => output,
            Ok(Err(e))
                if stage != "AWSCURRENT" && e.code() == Some("ResourceNotFoundException") =>
            {
                return Ok(None);
            }
            Ok(Err(e)) => {
                return Err(failed(
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
                ));
            }
        };
        let value = output
            .secret_string()
            .ok_or_else(|| failed(format!("the {stage} version has no string value")))?;
        let value = secret_value(value, json_field).map_err(failed)?;
        let created = output
            .created_date()
            .and_then(|d| std::time::SystemTime::try_from(*d).ok());
        Ok(Some(SecretVersion { value, created }))
    }
}

/// One version of a secret, by staging label.
#[derive(Clone)]
pub struct SecretVersion {
    pub value: String,
    /// When this version was created (for `AWSCURRENT`: when the secret was last rotated).
    pub created: Option<std::time::SystemTime>,
}

impl std::fmt::Debug for SecretVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretVersion")
            .field("value", &"<redacted>")
            .field("created", &self.created)
            .finish()
    }
}

fn secret_value(value: &str, json_field: &str) -> Result<String, String> {
    match serde_json::from_str::<serde_json::Value>(value) {
        Ok(serde_json::Value::Object(json)) => json
            .get(json_field)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| format!("the secret's JSON has no {json_field} field")),
        _ if value.is_empty() => Err("the secret is empty".to_owned()),
        _ => Ok(value.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compiled_in_roots_are_amazons_five_certificates() {
        use rustls_pki_types::{CertificateDer, pem::PemObject};
        let certs: Vec<_> = CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES)
            .collect::<Result<_, _>>()
            .expect("the compiled-in PEM parses");
        assert_eq!(certs.len(), 5);
        // Each is a DER SEQUENCE of a plausible certificate's size.
        assert!(certs.iter().all(|c| c[0] == 0x30 && c.len() > 400));
    }

    #[test]
    fn the_system_roots_are_trusted_only_when_an_https_endpoint_is_overridden() {
        let settings = AwsSettings::from_env(&Env::from_pairs([("AWS_REGION", "eu-west-1")]))
            .expect("settings");
        assert!(!settings.system_roots);
        let compiled_in = format!("{:?}", settings.trust_store());
        assert!(
            compiled_in.contains("enable_native_roots: false"),
            "{compiled_in}"
        );
        let plain = Env::from_pairs([("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:8000")]);
        assert!(
            !AwsSettings::from_env(&plain)
                .expect("settings")
                .system_roots
        );
        for name in ENDPOINT_OVERRIDES {
            let env = Env::from_pairs([(name, "HTTPS://dynamodb.local.example:8443")]);
            let settings = AwsSettings::from_env(&env).expect("settings");
            assert!(settings.system_roots, "{name}");
            let system = format!("{:?}", settings.trust_store());
            assert!(
                system.contains("enable_native_roots: true"),
                "{name}: {system}"
            );
        }
    }

    #[test]
    fn a_secret_is_its_raw_value_or_a_field_of_its_json() {
        assert_eq!(secret_value("abc", "apiKey"), Ok("abc".to_owned()));
        assert_eq!(
            secret_value(r#"{"apiKey":"k1","other":1}"#, "apiKey"),
            Ok("k1".to_owned())
        );
        let missing = secret_value(r#"{"key":"k1"}"#, "apiKey").unwrap_err();
        assert!(missing.contains("apiKey"), "{missing}");
        assert!(!missing.contains("k1"), "the value leaked: {missing}");
        assert!(secret_value("", "apiKey").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn a_secret_that_does_not_come_fails_naming_its_own_bound() {
        // Accepts connections (the kernel does) and never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("DYNAMODB_TIMEOUT_MS", "60000"),
            ("SECRETS_TIMEOUT_MS", "750"),
        ]);
        let settings = AwsSettings::from_env(&env).expect("settings");
        let endpoint = format!("http://{}", silent.local_addr().expect("addr"));
        let mut sdk = settings.sdk_config().await.into_builder();
        sdk.set_endpoint_url(Some(endpoint));
        let secrets = Secrets::new(&sdk.build(), &settings);
        let setting =
            SecretSetting::SecretArn("arn:aws:secretsmanager:us-east-1:1:secret:x".into());
        let started = tokio::time::Instant::now();
        let error = secrets.resolve(&setting, "apiKey").await.unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read the secret arn:aws:secretsmanager:us-east-1:1:secret:x: \
             no answer within SECRETS_TIMEOUT_MS (750 ms)"
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(60));
        drop(silent);
    }

    #[test]
    fn debug_output_hides_static_credentials() {
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "very-secret"),
        ]);
        let shown = format!("{:?}", AwsSettings::from_env(&env).expect("settings"));
        assert!(!shown.contains("very-secret") && !shown.contains("AKIDEXAMPLE"));
        assert!(shown.contains("static_credentials: true"));
    }
}
