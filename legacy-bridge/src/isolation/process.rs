//! One worker process and its pipes: starting it (until `Ready`), one
//! exchange (a request frame out, a reply frame back), and ending it.
//! Every path that ends a worker reaps it: no zombies; its pipes close with
//! it: no descriptor growth. A worker leads a process group of its own and
//! has a directory of its own; dropping a `Worker` kills the group and
//! removes the directory (tokio then reaps the process), so neither it nor
//! anything it started can outlive its owner (its sandbox refuses `setsid`,
//! `setpgid` and new processes, so nothing leaves the group).

use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::time::{Instant, timeout_at};

use crate::NativeStats;
use crate::protocol::{self, Reply, WorkerProtocolError};
use crate::sandbox::Confinement;
use crate::worker::{ENV_CONFIG, ENV_DATA_LIMIT, ENV_DIR, ENV_LIB, WORKER_ARG};

use super::output;

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
    /// The worker's own directory: the one place it may write (removed with it).
    pub directory: &'a Path,
    /// Its private writable memory's bound (`RLIMIT_DATA`), in MiB.
    pub data_limit_mib: u64,
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
    /// The sandbox it reported in force.
    pub confinement: Option<Confinement>,
    /// Its process group and directory, ended with it.
    _group: ProcessGroup,
}

/// A worker's process group (the worker leads it: its pid is the group's
/// id) and its directory. Dropped with the worker, however it ends: the
/// group is killed (anything the worker started goes with it) and the
/// directory removed. `end` and a drop kill the group before the worker is
/// reaped; after `retire` or `reap` its id could name another group only
/// once the kernel's pids have wrapped around (`pid_max`), which a
/// microsecond does not allow.
struct ProcessGroup {
    id: u32,
    directory: PathBuf,
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        kill_group(self.id);
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// SIGKILL to every process of group `id` (none left: nothing happens).
fn kill_group(id: u32) {
    // 0 and anything past pid_t would name this process's own group, or all.
    let Some(id) = libc::pid_t::try_from(id).ok().filter(|id| *id > 0) else {
        return;
    };
    // SAFETY: killpg takes plain integers and touches no memory of ours; a
    // group that no longer exists is ESRCH, ignored.
    unsafe {
        libc::killpg(id, libc::SIGKILL);
    }
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
    /// Makes its directory, starts it and waits for its `Ready` up to `timeout`.
    pub async fn start(launch: &Launch<'_>, timeout: Duration) -> Result<Worker, StartFailure> {
        let mut worker = Self::spawn(launch).await?;
        let ready = timeout_at(Instant::now() + timeout, read_reply(&mut worker.stdout)).await;
        match ready {
            Ok(Ok(Reply::Ready {
                native,
                confinement,
                ..
            })) => {
                worker.native = native;
                worker.confinement = Some(confinement);
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

    /// Makes its directory and starts the process in its group, its output
    /// relayed: not yet ready.
    async fn spawn(launch: &Launch<'_>) -> Result<Worker, StartFailure> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(launch.directory)
            .map_err(|e| {
                StartFailure::Spawn(format!(
                    "cannot make its directory {}: {e}",
                    launch.directory.display()
                ))
            })?;
        let mut child = match command(launch).spawn() {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(launch.directory);
                let path = launch.worker_path.display();
                return Err(StartFailure::Spawn(format!("{path}: {e}")));
            }
        };
        // From here its group and directory go with it, however it ends.
        let group = ProcessGroup {
            id: child.id().unwrap_or(0),
            directory: launch.directory.to_owned(),
        };
        let (Some(stdin), Some(stdout), Some(stderr), Some(pid)) = (
            child.stdin.take(),
            child.stdout.take(),
            child.stderr.take(),
            child.id(),
        ) else {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(StartFailure::Spawn(
                "the worker's pipes are missing".to_owned(),
            ));
        };
        output::relay(pid, stderr);
        Ok(Worker {
            child,
            stdin,
            stdout: BufReader::new(stdout),
            pid,
            calls: 0,
            native: None,
            confinement: None,
            _group: group,
        })
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

    /// Kills it (its group) and reaps it; says how it ended.
    pub async fn end(mut self) -> String {
        kill_group(self.pid);
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

/// The worker's command: the worker role of `worker_path`, with a cleared
/// environment but for what the component needs, in its own directory and
/// its own process group, its stdout and stderr (what the component prints)
/// to the supervisor.
fn command(launch: &Launch<'_>) -> Command {
    let mut command = Command::new(launch.worker_path);
    command
        .arg(WORKER_ARG)
        .env_clear()
        .env(ENV_LIB, launch.lib_path)
        .env(ENV_CONFIG, launch.engine_config)
        .env(ENV_DIR, launch.directory)
        .env(ENV_DATA_LIMIT, launch.data_limit_mib.to_string())
        // A .NET component's runtime opens no debugger pipes and no diagnostics
        // socket in a worker (its sandbox refuses FIFOs' mknod and sockets);
        // COMPlus_ is .NET Core 3.x's prefix, DOTNET_ the later runtimes'.
        .env("DOTNET_EnableDiagnostics", "0")
        .env("COMPlus_EnableDiagnostics", "0")
        .env("TMPDIR", launch.directory)
        .current_dir(launch.directory)
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for name in INHERITED_ENV {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
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
