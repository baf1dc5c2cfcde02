//! isola-vmm's own namespaces, as Firecracker's jailer gives its VMM: a mount
//! namespace pivoted into an empty, read-only root that holds only the directories it
//! must still reach (its vsock socket directory), a fresh IPC namespace, and a PID
//! namespace of which the VMM is PID 1, so an escaped guest sees no host process and
//! no host file.
//!
//! A process cannot move itself into a new PID namespace, so [`enter`] forks: the
//! child goes on to be the VMM; the parent stays as a small supervisor, confined as
//! tightly as the VMM, that exits the way the VMM does. Killing the supervisor kills
//! the VMM (parent-death signal), so callers may treat its pid as the VMM's.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("{what}: {source}")]
    Os { what: String, source: std::io::Error },
}

fn os(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> JailError {
    let what = what.into();
    move |source| JailError::Os { what, source }
}

fn check(rc: libc::c_long, what: &str) -> Result<libc::c_long, JailError> {
    if rc < 0 {
        return Err(os(what)(std::io::Error::last_os_error()));
    }
    Ok(rc)
}

fn cpath(p: &Path) -> Result<CString, JailError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| os(format!("path {}", p.display()))(std::io::ErrorKind::InvalidInput.into()))
}

/// The VMM's read end of a pipe whose write end the supervisor holds: when it reads
/// as closed, the supervisor is gone. -1 outside a jail.
static SUPERVISOR_ALIVE: AtomicI32 = AtomicI32::new(-1);

/// How the caller confines the supervisor (the jail knows nothing of the VMM's own
/// confinement, nor names its error type: confine uses the jail, not the other way).
pub type ConfineSupervisor<E> = fn(Option<(u32, u32)>) -> Result<(), E>;

/// Unshares the mount, IPC and PID namespaces and forks. Returns in the child (the VMM
/// to be); the parent supervises it and never returns. Call before any thread exists.
/// `confine_supervisor` confines the parent once it is the supervisor.
pub fn enter<E: std::fmt::Display>(
    user: Option<(u32, u32)>,
    confine_supervisor: ConfineSupervisor<E>,
) -> Result<(), JailError> {
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWIPC | libc::CLONE_NEWPID;
    // SAFETY: unshare(2) with plain flags.
    check(unsafe { libc::unshare(flags) }.into(), "unsharing namespaces (the jail needs root)")?;
    let nothing: *const libc::c_char = std::ptr::null();
    // Nothing mounted in here ever propagates back to the host.
    // SAFETY: mount(2) changing propagation only; no strings besides "/".
    let rc = unsafe { libc::mount(nothing, c"/".as_ptr(), nothing, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) };
    check(rc.into(), "making the mount namespace private")?;
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two ints we pass.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }.into(), "supervisor pipe")?;
    // SAFETY: no other thread exists yet (the caller's contract), so the child may run
    // Rust code after fork.
    let pid = check(unsafe { libc::fork() }.into(), "forking the VMM into its PID namespace")? as libc::pid_t;
    if pid == 0 {
        // SAFETY: closing the write end we do not use; keeping the read end.
        unsafe { libc::close(fds[1]) };
        SUPERVISOR_ALIVE.store(fds[0], Ordering::Relaxed);
        return rearm_parent_death();
    }
    // SAFETY: closing the read end the supervisor does not use.
    unsafe { libc::close(fds[0]) };
    std::process::exit(supervise(pid, user, confine_supervisor))
}

/// Dies with the supervisor. The kernel clears the parent-death signal when the
/// credentials change, so the VMM calls this again after it drops its uid; and checks
/// the supervisor is still there (it may have gone before the signal was armed).
pub fn rearm_parent_death() -> Result<(), JailError> {
    let fd = SUPERVISOR_ALIVE.load(Ordering::Relaxed);
    if fd < 0 {
        return Ok(());
    }
    // SAFETY: prctl with integers.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) }.into(), "parent-death signal")?;
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll on one pollfd of ours, without waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    if n > 0 && p.revents & (libc::POLLHUP | libc::POLLIN) != 0 {
        // SAFETY: _exit ends this process at once.
        unsafe { libc::_exit(1) };
    }
    Ok(())
}

fn supervise<E: std::fmt::Display>(
    child: libc::pid_t,
    user: Option<(u32, u32)>,
    confine_supervisor: ConfineSupervisor<E>,
) -> i32 {
    // Terminating signals are taken by a signalfd: the supervisor then dies the same
    // way, and the kernel kills the VMM after it.
    // SAFETY: sigset_t is plain data, filled by sigemptyset/sigaddset.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above; the set is ours.
    unsafe {
        libc::sigemptyset(&mut set);
        for s in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGQUIT] {
            libc::sigaddset(&mut set, s);
        }
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    // SAFETY: signalfd over our set; a new descriptor.
    let sfd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC) };
    // SAFETY: pidfd_open with integers; a new descriptor.
    let pfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child, 0) } as libc::c_int;
    if let Err(e) = confine_supervisor(user) {
        eprintln!("isola-vmm: error: confining the jail's supervisor: {e}");
        // SAFETY: kill with integers; the VMM must not outlive a failed supervisor.
        unsafe { libc::kill(child, libc::SIGKILL) };
    }
    loop {
        let mut fds = [
            libc::pollfd { fd: sfd, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: pfd, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: poll on our two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, if pfd < 0 { 100 } else { -1 }) };
        if n > 0 && fds[0].revents & libc::POLLIN != 0 {
            // SAFETY: signalfd_siginfo is plain data; read fills it.
            let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reading one record into `info`, of its size.
            if unsafe { libc::read(sfd, (&mut info as *mut libc::signalfd_siginfo).cast(), size) } == size as isize {
                die_by(info.ssi_signo as libc::c_int);
            }
        }
        let mut status = 0;
        // SAFETY: waitpid on our own child, without blocking.
        if unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) } == child {
            if libc::WIFSIGNALED(status) {
                die_by(libc::WTERMSIG(status));
            }
            return libc::WEXITSTATUS(status);
        }
    }
}

/// Ends the supervisor by signal `sig`, as the VMM ended (or as it was asked to).
fn die_by(sig: libc::c_int) -> ! {
    // SAFETY: restoring the default action, unblocking and raising the signal; a
    // signal whose default is to ignore cannot get here (only terminating ones do).
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(sig);
        libc::_exit(128 + sig)
    }
}

/// Pivots into a fresh, read-only tmpfs root holding only `keep` (each bound at its
/// own path, nosuid, nodev, noexec); the host's tree is detached. Call once everything
/// else the VMM needs is open.
pub fn pivot(keep: &[PathBuf]) -> Result<(), JailError> {
    let mut held = Vec::new();
    for k in keep {
        let c = cpath(k)?;
        // SAFETY: open(2) with a NUL-terminated path; a new descriptor.
        let fd = check(
            unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) }.into(),
            &format!("opening {}", k.display()),
        )?;
        // SAFETY: a new descriptor that nothing else owns.
        held.push((k, unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) }));
    }
    // Any directory will do as the mount point: this mount namespace is ours alone.
    let root = Path::new("/tmp");
    let root_c = cpath(root)?;
    let nothing: *const libc::c_char = std::ptr::null();
    let opts = c"mode=0755,size=64k";
    let f = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: mount(2) of a tmpfs with NUL-terminated strings.
    let rc = unsafe { libc::mount(c"tmpfs".as_ptr(), root_c.as_ptr(), c"tmpfs".as_ptr(), f, opts.as_ptr().cast()) };
    check(rc.into(), "mounting the jail's root")?;
    for (path, fd) in &held {
        let rel = path.strip_prefix("/").unwrap_or(path);
        let at = root.join(rel);
        std::fs::create_dir_all(&at).map_err(os(format!("creating {} in the jail", at.display())))?;
        let src = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap_or_default();
        let dst = cpath(&at)?;
        // SAFETY: mount(2) binding one of our descriptors onto a directory we made.
        let rc = unsafe { libc::mount(src.as_ptr(), dst.as_ptr(), nothing, libc::MS_BIND, std::ptr::null()) };
        check(rc.into(), &format!("binding {} into the jail", path.display()))?;
        let re = libc::MS_REMOUNT | libc::MS_BIND | f;
        // SAFETY: as above, a remount of our bind.
        let rc = unsafe { libc::mount(nothing, dst.as_ptr(), nothing, re, std::ptr::null()) };
        check(rc.into(), "restricting a jail bind")?;
    }
    // SAFETY: chdir/pivot_root/umount2 with NUL-terminated strings; "." is the new root.
    unsafe {
        check(libc::chdir(root_c.as_ptr()).into(), "entering the jail's root")?;
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()), "pivot_root")?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH).into(), "detaching the host's root")?;
        check(libc::chdir(c"/".as_ptr()).into(), "entering /")?;
        let ro = libc::MS_REMOUNT | libc::MS_RDONLY | f;
        check(
            libc::mount(nothing, c"/".as_ptr(), nothing, ro, std::ptr::null()).into(),
            "making the jail's root read-only",
        )?;
    }
    Ok(())
}
