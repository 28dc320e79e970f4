//! The worker's system calls: an allowlist. What the worker protocol (pipes
//! on fd 0 and 1), the Rust and C/C++ runtimes and a hosted .NET runtime use
//! is allowed; every other call is refused with `EPERM` (a failed call, not a
//! killed process: the component sees an error it already handles).
//!
//! Refused by being absent, among others: `socket` and `socketpair` (no
//! network, no local sockets), `fork`, `vfork`, `execve`, `execveat`,
//! `setsid`, `setpgid` (no process escapes the worker's group), `ptrace`,
//! `process_vm_readv`/`writev`, `pidfd_*`, `io_uring_*`, `unshare`,
//! `setns`, `mount`, `bpf`, `perf_event_open`, `userfaultfd`, `keyctl`,
//! System V IPC, `setpriority` and the scheduler setters.
//!
//! Allowed only with given arguments: `clone` only with `CLONE_THREAD`
//! (threads, not processes); `kill`, `tgkill` and `prlimit64` only on the
//! worker itself (its pid, or 0 for `prlimit64`): `kill(-1, ...)` would
//! reach every process of the user, and the function runs as root. `clone3`
//! is answered `ENOSYS` by a filter of its own, since its flags are in memory
//! a filter cannot read: glibc then falls back to `clone`, checked here.
//! `seccomp` is refused too: nothing can change the filters once they are in.
//!
//! The list was taken from `strace -f` of the mocked and the .NET component's
//! workers through their test suites, and widened by the calls glibc and the
//! .NET runtime make on paths the tests do not reach (timers, memory
//! advice, scheduler queries). A call refused that a real component needs
//! shows as that component's own error, and in the worker's output.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Allowed with any arguments.
const ALWAYS: &[libc::c_long] = &[
    // Reading and writing descriptors, waiting on them.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_lseek,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_dup,
    libc::SYS_dup3,
    libc::SYS_pipe2,
    libc::SYS_ppoll,
    libc::SYS_pselect6,
    libc::SYS_epoll_create1,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_pwait,
    libc::SYS_eventfd2,
    libc::SYS_flock,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_ftruncate,
    libc::SYS_fadvise64,
    // Files (writes are confined by Landlock).
    libc::SYS_openat,
    libc::SYS_newfstatat,
    libc::SYS_fstat,
    libc::SYS_statx,
    libc::SYS_statfs,
    libc::SYS_fstatfs,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_readlinkat,
    libc::SYS_getdents64,
    libc::SYS_getcwd,
    libc::SYS_mkdirat,
    libc::SYS_unlinkat,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_fchmod,
    libc::SYS_umask,
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    libc::SYS_mincore,
    libc::SYS_msync,
    libc::SYS_membarrier,
    libc::SYS_memfd_create,
    libc::SYS_get_mempolicy,
    libc::SYS_set_mempolicy,
    // Threads and their synchronisation.
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_get_robust_list,
    libc::SYS_set_tid_address,
    libc::SYS_rseq,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_getparam,
    libc::SYS_sched_getscheduler,
    libc::SYS_sched_get_priority_max,
    libc::SYS_sched_get_priority_min,
    libc::SYS_getpriority,
    // Time and timers.
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_gettimeofday,
    libc::SYS_timer_create,
    libc::SYS_timer_settime,
    libc::SYS_timer_gettime,
    libc::SYS_timer_delete,
    libc::SYS_timerfd_create,
    libc::SYS_timerfd_settime,
    libc::SYS_timerfd_gettime,
    // Signals it handles (sending them is below: only to itself).
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigsuspend,
    libc::SYS_rt_sigtimedwait,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    // Who and where it is.
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getppid,
    libc::SYS_getsid,
    libc::SYS_getpgid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getresuid,
    libc::SYS_getresgid,
    libc::SYS_getgroups,
    libc::SYS_capget,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_getrusage,
    libc::SYS_times,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_getrandom,
    libc::SYS_prctl,
    libc::SYS_wait4,
    libc::SYS_exit,
    libc::SYS_exit_group,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_arch_prctl,
    // The x86_64 forms of calls above (aarch64 has only the *at forms).
    #[cfg(target_arch = "x86_64")]
    libc::SYS_open,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_stat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_lstat,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_access,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_readlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_unlink,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_mkdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rmdir,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_rename,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_dup2,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_pipe,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_poll,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_select,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_epoll_wait,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_time,
];

/// Installs the allowlist and the `clone3` filter on this process (every
/// thread; the worker has only its main thread here, and threads it starts
/// later inherit both). Returns how many calls the allowlist lets through.
pub(super) fn install() -> Result<u32, String> {
    let fail = |e: &dyn std::fmt::Display| format!("seccomp: {e}");
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| fail(&e))?;
    let rules = allowlist(std::process::id()).map_err(|e| fail(&e))?;
    let allowed = u32::try_from(rules.len()).unwrap_or(u32::MAX);
    // clone3's filter first: once the allowlist is in, `seccomp` itself is refused. The
    // allowlist lets clone3 through; of two filters' answers the stricter one is
    // returned (an errno over allow), so clone3 gets ENOSYS.
    let no_clone3 = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .map_err(|e| fail(&e))?;
    let allowlist = SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )
    .map_err(|e| fail(&e))?;
    for filter in [no_clone3, allowlist] {
        let program: BpfProgram = filter.try_into().map_err(|e| fail(&e))?;
        seccompiler::apply_filter_all_threads(&program).map_err(|e| fail(&e))?;
    }
    Ok(allowed)
}

/// The rules of the allowlist for a worker whose pid is `pid`.
fn allowlist(pid: u32) -> seccompiler::Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALWAYS.iter().map(|&call| (call, Vec::new())).collect();
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Qword, op, value);
    let clone_thread = libc::CLONE_THREAD as u64;
    rules.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![arg(
            0,
            SeccompCmpOp::MaskedEq(clone_thread),
            clone_thread,
        )?])?],
    );
    let own = u64::from(pid);
    for call in [libc::SYS_kill, libc::SYS_tgkill] {
        rules.insert(
            call,
            vec![SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, own)?])?],
        );
    }
    // Its own threads' CPUs only (0: the calling thread), as the .NET runtime sets them.
    rules.insert(
        libc::SYS_sched_setaffinity,
        vec![SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, 0)?])?],
    );
    rules.insert(
        libc::SYS_prlimit64,
        vec![
            SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, 0)?])?,
            SeccompRule::new(vec![arg(0, SeccompCmpOp::Eq, own)?])?,
        ],
    );
    // clone3 is let through here, to be answered by its own filter.
    rules.insert(libc::SYS_clone3, Vec::new());
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_that_leaves_the_worker_is_on_the_list() {
        let rules = allowlist(42).expect("rules");
        for refused in [
            libc::SYS_socket,
            libc::SYS_socketpair,
            libc::SYS_connect,
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_setsid,
            libc::SYS_setpgid,
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_pidfd_open,
            libc::SYS_pidfd_getfd,
            libc::SYS_pidfd_send_signal,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_mount,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_setpriority,
            libc::SYS_tkill,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_fork,
            #[cfg(target_arch = "x86_64")]
            libc::SYS_vfork,
        ] {
            assert!(!rules.contains_key(&refused), "syscall {refused} allowed");
        }
        assert_eq!(rules[&libc::SYS_clone].len(), 1, "clone only as a thread");
        assert_eq!(rules[&libc::SYS_kill].len(), 1, "kill only of itself");
    }
}
