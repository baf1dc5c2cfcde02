//! The recording [`Syscall`]: calls become lines of text instead of system calls, so
//! the agent's order of operations is unit-tested without root.

use std::path::Path;

use nix::mount::MsFlags;
use nix::sched::CloneFlags;

use crate::syscall::{CapSets, InRoot, Rlimit, Syscall, SyscallError};

/// Records calls instead of making them; used by unit tests.
#[derive(Default)]
pub struct Recording {
    pub calls: std::sync::Mutex<Vec<String>>,
    /// Fail the call whose recorded text starts with this.
    pub fail_on: Option<String>,
}

impl Recording {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, call: String) -> Result<(), SyscallError> {
        let fail = self.fail_on.as_deref().is_some_and(|f| call.starts_with(f));
        if let Ok(mut c) = self.calls.lock() {
            c.push(call.clone());
        }
        if fail {
            return Err(SyscallError::Injected(call));
        }
        Ok(())
    }
}

impl Syscall for Recording {
    fn mkdir_all(&self, path: &Path) -> Result<(), SyscallError> {
        self.record(format!("mkdir {}", path.display()))
    }
    fn mkdir_in(&self, at: &InRoot) -> Result<(), SyscallError> {
        self.mkdir_all(&at.display_path())
    }
    fn touch_in(&self, at: &InRoot) -> Result<(), SyscallError> {
        self.record(format!("touch {}", at.display_path().display()))
    }
    fn write_in(&self, at: &InRoot, contents: &[u8]) -> Result<(), SyscallError> {
        self.write_file(&at.display_path(), contents)
    }
    fn symlink_in(&self, target: &str, at: &InRoot) -> Result<(), SyscallError> {
        self.record(format!("symlink {target} {}", at.display_path().display()))
    }
    fn mount_in(
        &self,
        source: &str,
        at: &InRoot,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        self.mount(source, &at.display_path(), fstype, flags, data)
    }
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SyscallError> {
        self.record(format!("mount {source} {} {fstype} {:#x} {}", target.display(), flags.bits(), data.unwrap_or("-")))
    }
    fn umount_detach(&self, target: &Path) -> Result<(), SyscallError> {
        self.record(format!("umount {}", target.display()))
    }
    fn write_file(&self, path: &Path, contents: &[u8]) -> Result<(), SyscallError> {
        self.record(format!("write {} {}", path.display(), String::from_utf8_lossy(contents).trim()))
    }
    fn mask_path(&self, path: &Path) -> Result<(), SyscallError> {
        self.record(format!("mask {}", path.display()))
    }
    fn readonly_path(&self, path: &Path) -> Result<(), SyscallError> {
        self.record(format!("readonly {}", path.display()))
    }
    fn make_device(&self, at: &InRoot, d: &crate::config::DeviceSpec) -> Result<(), SyscallError> {
        let (path, kind, major, minor, mode, uid, gid) =
            (at.display_path(), d.kind, d.major, d.minor, d.mode, d.uid, d.gid);
        self.record(format!("mknod {} {kind} {major}:{minor} {mode:o} {uid}:{gid}", path.display()))
    }
    fn remount_root_readonly(&self) -> Result<(), SyscallError> {
        self.record("remount-ro /".into())
    }
    fn unshare(&self, flags: CloneFlags) -> Result<(), SyscallError> {
        self.record(format!("unshare {:#x}", flags.bits()))
    }
    fn unshare_user(&self, uid_map: &str, gid_map: &str, flags: CloneFlags) -> Result<(), SyscallError> {
        self.record(format!("userns uid_map={} gid_map={} unshare {:#x}", uid_map.trim(), gid_map.trim(), flags.bits()))
    }
    fn setns(&self, path: &Path, _kind: CloneFlags) -> Result<(), SyscallError> {
        self.record(format!("setns {}", path.display()))
    }
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<(), SyscallError> {
        self.record(format!("pivot_root {} {}", new_root.display(), put_old.display()))
    }
    fn chdir(&self, path: &Path) -> Result<(), SyscallError> {
        self.record(format!("chdir {}", path.display()))
    }
    fn rmdir(&self, path: &Path) -> Result<(), SyscallError> {
        self.record(format!("rmdir {}", path.display()))
    }
    fn sethostname(&self, name: &str) -> Result<(), SyscallError> {
        self.record(format!("sethostname {name}"))
    }
    fn add_entropy(&self, bytes: &[u8]) -> Result<(), SyscallError> {
        self.record(format!("add_entropy {}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()))
    }
    fn set_clock(&self, unix_time_ns: u64) -> Result<(), SyscallError> {
        self.record(format!("set_clock {unix_time_ns}"))
    }
    fn setsid(&self) -> Result<(), SyscallError> {
        self.record("setsid".into())
    }
    fn set_controlling_tty(&self) -> Result<(), SyscallError> {
        self.record("set_controlling_tty".into())
    }
    fn set_seccomp(&self, profile: &crate::seccomp::Profile, nnp: bool) -> Result<(), SyscallError> {
        self.record(format!("seccomp nnp={nnp} rules={}", profile.rules.len()))
    }
    fn open_terminal(&self, console_fd: i32) -> Result<(), SyscallError> {
        self.record(format!("open_terminal {console_fd}"))
    }
    fn set_rlimit(&self, (n, s, h): &Rlimit) -> Result<(), SyscallError> {
        self.record(format!("rlimit {n} {s} {h}"))
    }
    fn set_groups(&self, gids: &[u32]) -> Result<(), SyscallError> {
        self.record(format!("setgroups {gids:?}"))
    }
    fn set_ids(&self, uid: u32, gid: u32) -> Result<(), SyscallError> {
        self.record(format!("setids {uid} {gid}"))
    }
    fn set_capabilities(&self, c: &CapSets) -> Result<(), SyscallError> {
        self.record(format!("caps bounding={}", c.bounding.join(",")))
    }
    fn set_no_new_privs(&self) -> Result<(), SyscallError> {
        self.record("no_new_privs".into())
    }
    fn find_program(&self, prog: &str, _env: &[String]) -> Result<(), SyscallError> {
        self.record(format!("lookup {prog}"))
    }
    fn exec(&self, path: &str, args: &[String], _env: &[String]) -> SyscallError {
        let _ = self.record(format!("exec {path} {}", args.join(" ")));
        SyscallError::Exec { path: path.into(), source: nix::Error::ENOSYS }
    }
}
