//! The boundary around the legacy component in worker mode. The component is
//! treated as possibly hostile: it must not read the function's credentials
//! or memory, nor write outside the directory it is given.
//!
//! The parent ([`protect_parent`], once, before it starts a worker) makes
//! itself non-dumpable: its `/proc/<pid>/environ` and `mem` then open only
//! for a process holding `CAP_SYS_PTRACE`. The worker ([`confine`], before it
//! loads the library, so before any of the component's code runs) then:
//!
//! 1. lowers its limits: no core dumps, [`MAX_OPEN_FILES`] descriptors,
//!    [`MAX_ADDRESS_SPACE`] of address space;
//! 2. makes itself non-dumpable too, and sets `no_new_privs` (no setuid or
//!    file capabilities can raise it again);
//! 3. confines its writes to its own directory with Landlock where the
//!    kernel has it (best effort: Lambda's kernel may not; [`Confinement`] says);
//! 4. drops every capability: bounding set, ambient, inheritable, permitted,
//!    effective (the function may run as root in a container: uid checks alone
//!    would not stop it);
//! 5. installs a seccomp filter that answers `EPERM` to `ptrace`,
//!    `process_vm_readv`, `process_vm_writev` and `pidfd_getfd`.
//!
//! It already starts with an empty environment but for what the component
//! needs (`process.rs`). What in-process mode cannot protect is in
//! docs/security.md.

use std::collections::BTreeMap;
use std::path::Path;

/// No worker needs more descriptors: its pipes, the library and the files a
/// .NET runtime maps at start (~40 for the test component).
pub const MAX_OPEN_FILES: u64 = 256;
/// A bound on a runaway mapping, far above what a worker uses: the memory a
/// worker may really use is bounded by the supervisor's RSS limit; address
/// space is reserved generously by runtimes (.NET reserves its GC heap up
/// front), so this stays far above it.
pub const MAX_ADDRESS_SPACE: u64 = 16 << 30;

/// The system calls the component is refused.
const REFUSED_SYSCALLS: [libc::c_long; 4] = [
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_pidfd_getfd,
];

/// What [`confine`] could apply beyond the parts that always apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// Writes are confined to the worker's directory (Landlock enforced).
    Full,
    /// This kernel has no Landlock: writes are not confined to the directory;
    /// the rest applies.
    WithoutLandlock,
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

/// Confines this (worker) process; `directory` is the one place it may write.
/// Any part that fails fails the worker's start: it never runs the component
/// unconfined.
pub fn confine(directory: &Path) -> Result<Confinement, String> {
    limit(libc::RLIMIT_CORE, 0).map_err(|e| format!("RLIMIT_CORE: {e}"))?;
    limit(libc::RLIMIT_NOFILE, MAX_OPEN_FILES).map_err(|e| format!("RLIMIT_NOFILE: {e}"))?;
    limit(libc::RLIMIT_AS, MAX_ADDRESS_SPACE).map_err(|e| format!("RLIMIT_AS: {e}"))?;
    set_non_dumpable().map_err(|e| format!("PR_SET_DUMPABLE 0: {e}"))?;
    // SAFETY: prctl(PR_SET_NO_NEW_PRIVS, 1) takes no pointers; it only
    // forbids privilege gains on later execs.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        ));
    }
    let confinement = confine_writes(directory)?;
    drop_capabilities()?;
    refuse_syscalls()?;
    Ok(confinement)
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
fn confine_writes(directory: &Path) -> Result<Confinement, String> {
    use landlock::{
        ABI, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, path_beneath_rules,
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
    Ok(match status.ruleset {
        RulesetStatus::NotEnforced => Confinement::WithoutLandlock,
        RulesetStatus::FullyEnforced | RulesetStatus::PartiallyEnforced => Confinement::Full,
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

fn refuse_syscalls() -> Result<(), String> {
    use seccompiler::{SeccompAction, SeccompFilter, TargetArch};
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| format!("seccomp: {e}"))?;
    let rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = REFUSED_SYSCALLS
        .iter()
        .map(|&call| (call, Vec::new()))
        .collect();
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(|e| format!("seccomp: {e}"))?;
    let program: seccompiler::BpfProgram =
        filter.try_into().map_err(|e| format!("seccomp: {e:?}"))?;
    // Every thread of the worker (it has only its main thread here).
    seccompiler::apply_filter_all_threads(&program).map_err(|e| format!("seccomp: {e}"))
}
