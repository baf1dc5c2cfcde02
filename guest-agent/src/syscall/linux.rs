//! [`Syscall`] on the real kernel: nix, pathrs (`openat2` with `RESOLVE_IN_ROOT`),
//! caps and seccomp calls, each error naming its operation and path.

use super::*;

/// The real kernel.
pub struct Linux;

/// Where a program is looked for when the environment names no PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// After the maps are written: act as the namespace's root (when it is mapped), so files
/// we create on filesystems mounted inside the namespace have an owner it can express.
fn become_root_if_mapped(uid_map: &str, gid_map: &str) -> Result<(), SyscallError> {
    let maps_zero = |m: &str| m.lines().any(|l| l.split_whitespace().next() == Some("0"));
    if maps_zero(gid_map) {
        let g = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(g, g, g).map_err(os("setresgid in the user namespace"))?;
    }
    if maps_zero(uid_map) {
        let u = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(u, u, u).map_err(os("setresuid in the user namespace"))?;
    }
    Ok(())
}

fn path_err<'a>(op: &'static str, path: &'a Path) -> impl Fn(std::io::Error) -> SyscallError + 'a {
    move |source| SyscallError::Path { op, path: path.to_path_buf(), source }
}

fn cap_set(names: &[String]) -> Result<caps::CapsHashSet, SyscallError> {
    names
        .iter()
        .map(|n| n.parse::<caps::Capability>().map_err(|_| SyscallError::Caps(format!("unknown capability {n}"))))
        .collect()
}

fn cstrings(v: &[String]) -> Result<Vec<CString>, nix::Error> {
    v.iter().map(|s| CString::new(s.as_bytes()).map_err(|_| nix::Error::EINVAL)).collect()
}

fn in_root_err<'a>(op: &'static str, at: &'a InRoot) -> impl Fn(pathrs::error::Error) -> SyscallError + 'a {
    move |e| SyscallError::InRoot { op, path: at.display_path(), reason: e.to_string() }
}

fn open_root(at: &InRoot) -> Result<pathrs::Root, SyscallError> {
    pathrs::Root::open(at.root).map_err(in_root_err("open the rootfs for", at))
}

fn mkdir_parent(root: &pathrs::Root, at: &InRoot) -> Result<(), SyscallError> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = at.rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        root.mkdir_all(parent, &std::fs::Permissions::from_mode(0o755)).map_err(in_root_err("mkdir", at))?;
    }
    Ok(())
}

impl Syscall for Linux {
    fn mkdir_all(&self, path: &Path) -> Result<(), SyscallError> {
        std::fs::create_dir_all(path).map_err(path_err("mkdir", path))
    }

    fn mkdir_in(&self, at: &InRoot) -> Result<(), SyscallError> {
        use std::os::unix::fs::PermissionsExt;
        let root = open_root(at)?;
        root.mkdir_all(&at.rel, &std::fs::Permissions::from_mode(0o755)).map(drop).map_err(in_root_err("mkdir", at))
    }

    fn touch_in(&self, at: &InRoot) -> Result<(), SyscallError> {
        use std::os::unix::fs::PermissionsExt;
        let root = open_root(at)?;
        if root.resolve(&at.rel).is_ok() {
            return Ok(());
        }
        mkdir_parent(&root, at)?;
        root.create_file(&at.rel, pathrs::flags::OpenFlags::O_RDONLY, &std::fs::Permissions::from_mode(0o644))
            .map(drop)
            .map_err(in_root_err("create", at))
    }

    fn write_in(&self, at: &InRoot, contents: &[u8]) -> Result<(), SyscallError> {
        use pathrs::flags::OpenFlags;
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;
        let root = open_root(at)?;
        mkdir_parent(&root, at)?;
        let mut f = match root.resolve(&at.rel) {
            // An existing file, or the one an in-root symlink names: written in place.
            Ok(h) => h.reopen(OpenFlags::O_WRONLY | OpenFlags::O_TRUNC).map_err(in_root_err("open", at))?,
            Err(_) => {
                // A dangling symlink (e.g. resolv.conf to a resolver that does not run
                // here) is replaced by the file, as the container expects to read it.
                if root.resolve_nofollow(&at.rel).is_ok() {
                    root.remove_file(&at.rel).map_err(in_root_err("replace", at))?;
                }
                let flags = OpenFlags::O_WRONLY | OpenFlags::O_EXCL;
                root.create_file(&at.rel, flags, &std::fs::Permissions::from_mode(0o644))
                    .map_err(in_root_err("create", at))?
            }
        };
        f.write_all(contents).map_err(|e| SyscallError::InRoot {
            op: "write",
            path: at.display_path(),
            reason: e.to_string(),
        })
    }

    fn symlink_in(&self, target: &str, at: &InRoot) -> Result<(), SyscallError> {
        let root = open_root(at)?;
        if root.resolve_nofollow(&at.rel).is_ok() {
            return Ok(());
        }
        mkdir_parent(&root, at)?;
        root.create(&at.rel, &pathrs::InodeType::Symlink(target.into())).map_err(in_root_err("symlink", at))
    }

    fn mount_in(
        &self,
        source: &str,
        at: &InRoot,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        use std::os::fd::{AsFd, AsRawFd};
        let target = open_root(at)?.resolve(&at.rel).map_err(in_root_err("resolve the mount point", at))?;
        // The magic link names exactly the inode resolved above; mount(2) follows it.
        let via = PathBuf::from(format!("/proc/self/fd/{}", target.as_fd().as_raw_fd()));
        let fs = (!fstype.is_empty()).then_some(fstype);
        nix::mount::mount(Some(source), &via, fs, flags, data).map_err(|source| SyscallError::Mount {
            fstype: fstype.to_string(),
            target: at.display_path(),
            source,
        })
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        let fs = (!fstype.is_empty()).then_some(fstype);
        nix::mount::mount(Some(source), target, fs, flags, data).map_err(|source| SyscallError::Mount {
            fstype: fstype.to_string(),
            target: target.to_path_buf(),
            source,
        })
    }

    fn umount_detach(&self, target: &Path) -> Result<(), SyscallError> {
        nix::mount::umount2(target, MntFlags::MNT_DETACH).map_err(os("umount"))
    }

    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), SyscallError> {
        std::fs::write(path, contents).map_err(path_err("write", path))
    }

    fn mask_path(&self, path: &Path) -> Result<(), SyscallError> {
        match std::fs::metadata(path) {
            Err(_) => Ok(()), // nothing there to hide
            Ok(m) if m.is_dir() => self.mount("tmpfs", path, "tmpfs", MsFlags::MS_RDONLY, Some("size=0")),
            Ok(_) => self.mount("/dev/null", path, "", MsFlags::MS_BIND, None),
        }
    }

    fn readonly_path(&self, path: &Path) -> Result<(), SyscallError> {
        if !path.exists() {
            return Ok(());
        }
        self.mount(&path.to_string_lossy(), path, "", MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
        let ro = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC;
        self.mount(&path.to_string_lossy(), path, "", ro, None)
    }

    fn make_device(&self, at: &InRoot, dev: &crate::config::DeviceSpec) -> Result<(), SyscallError> {
        use std::os::fd::{AsFd, AsRawFd};
        use std::os::unix::fs::PermissionsExt;
        let root = open_root(at)?;
        mkdir_parent(&root, at)?;
        let perm = std::fs::Permissions::from_mode(dev.mode);
        let number = nix::sys::stat::makedev(dev.major, dev.minor);
        let kind = match dev.kind {
            'b' => pathrs::InodeType::BlockDevice(perm.clone(), number),
            'p' => pathrs::InodeType::Fifo(perm.clone()),
            _ => pathrs::InodeType::CharacterDevice(perm.clone(), number),
        };
        root.create(&at.rel, &kind).map_err(in_root_err("mknod", at))?;
        // mknod's mode went through the umask; owner and mode are set on the very node
        // made above, through its handle (the magic link names that inode only).
        let node = root.resolve_nofollow(&at.rel).map_err(in_root_err("resolve the new node", at))?;
        let via = PathBuf::from(format!("/proc/self/fd/{}", node.as_fd().as_raw_fd()));
        std::os::unix::fs::chown(&via, Some(dev.uid), Some(dev.gid)).map_err(path_err("chown", &at.display_path()))?;
        std::fs::set_permissions(&via, perm).map_err(path_err("chmod", &at.display_path()))
    }

    fn remount_root_readonly(&self) -> Result<(), SyscallError> {
        use nix::sys::statvfs::{statvfs, FsFlags};
        let have = statvfs("/").map_err(os("statvfs /"))?.flags();
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        for (st, ms) in [
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ] {
            if have.contains(st) {
                flags |= ms;
            }
        }
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(|source| SyscallError::Mount {
            fstype: String::new(),
            target: PathBuf::from("/"),
            source,
        })
    }

    fn unshare(&self, flags: CloneFlags) -> Result<(), SyscallError> {
        nix::sched::unshare(flags).map_err(os("unshare"))
    }

    fn unshare_user(&self, uid_map: &str, gid_map: &str, flags: CloneFlags) -> Result<(), SyscallError> {
        use nix::sys::wait::{waitpid, WaitStatus};
        use nix::unistd::{fork, ForkResult};
        // Only a process in the parent namespace may write arbitrary maps (not just its
        // own uid), so a forked child of ours writes them once we have unshared.
        let (go_r, go_w) = nix::unistd::pipe().map_err(os("pipe"))?;
        // SAFETY: the caller (the init helper) is single-threaded, and the child only
        // reads a pipe, writes two files and _exits.
        match unsafe { fork() }.map_err(os("fork"))? {
            ForkResult::Child => {
                drop(go_w);
                let mut b = [0u8; 1];
                let ok = matches!(nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&go_r), &mut b), Ok(1));
                let parent = nix::unistd::getppid();
                let code = if !ok {
                    3
                } else if std::fs::write(format!("/proc/{parent}/uid_map"), uid_map).is_err() {
                    1
                } else if std::fs::write(format!("/proc/{parent}/gid_map"), gid_map).is_err() {
                    2
                } else {
                    0
                };
                // SAFETY: _exit ends the forked child without running the parent's exit handlers.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(go_r);
                let unshared = nix::sched::unshare(flags | CloneFlags::CLONE_NEWUSER);
                // Tell the mapper to go (or, on failure, to give up: EOF).
                if unshared.is_ok() {
                    let _ = nix::unistd::write(&go_w, b"g");
                }
                drop(go_w);
                let status = waitpid(child, None).map_err(os("wait for the id mapper"))?;
                unshared.map_err(os("unshare user namespace"))?;
                match status {
                    WaitStatus::Exited(_, 0) => become_root_if_mapped(uid_map, gid_map),
                    WaitStatus::Exited(_, 1) => {
                        Err(SyscallError::Os { op: "write uid_map", source: nix::Error::EPERM })
                    }
                    WaitStatus::Exited(_, 2) => {
                        Err(SyscallError::Os { op: "write gid_map", source: nix::Error::EPERM })
                    }
                    other => Err(SyscallError::IdMapper(format!("{other:?}"))),
                }
            }
        }
    }

    fn setns(&self, path: &Path, kind: CloneFlags) -> Result<(), SyscallError> {
        let f = std::fs::File::open(path).map_err(path_err("open namespace", path))?;
        nix::sched::setns(f, kind).map_err(os("setns"))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SyscallError> {
        nix::unistd::pivot_root(new_root, put_old).map_err(os("pivot_root"))
    }

    fn chdir(&self, path: &Path) -> Result<(), SyscallError> {
        nix::unistd::chdir(path).map_err(|e| SyscallError::Path { op: "chdir", path: path.into(), source: e.into() })
    }

    fn rmdir(&self, path: &Path) -> Result<(), SyscallError> {
        std::fs::remove_dir(path).map_err(path_err("rmdir", path))
    }

    fn sethostname(&self, name: &str) -> Result<(), SyscallError> {
        nix::unistd::sethostname(name).map_err(os("sethostname"))
    }

    fn add_entropy(&self, bytes: &[u8]) -> Result<(), SyscallError> {
        use std::os::fd::AsRawFd;
        // struct rand_pool_info: entropy_count (bits), buf_size (bytes), then the bytes.
        let mut info = Vec::with_capacity(8 + bytes.len());
        info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
        info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
        info.extend_from_slice(bytes);
        let f = std::fs::OpenOptions::new().write(true).open("/dev/urandom").map_err(|e| SyscallError::Os {
            op: "open /dev/urandom",
            source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
        })?;
        const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
        const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
        // SAFETY: `info` is a rand_pool_info of exactly the size its header states,
        // alive for the call; the kernel only reads it.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) };
        if rc < 0 {
            return Err(SyscallError::Os { op: "RNDADDENTROPY", source: nix::Error::last() });
        }
        // SAFETY: RNDRESEEDCRNG takes no argument.
        let rc = unsafe { libc::ioctl(f.as_raw_fd(), RNDRESEEDCRNG, 0) };
        if rc < 0 {
            return Err(SyscallError::Os { op: "RNDRESEEDCRNG", source: nix::Error::last() });
        }
        Ok(())
    }

    fn set_clock(&self, unix_time_ns: u64) -> Result<(), SyscallError> {
        let ts =
            nix::sys::time::TimeSpec::new((unix_time_ns / 1_000_000_000) as i64, (unix_time_ns % 1_000_000_000) as i64);
        nix::time::clock_settime(nix::time::ClockId::CLOCK_REALTIME, ts).map_err(os("clock_settime"))
    }

    fn setsid(&self) -> Result<(), SyscallError> {
        nix::unistd::setsid().map(drop).map_err(os("setsid"))
    }

    fn set_controlling_tty(&self) -> Result<(), SyscallError> {
        // SAFETY: TIOCSCTTY on fd 0 takes an int argument and touches no memory of ours.
        let rc = unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) };
        if rc < 0 {
            return Err(SyscallError::Os { op: "TIOCSCTTY", source: nix::Error::last() });
        }
        Ok(())
    }

    fn set_seccomp(&self, profile: &crate::seccomp::Profile, nnp: bool) -> Result<(), SyscallError> {
        Ok(crate::seccomp::load(profile, nnp)?)
    }

    fn open_terminal(&self, console_fd: i32) -> Result<(), SyscallError> {
        use nix::fcntl::OFlag;
        use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
        use std::os::fd::AsRawFd;
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(os("open /dev/ptmx"))?;
        grantpt(&master).map_err(os("grantpt"))?;
        unlockpt(&master).map_err(os("unlockpt"))?;
        let name = ptsname_r(&master).map_err(os("ptsname"))?;
        let slave = nix::fcntl::open(name.as_str(), OFlag::O_RDWR | OFlag::O_NOCTTY, nix::sys::stat::Mode::empty())
            .map_err(|e| SyscallError::Path { op: "open", path: name.clone().into(), source: e.into() })?;
        let fds = [master.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"T")];
        nix::sys::socket::sendmsg::<()>(console_fd, &iov, &cmsg, nix::sys::socket::MsgFlags::empty(), None)
            .map_err(os("sending the terminal"))?;
        for to in 0..3 {
            nix::unistd::dup2(slave, to).map_err(os("dup2 terminal"))?;
        }
        let _ = nix::unistd::close(slave);
        let _ = nix::unistd::close(console_fd);
        Ok(())
    }

    fn set_rlimit(&self, (name, soft, hard): &Rlimit) -> Result<(), SyscallError> {
        use nix::sys::resource::{setrlimit, Resource};
        let r = match name.as_str() {
            "RLIMIT_NOFILE" => Resource::RLIMIT_NOFILE,
            "RLIMIT_NPROC" => Resource::RLIMIT_NPROC,
            "RLIMIT_CORE" => Resource::RLIMIT_CORE,
            "RLIMIT_STACK" => Resource::RLIMIT_STACK,
            "RLIMIT_AS" => Resource::RLIMIT_AS,
            "RLIMIT_CPU" => Resource::RLIMIT_CPU,
            "RLIMIT_DATA" => Resource::RLIMIT_DATA,
            "RLIMIT_FSIZE" => Resource::RLIMIT_FSIZE,
            "RLIMIT_MEMLOCK" => Resource::RLIMIT_MEMLOCK,
            "RLIMIT_MSGQUEUE" => Resource::RLIMIT_MSGQUEUE,
            "RLIMIT_NICE" => Resource::RLIMIT_NICE,
            "RLIMIT_RTPRIO" => Resource::RLIMIT_RTPRIO,
            "RLIMIT_SIGPENDING" => Resource::RLIMIT_SIGPENDING,
            _ => return Err(SyscallError::Os { op: "unknown rlimit", source: nix::Error::EINVAL }),
        };
        setrlimit(r, *soft, *hard).map_err(os("setrlimit"))
    }

    fn set_groups(&self, gids: &[u32]) -> Result<(), SyscallError> {
        let g: Vec<nix::unistd::Gid> = gids.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
        nix::unistd::setgroups(&g).map_err(os("setgroups"))
    }

    fn set_ids(&self, uid: u32, gid: u32) -> Result<(), SyscallError> {
        use nix::unistd::{setresgid, setresuid, Gid, Uid};
        // Keep permitted capabilities across the uid change; set_capabilities decides.
        // SAFETY: PR_SET_KEEPCAPS takes plain integers.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
        let g = Gid::from_raw(gid);
        setresgid(g, g, g).map_err(os("setresgid"))?;
        let u = Uid::from_raw(uid);
        setresuid(u, u, u).map_err(os("setresuid"))
    }

    fn set_capabilities(&self, c: &CapSets) -> Result<(), SyscallError> {
        let map = |e: caps::errors::CapsError| SyscallError::Caps(e.to_string());
        // After a change to a non-zero uid (with keep-caps) the permitted set is kept
        // but the effective one is empty, and dropping from the bounding set needs
        // CAP_SETPCAP in effect: raise effective to what is permitted first.
        let permitted = caps::read(None, caps::CapSet::Permitted).map_err(map)?;
        caps::set(None, caps::CapSet::Effective, &permitted).map_err(map)?;
        let bounding = cap_set(&c.bounding)?;
        for cap in caps::all() {
            if !bounding.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(map)?;
            }
        }
        // capset(2) rules fix the order: inheritable while permitted is still full,
        // effective before permitted shrinks under it, ambient last (needs both).
        caps::set(None, caps::CapSet::Inheritable, &cap_set(&c.inheritable)?).map_err(map)?;
        caps::set(None, caps::CapSet::Effective, &cap_set(&c.effective)?).map_err(map)?;
        caps::set(None, caps::CapSet::Permitted, &cap_set(&c.permitted)?).map_err(map)?;
        caps::set(None, caps::CapSet::Ambient, &cap_set(&c.ambient)?).map_err(map)?;
        Ok(())
    }

    fn set_no_new_privs(&self) -> Result<(), SyscallError> {
        // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
        let rc = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(SyscallError::Os { op: "no_new_privs", source: nix::Error::last() });
        }
        Ok(())
    }

    fn find_program(&self, prog: &str, env: &[String]) -> Result<(), SyscallError> {
        use std::os::unix::fs::PermissionsExt;
        let runnable =
            |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
        if prog.contains('/') {
            return if runnable(Path::new(prog)) { Ok(()) } else { Err(SyscallError::NoProgram(prog.into())) };
        }
        let from_env = env.iter().find_map(|e| e.strip_prefix("PATH=")).map(String::from);
        // execvp looks in our own PATH too: either one finding it is enough.
        let ours = std::env::var("PATH").ok();
        let dirs = [from_env, ours, Some(DEFAULT_PATH.to_string())];
        let found = dirs
            .iter()
            .flatten()
            .flat_map(|p| p.split(':'))
            .any(|d| !d.is_empty() && runnable(&Path::new(d).join(prog)));
        if found {
            Ok(())
        } else {
            Err(SyscallError::NotInPath(prog.into()))
        }
    }

    fn exec(&self, path: &str, args: &[String], env: &[String]) -> SyscallError {
        let err = |source| SyscallError::Exec { path: path.to_string(), source };
        let (Ok(p), Ok(a), Ok(e)) = (CString::new(path), cstrings(args), cstrings(env)) else {
            return err(nix::Error::EINVAL);
        };
        // PATH lookup uses the container's environment, as a shell would.
        match nix::unistd::execvpe(&p, &a, &e) {
            Ok(never) => match never {},
            Err(e) => err(e),
        }
    }
}
