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
/// sets file capabilities on the host for a guest (what remains is what serving files
/// as their owners needs: chown, dac_override, dac_read_search, fowner, fsetid,
/// setgid, setuid).
pub const DROPPED_CAPS: &str = "-mknod:-setfcap";

/// virtiofsd serving `shared` on `socket`, from its namespace sandbox (its own mount,
/// pid and network namespaces, pivoted into the share, under its own seccomp filter).
/// Binds we add under the share later reach it because the share is a shared mount
/// ([`crate::mounts::prepare_share`]) of which its copy is a slave;
/// --announce-submounts keeps their inode numbers apart.
pub fn command(bin: &Path, socket: &Path, shared: &Path) -> Command {
    let mut d = Command::new(bin);
    d.arg("--socket-path").arg(socket).arg("--shared-dir").arg(shared);
    d.args(["--sandbox", "namespace"]).arg(format!("--modcaps={DROPPED_CAPS}"));
    d.args(["--announce-submounts", "--cache", "auto", "--log-level", "warn"]);
    d
}
