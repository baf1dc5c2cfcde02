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

/// Between fork and exec, while still root: new namespaces of `flags` for a helper
/// that needs nothing of the host's there (no network, no System V IPC).
pub fn own_namespaces(cmd: &mut Command, flags: libc::c_int) {
    // SAFETY: unshare takes an integer and is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(flags) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Where the execute-only copies of helper binaries are kept (root's alone).
pub fn exec_only_dir() -> PathBuf {
    std::env::var_os("ISOLA_EXEC_ONLY_DIR").map(PathBuf::from).unwrap_or_else(|| "/run/isola-bin".into())
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

    /// As [`Program::open`], through a copy of the binary that its user may execute
    /// but not read (mode 0111, in a root-only directory under `dir`, made once per
    /// version of the binary): the kernel then starts it non-dumpable, so no process
    /// of the same uid may trace it or read its memory through /proc, as one of a
    /// world-readable binary could. The copy sits in `bin/` beside links to its
    /// installation's `lib`, `libexec` and `share`, so a program that finds its modules
    /// and data relative to itself (QEMU) finds them.
    pub fn open_exec_only(path: &Path, dir: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let private = |d: &Path| match std::fs::DirBuilder::new().mode(0o700).create(d) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
            _ => Ok(()),
        };
        private(dir)?;
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let home = dir.join(format!("{name}-{}", crate::names::short_hash(&crate::names::file_id(path), 8)));
        let copy = home.join("bin").join(&name);
        if !copy.exists() {
            let tmp = dir.join(format!(".{name}.{}", crate::names::random_hex(6)));
            private(&tmp)?;
            let made = (|| {
                let bin = tmp.join("bin");
                private(&bin)?;
                let prefix = path.parent().filter(|p| p.ends_with("bin")).and_then(Path::parent);
                for sibling in ["lib", "lib64", "libexec", "share"] {
                    if let Some(target) = prefix.map(|p| p.join(sibling)).filter(|t| t.is_dir()) {
                        std::os::unix::fs::symlink(target, tmp.join(sibling))?;
                    }
                }
                let mut out = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o111)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(bin.join(&name))?;
                std::io::copy(&mut File::open(path)?, &mut out)?;
                out.sync_all()?;
                std::fs::rename(&tmp, &home)
            })();
            if let Err(e) = made {
                let _ = std::fs::remove_dir_all(&tmp);
                // Another start made it first: theirs serves.
                if !copy.exists() {
                    return Err(e);
                }
            }
        }
        Ok(Self { file: File::open(&copy)?, path: path.into() })
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

    /// As another process of the same uid would try it: the helper run from its
    /// execute-only copy is not dumpable (its /proc files are root's, its memory
    /// unreadable), while the same binary run plainly is.
    #[test]
    fn a_helper_from_its_execute_only_copy_is_not_dumpable() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (does not skip)");
        let d = tempfile::tempdir().expect("tmp");
        let owner_of_mem = |p: Program| {
            let mut c = Command::new(p.via_fd());
            p.name(&mut c);
            c.args(["1000"]);
            drop_to(&mut c, 65534, 65534);
            let mut child = c.spawn().expect("sleep");
            std::thread::sleep(std::time::Duration::from_millis(200));
            let uid = std::os::unix::fs::MetadataExt::uid(
                &std::fs::metadata(format!("/proc/{}/mem", child.id())).expect("mem"),
            );
            // A peer of the same uid tries to read it.
            let peer = Command::new("/bin/sh")
                .args(["-c", &format!("head -c1 /proc/{}/environ >/dev/null", child.id())])
                .uid(65534)
                .gid(65534)
                .status()
                .expect("peer");
            let _ = child.kill();
            let _ = child.wait();
            (uid, peer.success())
        };
        let sleep = Path::new("/bin/sleep");
        assert_eq!(owner_of_mem(Program::open(sleep).expect("plain")), (65534, true), "dumpable when readable");
        let exec_only = Program::open_exec_only(sleep, &d.path().join("bin")).expect("copy");
        assert_eq!(owner_of_mem(exec_only), (0, false), "not dumpable from its execute-only copy");
        // One copy per version of the binary.
        Program::open_exec_only(sleep, &d.path().join("bin")).expect("again");
        assert_eq!(std::fs::read_dir(d.path().join("bin")).expect("dir").count(), 1);
    }
}
