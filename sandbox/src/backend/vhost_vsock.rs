//! vhost-device-vsock: the vhost-user vsock daemon behind QEMU's vsock device; it
//! serves the hybrid-vsock unix socket the host talks to the agent on.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::hypervisor::HypervisorError;

pub const EXE: &str = "vhost-device-vsock";
pub const LOG: &str = "vsock.log";
/// Its vhost-user socket (QEMU's side), in the sandbox directory.
pub const SOCKET: &str = "vhost-vsock.sock";

pub fn find() -> Result<PathBuf, HypervisorError> {
    super::require(EXE, " (cargo install vhost-device-vsock; scripts/setup.sh does)")
}

/// The daemon for guest `cid`: QEMU connects on `socket`, the host on `uds`.
pub fn command(bin: &Path, cid: u32, socket: &Path, uds: &Path) -> Command {
    let mut d = Command::new(bin);
    d.arg("--guest-cid").arg(cid.to_string()).arg("--socket").arg(socket).arg("--uds-path").arg(uds);
    d
}
