//! Readings of this process and its children from `/proc` (Linux): resident
//! memory, open descriptors, child processes by state. Used by the tests, the
//! soak and the playground's checks; the supervisor keeps its own reading of
//! its workers' memory (production code does not depend on test support).

/// The resident set of process `pid` (KiB), from `/proc/<pid>/status`; `None` if unreadable.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"))
}

/// This process's resident set (KiB); 0 if unreadable.
pub fn self_rss_kib() -> u64 {
    status_kib("/proc/self/status").unwrap_or(0)
}

fn status_kib(path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(path).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// How many file descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Children of this process whose state (`R`, `S`, `Z`...) `wanted` accepts.
pub fn children_in_state(wanted: impl Fn(&str) -> bool) -> Vec<u32> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 1
            && wanted(fields[0])
            && fields[1] == me
            && let Ok(pid) = entry.file_name().to_string_lossy().parse()
        {
            found.push(pid);
        }
    }
    found
}

/// Children that exited and were not reaped.
pub fn zombies() -> Vec<u32> {
    children_in_state(|state| state == "Z")
}

/// Children that are running or sleeping.
pub fn live_children() -> Vec<u32> {
    children_in_state(|state| state != "Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_a_child_are_seen() {
        assert!(self_rss_kib() > 0);
        assert!(rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        assert_eq!(rss_kib(u32::MAX), None);
        assert!(open_fds() >= 3);
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("spawn sleep");
        assert!(live_children().contains(&child.id()));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!live_children().contains(&child.id()));
        assert!(!zombies().contains(&child.id()));
    }
}
