//! The boundary around the legacy component in worker mode. The component is
//! treated as hostile: it must not read the function's credentials or memory,
//! reach the network, start processes that outlive its worker, write outside
//! its worker's directory, or take the function's memory with it.
//!
//! The parent ([`protect_parent`], once, before it starts a worker) makes
//! itself non-dumpable: its `/proc/<pid>/environ` and `mem` then open only
//! for a process holding `CAP_SYS_PTRACE`. The worker ([`confine`], before it
//! loads the library, so before any of the component's code runs) then:
//!
//! 1. lowers its limits: no core dumps, [`MAX_OPEN_FILES`] descriptors,
//!    private writable memory (`RLIMIT_DATA`) to what the supervisor gives
//!    it (a share of the function's memory), [`MAX_ADDRESS_SPACE`] of
//!    address space; and sets its `oom_score_adj` to 1000, so that when the
//!    workers together exhaust the environment's memory the kernel kills a
//!    worker, not the function;
//! 2. makes itself non-dumpable too, and sets `no_new_privs` (no setuid or
//!    file capabilities can raise it again);
//! 3. confines its writes to its own directory with Landlock where the
//!    kernel has it ([`Writes`] says how far: Lambda's kernel may not);
//! 4. drops every capability: bounding set, ambient, inheritable, permitted,
//!    effective (the function may run as root in a container: uid checks alone
//!    would not stop it);
//! 5. installs [`seccomp`]'s allowlist: no sockets, no new processes, no
//!    signals but to itself, no ptrace, no io_uring, no namespaces.
//!
//! It starts with an empty environment but for what the component needs, in
//! a process group of its own (`isolation/process.rs`). What in-process mode
//! cannot protect is in docs/security.md.

mod seccomp;

use std::path::Path;

use serde::{Deserialize, Serialize};

/// No worker needs more descriptors: its pipes, the library and the files a
/// .NET runtime maps at start (~40 for the test component).
pub const MAX_OPEN_FILES: u64 = 256;
/// A bound on a runaway mapping, not the memory bound (that is `RLIMIT_DATA`,
/// which counts what a process can write to): address space is reserved
/// generously by runtimes (.NET reserves its GC heap up front, inaccessible
/// until used), so this stays far above what a worker uses.
pub const MAX_ADDRESS_SPACE_GIB: u64 = 16;
const MAX_ADDRESS_SPACE: u64 = MAX_ADDRESS_SPACE_GIB << 30;
/// A worker is the first the kernel's OOM killer picks.
pub const OOM_SCORE_ADJ: i32 = 1000;

/// The confinement a worker has in force, as it reports it in its `Ready`
/// (the supervisor's init line shows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confinement {
    pub writes: Writes,
    /// System calls the seccomp allowlist lets through (some only with
    /// given arguments); every other one is refused.
    pub syscalls_allowed: u32,
    /// `RLIMIT_DATA`, in MiB.
    pub data_limit_mib: u64,
    /// `RLIMIT_AS`, in GiB.
    pub address_space_gib: u64,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
    pub oom_score_adj: i32,
}

/// How far Landlock confines the worker's writes to its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Writes {
    /// Every kind of write this build knows (Landlock ABI 5) is confined.
    Enforced,
    /// The kernel has an older Landlock (`abi`): creating, writing, removing
    /// and renaming files are confined; the rights it lacks (linking across
    /// directories before ABI 2, truncating before 3, device ioctls before 5)
    /// are not.
    Partial { abi: i32 },
    /// No Landlock on this kernel: writes are confined by nothing but file
    /// permissions (and the function runs as root in a container).
    Unavailable,
}

impl std::fmt::Display for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let writes = match self.writes {
            Writes::Enforced => "writes confined to its directory (Landlock)".to_owned(),
            Writes::Partial { abi } => format!(
                "writes partly confined to its directory (Landlock ABI {abi}: see docs/security.md)"
            ),
            Writes::Unavailable => {
                "writes NOT confined to its directory (no Landlock on this kernel)".to_owned()
            }
        };
        write!(
            f,
            "{writes}; seccomp allowlist of {} system calls; RLIMIT_DATA {} MiB; \
             RLIMIT_AS {} GiB; RLIMIT_NOFILE {}; oom_score_adj {}; no capabilities; \
             no_new_privs; non-dumpable",
            self.syscalls_allowed,
            self.data_limit_mib,
            self.address_space_gib,
            self.open_files,
            self.oom_score_adj
        )
    }
}

/// Makes this process non-dumpable, so that a worker (without
/// `CAP_SYS_PTRACE`) cannot open its `/proc/<pid>/environ` or `mem`.
pub fn protect_parent() -> Result<(), String> {
    set_non_dumpable().map_err(|e| format!("PR_SET_DUMPABLE 0: {e}"))
}

fn set_non_dumpable() -> std::io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes no pointers and changes only
    // this process's dumpable flag.
    let done = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Confines this (worker) process; `directory` is the one place it may
/// write, `data_limit_mib` its private writable memory. Any part that fails
/// fails the worker's start: it never runs the component unconfined.
pub fn confine(directory: &Path, data_limit_mib: u64) -> Result<Confinement, String> {
    limit(libc::RLIMIT_CORE, 0).map_err(|e| format!("RLIMIT_CORE: {e}"))?;
    limit(libc::RLIMIT_NOFILE, MAX_OPEN_FILES).map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    limit(libc::RLIMIT_DATA, data_limit_mib.saturating_mul(1 << 20))
        .map_err(|e| format!("RLIMIT_DATA: {e}"))?;
    limit(libc::RLIMIT_AS, MAX_ADDRESS_SPACE).map_err(|e| format!("RLIMIT_AS: {e}"))?;
    std::fs::write("/proc/self/oom_score_adj", OOM_SCORE_ADJ.to_string())
        .map_err(|e| format!("oom_score_adj: {e}"))?;
    set_non_dumpable().map_err(|e| format!("PR_SET_DUMPABLE 0: {e}"))?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes no pointers; it only
    // forbids privilege gains on later execs.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        ));
    }
    let writes = confine_writes(directory)?;
    drop_capabilities()?;
    let syscalls_allowed = seccomp::install()?;
    Ok(Confinement {
        writes,
        syscalls_allowed,
        data_limit_mib,
        address_space_gib: MAX_ADDRESS_SPACE_GIB,
        open_files: MAX_OPEN_FILES,
        oom_score_adj: OOM_SCORE_ADJ,
    })
}

/// Lowers both the soft and the hard limit (never raises one already lower).
fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the struct we pass, which lives
    // for the call.
    if unsafe { libc::getrlimit(resource, &mut current) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let lowered = libc::rlimit {
        rlim_cur: current.rlim_cur.min(value),
        rlim_max: current.rlim_max.min(value),
    };
    // SAFETY: setrlimit reads the struct we pass, which lives for the call.
    if unsafe { libc::setrlimit(resource, &lowered) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Landlock: every kind of write handled, allowed only beneath `directory`
/// (and on /dev/null). Reads stay allowed: the component reads its library
/// and, for .NET, the runtime's files.
fn confine_writes(directory: &Path) -> Result<Writes, String> {
    use landlock::{
        ABI, AccessFs, LandlockStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
        path_beneath_rules,
    };
    let abi = ABI::V5;
    let writes = AccessFs::from_write(abi);
    let status = Ruleset::default()
        .handle_access(writes)
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules([directory], writes)))
        .and_then(|r| r.add_rules(path_beneath_rules(["/dev/null"], AccessFs::WriteFile)))
        .and_then(|r| r.restrict_self())
        .map_err(|e| format!("Landlock: {e}"))?;
    Ok(match (status.ruleset, status.landlock) {
        (RulesetStatus::FullyEnforced, _) => Writes::Enforced,
        (RulesetStatus::PartiallyEnforced, LandlockStatus::Available { effective_abi, .. }) => {
            Writes::Partial {
                abi: effective_abi as i32,
            }
        }
        (RulesetStatus::PartiallyEnforced, _) => Writes::Partial { abi: 0 },
        (RulesetStatus::NotEnforced, _) => Writes::Unavailable,
    })
}

fn drop_capabilities() -> Result<(), String> {
    use caps::{CapSet, Capability};
    let fail = |what: &str, e: caps::errors::CapsError| format!("dropping {what}: {e}");
    // The bounding set first: dropping from it needs CAP_SETPCAP, still held.
    if caps::has_cap(None, CapSet::Effective, Capability::CAP_SETPCAP)
        .map_err(|e| fail("the bounding set", e))?
    {
        let bounding =
            caps::read(None, CapSet::Bounding).map_err(|e| fail("the bounding set", e))?;
        for cap in bounding {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| fail("the bounding set", e))?;
        }
    }
    for (name, set) in [
        ("the ambient set", CapSet::Ambient),
        ("the inheritable set", CapSet::Inheritable),
        ("the effective set", CapSet::Effective),
        ("the permitted set", CapSet::Permitted),
    ] {
        caps::clear(None, set).map_err(|e| fail(name, e))?;
    }
    Ok(())
}
