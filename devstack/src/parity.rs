//! `parity`: replays AppSync events against two targets (the running service
//! and the candidate) and compares their answers item by item
//! (docs/cutover.md). A target is a deployed function or alias (`lambda:NAME`,
//! invoked with the AWS SDK as AppSync invokes it) or a local bootstrap
//! (`local[:PATH]`, run as Lambda runs it against the playground's stack).
//!
//! What may legitimately differ is left out of the comparison: `processedAt`
//! (when the legacy component scored the row), the request id an error message
//! names, and the bytes of a `nextToken` when both tokens page to the same next
//! page (each side's token is followed on its own side, page by page).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use assessments_common::aws::AwsSettings;
use serde_json::{Value, json};
use testkit::appsync::{ResolverEvent, identity};
use testkit::fixtures::{DEMO_SCHOOL_A, Fixtures};
use testkit::function::{Function, lambda_env};
use testkit::lambda_api::{InvocationResult, RuntimeApi};

/// How long one invocation may take before it counts as failed: the
/// function's own timeout (20 s) and a cold start.
pub const INVOKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The most pages followed for one item when the tokens differ.
pub const MAX_FOLLOWED_PAGES: usize = 50;
/// The most differing paths listed per item.
const MAX_PATHS: usize = 10;

/// One side of the comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A local bootstrap, with settings over the local stack's.
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

    fn describe(&self) -> String {
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
enum Runner {
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
    async fn invoke(&self, event: &Value) -> Result<Answer, String> {
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
    async fn timed(&self, event: &Value) -> (Result<Answer, String>, Duration) {
        let start = Instant::now();
        let outcome = self.invoke(event).await;
        (outcome, start.elapsed())
    }
}

/// One field's answer: a page, or an error (`errorType`, message).
#[derive(Debug, Clone, PartialEq)]
enum Item {
    Page(Value),
    Error {
        error_type: Value,
        message: Value,
    },
    /// Not an answer AppSync could use (a batch answer of the wrong shape...).
    Malformed(Value),
}

impl Item {
    fn to_json(&self) -> Value {
        match self {
            Item::Page(page) => json!({ "data": page }),
            Item::Error {
                error_type,
                message,
            } => json!({ "data": null, "errorType": error_type, "errorMessage": message }),
            Item::Malformed(value) => json!({ "malformed": value }),
        }
    }

    fn next_token(&self) -> Option<&str> {
        match self {
            Item::Page(page) => page.get("nextToken").and_then(Value::as_str),
            _ => None,
        }
    }

    /// The item with what may differ taken out: `processedAt`, the request id
    /// of a message, the token's bytes (kept only as present or absent).
    fn normalized(&self) -> Value {
        let mut value = self.to_json();
        strip_processed_at(&mut value);
        if let Some(token) = value.pointer_mut("/data/nextToken")
            && token.is_string()
        {
            *token = json!("<token>");
        }
        if let Some(Value::String(message)) = value.get_mut("errorMessage") {
            *message = mask_request_id(message);
        }
        value
    }
}

fn strip_processed_at(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("processedAt");
            map.values_mut().for_each(strip_processed_at);
        }
        Value::Array(values) => values.iter_mut().for_each(strip_processed_at),
        _ => {}
    }
}

/// `... request id 8f1c-...)` → `... request id <id>)`: each invocation has its own.
fn mask_request_id(message: &str) -> String {
    const MARK: &str = "request id ";
    let Some(at) = message.find(MARK) else {
        return message.to_owned();
    };
    let start = at + MARK.len();
    let end = message[start..]
        .find(|c: char| c.is_whitespace() || c == ')' || c == ',')
        .map_or(message.len(), |n| start + n);
    format!("{}<id>{}", &message[..start], &message[end..])
}

/// The items of an answer: one for a single field, one per event of a batch.
fn items_of(event: &Value, answer: &Answer) -> Vec<Item> {
    let error = |doc: &Value| Item::Error {
        error_type: doc.get("errorType").cloned().unwrap_or(Value::Null),
        message: doc.get("errorMessage").cloned().unwrap_or(Value::Null),
    };
    match (event.as_array(), answer) {
        (None, Answer::Response(page)) => vec![Item::Page(page.clone())],
        (None, Answer::FunctionError(doc)) => vec![error(doc)],
        (Some(events), Answer::Response(Value::Array(answers)))
            if answers.len() == events.len() =>
        {
            answers
                .iter()
                .map(|answer| match answer.get("data") {
                    Some(data) if !data.is_null() => Item::Page(data.clone()),
                    _ if answer.get("errorType").is_some_and(|t| !t.is_null()) => error(answer),
                    _ => Item::Malformed(answer.clone()),
                })
                .collect()
        }
        (Some(events), other) => {
            let whole = match other {
                Answer::Response(value) => Item::Malformed(value.clone()),
                Answer::FunctionError(doc) => error(doc),
            };
            vec![whole; events.len()]
        }
    }
}

/// The single-field event of item `index` of `event`.
fn item_event(event: &Value, index: usize) -> Value {
    match event.as_array() {
        Some(events) => events.get(index).cloned().unwrap_or(Value::Null),
        None => event.clone(),
    }
}

fn with_token(event: &Value, token: &str) -> Value {
    let mut event = event.clone();
    if let Some(arguments) = event.get_mut("arguments").and_then(Value::as_object_mut) {
        arguments.insert("nextToken".to_owned(), json!(token));
    }
    event
}

/// Where two JSON values differ (JSON pointers), at most [`MAX_PATHS`].
fn differing_paths(a: &Value, b: &Value, path: &str, found: &mut Vec<String>) {
    if found.len() >= MAX_PATHS || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let (va, vb) = (
                    x.get(key).unwrap_or(&Value::Null),
                    y.get(key).unwrap_or(&Value::Null),
                );
                differing_paths(va, vb, &format!("{path}/{key}"), found);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differing_paths(va, vb, &format!("{path}/{i}"), found);
            }
        }
        _ => found.push(if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

/// What the run found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub old: String,
    pub new: String,
    pub events: usize,
    pub items: usize,
    pub equal: usize,
    pub differ: usize,
    /// Invocations that failed on each side (no answer to compare).
    pub failed_old: usize,
    pub failed_new: usize,
    /// Items answered with an errorType on each side (compared like data).
    pub error_answers_old: usize,
    pub error_answers_new: usize,
    /// Pages read to compare differing tokens, per side.
    pub followed_pages: usize,
    pub latency_old: Latency,
    pub latency_new: Latency,
    pub diff_file: Option<PathBuf>,
    /// Entries written to it: one per differing item, one per failed invocation.
    pub diff_pairs: usize,
}

impl Summary {
    /// Exit status 1 for any difference or failed invocation: parity is not shown.
    pub fn passed(&self) -> bool {
        self.differ == 0 && self.failed_old == 0 && self.failed_new == 0
    }
}

/// Percentiles of one side's invocation times.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    samples_us: Vec<u64>,
}

impl Latency {
    fn record(&mut self, elapsed: Duration) {
        self.samples_us
            .push(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    /// The `q` quantile (0..=1) in milliseconds, nearest rank.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.samples_us.is_empty() {
            return 0.0;
        }
        let mut sorted = self.samples_us.clone();
        sorted.sort_unstable();
        let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
        sorted[rank - 1] as f64 / 1000.0
    }

    pub fn count(&self) -> usize {
        self.samples_us.len()
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "parity: {} events, {} items", self.events, self.items)?;
        writeln!(f, "  old      {}", self.old)?;
        writeln!(f, "  new      {}", self.new)?;
        writeln!(f, "  equal    {}", self.equal)?;
        writeln!(f, "  differ   {}", self.differ)?;
        writeln!(
            f,
            "  failed   old {}, new {} (invocations with no answer to compare)",
            self.failed_old, self.failed_new
        )?;
        writeln!(
            f,
            "  errors   old {}, new {} (items answered with an errorType, compared like data)",
            self.error_answers_old, self.error_answers_new
        )?;
        writeln!(
            f,
            "  tokens   {} further pages read on each side where the nextTokens' bytes differed",
            self.followed_pages
        )?;
        for (name, latency) in [("old", &self.latency_old), ("new", &self.latency_new)] {
            writeln!(
                f,
                "  latency  {name} p50 {:.1} ms, p99 {:.1} ms ({} invocations)",
                latency.quantile_ms(0.50),
                latency.quantile_ms(0.99),
                latency.count()
            )?;
        }
        match &self.diff_file {
            Some(path) => write!(
                f,
                "  diff     {} ({} pairs)",
                path.display(),
                self.diff_pairs
            )?,
            None => write!(f, "  diff     none written")?,
        }
        Ok(())
    }
}

/// What to run.
pub struct Options {
    pub events: Vec<Value>,
    pub old: Target,
    pub new: Target,
    /// Where the differing pairs go (JSON Lines); written only when some differ.
    pub diff_file: PathBuf,
    /// A progress bar on stderr (drawn only on a terminal).
    pub progress: bool,
    /// The AWS settings of `lambda:` targets (region, credentials), and
    /// `AWS_ENDPOINT_URL_LAMBDA` when set.
    pub aws: AwsSettings,
    pub lambda_endpoint: Option<String>,
}

/// The local stack the local targets share, started only if one is local.
struct Shared {
    services: Option<testkit::services::LocalServices>,
    sdk: Option<aws_config::SdkConfig>,
    aws: AwsSettings,
    lambda_endpoint: Option<String>,
}

async fn start_runner(target: &Target, side: &str, shared: &mut Shared) -> Result<Runner, String> {
    match target {
        Target::Local { binary, settings } => {
            if !binary.is_file() {
                return Err(format!("{side}: {} is not a file", binary.display()));
            }
            if shared.services.is_none() {
                let options = crate::stack::StackOptions::default();
                shared.services = Some(
                    testkit::services::LocalServices::start(testkit::services::ServicesOptions {
                        settings: options.function_settings(),
                        ..Default::default()
                    })
                    .await?,
                );
            }
            let Some(services) = &shared.services else {
                return Err("the local stack did not start".to_owned());
            };
            let api = Arc::new(
                RuntimeApi::start()
                    .await
                    .map_err(|e| format!("{side}: the local Runtime API: {e}"))?,
            );
            let mut env = services.env().to_vec();
            env.retain(|(k, _)| !settings.iter().any(|(s, _)| s == k));
            env.extend(settings.iter().cloned());
            env.extend(lambda_env(&api, &format!("assessments-resolver-{side}")));
            let binary = binary
                .to_str()
                .ok_or_else(|| format!("{side}: the path is not UTF-8"))?;
            let mut function = Function::spawn(binary, env);
            ready(&api, &mut function, side).await?;
            Ok(Runner::Local {
                _function: function,
                api,
            })
        }
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

/// How one item compared.
enum Compared {
    Equal,
    Differ(Value),
}

/// Compares item `index` of both answers, following the tokens while they
/// differ in their bytes only.
async fn compare_item(
    old: &Runner,
    new: &Runner,
    event: &Value,
    index: usize,
    first: (Item, Item),
    summary: &mut Summary,
) -> Compared {
    let (mut a, mut b) = first;
    let mut page = 0;
    loop {
        let (na, nb) = (a.normalized(), b.normalized());
        if na != nb {
            let mut paths = Vec::new();
            differing_paths(&na, &nb, "", &mut paths);
            return Compared::Differ(json!({
                "item": index,
                "page": page,
                "event": item_event(event, index),
                "old": a.to_json(),
                "new": b.to_json(),
                "paths": paths,
            }));
        }
        let (Some(ta), Some(tb)) = (a.next_token(), b.next_token()) else {
            return Compared::Equal;
        };
        if ta == tb {
            return Compared::Equal;
        }
        if page >= MAX_FOLLOWED_PAGES {
            return Compared::Equal;
        }
        page += 1;
        summary.followed_pages += 1;
        let base = item_event(event, index);
        let (ea, eb) = (with_token(&base, ta), with_token(&base, tb));
        let ((ra, da), (rb, db)) = tokio::join!(old.timed(&ea), new.timed(&eb));
        summary.latency_old.record(da);
        summary.latency_new.record(db);
        match (ra, rb) {
            (Ok(ra), Ok(rb)) => {
                // One item each (a follow-up is one field's event); none would be malformed.
                let first = |items: Vec<Item>| {
                    items
                        .into_iter()
                        .next()
                        .unwrap_or(Item::Malformed(Value::Null))
                };
                a = first(items_of(&ea, &ra));
                b = first(items_of(&eb, &rb));
            }
            (ra, rb) => {
                summary.failed_old += usize::from(ra.is_err());
                summary.failed_new += usize::from(rb.is_err());
                return Compared::Differ(json!({
                    "item": index,
                    "page": page,
                    "event": ea,
                    "old": ra.err(),
                    "new": rb.err(),
                    "paths": ["(a failed invocation)"],
                }));
            }
        }
    }
}

/// Runs the comparison; the summary, and the differing pairs in `diff_file`.
pub async fn run(options: Options) -> Result<Summary, String> {
    let mut shared = Shared {
        services: None,
        sdk: None,
        aws: options.aws.clone(),
        lambda_endpoint: options.lambda_endpoint.clone(),
    };
    let old = start_runner(&options.old, "old", &mut shared).await?;
    let new = start_runner(&options.new, "new", &mut shared).await?;
    let mut summary = Summary {
        old: options.old.describe(),
        new: options.new.describe(),
        events: options.events.len(),
        ..Summary::default()
    };
    let bar = if options.progress {
        indicatif::ProgressBar::new(options.events.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {msg}")
            .map_err(|e| e.to_string())?,
    );
    let mut differences = Vec::new();
    for event in &options.events {
        let ((ra, da), (rb, db)) = tokio::join!(old.timed(event), new.timed(event));
        summary.latency_old.record(da);
        summary.latency_new.record(db);
        let count = event.as_array().map_or(1, Vec::len);
        summary.items += count;
        match (ra, rb) {
            (Ok(ra), Ok(rb)) => {
                let (ia, ib) = (items_of(event, &ra), items_of(event, &rb));
                for (index, (a, b)) in ia.into_iter().zip(ib).enumerate() {
                    summary.error_answers_old += usize::from(matches!(a, Item::Error { .. }));
                    summary.error_answers_new += usize::from(matches!(b, Item::Error { .. }));
                    match compare_item(&old, &new, event, index, (a, b), &mut summary).await {
                        Compared::Equal => summary.equal += 1,
                        Compared::Differ(pair) => {
                            summary.differ += 1;
                            differences.push(pair);
                        }
                    }
                }
            }
            (ra, rb) => {
                summary.failed_old += usize::from(ra.is_err());
                summary.failed_new += usize::from(rb.is_err());
                summary.differ += count;
                differences.push(json!({
                    "event": event,
                    "old": ra.map(|a| format!("{a:?}")).unwrap_or_else(|e| e),
                    "new": rb.map(|a| format!("{a:?}")).unwrap_or_else(|e| e),
                    "paths": ["(a failed invocation)"],
                }));
            }
        }
        bar.set_message(format!("({} items differ)", summary.differ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    if differences.is_empty() {
        // A stale file from an earlier run must not be read as this one's.
        let _ = std::fs::remove_file(&options.diff_file);
    } else {
        write_lines(&options.diff_file, &differences)?;
        summary.diff_file = Some(options.diff_file.clone());
        summary.diff_pairs = differences.len();
    }
    Ok(summary)
}

fn write_lines(path: &Path, values: &[Value]) -> Result<(), String> {
    let mut text = String::new();
    for value in values {
        text.push_str(&value.to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads a file of events: one AppSync direct-resolver event (an object, or
/// a batch: an array of them) per line; blank lines are skipped.
pub fn read_events(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut events = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let event: Value = serde_json::from_str(line)
            .map_err(|e| format!("{}:{}: not JSON: {e}", path.display(), n + 1))?;
        if !(event.is_object() || event.is_array()) {
            return Err(format!(
                "{}:{}: not an AppSync event (an object, or an array for a batch)",
                path.display(),
                n + 1
            ));
        }
        events.push(event);
    }
    Ok(events)
}

/// Writes `events` as [`read_events`] reads them.
pub fn write_events(path: &Path, events: &[Value]) -> Result<(), String> {
    write_lines(path, events)
}

/// Events over the playground's data (testkit's demo fixtures, the
/// playground's personas): every student read by an admin in pages of 3, by
/// a teacher of its school with a type filter, refused to a teacher of the
/// other school; date ranges; a missing student; invalid arguments; batches.
pub fn playground_events() -> Vec<Value> {
    let fixtures = Fixtures::demo();
    let persona = |name: &str| identity::persona(name).unwrap_or(Value::Null);
    let read = |who: &str, arguments: Value| {
        ResolverEvent::get_assessments(arguments)
            .identity(persona(who))
            .into_json()
    };
    let types = [
        "ORAL_READING_FLUENCY",
        "READING_COMPREHENSION",
        "PHONOLOGICAL_AWARENESS",
    ];
    let mut events = Vec::new();
    for (i, student) in fixtures.students.iter().enumerate() {
        let id = &student.student_id;
        let (own, other) = if student.school_id.as_deref() == Some(DEMO_SCHOOL_A) {
            ("teacher-a", "teacher-b")
        } else {
            ("teacher-b", "teacher-a")
        };
        events.push(read("admin", json!({ "studentId": id, "limit": 3 })));
        events.push(read(
            own,
            json!({ "studentId": id, "assessmentType": types[i % types.len()], "limit": 5 }),
        ));
        events.push(read(other, json!({ "studentId": id })));
        if i % 5 == 0 {
            events.push(read(
                "admin",
                json!({ "studentId": id, "dateRange": { "from": "2025-01-01", "to": "2025-06-30" } }),
            ));
        }
    }
    events.push(read("admin", json!({ "studentId": "stu-9999" })));
    events.push(read("teacher-a", json!({ "studentId": "stu-9999" })));
    events.push(read(
        "admin",
        json!({ "studentId": "stu-0001", "limit": 0 }),
    ));
    events.push(read("admin", json!({ "studentId": "not an id!" })));
    events.push(read(
        "admin",
        json!({ "studentId": "stu-0001", "dateRange": { "from": "2025-06-30", "to": "2025-01-01" } }),
    ));
    for chunk in fixtures.students.chunks(10) {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(j, s)| {
                let who = if j % 3 == 2 { "teacher-b" } else { "admin" };
                read(who, json!({ "studentId": s.student_id, "limit": 4 }))
            })
            .collect();
        events.push(Value::Array(batch));
    }
    events
}

/// `KEY=VALUE` as a setting.
pub fn parse_setting(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processed_at_request_ids_and_token_bytes_are_left_out() {
        let a = Item::Page(json!({
            "items": [{"id": "1", "processedAt": "2026-12-07T01:00:00Z"}],
            "nextToken": "aaa"
        }));
        let b = Item::Page(json!({
            "items": [{"id": "1", "processedAt": "2026-12-07T02:00:00Z"}],
            "nextToken": "bbb"
        }));
        assert_eq!(a.normalized(), b.normalized());
        let c = Item::Page(json!({"items": [{"id": "1"}], "nextToken": null}));
        assert_ne!(
            a.normalized(),
            c.normalized(),
            "a last page is not a middle page"
        );
        let e1 = Item::Error {
            error_type: json!("LegacyComponentError"),
            message: json!("failed (the function's log has the detail under request id 12-ab)"),
        };
        let e2 = Item::Error {
            error_type: json!("LegacyComponentError"),
            message: json!("failed (the function's log has the detail under request id 99)"),
        };
        assert_eq!(e1.normalized(), e2.normalized());
    }

    #[test]
    fn a_batch_answer_is_one_item_per_event_and_a_wrong_shape_is_malformed() {
        let event = json!([{"arguments": {}}, {"arguments": {}}]);
        let answer = Answer::Response(json!([
            {"data": {"items": [], "nextToken": null}},
            {"data": null, "errorType": "Unauthorized", "errorMessage": "no"}
        ]));
        let items = items_of(&event, &answer);
        assert!(matches!(items[0], Item::Page(_)));
        assert!(matches!(items[1], Item::Error { .. }));
        let short = items_of(&event, &Answer::Response(json!([{"data": {}}])));
        assert!(short.iter().all(|i| matches!(i, Item::Malformed(_))));
    }

    #[test]
    fn differing_paths_name_where() {
        let mut paths = Vec::new();
        differing_paths(
            &json!({"data": {"items": [{"score": 1}, {"score": 2}]}}),
            &json!({"data": {"items": [{"score": 1}, {"score": 3}]}}),
            "",
            &mut paths,
        );
        assert_eq!(paths, ["/data/items/1/score"]);
    }

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
