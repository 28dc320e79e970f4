//! The two sides: a deployed function (invoked with the AWS SDK as AppSync
//! invokes it) or a local bootstrap (run as Lambda runs it, `local-lambda`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assessments_common::aws::AwsSettings;
use local_lambda::function::{Function, lambda_env};
use local_lambda::runtime_api::{InvocationResult, RuntimeApi};
use serde_json::Value;

use crate::INVOKE_TIMEOUT;

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A local bootstrap, with settings over the local targets' environment.
    Local {
        binary: PathBuf,
        settings: Vec<(String, String)>,
    },
    /// A deployed function, version or alias (a name or ARN, optionally `:QUALIFIER`).
    Lambda { function: String },
}

impl Target {
    /// `local` (the `assessments-resolver` beside this program), `local:PATH`,
    /// or `lambda:NAME`.
    pub fn parse(text: &str) -> Result<Target, String> {
        if let Some(function) = text.strip_prefix("lambda:") {
            if function.is_empty() {
                return Err("lambda: needs a function name, ARN or name:alias".to_owned());
            }
            return Ok(Target::Lambda {
                function: function.to_owned(),
            });
        }
        let binary = match text.strip_prefix("local:") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ if text == "local" => beside_this_program("assessments-resolver")?,
            _ => {
                return Err(format!(
                    "{text:?}: a target is local, local:PATH or lambda:NAME"
                ));
            }
        };
        Ok(Target::Local {
            binary,
            settings: Vec::new(),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            Target::Local { binary, settings } if settings.is_empty() => {
                format!("local:{}", binary.display())
            }
            Target::Local { binary, settings } => {
                let named: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
                format!("local:{} ({})", binary.display(), named.join(", "))
            }
            Target::Lambda { function } => format!("lambda:{function}"),
        }
    }
}

fn beside_this_program(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let path = exe.with_file_name(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "no {} beside this program: build it (cargo build --bin {name}) or name one with local:PATH",
            path.display()
        ))
    }
}

/// How an invocation ended, as Lambda answers it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Response(Value),
    /// `X-Amz-Function-Error`: the body is the error document.
    FunctionError(Value),
}

/// A running target.
pub(crate) enum Runner {
    Local {
        api: Arc<RuntimeApi>,
        _function: Function,
    },
    Lambda {
        client: aws_sdk_lambda::Client,
        function: String,
    },
}

impl Runner {
    pub async fn invoke(&self, event: &Value) -> Result<Answer, String> {
        match self {
            Runner::Local { api, .. } => match api.invoke(event.clone(), INVOKE_TIMEOUT).await? {
                InvocationResult::Response(value) => Ok(Answer::Response(value)),
                InvocationResult::Error(value) => Ok(Answer::FunctionError(value)),
            },
            Runner::Lambda { client, function } => {
                let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                let call = client
                    .invoke()
                    .function_name(function)
                    .payload(aws_sdk_lambda::primitives::Blob::new(body))
                    .send();
                // Bounded by the client's operation timeout (INVOKE_TIMEOUT).
                let output = call.await.map_err(|e| {
                    format!(
                        "Invoke failed (operation timeout {INVOKE_TIMEOUT:?}): {}",
                        aws_sdk_lambda::error::DisplayErrorContext(e)
                    )
                })?;
                let payload = output.payload().map(|p| p.as_ref()).unwrap_or_default();
                let value: Value = serde_json::from_slice(payload)
                    .map_err(|e| format!("the answer is not JSON: {e}"))?;
                Ok(match output.function_error() {
                    Some(_) => Answer::FunctionError(value),
                    None => Answer::Response(value),
                })
            }
        }
    }

    /// The invocation and its wall time.
    pub async fn timed(&self, event: &Value) -> (Result<Answer, String>, Duration) {
        let start = Instant::now();
        let outcome = self.invoke(event).await;
        (outcome, start.elapsed())
    }
}

/// What the targets share: the environment local targets start from, the
/// AWS configuration of deployed ones (read once, if one is deployed).
pub(crate) struct Shared {
    pub local_env: Vec<(String, String)>,
    pub sdk: Option<aws_config::SdkConfig>,
    pub aws: AwsSettings,
    pub lambda_endpoint: Option<String>,
}

/// Starts `target`: a local bootstrap (its init over), or a client of a deployed function.
pub(crate) async fn start_runner(
    target: &Target,
    side: &str,
    shared: &mut Shared,
) -> Result<Runner, String> {
    match target {
        Target::Local { binary, settings } => start_local(binary, settings, side, shared).await,
        Target::Lambda { function } => {
            if shared.sdk.is_none() {
                // The operator's own credentials and region (profile, SSO, environment).
                shared.sdk = Some(shared.aws.sdk_config().await);
            }
            let Some(sdk) = &shared.sdk else {
                return Err("no AWS configuration".to_owned());
            };
            use aws_sdk_lambda::config::timeout::TimeoutConfig;
            // An invocation's own bound (the SDK config's is DynamoDB's), and
            // a retry for throttling.
            let mut config = aws_sdk_lambda::config::Builder::from(sdk)
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_timeout(INVOKE_TIMEOUT)
                        .build(),
                )
                .retry_config(
                    aws_sdk_lambda::config::retry::RetryConfig::standard().with_max_attempts(3),
                );
            if let Some(url) = &shared.lambda_endpoint {
                config = config.endpoint_url(url);
            }
            let config = config.build();
            Ok(Runner::Lambda {
                client: aws_sdk_lambda::Client::from_conf(config),
                function: function.clone(),
            })
        }
    }
}

/// A local bootstrap run as Lambda runs it: the shared environment with
/// `settings` over it, and the Runtime API's; its init over.
async fn start_local(
    binary: &Path,
    settings: &[(String, String)],
    side: &str,
    shared: &Shared,
) -> Result<Runner, String> {
    if !binary.is_file() {
        return Err(format!("{side}: {} is not a file", binary.display()));
    }
    let api = Arc::new(
        RuntimeApi::start()
            .await
            .map_err(|e| format!("{side}: the local Runtime API: {e}"))?,
    );
    let mut env = shared.local_env.clone();
    env.retain(|(k, _)| !settings.iter().any(|(s, _)| s == k));
    env.extend(settings.iter().cloned());
    env.extend(lambda_env(&api, &format!("assessments-resolver-{side}")));
    let binary = binary
        .to_str()
        .ok_or_else(|| format!("{side}: the path is not UTF-8"))?;
    let mut function = Function::try_spawn(binary, env)
        .map_err(|e| format!("{side}: cannot start {binary}: {e}"))?;
    ready(&api, &mut function, side).await?;
    Ok(Runner::Local {
        _function: function,
        api,
    })
}

/// Waits until the bootstrap's init is over (it polls for an invocation),
/// up to [`INVOKE_TIMEOUT`]: an init that fails, or a process that exits, is
/// this side's error, not a timeout per event.
async fn ready(api: &RuntimeApi, function: &mut Function, side: &str) -> Result<(), String> {
    let deadline = Instant::now() + INVOKE_TIMEOUT;
    loop {
        if let Some(error) = api.init_errors().into_iter().next() {
            return Err(format!("{side}: the bootstrap's init failed: {error}"));
        }
        if api.first_poll().is_some() {
            return Ok(());
        }
        if let Ok(Some(status)) = function.child.try_wait() {
            return Err(format!(
                "{side}: the bootstrap exited during init ({status})"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{side}: the bootstrap's init did not end within {INVOKE_TIMEOUT:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("lambda:fn:live"),
            Ok(Target::Lambda {
                function: "fn:live".to_owned()
            })
        );
        assert!(matches!(
            Target::parse("local:/x"),
            Ok(Target::Local { .. })
        ));
        assert!(Target::parse("lambda:").is_err());
        assert!(Target::parse("elsewhere").is_err());
    }
}
