//! A sandbox's host cgroup, `isola/<name>` in the memory hierarchy (cgroup v2, or v1's
//! memory controller on hybrid hosts): the VMM and every helper are placed in it
//! between fork and exec, so everything they and their threads allocate, guest RAM
//! included, counts against one limit of guest RAM plus a fixed overhead. A guest that
//! makes its VMM grow gets the VMM killed, never the host's memory.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup path {0:?} is not a path below the hierarchy (no `..`, not empty)")]
    BadPath(PathBuf),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.to_path_buf();
    move |source| CgroupError::Io { what, path, source }
}

/// Where memory is controlled on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy with the memory controller (`memory.max`).
    V2(PathBuf),
    /// cgroup v1's memory controller (`memory.limit_in_bytes`).
    V1(PathBuf),
}

impl Hierarchy {
    /// The one this host has, if any.
    pub fn detect() -> Option<Self> {
        let root = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        if controllers.split_whitespace().any(|c| c == "memory") {
            return Some(Self::V2(root.into()));
        }
        let v1 = root.join("memory");
        v1.join("memory.limit_in_bytes").exists().then_some(Self::V1(v1))
    }

    pub fn root(&self) -> &Path {
        match self {
            Self::V2(p) | Self::V1(p) => p,
        }
    }

    fn limit_file(&self) -> &'static str {
        match self {
            Self::V2(_) => "memory.max",
            Self::V1(_) => "memory.limit_in_bytes",
        }
    }
}

/// The cgroup name of the sandbox in `dir`: its id plus a hash of the directory, so
/// sandboxes of two state roots never share one, and cleanup finds it from `dir` alone.
pub fn name_for(dir: &Path) -> String {
    let id = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!("{id}-{:08x}", crate::names::name_hash(&dir.to_string_lossy()))
}

/// One sandbox's cgroup.
#[derive(Clone, Debug)]
pub struct HostCgroup {
    pub dir: PathBuf,
    procs: CString,
}

impl HostCgroup {
    /// Creates `isola/<name>` under `h` with a memory limit of `limit_bytes`.
    pub fn create(h: &Hierarchy, name: &str, limit_bytes: u64) -> Result<Self, CgroupError> {
        Self::create_at(h, &Path::new("isola").join(name), limit_bytes)
    }

    /// Creates the cgroup at `rel` (below the hierarchy's root, e.g. a pod's
    /// `cgroupsPath`), with its parents, and the memory limit.
    pub fn create_at(h: &Hierarchy, rel: &Path, limit_bytes: u64) -> Result<Self, CgroupError> {
        let rel = clean_relative(rel)?;
        let dir = h.root().join(&rel);
        let parent = dir.parent().unwrap_or(h.root()).to_path_buf();
        std::fs::create_dir_all(&parent).map_err(io("creating", &parent))?;
        if let Hierarchy::V2(root) = h {
            // The memory controller has to be handed down at each level.
            let mut level = root.clone();
            let mut levels = vec![level.clone()];
            for c in rel.parent().into_iter().flat_map(Path::components) {
                level.push(c);
                levels.push(level.clone());
            }
            for level in levels {
                let ctl = level.join("cgroup.subtree_control");
                std::fs::write(&ctl, "+memory").map_err(io("enabling memory in", &ctl))?;
            }
        }
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io("creating", &dir)(e)),
        }
        let cg = Self { procs: CString::new(dir.join("cgroup.procs").as_os_str().as_bytes()).unwrap_or_default(), dir };
        let limit = cg.dir.join(h.limit_file());
        if let Err(e) = std::fs::write(&limit, limit_bytes.to_string()) {
            cg.remove();
            return Err(io("setting", &limit)(e));
        }
        // Swap would let the group run past the limit: none, where the host has it.
        let swap = match h {
            Hierarchy::V2(_) => ("memory.swap.max", "0".to_string()),
            Hierarchy::V1(_) => ("memory.memsw.limit_in_bytes", limit_bytes.to_string()),
        };
        if cg.dir.join(swap.0).exists() {
            let _ = std::fs::write(cg.dir.join(swap.0), swap.1);
        }
        Ok(cg)
    }

    /// Makes `cmd`'s process join this cgroup before it execs (so nothing it allocates
    /// is ever outside it); a failed join fails the spawn.
    pub fn join_before_exec(&self, cmd: &mut Command) {
        let procs = self.procs.clone();
        // SAFETY: open/write/close are async-signal-safe; the path was allocated before
        // the fork and is only read here.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" is the writing process itself.
                let n = libc::write(fd, c"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                Ok(())
            });
        }
    }

    pub fn remove(&self) {
        remove_dir(&self.dir);
    }
}

/// `rel` as plain components below the root: a leading `/` is dropped, `..` refused.
fn clean_relative(rel: &Path) -> Result<PathBuf, CgroupError> {
    let mut out = PathBuf::new();
    for c in rel.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::RootDir | std::path::Component::CurDir => {}
            _ => return Err(CgroupError::BadPath(rel.to_path_buf())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(CgroupError::BadPath(rel.to_path_buf()));
    }
    Ok(out)
}

/// An OCI `cgroupsPath` as a path below the hierarchy's root. The cgroupfs form
/// (`/kubepods/pod1/c1`) is used as it is; the systemd form (`slice:prefix:name`) as
/// systemd lays it out (`kubepods-pod1.slice` is `kubepods.slice/kubepods-pod1.slice`,
/// the unit `prefix-name.scope` inside it), as runc's systemd driver does.
pub fn oci_path(cgroups_path: &str) -> Result<PathBuf, CgroupError> {
    let parts: Vec<&str> = cgroups_path.split(':').collect();
    let path = match parts[..] {
        [one] => PathBuf::from(one),
        [slice, prefix, name] => {
            let mut p = PathBuf::new();
            if !slice.is_empty() && slice != "-.slice" {
                let stem = slice.strip_suffix(".slice").ok_or_else(|| CgroupError::BadPath(cgroups_path.into()))?;
                let mut acc = String::new();
                for part in stem.split('-') {
                    if part.is_empty() {
                        return Err(CgroupError::BadPath(cgroups_path.into()));
                    }
                    acc = if acc.is_empty() { part.to_string() } else { format!("{acc}-{part}") };
                    p.push(format!("{acc}.slice"));
                }
            }
            let unit = if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") };
            p.push(unit);
            p
        }
        _ => return Err(CgroupError::BadPath(cgroups_path.into())),
    };
    clean_relative(&path)
}

/// Kills what runs in the cgroup at `dir` (recorded by a sandbox) and removes it.
pub fn remove_dir_of(dir: &Path) {
    if dir.is_dir() {
        kill_all(dir);
        remove_dir(dir);
    }
}

/// Removes cgroup `dir`, waiting up to 2 s for its last processes to finish exiting.
fn remove_dir(dir: &Path) {
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() > until => {
                log::warn!("removing cgroup {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The processes in cgroup `dir` (none when it cannot be read).
pub fn pids(dir: &Path) -> Vec<i32> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    procs.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

/// SIGKILLs every process in cgroup `dir` (cgroup v2's `cgroup.kill` where the kernel
/// has it; one by one otherwise, until none is left or 2 s pass).
fn kill_all(dir: &Path) {
    if std::fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        let pids = pids(dir);
        if pids.is_empty() || Instant::now() > until {
            return;
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sets the memory limit of the cgroup `dir` (a sandbox's) to `bytes`. On v1 the
/// memory+swap limit must stay at or above it, so the two are written in the order
/// that keeps it so.
pub fn set_limit(h: &Hierarchy, dir: &Path, bytes: u64) -> Result<(), CgroupError> {
    let limit = dir.join(h.limit_file());
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let write = |p: &Path| std::fs::write(p, bytes.to_string()).map_err(io("setting", p));
    match h {
        Hierarchy::V2(_) => write(&limit),
        Hierarchy::V1(_) if !memsw.exists() => write(&limit),
        Hierarchy::V1(_) => {
            let current = std::fs::read_to_string(&limit).ok().and_then(|s| s.trim().parse::<u64>().ok());
            if current.is_some_and(|c| bytes > c) {
                write(&memsw)?;
                write(&limit)
            } else {
                write(&limit)?;
                write(&memsw)
            }
        }
    }
}

/// What the cgroup `dir` uses now, in bytes.
pub fn usage(h: &Hierarchy, dir: &Path) -> Option<u64> {
    let file = match h {
        Hierarchy::V2(_) => "memory.current",
        Hierarchy::V1(_) => "memory.usage_in_bytes",
    };
    std::fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

/// The cgroup a sandbox in `dir` got by default, when it exists.
pub fn dir_for(dir: &Path) -> Option<PathBuf> {
    Hierarchy::detect().map(|h| h.root().join("isola").join(name_for(dir))).filter(|p| p.is_dir())
}

/// Kills whatever still runs in the cgroup of the sandbox in `dir` and removes it:
/// cleanup after any exit, also when no record names the processes (a starter killed
/// before it saved one).
pub fn remove_for(dir: &Path) {
    if let Some(h) = Hierarchy::detect() {
        let cg = h.root().join("isola").join(name_for(dir));
        if cg.is_dir() {
            kill_all(&cg);
            remove_dir(&cg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn oci_cgroup_paths_in_both_forms() {
        assert_eq!(oci_path("/kubepods/besteffort/pod1/c1").expect("fs"), Path::new("kubepods/besteffort/pod1/c1"));
        assert_eq!(oci_path("default/c1").expect("relative"), Path::new("default/c1"));
        assert_eq!(
            oci_path("kubepods-besteffort-pod1.slice:cri-containerd:c1").expect("systemd"),
            Path::new(
                "kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-c1.scope"
            )
        );
        assert_eq!(oci_path("system.slice:docker:abc").expect("systemd"), Path::new("system.slice/docker-abc.scope"));
        for bad in ["/a/../../etc", "", "/", "x.slice:a", "bad:p:n", "a--b.slice:p:n"] {
            assert!(oci_path(bad).is_err(), "{bad}");
        }
    }

    /// As root: a process placed in the cgroup is held to its limit (the kernel kills
    /// it past it), one within it runs, and removal leaves nothing.
    #[test]
    fn processes_in_the_cgroup_are_held_to_its_limit() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let h = Hierarchy::detect().expect("this host has a memory cgroup controller");
        let dir = tempfile::tempdir().expect("tmp");
        let cg = HostCgroup::create(&h, &name_for(&dir.path().join("cg-test")), 32 << 20).expect("create");
        let dd = |bs: &str| {
            let mut c = Command::new("dd");
            c.args(["if=/dev/zero", "of=/dev/null", "count=1", &format!("bs={bs}")]);
            c.stderr(std::process::Stdio::null());
            cg.join_before_exec(&mut c);
            c.status().expect("dd")
        };
        assert!(dd("1M").success(), "within the limit");
        let over = dd("128M");
        assert_eq!(over.signal(), Some(libc::SIGKILL), "a 128 MiB buffer in a 32 MiB cgroup: {over:?}");
        cg.remove();
        assert!(!cg.dir.exists(), "removed");
    }

    /// As root: cleanup by directory alone kills what runs in the sandbox's cgroup.
    #[test]
    fn cleanup_kills_what_runs_in_the_cgroup_without_a_record() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let h = Hierarchy::detect().expect("this host has a memory cgroup controller");
        let dir = tempfile::tempdir().expect("tmp");
        let sandbox = dir.path().join("sb-kill");
        let cg = HostCgroup::create(&h, &name_for(&sandbox), 64 << 20).expect("create");
        let mut c = Command::new("sleep");
        c.arg("1000");
        cg.join_before_exec(&mut c);
        let mut child = c.spawn().expect("sleep");
        remove_for(&sandbox);
        let status = child.wait().expect("wait");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
        assert!(!cg.dir.exists(), "the cgroup is gone");
    }

    #[test]
    fn names_differ_by_state_root() {
        assert_ne!(name_for(Path::new("/run/isola/a")), name_for(Path::new("/tmp/x/a")));
        assert!(name_for(Path::new("/run/isola/a")).starts_with("a-"));
    }
}
