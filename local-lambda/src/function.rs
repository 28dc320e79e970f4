//! A Lambda function binary run as a process against the local Runtime API,
//! as Lambda runs it: its environment, its stdout (logs and EMF lines), SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::runtime_api::RuntimeApi;

/// The function process; killed if the test ends early.
pub struct Function {
    pub child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    readers: [std::thread::JoinHandle<()>; 2],
}

/// Collects a pipe's lines on a thread of its own.
fn collect_lines(
    pipe: impl std::io::Read + Send + 'static,
) -> (Arc<Mutex<Vec<String>>>, std::thread::JoinHandle<()>) {
    let collected = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&collected);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            lines.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
    (collected, reader)
}

fn lines_of(lines: &Mutex<Vec<String>>) -> Vec<String> {
    lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl Function {
    /// Starts `binary` with exactly `env` (and `PATH`).
    pub fn try_spawn(binary: &str, env: Vec<(String, String)>) -> std::io::Result<Function> {
        let mut child = Command::new(binary)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other("the function's pipes are missing"));
        };
        let (stdout, out_reader) = collect_lines(stdout);
        let (stderr, err_reader) = collect_lines(stderr);
        Ok(Function {
            child,
            stdout,
            stderr,
            readers: [out_reader, err_reader],
        })
    }

    /// [`Function::try_spawn`] for tests (a test's `env!("CARGO_BIN_EXE_<name>")`):
    /// panics if it cannot start.
    pub fn spawn(binary: &str, env: Vec<(String, String)>) -> Function {
        match Self::try_spawn(binary, env) {
            Ok(function) => function,
            Err(e) => panic!("cannot start {binary}: {e}"),
        }
    }

    /// Its stdout lines so far (the logs and EMF documents).
    pub fn output(&self) -> Vec<String> {
        lines_of(&self.stdout)
    }

    /// Its stderr lines so far (what the legacy component and its workers print).
    pub fn stderr(&self) -> Vec<String> {
        lines_of(&self.stderr)
    }

    /// SIGTERM, then a graceful exit (status 0) within 10 s: its stdout lines
    /// and, among them, the EMF documents.
    pub fn terminate(&mut self) -> (Vec<String>, Vec<Value>) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.wait(Duration::from_secs(10));
        assert!(status.success(), "graceful exit, got {status:?}");
        let output = self.output();
        let emf = emf_documents(&output);
        (output, emf)
    }

    /// Waits for the process to exit, up to `timeout`, and then for its last
    /// lines to be collected (until its pipes close, or `timeout` again if a
    /// child of its own still holds them).
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let drained = Instant::now() + timeout;
                while !self.readers.iter().all(|r| r.is_finished()) && Instant::now() < drained {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the function did not exit within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An init failure as Lambda was told of it and as the function logged it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitFailure {
    /// The `errorType` posted (and its header's, which must agree).
    pub error_type: String,
    /// The message posted: fixed, with the id of the log line.
    pub posted: String,
    /// The reason the function logged under that id.
    pub reason: String,
}

/// The one init failure `function` posted to `api`, with the reason it
/// logged under the posted message's `init_failure_id` (wait for the function
/// to exit first). An error says what did not match up.
pub fn init_failure(api: &RuntimeApi, function: &Function) -> Result<InitFailure, String> {
    let reported = api.init_errors();
    let [posted] = reported.as_slice() else {
        return Err(format!("expected one init error, got {reported:?}"));
    };
    let text = |key: &str| posted[key].as_str().unwrap_or_default().to_owned();
    let (error_type, message) = (text("errorType"), text("errorMessage"));
    if text("errorTypeHeader") != error_type {
        return Err(format!("the header and the body disagree: {posted}"));
    }
    let id = message
        .rsplit_once("init_failure_id ")
        .map(|(_, id)| id.to_owned())
        .ok_or_else(|| format!("no init_failure_id in {message:?}"))?;
    let logged = function
        .output()
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["init_failure_id"] == id.as_str() && line["message"] == "init failed")
        .ok_or_else(|| format!("no log line with init_failure_id {id}"))?;
    Ok(InitFailure {
        error_type,
        posted: message,
        reason: logged["error"].as_str().unwrap_or_default().to_owned(),
    })
}

/// The variables Lambda sets for function `name` served by `api`.
pub fn lambda_env(api: &RuntimeApi, name: &str) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", api.address()),
        ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn all_emf_documents(lines: &[String]) -> impl Iterator<Item = Value> + '_ {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|doc| doc.get("_aws").is_some())
}

/// The invocations' EMF documents among a function's stdout lines (one per
/// invocation, in order; the per-error-type documents are left out).
pub fn emf_documents(lines: &[String]) -> Vec<Value> {
    all_emf_documents(lines)
        .filter(|doc| doc.get("ErrorType").is_none())
        .collect()
}

/// The per-error-type EMF documents (`ErrorType` dimension) among a function's stdout lines.
pub fn error_type_documents(lines: &[String]) -> Vec<Value> {
    all_emf_documents(lines)
        .filter(|doc| doc.get("ErrorType").is_some())
        .collect()
}

/// What the legacy workers printed, as the function passes it on (the
/// `output` field of its "legacy worker output" lines), with each worker's pid.
pub fn worker_output(lines: &[String]) -> Vec<(u64, String)> {
    lines
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "legacy worker output")
        .map(|line| {
            let pid = line["worker"].as_u64().unwrap_or_default();
            (pid, line["output"].as_str().unwrap_or_default().to_owned())
        })
        .collect()
}

/// A per-invocation counter summed over the invocations' EMF documents: the
/// environment's total, as CloudWatch's Sum over the whole run shows it.
pub fn emf_sum(documents: &[Value], metric: &str) -> u64 {
    documents.iter().filter_map(|d| d[metric].as_u64()).sum()
}
