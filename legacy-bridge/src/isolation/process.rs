//! One worker process and its pipes: starting it (until `Ready`), one
//! exchange (a request frame out, a reply frame back), and ending it.
//! Every path that ends a worker reaps it: no zombies; its pipes close with
//! it: no descriptor growth. Dropping a `Worker` kills the process (tokio
//! then reaps it), so a worker can never outlive its owner.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, timeout_at};

use crate::NativeStats;
use crate::protocol::{self, Reply, WorkerProtocolError};
use crate::worker::{ENV_CONFIG, ENV_DIR, ENV_LIB, WORKER_ARG};

/// Environment variables a worker inherits (the rest is cleared: a worker
/// gets none of the function's credentials). `DOTNET_ROOT`: where a .NET
/// legacy component's runtime is (`clr.rs`).
const INHERITED_ENV: [&str; 4] = ["PATH", "LD_LIBRARY_PATH", "TZ", "DOTNET_ROOT"];

/// What to start.
#[derive(Debug, Clone)]
pub(super) struct Launch<'a> {
    pub worker_path: &'a Path,
    pub lib_path: &'a Path,
    pub engine_config: &'a str,
    /// The worker's own directory: the one place it may write.
    pub directory: &'a Path,
}

/// A worker process with its pipes.
pub(super) struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    pub pid: u32,
    /// Calls it has answered.
    pub calls: u64,
    /// Its handle counters, from its last frame.
    pub native: Option<NativeStats>,
}

/// Why a worker could not be started. Every one is a death for the breaker.
#[derive(Debug)]
pub(super) enum StartFailure {
    Spawn(String),
    /// It replied `InitFailed`: the library or the engine would not open.
    InitFailed(String),
    /// It ended, or wrote something else, before `Ready`.
    DiedBeforeReady(String),
    /// No `Ready` within the start timeout.
    Slow(Duration),
}

impl std::fmt::Display for StartFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartFailure::Spawn(e) => write!(f, "cannot start the worker: {e}"),
            StartFailure::InitFailed(m) => {
                write!(f, "the worker could not open the component: {m}")
            }
            StartFailure::DiedBeforeReady(how) => {
                write!(f, "the worker ended before it was ready ({how})")
            }
            StartFailure::Slow(after) => {
                write!(f, "the worker was not ready within {}ms", after.as_millis())
            }
        }
    }
}

/// What ended an exchange that got no reply.
pub(super) enum Lost {
    /// The request could not be written: the worker had died while idle.
    DeadBeforeRequest,
    /// End of output after the request: the process died or exited.
    Died,
    /// No reply within the call's own timeout.
    Timeout,
    /// Bytes that are not a valid reply frame.
    Protocol(WorkerProtocolError),
}

async fn read_reply(stdout: &mut BufReader<ChildStdout>) -> Result<Reply, Lost> {
    let mut header = [0u8; 4];
    stdout
        .read_exact(&mut header)
        .await
        .map_err(|_| Lost::Died)?;
    let len = protocol::payload_len(header).map_err(Lost::Protocol)?;
    let mut payload = vec![0u8; len];
    stdout
        .read_exact(&mut payload)
        .await
        .map_err(|_| Lost::Died)?;
    protocol::decode_reply(&payload).map_err(Lost::Protocol)
}

impl Worker {
    /// Starts a worker and waits for its `Ready` up to `timeout`.
    pub async fn start(launch: &Launch<'_>, timeout: Duration) -> Result<Worker, StartFailure> {
        let mut command = Command::new(launch.worker_path);
        command
            .arg(WORKER_ARG)
            .env_clear()
            .env(ENV_LIB, launch.lib_path)
            .env(ENV_CONFIG, launch.engine_config)
            .env(ENV_DIR, launch.directory)
            .env("TMPDIR", launch.directory)
            .current_dir(launch.directory)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| StartFailure::Spawn(format!("{}: {e}", launch.worker_path.display())))?;
        let (Some(stdin), Some(stdout), Some(pid)) =
            (child.stdin.take(), child.stdout.take(), child.id())
        else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(StartFailure::Spawn(
                "the worker's pipes are missing".to_owned(),
            ));
        };
        let mut worker = Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pid,
            calls: 0,
            native: None,
        };
        let ready = timeout_at(Instant::now() + timeout, read_reply(&mut worker.stdout)).await;
        match ready {
            Ok(Ok(Reply::Ready { native, .. })) => {
                worker.native = native;
                Ok(worker)
            }
            Ok(Ok(Reply::InitFailed { message })) => {
                worker.end().await;
                Err(StartFailure::InitFailed(message))
            }
            Err(_elapsed) => {
                worker.end().await;
                Err(StartFailure::Slow(timeout))
            }
            Ok(_) => {
                let how = worker.end().await;
                Err(StartFailure::DiedBeforeReady(how))
            }
        }
    }

    /// Sends one request frame and reads the reply, which must come by `reply_by`.
    pub async fn exchange(&mut self, frame: &[u8], reply_by: Instant) -> Result<Reply, Lost> {
        let sent = async {
            self.stdin.write_all(frame).await?;
            self.stdin.flush().await
        };
        if sent.await.is_err() {
            return Err(Lost::DeadBeforeRequest);
        }
        match timeout_at(reply_by, read_reply(&mut self.stdout)).await {
            Ok(reply) => reply,
            Err(_elapsed) => Err(Lost::Timeout),
        }
    }

    /// Reaps a worker whose output ended (it died or exited); kills it if it
    /// has not ended within a second. Returns its exit status.
    pub async fn reap(mut self) -> Option<ExitStatus> {
        match tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = self.child.start_kill();
                self.child.wait().await.ok()
            }
        }
    }

    /// Kills and reaps it; says how it ended.
    pub async fn end(mut self) -> String {
        let _ = self.child.start_kill();
        self.child
            .wait()
            .await
            .ok()
            .map_or_else(|| "unknown".to_owned(), describe_exit)
    }

    /// Ends it gracefully by `by`: stdin closed, it closes its engine and
    /// exits; killed if it has not by then. Always reaped.
    pub async fn retire(self, by: Instant) {
        let Worker {
            mut child,
            stdin,
            stdout,
            pid,
            calls,
            ..
        } = self;
        drop(stdin);
        drop(stdout);
        let status = match timeout_at(by, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => {
                let _ = child.start_kill();
                child.wait().await.ok()
            }
        };
        tracing::debug!(
            pid,
            calls,
            exit = %status.map_or_else(|| "unknown".to_owned(), describe_exit),
            "legacy worker retired"
        );
    }

    /// Its resident set (KiB), from /proc; `None` if unreadable.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }
}

/// "signal 11 (SIGSEGV)", "exit code 3": how a worker ended, for the logs.
pub fn describe_exit(status: ExitStatus) -> String {
    match (status.signal(), status.code()) {
        (Some(signal), _) => {
            let name = match signal {
                libc::SIGSEGV => "SIGSEGV",
                libc::SIGABRT => "SIGABRT",
                libc::SIGBUS => "SIGBUS",
                libc::SIGFPE => "SIGFPE",
                libc::SIGILL => "SIGILL",
                libc::SIGKILL => "SIGKILL",
                libc::SIGTERM => "SIGTERM",
                _ => "signal",
            };
            format!("signal {signal} ({name})")
        }
        (None, Some(code)) => format!("exit code {code}"),
        (None, None) => "unknown".to_owned(),
    }
}

/// The resident set of a process, from /proc (KiB); `None` if unreadable.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
