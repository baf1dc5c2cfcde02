//! Starting a helper as an unprivileged user: the id change happens last between fork
//! and exec (after the cgroup join, which needs root), and the binary is executed
//! through a descriptor opened as root, so it may live where that user cannot look
//! (tools installed under /root).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Between fork and exec: empties the bounding set except `keep` and sets
/// no_new_privs. Unknown capabilities are EINVAL; every known one goes.
fn bound_and_no_new_privs(keep: &[u32]) -> std::io::Result<()> {
    for cap in 0..=63u32 {
        if !keep.contains(&cap) {
            // SAFETY: prctl takes integers and is async-signal-safe.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        }
    }
    // SAFETY: as above.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `cmd` become `uid`:`gid` with no supplementary groups, an empty capability
/// bounding set and no_new_privs just before exec (nothing it runs can ever gain a
/// privilege). It runs after the hooks registered before it, which `Command::uid`
/// would not (std changes ids before any hook).
pub fn drop_to(cmd: &mut Command, uid: u32, gid: u32) {
    // SAFETY: the hook only makes async-signal-safe calls (prctl, setgroups,
    // setresgid, setresuid) with integers.
    unsafe {
        cmd.pre_exec(move || {
            bound_and_no_new_privs(&[])?;
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setresgid(gid, gid, gid) != 0
                || libc::setresuid(uid, uid, uid) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Empties `cmd`'s capability bounding set except `keep` just before exec: a program
/// run as root then starts with only those (and no_new_privs keeps it so).
pub fn bound_capabilities(cmd: &mut Command, keep: &'static [u32]) {
    // SAFETY: the hook only calls prctl with integers (async-signal-safe).
    unsafe { cmd.pre_exec(move || bound_and_no_new_privs(keep)) };
}

/// A binary opened now, to be executed later by a user who may not reach its path.
pub struct Program {
    file: File,
    path: PathBuf,
}

impl Program {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        Ok(Self { file: File::open(path)?, path: path.into() })
    }

    /// What to pass as the program: the descriptor, by /proc (the kernel checks only
    /// the file's own execute bit). Keep `self` until the spawn.
    pub fn via_fd(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// Sets `cmd`'s argv[0] to the real path, so the process is recognised by name.
    pub fn name(&self, cmd: &mut Command) {
        cmd.arg0(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root: a binary in a directory only root may enter still runs as nobody, and
    /// runs as nobody with no groups.
    #[test]
    fn a_binary_behind_a_closed_directory_runs_as_nobody() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().expect("tmp");
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let bin = d.path().join("id");
        std::fs::copy("/usr/bin/id", &bin).expect("copy id");
        let p = Program::open(&bin).expect("open");
        let mut c = Command::new(p.via_fd());
        p.name(&mut c);
        drop_to(&mut c, 65534, 65534);
        let out = c.output().expect("run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("uid=65534") && text.contains("gid=65534") && !text.contains("groups=0"), "{text}");
        let mut c = Command::new("grep");
        c.args(["-E", "^(CapBnd|NoNewPrivs)", "/proc/self/status"]);
        drop_to(&mut c, 65534, 65534);
        let out = String::from_utf8_lossy(&c.output().expect("grep").stdout).into_owned();
        assert!(out.contains("CapBnd:\t0000000000000000") && out.contains("NoNewPrivs:\t1"), "{out}");
    }
}
