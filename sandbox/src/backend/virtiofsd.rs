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

/// virtiofsd serving `shared` on `socket`.
pub fn command(bin: &Path, socket: &Path, shared: &Path) -> Command {
    let mut d = Command::new(bin);
    d.arg("--socket-path").arg(socket).arg("--shared-dir").arg(shared);
    // chroot, not a namespace sandbox: binds we add under the share later must be
    // visible to it; --announce-submounts keeps their inode numbers apart.
    d.args(["--sandbox", "chroot", "--announce-submounts", "--cache", "auto", "--log-level", "warn"]);
    d
}
