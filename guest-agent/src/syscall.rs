//! The kernel interface the agent's logic goes through, so the order of unshare,
//! mount, pivot_root and exec is unit-tested without root (see
//! [`crate::recording::Recording`]).

use std::ffi::CString;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;

#[derive(Debug, thiserror::Error)]
pub enum SyscallError {
    #[error("{op} {path}: {source}")]
    Path { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("mount {fstype} on {target}: {source}")]
    Mount { fstype: String, target: PathBuf, source: nix::Error },
    #[error("{op}: {source}")]
    Os { op: &'static str, source: nix::Error },
    #[error("the uid/gid map writer ended with {0}")]
    IdMapper(String),
    #[error("{op} {path} (resolved inside the rootfs): {reason}")]
    InRoot { op: &'static str, path: PathBuf, reason: String },
    #[error("injected failure at: {0}")]
    Injected(String),
    #[error("capabilities: {0}")]
    Caps(String),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    #[error("exec {path}: {source}")]
    Exec { path: String, source: nix::Error },
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotInPath(String),
    #[error("exec: {0:?}: no such executable file")]
    NoProgram(String),
}

fn os(op: &'static str) -> impl Fn(nix::Error) -> SyscallError {
    move |source| SyscallError::Os { op, source }
}

pub use crate::config::{CapSets, Rlimit};

/// A path inside a container's rootfs, taken from the spec or the image: the Linux
/// implementation resolves it with the rootfs as its root (`openat2` with
/// `RESOLVE_IN_ROOT`, through the pathrs crate), so an image's symlink, absolute or
/// `..`, can never make the agent create, write or mount outside that rootfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InRoot<'a> {
    pub root: &'a Path,
    /// Relative to `root`, without `..` (see [`crate::config::join_inside`]).
    pub rel: PathBuf,
}

impl<'a> InRoot<'a> {
    pub fn new(root: &'a Path, path: &str) -> Result<Self, crate::config::ConfigError> {
        let full = crate::config::join_inside(root, path)?;
        let rel = full.strip_prefix(root).map(Path::to_path_buf).unwrap_or_default();
        Ok(InRoot { root, rel })
    }

    pub fn join(&self, name: &str) -> Self {
        InRoot { root: self.root, rel: self.rel.join(name) }
    }

    /// The plain path (for messages and the recording seam; never opened as is).
    pub fn display_path(&self) -> PathBuf {
        self.root.join(&self.rel)
    }
}

pub trait Syscall {
    fn mkdir_all(&self, path: &Path) -> Result<(), SyscallError>;
    /// `mkdir -p` inside a rootfs.
    fn mkdir_in(&self, at: &InRoot) -> Result<(), SyscallError>;
    /// Creates an empty file (and its parents) inside a rootfs if missing, to bind onto.
    fn touch_in(&self, at: &InRoot) -> Result<(), SyscallError>;
    /// Writes a file (and its parents) inside a rootfs.
    fn write_in(&self, at: &InRoot, contents: &[u8]) -> Result<(), SyscallError>;
    fn symlink_in(&self, target: &str, at: &InRoot) -> Result<(), SyscallError>;
    /// Mounts onto a mount point inside a rootfs, through a descriptor of the resolved
    /// target (never a path an image could swap under us).
    fn mount_in(
        &self,
        source: &str,
        at: &InRoot,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError>;
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError>;
    fn umount_detach(&self, target: &Path) -> Result<(), SyscallError>;
    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), SyscallError>;
    /// Hides `path`: /dev/null over a file, an empty read-only tmpfs over a directory.
    fn mask_path(&self, path: &Path) -> Result<(), SyscallError>;
    /// Makes `path` a read-only bind mount of itself.
    fn readonly_path(&self, path: &Path) -> Result<(), SyscallError>;
    /// Makes the device node `dev` at `at`, with its mode and owner exactly as given.
    fn make_device(&self, at: &InRoot, dev: &crate::config::DeviceSpec) -> Result<(), SyscallError>;
    /// Remounts `/` (the container's root, after pivot_root) read-only, keeping the
    /// flags it has (in a user namespace they are locked).
    fn remount_root_readonly(&self) -> Result<(), SyscallError>;
    fn unshare(&self, flags: CloneFlags) -> Result<(), SyscallError>;
    /// A new user namespace together with `flags`, then its uid/gid maps.
    fn unshare_user(&self, uid_map: &str, gid_map: &str, flags: CloneFlags) -> Result<(), SyscallError>;
    /// Joins the namespace at `/proc/<pid>/ns/<kind>`.
    fn setns(&self, path: &Path, kind: CloneFlags) -> Result<(), SyscallError>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SyscallError>;
    fn chdir(&self, path: &Path) -> Result<(), SyscallError>;
    fn rmdir(&self, path: &Path) -> Result<(), SyscallError>;
    fn sethostname(&self, name: &str) -> Result<(), SyscallError>;
    /// Mixes `bytes` into the kernel's entropy pool, credited in full, and reseeds
    /// the CRNG at once (RNDADDENTROPY then RNDRESEEDCRNG on /dev/urandom).
    fn add_entropy(&self, bytes: &[u8]) -> Result<(), SyscallError>;
    /// Sets CLOCK_REALTIME.
    fn set_clock(&self, unix_time_ns: u64) -> Result<(), SyscallError>;
    fn setsid(&self) -> Result<(), SyscallError>;
    /// Makes fd 0 (a terminal) the controlling terminal.
    fn set_controlling_tty(&self) -> Result<(), SyscallError>;
    /// Opens a pty from the container's /dev/ptmx, sends its master over the unix
    /// socket `console_fd` and makes the slave fds 0, 1 and 2.
    fn open_terminal(&self, console_fd: i32) -> Result<(), SyscallError>;
    fn set_rlimit(&self, limit: &Rlimit) -> Result<(), SyscallError>;
    fn set_groups(&self, gids: &[u32]) -> Result<(), SyscallError>;
    fn set_ids(&self, uid: u32, gid: u32) -> Result<(), SyscallError>;
    /// Bounding set first (needs CAP_SETPCAP), then effective/permitted/inheritable/ambient.
    fn set_capabilities(&self, caps: &CapSets) -> Result<(), SyscallError>;
    fn set_no_new_privs(&self) -> Result<(), SyscallError>;
    /// Installs a seccomp filter; `nnp` says no_new_privs is (or may be) set with it.
    fn set_seccomp(&self, profile: &crate::seccomp::Profile, nnp: bool) -> Result<(), SyscallError>;
    /// Whether `prog` would be found by exec in the container (its `PATH`, as exec
    /// would look), so a missing binary fails Create, as with runc, not Start.
    fn find_program(&self, prog: &str, env: &[String]) -> Result<(), SyscallError>;
    /// Replaces the process; returns only on failure.
    fn exec(&self, path: &str, args: &[String], env: &[String]) -> SyscallError;
}

mod linux;
pub use linux::Linux;
