//! The external scoring API: `POST {SCORING_API_URL}/score` with
//! `{"assessment": ..., "history": [...], "timestamp": ms}`, answered by a
//! JSON object carrying a finite `score`.
//!
//! One HTTP client for the execution environment (built at init, its
//! connection pool bounded), one rate limiter shared by every concurrent
//! task, a timeout per request, and retries with exponential backoff and
//! full jitter on 429, 408, 5xx, timeouts and connection failures, waiting
//! at least what `Retry-After` asks (seconds or an HTTP date) when that fits
//! before the record's deadline. Other 4xx answers are not retried: the
//! record fails. Every request carries an `Idempotency-Key` stable per
//! assessment, so retries and redeliveries can be recognised by the API.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use assessments_common::config::{ConfigError, Env, InsecureSettings, SecretSetting};
use bytes::Bytes;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use serde_json::{Map, Value};
use tracing::Instrument;

/// Answers larger than this are refused (they would not fit the item).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// The limiter paces requests 5% slower than the limit: requests that leave
/// 1/limit apart can arrive closer together (scheduling, the network), and
/// this margin keeps the API's own count within its limit when they arrive
/// up to 50 ms out of step.
const RATE_GUARD: f64 = 1.05;

/// `SCORING_*` settings.
#[derive(Debug, Clone)]
pub struct ScoringSettings {
    /// `SCORING_API_URL`: the API's base URL (https; http only for loopback).
    pub url: reqwest::Url,
    /// `SCORING_API_KEY` or `SCORING_API_KEY_SECRET_ARN` (raw, or JSON with `apiKey`),
    /// sent as `Authorization: Bearer ...`.
    pub api_key: SecretSetting,
    /// `SCORING_RATE_LIMIT`: requests per second from this environment (default 100).
    pub rate_limit: u32,
    /// `SCORING_TIMEOUT_MS`: one request, connect to last byte (default 5000).
    pub timeout: Duration,
    /// `SCORING_MAX_ATTEMPTS`: attempts per record, first included (default 4).
    pub max_attempts: u32,
    /// `SCORING_BACKOFF_BASE_MS` (default 100) and `SCORING_BACKOFF_MAX_MS` (default 2000).
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl ScoringSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let text = env.required("SCORING_API_URL")?;
        let url = reqwest::Url::parse(&text).map_err(|e| ConfigError::Invalid {
            name: "SCORING_API_URL",
            reason: format!("not a URL: {e}"),
        })?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if !(url.scheme() == "https" || (url.scheme() == "http" && loopback)) {
            return Err(ConfigError::Invalid {
                name: "SCORING_API_URL",
                reason: "must be https (http only for a loopback stand-in)".to_owned(),
            });
        }
        InsecureSettings::from_env(env)?.check(
            "SCORING_API_URL",
            url.scheme() != "https",
            || {
                "an http:// URL (the API key and the students' records would cross in the clear)"
                    .to_owned()
            },
        )?;
        let ms = |name, range, default| -> Result<Duration, ConfigError> {
            Ok(Duration::from_millis(
                env.number(name, range)?.unwrap_or(default),
            ))
        };
        let settings = ScoringSettings {
            url,
            api_key: env.secret("SCORING_API_KEY", "SCORING_API_KEY_SECRET_ARN")?,
            rate_limit: env.number("SCORING_RATE_LIMIT", 1..=10_000)?.unwrap_or(100) as u32,
            timeout: ms("SCORING_TIMEOUT_MS", 50..=60_000, 5000)?,
            max_attempts: env.number("SCORING_MAX_ATTEMPTS", 1..=10)?.unwrap_or(4) as u32,
            backoff_base: ms("SCORING_BACKOFF_BASE_MS", 1..=10_000, 100)?,
            backoff_max: ms("SCORING_BACKOFF_MAX_MS", 1..=60_000, 2000)?,
        };
        if settings.backoff_max < settings.backoff_base {
            return Err(ConfigError::Invalid {
                name: "SCORING_BACKOFF_MAX_MS",
                reason: "must not be less than SCORING_BACKOFF_BASE_MS".to_owned(),
            });
        }
        Ok(settings)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoringError {
    /// A 4xx answer other than 408 and 429: retrying would not help.
    #[error("the scoring API rejected the assessment (HTTP {status})")]
    Rejected { status: u16 },
    #[error("the scoring API kept failing ({attempts} attempts, last: {last})")]
    Exhausted { attempts: u32, last: String },
    #[error("the scoring API's answer is malformed: {0}")]
    Malformed(String),
}

/// A scoring API answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub score: f64,
    /// The whole answer, stored with the assessment.
    pub result: Map<String, Value>,
}

/// What one record's scoring cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub requests: u32,
    /// Answers with 429.
    pub throttled: u32,
    pub limiter_wait: Duration,
}

pub struct ScoringClient {
    http: reqwest::Client,
    endpoint: reqwest::Url,
    authorization: HeaderValue,
    limiter: DefaultDirectRateLimiter,
    settings: ScoringSettings,
}

impl std::fmt::Debug for ScoringClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScoringClient")
            .field("endpoint", &self.endpoint.as_str())
            .field("rate_limit", &self.settings.rate_limit)
            .finish_non_exhaustive()
    }
}

/// One attempt's failure: retried or final.
enum Attempt {
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Final(ScoringError),
}

impl ScoringClient {
    /// Builds the client. `api_key` is the resolved secret; `max_connections`
    /// bounds idle connections kept (the processor's concurrency).
    pub fn new(
        settings: ScoringSettings,
        api_key: &str,
        max_connections: usize,
    ) -> Result<Self, String> {
        // `{SCORING_API_URL}/score`, keeping any base path (`Url::join` would replace
        // its last segment).
        let endpoint = reqwest::Url::parse(&format!(
            "{}/score",
            settings.url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| format!("SCORING_API_URL: {e}"))?;
        let mut authorization = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .map_err(|_| "the scoring API key is not a valid header value".to_owned())?;
        authorization.set_sensitive(true);
        // No redirects: a 3xx is the API's answer (a rejection), never a hop to
        // another host that would receive the key and the records; and an
        // https endpoint is https only.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .https_only(endpoint.scheme() == "https")
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(max_connections)
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let period = Duration::from_secs_f64(RATE_GUARD / f64::from(settings.rate_limit));
        let quota = Quota::with_period(period)
            .ok_or("SCORING_RATE_LIMIT gives a zero period")?
            .allow_burst(NonZeroU32::MIN);
        Ok(ScoringClient {
            http,
            endpoint,
            authorization,
            limiter: RateLimiter::direct(quota),
            settings,
        })
    }

    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Scores one assessment. `idempotency_key` is the same for every
    /// request about this assessment; `body` is the serialized request;
    /// retries stop when their wait would end past `stop_at`; `stats`
    /// collects what it cost, whatever the outcome.
    pub async fn score(
        &self,
        student_id: &str,
        idempotency_key: &str,
        body: Vec<u8>,
        stop_at: Instant,
        stats: &mut CallStats,
    ) -> Result<Score, ScoringError> {
        let body = Bytes::from(body);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let waited = Instant::now();
            self.limiter.until_ready().await;
            stats.limiter_wait += waited.elapsed();
            stats.requests += 1;
            let span = tracing::trace_span!(
                target: "xray",
                "scoring API",
                namespace = "remote",
                // Origin and path only: no credentials or query string in traces.
                url = format_args!("{}{}", self.endpoint.origin().ascii_serialization(), self.endpoint.path()),
                attempt,
                http_status = tracing::field::Empty,
                failure = tracing::field::Empty,
            );
            let failure = match self
                .attempt(student_id, idempotency_key, body.clone(), stats, &span)
                .instrument(span.clone())
                .await
            {
                Ok(score) => return Ok(score),
                Err(failure) => failure,
            };
            let delay = self.retry_delay(failure, attempt, stop_at)?;
            tokio::time::sleep(delay).await;
        }
    }

    /// After a failed attempt: how long to wait before the next, or the
    /// error that ends the call (a final answer, the attempts spent, or a
    /// wait that would outlive the record: SQS redelivers it after the
    /// visibility timeout).
    fn retry_delay(
        &self,
        failure: Attempt,
        attempt: u32,
        stop_at: Instant,
    ) -> Result<Duration, ScoringError> {
        let (reason, after) = match failure {
            Attempt::Final(error) => return Err(error),
            Attempt::Retry { reason, .. } if attempt >= self.settings.max_attempts => {
                return Err(ScoringError::Exhausted {
                    attempts: attempt,
                    last: reason,
                });
            }
            Attempt::Retry { reason, after } => (reason, after),
        };
        let delay = self.backoff(attempt, after);
        if Instant::now() + delay >= stop_at {
            let asked = if after.is_some() {
                " (Retry-After)"
            } else {
                ""
            };
            return Err(ScoringError::Exhausted {
                attempts: attempt,
                last: format!(
                    "{reason}; the next try, {}ms later{asked}, would end past the invocation's deadline",
                    delay.as_millis(),
                ),
            });
        }
        tracing::debug!(attempt, %reason, delay_ms = delay.as_millis() as u64, "scoring retry");
        Ok(delay)
    }

    /// Full jitter: uniform in [0, min(max, base * 2^(attempt-1))], and at
    /// least what a `Retry-After` asked (the caller checks it against the deadline).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .settings
            .backoff_base
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.settings.backoff_max);
        let jittered = ceiling.mul_f64(fastrand::f64());
        match retry_after {
            Some(asked) => jittered.max(asked),
            None => jittered,
        }
    }

    async fn attempt(
        &self,
        student_id: &str,
        idempotency_key: &str,
        body: Bytes,
        stats: &mut CallStats,
        span: &tracing::Span,
    ) -> Result<Score, Attempt> {
        let request = self
            .http
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(AUTHORIZATION, self.authorization.clone())
            .header("X-Student-Id", student_id)
            .header("Idempotency-Key", idempotency_key)
            .body(body);
        let mut response = request.send().await.map_err(|e| {
            let reason = transport_reason(&e);
            span.record("failure", reason.as_str());
            Attempt::Retry {
                reason,
                after: None,
            }
        })?;
        let status = response.status();
        span.record("http_status", status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            stats.throttled += 1;
        }
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            let after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, std::time::SystemTime::now()));
            return Err(Attempt::Retry {
                reason: format!("HTTP {}", status.as_u16()),
                after,
            });
        }
        if !status.is_success() {
            return Err(Attempt::Final(ScoringError::Rejected {
                status: status.as_u16(),
            }));
        }
        let answer = read_answer(&mut response).await?;
        parse_answer(&answer).map_err(Attempt::Final)
    }
}

/// The answer's body, at most [`MAX_RESPONSE_BYTES`].
async fn read_answer(response: &mut reqwest::Response) -> Result<Vec<u8>, Attempt> {
    let mut answer = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if answer.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(Attempt::Final(ScoringError::Malformed(format!(
                        "larger than {MAX_RESPONSE_BYTES} bytes"
                    ))));
                }
                answer.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(answer),
            Err(e) => {
                return Err(Attempt::Retry {
                    reason: transport_reason(&e),
                    after: None,
                });
            }
        }
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds, or an HTTP date (then
/// the wait until it; a date already past means now).
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A transport failure, named without the URL (it may carry a key in a query string).
fn transport_reason(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else if error.is_body() || error.is_decode() {
        "the answer was cut off".to_owned()
    } else {
        "request failed".to_owned()
    }
}

/// The answer must be a JSON object with a finite numeric `score`.
fn parse_answer(bytes: &[u8]) -> Result<Score, ScoringError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ScoringError::Malformed(format!("not JSON ({e})")))?;
    let Value::Object(result) = value else {
        return Err(ScoringError::Malformed("not a JSON object".to_owned()));
    };
    let score = result
        .get("score")
        .and_then(Value::as_f64)
        .filter(|s| s.is_finite())
        .ok_or_else(|| ScoringError::Malformed("no finite numeric score".to_owned()))?;
    Ok(Score { score, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Env {
        let mut pairs = vec![
            ("SCORING_API_URL", "https://scoring.example.com/v1"),
            ("SCORING_API_KEY", "k"),
        ];
        pairs.extend_from_slice(extra);
        Env::from_pairs(pairs)
    }

    #[test]
    fn settings_require_https_except_for_loopback() {
        assert!(ScoringSettings::from_env(&env(&[])).is_ok());
        let plain = env(&[("SCORING_API_URL", "http://scoring.example.com")]);
        let error = ScoringSettings::from_env(&plain).unwrap_err();
        assert!(error.to_string().starts_with("SCORING_API_URL"), "{error}");
        let local = env(&[("SCORING_API_URL", "http://127.0.0.1:9000")]);
        assert!(ScoringSettings::from_env(&local).is_ok());
        // On Lambda, http (even to loopback) only where insecure settings are allowed.
        let lambda = [
            ("SCORING_API_URL", "http://127.0.0.1:9000"),
            ("SCORING_API_KEY_SECRET_ARN", "arn:aws:secretsmanager:x"),
            ("AWS_LAMBDA_FUNCTION_NAME", "processor"),
        ];
        let error = ScoringSettings::from_env(&Env::from_pairs(lambda)).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("SCORING_API_URL is refused on Lambda: an http:// URL"),
            "{error}"
        );
        let mut allowed = lambda.to_vec();
        allowed.push(("ALLOW_INSECURE_SETTINGS", "true"));
        assert!(ScoringSettings::from_env(&Env::from_pairs(allowed)).is_ok());
        let slow = env(&[("SCORING_RATE_LIMIT", "0")]);
        assert!(
            ScoringSettings::from_env(&slow)
                .unwrap_err()
                .to_string()
                .starts_with("SCORING_RATE_LIMIT")
        );
    }

    #[test]
    fn the_endpoint_keeps_the_base_path() {
        for (base, expected) in [
            ("https://s.example.com", "https://s.example.com/score"),
            ("https://s.example.com/v1", "https://s.example.com/v1/score"),
            (
                "https://s.example.com/v1/",
                "https://s.example.com/v1/score",
            ),
        ] {
            let settings =
                ScoringSettings::from_env(&env(&[("SCORING_API_URL", base)])).expect("settings");
            let client = ScoringClient::new(settings, "k", 4).expect("client");
            assert_eq!(client.endpoint(), expected);
        }
    }

    #[test]
    fn backoff_grows_within_its_cap_and_honours_retry_after() {
        let settings = ScoringSettings::from_env(&env(&[])).expect("settings");
        let client = ScoringClient::new(settings, "k", 4).expect("client");
        for attempt in 1..=8 {
            let ceiling = Duration::from_millis((100u64 << (attempt - 1)).min(2000));
            for _ in 0..50 {
                assert!(client.backoff(attempt, None) <= ceiling);
            }
        }
        assert!(client.backoff(1, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
        // What the API asked, even past the backoff's own cap (the caller
        // gives up when it would end past the deadline).
        assert_eq!(
            client.backoff(1, Some(Duration::from_secs(60))),
            Duration::from_secs(60)
        );
    }

    #[test]
    fn retry_after_is_read_in_both_forms() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").expect("date");
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:40 GMT", now),
            Some(Duration::from_secs(3))
        );
        // The obsolete forms HTTP still asks recipients to accept.
        assert_eq!(
            retry_after("Sunday, 06-Nov-94 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date already past: retry now"
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }

    #[test]
    fn answers_without_a_finite_score_are_malformed() {
        assert_eq!(
            parse_answer(br#"{"score": 71.5, "band": "B"}"#)
                .expect("ok")
                .score,
            71.5
        );
        for bad in [&b"[]"[..], b"{}", br#"{"score":"71"}"#, b"nope"] {
            assert!(matches!(parse_answer(bad), Err(ScoringError::Malformed(_))));
        }
    }
}
