//! Readings of this process and its children from `/proc` (Linux): resident
//! memory, open descriptors, child processes by state, what a process has
//! spent (CPU time, context switches, peak memory). Used by the tests, the
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

/// What a process (all its threads) has spent since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessCost {
    /// CPU time in user and kernel mode (µs; `/proc/<pid>/stat` counts in
    /// ticks of 1/100 s, the kernel's USER_HZ).
    pub user_us: u64,
    pub system_us: u64,
    /// Time on a CPU (ns, `/proc/<pid>/task/*/schedstat`): user and system together, exact.
    pub on_cpu_ns: u64,
    /// Context switches, voluntary (waiting) and not (preempted), over its threads.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

impl ProcessCost {
    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &ProcessCost) -> ProcessCost {
        ProcessCost {
            user_us: self.user_us.saturating_sub(earlier.user_us),
            system_us: self.system_us.saturating_sub(earlier.system_us),
            on_cpu_ns: self.on_cpu_ns.saturating_sub(earlier.on_cpu_ns),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }

    /// Field by field sum (a process and its children).
    pub fn plus(&self, other: &ProcessCost) -> ProcessCost {
        ProcessCost {
            user_us: self.user_us + other.user_us,
            system_us: self.system_us + other.system_us,
            on_cpu_ns: self.on_cpu_ns + other.on_cpu_ns,
            voluntary_switches: self.voluntary_switches + other.voluntary_switches,
            involuntary_switches: self.involuntary_switches + other.involuntary_switches,
        }
    }
}

/// What process `pid` has spent; `None` once it is gone.
pub fn process_cost(pid: u32) -> Option<ProcessCost> {
    const USER_HZ_US: u64 = 10_000;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After "pid (comm)": state is field 3, utime 14, stime 15.
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let mut cost = ProcessCost {
        user_us: ticks(11)? * USER_HZ_US,
        system_us: ticks(12)? * USER_HZ_US,
        ..ProcessCost::default()
    };
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        if let Ok(schedstat) = std::fs::read_to_string(task.path().join("schedstat")) {
            cost.on_cpu_ns += schedstat
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(task.path().join("status")) {
            cost.voluntary_switches += status_number(&status, "voluntary_ctxt_switches:");
            cost.involuntary_switches += status_number(&status, "nonvoluntary_ctxt_switches:");
        }
    }
    Some(cost)
}

/// The peak resident set of process `pid` (KiB, `VmHWM`).
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    Some(status_number(&status, "VmHWM:"))
}

/// The child processes of `pid` (any of its threads' children).
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            children.extend(
                list.split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    children.sort_unstable();
    children.dedup();
    children
}

/// The processes (of any parent) whose name (`/proc/<pid>/comm`) is `name`.
pub fn processes_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

fn status_number(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
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
        assert!(children_of(std::process::id()).contains(&child.id()));
        let cost = process_cost(std::process::id()).expect("own cost");
        assert!(cost.on_cpu_ns > 0 && cost.voluntary_switches + cost.involuntary_switches > 0);
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        let _ = child.kill();
        let _ = child.wait();
        assert!(!live_children().contains(&child.id()));
        assert!(!zombies().contains(&child.id()));
    }
}
