//! The allow-lists our own helpers (the console pump, the port forwarder) put on
//! themselves once set up: unlike third-party helpers (see [`super::helper_filter`]),
//! we know every call they make, so past their setup they may make only those. A
//! call outside the list fails with EPERM rather than killing the process: a helper
//! taken over gains nothing from a refused call, and a missed one in a rare path
//! degrades (a connection refused, a log line lost) instead of ending the pump that
//! QEMU's console depends on. Installed on top of the helpers' deny-list.

use seccompiler::{SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
#[error("a helper's own seccomp allow-list: {0}")]
pub struct OwnFilterError(String);

fn err(e: impl std::fmt::Display) -> OwnFilterError {
    OwnFilterError(e.to_string())
}

/// What ends a process or thread, returns from a signal handler, or restarts an
/// interrupted call: every allow-list has them.
const ALWAYS: &[i64] = &[
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_rt_sigreturn,
    libc::SYS_restart_syscall,
    libc::SYS_sigaltstack,
    libc::SYS_munmap,
];

/// The console pump: it reads one pipe and writes one file.
pub const CONSOLE: &[i64] = &[libc::SYS_read, libc::SYS_write, libc::SYS_close];

/// The port forwarder: threads (std's, through glibc: clone3 is answered ENOSYS by
/// the deny-list underneath, so glibc uses clone, which is limited to threads here),
/// TCP and UDP sockets to the guest, poll on them and on the VMM's pidfd.
pub const PORTS: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_close,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_accept4,
    libc::SYS_accept,
    libc::SYS_connect,
    libc::SYS_socket,
    libc::SYS_shutdown,
    libc::SYS_setsockopt,
    libc::SYS_getsockopt,
    libc::SYS_getsockname,
    libc::SYS_getpeername,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_fcntl,
    libc::SYS_ioctl,
    libc::SYS_mmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_brk,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_rt_sigprocmask,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_clone3,
];

/// The filter that allows `calls` (and [`ALWAYS`]), `clone` only for a thread (when
/// `threads`), `socket` only for IPv4 (when listed), and fails anything else with EPERM.
pub fn allowing(calls: &[i64], threads: bool) -> Result<seccompiler::BpfProgram, OwnFilterError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in ALWAYS.iter().chain(calls) {
        rules.insert(nr, vec![]);
    }
    if threads {
        let thread = libc::CLONE_THREAD as u64;
        let c =
            SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(thread), thread).map_err(err)?;
        rules.insert(libc::SYS_clone, vec![SeccompRule::new(vec![c]).map_err(err)?]);
    }
    // Where listed, socket is for IPv4 only and ioctl for set_nonblocking (FIONBIO) only.
    narrow(&mut rules, libc::SYS_socket, 0, libc::AF_INET as u64)?;
    narrow(&mut rules, libc::SYS_ioctl, 1, libc::FIONBIO)?;
    super::helper_filter::compile(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow).map_err(err)
}

/// Lets `nr`, when `rules` allows it, through only with argument `arg` equal to `value`.
fn narrow(rules: &mut BTreeMap<i64, Vec<SeccompRule>>, nr: i64, arg: u8, value: u64) -> Result<(), OwnFilterError> {
    if let std::collections::btree_map::Entry::Occupied(mut e) = rules.entry(nr) {
        let c = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value).map_err(err)?;
        e.insert(vec![SeccompRule::new(vec![c]).map_err(err)?]);
    }
    Ok(())
}

/// Puts the allow-list of `calls` on this process (call it before any thread starts:
/// threads inherit it), after making the process non-dumpable.
pub fn confine_self(calls: &[i64], threads: bool) -> Result<(), OwnFilterError> {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let prog = allowing(calls, threads)?;
    seccompiler::apply_filter(&prog).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `probe` in a forked child under `prog` and returns its exit code (11: the
    /// filter did not go on). The filter is built before the fork: the child of a
    /// threaded test may not allocate.
    fn under(prog: &seccompiler::BpfProgram, probe: fn() -> i32) -> i32 {
        // SAFETY: the child only applies a built filter, makes raw syscalls and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = if seccompiler::apply_filter(prog).is_err() { 11 } else { probe() };
                // SAFETY: _exit ends the child at once, running nothing of the parent's.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None).expect("wait") {
                nix::sys::wait::WaitStatus::Exited(_, code) => code,
                other => panic!("the probe did not exit: {other:?}"),
            },
        }
    }

    /// 1 when a raw syscall's result says it went through (`>= 0`).
    fn went(r: i64) -> i32 {
        i32::from(r >= 0)
    }

    /// After the console's allow-list, writing still works; opening a file, making a
    /// socket, forking and exec do not.
    #[test]
    fn the_consoles_list_allows_its_io_and_refuses_the_rest() {
        let prog = allowing(CONSOLE, false).expect("filter");
        let code = under(&prog, || {
            // SAFETY: raw syscalls with valid arguments; each result is only compared.
            unsafe {
                (1 - went(libc::write(2, b"".as_ptr().cast(), 0) as i64))
                    | went(libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) as i64) << 1
                    | went(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as i64) << 2
                    | went(libc::syscall(libc::SYS_fork)) << 3
                    | went(libc::syscall(libc::SYS_execve, c"/bin/true".as_ptr(), 0, 0)) << 4
            }
        });
        assert_eq!(code, 0, "bit 1: write refused; 2 open, 4 socket, 8 fork, 16 exec went through");
    }

    #[test]
    fn the_forwarders_list_allows_inet_sockets_and_threads_only() {
        let prog = allowing(PORTS, true).expect("filter");
        let code = under(&prog, || {
            // SAFETY: raw syscalls with valid arguments; results are only compared.
            unsafe {
                (1 - went(libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) as i64))
                    | went(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0) as i64) << 1
                    | went(libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) as i64) << 2
                    | went(libc::syscall(libc::SYS_fork)) << 3
                    | went(libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY) as i64) << 4
            }
        });
        assert_eq!(code, 0, "bit 1: inet refused; 2 unix, 4 vsock, 8 fork, 16 open went through");
    }
}
