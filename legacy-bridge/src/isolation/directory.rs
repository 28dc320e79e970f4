//! The workers' directory: the one place a supervisor's workers may write.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A new directory for one supervisor's workers, private to this user
/// (`$TMPDIR/legacy-workers-<pid>-<n>`: the only writable place on Lambda is /tmp).
///
/// A process that was killed (a Lambda timeout, the OOM killer) leaves its
/// directory behind, and /tmp outlives it in the execution environment, where
/// the next process may well get the same pid. So the leftovers of processes
/// no longer running are removed first, and a name already taken moves on to
/// the next `<n>` instead of failing init.
pub(super) fn workers_directory() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let temp = std::env::temp_dir();
    remove_dead_workers_directories(&temp);
    let pid = std::process::id();
    let mut attempts = 0;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = temp.join(format!("legacy-workers-{pid}-{n}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => return Ok(path),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempts < 100 => {
                attempts += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Removes the `legacy-workers-<pid>-<n>` directories of processes that are
/// not running (best effort: what cannot be removed is left).
fn remove_dead_workers_directories(temp: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let owner = (name.to_str())
            .and_then(|n| n.strip_prefix("legacy-workers-"))
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok());
        let dead = owner.is_some_and(|pid| {
            pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        });
        if dead {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
