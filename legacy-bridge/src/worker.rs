//! The worker role of process isolation: a process that loads the legacy
//! library, opens one engine, and scores the requests its supervisor sends,
//! one at a time, until its stdin closes. If the native code crashes, only
//! this process dies.
//!
//! Every binary that may host workers calls [`run_worker_if_requested`] first
//! thing in `main`; the supervisor starts it as `<binary> --legacy-worker`.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::LegacyError;
use crate::ffi::NativeLibrary;
use crate::handle::EngineHandle;
use crate::protocol::{self, Reply, Request, WireError};
use crate::sandbox::Confinement;
use crate::types::validate_input;

/// The argument that selects the worker role.
pub const WORKER_ARG: &str = "--legacy-worker";
/// The library and its configuration, set by the supervisor.
pub(super) const ENV_LIB: &str = "LEGACY_WORKER_LIB";
pub(super) const ENV_CONFIG: &str = "LEGACY_WORKER_CONFIG";
/// The one directory the worker may write to (also its working directory and `TMPDIR`).
pub(super) const ENV_DIR: &str = "LEGACY_WORKER_DIR";
/// Its private writable memory's bound (`RLIMIT_DATA`), in MiB.
pub(super) const ENV_DATA_LIMIT: &str = "LEGACY_WORKER_DATA_LIMIT_MIB";

/// Exit codes of a worker.
const EXIT_OK: i32 = 0;
const EXIT_INIT_FAILED: i32 = 3;
const EXIT_PROTOCOL: i32 = 4;

/// If this process was started as a legacy worker, runs the worker and
/// exits; otherwise returns at once.
pub fn run_worker_if_requested() {
    if std::env::args_os().nth(1).is_some_and(|a| a == WORKER_ARG) {
        std::process::exit(run());
    }
}

/// Moves the reply channel off fd 1: replies go to a private duplicate of
/// the original stdout, and fd 1 becomes stderr, so whatever the native code
/// prints goes down the stderr pipe, which the supervisor passes on as data
/// (`isolation/output.rs`), instead of corrupting the frames.
fn private_reply_channel() -> std::io::Result<std::fs::File> {
    let stdout = std::io::stdout();
    // SAFETY: dup on fd 1, which is open for the life of the process; on
    // success we own the new descriptor and nothing else refers to it.
    let copy = unsafe { libc::fcntl(stdout.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if copy < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `copy` is a fresh descriptor we own (checked non-negative above).
    let owned = unsafe { OwnedFd::from_raw_fd(copy) };
    // SAFETY: dup2 of stderr (fd 2, open) onto fd 1; no Rust object owns fd 1
    // exclusively (Stdout only borrows it), so replacing it breaks no invariant.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(std::fs::File::from(owned))
}

fn write_reply(out: &mut impl Write, reply: &Reply) -> std::io::Result<()> {
    let frame = protocol::encode(reply).map_err(std::io::Error::other)?;
    out.write_all(&frame)?;
    out.flush()
}

/// Reads one frame; `None` at a clean end of input.
fn read_frame(input: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match input.read_exact(&mut header) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = protocol::payload_len(header).map_err(std::io::Error::other)?;
    let mut payload = vec![0u8; len];
    input.read_exact(&mut payload)?;
    Ok(Some(payload))
}

fn run() -> i32 {
    let mut replies = match private_reply_channel() {
        Ok(file) => std::io::BufWriter::new(file),
        Err(e) => {
            eprintln!("legacy worker: cannot set up its reply channel: {e}");
            return EXIT_INIT_FAILED;
        }
    };
    let (engine, confinement) = match open_confined() {
        Ok(opened) => opened,
        Err(message) => {
            let _ = write_reply(&mut replies, &Reply::InitFailed { message });
            return EXIT_INIT_FAILED;
        }
    };
    let ready = Reply::Ready {
        pid: std::process::id(),
        native: engine.library().stats(),
        confinement,
    };
    let code = if write_reply(&mut replies, &ready).is_err() {
        EXIT_PROTOCOL
    } else {
        serve(&engine, &mut replies)
    };
    if let Err(error) = engine.close() {
        eprintln!("legacy worker: closing the engine: {error}");
    }
    code
}

/// Confines this process (before the library loads: none of the
/// component's code runs unconfined), then loads the library and opens its
/// engine; the reason it could not, for `InitFailed`.
fn open_confined() -> Result<(EngineHandle, Confinement), String> {
    let directory = std::env::var_os(ENV_DIR)
        .map(PathBuf::from)
        .ok_or_else(|| format!("{ENV_DIR} is not set"))?;
    let data_limit_mib = std::env::var(ENV_DATA_LIMIT)
        .ok()
        .and_then(|mib| mib.parse::<u64>().ok())
        .ok_or_else(|| format!("{ENV_DATA_LIMIT} is not set to a number"))?;
    let confinement = crate::sandbox::confine(&directory, data_limit_mib)
        .map_err(|reason| format!("the worker's sandbox could not be applied: {reason}"))?;
    let lib = std::env::var_os(ENV_LIB).map(PathBuf::from);
    let config = std::env::var(ENV_CONFIG).unwrap_or_default();
    let engine = lib
        .ok_or_else(|| LegacyError::InvalidInput(format!("{ENV_LIB} is not set")))
        .and_then(|path| NativeLibrary::load(&path))
        .and_then(|library| EngineHandle::open(Arc::new(library), &config))
        .map_err(|error| error.to_string())?;
    Ok((engine, confinement))
}

/// Answers requests, one at a time, until stdin closes (exit 0) or a frame
/// cannot be read or written (the protocol's exit code).
fn serve(engine: &EngineHandle, replies: &mut impl Write) -> i32 {
    let native = || engine.library().stats();
    let mut requests = std::io::BufReader::new(std::io::stdin().lock());
    loop {
        let payload = match read_frame(&mut requests) {
            Ok(Some(payload)) => payload,
            Ok(None) => return EXIT_OK,
            Err(e) => {
                eprintln!("legacy worker: reading a request failed: {e}");
                return EXIT_PROTOCOL;
            }
        };
        let Request::Score { id, context, rows } = match protocol::decode_request(&payload) {
            Ok(request) => request,
            Err(e) => {
                eprintln!("legacy worker: {e}");
                return EXIT_PROTOCOL;
            }
        };
        let outcome =
            validate_input(&context, &rows).and_then(|()| engine.score_copied(&context, &rows));
        let reply = match outcome {
            Ok(results) => Reply::Scored {
                id,
                results,
                native: native(),
            },
            Err(error) => Reply::Failed {
                id,
                error: WireError::from(&error),
                native: native(),
            },
        };
        if write_reply(replies, &reply).is_err() {
            return EXIT_PROTOCOL;
        }
    }
}
