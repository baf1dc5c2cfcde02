//! What isola-vmm gives up once the VM is built and before the guest runs: everything
//! it opened stays open (KVM, guest memory, the tap, sockets, the console), but from
//! then on it holds no capability, cannot gain privileges, cannot write files past a
//! size, and may make only the syscalls its threads need (a seccomp filter for every
//! thread, as Firecracker does); anything else kills the process.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// Largest file the VMM may write (console log, its own log): a guest that prints
/// without end cannot fill the host's disk.
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Open files at most (the vsock muxer takes up to 1024 connections).
pub const MAX_OPEN_FILES: u64 = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    #[error("{what}: {source}")]
    Os { what: &'static str, source: std::io::Error },
    #[error("building the seccomp filter: {0}")]
    Filter(String),
}

fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> ConfineError {
    move |source| ConfineError::Os { what, source }
}

fn check(rc: libc::c_int, what: &'static str) -> Result<(), ConfineError> {
    if rc < 0 {
        return Err(os(what)(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Syscalls every isola-vmm thread may make after setup (vCPUs: KVM_RUN and exit
/// handling; device threads: epoll, eventfds, the tap, unix sockets, vhost-user
/// messages; all: memory, futexes, thread start and exit, clocks, logging).
const ALLOWED: &[i64] = &[
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_fdatasync,
    libc::SYS_recvfrom,
    libc::SYS_recvmsg,
    libc::SYS_sendto,
    libc::SYS_sendmsg,
    libc::SYS_close,
    libc::SYS_shutdown,
    libc::SYS_accept4,
    libc::SYS_connect,
    libc::SYS_getsockopt,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_ctl,
    libc::SYS_epoll_create1,
    libc::SYS_eventfd2,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_fcntl,
    libc::SYS_lseek,
    libc::SYS_fstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_mincore,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_rt_sigaction,
    libc::SYS_sigaltstack,
    libc::SYS_clone3,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_tgkill,
    libc::SYS_sched_yield,
    libc::SYS_sched_getaffinity,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

fn cond(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> Result<SeccompCondition, ConfineError> {
    SeccompCondition::new(arg, len, op, value).map_err(|e| ConfineError::Filter(e.to_string()))
}

fn rule(conds: Vec<SeccompCondition>) -> Result<SeccompRule, ConfineError> {
    SeccompRule::new(conds).map_err(|e| ConfineError::Filter(e.to_string()))
}

/// The allow-list, with argument checks where a call is only safe one way.
pub fn rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, ConfineError> {
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&n| (n, vec![])).collect();
    // Threads only: never a new process.
    let thread = libc::CLONE_THREAD as u64;
    m.insert(
        libc::SYS_clone,
        // clone(flags, stack, parent_tid, child_tid, tls): the flags are argument 0.
        vec![rule(vec![cond(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(thread), thread)?])?],
    );
    // Unix sockets only (guest-initiated vsock connections to `<uds>_<port>`).
    m.insert(
        libc::SYS_socket,
        vec![rule(vec![cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?])?],
    );
    m.insert(libc::SYS_openat, read_only_open()?);
    // Naming our own threads; no_new_privs (already set) as a thread narrows itself.
    let prctl = |op: libc::c_int| rule(vec![cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, op as u64)?]);
    m.insert(libc::SYS_prctl, vec![prctl(libc::PR_SET_NAME)?, prctl(libc::PR_SET_NO_NEW_PRIVS)?]);
    // A thread adding a filter to itself (its kind's narrower list): flags 0, so never
    // TSYNC, and a filter can only take away.
    let mode = cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, u64::from(libc::SECCOMP_SET_MODE_FILTER))?;
    let no_flags = cond(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, 0)?;
    m.insert(libc::SYS_seccomp, vec![rule(vec![mode, no_flags])?]);
    m.insert(libc::SYS_ioctl, ioctl_rules(&allowed_ioctls())?);
    Ok(m)
}

/// `_IO(KVMIO, 0x80)`: enter the guest.
pub const KVM_RUN: u64 = 0xae80;
/// `_IOR(KVMIO, 0x81, struct kvm_regs)`: where a stopped or failed vCPU was.
pub const KVM_GET_REGS: u64 = 0x8090_ae81;
/// The tap's offloads, set when the driver acks its features.
pub const TUNSETOFFLOAD: u64 = 0x4004_54d0;
/// Non-blocking mode on accepted vsock streams (`set_nonblocking`).
pub const FIONBIO: u64 = 0x5421;

/// The state reads a snapshot makes, each on the vCPU's own thread (KVM_GET_REGS is
/// already allowed).
pub const SNAPSHOT_VCPU_IOCTLS: &[u64] = &[
    0x8138_ae83, // KVM_GET_SREGS
    0xc008_ae88, // KVM_GET_MSRS
    0x8004_ae98, // KVM_GET_MP_STATE
    0x8400_ae8e, // KVM_GET_LAPIC
    0x8040_ae9f, // KVM_GET_VCPU_EVENTS
    0x8080_aea1, // KVM_GET_DEBUGREGS
    0x9000_aea4, // KVM_GET_XSAVE
    0x8188_aea6, // KVM_GET_XCRS
];
/// The VM-wide reads of a snapshot, on the control thread.
pub const SNAPSHOT_VM_IOCTLS: &[u64] = &[
    0xc208_ae62, // KVM_GET_IRQCHIP
    0x8070_ae9f, // KVM_GET_PIT2
    0x8030_ae7c, // KVM_GET_CLOCK
];

/// The only ioctls after setup: everything else on /dev/kvm, the VM, the tap or a
/// socket (new memory slots, new vCPUs, device assignment, any KVM_SET_…) kills the
/// VMM. Reads of the VM's own state are allowed for snapshots.
fn allowed_ioctls() -> Vec<u64> {
    [KVM_RUN, KVM_GET_REGS, TUNSETOFFLOAD, FIONBIO]
        .iter()
        .chain(SNAPSHOT_VCPU_IOCTLS)
        .chain(SNAPSHOT_VM_IOCTLS)
        .copied()
        .collect()
}
/// A vCPU thread's: it runs the guest, activates devices (the tap's offloads), and
/// reads its own state for a snapshot.
fn vcpu_ioctls() -> Vec<u64> {
    [KVM_RUN, KVM_GET_REGS, TUNSETOFFLOAD].iter().chain(SNAPSHOT_VCPU_IOCTLS).copied().collect()
}
/// A device worker's: vsock streams it accepts or connects.
const WORKER_IOCTLS: &[u64] = &[FIONBIO];

/// openat for reading only: no create, no write, no truncate.
fn read_only_open() -> Result<Vec<SeccompRule>, ConfineError> {
    let write_or_create = (libc::O_ACCMODE | libc::O_CREAT | libc::O_TRUNC) as u64;
    Ok(vec![rule(vec![cond(2, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(write_or_create), 0)?])?])
}

fn ioctl_rules(requests: &[u64]) -> Result<Vec<SeccompRule>, ConfineError> {
    requests.iter().map(|&r| rule(vec![cond(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, r)?])).collect()
}

/// Syscalls common to every thread kind on top of its own: memory, futexes, signals
/// (the vCPU kick), clocks, logging, thread exit.
const THREAD_COMMON: &[i64] = &[
    libc::SYS_write,
    libc::SYS_writev,
    libc::SYS_read,
    libc::SYS_close,
    libc::SYS_futex,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_mremap,
    libc::SYS_brk,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_gettid,
    libc::SYS_getpid,
    libc::SYS_sched_yield,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// Which thread a per-thread filter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadKind {
    /// Runs KVM_RUN and serves port and MMIO exits inline, device activation included
    /// (eventfds, vhost-user messages to virtiofsd).
    Vcpu,
    /// A device's event loop: epoll, its queues' eventfds, the tap, unix sockets.
    Worker,
    /// The control API: accepts on its socket, kicks and waits for the vCPUs, reads
    /// the VM's irqchip, PIT and clock, and writes a snapshot into files opened at start.
    Control,
}

/// The allow-list of one thread kind, within the process-wide one.
pub fn thread_rules(kind: ThreadKind) -> Result<BTreeMap<i64, Vec<SeccompRule>>, ConfineError> {
    let own: &[i64] = match kind {
        // A device reset (the guest's driver probing, or powering off) stops its worker
        // and takes its backend back on this thread: the vsock muxer then drops its
        // connections from its own epoll set and shuts their sockets.
        ThreadKind::Vcpu => &[
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
            libc::SYS_eventfd2,
            libc::SYS_fcntl,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_create1,
            libc::SYS_shutdown,
        ],
        ThreadKind::Worker => &[
            libc::SYS_epoll_wait,
            libc::SYS_epoll_pwait,
            libc::SYS_epoll_ctl,
            libc::SYS_epoll_create1,
            libc::SYS_readv,
            libc::SYS_recvfrom,
            libc::SYS_recvmsg,
            libc::SYS_sendto,
            libc::SYS_sendmsg,
            libc::SYS_shutdown,
            libc::SYS_accept4,
            libc::SYS_connect,
            libc::SYS_getsockopt,
            libc::SYS_fcntl,
            libc::SYS_unlink,
            libc::SYS_unlinkat,
            libc::SYS_prctl,
            // virtio-blk: a disk's reads, writes and flushes.
            libc::SYS_pread64,
            libc::SYS_pwrite64,
            libc::SYS_fdatasync,
        ],
        ThreadKind::Control => &[
            libc::SYS_accept4,
            libc::SYS_recvfrom,
            libc::SYS_sendto,
            libc::SYS_pwrite64,
            libc::SYS_tgkill,
            libc::SYS_fcntl,
            // A device quiesced for a snapshot starts again with a new stop eventfd;
            // virtio-fs's rings are taken from and handed back to virtiofsd
            // (vhost-user messages, fds in SCM_RIGHTS).
            libc::SYS_eventfd2,
            libc::SYS_sendmsg,
            libc::SYS_recvmsg,
        ],
    };
    let mut m: BTreeMap<i64, Vec<SeccompRule>> = THREAD_COMMON.iter().chain(own).map(|&n| (n, vec![])).collect();
    let ioctls = match kind {
        ThreadKind::Vcpu => vcpu_ioctls(),
        ThreadKind::Worker => WORKER_IOCTLS.to_vec(),
        // TUNSETOFFLOAD: a net device resumed after a snapshot sets its tap's offloads.
        ThreadKind::Control => SNAPSHOT_VM_IOCTLS.iter().chain(&[TUNSETOFFLOAD]).copied().collect(),
    };
    m.insert(libc::SYS_ioctl, ioctl_rules(&ioctls)?);
    // glibc's malloc reads /proc/sys/vm/overcommit_memory when it trims a thread's heap.
    m.insert(libc::SYS_openat, read_only_open()?);
    if kind == ThreadKind::Worker {
        // Guest-initiated vsock connections: unix sockets only.
        let unix = cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::AF_UNIX as u64)?;
        m.insert(libc::SYS_socket, vec![rule(vec![unix])?]);
        let named = cond(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, libc::PR_SET_NAME as u64)?;
        m.insert(libc::SYS_prctl, vec![rule(vec![named])?]);
    }
    Ok(m)
}

/// The compiled per-thread filters, once the process is confined.
static THREAD_FILTERS: std::sync::OnceLock<[BpfProgram; 3]> = std::sync::OnceLock::new();

/// Narrows the calling thread to its kind's allow-list (on top of the process-wide
/// filter). Does nothing when the process is not under seccomp.
pub fn enter_thread(kind: ThreadKind) -> Result<(), ConfineError> {
    let Some([vcpu, worker, control]) = THREAD_FILTERS.get() else { return Ok(()) };
    let p = match kind {
        ThreadKind::Vcpu => vcpu,
        ThreadKind::Worker => worker,
        ThreadKind::Control => control,
    };
    seccompiler::apply_filter(p).map_err(|e| ConfineError::Filter(e.to_string()))
}

fn program(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, ConfineError> {
    let f = SeccompFilter::new(rules, mismatch, matched, TargetArch::x86_64)
        .map_err(|e| ConfineError::Filter(e.to_string()))?;
    f.try_into().map_err(|e: seccompiler::BackendError| ConfineError::Filter(e.to_string()))
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64, what: &'static str) -> Result<(), ConfineError> {
    let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: setrlimit reads the struct we pass and nothing else.
    check(unsafe { libc::setrlimit(resource, &lim) }, what)
}

/// Empties the bounding and ambient sets, so nothing can ever be regained.
fn drop_capability_bounds() -> Result<(), ConfineError> {
    for cap in 0..=63 {
        // SAFETY: PR_CAPBSET_DROP takes plain integers; unknown capabilities are EINVAL.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL) {
            return Err(os("dropping the capability bounding set")(std::io::Error::last_os_error()));
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes plain integers and touches no memory.
    let rc = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    check(rc, "clearing ambient capabilities")
}

/// Empties the effective, permitted and inheritable sets (last: the uid change and the
/// bounding set need some of them).
fn clear_capabilities() -> Result<(), ConfineError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header { version: 0x2008_0522, pid: 0 };
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset(2) with a v3 header and its two data words, all ours and valid.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    check(rc as libc::c_int, "dropping capabilities")
}

/// Becomes `uid`:`gid` with no supplementary groups, on every thread (the kernel's
/// setresuid/setresgid are per thread; glibc's wrappers apply them to all).
fn become_user(uid: u32, gid: u32) -> Result<(), ConfineError> {
    // SAFETY: setgroups with an empty list reads no memory.
    check(unsafe { libc::setgroups(0, std::ptr::null()) }, "dropping supplementary groups")?;
    // SAFETY: plain integers.
    check(unsafe { libc::setresgid(gid, gid, gid) }, "setting the group id")?;
    // SAFETY: plain integers.
    check(unsafe { libc::setresuid(uid, uid, uid) }, "setting the user id")
}

/// Confines this process, all its threads included: as `user` (uid, gid) when given,
/// and without the syscall filter when `seccomp` is false (for debugging; unsafe).
/// Files are limited to `max_file_bytes` ([`MAX_FILE_BYTES`] unless a snapshot's
/// memory file needs more).
/// Not dumpable, said explicitly rather than left to the uid change (which leaves a
/// process dumpable where a host sets `fs.suid_dumpable` to 1): no other process of
/// the sandbox's uid may trace the VMM or open its memory through /proc.
fn not_dumpable() -> Result<(), ConfineError> {
    // SAFETY: plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }, "making the VMM not dumpable")
}

pub fn confine(seccomp: bool, user: Option<(u32, u32)>, max_file_bytes: u64) -> Result<(), ConfineError> {
    // Past the file-size limit a write fails with EFBIG instead of killing us.
    // SAFETY: setting a signal's disposition to ignore has no other effect.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    set_limit(libc::RLIMIT_FSIZE, max_file_bytes, "limiting file size")?;
    set_limit(libc::RLIMIT_CORE, 0, "disabling core dumps")?;
    set_limit(libc::RLIMIT_NOFILE, MAX_OPEN_FILES, "limiting open files")?;
    // SAFETY: plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, "setting no_new_privs")?;
    // Bounding set, then the uid change, then the sets: each step needs a capability
    // the next one takes away (CAP_SETPCAP, CAP_SETUID/SETGID).
    drop_capability_bounds()?;
    if let Some((uid, gid)) = user {
        become_user(uid, gid)?;
    }
    clear_capabilities()?;
    not_dumpable()?;
    // The uid change cleared the parent-death signal that ties a jailed VMM to its
    // supervisor.
    crate::jail::rearm_parent_death().map_err(|e| ConfineError::Filter(e.to_string()))?;
    if !seccomp {
        return Ok(());
    }
    // glibc starts threads with clone3 when it can, and falls back to clone on ENOSYS;
    // clone3's flags live in memory a filter cannot read, so it is refused that way.
    let clone3 = BTreeMap::from([(libc::SYS_clone3, vec![])]);
    let deny_clone3 = program(clone3, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32))?;
    let allow = program(rules()?, SeccompAction::KillProcess, SeccompAction::Allow)?;
    let per_thread = |k| program(thread_rules(k)?, SeccompAction::KillProcess, SeccompAction::Allow);
    let _ = THREAD_FILTERS.set([
        per_thread(ThreadKind::Vcpu)?,
        per_thread(ThreadKind::Worker)?,
        per_thread(ThreadKind::Control)?,
    ]);
    for p in [&deny_clone3, &allow] {
        seccompiler::apply_filter_all_threads(p).map_err(|e| ConfineError::Filter(e.to_string()))?;
    }
    Ok(())
}

/// What the jail's supervisor may do: wait for the VMM, take a signal, and end.
const SUPERVISOR_ALLOWED: &[i64] = &[
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_close,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_tgkill,
    libc::SYS_kill,
    libc::SYS_futex,
    libc::SYS_munmap,
    libc::SYS_brk,
    libc::SYS_sigaltstack,
    libc::SYS_restart_syscall,
    libc::SYS_exit,
    libc::SYS_exit_group,
];

/// The allow-list of the jail's supervisor.
pub fn supervisor_rules() -> BTreeMap<i64, Vec<SeccompRule>> {
    SUPERVISOR_ALLOWED.iter().map(|&n| (n, vec![])).collect()
}

/// Confines the jail's supervisor as the VMM is confined (as `user`, no capability,
/// no_new_privs), with its own far smaller filter.
pub fn confine_supervisor(user: Option<(u32, u32)>) -> Result<(), ConfineError> {
    set_limit(libc::RLIMIT_CORE, 0, "disabling core dumps")?;
    // SAFETY: plain integers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) }, "setting no_new_privs")?;
    drop_capability_bounds()?;
    if let Some((uid, gid)) = user {
        become_user(uid, gid)?;
    }
    clear_capabilities()?;
    not_dumpable()?;
    let p = program(supervisor_rules(), SeccompAction::KillProcess, SeccompAction::Allow)?;
    seccompiler::apply_filter(&p).map_err(|e| ConfineError::Filter(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::{
        kvm_clock_data, kvm_debugregs, kvm_irqchip, kvm_lapic_state, kvm_mp_state, kvm_msrs, kvm_pit_state2, kvm_sregs,
        kvm_vcpu_events, kvm_xcrs, kvm_xsave,
    };

    /// `_IOR`/`_IOWR(KVMIO, nr, T)` as the kernel computes them.
    fn kvm_ioc(dir: u64, nr: u64, size: usize) -> u64 {
        (dir << 30) | ((size as u64) << 16) | (0xae << 8) | nr
    }

    #[test]
    fn the_snapshot_ioctl_numbers_are_the_kernels() {
        let (r, rw) = (2, 3);
        use std::mem::size_of;
        let vcpu = [
            kvm_ioc(r, 0x83, size_of::<kvm_sregs>()),
            kvm_ioc(rw, 0x88, size_of::<kvm_msrs>()),
            kvm_ioc(r, 0x98, size_of::<kvm_mp_state>()),
            kvm_ioc(r, 0x8e, size_of::<kvm_lapic_state>()),
            kvm_ioc(r, 0x9f, size_of::<kvm_vcpu_events>()),
            kvm_ioc(r, 0xa1, size_of::<kvm_debugregs>()),
            kvm_ioc(r, 0xa4, size_of::<kvm_xsave>()),
            kvm_ioc(r, 0xa6, size_of::<kvm_xcrs>()),
        ];
        assert_eq!(SNAPSHOT_VCPU_IOCTLS, vcpu);
        let vm = [
            kvm_ioc(rw, 0x62, size_of::<kvm_irqchip>()),
            kvm_ioc(r, 0x9f, size_of::<kvm_pit_state2>()),
            kvm_ioc(r, 0x7c, size_of::<kvm_clock_data>()),
        ];
        assert_eq!(SNAPSHOT_VM_IOCTLS, vm);
        assert_eq!(KVM_GET_REGS, kvm_ioc(r, 0x81, size_of::<kvm_bindings::kvm_regs>()));
    }

    #[test]
    fn the_filter_compiles_and_leaves_out_process_creation_and_exec() {
        let r = rules().expect("rules");
        for forbidden in [
            libc::SYS_execve,
            libc::SYS_execveat,
            libc::SYS_fork,
            libc::SYS_vfork,
            libc::SYS_ptrace,
            libc::SYS_mount,
            libc::SYS_setuid,
            libc::SYS_bpf,
        ] {
            assert!(!r.contains_key(&forbidden), "syscall {forbidden} must not be allowed");
        }
        assert!(r[&libc::SYS_clone].len() == 1 && r[&libc::SYS_socket].len() == 1);
        assert!(r.len() > 50, "{} syscalls", r.len());
        program(r, SeccompAction::KillProcess, SeccompAction::Allow).expect("compiles to BPF");
    }

    #[test]
    fn each_thread_kind_gets_only_its_own_calls_and_ioctls() {
        let vcpu = thread_rules(ThreadKind::Vcpu).expect("vcpu rules");
        let worker = thread_rules(ThreadKind::Worker).expect("worker rules");
        // Nobody but the spawner starts threads; a vCPU never touches a socket of its own.
        for no in [
            libc::SYS_clone,
            libc::SYS_clone3,
            libc::SYS_socket,
            libc::SYS_accept4,
            libc::SYS_connect,
            libc::SYS_epoll_wait,
        ] {
            assert!(!vcpu.contains_key(&no), "vcpu thread allows syscall {no}");
        }
        assert!(!worker.contains_key(&libc::SYS_clone) && !worker.contains_key(&libc::SYS_seccomp));
        assert_eq!(vcpu[&libc::SYS_ioctl].len(), vcpu_ioctls().len());
        assert_eq!(worker[&libc::SYS_ioctl].len(), 1, "a worker's only ioctl is FIONBIO");
        assert!(!WORKER_IOCTLS.contains(&KVM_RUN) && vcpu_ioctls().contains(&KVM_RUN));
        // The control thread never runs the guest, never opens a socket or starts a thread.
        let control = thread_rules(ThreadKind::Control).expect("control rules");
        for no in [libc::SYS_clone, libc::SYS_socket, libc::SYS_connect] {
            assert!(!control.contains_key(&no), "control thread allows syscall {no}");
        }
        assert_eq!(control[&libc::SYS_ioctl].len(), SNAPSHOT_VM_IOCTLS.len() + 1);
        // Every per-thread call is in the process-wide list too (else it could never pass).
        let all = rules().expect("rules");
        for n in vcpu.keys().chain(worker.keys()).chain(control.keys()) {
            assert!(all.contains_key(n), "syscall {n} is per-thread but not process-wide");
        }
        for k in [ThreadKind::Vcpu, ThreadKind::Worker, ThreadKind::Control] {
            program(thread_rules(k).expect("rules"), SeccompAction::KillProcess, SeccompAction::Allow)
                .expect("compiles");
        }
    }
}
