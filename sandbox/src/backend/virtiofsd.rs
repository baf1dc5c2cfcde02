//! virtiofsd: shares a sandbox's directory with its guest (virtio-fs over vhost-user),
//! for both VMMs.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::assets::find_binary;

pub const EXE: &str = "virtiofsd";
pub const LOG: &str = "virtiofsd.log";
/// Its vhost-user socket, in the sandbox directory.
pub const SOCKET: &str = "virtiofs.sock";

/// Where it is installed; `None` means containers get uploaded rootfs instead.
pub fn find() -> Option<PathBuf> {
    find_binary(EXE)
}

/// Capabilities virtiofsd drops from its default set: it never creates device nodes or
/// sets file capabilities on the host for a guest, opens no file by handle
/// (dac_read_search: `open_by_handle_at` reaches any file of the host's filesystem),
/// and keeps no set-id bit across a write or chown (fsetid: without it the host's
/// kernel strips set-uid and set-gid when a guest rewrites or hands over such a file on
/// a volume, whatever the guest's kernel asks).
pub const DROPPED_CAPS: &str = "-mknod:-setfcap:-dac_read_search:-fsetid";

/// What remains, and what serving files as their owners needs: chown, dac_override
/// (the guest's root reads and writes what its files' modes refuse others), fowner,
/// setgid and setuid (each request runs as the guest's caller).
pub const KEPT_CAPS: &[u32] = &[0, 1, 3, 6, 7];

/// virtiofsd serving `shared` on `socket`, from its namespace sandbox (its own mount,
/// pid and network namespaces, pivoted into the share, under its own seccomp filter).
/// Binds we add under the share later reach it because the share is a shared mount
/// ([`crate::mounts::prepare_share`]) of which its copy is a slave;
/// --announce-submounts keeps their inode numbers apart.
pub fn command(bin: &Path, socket: &Path, shared: &Path) -> Result<Command, SetIdFilterError> {
    let filter = no_set_id_filter()?;
    let mut d = Command::new(bin);
    // SAFETY: the closure only makes the prctl and seccomp system calls (through
    // seccompiler's apply_filter, on a program built before the fork): no allocation,
    // no lock, async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut d, move || {
            seccompiler::apply_filter(&filter).map_err(|e| std::io::Error::other(e.to_string()))
        });
    }
    d.arg("--socket-path").arg(socket).arg("--shared-dir").arg(shared);
    d.args(["--sandbox", "namespace"]).arg(format!("--modcaps={DROPPED_CAPS}"));
    // Inodes held by O_PATH descriptors, not file handles: file handles need
    // dac_read_search, dropped above (each descriptor counts against its open-file
    // limit, so a guest cannot make it hold inodes without bound).
    d.arg("--inode-file-handles=never");
    d.args(["--announce-submounts", "--cache", "auto", "--log-level", "warn"]);
    Ok(d)
}

#[derive(Debug, thiserror::Error)]
#[error("virtiofsd's set-id filter: {0}")]
pub struct SetIdFilterError(String);

/// The mode bits that make a file run as its owner or group.
const SET_ID: u64 = 0o6000;

/// A filter under virtiofsd's own (installed before exec; the stricter of the two
/// wins): no call of it may give a file a set-uid or set-gid bit. virtiofsd serves as
/// root, so a guest's `chmod 4755` on a volume would otherwise leave a root set-uid
/// binary on the host for any local user to run. chmod, fchmod, fchmodat(2) with such
/// a mode, and a file created (open, openat, creat, mknod, mknodat) with one, fail
/// with EPERM; nothing else changes. (File capabilities are refused already: virtiofsd
/// runs without CAP_SETFCAP.)
pub fn no_set_id_filter() -> Result<seccompiler::BpfProgram, SetIdFilterError> {
    use seccompiler::{SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompRule};
    use std::collections::BTreeMap;
    fn err(e: impl std::fmt::Display) -> SetIdFilterError {
        SetIdFilterError(e.to_string())
    }
    // (syscall, index of its mode argument, index of its flags argument when the mode
    // counts only with O_CREAT)
    const FCHMODAT2: i64 = 452;
    let calls: [(i64, u8, Option<u8>); 8] = [
        (libc::SYS_chmod, 1, None),
        (libc::SYS_fchmod, 1, None),
        (libc::SYS_fchmodat, 2, None),
        (FCHMODAT2, 2, None),
        (libc::SYS_creat, 1, None),
        (libc::SYS_mknod, 1, None),
        (libc::SYS_mknodat, 2, None),
        (libc::SYS_open, 2, Some(1)),
    ];
    let openat: (i64, u8, Option<u8>) = (libc::SYS_openat, 3, Some(2));
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, mode, flags) in calls.into_iter().chain([openat]) {
        let mut list = Vec::new();
        // (mode & 06000) != 0, as the three values it can take.
        for bits in [0o4000, 0o2000, 0o6000] {
            let mut conds =
                vec![SeccompCondition::new(mode, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(SET_ID), bits)
                    .map_err(err)?];
            if let Some(f) = flags {
                let creat = libc::O_CREAT as u64;
                conds.push(
                    SeccompCondition::new(f, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(creat), creat)
                        .map_err(err)?,
                );
            }
            list.push(SeccompRule::new(conds).map_err(err)?);
        }
        rules.insert(nr, list);
    }
    super::helper_filter::denying(rules, libc::EPERM).map_err(err)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

    /// In a forked child under the filter, as root: chmod to set-uid or set-gid and a
    /// file created set-uid are refused; other modes and other calls go through.
    #[test]
    fn set_id_modes_are_refused_and_nothing_else_is() {
        let prog = super::no_set_id_filter().expect("filter");
        let d = tempfile::tempdir().expect("tmp");
        let f = d.path().join("f");
        std::fs::write(&f, "x").expect("file");
        // SAFETY: the child only makes system calls and _exits.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    seccompiler::apply_filter(&prog).ok()?;
                    let chmod = |m| std::fs::set_permissions(&f, std::fs::Permissions::from_mode(m));
                    let refused = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error()) == Some(libc::EPERM);
                    let ok = refused(chmod(0o4755))
                        && refused(chmod(0o2755))
                        && refused(chmod(0o6755))
                        && chmod(0o755).is_ok()
                        && chmod(0o1777).is_ok();
                    let created = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o4755)
                        .open(d.path().join("g"))
                        .err()
                        .and_then(|e| e.raw_os_error());
                    let plain =
                        std::fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(d.path().join("h"));
                    Some(ok && created == Some(libc::EPERM) && plain.is_ok())
                })();
                // SAFETY: _exit is always safe.
                unsafe { libc::_exit(if code == Some(true) { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let st = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0), "see the conditions in the child");
            }
        }
        let mode = std::fs::metadata(&f).expect("f").permissions().mode();
        assert_eq!(mode & 0o6000, 0, "{mode:o}");
    }
}
