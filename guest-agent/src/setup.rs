//! The container-process sequence, in the order the kernel needs it:
//! join the cgroup, enter namespaces (before the fork that makes PID 1), then in the
//! child: private mounts, rootfs and its mounts, pivot_root, masks, hostname,
//! session and tty, limits, credentials, capabilities, no_new_privs, cwd, exec.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use crate::config::{DeviceSpec, InitConfig, Mode, ProcessConfig, UserNs};
use crate::seccomp::Profile;
use crate::syscall::{InRoot, Syscall, SyscallError};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Sys(#[from] SyscallError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// Namespaces of a new container. The network namespace is the sandbox's (the VM's)
/// and is shared by the pod's containers.
pub const CONTAINER_NAMESPACES: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC);

/// Devices every container gets, bind-mounted from the guest's /dev.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Before the fork: cgroup, then namespaces (a new PID namespace applies to children).
pub fn enter(sys: &dyn Syscall, cfg: &InitConfig) -> Result<(), SetupError> {
    if let Some(cg) = &cfg.cgroup {
        sys.write_file(&cg.join("cgroup.procs"), b"0")?;
    }
    match &cfg.mode {
        Mode::Create { share_ipc, share_uts, .. } => {
            let mut new = CONTAINER_NAMESPACES;
            if *share_ipc {
                new.remove(CloneFlags::CLONE_NEWIPC);
            }
            if *share_uts {
                new.remove(CloneFlags::CLONE_NEWUTS);
            }
            match &cfg.user_ns {
                // One unshare: the other namespaces are then owned by the new user namespace.
                Some(u) => sys.unshare_user(&UserNs::map_text(&u.uid_map), &UserNs::map_text(&u.gid_map), new)?,
                None => sys.unshare(new)?,
            }
        }
        Mode::Exec { pid } => {
            let ns = PathBuf::from(format!("/proc/{pid}/ns"));
            if cfg.user_ns.is_some() {
                // First, so the others are joined with the container's privileges.
                sys.setns(&ns.join("user"), CloneFlags::CLONE_NEWUSER)?;
            }
            // Mount last: after it, /proc/<pid> is the container's view.
            for (name, kind) in [
                ("ipc", CloneFlags::CLONE_NEWIPC),
                ("uts", CloneFlags::CLONE_NEWUTS),
                ("pid", CloneFlags::CLONE_NEWPID),
                ("mnt", CloneFlags::CLONE_NEWNS),
            ] {
                sys.setns(&ns.join(name), kind)?;
            }
        }
    }
    Ok(())
}

fn setup_rootfs(
    sys: &dyn Syscall,
    rootfs: &Path,
    mounts: &[crate::config::MountSpec],
    files: &[(String, String)],
    devices: &[DeviceSpec],
    user_ns: bool,
) -> Result<(), SetupError> {
    // Nothing we mount may propagate back to the agent's namespace.
    sys.mount("none", Path::new("/"), "", MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    let rootfs_str = rootfs.to_string_lossy();
    sys.mount(&rootfs_str, rootfs, "", MsFlags::MS_BIND | MsFlags::MS_REC, None)?;
    // Every target below is resolved inside the rootfs: the image's symlinks stay in it.
    for m in mounts {
        let target = mount_target(sys, rootfs, m)?;
        let flags = MsFlags::from_bits_truncate(m.flags);
        sys.mount_in(&m.source, &target, &m.fstype, flags & !MsFlags::MS_RDONLY, m.data.as_deref())?;
        if flags.contains(MsFlags::MS_RDONLY) {
            // Read-only on this mount point only: a plain remount would make a shared
            // superblock (cgroup2, a bind source) read-only everywhere. Resolved again,
            // so it is the new mount that is remounted.
            let ro = MsFlags::MS_REMOUNT
                | MsFlags::MS_BIND
                | MsFlags::MS_RDONLY
                | (flags & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_REC));
            sys.mount_in(&m.source, &target, "", ro, None)?;
        }
    }
    let dev = InRoot::new(rootfs, "/dev")?;
    sys.mkdir_in(&dev)?;
    for d in DEVICES {
        let target = dev.join(d);
        sys.touch_in(&target)?;
        sys.mount_in(&format!("/dev/{d}"), &target, "", MsFlags::MS_BIND, None)?;
    }
    make_devices(sys, rootfs, devices, user_ns)?;
    for (link, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        sys.symlink_in(target, &dev.join(link))?;
    }
    write_files(sys, rootfs, files)
}

/// The spec's own devices, after the default ones (which it may name again: those are
/// the same nodes, bound already). In a user namespace mknod is refused, so the guest's
/// node of the same path is bound instead, as runc does for rootless containers.
fn make_devices(sys: &dyn Syscall, rootfs: &Path, devices: &[DeviceSpec], user_ns: bool) -> Result<(), SetupError> {
    for d in devices {
        let default = d.path.strip_prefix("/dev/").is_some_and(|name| DEVICES.contains(&name));
        if default {
            continue;
        }
        let at = InRoot::new(rootfs, &d.path)?;
        if user_ns {
            sys.touch_in(&at)?;
            sys.mount_in(&d.path, &at, "", MsFlags::MS_BIND, None)?;
        } else {
            sys.make_device(&at, d)?;
        }
    }
    Ok(())
}

/// Creates the mount point for `m` (a file for file binds) inside the rootfs.
fn mount_target<'a>(
    sys: &dyn Syscall,
    rootfs: &'a Path,
    m: &crate::config::MountSpec,
) -> Result<InRoot<'a>, SetupError> {
    let target = InRoot::new(rootfs, &m.destination)?;
    if m.file_bind {
        sys.touch_in(&target)?;
    } else {
        sys.mkdir_in(&target)?;
    }
    Ok(target)
}

fn write_files(sys: &dyn Syscall, rootfs: &Path, files: &[(String, String)]) -> Result<(), SetupError> {
    for (path, contents) in files {
        sys.write_in(&InRoot::new(rootfs, path)?, contents.as_bytes())?;
    }
    Ok(())
}

/// For a user-namespaced container, run by the agent before the helper: mount points
/// and /etc files in the image belong to the guest's root, which the namespace's root
/// cannot write, so they are made here. Empties `files` so they are not written twice.
pub fn prepare_for_user_ns(sys: &dyn Syscall, cfg: &mut InitConfig) -> Result<(), SetupError> {
    if cfg.user_ns.is_none() {
        return Ok(());
    }
    if let Mode::Create { rootfs, mounts, files, .. } = &mut cfg.mode {
        for m in mounts.iter() {
            mount_target(sys, rootfs, m)?;
        }
        write_files(sys, rootfs, files)?;
        files.clear();
    }
    Ok(())
}

fn enter_rootfs(sys: &dyn Syscall, rootfs: &Path) -> Result<(), SetupError> {
    // pivot_root(".", ".") stacks the old root under the new one; detaching it leaves
    // only the container's tree (no put_old directory needed in the image).
    sys.chdir(rootfs)?;
    sys.pivot_root(Path::new("."), Path::new("."))?;
    sys.umount_detach(Path::new("."))?;
    sys.chdir(Path::new("/"))?;
    Ok(())
}

fn setup_process(sys: &dyn Syscall, p: &ProcessConfig, seccomp: Option<&Profile>) -> Result<(), SetupError> {
    sys.setsid()?;
    if p.terminal {
        sys.set_controlling_tty()?;
    }
    // Without no_new_privs the filter needs CAP_SYS_ADMIN, so it goes in while we
    // still have it (as runc does); with it, last, so it sees the fewest of our calls.
    if let (Some(f), false) = (seccomp, p.no_new_privileges) {
        sys.set_seccomp(f, false)?;
    }
    for r in &p.rlimits {
        sys.set_rlimit(r)?;
    }
    if let Some(adj) = p.oom_score_adj {
        sys.write_file(Path::new("/proc/self/oom_score_adj"), adj.to_string().as_bytes())?;
    }
    sys.set_groups(&p.groups)?;
    sys.set_ids(p.uid, p.gid)?;
    if let Some(c) = &p.caps {
        sys.set_capabilities(c)?;
    }
    if p.no_new_privileges {
        sys.set_no_new_privs()?;
    }
    sys.chdir(Path::new(&p.cwd))?;
    if let (Some(f), true) = (seccomp, p.no_new_privileges) {
        sys.set_seccomp(f, true)?;
    }
    Ok(())
}

/// After the fork, in what becomes the container process: everything up to exec.
/// `wait_for_start` blocks until the host says Start (after the rootfs is ready, so
/// setup errors surface at create time).
pub fn prepare(sys: &dyn Syscall, cfg: &InitConfig, wait_for_start: &mut dyn FnMut()) -> Result<(), SetupError> {
    if let Mode::Create {
        rootfs,
        hostname,
        mounts,
        masked,
        readonly,
        files,
        share_uts,
        sysctls,
        root_readonly,
        devices,
        ..
    } = &cfg.mode
    {
        setup_rootfs(sys, rootfs, mounts, files, devices, cfg.user_ns.is_some())?;
        // In the container's namespaces already, through the guest's /proc (the
        // container's own /proc/sys is read-only once its paths are set).
        for (path, value) in sysctls {
            sys.write_file(Path::new(path), value.as_bytes())?;
        }
        enter_rootfs(sys, rootfs)?;
        for m in masked {
            sys.mask_path(Path::new(m))?;
        }
        for r in readonly {
            sys.readonly_path(Path::new(r))?;
        }
        // Last, as runc: everything is mounted on it by now.
        if *root_readonly {
            sys.remount_root_readonly()?;
        }
        // A shared UTS namespace keeps the pod's hostname.
        if let Some(h) = hostname.as_ref().filter(|_| !*share_uts) {
            sys.sethostname(h)?;
        }
    }
    if cfg.process.terminal {
        // From the container's own devpts (after pivot_root, or after joining its mount
        // namespace), so the process sees a /dev/pts/N that exists in its view.
        sys.open_terminal(crate::report::CONSOLE_FD)?;
    }
    // In the container's root now: a container's missing program fails here, at
    // Create, as runc's does. An exec's fails at its Start, as under runc, where the
    // exec's create is only bookkeeping (containerd's TestContainerExecNoBinaryExists).
    if let (Some(prog), Mode::Create { .. }) = (cfg.process.args.first(), &cfg.mode) {
        sys.find_program(prog, &cfg.process.env)?;
    }
    wait_for_start();
    setup_process(sys, &cfg.process, cfg.seccomp.as_ref())?;
    Ok(())
}

/// Replaces the process with the container's program; returns only the failure.
pub fn exec(sys: &dyn Syscall, p: &ProcessConfig) -> SyscallError {
    sys.exec(&p.args[0], &p.args, &p.env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MountSpec;
    use crate::recording::Recording;

    fn process() -> ProcessConfig {
        ProcessConfig {
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["PATH=/bin".into()],
            cwd: "/work".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![10],
            terminal: true,
            rlimits: vec![("RLIMIT_NOFILE".into(), 1024, 1024)],
            caps: Some(Default::default()),
            no_new_privileges: true,
            oom_score_adj: Some(100),
        }
    }

    fn create() -> InitConfig {
        InitConfig {
            mode: Mode::Create {
                rootfs: "/run/isola/c1/rootfs".into(),
                hostname: Some("box".into()),
                mounts: vec![
                    MountSpec {
                        source: "proc".into(),
                        destination: "/proc".into(),
                        fstype: "proc".into(),
                        flags: 0,
                        data: None,
                        file_bind: false,
                    },
                    MountSpec {
                        source: "/data".into(),
                        destination: "/data".into(),
                        fstype: "".into(),
                        flags: (MsFlags::MS_BIND | MsFlags::MS_RDONLY).bits(),
                        data: None,
                        file_bind: false,
                    },
                ],
                masked: vec!["/proc/kcore".into()],
                readonly: vec!["/proc/sys".into()],
                files: vec![("/etc/hosts".into(), "127.0.0.1 localhost\n".into())],
                share_ipc: false,
                share_uts: false,
                sysctls: vec![("/proc/sys/kernel/shm_rmid_forced".into(), "1".into())],
                root_readonly: false,
                devices: vec![],
            },
            cgroup: Some("/sys/fs/cgroup/isola/c1".into()),
            process: process(),
            seccomp: Some(Profile {
                default_action: crate::seccomp::Action::Allow,
                architectures: vec![],
                rules: vec![],
            }),
            user_ns: None,
        }
    }

    fn run(cfg: &InitConfig) -> Vec<String> {
        let rec = Recording::default();
        enter(&rec, cfg).expect("enter");
        let mut started = false;
        prepare(&rec, cfg, &mut || started = true).expect("prepare");
        assert!(started);
        let _ = exec(&rec, &cfg.process);
        rec.calls()
    }

    fn pos(calls: &[String], prefix: &str) -> usize {
        calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
    }

    #[test]
    fn a_pod_member_keeps_the_pods_ipc_and_uts_and_its_hostname() {
        let mut cfg = create();
        if let Mode::Create { share_ipc, share_uts, .. } = &mut cfg.mode {
            (*share_ipc, *share_uts) = (true, true);
        }
        let c = run(&cfg);
        let only = CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID;
        assert_eq!(c[1], format!("unshare {:#x}", only.bits()), "mount and PID only: {c:#?}");
        assert!(!c.iter().any(|x| x.starts_with("sethostname")), "the pod's hostname stays: {c:#?}");
    }

    #[test]
    fn create_order_cgroup_namespaces_mounts_pivot_credentials_exec() {
        let c = run(&create());
        assert_eq!(c[0], "write /sys/fs/cgroup/isola/c1/cgroup.procs 0");
        assert_eq!(c[1], format!("unshare {:#x}", CONTAINER_NAMESPACES.bits()));
        assert!(c[2].starts_with("mount none / "), "private propagation first: {}", c[2]);
        let proc_mount = pos(&c, "mount proc /run/isola/c1/rootfs/proc proc");
        let hosts = pos(&c, "write /run/isola/c1/rootfs/etc/hosts");
        let pivot = pos(&c, "pivot_root . .");
        assert!(proc_mount < pivot && hosts < pivot);
        assert!(pivot < pos(&c, "umount ."));
        assert!(pivot < pos(&c, "mask /proc/kcore"));
        assert!(pivot < pos(&c, "readonly /proc/sys"));
        let sysctl = pos(&c, "write /proc/sys/kernel/shm_rmid_forced 1");
        assert!(pos(&c, "unshare") < sysctl && sysctl < pivot, "in the new namespaces, before /proc/sys is read-only");
        let ids = pos(&c, "setids 1000 1000");
        assert!(pos(&c, "setgroups") < ids && pos(&c, "rlimit") < ids);
        assert!(pos(&c, "write /proc/self/oom_score_adj 100") < ids, "needs privilege");
        assert!(ids < pos(&c, "caps") && pos(&c, "caps") < pos(&c, "no_new_privs"));
        assert!(pos(&c, "setsid") < pos(&c, "set_controlling_tty"));
        // no_new_privs is set, so the filter goes last, after chdir, right before exec.
        assert!(pos(&c, "no_new_privs") < pos(&c, "chdir /work"));
        assert_eq!(c[c.len() - 2], "seccomp nnp=true rules=0");
        // The terminal comes from the container's devpts: after pivot_root, before setsid.
        let term = pos(&c, "open_terminal 5");
        assert!(pivot < term && pos(&c, "mask /proc/kcore") < term && term < pos(&c, "setsid"));
        assert_eq!(c.last().expect("calls"), "exec /bin/sh /bin/sh -c true");
        assert!(pivot < pos(&c, "lookup /bin/sh") && pos(&c, "lookup /bin/sh") < pos(&c, "setsid"), "before Start");
        assert_eq!(c[c.len() - 3], "chdir /work");
    }

    #[test]
    fn user_namespace_is_created_with_the_others_and_joined_first_on_exec() {
        let maps = vec![crate::config::IdMap { container: 0, host: 100_000, size: 65_536 }];
        let mut cfg = create();
        cfg.user_ns = Some(UserNs { uid_map: maps.clone(), gid_map: maps });
        let c = run(&cfg);
        assert_eq!(
            c[1],
            format!("userns uid_map=0 100000 65536 gid_map=0 100000 65536 unshare {:#x}", CONTAINER_NAMESPACES.bits())
        );
        assert!(!c.iter().any(|x| x.starts_with("unshare")), "no second unshare: {c:#?}");
        let mut exec_cfg = cfg.clone();
        exec_cfg.mode = Mode::Exec { pid: 42 };
        let c = run(&exec_cfg);
        assert_eq!(c[1], "setns /proc/42/ns/user");
        assert!(pos(&c, "setns /proc/42/ns/ipc") > 1);
    }

    #[test]
    fn a_readonly_root_is_remounted_last_after_every_mount_and_mask() {
        let c = run(&create());
        assert!(!c.iter().any(|x| x == "remount-ro /"), "not asked for: {c:#?}");
        let mut cfg = create();
        let Mode::Create { root_readonly, .. } = &mut cfg.mode else { panic!("create") };
        *root_readonly = true;
        let c = run(&cfg);
        let ro = pos(&c, "remount-ro /");
        assert!(pos(&c, "pivot_root") < ro && pos(&c, "readonly /proc/sys") < ro && pos(&c, "mask /proc/kcore") < ro);
        assert!(ro < pos(&c, "setids"), "{c:#?}");
    }

    #[test]
    fn spec_devices_are_made_with_their_numbers_mode_and_owner_or_bound_in_a_user_ns() {
        let mut cfg = create();
        let dev =
            |path: &str, kind| DeviceSpec { path: path.into(), kind, major: 1, minor: 3, mode: 0o620, uid: 7, gid: 8 };
        let Mode::Create { devices, .. } = &mut cfg.mode else { panic!("create") };
        *devices = vec![dev("/dev/null", 'c'), dev("/dev/fuse", 'c'), dev("/dev/sda1", 'b'), dev("/dev/pipe", 'p')];
        let c = run(&cfg);
        let made: Vec<_> = c.iter().filter(|x| x.starts_with("mknod")).collect();
        assert_eq!(
            made,
            [
                "mknod /run/isola/c1/rootfs/dev/fuse c 1:3 620 7:8",
                "mknod /run/isola/c1/rootfs/dev/sda1 b 1:3 620 7:8",
                "mknod /run/isola/c1/rootfs/dev/pipe p 1:3 620 7:8"
            ],
            "a default device is not made twice"
        );
        assert!(pos(&c, "mknod") < pos(&c, "pivot_root"));
        cfg.user_ns = Some(UserNs { uid_map: vec![], gid_map: vec![] });
        let c = run(&cfg);
        assert!(!c.iter().any(|x| x.starts_with("mknod")), "{c:#?}");
        pos(&c, "mount /dev/fuse /run/isola/c1/rootfs/dev/fuse");
    }

    #[test]
    fn without_no_new_privs_seccomp_goes_in_before_privileges_are_dropped() {
        let mut cfg = create();
        cfg.process.no_new_privileges = false;
        let c = run(&cfg);
        let f = pos(&c, "seccomp nnp=false");
        assert!(f < pos(&c, "setgroups") && f < pos(&c, "setids") && f < pos(&c, "caps"), "{c:#?}");
    }

    #[test]
    fn readonly_bind_is_remounted_and_devices_are_bound() {
        let c = run(&create());
        let bind = pos(&c, "mount /data /run/isola/c1/rootfs/data");
        assert!(
            c[bind + 1].starts_with("mount /data /run/isola/c1/rootfs/data"),
            "remount follows: {:?}",
            &c[bind..bind + 2]
        );
        for d in DEVICES {
            pos(&c, &format!("mount /dev/{d} /run/isola/c1/rootfs/dev/{d}"));
        }
    }

    #[test]
    fn exec_joins_namespaces_mount_last_and_never_pivots() {
        let cfg =
            InitConfig { mode: Mode::Exec { pid: 42 }, cgroup: None, process: process(), seccomp: None, user_ns: None };
        let c = run(&cfg);
        let ns: Vec<&String> = c.iter().filter(|x| x.starts_with("setns")).collect();
        assert_eq!(ns.len(), 4);
        assert_eq!(ns[3], "setns /proc/42/ns/mnt");
        assert!(!c.iter().any(|x| x.starts_with("pivot_root") || x.starts_with("unshare")));
        assert!(!c.iter().any(|x| x.starts_with("lookup")), "an exec's program is looked for by exec, at Start");
    }

    #[test]
    fn a_failing_step_stops_before_exec() {
        let rec = Recording { fail_on: Some("pivot_root".into()), ..Default::default() };
        let cfg = create();
        enter(&rec, &cfg).expect("enter");
        assert!(prepare(&rec, &cfg, &mut || {}).is_err());
        assert!(!rec.calls().iter().any(|c| c.starts_with("exec") || c.starts_with("setids")));
    }
}
